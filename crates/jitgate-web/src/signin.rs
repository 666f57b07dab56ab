//! Signing in (password, then a TOTP code, a recovery code or a passkey) and out. The same
//! calls as `POST /api/v1/login` and `/login/mfa`, with the same attempt limits and audit
//! events; the session token goes into an HttpOnly cookie instead of the answer.

use crate::security::local_path;
use crate::visitor::{render, render_with, Change, Chrome, PageError};
use crate::Web;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use axum_extra::extract::cookie::CookieJar;
use jitgate_api::{LoginBody, LoginMfaBody, LoginOutcome, MfaProof, SecretText, WebauthnAssertion};
use jitgate_server::error::ServiceError;
use jitgate_server::routes::ApiError;
use jitgate_server::routes::ClientAddr as Peer;
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
    methods: Option<String>,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    next: String,
    /// The same, percent-encoded for a query string.
    next_query: String,
    username: String,
    error: Option<String>,
    /// "Sign in with ..." buttons: (name, what it says).
    providers: Vec<(String, String)>,
    /// Whether the password form is shown (`auth.password`; with it off, break-glass accounts
    /// still sign in here, under "Break-glass account").
    password: bool,
}

impl SignInPage {
    fn new(web: &Web, csrf: String, next: String, username: String, error: Option<String>) -> Self {
        let next_query = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC).to_string();
        Self {
            chrome: Chrome::anonymous("Sign in", csrf),
            next,
            next_query,
            username,
            error,
            providers: web.app.sso().providers().into_iter().map(|p| (p.name, p.display_name)).collect(),
            password: web.app.settings.sign_in.password,
        }
    }
}

#[derive(Template)]
#[template(path = "signin_mfa.html")]
struct SecondFactorPage {
    chrome: Chrome,
    next: String,
    totp: bool,
    passkey: bool,
    recovery: bool,
    methods: String,
    error: Option<String>,
}

fn address(peer: Peer) -> std::net::IpAddr {
    peer.0
}

/// Seconds from now until `t`, for a cookie's `Max-Age`.
fn seconds_until(web: &Web, t: jitgate_core::Timestamp) -> i64 {
    ((t.as_millis() - web.app.now().as_millis()) / 1000).max(1)
}

pub(crate) async fn form(State(web): State<Web>, jar: CookieJar, Query(q): Query<NextQuery>) -> Result<Response, PageError> {
    let next = local_path(q.next.as_deref());
    if let Some(token) = web.session_of(&jar) {
        if web.app.identity().authenticate(token).await.is_ok() {
            return Ok(Redirect::to(&next).into_response());
        }
    }
    let (jar, csrf) = web.presession_token(jar);
    let page = SignInPage::new(&web, csrf, next, String::new(), None);
    Ok((jar, render(&page)?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub(crate) async fn password(
    State(web): State<Web>,
    peer: Peer,
    jar: CookieJar,
    axum::Form(f): axum::Form<PasswordForm>,
) -> Result<Response, PageError> {
    if !web.presession_ok(&jar, &f.csrf) {
        return Err(PageError::Csrf);
    }
    let next = local_path(f.next.as_deref());
    let app = web.app.clone();
    let body = LoginBody {
        username: f.username.clone(),
        password: SecretText(f.password),
        mfa: None,
    };
    let outcome = match web.app.limits.logins.check_http(address(peer)) {
        Ok(()) => jitgate_server::routes::to_the_end(async move { app.identity().login(body).await }).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(LoginOutcome::Authenticated { token, expires_at, .. }) => {
            let jar = web.with_session(jar, token.expose(), seconds_until(&web, expires_at));
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Ok(LoginOutcome::MfaRequired {
            ticket,
            methods,
            expires_at,
        }) => {
            let jar = web.with_ticket(jar, ticket.expose(), seconds_until(&web, expires_at));
            let next = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
            let methods = methods.join(",");
            Ok((jar, Redirect::to(&format!("/signin/mfa?methods={methods}&next={next}"))).into_response())
        }
        Err(e) => {
            let (jar, csrf) = web.presession_token(jar);
            let page = SignInPage::new(&web, csrf, next, f.username, Some(e.message.clone()));
            Ok((jar, render_with(jitgate_server::routes::status_of(e.kind), &page)?).into_response())
        }
    }
}

fn second_factor_page(csrf: String, next: String, methods: &str, error: Option<String>) -> SecondFactorPage {
    let has = |m: &str| methods.is_empty() || methods.split(',').any(|x| x == m);
    SecondFactorPage {
        chrome: Chrome::anonymous("Second factor", csrf),
        next,
        totp: has("totp"),
        passkey: has("webauthn"),
        recovery: has("recovery_code"),
        methods: methods.to_owned(),
        error,
    }
}

pub(crate) async fn second_factor_form(State(web): State<Web>, jar: CookieJar, Query(q): Query<NextQuery>) -> Result<Response, PageError> {
    let next = local_path(q.next.as_deref());
    if web.ticket_of(&jar).is_none() {
        return Ok(Redirect::to("/signin").into_response());
    }
    let (jar, csrf) = web.presession_token(jar);
    let page = second_factor_page(csrf, next, q.methods.as_deref().unwrap_or(""), None);
    Ok((jar, render(&page)?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    /// `recovery` for a recovery code; a TOTP code otherwise.
    kind: Option<String>,
    next: Option<String>,
    methods: Option<String>,
}

pub(crate) async fn second_factor(
    State(web): State<Web>,
    peer: Peer,
    jar: CookieJar,
    axum::Form(f): axum::Form<CodeForm>,
) -> Result<Response, PageError> {
    if !web.presession_ok(&jar, &f.csrf) {
        return Err(PageError::Csrf);
    }
    let next = local_path(f.next.as_deref());
    let Some(ticket) = web.ticket_of(&jar).map(str::to_owned) else {
        return Ok(Redirect::to("/signin").into_response());
    };
    let code = f.code.trim();
    let mfa = if f.kind.as_deref() == Some("recovery") {
        MfaProof::recovery_code(code)
    } else {
        MfaProof::otp(code)
    };
    match finish(&web, peer, ticket, mfa).await {
        Ok((token, max_age)) => Ok((web.with_session(jar, &token, max_age), Redirect::to(&next)).into_response()),
        Err(e) => {
            let (jar, csrf) = web.presession_token(jar);
            let page = second_factor_page(csrf, next, f.methods.as_deref().unwrap_or(""), Some(e.message.clone()));
            Ok((jar, render_with(jitgate_server::routes::status_of(e.kind), &page)?).into_response())
        }
    }
}

/// Finishes a login with its ticket and a second factor: the session token and its lifetime.
async fn finish(web: &Web, peer: Peer, ticket: String, mfa: MfaProof) -> Result<(String, i64), ServiceError> {
    web.app.limits.logins.check_http(address(peer))?;
    let app = web.app.clone();
    let body = LoginMfaBody {
        ticket: SecretText(ticket),
        mfa,
    };
    let session = jitgate_server::routes::to_the_end(async move { app.identity().login_mfa(body).await }).await?;
    Ok((session.token.expose().to_owned(), seconds_until(web, session.expires_at)))
}

fn presession_header_ok(web: &Web, jar: &CookieJar, headers: &axum::http::HeaderMap) -> bool {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    web.presession_ok(jar, sent)
}

/// A WebAuthn challenge for the user behind the sign-in ticket.
pub(crate) async fn passkey_challenge(State(web): State<Web>, jar: CookieJar, headers: axum::http::HeaderMap) -> Response {
    if !presession_header_ok(&web, &jar, &headers) {
        return PageError::Csrf.into_response();
    }
    let Some(ticket) = web.ticket_of(&jar) else {
        return ApiError::from(ServiceError::unauthenticated()).into_response();
    };
    match web.app.identity().login_webauthn_challenge(&SecretText(ticket.to_owned())).await {
        Ok(challenge) => Json(challenge).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct PasskeyBody {
    challenge_id: String,
    credential: serde_json::Value,
    next: Option<String>,
}

/// The passkey's answer to the challenge: the session, and where the page goes next.
pub(crate) async fn passkey(
    State(web): State<Web>,
    peer: Peer,
    jar: CookieJar,
    headers: axum::http::HeaderMap,
    Json(body): Json<PasskeyBody>,
) -> Response {
    if !presession_header_ok(&web, &jar, &headers) {
        return PageError::Csrf.into_response();
    }
    let Some(ticket) = web.ticket_of(&jar).map(str::to_owned) else {
        return ApiError::from(ServiceError::unauthenticated()).into_response();
    };
    let mfa = MfaProof {
        webauthn: Some(WebauthnAssertion {
            challenge_id: body.challenge_id,
            credential: body.credential,
        }),
        ..MfaProof::default()
    };
    match finish(&web, peer, ticket, mfa).await {
        Ok((token, max_age)) => {
            let next = local_path(body.next.as_deref());
            (web.with_session(jar, &token, max_age), Json(serde_json::json!({ "next": next }))).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub(crate) async fn signout(State(web): State<Web>, jar: CookieJar, change: Change<crate::forms::Nothing>) -> Result<Response, PageError> {
    web.app.identity().logout(&change.visitor.caller).await?;
    Ok((web.without_session(jar), Redirect::to("/signin")).into_response())
}
