//! The PostgreSQL gateway: connect tokens, sessions, killing one.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connect", post(connect))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}/kill", post(kill_session))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionsQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    live: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/connect",
    tag = "gateway",
    summary = "A one-time token (good for a minute) to open one session through the PostgreSQL gateway on a live grant",
    request_body = ConnectBody,
    responses((status = 200, description = "Done", body = jitgate_api::ConnectToken), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn connect(State(s): State<AppState>, caller: Caller, Json(body): Json<ConnectBody>) -> R<jitgate_api::ConnectToken> {
    let at = s.gateway_addr.get().copied();
    Ok(Json(s.gateway().connect_token(&caller, &body, at).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "gateway",
    summary = "Gateway sessions: yours, or all=true (admins, audit readers); live=true for open ones",
    params(SessionsQuery),
    responses((status = 200, description = "Done", body = Vec<jitgate_api::GatewaySession>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_sessions(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<SessionsQuery>,
) -> R<Vec<jitgate_api::GatewaySession>> {
    Ok(Json(s.gateway().sessions(&caller, q.all, q.live).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/kill",
    tag = "gateway",
    summary = "End a live gateway session (admins)",
    params(("id" = String, Path, description = "the session's id")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn kill_session(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.gateway().kill(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
