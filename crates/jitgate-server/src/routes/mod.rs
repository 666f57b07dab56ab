//! The HTTP API: thin handlers that turn requests into calls on the services
//! ([`crate::services`]), one module per area, errors as HTTP answers (`error.rs`), and the
//! OpenAPI document made from their annotations and the `jitgate-api` types
//! (`/api/v1/openapi.json`).

mod admin;
mod audit;
mod error;
mod gateway;
mod grants;
mod identity;
mod mfa;
mod notifications;
mod requests;
mod sso;
mod tokens;

use crate::core::{AppState, Caller};
use crate::error::ServiceError;
use crate::services::requests::Scope;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
pub use error::{status_of, ApiError};
use jitgate_api::{
    AckBody, BootstrapBody, CodeBody, ConnectBody, CreateRequestBody, CreateUserBody, CredentialBody, ExplainBody, LoginBody, LoginMfaBody,
    MfaProof, PasskeyFinishBody, PasskeyStartBody, PasswordBody, ReviewBody, RevokeBody, TicketBody,
};
use jitgate_core::grant::GrantStatus;
use jitgate_core::names::{GroupName, ResourceName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{Decision, RequestStatus};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;

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
            Some(t) if t.starts_with(crate::services::tokens::TOKEN_PREFIX) => {
                let path = parts
                    .extensions
                    .get::<axum::extract::OriginalUri>()
                    .map_or_else(|| parts.uri.path(), |o| o.0.path());
                let needed = crate::services::tokens::required_scope(&parts.method, path.strip_prefix("/api/v1").unwrap_or(path));
                Ok(state.tokens().authenticate(t, needed).await?)
            }
            Some(t) => Ok(state.identity().authenticate(t).await?),
            None => Err(ServiceError::unauthenticated().into()),
        }
    }
}

/// The address a request came from (the TCP peer; jitgate does not read `X-Forwarded-For`,
/// which anyone can write). Unspecified when the router runs without a listener.
pub struct ClientAddr(pub std::net::IpAddr);

/// For any router's state: the web pages take it too.
impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
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
/// happen whether or not anyone waits for the answer. (The web pages' sign-in uses it too.)
pub async fn to_the_end<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::spawn(work).await.map_err(|e| ServiceError::internal(e.to_string()))?
}

/// `?scope=&status=&resource=&limit=` of `GET /requests` and `GET /grants`: `status` is one of
/// `S`'s values (the request's or the grant's), checked by the handler so that the answer names
/// the ones it takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery<S> {
    scope: Option<Scope>,
    status: Option<String>,
    resource: Option<String>,
    limit: Option<i64>,
    #[serde(skip)]
    _status: std::marker::PhantomData<S>,
}

/// A status a list can be narrowed to, and the words it is written as.
pub(super) trait ListStatus: Sized {
    const CHOICES: &'static str;
    fn parse(text: &str) -> Option<Self>;
}

impl ListStatus for RequestStatus {
    const CHOICES: &'static str = "pending, approved, denied, cancelled or expired";
    fn parse(text: &str) -> Option<Self> {
        RequestStatus::parse(text)
    }
}

impl ListStatus for GrantStatus {
    const CHOICES: &'static str = "scheduled, active, expired or revoked";
    fn parse(text: &str) -> Option<Self> {
        GrantStatus::parse(text)
    }
}

impl<S: ListStatus> ListQuery<S> {
    /// Scope (mine by default), status, resource and limit (100 by default), each checked.
    fn parsed(&self) -> Result<(Scope, Option<S>, Option<ResourceName>, i64), ApiError> {
        let invalid = |message: String| ServiceError::bad_request("invalid_query", message);
        let status = self
            .status
            .as_deref()
            .map(|v| S::parse(v).ok_or_else(|| invalid(format!("unknown status '{v}': use {}", S::CHOICES))))
            .transpose()?;
        let resource = self
            .resource
            .as_deref()
            .map(|r| ResourceName::parse(r).map_err(invalid))
            .transpose()?;
        Ok((self.scope.unwrap_or(Scope::Mine), status, resource, self.limit.unwrap_or(100)))
    }
}

impl<S: utoipa::ToSchema> utoipa::IntoParams for ListQuery<S> {
    fn into_params(_: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::PartialSchema;
        let param = |name: &str, description: &str, schema: RefOr<utoipa::openapi::schema::Schema>| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(utoipa::openapi::Required::False)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        vec![
            param(
                "scope",
                "mine (the default), review (what waits for the caller's review) or all",
                Scope::schema(),
            ),
            param("status", "only those in this status", RefOr::Ref(Ref::from_schema_name(S::name()))),
            param(
                "resource",
                "only those on this resource",
                RefOr::Ref(Ref::from_schema_name("ResourceName")),
            ),
            param(
                "limit",
                "at most this many (default 100)",
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .into(),
            ),
        ]
    }
}

/// Every refusal answers with [`jitgate_api::ErrorBody`]; these are the statuses one can have.
/// Each operation lists them all: which of them a given call can meet depends on the caller,
/// the data and the server's state, not only on the operation.
pub(crate) struct Refusals;

impl utoipa::IntoResponses for Refusals {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        [
            (
                "400",
                "The input is not valid (a field, a query parameter, a policy's requirement); nothing changed",
            ),
            ("401", "Not logged in, the session ended, or a second factor is due or wrong"),
            ("403", "The caller may not do this"),
            ("404", "No such thing, or not one the caller may see"),
            ("409", "The current state does not allow it (already decided, already ended, ...)"),
            ("413", "The body is too large"),
            ("415", "The body is not JSON"),
            ("422", "The body is JSON but not of the expected shape"),
            ("429", "Too many attempts or requests; the message says when to try again"),
            ("503", "The store is unavailable; nothing changed"),
        ]
        .into_iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            (
                status.to_owned(),
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build()
                    .into(),
            )
        })
        .collect()
    }
}

/// The bearer token every logged-in call carries.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API document: the paths from the handlers' annotations, the schemas from the types they
/// take and give.
#[derive(OpenApi)]
#[openapi(
    info(title = "jitgate", description = "Just-in-time privileged access: requests, approvals, grants, audit."),
    paths(openapi, identity::bootstrap, identity::login, identity::login_mfa, identity::login_webauthn, identity::logout, identity::whoami, identity::list_users, identity::create_user, identity::disable_user, identity::enable_user, identity::set_password, identity::unlock_user, identity::list_groups, identity::add_member, identity::remove_member, mfa::mfa_status, mfa::mfa_verify, mfa::totp_enrol, mfa::totp_remove, mfa::totp_confirm, mfa::recovery_codes, mfa::webauthn_challenge, mfa::passkey_start, mfa::passkey_finish, mfa::passkey_remove, requests::list_resources, requests::list_requests, requests::create_request, requests::show_request, requests::approve, requests::deny, requests::cancel, requests::acknowledge, requests::notifications, requests::explain, gateway::connect, gateway::list_sessions, gateway::kill_session, admin::reload, admin::put_resource, admin::delete_resource, admin::check_resource, admin::put_resource_credential, admin::delete_resource_credential, grants::list_grants, grants::show_grant, grants::revoke, audit::audit_events, audit::audit_checkpoints, audit::audit_verify, audit::audit_status, audit::audit_key, audit::audit_head, notifications::list_notifications, notifications::retry_notification, notifications::put_channel_secret, notifications::delete_channel_secret, notifications::put_user_email, sso::providers, sso::start, sso::hand_off, sso::device_start, sso::device_poll, sso::test_token, sso::put_secret, sso::delete_secret, tokens::list_tokens, tokens::create_token, tokens::revoke_token),
    components(schemas(jitgate_api::ErrorBody)),
    modifiers(&BearerToken),
)]
pub struct ApiDoc;

/// The document as served.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API under `/api/v1`, the probes, and `pages` (the web interface, a router of its own
/// crate) for every other path; without pages, other paths answer the API's 404.
pub fn router(state: AppState, pages: Option<Router>) -> Router {
    let api = Router::new()
        .merge(identity::routes())
        .merge(mfa::routes())
        .merge(requests::routes())
        .merge(grants::routes())
        .merge(gateway::routes())
        .merge(admin::routes())
        .merge(audit::routes())
        .merge(notifications::routes())
        .merge(sso::routes())
        .merge(tokens::routes())
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(axum::middleware::map_response(api_headers));
    let mut served = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if state.settings.metrics == crate::config::MetricsPlace::Api {
        served = served.route("/metrics", get(metrics));
    }
    let served = served.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).with_state(state);
    match pages {
        Some(pages) => served.merge(pages.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))),
        None => served.fallback(not_found),
    }
}

/// `/metrics` alone, for `metrics.listen`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// Prometheus' scrape: counts only, no names (see [`crate::metrics`]).
async fn metrics(State(s): State<AppState>) -> Response {
    use axum::http::header;
    match s.render_metrics().await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// API answers carry tokens and who-has-access data: no cache keeps them, and no browser
/// reads them as anything but what they say they are.
async fn api_headers(mut response: Response) -> Response {
    use axum::http::{header, HeaderValue};
    let h = response.headers_mut();
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn not_found() -> ApiError {
    ServiceError::new(
        crate::error::ErrorKind::NotFound,
        "no_such_endpoint",
        "there is no such endpoint; see /api/v1/openapi.json",
    )
    .into()
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

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
)]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route an area module registers is in the document with the same method, and the
    /// document names no operation that is not routed: the two cannot drift apart.
    #[test]
    fn the_document_lists_exactly_the_routes() {
        let sources = [
            include_str!("admin.rs"),
            include_str!("audit.rs"),
            include_str!("gateway.rs"),
            include_str!("grants.rs"),
            include_str!("identity.rs"),
            include_str!("mfa.rs"),
            include_str!("notifications.rs"),
            include_str!("requests.rs"),
            include_str!("sso.rs"),
            include_str!("tokens.rs"),
        ];
        let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*([a-z]+\([a-z_]+\)(?:\s*\.[a-z]+\([a-z_]+\))*),?\s*\)"#).unwrap();
        let method = regex::Regex::new(r"([a-z]+)\([a-z_]+\)").unwrap();
        let mut routed: Vec<(String, String)> = sources
            .iter()
            .flat_map(|src| {
                route
                    .captures_iter(src)
                    .map(|c| (c[1].to_owned(), c[2].to_owned()))
                    .collect::<Vec<_>>()
            })
            .flat_map(|(path, chain)| {
                method
                    .captures_iter(&chain)
                    .map(|m| (m[1].to_owned(), format!("/api/v1{path}")))
                    .collect::<Vec<_>>()
            })
            .collect();
        routed.push(("get".into(), "/api/v1/openapi.json".into()));
        routed.sort();
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
            .collect();
        documented.sort();
        assert!(routed.len() > 50, "{routed:?}");
        assert_eq!(routed, documented);
    }
}
