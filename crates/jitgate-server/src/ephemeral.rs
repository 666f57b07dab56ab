//! Ephemeral database roles: for a grant on a role with `access = "ephemeral"`, a login role
//! `jit_<user>_<grant>` with a random password, `VALID UNTIL` the grant's end, member of the
//! role's `db_roles`; when the grant ends it is switched off, its backends terminated, what it
//! owns dropped (or handed to the resource's powerless `quarantine_role`, never to the service
//! login) in every database where it owns something, and the role dropped. A failed removal is
//! recorded as `revocation_pending` and retried with a growing delay until it is confirmed;
//! its first failure raises one alert to the administrators.
//!
//! The service login needs only `CREATEROLE` (not superuser): each grant's role is made with
//! the service login as its member (`ROLE`), which gives it the privileges of the grant's role
//! that `DROP OWNED` and `pg_terminate_backend` ask for.

use crate::core::{AppState, Core, GrantEventKind};
use crate::error::ServiceError;
use crate::upstream::Login;
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::{DbRoleState, Grant};
use jitgate_core::policy::{AccessMode, Resource};
use jitgate_core::Timestamp;
use jitgate_proxy::upstream::{execute, query_all, quote_identifier as ident, quote_literal as lit};
use jitgate_store::EphemeralRoleRecord;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const RETRY_EVERY: Duration = Duration::from_secs(5);
/// The application name the provisioner's upstream logins carry.
const PROVISIONER: &str = "jitgate-provisioner";
/// How long a CREATE ROLE that failed waits for another instance's record of the same role.
const MADE_ELSEWHERE_POLL: Duration = Duration::from_millis(100);
const MADE_ELSEWHERE_POLLS: u32 = 20;

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
    async fn ephemeral_spec(&self, grant: &Grant) -> Result<Option<(Resource, Vec<String>)>, ServiceError> {
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
    pub async fn ensure_ephemeral(&self, grant: &Grant) -> Result<Option<(String, SecretString)>, ServiceError> {
        let Some((resource, memberships)) = self.ephemeral_spec(grant).await? else {
            return Ok(None);
        };
        let making = self.role_making.lock_for(&grant.id);
        let _making = making.lock().await;
        if let Some(existing) = self.store.ephemeral_role(&grant.id).await? {
            return self.open_role(existing).map(Some);
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
            .map_err(|e| ServiceError::conflict("upstream", e))?;
        create.push_str(&format!(" ROLE {}", ident(&target.user)));
        if let Err(e) = execute(&target, &[create]).await {
            // Another instance may be making the same role (its provisioner on the grant's
            // event, this one at a first connect): its record follows its CREATE ROLE.
            for _ in 0..MADE_ELSEWHERE_POLLS {
                if let Some(existing) = self.store.ephemeral_role(&grant.id).await? {
                    return self.open_role(existing).map(Some);
                }
                tokio::time::sleep(MADE_ELSEWHERE_POLL).await;
            }
            return Err(ServiceError::new(crate::error::ErrorKind::Upstream, "upstream", e.to_string()));
        }
        let sealed = self.secrets.seal(password.expose_secret().as_bytes(), &name);
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.put_ephemeral_role(&EphemeralRoleRecord {
            grant_id: grant.id.clone(),
            resource: grant.resource.clone(),
            role_name: name.clone(),
            key_version: sealed.key_version,
            sealed_password: sealed.data,
            state: DbRoleState::Active,
            last_error: None,
            created_at: now,
            revoked_at: None,
        })
        .await?;
        tx.append_audit(
            NewEvent::new(
                "system",
                actions::GRANT_DB_ROLE_CREATE,
                grant.id.as_str(),
                Outcome::Success,
                json!({"role": name, "member_of": memberships}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(Some((name, SecretString::from(password.expose_secret().to_owned()))))
    }

    /// The name and password of a role made before, while it is active.
    fn open_role(&self, existing: EphemeralRoleRecord) -> Result<(String, SecretString), ServiceError> {
        if existing.state != DbRoleState::Active {
            return Err(ServiceError::conflict("grant_ended", "the grant's database role was removed"));
        }
        let sealed = jitgate_auth::secret_box::Sealed {
            key_version: existing.key_version,
            data: existing.sealed_password,
        };
        let password = self
            .secrets
            .open(&sealed, &existing.role_name)
            .map_err(|e| ServiceError::new(crate::error::ErrorKind::Internal, "internal", e.to_string()))?;
        let password = String::from_utf8_lossy(&password).into_owned();
        Ok((existing.role_name, SecretString::from(password)))
    }

    /// Removes the grant's database role; records it confirmed, or pending with the error.
    /// True once it is gone.
    pub async fn retire_ephemeral(&self, grant_id: &str) -> bool {
        let Ok(Some(mut record)) = self.store.ephemeral_role(grant_id).await else {
            return false;
        };
        if record.state == DbRoleState::Revoked {
            return true;
        }
        let outcome = async {
            let resource = self
                .store
                .resource(&record.resource)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("resource gone")?;
            let target = self.upstream_target(&resource, Login::Service, PROVISIONER).await?;
            let quarantine = resource.postgres.as_ref().and_then(|p| p.quarantine_role.clone());
            remove_role(&target, &record.role_name, quarantine.as_deref()).await
        }
        .await;
        let now = self.now();
        let (state, action, outcome_kind) = match &outcome {
            Ok(()) => (DbRoleState::Revoked, actions::GRANT_DB_ROLE_REVOKED, Outcome::Success),
            Err(_) => (
                DbRoleState::RevocationPending,
                actions::GRANT_DB_ROLE_REVOKE_FAILED,
                Outcome::Failure,
            ),
        };
        // A retry that fails as the last one did changes nothing worth an event: the first
        // failure is on the record (with an alert), and so is the confirmation.
        let first_failure = record.state != DbRoleState::RevocationPending;
        let repeated = !first_failure && outcome.is_err() && record.last_error == outcome.as_ref().err().cloned();
        record.state = state;
        record.last_error = outcome.err();
        record.revoked_at = (state == DbRoleState::Revoked).then_some(now);
        if repeated {
            tracing::warn!(grant = grant_id, error = ?record.last_error, "a database role's removal failed again");
            return false;
        }
        let result = async {
            let mut tx = self.begin().await?;
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
            if first_failure && record.state == DbRoleState::RevocationPending {
                self.alert_stuck_revocation(&mut *tx, &record, now).await?;
            }
            self.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, grant = grant_id, "could not record a database role's removal");
        }
        record.state == DbRoleState::Revoked
    }

    /// One alert to every administrator: a grant's database role outlives its grant.
    async fn alert_stuck_revocation(
        &self,
        tx: &mut dyn jitgate_store::WriteTx,
        record: &EphemeralRoleRecord,
        now: Timestamp,
    ) -> Result<(), jitgate_store::StoreError> {
        let recipients = self.administrators().await?;
        let message = format!(
            "The database role {} of grant {} on {} could not be removed: {}. It is disabled (NOLOGIN) if the \
             upstream took that; jitgate keeps retrying. Check the service login's privileges (README, \
             \"Ephemeral access\").",
            record.role_name,
            record.grant_id,
            record.resource,
            record.last_error.as_deref().unwrap_or("unknown error")
        );
        crate::core::alert(
            tx,
            "revocation_stuck",
            &record.grant_id,
            &message,
            &recipients,
            Outcome::Failure,
            json!({"role": record.role_name}),
            now,
        )
        .await
    }
}

/// The removal of one role: a growing delay between attempts.
struct Backoff {
    attempts: u32,
    next: tokio::time::Instant,
}

/// Retry delays: 5 s, doubling, at most 10 minutes.
fn retry_delay(attempts: u32) -> Duration {
    RETRY_EVERY.saturating_mul(1u32 << attempts.min(7)).min(Duration::from_secs(600))
}

/// Makes roles as grants become active, removes them as grants end, and retries removals
/// that failed (each with its own growing delay), until `stop`.
pub async fn run_provisioner(core: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut events = core.grant_events.subscribe();
    let mut retry = tokio::time::interval(RETRY_EVERY);
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
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
                    GrantEventKind::Expired | GrantEventKind::Revoked => {
                        let gone = core.retire_ephemeral(&e.grant.id).await;
                        if !gone {
                            backoff.insert(e.grant.id.clone(), Backoff { attempts: 1, next: tokio::time::Instant::now() + retry_delay(0) });
                        }
                    }
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                Err(_) => {}
            },
            _ = retry.tick() => {
                let now = tokio::time::Instant::now();
                for pending in core.store.ephemeral_roles_in(DbRoleState::RevocationPending).await.unwrap_or_default() {
                    let due = backoff.get(&pending.grant_id).is_none_or(|b| b.next <= now);
                    if !due {
                        continue;
                    }
                    if core.retire_ephemeral(&pending.grant_id).await {
                        backoff.remove(&pending.grant_id);
                    } else {
                        let b = backoff.entry(pending.grant_id.clone()).or_insert(Backoff { attempts: 0, next: now });
                        b.next = now + retry_delay(b.attempts);
                        b.attempts += 1;
                    }
                }
                // Grants that ended while nobody listened (before a start, say).
                for active in core.store.ephemeral_roles_in(DbRoleState::Active).await.unwrap_or_default() {
                    let live = core.store.grant(&active.grant_id).await.ok().flatten().is_some_and(|g| g.effective_status(core.now()).is_live());
                    if !live {
                        core.retire_ephemeral(&active.grant_id).await;
                    }
                }
            }
        }
    }
}

/// Ends a grant's role upstream, as the service login `t`: no more logins, its backends gone,
/// what it owns (in every database) dropped or quarantined, its privileges revoked, the role
/// dropped.
async fn remove_role(t: &jitgate_proxy::upstream::UpstreamTarget, role_name: &str, quarantine: Option<&str>) -> Result<(), String> {
    let role = ident(role_name);
    let release = || {
        let mut v = Vec::new();
        if let Some(q) = quarantine {
            v.push(format!("REASSIGN OWNED BY {role} TO {}", ident(q)));
        }
        v.push(format!("DROP OWNED BY {role}"));
        v
    };
    let mut first = vec![
        format!("ALTER ROLE {role} NOLOGIN"),
        // Its memberships go first: should what follows fail (an object of another role that
        // depends on one of its own, say), the role keeps no privilege it had through them.
        format!(
            "DO $jitgate$ DECLARE g record; BEGIN FOR g IN SELECT r.rolname FROM pg_catalog.pg_auth_members m \
             JOIN pg_catalog.pg_roles r ON r.oid = m.roleid WHERE m.member = {}::regrole \
             LOOP EXECUTE format('REVOKE %I FROM %I', g.rolname, {}); END LOOP; END $jitgate$",
            lit(role_name),
            lit(role_name)
        ),
        format!(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {}",
            lit(role_name)
        ),
    ];
    first.extend(release());
    // Where else it owns something or holds privileges (another database of the cluster).
    first.push(format!(
        "SELECT DISTINCT d.datname FROM pg_catalog.pg_shdepend s JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
         WHERE s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {}) AND d.datname <> current_database()",
        lit(role_name)
    ));
    let elsewhere = query_all(t, &first).await.map_err(|e| e.to_string())?;
    for db in elsewhere.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
        let mut there = t.clone();
        there.database = db.clone();
        execute(&there, &release()).await.map_err(|e| format!("in database {db}: {e}"))?;
    }
    execute(t, &[format!("DROP ROLE {role}")]).await.map_err(|e| e.to_string())
}
