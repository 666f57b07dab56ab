//! The audit log: events, checkpoints, verification, witnesses' status, the signing key and head.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(audit_events))
        .route("/audit/checkpoints", get(audit_checkpoints))
        .route("/audit/verify", get(audit_verify))
        .route("/audit/status", get(audit_status))
        .route("/audit/public-key", get(audit_key))
        .route("/audit/head", get(audit_head))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/events",
    tag = "audit",
    summary = "Audit events after a sequence number (after, limit)",
    params(AuditQuery),
    responses((status = 200, description = "Done", body = jitgate_api::AuditPage), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_events(State(s): State<AppState>, caller: Caller, Q(q): Q<AuditQuery>) -> R<jitgate_api::AuditPage> {
    Ok(Json(s.audit().page(&caller, q.after.unwrap_or(0), q.limit.unwrap_or(1000)).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/checkpoints",
    tag = "audit",
    summary = "Signed checkpoints of the audit chain",
    responses((status = 200, description = "Done", body = jitgate_api::CheckpointList), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_checkpoints(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::CheckpointList> {
    Ok(Json(s.audit().checkpoints(&caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    summary = "Verify the live audit chain and its checkpoints",
    responses((status = 200, description = "Done", body = jitgate_api::VerifyOutcome), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_verify(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::VerifyOutcome> {
    Ok(Json(s.audit().verify(&caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/status",
    tag = "audit",
    summary = "The audit log's head, newest checkpoint and witnesses",
    responses((status = 200, description = "Done", body = jitgate_api::AuditStatus), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_status(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::AuditStatus> {
    Ok(Json(s.audit().status(&caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/public-key",
    tag = "audit",
    summary = "The Ed25519 key that signs audit checkpoints",
    responses((status = 200, description = "Done", body = jitgate_api::AuditKey), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_key(State(s): State<AppState>, _caller: Caller) -> R<jitgate_api::AuditKey> {
    Ok(Json(s.audit().key()))
}

#[utoipa::path(
    get,
    path = "/api/v1/audit/head",
    tag = "audit",
    summary = "The committed head, signed with the audit key, for an export to end at",
    responses((status = 200, description = "Done", body = jitgate_core::audit::SignedHead), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn audit_head(State(s): State<AppState>, caller: Caller) -> R<jitgate_core::audit::SignedHead> {
    Ok(Json(s.audit().signed_head(&caller).await?))
}
