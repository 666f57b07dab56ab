//! People: bootstrap, login and logout, who one is, users and groups.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/bootstrap", post(bootstrap))
        .route("/login", post(login))
        .route("/login/mfa", post(login_mfa))
        .route("/login/webauthn", post(login_webauthn))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/users/{name}/disable", post(disable_user))
        .route("/admin/users/{name}/enable", post(enable_user))
        .route("/admin/users/{name}/password", post(set_password))
        .route("/admin/users/{name}/unlock", post(unlock_user))
        .route("/admin/groups", get(list_groups))
        .route("/admin/groups/{group}/members/{user}", put(add_member).delete(remove_member))
}

fn username(name: &str) -> Result<Username, ApiError> {
    Ok(Username::parse(name).map_err(|_| ServiceError::not_found("user"))?)
}

fn group_and_user(group: &str, user: &str) -> Result<(GroupName, Username), ApiError> {
    let g = GroupName::parse(group).map_err(|e| ServiceError::bad_request("invalid_group", e))?;
    Ok((g, username(user)?))
}

#[utoipa::path(
    post,
    path = "/api/v1/bootstrap",
    tag = "identity",
    summary = "Exchange the one-time setup token for the first administrator and a session",
    request_body = BootstrapBody,
    responses((status = 201, description = "Created", body = jitgate_api::SessionToken), Refusals),
)]
pub(super) async fn bootstrap(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<BootstrapBody>,
) -> Result<(StatusCode, Json<jitgate_api::SessionToken>), ApiError> {
    s.limits.logins.check_http(from)?;
    Ok((StatusCode::CREATED, Json(s.identity().bootstrap(body).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "identity",
    summary = "Log in with user name and password (and a second factor, if given); returns a session, or a ticket when a second factor is due",
    request_body = LoginBody,
    responses((status = 200, description = "Done", body = jitgate_api::LoginOutcome), Refusals),
)]
pub(super) async fn login(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<LoginBody>,
) -> R<jitgate_api::LoginOutcome> {
    s.limits.logins.check_http(from)?;
    Ok(Json(to_the_end(async move { s.identity().login(body).await }).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/login/mfa",
    tag = "identity",
    summary = "Finish a login with its ticket and a second factor",
    request_body = LoginMfaBody,
    responses((status = 200, description = "Done", body = jitgate_api::SessionToken), Refusals),
)]
pub(super) async fn login_mfa(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<LoginMfaBody>,
) -> R<jitgate_api::SessionToken> {
    s.limits.logins.check_http(from)?;
    Ok(Json(to_the_end(async move { s.identity().login_mfa(body).await }).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/login/webauthn",
    tag = "identity",
    summary = "A WebAuthn challenge for the user behind a login ticket",
    request_body = TicketBody,
    responses((status = 200, description = "Done", body = jitgate_api::WebauthnChallenge), Refusals),
)]
pub(super) async fn login_webauthn(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    Json(body): Json<TicketBody>,
) -> R<jitgate_api::WebauthnChallenge> {
    s.limits.logins.check_http(from)?;
    Ok(Json(s.identity().login_webauthn_challenge(&body.ticket).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/logout",
    tag = "identity",
    summary = "End this session",
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn logout(State(s): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    s.identity().logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "identity",
    summary = "The logged-in person, their groups and session expiry",
    responses((status = 200, description = "Done", body = jitgate_api::WhoAmI), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn whoami(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::WhoAmI> {
    Ok(Json(s.identity().whoami(&caller)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "identity",
    summary = "List users",
    responses((status = 200, description = "Done", body = Vec<jitgate_api::UserView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_users(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::UserView>> {
    Ok(Json(s.users().list(&caller).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "identity",
    summary = "Create a user",
    request_body = CreateUserBody,
    responses((status = 201, description = "Created", body = jitgate_api::UserView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateUserBody>,
) -> Result<(StatusCode, Json<jitgate_api::UserView>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.users().create(&caller, body).await?)))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{name}/disable",
    tag = "identity",
    summary = "Disable a user: ends their sessions and revokes their grants",
    params(("name" = Username, Path, description = "the user name")),
    responses((status = 200, description = "Done", body = jitgate_api::UserView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn disable_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::UserView> {
    Ok(Json(s.users().set_disabled(&caller, &username(&name)?, true).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{name}/enable",
    tag = "identity",
    summary = "Enable a user",
    params(("name" = Username, Path, description = "the user name")),
    responses((status = 200, description = "Done", body = jitgate_api::UserView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn enable_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::UserView> {
    Ok(Json(s.users().set_disabled(&caller, &username(&name)?, false).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{name}/password",
    tag = "identity",
    summary = "Set a password (admins, or a person for themselves)",
    params(("name" = Username, Path, description = "the user name")),
    request_body = PasswordBody,
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn set_password(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let name = username(&name)?;
    to_the_end(async move { s.users().set_password(&caller, &name, body).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users/{name}/unlock",
    tag = "identity",
    summary = "Lift an account's attempt limit or lock (admins)",
    params(("name" = Username, Path, description = "the user name")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn unlock_user(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> Result<StatusCode, ApiError> {
    let name = Username::parse(&name).map_err(|_| ServiceError::not_found("user"))?;
    s.users().unlock(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/groups",
    tag = "identity",
    summary = "Groups and members",
    responses((status = 200, description = "Done", body = Vec<jitgate_api::GroupView>), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn list_groups(State(s): State<AppState>, caller: Caller) -> R<Vec<jitgate_api::GroupView>> {
    Ok(Json(s.users().groups(&caller).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/groups/{group}/members/{user}",
    tag = "identity",
    summary = "Add a member",
    params(("group" = GroupName, Path, description = "the group name"), ("user" = Username, Path, description = "the user name")),
    responses((status = 200, description = "Done", body = jitgate_api::GroupView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn add_member(
    State(s): State<AppState>,
    caller: Caller,
    P((group, user)): P<(String, String)>,
) -> R<jitgate_api::GroupView> {
    let (g, u) = group_and_user(&group, &user)?;
    Ok(Json(s.users().set_membership(&caller, &g, &u, true).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/groups/{group}/members/{user}",
    tag = "identity",
    summary = "Remove a member",
    params(("group" = GroupName, Path, description = "the group name"), ("user" = Username, Path, description = "the user name")),
    responses((status = 200, description = "Done", body = jitgate_api::GroupView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn remove_member(
    State(s): State<AppState>,
    caller: Caller,
    P((group, user)): P<(String, String)>,
) -> R<jitgate_api::GroupView> {
    let (g, u) = group_and_user(&group, &user)?;
    Ok(Json(s.users().set_membership(&caller, &g, &u, false).await?))
}
