//! API tokens: make one (from a signed-in session), list, revoke.

use super::*;
use jitgate_api::CreateTokenBody;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TokensQuery {
    /// Everyone's tokens (administrators).
    #[serde(default)]
    all: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "identity",
    summary = "Your API tokens (an administrator's with all=true: everyone's); never the tokens themselves",
    params(TokensQuery),
    responses((status = 200, description = "Done", body = Vec<jitgate_api::ApiTokenView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_tokens(State(s): State<AppState>, caller: Caller, Q(q): Q<TokensQuery>) -> R<Vec<jitgate_api::ApiTokenView>> {
    Ok(Json(s.tokens().list(&caller, q.all).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "identity",
    summary = "Make an API token for scripts: scoped, expiring, shown once (a fresh second factor when you have one)",
    request_body = CreateTokenBody,
    responses((status = 201, description = "Created", body = jitgate_api::NewApiToken), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateTokenBody>,
) -> Result<(StatusCode, Json<jitgate_api::NewApiToken>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.tokens().create(&caller, body).await?)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "identity",
    summary = "Revoke an API token (yours; an administrator: anyone's)",
    params(("id" = String, Path, description = "the token's id (tok_...)")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn revoke_token(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.tokens().revoke(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
