//! Every action the audit log records, in one list: the code names an action by its constant
//! here, the README's table of actions is this list (a test compares them), and an event with
//! an action missing from it is a bug that the debug build stops at ([`is_known`]).
//!
//! Four families take a suffix: `request.<status>` (a request's status after a review),
//! `review.<decision>`, `alert.<kind>` and `api.<operation>` (a call refused for want of a
//! role); their members are listed too, except `api.`, whose suffix is the refused operation.

/// One action and what its event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub name: &'static str,
    pub records: &'static str,
}

macro_rules! actions {
    ($($(#[doc = $doc:literal])+ $constant:ident = $name:literal;)+) => {
        $($(#[doc = $doc])+ pub const $constant: &str = $name;)+
        /// Every action, in the README's order.
        pub const ALL: &[Action] = &[$(Action { name: $name, records: concat!($($doc),+) }),+];
    };
}

actions! {
    /// A user asked for access (`outcome` denied or failure when it was refused, with the code).
    REQUEST_CREATE = "request.create";
    /// A break-glass request was granted without approval, and the approvers alerted.
    REQUEST_BREAK_GLASS = "request.break_glass";
    /// The requester or an administrator cancelled a pending request.
    REQUEST_CANCEL = "request.cancel";
    /// A pending request ran out of time without a decision.
    REQUEST_EXPIRE = "request.expire";
    /// A request reached the approvals its policy demands (the system's event after the last review).
    REQUEST_APPROVED = "request.approved";
    /// A review moved the request on or ended it: `request.pending` (more stages to go), `request.denied`.
    REQUEST_PENDING = "request.pending";
    /// See `request.pending`.
    REQUEST_DENIED = "request.denied";
    /// An approver acknowledged a break-glass grant after the fact.
    REQUEST_ACKNOWLEDGE = "request.acknowledge";
    /// A reviewer approved (with the stage and the second factor used).
    REVIEW_APPROVE = "review.approve";
    /// A reviewer denied.
    REVIEW_DENY = "review.deny";
    /// A grant was made for an approved request.
    GRANT_CREATE = "grant.create";
    /// A grant ends soon (`notifications.ending_soon` before its end): its holder is warned.
    GRANT_ENDING_SOON = "grant.ending_soon";
    /// A grant's start time came and it became active.
    GRANT_ACTIVATE = "grant.activate";
    /// A grant reached its end.
    GRANT_EXPIRE = "grant.expire";
    /// A grant was revoked before its end (by whom, why).
    GRANT_REVOKE = "grant.revoke";
    /// The grant's ephemeral database role was created upstream.
    GRANT_DB_ROLE_CREATE = "grant.db_role.create";
    /// The grant's ephemeral database role was dropped and what it owned removed.
    GRANT_DB_ROLE_REVOKED = "grant.db_role.revoked";
    /// Dropping the ephemeral role failed; it is retried with back-off (and alerted once).
    GRANT_DB_ROLE_REVOKE_FAILED = "grant.db_role.revoke_failed";
    /// A connect token was handed out for a live grant (never the token itself).
    SESSION_TOKEN = "session.token";
    /// A connect was refused (no live grant, a resource the gateway does not serve ...).
    SESSION_CONNECT = "session.connect";
    /// A gateway session started, or was refused at the gateway (with the reason and the peer).
    SESSION_START = "session.start";
    /// A batch of the statements a session sent, in order, numbered (the text or its head and tail with length and SHA-256; function calls by OID).
    SESSION_STATEMENTS = "session.statements";
    /// A gateway session ended: why, bytes, statements, and for a killed one how its backend was stopped and whether that was confirmed.
    SESSION_END = "session.end";
    /// A session carried on into the extension that took over at its grant's end (from, to).
    SESSION_CONTINUE = "session.continue";
    /// An administrator killed a session.
    SESSION_KILL = "session.kill";
    /// A login with a password (failures too, with the code).
    AUTH_LOGIN = "auth.login";
    /// A sign-in through an identity provider was refused (the provider, the check that failed); successes are `auth.login` with `method: sso`.
    AUTH_SSO = "auth.sso";
    /// A provider identity was linked to a jitgate user at their first sign-in (a new user is also `user.create`).
    AUTH_SSO_LINK = "auth.sso_link";
    /// A sign-in changed the person's groups by the provider's mapping rules (added, removed, and which of the provider's groups and rules).
    AUTH_SSO_GROUPS = "auth.sso_groups";
    /// A step-up by signing in again at the provider.
    AUTH_SSO_STEP_UP = "auth.sso_step_up";
    /// A logout.
    AUTH_LOGOUT = "auth.logout";
    /// The one-time setup token was printed at first start.
    AUTH_SETUP_TOKEN = "auth.setup_token";
    /// The first administrator was created with the setup token.
    AUTH_BOOTSTRAP = "auth.bootstrap";
    /// An account or factor was locked after too many failed attempts.
    AUTH_LOCKED = "auth.locked";
    /// An administrator unlocked an account.
    AUTH_UNLOCK = "auth.unlock";
    /// Failed attempts against unknown or locked names, counted per action over a window instead of an event each.
    AUTH_FAILURES_SUMMARISED = "auth.failures_summarised";
    /// A user changed their own password.
    PASSWORD_CHANGE = "password.change";
    /// An administrator set someone else's password (the second factor asked first).
    PASSWORD_RESET = "password.reset";
    /// A user was created.
    USER_CREATE = "user.create";
    /// An administrator was created (the second factor asked first).
    USER_CREATE_ADMIN = "user.create_admin";
    /// A user was disabled: their sessions end and their grants are revoked.
    USER_DISABLE = "user.disable";
    /// A user was enabled again.
    USER_ENABLE = "user.enable";
    /// An administrator set a user's password.
    USER_PASSWORD = "user.password";
    /// A user joined a group.
    GROUP_MEMBER_ADD = "group.member.add";
    /// A user left a group.
    GROUP_MEMBER_REMOVE = "group.member.remove";
    /// A resource was created or changed.
    RESOURCE_PUT = "resource.put";
    /// A resource was deleted.
    RESOURCE_DELETE = "resource.delete";
    /// An upstream login's password was stored (sealed; never the password).
    RESOURCE_CREDENTIAL_SET = "resource.credential.set";
    /// An upstream login's password was removed.
    RESOURCE_CREDENTIAL_CLEAR = "resource.credential.clear";
    /// The configuration file's groups and resources were applied at start.
    CONFIG_APPLY = "config.apply";
    /// The Cedar policies were reloaded (or a bad set refused).
    POLICY_RELOAD = "policy.reload";
    /// A TOTP enrolment was started (the secret is sealed, never recorded).
    MFA_TOTP_ENROL_START = "mfa.totp.enrol_start";
    /// A TOTP enrolment was confirmed with a first code.
    MFA_TOTP_ENROL = "mfa.totp.enrol";
    /// TOTP was removed from an account.
    MFA_TOTP_REMOVE = "mfa.totp.remove";
    /// A passkey (WebAuthn) was registered.
    MFA_WEBAUTHN_REGISTER = "mfa.webauthn.register";
    /// A passkey was removed.
    MFA_WEBAUTHN_REMOVE = "mfa.webauthn.remove";
    /// New recovery codes were made (the old ones stop working).
    MFA_RECOVERY_GENERATE = "mfa.recovery.generate";
    /// A second factor was checked (the method; failures with the code).
    MFA_VERIFY = "mfa.verify";
    /// A TOTP code already used was offered again and refused.
    MFA_REPLAY = "mfa.replay";
    /// An action that needs a fresh second factor was asked without one.
    MFA_STEP_UP = "mfa.step_up";
    /// The audit signing key was rotated (the new key announced in a signed checkpoint).
    AUDIT_KEY_ROTATED = "audit.key_rotated";
    /// A witness that had failed took checkpoints again.
    AUDIT_WITNESS_RECOVERED = "audit.witness_recovered";
    /// Alert: a break-glass grant was made; the approvers are told.
    ALERT_BREAK_GLASS = "alert.break_glass";
    /// Alert: an ephemeral role could not be revoked for a while.
    ALERT_REVOCATION_STUCK = "alert.revocation_stuck";
    /// Alert: an audit witness has not taken checkpoints for a while.
    ALERT_AUDIT_WITNESS_FAILED = "alert.audit_witness_failed";
    /// Alert: a notification failed `notifications.alert_after` times (channel, event, the last error).
    ALERT_NOTIFICATION_FAILING = "alert.notification_failing";
    /// A user's e-mail address was set or removed (for notifications).
    USER_EMAIL = "user.email";
    /// A notification channel's secret was stored (sealed; never the secret) or removed.
    NOTIFICATION_SECRET = "notification.secret";
    /// An API token was made (its id, name, scopes and end; never the token).
    TOKEN_CREATE = "token.create";
    /// An API token was revoked by its owner or an administrator.
    TOKEN_REVOKE = "token.revoke";
    /// A sign-in provider's client secret was stored (sealed; never the secret) or removed.
    OIDC_SECRET = "oidc.secret";
    /// An administrator queued a failed notification again.
    NOTIFICATION_RETRY = "notification.retry";
}

/// The prefix of the refused-call family: `api.<operation>`, where the operation is the call
/// that needs a role the caller lacks (recorded as denied).
pub const API_REFUSED_PREFIX: &str = "api.";

/// Whether `action` is one of [`ALL`] or of the `api.` family.
pub fn is_known(action: &str) -> bool {
    ALL.iter().any(|a| a.name == action) || action.strip_prefix(API_REFUSED_PREFIX).is_some_and(|op| !op.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_is_listed_once_and_described() {
        let mut names: Vec<&str> = ALL.iter().map(|a| a.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "an action listed twice");
        assert!(ALL.iter().all(|a| !a.records.trim().is_empty()));
        assert!(is_known("grant.revoke") && is_known("api.explain"));
        assert!(!is_known("grant.revoked") && !is_known("api."));
    }

    /// The README's table is this list, in this order, with these descriptions: an action
    /// added, renamed or described anew here and not there fails this test.
    #[test]
    fn the_readme_lists_exactly_these_actions() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("### Audit actions")
            .nth(1)
            .expect("the README has an Audit actions section");
        let rows: Vec<(String, String)> = table
            .lines()
            .skip_while(|l| !l.starts_with("|---"))
            .skip(1)
            .take_while(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                (cells[0].trim_matches('`').to_owned(), cells[1].to_owned())
            })
            .collect();
        let listed: Vec<(String, String)> = ALL
            .iter()
            .map(|a| (a.name.to_owned(), a.records.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        assert_eq!(rows, listed);
    }
}
