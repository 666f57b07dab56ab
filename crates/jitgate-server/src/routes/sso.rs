//! Single sign-on: the providers, the CLI's sign-in through the browser and its hand-off, and
//! the administrators' tools (a provider's client secret; what an ID token maps to). The
//! browser's half (`/sso/...` pages and the callback) is the web crate's.

use super::*;
use jitgate_api::{ChannelSecretBody, OidcTestBody, SsoDeviceBody, SsoDevicePollBody, SsoHandOffBody, SsoStartBody};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/providers", get(providers))
        .route("/sso/start", post(start))
        .route("/sso/hand-off", post(hand_off))
        .route("/sso/device", post(device_start))
        .route("/sso/device/poll", post(device_poll))
        .route("/admin/oidc/{provider}/test", post(test_token))
        .route("/admin/oidc/{provider}/secret", put(put_secret).delete(delete_secret))
}

#[utoipa::path(
    get,
    path = "/api/v1/sso/providers",
    tag = "identity",
    summary = "The identity providers people can sign in with",
    responses((status = 200, description = "Done", body = Vec<jitgate_api::SsoProviderView>), Refusals),
)]
pub(super) async fn providers(State(s): State<AppState>) -> R<Vec<jitgate_api::SsoProviderView>> {
    Ok(Json(s.sso().providers()))
}

#[utoipa::path(
    post,
    path = "/api/v1/sso/start",
    tag = "identity",
    summary = "Start a CLI's sign-in through the browser: the provider's URL; the browser comes back to the CLI's loopback address with a hand-off code",
    request_body = SsoStartBody,
    responses((status = 200, description = "Done", body = jitgate_api::SsoStarted), Refusals),
)]
pub(super) async fn start(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<SsoStartBody>,
) -> R<jitgate_api::SsoStarted> {
    s.limits.logins.check_http(from)?;
    let back = crate::services::sso::Return::Cli {
        redirect: body.redirect,
        challenge: body.challenge,
    };
    Ok(Json(jitgate_api::SsoStarted {
        authorization_url: s.sso().start(&body.provider, back).await?,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/sso/hand-off",
    tag = "identity",
    summary = "Trade a CLI sign-in's hand-off code and verifier for a session",
    request_body = SsoHandOffBody,
    responses((status = 200, description = "Done", body = jitgate_api::SessionToken), Refusals),
)]
pub(super) async fn hand_off(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<SsoHandOffBody>,
) -> R<jitgate_api::SessionToken> {
    s.limits.logins.check_http(from)?;
    Ok(Json(s.sso().hand_off(body.code.expose(), body.verifier.expose()).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/oidc/{provider}/test",
    tag = "admin",
    summary = "What an ID token says and maps to under a provider's config: checks, user, groups, second factor (admins)",
    params(("provider" = String, Path, description = "the provider's name")),
    request_body = OidcTestBody,
    responses((status = 200, description = "Done", body = jitgate_api::OidcTestView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn test_token(
    State(s): State<AppState>,
    caller: Caller,
    P(provider): P<String>,
    Json(body): Json<OidcTestBody>,
) -> R<jitgate_api::OidcTestView> {
    Ok(Json(s.sso().test_token(&caller, &provider, body.id_token.expose()).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/oidc/{provider}/secret",
    tag = "admin",
    summary = "Store a sign-in provider's client secret, sealed (admins)",
    params(("provider" = String, Path, description = "the provider's name")),
    request_body = ChannelSecretBody,
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn put_secret(
    State(s): State<AppState>,
    caller: Caller,
    P(provider): P<String>,
    Json(body): Json<ChannelSecretBody>,
) -> Result<StatusCode, ApiError> {
    let secret = secrecy::SecretString::from(body.secret.0);
    s.sso().set_client_secret(&caller, &provider, Some(&secret)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/oidc/{provider}/secret",
    tag = "admin",
    summary = "Remove a sign-in provider's client secret (admins)",
    params(("provider" = String, Path, description = "the provider's name")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn delete_secret(State(s): State<AppState>, caller: Caller, P(provider): P<String>) -> Result<StatusCode, ApiError> {
    s.sso().set_client_secret(&caller, &provider, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/sso/device",
    tag = "identity",
    summary = "Start a sign-in for a machine without a browser (the provider's device authorization grant): a code to type at the provider",
    request_body = SsoDeviceBody,
    responses((status = 200, description = "Done", body = jitgate_api::SsoDeviceStarted), Refusals),
)]
pub(super) async fn device_start(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<SsoDeviceBody>,
) -> R<jitgate_api::SsoDeviceStarted> {
    s.limits.logins.check_http(from)?;
    Ok(Json(s.sso().device_start(&body.provider).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/sso/device/poll",
    tag = "identity",
    summary = "Whether the person finished the device sign-in (waits up to 20 s): pending, or a session",
    request_body = SsoDevicePollBody,
    responses((status = 200, description = "Done", body = jitgate_api::SsoDeviceOutcome), Refusals),
)]
pub(super) async fn device_poll(State(s): State<AppState>, Json(body): Json<SsoDevicePollBody>) -> R<jitgate_api::SsoDeviceOutcome> {
    Ok(Json(s.sso().device_poll(body.device_id.expose()).await?))
}
