//! Notifications: the channels and their outbox, retrying a failed message, channels'
//! secrets, and people's e-mail addresses (administrators).

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/notifications", get(list_notifications))
        .route("/admin/notifications/{id}/retry", post(retry_notification))
        .route(
            "/admin/channels/{name}/secret",
            put(put_channel_secret).delete(delete_channel_secret),
        )
        .route("/admin/users/{name}/email", put(put_user_email))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboxQuery {
    /// Only messages in this state.
    status: Option<jitgate_api::DeliveryState>,
    /// One channel's messages.
    channel: Option<String>,
    /// At most this many (1 to 1,000; others are brought within).
    #[serde(default = "fifty")]
    limit: i64,
}

fn fifty() -> i64 {
    50
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/notifications",
    tag = "admin",
    summary = "The notification channels and their messages, newest first (admins)",
    params(OutboxQuery),
    responses((status = 200, description = "Done", body = jitgate_api::NotificationsOverview), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_notifications(
    State(s): State<AppState>,
    caller: Caller,
    Q(q): Q<OutboxQuery>,
) -> R<jitgate_api::NotificationsOverview> {
    Ok(Json(
        s.notifications()
            .overview(
                &caller,
                q.status.map(jitgate_api::DeliveryState::as_str),
                q.channel.as_deref(),
                q.limit,
            )
            .await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/notifications/{id}/retry",
    tag = "admin",
    summary = "Queue a failed notification again (admins)",
    params(("id" = String, Path, description = "the notification's id")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn retry_notification(State(s): State<AppState>, caller: Caller, P(id): P<String>) -> Result<StatusCode, ApiError> {
    s.notifications().retry(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/channels/{name}/secret",
    tag = "admin",
    summary = "Store a notification channel's secret, sealed (admins)",
    params(("name" = String, Path, description = "the channel's name")),
    request_body = jitgate_api::ChannelSecretBody,
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn put_channel_secret(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(body): Json<jitgate_api::ChannelSecretBody>,
) -> Result<StatusCode, ApiError> {
    let secret = secrecy::SecretString::from(body.secret.0);
    s.notifications().set_secret(&caller, &name, Some(&secret)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/channels/{name}/secret",
    tag = "admin",
    summary = "Remove a notification channel's secret (admins)",
    params(("name" = String, Path, description = "the channel's name")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn delete_channel_secret(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> Result<StatusCode, ApiError> {
    s.notifications().set_secret(&caller, &name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{name}/email",
    tag = "identity",
    summary = "Set or remove a user's e-mail address, where notifications by e-mail go (admins)",
    params(("name" = Username, Path, description = "the user name")),
    request_body = jitgate_api::EmailBody,
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn put_user_email(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(body): Json<jitgate_api::EmailBody>,
) -> Result<StatusCode, ApiError> {
    let user = Username::parse(&name).map_err(|_| ServiceError::not_found("user"))?;
    s.notifications().set_email(&caller, &user, body.email.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
