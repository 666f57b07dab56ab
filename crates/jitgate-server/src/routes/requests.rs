//! Requests and their reviews: what can be requested, asking, approving, denying, cancelling, acknowledging break-glass, notifications, explaining a decision.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/resources", get(list_resources))
        .route("/requests", get(list_requests).post(create_request))
        .route("/requests/{id}", get(show_request))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/deny", post(deny))
        .route("/requests/{id}/cancel", post(cancel))
        .route("/requests/{id}/ack", post(acknowledge))
        .route("/notifications", get(notifications))
        .route("/policy/explain", post(explain))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitQuery {
    #[serde(default = "hundred")]
    limit: i64,
}

fn hundred() -> i64 {
    100
}

#[utoipa::path(
    get,
    path = "/api/v1/resources",
    tag = "requests",
    summary = "Resources and their roles and policies",
    responses((status = 200, description = "Done", body = Vec<jitgate_api::ResourceView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_resources(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::ResourceView>> {
    Ok(Json(s.resources().list(&caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    summary = "List requests: scope=mine|review|all, status, resource, limit",
    params(ListQuery<jitgate_core::request::RequestStatus>),
    responses((status = 200, description = "Done", body = Vec<jitgate_api::RequestView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_requests(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<ListQuery<jitgate_core::request::RequestStatus>>,
) -> R<Vec<jitgate_api::RequestView>> {
    let (scope, status, resource, limit) = q.parsed()?;
    Ok(Json(s.requests().list(&caller, scope, status, resource, limit).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests",
    tag = "requests",
    summary = "Ask for a role on a resource for a time, with a reason",
    request_body = CreateRequestBody,
    responses((status = 201, description = "Created", body = jitgate_core::request::AccessRequest), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn create_request(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRequestBody>,
) -> Result<(StatusCode, Json<jitgate_core::request::AccessRequest>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.requests().create(&caller, body).await?)))
}

#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    summary = "A request with its reviews, approval progress, grant and history",
    params(("id" = String, Path, description = "the request's id")),
    responses((status = 200, description = "Done", body = jitgate_api::RequestDetail), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn show_request(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.requests().detail(&caller, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/approve",
    tag = "requests",
    summary = "Approve a request (not your own)",
    params(("id" = String, Path, description = "the request's id")),
    request_body = ReviewBody,
    responses((status = 200, description = "Done", body = jitgate_api::RequestDetail), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn approve(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<ReviewBody>,
) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.reviews().review(&caller, &id, Decision::Approve, &body).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/deny",
    tag = "requests",
    summary = "Deny a request; an eligible approver's deny ends it",
    params(("id" = String, Path, description = "the request's id")),
    request_body = ReviewBody,
    responses((status = 200, description = "Done", body = jitgate_api::RequestDetail), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn deny(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<ReviewBody>,
) -> R<jitgate_api::RequestDetail> {
    Ok(Json(s.reviews().review(&caller, &id, Decision::Deny, &body).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/cancel",
    tag = "requests",
    summary = "Cancel your own pending request",
    params(("id" = String, Path, description = "the request's id")),
    responses((status = 200, description = "Done", body = jitgate_core::request::AccessRequest), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn cancel(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> R<jitgate_core::request::AccessRequest> {
    Ok(Json(s.requests().cancel(&caller, &id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/ack",
    tag = "requests",
    summary = "Acknowledge a break-glass grant after the fact (someone who approves for the role)",
    params(("id" = String, Path, description = "the request's id")),
    request_body = AckBody,
    responses((status = 200, description = "Done", body = jitgate_core::request::AccessRequest), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn acknowledge(
    State(s): State<AppState>,
    caller: Caller,
    P(id): P<String>,
    Json(body): Json<AckBody>,
) -> R<jitgate_core::request::AccessRequest> {
    Ok(Json(s.reviews().acknowledge(&caller, &id, &body.comment).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "requests",
    summary = "Your alerts (break-glass on resources you approve for), newest first; limit",
    params(LimitQuery),
    responses((status = 200, description = "Done", body = Vec<jitgate_api::NotificationView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn notifications(State(s): State<AppState>, caller: Caller, Q(q): Q<LimitQuery>) -> R<Vec<jitgate_api::NotificationView>> {
    Ok(Json(s.requests().notifications(&caller, q.limit).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/policy/explain",
    tag = "requests",
    summary = "Each action's policy decision for a person, role and duration, with the deciding policy ids",
    request_body = ExplainBody,
    responses((status = 200, description = "Done", body = jitgate_api::Explanation), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn explain(State(s): State<AppState>, caller: Caller, Json(body): Json<ExplainBody>) -> R<jitgate_api::Explanation> {
    Ok(Json(s.policies().explain(&caller, &body).await?))
}
