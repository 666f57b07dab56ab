//! jitgate's web pages, served by the same binary on the HTTP listener at `/`: sign-in with a
//! second factor, the requester's catalogue, requests and grants, and the approver's inbox.
//!
//! Pages are rendered on the server from templates checked at compile time (askama) and call
//! the same services as the API, with the same authorization, refusals and audit events; this
//! crate adds only what a browser needs on top: a cookie for the session, a CSRF token on
//! every change, strict security headers, and a little script (`static/app.js`, no inline
//! script) for passkeys, countdowns and live updates.

mod admin;
mod assets;
mod factors;
mod forms;
mod grants;
mod live;
mod pages;
mod requests;
mod security;
mod signin;
mod sso;
mod visitor;

use axum::routing::{get, post};
use axum::Router;
use jitgate_server::core::AppState;

pub use security::{csrf_token_for, SESSION_COOKIE, SESSION_COOKIE_SECURE};

/// What every page handler works with: the server's state and how cookies are set.
#[derive(Clone)]
pub(crate) struct Web {
    pub app: AppState,
    /// The pages are served to an `https://` origin: cookies are `Secure` with the `__Host-`
    /// prefix, and browsers are told to keep to HTTPS.
    pub secure: bool,
    /// The live-update streams open now (bounded: `live.rs`).
    pub live: std::sync::Arc<live::LiveStreams>,
    /// Makes the sign-in forms' CSRF tokens.
    pub presession_key: security::PresessionKey,
}

/// The pages, for [`jitgate_server::Application::with_pages`].
pub fn router(app: AppState) -> Router {
    let secure = app.settings.http_tls != jitgate_server::config::HttpTls::Off
        || app.settings.webauthn_origin.as_deref().is_some_and(|o| o.starts_with("https://"));
    let presession_key = security::PresessionKey::derive(&app.signing_key.to_bytes());
    let web = Web {
        app,
        secure,
        live: std::sync::Arc::default(),
        presession_key,
    };
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(signin::form).post(signin::password))
        .route("/signin/mfa", get(signin::second_factor_form).post(signin::second_factor))
        .route("/signin/passkey/challenge", post(signin::passkey_challenge))
        .route("/signin/passkey", post(signin::passkey))
        .route("/signout", post(signin::signout))
        .route("/sso/callback", get(sso::callback))
        .route("/sso/{provider}/start", get(sso::start))
        .route("/sso/{provider}/step-up", post(sso::step_up))
        .route("/catalogue", get(requests::catalogue))
        .route("/requests", get(requests::mine).post(requests::create))
        .route("/requests/new", get(requests::new_form))
        .route("/requests/{id}", get(requests::detail))
        .route("/requests/{id}/review", post(requests::review))
        .route("/requests/{id}/cancel", post(requests::cancel))
        .route("/requests/{id}/ack", post(requests::acknowledge))
        .route("/inbox", get(requests::inbox))
        .route("/grants", get(grants::mine))
        .route("/grants/{id}/revoke", post(grants::revoke))
        .route("/grants/{id}/connect", post(grants::connect))
        .route("/mfa", get(factors::show))
        .route("/mfa/totp", post(factors::totp_start))
        .route("/mfa/totp/confirm", post(factors::totp_confirm))
        .route("/mfa/recovery-codes", post(factors::recovery_codes))
        .route("/mfa/passkeys/remove", post(factors::passkey_remove))
        .route("/mfa/passkeys/start", post(factors::passkey_start))
        .route("/mfa/passkeys/finish", post(factors::passkey_finish))
        .route("/mfa/passkey/challenge", post(pages::passkey_challenge))
        .route("/admin/people", get(admin::people))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/users/{name}/{action}", post(admin::user_action))
        .route("/admin/groups", post(admin::membership))
        .route("/admin/resources", get(admin::resources))
        .route("/admin/resources/{name}/check", post(admin::check_resource))
        .route("/admin/sessions", get(admin::sessions))
        .route("/admin/sessions/{id}/kill", post(admin::kill_session))
        .route("/audit", get(admin::audit))
        .route("/audit/verify", post(admin::audit_verify))
        .route("/policy/explain", get(admin::explain_form).post(admin::explain))
        .route("/live", get(live::events))
        .route("/static/{file}", get(assets::serve))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(web.clone(), security::headers))
        .with_state(web)
}
