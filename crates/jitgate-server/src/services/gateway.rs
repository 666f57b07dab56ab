//! The gateway as people use it: one-time connect tokens, the list of live sessions, and ending one.

use super::*;
use crate::core::Caller;
use crate::error::{ErrorKind, ServiceError};
use crate::live_sessions::KILLED_BY_ADMIN;
use crate::policy::{Asked, Subject};
use jitgate_api::{ConnectBody, ConnectToken};
use jitgate_auth::{new_token, token_hash};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::GrantStatus;
use jitgate_core::names::Username;
use jitgate_core::policy::MfaAction;
use jitgate_core::{actions, DomainError};
use jitgate_policy::PolicyAction;
use jitgate_store::{ConnectTokenRecord, GatewaySession, KillTarget, SessionKill};
use secrecy::ExposeSecret;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a connect token may wait to be used.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// The most sessions one connect token may open.
const MAX_USES: u32 = 10_000;

impl Gateway<'_> {
    /// A one-time token to open one gateway session on a live grant of the caller's.
    pub async fn connect_token(
        &self,
        caller: &Caller,
        body: &ConnectBody,
        gateway: Option<SocketAddr>,
    ) -> Result<ConnectToken, ServiceError> {
        let Some(gateway) = gateway else {
            return Err(ServiceError::conflict("no_gateway", "this server runs no gateway"));
        };
        let now = self.now();
        let resource = self.resources().named(&body.resource).await?;
        let live: Vec<_> = self
            .store
            .live_grants_of(&caller.user.name)
            .await?
            .into_iter()
            .filter(|g| g.resource == resource.name && g.effective_status(now) == GrantStatus::Active)
            .filter(|g| body.role.as_deref().is_none_or(|r| g.role.as_str() == r))
            .collect();
        // Any live grant for the role will do (two can overlap: an extension, or break-glass
        // beside a normal grant): the one that ends last. Only grants for several roles need
        // the caller to choose.
        let mut roles: Vec<&str> = live.iter().map(|g| g.role.as_str()).collect();
        roles.sort_unstable();
        roles.dedup();
        let grant = match roles.as_slice() {
            [] => {
                return Err(self
                    .refused(
                        caller,
                        actions::SESSION_CONNECT,
                        resource.name.as_str(),
                        DomainError::GrantNotLive {
                            status: "missing: request access first".into(),
                        },
                    )
                    .await)
            }
            [_] => live
                .iter()
                .max_by_key(|g| g.ends_at)
                .cloned()
                .ok_or_else(|| ServiceError::not_found("grant"))?,
            several => {
                return Err(ServiceError::bad_request(
                    "role_required",
                    format!(
                        "you have live grants for several roles here ({}): say which with --role",
                        several.join(", ")
                    ),
                ))
            }
        };
        let policy = resource.role(&grant.role)?.clone();
        if resource.postgres.is_none() {
            return Err(ServiceError::conflict(
                "not_a_database",
                "this resource has no postgres target for the gateway",
            ));
        }
        let target = format!("{}/{}", resource.name, grant.role);
        let who = Subject::of(caller);
        let asked = Asked {
            resource: &resource,
            role: &grant.role,
            duration: now.until(grant.ends_at),
            reason: "",
            ticket: None,
            start_at: None,
        };
        let d = self.policies().decide(PolicyAction::Connect, &who, &asked, now).await?;
        if !d.allowed && !d.policies.is_empty() {
            let e = DomainError::ForbiddenByPolicy {
                action: "connect".into(),
                policies: d.policies,
            };
            return Err(self.refused(caller, actions::SESSION_CONNECT, &target, e).await);
        }
        self.mfa()
            .step_up(
                caller,
                policy.needs_mfa(MfaAction::Connect),
                body.mfa.as_ref(),
                actions::SESSION_CONNECT,
                &target,
            )
            .await?;
        let uses = body.uses.unwrap_or(1);
        if !(1..=MAX_USES).contains(&uses) {
            return Err(ServiceError::bad_request(
                "invalid_uses",
                format!("uses must be between 1 and {MAX_USES}"),
            ));
        }
        let token = new_token("jgc");
        let record = ConnectTokenRecord {
            token_hash: token_hash(token.expose_secret()),
            user: caller.user.name.clone(),
            resource: resource.name.clone(),
            role: grant.role.clone(),
            grant_id: grant.id.clone(),
            created_at: now,
            expires_at: now.saturating_add(TOKEN_TTL).min(grant.ends_at),
            uses: i64::from(uses),
        };
        let mut tx = self.begin().await?;
        tx.insert_connect_token(&record).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::SESSION_TOKEN,
                grant.id.as_str(),
                Outcome::Success,
                json!({"resource": record.resource, "role": record.role, "uses": uses}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(ConnectToken {
            token: token.expose_secret().into(),
            username: caller.user.name.clone(),
            resource: record.resource.to_string(),
            role: record.role.to_string(),
            grant_id: record.grant_id,
            expires_at: record.expires_at,
            host: match &self.settings.gateway_public_host {
                Some(h) => h.clone(),
                None if gateway.ip().is_unspecified() => "127.0.0.1".to_owned(),
                None => gateway.ip().to_string(),
            },
            port: gateway.port(),
            dbname: resource.name.to_string(),
            uses,
            gateway_ca_pem: self.gateway_ca.get().map(|c| c.pem.clone()),
            gateway_ca_sha256: self.gateway_ca.get().map(|c| c.sha256.clone()),
        })
    }

    /// Gateway sessions: a person's own, or everyone's for administrators and audit readers.
    pub async fn sessions(&self, caller: &Caller, all: bool, live_only: bool) -> Result<Vec<GatewaySession>, ServiceError> {
        let user: Option<&Username> = if all {
            if !self.is_audit_reader(caller) {
                return Err(self
                    .forbid(caller, "list_sessions", "listing everyone's sessions needs an administrator")
                    .await);
            }
            None
        } else {
            Some(&caller.user.name)
        };
        Ok(self.store.db_sessions(user, live_only, 500).await?)
    }

    /// Ends a gateway session on whichever instance runs it: here at once, elsewhere through
    /// the store (recorded on the session, and sent when the change commits).
    pub async fn kill(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        self.require_admin(caller, "kill_session").await?;
        let kill = SessionKill {
            target: KillTarget::Session(id.to_owned()),
            reason: KILLED_BY_ADMIN.to_owned(),
        };
        let here = self.sessions.end(&kill) > 0;
        let recorded = async {
            let mut tx = self.begin().await?;
            let live = tx.kill_db_session(id, KILLED_BY_ADMIN).await?;
            if !live && !here {
                return Ok(false);
            }
            if live {
                tx.send_session_kill(&kill).await?;
            }
            tx.append_audit(
                NewEvent::new(caller.name(), actions::SESSION_KILL, id, Outcome::Success, json!({})),
                self.now(),
            )
            .await?;
            self.commit(tx).await?;
            Ok::<_, ServiceError>(true)
        }
        .await;
        match recorded {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::new(ErrorKind::NotFound, "not_found", "no live session with that id")),
            Err(e) if here => {
                // Ended all the same; only its record is missing.
                tracing::error!(error = %e.message, session = id, "could not record a session kill");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
