//! Ephemeral database roles: for a grant on a role with `access = "ephemeral"`, a login role
//! `jit_<user>_<grant>` with a random password, `VALID UNTIL` the grant's end, member of the
//! role's `db_roles`; when the grant ends it is switched off, its backends terminated, what it
//! owns reassigned and dropped, and the role dropped. A failed removal is recorded as
//! `revocation_pending` and retried until it is confirmed.

use crate::core::{AppState, Core, GrantEventKind};
use crate::error::ApiError;
use crate::upstream::Login;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::Grant;
use jitgate_core::policy::{AccessMode, Resource};
use jitgate_core::Timestamp;
use jitgate_proxy::upstream::{execute, quote_identifier as ident, quote_literal as lit};
use jitgate_store::EphemeralRoleRecord;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::Duration;

const RETRY_EVERY: Duration = Duration::from_secs(5);
/// The application name the provisioner's upstream logins carry.
const PROVISIONER: &str = "jitgate-provisioner";

/// `jit_<user>_<grant id>`, in the characters PostgreSQL keeps without quoting.
pub fn role_name(grant: &Grant) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect::<String>()
    };
    format!("jit_{}_{}", clean(grant.user.as_str()), clean(grant.id.trim_start_matches("grt_")))
}

fn valid_until(t: Timestamp) -> String {
    t.to_rfc3339()
}

impl Core {
    async fn ephemeral_spec(&self, grant: &Grant) -> Result<Option<(Resource, Vec<String>)>, ApiError> {
        let Some(resource) = self.store.resource(&grant.resource).await? else {
            return Ok(None);
        };
        let Some(policy) = resource.roles.get(&grant.role) else {
            return Ok(None);
        };
        if policy.access != AccessMode::Ephemeral || resource.postgres.is_none() {
            return Ok(None);
        }
        let roles = policy.db_roles.clone();
        Ok(Some((resource, roles)))
    }

    /// The grant's own database role and its password, made now if it does not exist yet.
    /// `None` for grants on roles that are not ephemeral.
    pub async fn ensure_ephemeral(&self, grant: &Grant) -> Result<Option<(String, SecretString)>, ApiError> {
        let Some((resource, memberships)) = self.ephemeral_spec(grant).await? else {
            return Ok(None);
        };
        if let Some(existing) = self.store.ephemeral_role(&grant.id).await? {
            if existing.state != "active" {
                return Err(ApiError::conflict("grant_ended", "the grant's database role was removed"));
            }
            let sealed = jitgate_auth::secret_box::Sealed {
                key_version: existing.key_version,
                data: existing.sealed_password,
            };
            let password = self
                .secrets
                .open(&sealed, &existing.role_name)
                .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
            let password = String::from_utf8_lossy(&password).into_owned();
            return Ok(Some((existing.role_name, SecretString::from(password))));
        }
        let name = role_name(grant);
        let password = jitgate_auth::new_token("jitpw");
        let mut create = format!(
            "CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {}",
            ident(&name),
            lit(password.expose_secret()),
            lit(&valid_until(grant.ends_at))
        );
        if !memberships.is_empty() {
            create.push_str(&format!(
                " IN ROLE {}",
                memberships.iter().map(|r| ident(r)).collect::<Vec<_>>().join(", ")
            ));
        }
        let target = self
            .upstream_target(&resource, Login::Service, PROVISIONER)
            .await
            .map_err(|e| ApiError::conflict("upstream", e))?;
        execute(&target, &[create])
            .await
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "upstream", e.to_string()))?;
        let sealed = self.secrets.seal(password.expose_secret().as_bytes(), &name);
        let now = self.now();
        let (mut tx, start) = self.begin().await?;
        tx.put_ephemeral_role(&EphemeralRoleRecord {
            grant_id: grant.id.clone(),
            resource: grant.resource.clone(),
            role_name: name.clone(),
            key_version: sealed.key_version,
            sealed_password: sealed.data,
            state: "active".into(),
            last_error: None,
            created_at: now,
            revoked_at: None,
        })
        .await?;
        tx.append_audit(
            NewEvent::new(
                "system",
                "grant.db_role.create",
                grant.id.as_str(),
                Outcome::Success,
                json!({"role": name, "member_of": memberships}),
            ),
            now,
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(Some((name, SecretString::from(password.expose_secret().to_owned()))))
    }

    /// Removes the grant's database role; records it confirmed, or pending with the error.
    pub async fn retire_ephemeral(&self, grant_id: &str) {
        let Ok(Some(mut record)) = self.store.ephemeral_role(grant_id).await else {
            return;
        };
        if record.state == "revoked" {
            return;
        }
        let outcome = async {
            let resource = self
                .store
                .resource(&record.resource)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("resource gone")?;
            let target = self.upstream_target(&resource, Login::Service, PROVISIONER).await?;
            let role = ident(&record.role_name);
            let statements = vec![
                format!("ALTER ROLE {role} NOLOGIN"),
                format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}",
                    lit(&record.role_name)
                ),
                format!("REASSIGN OWNED BY {role} TO {}", ident(&target.user)),
                format!("DROP OWNED BY {role}"),
                format!("DROP ROLE {role}"),
            ];
            execute(&target, &statements).await.map_err(|e| e.to_string())
        }
        .await;
        let now = self.now();
        let (state, action, outcome_kind) = match &outcome {
            Ok(()) => ("revoked", "grant.db_role.revoked", Outcome::Success),
            Err(_) => ("revocation_pending", "grant.db_role.revoke_failed", Outcome::Failure),
        };
        record.state = state.into();
        record.last_error = outcome.err();
        record.revoked_at = (state == "revoked").then_some(now);
        let result = async {
            let (mut tx, start) = self.begin().await?;
            tx.put_ephemeral_role(&record).await?;
            tx.append_audit(
                NewEvent::new(
                    "system",
                    action,
                    grant_id,
                    outcome_kind,
                    json!({"role": record.role_name, "error": record.last_error}),
                ),
                now,
            )
            .await?;
            self.commit(tx, start).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, grant = grant_id, "could not record a database role's removal");
        }
    }
}

/// Makes roles as grants become active, removes them as grants end, and retries removals
/// that failed, until `stop`.
pub async fn run_provisioner(core: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut events = core.grant_events.subscribe();
    let mut retry = tokio::time::interval(RETRY_EVERY);
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { break },
            e = events.recv() => match e {
                Ok(e) => match e.kind {
                    GrantEventKind::Created | GrantEventKind::Activated if e.grant.effective_status(core.now()).is_live() => {
                        if let Err(err) = core.ensure_ephemeral(&e.grant).await {
                            tracing::warn!(grant = %e.grant.id, error = %err.message, "could not make the grant's database role (retried at connect)");
                        }
                    }
                    GrantEventKind::Expired | GrantEventKind::Revoked => core.retire_ephemeral(&e.grant.id).await,
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                Err(_) => {}
            },
            _ = retry.tick() => {
                for pending in core.store.ephemeral_roles_in("revocation_pending").await.unwrap_or_default() {
                    core.retire_ephemeral(&pending.grant_id).await;
                }
                // Grants that ended while nobody listened (before a start, say).
                for active in core.store.ephemeral_roles_in("active").await.unwrap_or_default() {
                    let live = core.store.grant(&active.grant_id).await.ok().flatten().is_some_and(|g| g.effective_status(core.now()).is_live());
                    if !live {
                        core.retire_ephemeral(&active.grant_id).await;
                    }
                }
            }
        }
    }
}
