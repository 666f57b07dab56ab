//! The requester's catalogue, request form and requests, and the approver's inbox and review.

use crate::forms::{human_duration, Factor};
use crate::visitor::{render, render_with, Change, Chrome, PageError, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jitgate_api::{CreateRequestBody, RequestDetail, RequestView, ReviewBody};
use jitgate_core::names::{GroupName, Username};
use jitgate_core::request::{Decision, RequestStatus};
use jitgate_server::error::ServiceError;
use jitgate_server::services::requests::Scope;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One role of one resource, as the catalogue lists it.
pub(crate) struct CatalogueRole {
    pub resource: String,
    pub description: String,
    pub role: String,
    pub max_duration: String,
    pub may_request: bool,
    pub stages: Vec<StageView>,
    pub ticket_required: bool,
}

/// An approval stage: how many approvals, from whom.
pub(crate) struct StageView {
    pub name: String,
    pub needed: u32,
    pub groups: Vec<String>,
    pub people: Vec<String>,
}

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    chrome: Chrome,
    roles: Vec<CatalogueRole>,
}

async fn catalogue_roles(web: &Web, v: &Visitor) -> Result<Vec<CatalogueRole>, PageError> {
    let resources = web.app.resources().list(&v.caller).await?;
    let named: std::collections::BTreeSet<GroupName> = resources
        .iter()
        .flat_map(|r| r.resource.roles.values())
        .flat_map(|p| p.stages.iter().flat_map(|s| s.groups.iter().cloned()))
        .collect();
    let members: BTreeMap<GroupName, Vec<Username>> = web.app.resources().members_of(&named).await?;
    let mut out = Vec::new();
    for view in resources {
        let r = view.resource;
        for (role, policy) in &r.roles {
            out.push(CatalogueRole {
                resource: r.name.to_string(),
                description: r.description.clone(),
                role: role.to_string(),
                max_duration: human_duration(policy.max_duration.as_secs()),
                may_request: !policy.requesters.is_disjoint(&v.caller.groups),
                ticket_required: policy.reason.ticket_pattern.is_some(),
                stages: policy
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StageView {
                        name: if s.name.is_empty() {
                            format!("stage {}", i + 1)
                        } else {
                            s.name.clone()
                        },
                        needed: s.min_approvals,
                        groups: s.groups.iter().map(ToString::to_string).collect(),
                        people: s
                            .groups
                            .iter()
                            .flat_map(|g| members.get(g).into_iter().flatten())
                            .map(ToString::to_string)
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

pub(crate) async fn catalogue(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let roles = catalogue_roles(&web, &v).await?;
    render(&CataloguePage {
        chrome: v.chrome("Catalogue", "catalogue"),
        roles,
    })
}

#[derive(Template)]
#[template(path = "request_new.html")]
struct NewRequestPage {
    chrome: Chrome,
    role: CatalogueRole,
    form: RequestForm,
    ticket_pattern: String,
    min_reason: usize,
    /// The role's longest lease, which the page checks the duration against as it is typed.
    max_secs: u64,
    factor_needed: bool,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RequestForm {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    duration: String,
    /// The grant this asks to extend, from the grants page.
    #[serde(default)]
    extends: String,
    #[serde(flatten)]
    factor: Factor,
}

async fn new_request_page(web: &Web, v: &Visitor, form: RequestForm, error: Option<String>) -> Result<NewRequestPage, PageError> {
    let not_found = || PageError::Service(ServiceError::not_found("role"));
    let role = catalogue_roles(web, v)
        .await?
        .into_iter()
        .find(|r| r.resource == form.resource && r.role == form.role)
        .ok_or_else(not_found)?;
    let resource = web.app.resources().named(&form.resource).await?;
    let policy = resource
        .roles
        .iter()
        .find(|(name, _)| name.as_str() == form.role)
        .map(|(_, p)| p)
        .ok_or_else(not_found)?;
    Ok(NewRequestPage {
        chrome: v.chrome(format!("Request {} on {}", form.role, form.resource), "catalogue"),
        ticket_pattern: policy.reason.ticket_pattern.clone().unwrap_or_default(),
        min_reason: policy.reason.min_length,
        max_secs: policy.max_duration.as_secs(),
        factor_needed: policy.needs_mfa(jitgate_core::policy::MfaAction::Request),
        role,
        form,
        error,
    })
}

#[derive(Deserialize)]
pub(crate) struct RoleQuery {
    resource: String,
    role: String,
}

pub(crate) async fn new_form(State(web): State<Web>, v: Visitor, Query(q): Query<RoleQuery>) -> Result<Response, PageError> {
    let form = RequestForm {
        resource: q.resource,
        role: q.role,
        ..RequestForm::default()
    };
    let page = new_request_page(&web, &v, form, None).await?;
    render(&page)
}

pub(crate) async fn create(State(web): State<Web>, change: Change<RequestForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let body = CreateRequestBody {
        resource: form.resource.clone(),
        role: form.role.clone(),
        reason: form.reason.clone(),
        ticket: Some(form.ticket.trim().to_owned()).filter(|t| !t.is_empty()),
        duration: Some(form.duration.trim().to_owned()).filter(|d| !d.is_empty()),
        start_at: None,
        extends: Some(form.extends.trim().to_owned()).filter(|g| !g.is_empty()),
        mfa: form.factor.proof(),
        break_glass: false,
    };
    match web.app.requests().create(&v.caller, body).await {
        Ok(request) => Ok(Redirect::to(&format!("/requests/{}", request.id)).into_response()),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let page = new_request_page(&web, &v, form, Some(e.message)).await?;
            render_with(status, &page)
        }
    }
}

/// A request in a list.
pub(crate) struct RequestRow {
    pub id: String,
    pub requester: String,
    pub resource: String,
    pub role: String,
    pub reason: String,
    pub ticket: String,
    pub duration: String,
    pub status: String,
    pub created_at: String,
    pub break_glass: bool,
}

impl From<&RequestView> for RequestRow {
    fn from(v: &RequestView) -> Self {
        let r = &v.request;
        Self {
            id: r.id.clone(),
            requester: r.requester.to_string(),
            resource: r.resource.to_string(),
            role: r.role.to_string(),
            reason: r.reason.clone(),
            ticket: r.ticket.clone().unwrap_or_default(),
            duration: human_duration(u64::try_from(r.duration_secs).unwrap_or(0)),
            status: r.status.to_string(),
            created_at: r.created_at.to_rfc3339(),
            break_glass: r.break_glass,
        }
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    heading: String,
    empty: String,
    rows: Vec<RequestRow>,
}

pub(crate) async fn mine(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let list = web.app.requests().list(&v.caller, Scope::Mine, None, None, 200).await?;
    render(&RequestsPage {
        chrome: v.chrome("My requests", "requests"),
        heading: "My requests".into(),
        empty: "You have not asked for anything yet: pick a role in the catalogue.".into(),
        rows: list.iter().map(RequestRow::from).collect(),
    })
}

pub(crate) async fn inbox(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let list = web.app.requests().list(&v.caller, Scope::Review, None, None, 200).await?;
    render(&RequestsPage {
        chrome: v.chrome("Inbox", "inbox"),
        heading: "Waiting for your review".into(),
        empty: "Nothing waits for you.".into(),
        rows: list.iter().map(RequestRow::from).collect(),
    })
}

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    chrome: Chrome,
    row: RequestRow,
    detail: RequestDetail,
    may_review: bool,
    may_cancel: bool,
    /// A break-glass grant an approver of the role has not looked at yet.
    may_acknowledge: bool,
    /// For an approver: the stages the policies let them approve for, and what forbids them.
    /// (the names of those stages, the forbid policies).
    my_part: Option<(Vec<String>, Vec<String>)>,
    comment: String,
    error: Option<String>,
}

async fn request_page(web: &Web, v: &Visitor, id: &str, comment: String, error: Option<String>) -> Result<RequestPage, PageError> {
    let detail = web.app.requests().detail(&v.caller, id).await?;
    let r = &detail.request;
    let mine = r.requester == v.caller.user.name;
    let resource = web.app.resources().named(r.resource.as_str()).await.ok();
    let policy = resource.as_ref().and_then(|res| res.roles.get(&r.role));
    let approver = policy.is_some_and(|p| p.is_approver(&v.caller.groups));
    let my_part = if !mine && approver && r.status == RequestStatus::Pending {
        let part = web.app.reviews().my_part(&v.caller, &r.id).await?;
        let mine = part.stages.into_iter().filter(|(_, ok)| *ok).map(|(name, _)| name).collect();
        Some((mine, part.forbids))
    } else {
        None
    };
    let row = RequestRow::from(&RequestView {
        request: r.clone(),
        grant_id: detail.grant.as_ref().map(|g| g.id.clone()),
    });
    Ok(RequestPage {
        chrome: v.chrome(format!("Request {}", r.id), if mine { "requests" } else { "inbox" }),
        may_review: !mine && approver && r.status == RequestStatus::Pending,
        may_cancel: mine && r.status == RequestStatus::Pending,
        may_acknowledge: !mine && approver && r.break_glass && r.acknowledged_by.is_none(),
        my_part,
        row,
        detail,
        comment,
        error,
    })
}

pub(crate) async fn detail(State(web): State<Web>, v: Visitor, Path(id): Path<String>) -> Result<Response, PageError> {
    let page = request_page(&web, &v, &id, String::new(), None).await?;
    render(&page)
}

#[derive(Deserialize)]
pub(crate) struct ReviewForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
    #[serde(flatten)]
    factor: Factor,
}

pub(crate) async fn review(State(web): State<Web>, Path(id): Path<String>, change: Change<ReviewForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "deny" => Decision::Deny,
        _ => return Err(PageError::Invalid("choose approve or deny".into())),
    };
    let proof = form.factor.proof();
    // From a page, approving always takes a fresh factor with it, whatever the role asks: a
    // forged or mistaken click alone approves nothing.
    if decision == Decision::Approve && proof.is_none() {
        let page = request_page(
            &web,
            &v,
            &id,
            form.comment,
            Some("Approving needs your second factor: use your passkey or enter a code.".into()),
        )
        .await?;
        return render_with(axum::http::StatusCode::UNAUTHORIZED, &page);
    }
    let body = ReviewBody {
        comment: form.comment.clone(),
        mfa: proof,
    };
    match web.app.reviews().review(&v.caller, &id, decision, &body).await {
        Ok(_) => Ok(Redirect::to(&format!("/requests/{id}")).into_response()),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let page = request_page(&web, &v, &id, form.comment, Some(e.message)).await?;
            render_with(status, &page)
        }
    }
}

pub(crate) async fn cancel(
    State(web): State<Web>,
    Path(id): Path<String>,
    change: Change<crate::forms::Nothing>,
) -> Result<Response, PageError> {
    web.app.requests().cancel(&change.visitor.caller, &id).await?;
    Ok(Redirect::to(&format!("/requests/{id}")).into_response())
}

#[derive(Deserialize)]
pub(crate) struct AckForm {
    #[serde(default)]
    comment: String,
}

/// An approver of the role has looked at a break-glass grant (it leaves their inbox).
pub(crate) async fn acknowledge(State(web): State<Web>, Path(id): Path<String>, change: Change<AckForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    match web.app.reviews().acknowledge(&v.caller, &id, &form.comment).await {
        Ok(_) => Ok(Redirect::to(&format!("/requests/{id}")).into_response()),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let page = request_page(&web, &v, &id, form.comment, Some(e.message)).await?;
            render_with(status, &page)
        }
    }
}
