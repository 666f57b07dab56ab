//! Grants: made when a request is approved, listed, shown, revoked.

use super::requests::Scope;
use super::*;
use crate::core::{new_id, Caller, GrantEventKind};
use crate::error::ServiceError;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::{DbRoleState, Grant, GrantStatus};
use jitgate_core::names::ResourceName;
use jitgate_core::request::AccessRequest;
use jitgate_core::{actions, Timestamp};
use jitgate_store::{GrantFilter, WriteTx};
use serde_json::json;

impl Grants<'_> {
    /// Makes the grant of an approved request, with its audit event, in `tx`.
    pub(crate) async fn create(
        &self,
        tx: &mut dyn WriteTx,
        request: &AccessRequest,
        actor: &str,
        now: Timestamp,
    ) -> Result<Grant, ServiceError> {
        let extends = match &request.extends_grant {
            Some(g) => tx.grant(g).await?,
            None => None,
        };
        let grant = Grant::from_request(new_id("grt"), request, extends.as_ref(), now);
        tx.insert_grant_warned(&grant, self.warning_at(&grant)).await?;
        let details = json!({
            "request": request.id, "user": grant.user, "resource": grant.resource, "role": grant.role,
            "starts_at": grant.starts_at.as_millis(), "ends_at": grant.ends_at.as_millis(), "status": grant.status,
        });
        tx.append_audit(
            NewEvent::new(actor, actions::GRANT_CREATE, grant.id.as_str(), Outcome::Success, details),
            now,
        )
        .await?;
        Ok(grant)
    }

    /// Tells the gateway and the expiry engine of a new grant (after its commit).
    pub(crate) fn granted(&self, grant: &Grant) {
        self.publish(GrantEventKind::Created, grant);
        if let Some(d) = grant.next_deadline() {
            self.engine.deadline_added(d);
        }
        if let Some(at) = self.warning_at(grant) {
            self.engine.deadline_added(at);
        }
    }

    /// When `grant`'s holder is warned that it ends (`notifications.ending_soon` before its
    /// end), if at all: not when the grant is no longer than the lead, which would warn as it
    /// begins.
    pub(crate) fn warning_at(&self, grant: &Grant) -> Option<Timestamp> {
        let lead = self.settings.notifications.ending_soon;
        if lead.is_zero() {
            return None;
        }
        let at = Timestamp::from_millis(grant.ends_at.as_millis() - i64::try_from(lead.as_millis()).unwrap_or(i64::MAX / 2));
        (at > grant.starts_at).then_some(at)
    }

    async fn may_act_on(&self, caller: &Caller, g: &Grant) -> Result<bool, ServiceError> {
        if g.user == caller.user.name || caller.user.is_admin {
            return Ok(true);
        }
        Ok(self
            .store
            .resource(&g.resource)
            .await?
            .is_some_and(|r| r.is_approver(&caller.groups)))
    }

    pub async fn list(
        &self,
        caller: &Caller,
        scope: Scope,
        status: Option<GrantStatus>,
        resource: Option<ResourceName>,
        limit: i64,
    ) -> Result<Vec<Grant>, ServiceError> {
        let now = self.now();
        let mut filter = GrantFilter {
            user: None,
            status: None,
            resource,
            limit: limit.clamp(1, 1000),
        };
        match scope {
            Scope::Mine => filter.user = Some(caller.user.name.clone()),
            Scope::All | Scope::Review => {
                if !self.is_audit_reader(caller) {
                    return Err(self
                        .forbid(
                            caller,
                            "list_grants",
                            "listing every grant needs an administrator or an audit reader",
                        )
                        .await);
                }
            }
        }
        let live_wanted = matches!(status, Some(GrantStatus::Active | GrantStatus::Scheduled));
        let mut grants = match (&filter.user, live_wanted) {
            // One's own live grants by index, however long one's history (the newest
            // `limit` of all grants might hold none of them).
            (Some(user), true) => {
                let mut live = self.store.live_grants_of(user).await?;
                live.retain(|g| filter.resource.as_ref().is_none_or(|r| &g.resource == r));
                live.reverse();
                live.truncate(usize::try_from(filter.limit).unwrap_or(1000));
                live
            }
            _ => {
                // Ended grants keep their stored status: the store can filter them.
                if matches!(status, Some(GrantStatus::Expired | GrantStatus::Revoked)) {
                    filter.status = status;
                }
                self.store.grants(&filter).await?
            }
        };
        for g in grants.iter_mut() {
            g.status = g.effective_status(now);
        }
        grants.retain(|g| status.is_none_or(|s| s == g.status));
        self.describe_db_roles(&mut grants).await?;
        Ok(grants)
    }

    /// The caller's own live grants (active and scheduled), newest first, with one read by the
    /// index on them however long their history.
    pub async fn live_of(&self, caller: &Caller) -> Result<Vec<Grant>, ServiceError> {
        let now = self.now();
        let mut live = self.store.live_grants_of(&caller.user.name).await?;
        live.reverse();
        for g in live.iter_mut() {
            g.status = g.effective_status(now);
        }
        live.retain(|g| matches!(g.status, GrantStatus::Active | GrantStatus::Scheduled));
        self.describe_db_roles(&mut live).await?;
        Ok(live)
    }

    /// Fills in where each ephemeral grant's database role stands, with one read for them all.
    async fn describe_db_roles(&self, grants: &mut [Grant]) -> Result<(), ServiceError> {
        let ids: Vec<String> = grants.iter().map(|g| g.id.clone()).collect();
        let mut roles: std::collections::HashMap<String, jitgate_store::EphemeralRoleRecord> = self
            .store
            .ephemeral_roles_for(&ids)
            .await?
            .into_iter()
            .map(|r| (r.grant_id.clone(), r))
            .collect();
        for g in grants.iter_mut() {
            describe_db_role(g, roles.remove(&g.id));
        }
        Ok(())
    }

    /// Fills in where an ephemeral grant's database role stands.
    async fn describe_one_db_role(&self, g: &mut Grant) -> Result<(), ServiceError> {
        describe_db_role(g, self.store.ephemeral_role(&g.id).await?);
        Ok(())
    }

    pub async fn detail(&self, caller: &Caller, id: &str) -> Result<Grant, ServiceError> {
        let mut g = self.store.grant(id).await?.ok_or_else(|| ServiceError::not_found("grant"))?;
        if !self.may_act_on(caller, &g).await? && !self.is_audit_reader(caller) {
            return Err(ServiceError::not_found("grant"));
        }
        g.status = g.effective_status(self.now());
        self.describe_one_db_role(&mut g).await?;
        Ok(g)
    }

    pub async fn revoke(&self, caller: &Caller, id: &str, reason: &str) -> Result<Grant, ServiceError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut grant = tx.grant(id).await?.ok_or_else(|| ServiceError::not_found("grant"))?;
        let may = self.may_act_on(caller, &grant).await?;
        if !may && !self.is_audit_reader(caller) {
            drop(tx);
            return Err(self.hidden(caller, actions::GRANT_REVOKE, id, "grant").await);
        }
        if let Err(e) = grant.check_revoke(reason, now, may) {
            drop(tx);
            return Err(self.refused(caller, actions::GRANT_REVOKE, id, e).await);
        }
        if let Err(e) = grant.revoke(Some(caller.user.name.clone()), reason, now) {
            drop(tx);
            return Err(self.refused(caller, actions::GRANT_REVOKE, id, e).await);
        }
        tx.update_grant(&grant).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::GRANT_REVOKE,
                id,
                Outcome::Success,
                json!({"reason": grant.revoke_reason, "user": grant.user}),
            ),
            now,
        )
        .await?;
        // Other instances end their sessions of the grant when this commits; this one when
        // the event below reaches its kill switch.
        tx.send_session_kill(&crate::live_sessions::grant_ended(id, crate::live_sessions::GRANT_REVOKED))
            .await?;
        self.commit(tx).await?;
        self.publish(GrantEventKind::Revoked, &grant);
        Ok(grant)
    }
}

/// Where an ephemeral grant's database role stands, in the grant's `db_role`.
fn describe_db_role(g: &mut Grant, role: Option<jitgate_store::EphemeralRoleRecord>) {
    if let Some(r) = role {
        g.db_role = Some(match r.state {
            DbRoleState::RevocationPending => {
                format!("{}: revocation pending ({})", r.role_name, r.last_error.unwrap_or_default())
            }
            other => format!("{}: {other}", r.role_name),
        });
    }
}
