//! Resources, their roles and each role's access policy, and the checks a new request must pass.
//! The policy decision is a seam: Cedar policies (eligibility, automatic approval, forbid rules)
//! plug in beside [`RolePolicy::check_request`] without changing its callers.

use crate::error::DomainError;
use crate::names::{GroupName, ResourceName, RoleName, Username};
use crate::time::{duration_text, format_duration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: ResourceName,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub roles: BTreeMap<RoleName, RolePolicy>,
    /// Where the gateway connects for a `postgres` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresTarget>,
}

/// An upstream PostgreSQL server and the service role the gateway logs in as (`proxy` mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// A host name or IP address, or (starting with `/`) the directory of the server's Unix
    /// socket, as libpq reads `host`.
    #[serde(default = "localhost")]
    pub host: String,
    #[serde(default = "pg_port")]
    pub port: u16,
    pub database: String,
    /// The service role the gateway logs in as.
    pub user: String,
    /// The environment variable holding its password (none for `trust` upstreams). The password
    /// itself never sits in the config file or the database.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Record each statement as a session audit event (size-capped).
    #[serde(default = "yes")]
    pub record_statements: bool,
    /// TLS to the upstream, as libpq's `sslmode`; `auto` (the default) is `disable` for a
    /// target on this host (loopback or a Unix socket) and `verify-full` for any other.
    #[serde(default, skip_serializing_if = "UpstreamTlsMode::is_auto")]
    pub sslmode: UpstreamTlsMode,
    /// PEM file with the certificate authorities `verify-ca`/`verify-full` trust (the Mozilla
    /// roots without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<String>,
    /// Ephemeral access: a `NOLOGIN` role without privileges that receives what a grant's role
    /// owned when the grant ends (kept for inspection, powerless). Without it what the role
    /// owned is dropped. Never the service login: whatever it received would run with its power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_role: Option<String>,
}

/// How the gateway protects its connection to an upstream PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    #[default]
    Auto,
    Disable,
    /// TLS when the server offers it, unauthenticated; plain otherwise.
    Prefer,
    /// TLS or nothing, without checking the certificate.
    Require,
    /// TLS with a certificate from a trusted authority, any name.
    VerifyCa,
    /// TLS with a certificate from a trusted authority for this host name.
    VerifyFull,
}

impl UpstreamTlsMode {
    pub fn is_auto(&self) -> bool {
        *self == Self::Auto
    }
}

impl PostgresTarget {
    /// Whether `host` names a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// Whether the upstream is on this host (its traffic never leaves the machine).
    pub fn is_local(&self) -> bool {
        self.is_unix_socket()
            || self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The TLS mode in force, with `auto` resolved.
    pub fn tls_mode(&self) -> UpstreamTlsMode {
        match self.sslmode {
            UpstreamTlsMode::Auto if self.is_local() => UpstreamTlsMode::Disable,
            UpstreamTlsMode::Auto => UpstreamTlsMode::VerifyFull,
            mode => mode,
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.host.is_empty() {
            out.push("postgres.host is empty".to_owned());
        }
        if self.is_unix_socket()
            && !matches!(
                self.sslmode,
                UpstreamTlsMode::Auto | UpstreamTlsMode::Disable | UpstreamTlsMode::Prefer
            )
        {
            out.push("postgres.sslmode: TLS does not apply to a Unix socket (use a host name, or sslmode = \"disable\")".to_owned());
        }
        if self.quarantine_role.as_deref().is_some_and(|q| q == self.user) {
            out.push(
                "postgres.quarantine_role must not be the service login: what it receives would run with the service login's power"
                    .to_owned(),
            );
        }
        if self.sslrootcert.is_some() && !matches!(self.tls_mode(), UpstreamTlsMode::VerifyCa | UpstreamTlsMode::VerifyFull) {
            out.push("postgres.sslrootcert is only read with sslmode verify-ca or verify-full".to_owned());
        }
        out
    }
}

fn localhost() -> String {
    "127.0.0.1".into()
}
fn pg_port() -> u16 {
    5432
}

fn default_kind() -> String {
    "postgres".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolePolicy {
    /// Groups whose members may request this role.
    pub requesters: BTreeSet<GroupName>,
    /// Approval stages, AND-ed: each needs its own distinct approvers.
    pub stages: Vec<Stage>,
    #[serde(with = "duration_text", default = "default_max")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1h"))]
    pub max_duration: Duration,
    #[serde(with = "duration_text", default = "default_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1h"))]
    pub default_duration: Duration,
    /// How long a request may wait for its approvals before it expires.
    #[serde(with = "duration_text", default = "default_pending_ttl")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1h"))]
    pub pending_ttl: Duration,
    #[serde(default)]
    pub reason: ReasonRules,
    /// The actions on this role that need a fresh second factor. All of them unless the role
    /// says otherwise: least privilege by default.
    #[serde(default = "MfaAction::all")]
    pub mfa: BTreeSet<MfaAction>,
    /// No longer supported (refused with a pointer to `login`): `SET ROLE` after logging in as
    /// the service role is not a boundary, since a session can `RESET ROLE` back. Kept only so
    /// an old configuration gets that explanation instead of "unknown field".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_role: Option<String>,
    /// For `postgres` resources in `proxy` mode: the upstream login this role's sessions use,
    /// a role holding exactly this role's privileges (the resource's `postgres.user` when
    /// absent). Its password is sealed with `admin resource set-password RES --role ROLE`, or
    /// comes from `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The environment variable holding `login`'s password (a sealed one wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Sessions may log in upstream as a privileged role (superuser, `CREATEROLE`,
    /// `BYPASSRLS`, `REPLICATION`, or a member of the server-file and program roles). Off by
    /// default: such a login is refused at session start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privileged_login: bool,
    /// For `postgres` resources: `proxy` (the gateway logs in as the role's `login`) or
    /// `ephemeral` (a login role made for each grant, member of `db_roles`, dropped when the
    /// grant ends).
    #[serde(default)]
    pub access: AccessMode,
    /// `ephemeral`: the database roles the grant's own role is made a member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub db_roles: Vec<String>,
    /// The longest break-glass access on this role (break-glass itself is allowed by policy).
    #[serde(with = "duration_text", default = "default_break_glass_max")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1h"))]
    pub break_glass_max_duration: Duration,
}

fn default_break_glass_max() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    #[default]
    Proxy,
    Ephemeral,
}

/// The privileged actions a role can ask a fresh second factor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MfaAction {
    Request,
    Approve,
    BreakGlass,
    Connect,
}

impl MfaAction {
    pub fn all() -> BTreeSet<Self> {
        [Self::Request, Self::Approve, Self::BreakGlass, Self::Connect].into()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Approve => "approve",
            Self::BreakGlass => "break_glass",
            Self::Connect => "connect",
        }
    }
}

impl RolePolicy {
    pub fn needs_mfa(&self, action: MfaAction) -> bool {
        self.mfa.contains(&action)
    }
}

/// Whether a second factor proved at `proved_at` still counts at `now` for a step-up.
pub fn mfa_is_fresh(proved_at: Option<Timestamp>, now: Timestamp, freshness: Duration) -> bool {
    proved_at.is_some_and(|at| at <= now && now < at.saturating_add(freshness))
}

fn default_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_duration() -> Duration {
    Duration::from_secs(1800)
}
fn default_pending_ttl() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default)]
    pub name: String,
    pub groups: BTreeSet<GroupName>,
    #[serde(default = "one")]
    pub min_approvals: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReasonRules {
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    pub min_length: usize,
    /// A regular expression the ticket must match; when set, a ticket is required.
    #[serde(default)]
    pub ticket_pattern: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for ReasonRules {
    fn default() -> Self {
        Self {
            required: true,
            min_length: 0,
            ticket_pattern: None,
        }
    }
}

/// What a person asks for, before any check.
#[derive(Debug, Clone)]
pub struct RequestDraft<'a> {
    pub requester: &'a Username,
    pub requester_groups: &'a BTreeSet<GroupName>,
    /// The policies let this person request the role (whatever their groups): Cedar decided.
    pub policy_permits: bool,
    pub duration: Option<Duration>,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    pub start_at: Option<Timestamp>,
}

/// A request that passed every rule of its role's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRequest {
    pub duration: Duration,
    pub reason: String,
    pub ticket: Option<String>,
    pub start_at: Option<Timestamp>,
    pub expires_at: Timestamp,
}

/// How far ahead a request may ask its access to begin: `start_at` no later than `horizon`
/// after `now`.
pub fn check_start_horizon(start_at: Option<Timestamp>, now: Timestamp, horizon: Duration) -> Result<(), DomainError> {
    match start_at {
        Some(start) if start > now.saturating_add(horizon) => Err(DomainError::StartTooFar {
            horizon: format_duration(horizon),
        }),
        _ => Ok(()),
    }
}

/// Why a request the policies did not allow is refused: the forbids that stopped it if there
/// were any, else the missing permit (to break glass, or to ask at all).
pub fn not_permitted(action: &str, forbids: Vec<String>, break_glass: bool, resource: &ResourceName, role: &RoleName) -> DomainError {
    let (resource, role) = (resource.to_string(), role.to_string());
    if !forbids.is_empty() {
        DomainError::ForbiddenByPolicy {
            action: action.to_owned(),
            policies: forbids,
        }
    } else if break_glass {
        DomainError::BreakGlassNotAllowed { resource, role }
    } else {
        DomainError::NotEligible { resource, role }
    }
}

impl Resource {
    pub fn role(&self, role: &RoleName) -> Result<&RolePolicy, DomainError> {
        self.roles.get(role).ok_or_else(|| DomainError::UnknownRole {
            resource: self.name.to_string(),
            role: role.to_string(),
        })
    }

    /// Problems that make this resource unusable, for configuration errors.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.roles.is_empty() {
            out.push(format!("resource '{}' has no roles", self.name));
        }
        if let Some(target) = &self.postgres {
            for p in target.problems() {
                out.push(format!("resource '{}': {p}", self.name));
            }
        }
        for (name, role) in &self.roles {
            for p in role.problems() {
                out.push(format!("resource '{}', role '{}': {p}", self.name, name));
            }
        }
        out
    }

    /// Whether `groups` makes someone an approver of any role of this resource.
    pub fn is_approver(&self, groups: &BTreeSet<GroupName>) -> bool {
        self.roles.values().any(|r| r.is_approver(groups))
    }
}

impl RolePolicy {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.requesters.is_empty() {
            out.push("'requesters' names no group, so nobody could request it".to_owned());
        }
        if self.stages.is_empty() {
            out.push("'stages' is empty: every role needs at least one approval stage".to_owned());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.groups.is_empty() {
                out.push(format!("stage {} names no approver group", i + 1));
            }
            if s.min_approvals == 0 {
                out.push(format!("stage {} needs min_approvals of at least 1", i + 1));
            }
        }
        if self.max_duration < Duration::from_secs(60) {
            out.push("max_duration must be at least 1m".to_owned());
        }
        if self.default_duration > self.max_duration {
            out.push("default_duration is longer than max_duration".to_owned());
        }
        if self.pending_ttl < Duration::from_secs(60) {
            out.push("pending_ttl must be at least 1m".to_owned());
        }
        if let Some(p) = &self.reason.ticket_pattern {
            if let Err(e) = regex::Regex::new(p) {
                out.push(format!("ticket_pattern is not a valid regular expression: {e}"));
            }
        }
        if self.db_role.is_some() {
            out.push(
                "db_role is no longer supported: a session could RESET ROLE back to the service login. \
                 Give the role its own upstream login holding exactly its privileges (login = \"...\"), \
                 or use access = \"ephemeral\" with db_roles"
                    .to_owned(),
            );
        }
        if self.access == AccessMode::Ephemeral && (self.login.is_some() || self.password_env.is_some()) {
            out.push("login and password_env apply to access = \"proxy\"; ephemeral sessions log in as the grant's own role".to_owned());
        }
        if self.access == AccessMode::Proxy && !self.db_roles.is_empty() {
            out.push("db_roles applies to access = \"ephemeral\"; a proxy role's privileges are those of its login".to_owned());
        }
        if self.login.as_deref().is_some_and(|l| l.is_empty() || l.contains('\0')) {
            out.push("login must be a role name".to_owned());
        }
        out
    }

    pub fn is_approver(&self, groups: &BTreeSet<GroupName>) -> bool {
        self.stages.iter().any(|s| !s.groups.is_disjoint(groups))
    }

    /// The limits of breaking glass on this role: a reason, and no longer than
    /// `break_glass_max_duration`. They hold whatever the policies permit, since a break-glass
    /// grant skips every approval.
    pub fn check_break_glass(&self, duration: Duration, reason: &str) -> Result<(), DomainError> {
        if reason.trim().is_empty() {
            return Err(DomainError::ReasonRequired);
        }
        if duration > self.break_glass_max_duration {
            return Err(DomainError::BreakGlassTooLong {
                max: format_duration(self.break_glass_max_duration),
            });
        }
        Ok(())
    }

    /// Checks a draft against this policy. `now` decides the pending deadline.
    pub fn check_request(
        &self,
        resource: &ResourceName,
        role: &RoleName,
        draft: &RequestDraft<'_>,
        now: Timestamp,
    ) -> Result<CheckedRequest, DomainError> {
        if !draft.policy_permits && self.requesters.is_disjoint(draft.requester_groups) {
            return Err(DomainError::NotEligible {
                resource: resource.to_string(),
                role: role.to_string(),
            });
        }
        let duration = draft.duration.unwrap_or(self.default_duration);
        if duration < Duration::from_secs(60) {
            return Err(DomainError::DurationTooShort);
        }
        if duration > self.max_duration {
            return Err(DomainError::DurationTooLong {
                requested: format_duration(duration),
                max: format_duration(self.max_duration),
            });
        }
        let reason = draft.reason.trim();
        if self.reason.required && reason.is_empty() {
            return Err(DomainError::ReasonRequired);
        }
        if reason.chars().count() < self.reason.min_length {
            return Err(DomainError::ReasonTooShort {
                min: self.reason.min_length,
            });
        }
        let ticket = draft.ticket.map(str::trim).filter(|t| !t.is_empty());
        if let Some(pattern) = &self.reason.ticket_pattern {
            let Some(t) = ticket else {
                return Err(DomainError::TicketRequired { pattern: pattern.clone() });
            };
            // Anchored so that a pattern like `INC-[0-9]+` cannot be satisfied by a substring.
            let anchored = format!("^(?:{pattern})$");
            let ok = regex::Regex::new(&anchored).map(|re| re.is_match(t)).unwrap_or(false);
            if !ok {
                return Err(DomainError::TicketInvalid {
                    ticket: t.to_owned(),
                    pattern: pattern.clone(),
                });
            }
        }
        if let Some(start) = draft.start_at {
            if start < now {
                return Err(DomainError::StartInPast);
            }
        }
        Ok(CheckedRequest {
            duration,
            reason: reason.to_owned(),
            ticket: ticket.map(str::to_owned),
            start_at: draft.start_at,
            expires_at: now.saturating_add(self.pending_ttl),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, extra: &str) -> PostgresTarget {
        toml::from_str(&format!("host = \"{host}\"\ndatabase = \"d\"\nuser = \"u\"\n{extra}")).unwrap()
    }

    #[test]
    fn break_glass_needs_a_reason_and_stays_within_its_own_maximum() {
        let p = policy();
        let max = p.break_glass_max_duration;
        assert_eq!(p.check_break_glass(max, "db down, INC-7"), Ok(()));
        assert_eq!(p.check_break_glass(max, " \t "), Err(DomainError::ReasonRequired));
        let over = p.check_break_glass(max + Duration::from_secs(1), "db down").unwrap_err();
        assert_eq!(over.code(), "break_glass_too_long");
    }

    #[test]
    fn a_start_beyond_the_horizon_is_refused_and_one_at_it_is_not() {
        let now = Timestamp::from_millis(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(check_start_horizon(None, now, day), Ok(()));
        assert_eq!(check_start_horizon(Some(now.saturating_add(day)), now, day), Ok(()));
        let e = check_start_horizon(Some(now.saturating_add(day + Duration::from_millis(1))), now, day).unwrap_err();
        assert_eq!(e.code(), "start_too_far");
        assert!(e.to_string().contains("1d"), "{e}");
    }

    #[test]
    fn a_refusal_names_the_forbids_else_the_missing_permit() {
        let (db, read) = (ResourceName::parse("prod-db").unwrap(), RoleName::parse("read").unwrap());
        let forbid = not_permitted("request", vec!["no-weekends".into()], true, &db, &read);
        assert_eq!(forbid.code(), "forbidden_by_policy");
        assert_eq!(
            not_permitted("break_glass", vec![], true, &db, &read).code(),
            "break_glass_not_allowed"
        );
        assert_eq!(not_permitted("request", vec![], false, &db, &read).code(), "not_eligible");
    }

    #[test]
    fn upstream_tls_defaults_to_off_on_this_host_and_verified_elsewhere() {
        for local in ["127.0.0.1", "::1", "localhost", "/var/run/postgresql"] {
            assert_eq!(target(local, "").tls_mode(), UpstreamTlsMode::Disable, "{local}");
        }
        for remote in ["db.internal", "10.0.0.5"] {
            assert_eq!(target(remote, "").tls_mode(), UpstreamTlsMode::VerifyFull, "{remote}");
        }
        assert_eq!(target("db.internal", "sslmode = \"require\"").tls_mode(), UpstreamTlsMode::Require);
        assert!(target("db.internal", "").problems().is_empty());
        assert!(!target("/run/pg", "sslmode = \"verify-full\"").problems().is_empty());
        assert!(
            !target("127.0.0.1", "sslrootcert = \"/ca.pem\"").problems().is_empty(),
            "a root file that is never read"
        );
        assert!(toml::from_str::<PostgresTarget>("database = \"d\"\nuser = \"u\"\nsslmode = \"sometimes\"").is_err());
    }

    fn g(names: &[&str]) -> BTreeSet<GroupName> {
        names.iter().map(|n| GroupName::parse(n).unwrap()).collect()
    }

    fn policy() -> RolePolicy {
        RolePolicy {
            requesters: g(&["engineers"]),
            stages: vec![Stage {
                name: "owner".into(),
                groups: g(&["db-owners"]),
                min_approvals: 1,
            }],
            max_duration: Duration::from_secs(3600),
            default_duration: Duration::from_secs(1800),
            pending_ttl: Duration::from_secs(600),
            reason: ReasonRules {
                required: true,
                min_length: 5,
                ticket_pattern: Some("INC-[0-9]+".into()),
            },
            mfa: MfaAction::all(),
            db_role: None,
            login: None,
            password_env: None,
            allow_privileged_login: false,
            access: Default::default(),
            db_roles: Vec::new(),
            break_glass_max_duration: Duration::from_secs(3600),
        }
    }

    #[test]
    fn every_action_needs_a_second_factor_unless_the_role_says_otherwise() {
        let p: RolePolicy = toml::from_str("requesters = [\"engineers\"]\nstages = [{ groups = [\"db-owners\"] }]").unwrap();
        assert!(p.needs_mfa(MfaAction::Request) && p.needs_mfa(MfaAction::Approve));
        assert!(p.needs_mfa(MfaAction::BreakGlass) && p.needs_mfa(MfaAction::Connect));
        let p: RolePolicy =
            toml::from_str("requesters = [\"engineers\"]\nstages = [{ groups = [\"db-owners\"] }]\nmfa = [\"approve\"]").unwrap();
        assert!(p.needs_mfa(MfaAction::Approve) && !p.needs_mfa(MfaAction::Request));
        let bad = toml::from_str::<RolePolicy>("requesters = []\nstages = []\nmfa = [\"aprove\"]").unwrap_err();
        assert!(bad.to_string().contains("aprove"), "{bad}");
    }

    #[test]
    fn a_proof_is_fresh_for_the_window_only() {
        let at = Timestamp::from_millis(1_000_000);
        let window = Duration::from_secs(300);
        assert!(mfa_is_fresh(Some(at), at, window));
        assert!(mfa_is_fresh(Some(at), at.saturating_add(Duration::from_secs(299)), window));
        assert!(!mfa_is_fresh(Some(at), at.saturating_add(window), window));
        assert!(!mfa_is_fresh(None, at, window));
        assert!(
            !mfa_is_fresh(Some(at.saturating_add(window)), at, window),
            "a proof from the future does not count"
        );
    }

    fn check(
        p: &RolePolicy,
        groups: &BTreeSet<GroupName>,
        dur: u64,
        reason: &str,
        ticket: Option<&str>,
    ) -> Result<CheckedRequest, DomainError> {
        let alice = Username::parse("alice").unwrap();
        let draft = RequestDraft {
            requester: &alice,
            requester_groups: groups,
            policy_permits: false,
            duration: Some(Duration::from_secs(dur)),
            reason,
            ticket,
            start_at: None,
        };
        p.check_request(
            &ResourceName::parse("db").unwrap(),
            &RoleName::parse("read").unwrap(),
            &draft,
            Timestamp::from_millis(1000),
        )
    }

    #[test]
    fn a_good_request_passes_and_gets_a_pending_deadline() {
        let c = check(&policy(), &g(&["engineers"]), 1800, "debug INC", Some("INC-231")).unwrap();
        assert_eq!(c.duration, Duration::from_secs(1800));
        assert_eq!(c.expires_at, Timestamp::from_millis(601_000));
    }

    #[test]
    fn each_rule_refuses_with_its_own_code() {
        let p = policy();
        let eng = g(&["engineers"]);
        assert_eq!(
            check(&p, &g(&["sales"]), 1800, "debug INC", Some("INC-1")).unwrap_err().code(),
            "not_eligible"
        );
        assert_eq!(
            check(&p, &eng, 7200, "debug INC", Some("INC-1")).unwrap_err().code(),
            "duration_too_long"
        );
        assert_eq!(
            check(&p, &eng, 10, "debug INC", Some("INC-1")).unwrap_err().code(),
            "duration_too_short"
        );
        assert_eq!(check(&p, &eng, 1800, "  ", Some("INC-1")).unwrap_err().code(), "reason_required");
        assert_eq!(check(&p, &eng, 1800, "dbg", Some("INC-1")).unwrap_err().code(), "reason_too_short");
        assert_eq!(check(&p, &eng, 1800, "debug INC", None).unwrap_err().code(), "ticket_required");
        assert_eq!(
            check(&p, &eng, 1800, "debug INC", Some("xINC-1")).unwrap_err().code(),
            "ticket_invalid"
        );
    }

    #[test]
    fn configuration_problems_are_named() {
        let mut p = policy();
        p.stages.clear();
        p.default_duration = Duration::from_secs(7200);
        p.reason.ticket_pattern = Some("(".into());
        let problems = p.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
