//! "My grants": live ones with a countdown to their end, revoke, and connect (a one-time
//! token for the gateway, shown once).

use crate::forms::Factor;
use crate::visitor::{render, render_with, Change, Chrome, PageError, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use jitgate_api::ConnectBody;
use jitgate_core::grant::{Grant, GrantStatus};
use jitgate_core::Timestamp;
use jitgate_server::services::requests::Scope;
use serde::Deserialize;

/// A grant in a list.
pub(crate) struct GrantRow {
    pub id: String,
    pub request_id: String,
    pub resource: String,
    pub role: String,
    pub status: String,
    pub live: bool,
    pub starts_at: String,
    pub ends_at: String,
    /// What is left, in words, as of the page's rendering (the script counts it down).
    pub left: String,
    pub db_role: String,
    pub revoke_reason: String,
}

impl GrantRow {
    pub fn of(g: &Grant, now: Timestamp) -> Self {
        let left_ms = (g.ends_at.as_millis() - now.as_millis()).max(0);
        Self {
            id: g.id.clone(),
            request_id: g.request_id.clone(),
            resource: g.resource.to_string(),
            role: g.role.to_string(),
            status: g.status.to_string(),
            live: matches!(g.status, GrantStatus::Active | GrantStatus::Scheduled),
            starts_at: g.starts_at.to_rfc3339(),
            ends_at: g.ends_at.to_rfc3339(),
            left: crate::forms::human_duration(u64::try_from(left_ms / 1000).unwrap_or(0)),
            db_role: g.db_role.clone().unwrap_or_default(),
            revoke_reason: g.revoke_reason.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "grants.html")]
struct GrantsPage {
    chrome: Chrome,
    /// Connect, extend and revoke under each live grant.
    show_actions: bool,
    live: Vec<GrantRow>,
    ended: Vec<GrantRow>,
    error: Option<String>,
}

async fn grants_page(web: &Web, v: &Visitor, error: Option<String>) -> Result<GrantsPage, PageError> {
    let grants = web.app.grants().list(&v.caller, Scope::Mine, None, None, 200).await?;
    let now = web.app.now();
    let (live, ended): (Vec<GrantRow>, Vec<GrantRow>) = grants.iter().map(|g| GrantRow::of(g, now)).partition(|g| g.live);
    Ok(GrantsPage {
        chrome: v.chrome("My grants", "grants"),
        show_actions: true,
        live,
        ended,
        error,
    })
}

pub(crate) async fn mine(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let page = grants_page(&web, &v, None).await?;
    render(&page)
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    reason: String,
}

pub(crate) async fn revoke(State(web): State<Web>, Path(id): Path<String>, change: Change<RevokeForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let reason = if form.reason.trim().is_empty() {
        "ended from the web page"
    } else {
        form.reason.trim()
    };
    match web.app.grants().revoke(&v.caller, &id, reason).await {
        Ok(_) => Ok(Redirect::to("/grants").into_response()),
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let page = grants_page(&web, &v, Some(e.message)).await?;
            render_with(status, &page)
        }
    }
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage {
    chrome: Chrome,
    token: jitgate_api::ConnectToken,
    dsn: String,
    root_file: String,
}

#[derive(Deserialize)]
pub(crate) struct ConnectForm {
    #[serde(flatten)]
    factor: Factor,
}

pub(crate) async fn connect(State(web): State<Web>, Path(id): Path<String>, change: Change<ConnectForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let grant = web.app.grants().detail(&v.caller, &id).await?;
    if grant.user != v.caller.user.name {
        return Err(PageError::Service(jitgate_server::error::ServiceError::not_found("grant")));
    }
    let body = ConnectBody {
        resource: grant.resource.to_string(),
        role: Some(grant.role.to_string()),
        mfa: form.factor.proof(),
        uses: None,
    };
    let at = web.app.gateway_addr.get().copied();
    match web.app.gateway().connect_token(&v.caller, &body, at).await {
        Ok(token) => {
            let root_file = token
                .gateway_ca_sha256
                .as_deref()
                .map(|fp| format!("jitgate-gateway-{}.pem", &fp[..fp.len().min(16)]))
                .unwrap_or_default();
            let mut dsn = format!("postgresql://{}@{}:{}/{}", token.username, token.host, token.port, token.dbname);
            if !root_file.is_empty() {
                dsn.push_str(&format!("?sslmode=verify-full&sslrootcert={root_file}"));
            }
            let page = ConnectPage {
                chrome: v.chrome("Connect", "grants"),
                token,
                dsn,
                root_file,
            };
            // The token is shown once: the page must not be kept or shown again from history.
            render(&page)
        }
        Err(e) => {
            let status = jitgate_server::routes::status_of(e.kind);
            let page = grants_page(&web, &v, Some(e.message)).await?;
            render_with(status, &page)
        }
    }
}
