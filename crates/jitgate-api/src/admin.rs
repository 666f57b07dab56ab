//! Resources as administrators see and check them, and their upstream credentials.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceView {
    #[serde(flatten)]
    pub resource: Resource,
    pub managed_by: String,
    /// Where the gateway's upstream password comes from (`sealed`, `env` or `none`); shown to
    /// administrators, for resources with a postgres target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_credential: Option<String>,
}

/// The resource's own fields and the two this view adds, as one object: `Resource` refuses
/// unknown fields when it is read (`additionalProperties: false`), so the `allOf` that
/// `#[serde(flatten)]` would be documented as could never be satisfied.
impl utoipa::PartialSchema for ResourceView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
        use utoipa::openapi::RefOr;
        let mut view = match <Resource as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(o)) => o,
            _ => Object::new(),
        };
        view.additional_properties = None;
        view.description = Some("A resource as the API shows it: its configuration and who manages it".into());
        view.properties.insert(
            "managed_by".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("`config` or `api`"))
                .into(),
        );
        view.required.push("managed_by".into());
        view.properties.insert(
            "upstream_credential".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "Where the gateway's upstream password comes from (`sealed`, `env` or `none`); shown to administrators",
                ))
                .into(),
        );
        RefOr::T(Schema::Object(view))
    }
}

impl utoipa::ToSchema for ResourceView {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <Resource as utoipa::ToSchema>::schemas(schemas);
    }
}

/// `PUT /admin/resources/{name}/credential`: the upstream login's password, sealed when stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// 1 to 1,024 characters, no NUL.
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 1024, pattern = "^[^\\u0000]*$")]
    pub password: SecretText,
}

/// What each role of a resource gives a session upstream: `jitgate admin resource check`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceCheck {
    pub resource: String,
    /// The service login (the provisioner's, and the sessions' of roles without a login).
    pub service: LoginCheck,
    pub roles: Vec<RoleCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleCheck {
    pub role: String,
    /// `proxy` or `ephemeral`.
    pub access: String,
    /// The login sessions use; for ephemeral roles, what the grant's role will be member of.
    pub login: LoginCheck,
    pub allow_privileged_login: bool,
    /// Whether sessions on this role start (false: refused as privileged, or unreachable).
    pub sessions_allowed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginCheck {
    pub name: String,
    /// Whether the gateway could log in and read the login's roles.
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The login's own attributes (SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, CREATEDB).
    pub attributes: Vec<String>,
    /// Every role it is a member of, directly or not, with their attributes.
    pub member_of: Vec<MemberOf>,
    /// What makes the login privileged, in words; empty when it is not.
    pub privileges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberOf {
    pub role: String,
    pub attributes: Vec<String>,
}
