//! The HTTP API: thin handlers that turn requests into calls on [`Core`].

use crate::core::{AppState, Caller};
use crate::error::ApiError;
use crate::workflow::Scope;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use jitgate_api::{
    AckBody, BootstrapBody, CodeBody, ConnectBody, CreateRequestBody, CreateUserBody, ExplainBody, LoginBody, LoginMfaBody, MfaProof,
    PasskeyFinishBody, PasskeyStartBody, PasswordBody, ReviewBody, RevokeBody, TicketBody,
};
use jitgate_core::grant::GrantStatus;
use jitgate_core::names::{GroupName, ResourceName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{Decision, RequestStatus};
use serde::Deserialize;

/// Bodies larger than this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// JSON in and out, with our error shape for bodies that do not parse.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct P<T>(pub T);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token {
            Some(t) => state.authenticate(t).await,
            None => Err(ApiError::unauthenticated()),
        }
    }
}

/// The address a request came from (the TCP peer; jitgate does not read `X-Forwarded-For`,
/// which anyone can write). Unspecified when the router runs without a listener.
pub struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(Self(addr))
    }
}

type R<T> = Result<Json<T>, ApiError>;

/// Runs a credential check to its end even when the client goes away or the request times
/// out: its hash, the failure it counts (or the charge it takes back) and its audit event
/// happen whether or not anyone waits for the answer.
async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/bootstrap", post(bootstrap))
        .route("/login", post(login))
        .route("/login/mfa", post(login_mfa))
        .route("/login/webauthn", post(login_webauthn))
        .route("/mfa", get(mfa_status))
        .route("/mfa/verify", post(mfa_verify))
        .route("/mfa/totp", post(totp_enrol).delete(totp_remove))
        .route("/mfa/totp/confirm", post(totp_confirm))
        .route("/mfa/recovery-codes", post(recovery_codes))
        .route("/mfa/webauthn/challenge", post(webauthn_challenge))
        .route("/mfa/webauthn/register", post(passkey_start))
        .route("/mfa/webauthn/register/finish", post(passkey_finish))
        .route("/mfa/webauthn/{id}", delete(passkey_remove))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
        .route("/resources", get(list_resources))
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{id}", get(show_request))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/ack", post(acknowledge))
        .route("/notifications", get(notifications))
        .route("/connect", post(connect))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}/kill", post(kill_session))
        .route("/policy/explain", post(explain))
        .route("/admin/reload", post(reload))
        .route("/grants", get(list_grants))
        .route("/grants/{id}", get(show_grant))
        .route("/grants/{id}/revoke", post(revoke))
        .route("/audit/events", get(audit_events))
        .route("/audit/checkpoints", get(audit_checkpoints))
        .route("/audit/verify", get(audit_verify))
        .route("/audit/status", get(audit_status))
        .route("/audit/public-key", get(audit_key))
        .route("/audit/head", get(audit_head))
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/users/{name}/disable", post(disable_user))
        .route("/admin/users/{name}/enable", post(enable_user))
        .route("/admin/users/{name}/password", post(set_password))
        .route("/admin/users/{name}/unlock", post(unlock_user))
        .route("/admin/groups", get(list_groups))
        .route("/admin/groups/{group}/members/{user}", put(add_member).delete(remove_member))
        .route("/admin/resources/{name}", put(put_resource).delete(delete_resource))
        .route("/admin/resources/{name}/check", get(check_resource))
        .route(
            "/admin/resources/{name}/credential",
            put(put_resource_credential).delete(delete_resource_credential),
        )
        .route("/openapi.json", get(openapi))
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        "there is no such endpoint; see /api/v1/openapi.json",
    )
}

/// Ready while the store answers the background probe ([`crate::readiness`]): the answer never
/// waits on the store, so a probe gets it at once even while the store is away. A failing
/// audit witness does not take the instance out of service (access keeps working and
/// checkpoints wait in the store) but is named here, one line each, for whoever watches.
async fn readyz(State(s): State<AppState>) -> Response {
    // The reason is in the log (the probe's warning), not in this anonymous answer.
    if s.readiness.store_problem().is_some() {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response();
    }
    let mut body = String::from("ready");
    for w in s.witnesses.statuses().into_iter().filter(|w| w.failing()) {
        body.push_str(&format!(
            "\naudit witness {} failing since {}: {}",
            w.witness,
            w.failing_since.map(|t| t.to_string()).unwrap_or_default(),
            w.last_error.unwrap_or_default()
        ));
    }
    (StatusCode::OK, body).into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn bootstrap(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<BootstrapBody>,
) -> Result<(StatusCode, Json<jitgate_api::SessionToken>), ApiError> {
    s.limits.logins.check_http(from)?;
    Ok((StatusCode::CREATED, Json(s.bootstrap(body).await?)))
}

async fn login(State(s): State<AppState>, ClientAddr(from): ClientAddr, Json(body): Json<LoginBody>) -> R<jitgate_api::LoginOutcome> {
    s.limits.logins.check_http(from)?;
    Ok(Json(to_the_end(async move { s.login(body).await }).await?))
}

async fn login_mfa(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<LoginMfaBody>,
) -> R<jitgate_api::SessionToken> {
    s.limits.logins.check_http(from)?;
    Ok(Json(to_the_end(async move { s.login_mfa(body).await }).await?))
}

async fn login_webauthn(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<TicketBody>,
) -> R<jitgate_api::WebauthnChallenge> {
    s.limits.logins.check_http(from)?;
    Ok(Json(s.login_webauthn_challenge(&body.ticket).await?))
}

async fn mfa_status(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::MfaStatus> {
    Ok(Json(s.mfa_status(&caller).await?))
}

async fn mfa_verify(State(s): State<AppState>, caller: Caller, Json(body): Json<MfaProof>) -> R<jitgate_api::SteppedUp> {
    Ok(Json(s.step_up_now(&caller, &body).await?))
}

async fn totp_enrol(State(s): State<AppState>, caller: Caller) -> Result<(StatusCode, Json<jitgate_api::TotpEnrolment>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.totp_enrol_start(&caller).await?)))
}

async fn totp_confirm(State(s): State<AppState>, caller: Caller, Json(body): Json<CodeBody>) -> R<jitgate_api::FactorAdded> {
    Ok(Json(s.totp_enrol_confirm(&caller, &body.code).await?))
}

async fn totp_remove(State(s): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    s.totp_remove(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn recovery_codes(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::RecoveryCodes> {
    Ok(Json(s.new_recovery_codes(&caller).await?))
}

async fn webauthn_challenge(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::WebauthnChallenge> {
    Ok(Json(s.webauthn_challenge(&caller.user.name).await?))
}

async fn passkey_start(State(s): State<AppState>, caller: Caller, Json(body): Json<PasskeyStartBody>) -> R<jitgate_api::WebauthnChallenge> {
    Ok(Json(s.passkey_register_start(&caller, &body.name).await?))
}

async fn passkey_finish(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<PasskeyFinishBody>,
) -> Result<(StatusCode, Json<jitgate_api::FactorAdded>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.passkey_register_finish(&caller, &body).await?)))
}

async fn passkey_remove(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.passkey_remove(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<AckBody>,
) -> R<jitgate_core::request::AccessRequest> {
    Ok(Json(s.acknowledge(&caller, &id, &body.comment).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    #[serde(default = "hundred")]
    limit: i64,
}

fn hundred() -> i64 {
    100
}

async fn notifications(State(s): State<AppState>, caller: Caller, Q(q): Q<LimitQuery>) -> R<Vec<jitgate_api::NotificationView>> {
    Ok(Json(s.notifications(&caller, q.limit).await?))
}

async fn connect(State(s): State<AppState>, caller: Caller, Json(body): Json<ConnectBody>) -> R<jitgate_api::ConnectToken> {
    let at = s.gateway_addr.get().copied();
    Ok(Json(s.connect_token(&caller, &body, at).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    live: bool,
}

async fn list_sessions(State(s): State<AppState>, caller: Caller, Q(q): Q<SessionsQuery>) -> R<Vec<jitgate_api::DbSessionView>> {
    Ok(Json(s.db_sessions(&caller, q.all, q.live).await?))
}

async fn kill_session(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.kill_session(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn explain(State(s): State<AppState>, caller: Caller, Json(body): Json<ExplainBody>) -> R<jitgate_api::Explanation> {
    Ok(Json(s.explain(&caller, &body).await?))
}

async fn reload(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::PolicyReport> {
    Ok(Json(s.admin_reload(&caller).await?))
}

async fn unlock_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> Result<StatusCode, ApiError> {
    let name = Username::parse(&name).map_err(|_| ApiError::not_found("user"))?;
    s.unlock_user(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout(State(s): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    s.logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn whoami(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::WhoAmI> {
    Ok(Json(s.whoami(&caller)))
}

async fn list_resources(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::ResourceView>> {
    Ok(Json(s.list_resources(&caller).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    scope: Option<Scope>,
    status: Option<String>,
    resource: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    fn resource(&self) -> Result<Option<ResourceName>, ApiError> {
        self.resource
            .as_deref()
            .map(|r| ResourceName::parse(r).map_err(|e| ApiError::bad_request("invalid_query", e)))
            .transpose()
    }
}

async fn create_request(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRequestBody>,
) -> Result<(StatusCode, Json<jitgate_core::request::AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.create_request(&caller, body).await?)))
}

async fn list_requests(State(s): State<AppState>, caller: Caller, Q(q): Q<ListQuery>) -> R<Vec<jitgate_api::RequestView>> {
    let status = q
        .status
        .as_deref()
        .map(|v| {
            RequestStatus::parse(v).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("unknown status '{v}': use pending, approved, denied, cancelled or expired"),
                )
            })
        })
        .transpose()?;
    Ok(Json(
        s.list_requests(
            &caller,
            q.scope.unwrap_or(Scope::Mine),
            status,
            q.resource()?,
            q.limit.unwrap_or(100),
        )
        .await?,
    ))
}

async fn show_request(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.request_detail(&caller, &id).await?))
}

async fn approve(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<ReviewBody>,
) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.review(&caller, &id, Decision::Approve, &body).await?))
}

async fn deny(State(s): State<AppState>, caller: Caller, P(id): P<String>, Json(body): Json<ReviewBody>) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.review(&caller, &id, Decision::Deny, &body).await?))
}

async fn cancel(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_core::request::AccessRequest> {
    Ok(Json(s.cancel(&caller, &id).await?))
}

async fn list_grants(State(s): State<AppState>, caller: Caller, Q(q): Q<ListQuery>) -> R<Vec<jitgate_core::grant::Grant>> {
    let status = q
        .status
        .as_deref()
        .map(|v| {
            GrantStatus::parse(v).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("unknown status '{v}': use scheduled, active, expired or revoked"),
                )
            })
        })
        .transpose()?;
    Ok(Json(
        s.list_grants(
            &caller,
            q.scope.unwrap_or(Scope::Mine),
            status,
            q.resource()?,
            q.limit.unwrap_or(100),
        )
        .await?,
    ))
}

async fn show_grant(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_core::grant::Grant> {
    Ok(Json(s.grant_detail(&caller, &id).await?))
}

async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<RevokeBody>,
) -> R<jitgate_core::grant::Grant> {
    Ok(Json(s.revoke(&caller, &id, &body.reason).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn audit_events(State(s): State<AppState>, caller: Caller, Q(q): Q<AuditQuery>) -> R<jitgate_api::AuditPage> {
    Ok(Json(s.audit_page(&caller, q.after.unwrap_or(0), q.limit.unwrap_or(1000)).await?))
}

async fn audit_checkpoints(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::CheckpointList> {
    Ok(Json(s.audit_checkpoints(&caller).await?))
}

async fn audit_verify(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::VerifyOutcome> {
    Ok(Json(s.audit_verify(&caller).await?))
}

async fn audit_status(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::AuditStatus> {
    Ok(Json(s.audit_status(&caller).await?))
}

async fn audit_head(State(s): State<AppState>, caller: Caller) -> R<jitgate_core::audit::SignedHead> {
    Ok(Json(s.signed_head(&caller).await?))
}

async fn audit_key(State(s): State<AppState>, _caller: Caller) -> R<jitgate_api::AuditKey> {
    Ok(Json(s.audit_key()))
}

async fn list_users(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::UserView>> {
    Ok(Json(s.list_users(&caller).await?))
}

async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateUserBody>,
) -> Result<(StatusCode, Json<jitgate_api::UserView>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.create_user(&caller, body).await?)))
}

fn username(name: &str) -> Result<Username, ApiError> {
    Username::parse(name).map_err(|_| ApiError::not_found("user"))
}

async fn disable_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::UserView> {
    Ok(Json(s.set_user_disabled(&caller, &username(&name)?, true).await?))
}

async fn enable_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::UserView> {
    Ok(Json(s.set_user_disabled(&caller, &username(&name)?, false).await?))
}

async fn set_password(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let name = username(&name)?;
    to_the_end(async move { s.set_password(&caller, &name, body).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_groups(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::GroupView>> {
    Ok(Json(s.list_groups(&caller).await?))
}

fn group_and_user(group: &str, user: &str) -> Result<(GroupName, Username), ApiError> {
    let g = GroupName::parse(group).map_err(|e| ApiError::bad_request("invalid_group", e))?;
    Ok((g, username(user)?))
}

async fn add_member(State(s): State<AppState>, caller: Caller, P((group, user)): P<(String, String)>) -> R<jitgate_api::GroupView> {
    let (g, u) = group_and_user(&group, &user)?;
    Ok(Json(s.set_membership(&caller, &g, &u, true).await?))
}

async fn remove_member(State(s): State<AppState>, caller: Caller, P((group, user)): P<(String, String)>) -> R<jitgate_api::GroupView> {
    let (g, u) = group_and_user(&group, &user)?;
    Ok(Json(s.set_membership(&caller, &g, &u, false).await?))
}

async fn put_resource(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(resource): Json<Resource>,
) -> R<jitgate_api::ResourceView> {
    if resource.name.as_str() != name {
        return Err(ApiError::bad_request(
            "name_mismatch",
            format!("the body names '{}' but the path names '{name}'", resource.name),
        ));
    }
    Ok(Json(s.put_resource(&caller, resource).await?))
}

async fn delete_resource(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ApiError::not_found("resource"))?;
    s.delete_resource(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_resource(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::ResourceCheck> {
    let name = ResourceName::parse(&name).map_err(|_| ApiError::not_found("resource"))?;
    Ok(Json(s.check_resource(&caller, &name).await?))
}

/// `?role=R`: the password of role R's own login instead of the service login's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialQuery {
    role: Option<String>,
}

async fn put_resource_credential(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<CredentialQuery>,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ApiError::not_found("resource"))?;
    let password = secrecy::SecretString::from(body.password.0);
    s.set_resource_credential(&caller, &name, q.role.as_deref(), &password).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_resource_credential(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<CredentialQuery>,
) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ApiError::not_found("resource"))?;
    s.clear_resource_credential(&caller, &name, q.role.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
