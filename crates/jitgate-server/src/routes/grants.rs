//! Grants: listing, one grant, revoking.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/grants", get(list_grants))
        .route("/grants/{id}", get(show_grant))
        .route("/grants/{id}/revoke", post(revoke))
}

#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "grants",
    summary = "List grants: scope=mine|all, status, resource, limit",
    params(ListQuery<jitgate_core::grant::GrantStatus>),
    responses((status = 200, description = "Done", body = Vec<jitgate_core::grant::Grant>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_grants(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ListQuery<jitgate_core::grant::GrantStatus>>,
) -> R<Vec<jitgate_core::grant::Grant>> {
    let (scope, status, resource, limit) = q.parsed()?;
    Ok(Json(s.grants().list(&caller, scope, status, resource, limit).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/grants/{id}",
    tag = "grants",
    summary = "One grant",
    params(("id" = String, Path, description = "the grant's id")),
    responses((status = 200, description = "Done", body = jitgate_core::grant::Grant), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn show_grant(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_core::grant::Grant> {
    Ok(Json(s.grants().detail(&caller, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/grants/{id}/revoke",
    tag = "grants",
    summary = "Revoke a grant early, with a reason",
    params(("id" = String, Path, description = "the grant's id")),
    request_body = RevokeBody,
    responses((status = 200, description = "Done", body = jitgate_core::grant::Grant), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<RevokeBody>,
) -> R<jitgate_core::grant::Grant> {
    Ok(Json(s.grants().revoke(&caller, &id, &body.reason).await?))
}
