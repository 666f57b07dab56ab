//! "Your second factors": the state of one's factors, setting up an authenticator app (a QR
//! code), adding and removing passkeys (`navigator.credentials.create` in the page's script),
//! and a new set of recovery codes. The same enrolment calls as the API, with its rule that a
//! person who has a factor must have proved one lately to change them.

use crate::visitor::{render, render_with, Change, Chrome, PageError, ScriptCall, Visitor};
use crate::Web;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use base64::Engine;
use jitgate_api::{MfaStatus, PasskeyFinishBody, SecretText};
use jitgate_server::error::ServiceError;
use jitgate_server::routes::ApiError;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "factors.html")]
struct FactorsPage {
    chrome: Chrome,
    status: MfaStatus,
    /// A TOTP set-up under way: the QR code (as a `data:` image) and the secret to type in.
    totp_qr: String,
    totp_secret: String,
    /// Recovery codes just made: shown this once.
    codes: Vec<String>,
    message: Option<String>,
    error: Option<String>,
    /// Identity providers the person signs in with, where they can prove a factor again.
    providers: Vec<jitgate_api::SsoProviderView>,
}

async fn page(web: &Web, v: &Visitor) -> Result<FactorsPage, PageError> {
    Ok(FactorsPage {
        chrome: v.chrome("Second factors", "factors"),
        status: web.app.mfa().mfa_status(&v.caller).await?,
        totp_qr: String::new(),
        totp_secret: String::new(),
        codes: Vec::new(),
        message: None,
        error: None,
        providers: web.app.sso().linked_providers(&v.caller.user.name).await?,
    })
}

/// The page again with what went wrong.
async fn refused(web: &Web, v: &Visitor, e: ServiceError) -> Result<Response, PageError> {
    let status = jitgate_server::routes::status_of(e.kind);
    let mut p = page(web, v).await?;
    p.error = Some(e.message);
    render_with(status, &p)
}

pub(crate) async fn show(State(web): State<Web>, v: Visitor) -> Result<Response, PageError> {
    render(&page(&web, &v).await?)
}

pub(crate) async fn totp_start(State(web): State<Web>, change: Change<crate::forms::Nothing>) -> Result<Response, PageError> {
    let v = change.visitor;
    match web.app.enrolment().totp_start(&v.caller).await {
        Ok(enrolment) => {
            let mut p = page(&web, &v).await?;
            p.totp_qr = format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(enrolment.qr_svg.as_bytes())
            );
            p.totp_secret = enrolment.secret.expose().to_owned();
            render(&p)
        }
        Err(e) => refused(&web, &v, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    code: String,
}

pub(crate) async fn totp_confirm(State(web): State<Web>, change: Change<CodeForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    match web
        .app
        .enrolment()
        .totp_confirm(&v.caller, &SecretText(form.code.trim().to_owned()))
        .await
    {
        Ok(added) => {
            let mut p = page(&web, &v).await?;
            p.message = Some("Your authenticator app is set up.".into());
            p.codes = added
                .recovery_codes
                .unwrap_or_default()
                .iter()
                .map(|c| c.expose().to_owned())
                .collect();
            render(&p)
        }
        Err(e) => refused(&web, &v, e).await,
    }
}

pub(crate) async fn recovery_codes(State(web): State<Web>, change: Change<crate::forms::Nothing>) -> Result<Response, PageError> {
    let v = change.visitor;
    match web.app.enrolment().recovery_codes(&v.caller).await {
        Ok(made) => {
            let mut p = page(&web, &v).await?;
            p.message = Some("New recovery codes: the old ones no longer work.".into());
            p.codes = made.codes.iter().map(|c| c.expose().to_owned()).collect();
            render(&p)
        }
        Err(e) => refused(&web, &v, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct PasskeyRemoveForm {
    #[serde(default)]
    id: String,
}

pub(crate) async fn passkey_remove(State(web): State<Web>, change: Change<PasskeyRemoveForm>) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    match web.app.enrolment().passkey_remove(&v.caller, &form.id).await {
        Ok(()) => Ok(Redirect::to("/mfa").into_response()),
        Err(e) => refused(&web, &v, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct PasskeyName {
    name: String,
}

/// The options for `navigator.credentials.create`.
pub(crate) async fn passkey_start(State(web): State<Web>, call: ScriptCall, Json(body): Json<PasskeyName>) -> Response {
    match web.app.enrolment().passkey_start(&call.visitor.caller, &body.name).await {
        Ok(challenge) => Json(challenge).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The new credential; answers what was added (and recovery codes, for a first factor).
pub(crate) async fn passkey_finish(State(web): State<Web>, call: ScriptCall, Json(body): Json<PasskeyFinishBody>) -> Response {
    match web.app.enrolment().passkey_finish(&call.visitor.caller, &body).await {
        Ok(added) => Json(added).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
