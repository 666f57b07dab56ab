//! How the server reaches a resource's upstream PostgreSQL: the service role's password (sealed
//! in the store, or from an environment variable), TLS as the resource's `sslmode` says, and
//! the administrators' verbs that set and clear the sealed password.

use crate::core::{Caller, Core};
use crate::error::ApiError;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::ResourceName;
use jitgate_core::policy::{PostgresTarget, Resource, UpstreamTlsMode};
use jitgate_proxy::transport::UpstreamTls;
use jitgate_proxy::upstream::UpstreamTarget;
use jitgate_store::ResourceCredentialRecord;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// The associated data a resource's sealed password is bound to.
fn credential_owner(resource: &ResourceName) -> String {
    format!("resource-credential:{resource}")
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
const MAX_PASSWORD: usize = 1024;

impl Core {
    /// The service role's password: the sealed one in the store first, else the environment
    /// variable the resource names, else none (a `trust` upstream).
    pub async fn service_password(&self, resource: &Resource) -> Result<Option<SecretString>, String> {
        let target = resource.postgres.as_ref().ok_or("the resource has no postgres target")?;
        let stored = self
            .store
            .resource_credential(&resource.name)
            .await
            .map_err(|e| format!("the store is unavailable: {e}"))?;
        if let Some(record) = stored {
            let sealed = jitgate_auth::secret_box::Sealed {
                key_version: record.key_version,
                data: record.sealed_password,
            };
            let plain = self
                .secrets
                .open(&sealed, &credential_owner(&resource.name))
                .map_err(|e| format!("the sealed upstream password cannot be opened: {e}"))?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| "the sealed upstream password is not text".to_owned())?;
            return Ok(Some(SecretString::from(text)));
        }
        match &target.password_env {
            Some(var) => std::env::var(var)
                .map(|p| Some(SecretString::from(p)))
                .map_err(|_| format!("no upstream password: none is stored and {var} is not set")),
            None => Ok(None),
        }
    }

    /// A login to the resource's upstream as `user` (the service role unless given).
    pub async fn upstream_target(
        &self,
        resource: &Resource,
        login: Option<(String, SecretString)>,
        set_role: Option<String>,
        application: &str,
    ) -> Result<UpstreamTarget, String> {
        let t = resource.postgres.as_ref().ok_or("the resource has no postgres target")?;
        let (user, password) = match login {
            Some((user, password)) => (user, Some(password)),
            None => (t.user.clone(), self.service_password(resource).await?),
        };
        Ok(UpstreamTarget {
            host: t.host.clone(),
            port: t.port,
            database: t.database.clone(),
            user,
            password,
            set_role,
            application_name: application.to_owned(),
            tls: upstream_tls(t)?,
        })
    }

    pub async fn set_resource_credential(&self, caller: &Caller, name: &ResourceName, password: &SecretString) -> Result<(), ApiError> {
        self.require_admin(caller, "set_resource_credential").await?;
        let text = password.expose_secret();
        if text.is_empty() || text.len() > MAX_PASSWORD || text.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_password",
                format!("the upstream password must be 1 to {MAX_PASSWORD} bytes without NUL"),
            ));
        }
        let resource = self.store.resource(name).await?.ok_or_else(|| ApiError::not_found("resource"))?;
        if resource.postgres.is_none() {
            return Err(ApiError::bad_request(
                "no_upstream",
                format!("resource '{name}' has no postgres target to log in to"),
            ));
        }
        let sealed = self.secrets.seal(text.as_bytes(), &credential_owner(name));
        let (mut tx, start) = self.begin().await?;
        tx.put_resource_credential(&ResourceCredentialRecord {
            resource: name.clone(),
            key_version: sealed.key_version,
            sealed_password: sealed.data,
            updated_at: self.now(),
            updated_by: caller.user.name.clone(),
        })
        .await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                "resource.credential.set",
                name.as_str(),
                Outcome::Success,
                json!({"key_version": sealed.key_version}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(())
    }

    pub async fn clear_resource_credential(&self, caller: &Caller, name: &ResourceName) -> Result<(), ApiError> {
        self.require_admin(caller, "clear_resource_credential").await?;
        let (mut tx, start) = self.begin().await?;
        if !tx.delete_resource_credential(name).await? {
            return Err(ApiError::not_found("stored credential"));
        }
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                "resource.credential.clear",
                name.as_str(),
                Outcome::Success,
                json!({}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(())
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
