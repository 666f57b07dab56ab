//! The home page, the not-found page, and the passkey challenge for an action.

use crate::grants::GrantRow;
use crate::requests::RequestRow;
use crate::visitor::{render, Chrome, PageError, ScriptCall, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jitgate_core::request::RequestStatus;
use jitgate_server::error::ServiceError;
use jitgate_server::routes::ApiError;
use jitgate_server::services::requests::Scope;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    show_actions: bool,
    grants: Vec<GrantRow>,
    pending: Vec<RequestRow>,
    waiting: usize,
}

pub(crate) async fn home(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    let app = &web.app;
    let live = app.grants().live_of(&v.caller).await?;
    let now = app.now();
    let grants = live.iter().map(|g| GrantRow::of(g, now)).collect();
    let pending = app
        .requests()
        .list(&v.caller, Scope::Mine, Some(RequestStatus::Pending), None, 100)
        .await?;
    let waiting = app
        .requests()
        .list(&v.caller, Scope::Review, Some(RequestStatus::Pending), None, 1000)
        .await?
        .len();
    render(&HomePage {
        chrome: v.chrome("jitgate", "home"),
        show_actions: false,
        grants,
        pending: pending.iter().map(RequestRow::from).collect(),
        waiting,
    })
}

pub(crate) async fn not_found() -> PageError {
    PageError::Service(ServiceError::not_found("page"))
}

/// A WebAuthn challenge for the signed-in visitor, for the passkey that goes with an action
/// (approve, request, connect).
pub(crate) async fn passkey_challenge(State(web): State<Web>, call: ScriptCall) -> Response {
    match web.app.mfa().webauthn_challenge(&call.visitor.caller.user.name).await {
        Ok(challenge) => Json(challenge).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
