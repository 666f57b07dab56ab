//! Grants: the leases an approved request creates. `scheduled → active → expired | revoked`.

use crate::error::DomainError;
use crate::names::{ResourceName, RoleName, Username};
use crate::request::AccessRequest;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Scheduled,
    Active,
    Expired,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "active" => Self::Active,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
    pub fn is_live(self) -> bool {
        matches!(self, Self::Scheduled | Self::Active)
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a grant's ephemeral database role stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbRoleState {
    /// Made upstream; in use while the grant lasts.
    Active,
    /// The grant ended but removing the role failed; retried with back-off.
    RevocationPending,
    /// Confirmed gone upstream.
    Revoked,
}

impl DbRoleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::RevocationPending => "revocation_pending",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revocation_pending" => Some(Self::RevocationPending),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

impl fmt::Display for DbRoleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    pub id: String,
    pub request_id: String,
    pub user: Username,
    pub resource: ResourceName,
    pub role: RoleName,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub status: GrantStatus,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<Username>,
    pub revoke_reason: Option<String>,
    /// For ephemeral database access: where the grant's own database role stands once the
    /// grant ended (`revocation pending` until its removal is confirmed). Not stored with the
    /// grant; the server fills it in when it shows grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_role: Option<String>,
}

/// A change the expiry engine or a revoke makes to a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Activate,
    Expire,
}

impl Grant {
    /// The grant an approved request creates. An extension starts where the grant it extends
    /// ends, so the two leases stay independent and neither is rewritten.
    pub fn from_request(id: String, req: &AccessRequest, extends: Option<&Grant>, now: Timestamp) -> Self {
        let mut starts_at = req.start_at.unwrap_or(now).max(now);
        if let Some(old) = extends.filter(|g| g.status.is_live()) {
            starts_at = starts_at.max(old.ends_at);
        }
        let secs = u64::try_from(req.duration_secs).unwrap_or(0);
        let ends_at = starts_at.saturating_add(Duration::from_secs(secs));
        let status = if starts_at > now {
            GrantStatus::Scheduled
        } else {
            GrantStatus::Active
        };
        Grant {
            db_role: None,
            id,
            request_id: req.id.clone(),
            user: req.requester.clone(),
            resource: req.resource.clone(),
            role: req.role.clone(),
            starts_at,
            ends_at,
            status,
            created_at: now,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
        }
    }

    /// The status as of `now`, whatever the engine has written so far: a grant past its end is
    /// expired even if the engine is late, so nothing ever honours an overdue grant.
    pub fn effective_status(&self, now: Timestamp) -> GrantStatus {
        match self.status {
            GrantStatus::Scheduled | GrantStatus::Active if now >= self.ends_at => GrantStatus::Expired,
            GrantStatus::Scheduled if now >= self.starts_at => GrantStatus::Active,
            s => s,
        }
    }

    /// The next moment this grant changes by itself, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.status {
            GrantStatus::Scheduled => Some(self.starts_at),
            GrantStatus::Active => Some(self.ends_at),
            _ => None,
        }
    }

    /// The transition due at `now`, if any.
    pub fn due_transition(&self, now: Timestamp) -> Option<Transition> {
        match (self.status, self.effective_status(now)) {
            (GrantStatus::Scheduled | GrantStatus::Active, GrantStatus::Expired) => Some(Transition::Expire),
            (GrantStatus::Scheduled, GrantStatus::Active) => Some(Transition::Activate),
            _ => None,
        }
    }

    /// Whether a request by `user` for `role` on `resource` may extend this grant at `now`: the
    /// same person, resource and role, and the grant still live.
    pub fn check_extension(&self, user: &Username, resource: &ResourceName, role: &RoleName, now: Timestamp) -> Result<(), DomainError> {
        if &self.user != user || &self.resource != resource || &self.role != role {
            return Err(DomainError::ExtensionMismatch);
        }
        let status = self.effective_status(now);
        if !status.is_live() {
            return Err(DomainError::GrantNotLive {
                status: status.to_string(),
            });
        }
        Ok(())
    }

    /// Ends the grant at `now`: revoked by `by` (`None`: by the system, as when a policy forbids
    /// the access at its start) for `reason`. Only a grant not ended yet can be revoked, and
    /// never without a reason; who may revoke is [`Grant::check_revoke`]'s question.
    pub fn revoke(&mut self, by: Option<Username>, reason: &str, now: Timestamp) -> Result<(), DomainError> {
        if !self.status.is_live() {
            return Err(DomainError::GrantNotLive {
                status: self.status.to_string(),
            });
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::RevokeReasonRequired);
        }
        self.status = GrantStatus::Revoked;
        self.revoked_at = Some(now);
        self.revoked_by = by;
        self.revoke_reason = Some(reason.to_owned());
        Ok(())
    }

    pub fn check_revoke(&self, reason: &str, now: Timestamp, may_revoke: bool) -> Result<(), DomainError> {
        if !may_revoke {
            return Err(DomainError::NotAllowedToRevoke);
        }
        let status = self.effective_status(now);
        if !status.is_live() {
            return Err(DomainError::GrantNotLive {
                status: status.to_string(),
            });
        }
        if reason.trim().is_empty() {
            return Err(DomainError::RevokeReasonRequired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestStatus;

    fn req(start: Option<i64>) -> AccessRequest {
        AccessRequest {
            id: "req_1".into(),
            requester: Username::parse("alice").unwrap(),
            resource: ResourceName::parse("prod-db").unwrap(),
            role: RoleName::parse("read").unwrap(),
            reason: "x".into(),
            ticket: None,
            duration_secs: 60,
            start_at: start.map(Timestamp::from_millis),
            status: RequestStatus::Approved,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(1),
            decided_at: None,
            extends_grant: None,
            mfa_method: None,
            break_glass: false,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

    #[test]
    fn a_grant_walks_scheduled_active_expired_once_each() {
        let g = Grant::from_request("g".into(), &req(Some(10_000)), None, Timestamp::from_millis(5_000));
        assert_eq!(g.status, GrantStatus::Scheduled);
        assert_eq!(g.next_deadline(), Some(Timestamp::from_millis(10_000)));
        assert_eq!(g.due_transition(Timestamp::from_millis(9_999)), None);
        assert_eq!(g.due_transition(Timestamp::from_millis(10_000)), Some(Transition::Activate));
        assert_eq!(g.due_transition(Timestamp::from_millis(70_000)), Some(Transition::Expire));
        let mut active = g.clone();
        active.status = GrantStatus::Active;
        assert_eq!(active.next_deadline(), Some(Timestamp::from_millis(70_000)));
        let mut done = g;
        done.status = GrantStatus::Expired;
        assert_eq!(done.due_transition(Timestamp::from_millis(99_999)), None);
    }

    #[test]
    fn only_the_holders_own_live_grant_of_the_same_role_can_be_extended() {
        let g = Grant::from_request("g".into(), &req(None), None, Timestamp::from_millis(1_000));
        let (alice, bob) = (Username::parse("alice").unwrap(), Username::parse("bob").unwrap());
        let (db, other) = (ResourceName::parse("prod-db").unwrap(), ResourceName::parse("other").unwrap());
        let (read, write) = (RoleName::parse("read").unwrap(), RoleName::parse("write").unwrap());
        let during = Timestamp::from_millis(2_000);
        assert_eq!(g.check_extension(&alice, &db, &read, during), Ok(()));
        for (who, res, role) in [(&bob, &db, &read), (&alice, &other, &read), (&alice, &db, &write)] {
            assert_eq!(g.check_extension(who, res, role, during), Err(DomainError::ExtensionMismatch));
        }
        let after = Timestamp::from_millis(1_000 + 3_600_000);
        assert_eq!(g.check_extension(&alice, &db, &read, after).unwrap_err().code(), "grant_not_live");
        let mut revoked = g.clone();
        revoked.revoke(None, "done", during).unwrap();
        assert_eq!(
            revoked.check_extension(&alice, &db, &read, during).unwrap_err().code(),
            "grant_not_live"
        );
    }

    #[test]
    fn a_revoke_ends_a_live_grant_once_and_needs_a_reason() {
        let now = Timestamp::from_millis(2_000);
        let mut g = Grant::from_request("g".into(), &req(None), None, Timestamp::from_millis(1_000));
        assert_eq!(g.revoke(None, "  ", now).unwrap_err().code(), "revoke_reason_required");
        assert_eq!(g.status, GrantStatus::Active, "a refused revoke changes nothing");
        let bob = Username::parse("bob").unwrap();
        g.revoke(Some(bob.clone()), " done early ", now).unwrap();
        assert_eq!(
            (g.status, g.revoked_at, g.revoked_by.clone(), g.revoke_reason.as_deref()),
            (GrantStatus::Revoked, Some(now), Some(bob), Some("done early"))
        );
        assert_eq!(g.revoke(None, "again", now).unwrap_err().code(), "grant_not_live");
        assert_eq!(g.revoked_at, Some(now), "the first revoke stands");
    }

    #[test]
    fn an_extension_starts_where_the_old_grant_ends() {
        let now = Timestamp::from_millis(1_000);
        let old = Grant::from_request("g1".into(), &req(None), None, now);
        let new = Grant::from_request("g2".into(), &req(None), Some(&old), Timestamp::from_millis(2_000));
        assert_eq!(new.starts_at, old.ends_at);
        assert_eq!(new.status, GrantStatus::Scheduled);
    }

    #[test]
    fn revoking_needs_right_reason_and_a_live_grant() {
        let now = Timestamp::from_millis(1_000);
        let g = Grant::from_request("g1".into(), &req(None), None, now);
        assert_eq!(g.check_revoke("x", now, false).unwrap_err().code(), "not_allowed_to_revoke");
        assert_eq!(g.check_revoke(" ", now, true).unwrap_err().code(), "revoke_reason_required");
        assert_eq!(
            g.check_revoke("x", Timestamp::from_millis(61_000), true).unwrap_err().code(),
            "grant_not_live"
        );
        assert!(g.check_revoke("x", now, true).is_ok());
    }
}
