//! How the server reaches a resource's upstream PostgreSQL: the service role's password (sealed
//! in the store, or from an environment variable), TLS as the resource's `sslmode` says, and
//! the administrators' verbs that set and clear the sealed password.

use crate::core::Core;
use jitgate_api::{LoginCheck, MemberOf};
use jitgate_core::names::{ResourceName, RoleName};
use jitgate_core::policy::{PostgresTarget, Resource, UpstreamTlsMode};
use jitgate_proxy::transport::UpstreamTls;
use jitgate_proxy::upstream::{LoginProfile, RoleAttributes, UpstreamTarget};
use secrecy::SecretString;

/// The associated data a sealed upstream password is bound to: the resource, and the role
/// for a role's own login.
pub(crate) fn credential_owner(resource: &ResourceName, role: Option<&RoleName>) -> String {
    match role {
        None => format!("resource-credential:{resource}"),
        Some(role) => format!("resource-credential:{resource}/{role}"),
    }
}

/// Where a resource's upstream password comes from, for listings.
pub fn credential_source(target: &PostgresTarget, sealed: bool) -> &'static str {
    if sealed {
        "sealed"
    } else if target.password_env.is_some() {
        "env"
    } else {
        "none"
    }
}

/// The longest upstream password accepted (PostgreSQL's own limit is far above any real one).
pub(crate) const MAX_PASSWORD: usize = 1024;

/// Who the gateway logs in upstream as.
pub enum Login<'a> {
    /// The resource's service login (`postgres.user`): the provisioner's, never a session's
    /// unless a role has no login of its own.
    Service,
    /// The login of a `proxy` role: its own `login`, or the service login when it has none.
    Role(&'a RoleName),
    /// A grant's own ephemeral role, for a session on `role`.
    Ephemeral(&'a RoleName, String, SecretString),
}

impl Core {
    /// A stored or configured upstream password: the sealed one for `role` (`None`: the service
    /// login) first, else the environment variable named, else none (a `trust` upstream).
    async fn upstream_password(
        &self,
        resource: &Resource,
        role: Option<&RoleName>,
        env: Option<&str>,
    ) -> Result<Option<SecretString>, String> {
        let stored = self
            .store
            .resource_credential(&resource.name, role)
            .await
            .map_err(|e| format!("the store is unavailable: {e}"))?;
        if let Some(record) = stored {
            let sealed = jitgate_auth::secret_box::Sealed {
                key_version: record.key_version,
                data: record.sealed_password,
            };
            let plain = self
                .secrets
                .open(&sealed, &credential_owner(&resource.name, role))
                .map_err(|e| format!("the sealed upstream password cannot be opened: {e}"))?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| "the sealed upstream password is not text".to_owned())?;
            return Ok(Some(SecretString::from(text)));
        }
        match env {
            Some(var) => std::env::var(var)
                .map(|p| Some(SecretString::from(p)))
                .map_err(|_| format!("no upstream password: none is stored and {var} is not set")),
            None => Ok(None),
        }
    }

    /// A login to the resource's upstream.
    pub async fn upstream_target(&self, resource: &Resource, login: Login<'_>, application: &str) -> Result<UpstreamTarget, String> {
        let t = resource.postgres.as_ref().ok_or("the resource has no postgres target")?;
        let service = || self.upstream_password(resource, None, t.password_env.as_deref());
        let (user, password, allow_privileged) = match login {
            Login::Service => (t.user.clone(), service().await?, true),
            Login::Role(role) => {
                let policy = resource.roles.get(role).ok_or_else(|| format!("no role {role}"))?;
                match &policy.login {
                    Some(own) => {
                        let pw = self.upstream_password(resource, Some(role), policy.password_env.as_deref()).await?;
                        (own.clone(), pw, policy.allow_privileged_login)
                    }
                    None => (t.user.clone(), service().await?, policy.allow_privileged_login),
                }
            }
            Login::Ephemeral(role, user, password) => {
                let policy = resource.roles.get(role).ok_or_else(|| format!("no role {role}"))?;
                (user, Some(password), policy.allow_privileged_login)
            }
        };
        Ok(UpstreamTarget {
            host: t.host.clone(),
            port: t.port,
            database: t.database.clone(),
            user,
            password,
            allow_privileged,
            application_name: application.to_owned(),
            tls: upstream_tls(t)?,
        })
    }
}

fn attribute_names(r: &RoleAttributes) -> Vec<String> {
    [
        (r.superuser, "SUPERUSER"),
        (r.createrole, "CREATEROLE"),
        (r.bypassrls, "BYPASSRLS"),
        (r.replication, "REPLICATION"),
        (r.createdb, "CREATEDB"),
    ]
    .into_iter()
    .filter(|(has, _)| *has)
    .map(|(_, name)| name.to_owned())
    .collect()
}

pub(crate) fn login_check(name: String, profile: Result<LoginProfile, String>) -> LoginCheck {
    match profile {
        Ok(p) => LoginCheck {
            name,
            reachable: true,
            error: None,
            attributes: p.login.as_ref().map(attribute_names).unwrap_or_default(),
            member_of: p
                .member_of
                .iter()
                .map(|m| MemberOf {
                    role: m.name.clone(),
                    attributes: attribute_names(m),
                })
                .collect(),
            privileges: p.privileges(),
        },
        Err(e) => LoginCheck {
            name,
            reachable: false,
            error: Some(e),
            attributes: Vec::new(),
            member_of: Vec::new(),
            privileges: Vec::new(),
        },
    }
}

/// The resource's `sslmode`, with its root certificates read.
fn upstream_tls(t: &PostgresTarget) -> Result<UpstreamTls, String> {
    let roots = || match &t.sslrootcert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
            UpstreamTls::roots_from_pem(&pem).map_err(|e| format!("sslrootcert {path}: {e}"))
        }
        None => Ok(UpstreamTls::public_roots()),
    };
    Ok(match t.tls_mode() {
        UpstreamTlsMode::Auto | UpstreamTlsMode::Disable => UpstreamTls::Disable,
        UpstreamTlsMode::Prefer => UpstreamTls::Prefer,
        UpstreamTlsMode::Require => UpstreamTls::Require,
        UpstreamTlsMode::VerifyCa => UpstreamTls::VerifyCa(roots()?),
        UpstreamTlsMode::VerifyFull => UpstreamTls::VerifyFull(roots()?),
    })
}
