//! Administration: reloading policies, resources and their upstream logins.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/reload", post(reload))
        .route("/admin/resources/{name}", put(put_resource).delete(delete_resource))
        .route("/admin/resources/{name}/check", get(check_resource))
        .route(
            "/admin/resources/{name}/credential",
            put(put_resource_credential).delete(delete_resource_credential),
        )
}

/// `?role=R`: the password of role R's own login instead of the service login's.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialQuery {
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/reload",
    tag = "admin",
    summary = "Reload the Cedar policy files; a bad set is refused and the last good one stays",
    responses((status = 200, description = "Done", body = jitgate_api::PolicyReport), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn reload(State(s): State<AppState>, caller: Caller) -> R<jitgate_api::PolicyReport> {
    Ok(Json(s.policies().admin_reload(&caller).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/resources/{name}",
    tag = "admin",
    summary = "Create or replace a resource (not one from the config file)",
    params(("name" = ResourceName, Path, description = "the resource name")),
    request_body = Resource,
    responses((status = 200, description = "Done", body = jitgate_api::ResourceView), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn put_resource(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Json(resource): Json<Resource>,
) -> R<jitgate_api::ResourceView> {
    if resource.name.as_str() != name {
        return Err(ServiceError::bad_request(
            "name_mismatch",
            format!("the body names '{}' but the path names '{name}'", resource.name),
        )
        .into());
    }
    Ok(Json(s.resources().put(&caller, resource).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/resources/{name}",
    tag = "admin",
    summary = "Delete a resource (not one from the config file)",
    params(("name" = ResourceName, Path, description = "the resource name")),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn delete_resource(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ServiceError::not_found("resource"))?;
    s.resources().delete(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/resources/{name}/check",
    tag = "admin",
    summary = "What each role's upstream login can really do: attributes, memberships, refusals (admins)",
    params(("name" = ResourceName, Path, description = "the resource name")),
    responses((status = 200, description = "Done", body = jitgate_api::ResourceCheck), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn check_resource(State(s): State<AppState>, caller: Caller, P(name): P<String>) -> R<jitgate_api::ResourceCheck> {
    let name = ResourceName::parse(&name).map_err(|_| ServiceError::not_found("resource"))?;
    Ok(Json(s.resources().check(&caller, &name).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/resources/{name}/credential",
    tag = "admin",
    summary = "Store an upstream password, sealed: the service login's, or with ?role= that role's own login's (admins)",
    params(("name" = ResourceName, Path, description = "the resource name"), CredentialQuery),
    request_body = CredentialBody,
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn put_resource_credential(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<CredentialQuery>,
    Json(body): Json<CredentialBody>,
) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ServiceError::not_found("resource"))?;
    let password = secrecy::SecretString::from(body.password.0);
    s.resources().set_credential(&caller, &name, q.role.as_deref(), &password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/api/v1/admin/resources/{name}/credential",
    tag = "admin",
    summary = "Remove a stored upstream password (?role= as for storing; admins)",
    params(("name" = ResourceName, Path, description = "the resource name"), CredentialQuery),
    responses((status = 204, description = "Done"), Refusals),
    security(("bearer" = [])),
)]
pub(super) async fn delete_resource_credential(
    State(s): State<AppState>,
    caller: Caller,
    P(name): P<String>,
    Q(q): Q<CredentialQuery>,
) -> Result<StatusCode, ApiError> {
    let name = ResourceName::parse(&name).map_err(|_| ServiceError::not_found("resource"))?;
    s.resources().clear_credential(&caller, &name, q.role.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
