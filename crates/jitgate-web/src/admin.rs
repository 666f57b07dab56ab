//! Administration: people and groups, live gateway sessions (with kill), the audit log with
//! filters and its verification, and the policy "explain" form. Each page calls the service
//! the API calls, so the same people may use it: administrators (audit readers for the log),
//! and a refusal is audited the same way.

use crate::visitor::{render, render_with, Change, Chrome, PageError, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jitgate_api::{CreateUserBody, ExplainBody, Explanation, GroupView, ResourceCheck, ResourceView, SecretText, UserView};
use jitgate_core::names::{GroupName, Username};
use jitgate_core::session::GatewaySession;
use jitgate_server::error::ServiceError;
use serde::Deserialize;

fn user_name(name: &str) -> Result<Username, PageError> {
    Username::parse(name).map_err(|_| PageError::Service(ServiceError::not_found("user")))
}

#[derive(Template)]
#[template(path = "admin_people.html")]
struct PeoplePage {
    chrome: Chrome,
    users: Vec<UserView>,
    groups: Vec<GroupView>,
    message: Option<String>,
    error: Option<String>,
}

async fn people_page(web: &Web, v: &Visitor, message: Option<String>, error: Option<String>) -> Result<PeoplePage, PageError> {
    Ok(PeoplePage {
        chrome: v.chrome("People", "admin"),
        users: web.app.users().list(&v.caller).await?,
        groups: web.app.users().groups(&v.caller).await?,
        message,
        error,
    })
}

pub(crate) async fn people(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    render(&people_page(&web, &v, None, None).await?)
}

/// A change to people or groups: back to the page with what happened, or why not.
async fn after(web: &Web, v: &Visitor, outcome: Result<String, ServiceError>) -> Result<Response, PageError> {
    match outcome {
        Ok(message) => render(&people_page(web, v, Some(message), None).await?),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            render_with(status, &people_page(web, v, None, Some(e.message)).await?)
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct NewUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

pub(crate) async fn create_user(State(web): State<Web>, change: Change<NewUserForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let outcome = match Username::parse(form.username.trim()) {
        Ok(username) => {
            let body = CreateUserBody {
                username,
                display_name: form.display_name.trim().to_owned(),
                password: Some(SecretText(form.password)).filter(|p| !p.expose().is_empty()),
                admin: form.admin.is_some(),
            };
            web.app
                .users()
                .create(&v.caller, body)
                .await
                .map(|u| format!("{} was created.", u.username))
        }
        Err(e) => Err(ServiceError::bad_request("invalid_username", e)),
    };
    after(&web, &v, outcome).await
}

pub(crate) async fn user_action(
    State(web): State<Web>,
    Path((name, action)): Path<(String, String)>,
    change: Change<crate::forms::Nothing>,
) -> Result<Response, PageError> {
    let v = change.visitor;
    let name = user_name(&name)?;
    let users = web.app.users();
    let outcome = match action.as_str() {
        "disable" => users
            .set_disabled(&v.caller, &name, true)
            .await
            .map(|_| format!("{name} is disabled: their sessions ended and their grants were revoked.")),
        "enable" => users
            .set_disabled(&v.caller, &name, false)
            .await
            .map(|_| format!("{name} is enabled.")),
        "unlock" => users
            .unlock(&v.caller, &name)
            .await
            .map(|()| format!("{name}'s attempt limit is lifted.")),
        _ => return Err(PageError::Service(ServiceError::not_found("page"))),
    };
    after(&web, &v, outcome).await
}

#[derive(Deserialize)]
pub(crate) struct MemberForm {
    #[serde(default)]
    group: String,
    #[serde(default)]
    user: String,
    /// `add` or `remove`.
    #[serde(default)]
    change: String,
}

pub(crate) async fn membership(State(web): State<Web>, change: Change<MemberForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let outcome = match (GroupName::parse(form.group.trim()), Username::parse(form.user.trim())) {
        (Ok(group), Ok(user)) => {
            let add = form.change != "remove";
            web.app
                .users()
                .set_membership(&v.caller, &group, &user, add)
                .await
                .map(|_| format!("{user} {} {group}.", if add { "joined" } else { "left" }))
        }
        (Err(e), _) => Err(ServiceError::bad_request("invalid_group", e)),
        (_, Err(e)) => Err(ServiceError::bad_request("invalid_username", e)),
    };
    after(&web, &v, outcome).await
}

#[derive(Template)]
#[template(path = "admin_sessions.html")]
struct SessionsPage {
    chrome: Chrome,
    sessions: Vec<GatewaySession>,
    error: Option<String>,
}

pub(crate) async fn sessions(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let sessions = web.app.gateway().sessions(&v.caller, true, true).await?;
    render(&SessionsPage {
        chrome: v.chrome("Live sessions", "sessions"),
        sessions,
        error: None,
    })
}

pub(crate) async fn kill_session(
    State(web): State<Web>,
    Path(id): Path<String>,
    change: Change<crate::forms::Nothing>,
) -> Result<Response, PageError> {
    let v = change.visitor;
    match web.app.gateway().kill(&v.caller, &id).await {
        Ok(()) => Ok(Redirect::to("/admin/sessions").into_response()),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let sessions = web.app.gateway().sessions(&v.caller, true, true).await?;
            render_with(
                status,
                &SessionsPage {
                    chrome: v.chrome("Live sessions", "sessions"),
                    sessions,
                    error: Some(e.message),
                },
            )
        }
    }
}

/// The audit page's filters: each narrows the events shown (text matches anywhere in the
/// field, case-insensitively); `before` pages back from a sequence number.
#[derive(Deserialize, Default)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    /// Only events at or after this time (`YYYY-MM-DDTHH:MM`, UTC, as a datetime-local field sends it).
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
}

/// One event as the page shows it.
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPageView {
    chrome: Chrome,
    q: AuditQuery,
    rows: Vec<EventRow>,
    head_seq: i64,
    scanned_from: i64,
    status: jitgate_api::AuditStatus,
    verified: Option<jitgate_api::VerifyOutcome>,
    filter_error: Option<String>,
}

/// How many events one page of the audit log looks through, newest first.
const AUDIT_SCAN: i64 = 2000;

fn minute(text: &str) -> Result<Option<i64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    // A datetime-local field sends minutes; seconds and a zone are accepted too.
    let with_seconds = if t.len() == 16 { format!("{t}:00Z") } else { t.to_owned() };
    let with_zone = if with_seconds.ends_with('Z') || with_seconds.contains('+') {
        with_seconds
    } else {
        format!("{with_seconds}Z")
    };
    jitgate_core::Timestamp::parse_rfc3339(&with_zone)
        .map(|ts| Some(ts.as_millis()))
        .map_err(|_| format!("'{t}' is not a time: use YYYY-MM-DDTHH:MM (UTC)"))
}

async fn audit_page(
    web: &Web,
    v: &Visitor,
    q: AuditQuery,
    verified: Option<jitgate_api::VerifyOutcome>,
) -> Result<AuditPageView, PageError> {
    let status = web.app.audit().status(&v.caller).await?;
    let head = status.head_seq;
    let until_seq = q.before.map_or(head, |b| (b - 1).min(head));
    let scanned_from = (until_seq - AUDIT_SCAN).max(0);
    let page = web.app.audit().page(&v.caller, scanned_from, until_seq - scanned_from).await?;
    let (from, until, filter_error) = match (minute(&q.from), minute(&q.until)) {
        (Ok(f), Ok(u)) => (f, u, None),
        (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
    };
    let has = |field: &str, wanted: &str| wanted.trim().is_empty() || field.to_lowercase().contains(&wanted.trim().to_lowercase());
    let rows = page
        .events
        .iter()
        .rev()
        .filter(|e| has(&e.actor, &q.actor) && has(&e.action, &q.action) && has(&e.target, &q.target))
        .filter(|e| from.is_none_or(|f| e.ts >= f) && until.is_none_or(|u| e.ts <= u))
        .map(|e| EventRow {
            seq: e.seq,
            at: jitgate_core::Timestamp::from_millis(e.ts).to_rfc3339(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            details: e.details.to_string(),
        })
        .collect();
    Ok(AuditPageView {
        chrome: v.chrome("Audit log", "audit"),
        q,
        rows,
        head_seq: head,
        scanned_from,
        status,
        verified,
        filter_error,
    })
}

pub(crate) async fn audit(State(web): State<Web>, v: Visitor, Query(q): Query<AuditQuery>) -> Result<Response, PageError> {
    render(&audit_page(&web, &v, q, None).await?)
}

/// Verifies the whole chain and its checkpoints now, and shows the outcome on the log's page.
pub(crate) async fn audit_verify(State(web): State<Web>, change: Change<crate::forms::Nothing>) -> Result<Response, PageError> {
    let v = change.visitor;
    let outcome = web.app.audit().verify(&v.caller).await?;
    render(&audit_page(&web, &v, AuditQuery::default(), Some(outcome)).await?)
}

#[derive(Template)]
#[template(path = "explain.html")]
struct ExplainPage {
    chrome: Chrome,
    form: ExplainForm,
    explanation: Option<Explanation>,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ExplainForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
}

pub(crate) async fn explain_form(v: Visitor) -> Result<Response, PageError> {
    render(&ExplainPage {
        chrome: v.chrome("Explain a decision", "explain"),
        form: ExplainForm::default(),
        explanation: None,
        error: None,
    })
}

pub(crate) async fn explain(State(web): State<Web>, change: Change<ExplainForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let body = ExplainBody {
        user: form.user.trim().to_owned(),
        resource: form.resource.trim().to_owned(),
        role: form.role.trim().to_owned(),
        duration: Some(form.duration.trim().to_owned()).filter(|d| !d.is_empty()),
        at: None,
        start_at: None,
        reason: form.reason.clone(),
        ticket: Some(form.ticket.trim().to_owned()).filter(|t| !t.is_empty()),
    };
    let (explanation, error, status) = match web.app.policies().explain(&v.caller, &body).await {
        Ok(e) => (Some(e), None, axum::http::StatusCode::OK),
        Err(e) => (None, Some(e.message), jitgate_server::routes::status_of(e.kind)),
    };
    render_with(
        status,
        &ExplainPage {
            chrome: v.chrome("Explain a decision", "explain"),
            form,
            explanation,
            error,
        },
    )
}

#[derive(Template)]
#[template(path = "admin_resources.html")]
struct ResourcesPage {
    chrome: Chrome,
    resources: Vec<ResourceView>,
    check: Option<ResourceCheck>,
    error: Option<String>,
}

pub(crate) async fn resources(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    web.app.require_admin(&v.caller, "admin_resources_page").await?;
    render(&ResourcesPage {
        chrome: v.chrome("Resources", "resources"),
        resources: web.app.resources().list(&v.caller).await?,
        check: None,
        error: None,
    })
}

/// What each role's login can really do upstream (`jitgate admin resource check`).
pub(crate) async fn check_resource(
    State(web): State<Web>,
    Path(name): Path<String>,
    change: Change<crate::forms::Nothing>,
) -> Result<Response, PageError> {
    let v = change.visitor;
    let name = jitgate_core::names::ResourceName::parse(&name).map_err(|_| PageError::Service(ServiceError::not_found("resource")))?;
    let (check, error, status) = match web.app.resources().check(&v.caller, &name).await {
        Ok(c) => (Some(c), None, axum::http::StatusCode::OK),
        Err(e) => (None, Some(e.message), jitgate_server::routes::status_of(e.kind)),
    };
    render_with(
        status,
        &ResourcesPage {
            chrome: v.chrome("Resources", "resources"),
            resources: web.app.resources().list(&v.caller).await?,
            check,
            error,
        },
    )
}
