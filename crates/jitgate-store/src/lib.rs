//! Storage for jitgate. One [`Store`] trait, two implementations: SQLite (the embedded default)
//! and PostgreSQL (several instances sharing one database). Both run the same SQL text, written
//! once in [`sql`], and pass the same conformance suite (`tests/conformance.rs`).
//!
//! Every change happens in a [`WriteTx`], which holds the audit chain's head for its whole
//! life: writers are serialized, so the audit event that records a change is appended in the
//! same transaction as the change, and the chain never forks. The serialization is also what
//! makes each change's reads and writes one step (two approvals of one request, two engines
//! expiring one grant): a change relies on no other lock.

use async_trait::async_trait;
use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, NewEvent, StoredEvent};
use jitgate_core::grant::{DbRoleState, Grant, GrantStatus};
use jitgate_core::names::{GroupName, ResourceName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{AccessRequest, RequestStatus, Review};
use jitgate_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod bounded;
mod cache;
mod postgres;
mod sql;
mod sql_mfa;
mod sqlite;
pub mod testing;

pub use bounded::{Bounded, BULK_READ_TIMEOUT};
/// How long an instance may use what it remembers of resources and group memberships.
pub use cache::REMEMBER_FOR as DIRECTORY_REMEMBERED_FOR;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("the transaction had a failed statement and was rolled back")]
    Aborted,
    #[error("cannot open store: {0}")]
    Open(String),
    /// A call that did not finish within the store's deadline (`store.timeout`). For `commit`
    /// the change is in doubt: it may have been made.
    #[error("the store did not answer within {after:?} ({op})")]
    Timeout { op: &'static str, after: std::time::Duration },
}

/// How long a PostgreSQL store operation (and taking or opening a connection for it) may take
/// before it fails, unless configured otherwise (`store.timeout`).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The PostgreSQL notification channel for new deadlines.
pub const DEADLINE_CHANNEL: &str = "jitgate_deadline";
/// The PostgreSQL notification channel for gateway sessions to end on every instance.
pub const SESSION_KILL_CHANNEL: &str = "jitgate_session_kill";
/// Where PostgreSQL announces changes to resources and groups (by trigger, see migration 0010).
pub const DIRECTORY_CHANNEL: &str = "jitgate_directory";

/// Which gateway sessions a [`SessionKill`] ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    /// Every session of the grant.
    Grant(String),
    /// One session.
    Session(String),
}

/// Gateway sessions to end wherever they run, and the reason their clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKill {
    pub target: KillTarget,
    pub reason: String,
}

impl SessionKill {
    /// The notification payload: `{"grant": id, "reason": …}` or `{"session": id, "reason": …}`.
    pub(crate) fn payload(&self) -> String {
        let (key, id) = match &self.target {
            KillTarget::Grant(id) => ("grant", id),
            KillTarget::Session(id) => ("session", id),
        };
        serde_json::json!({ key: id, "reason": self.reason }).to_string()
    }

    pub(crate) fn from_payload(payload: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(payload).ok()?;
        let reason = v.get("reason")?.as_str()?.to_owned();
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
        let target = match (text("grant"), text("session")) {
            (Some(id), None) => KillTarget::Grant(id),
            (None, Some(id)) => KillTarget::Session(id),
            _ => return None,
        };
        Some(Self { target, reason })
    }
}

/// One instance's subscription to the kills that every instance sharing the store sends.
pub struct KillFeed {
    pub kills: tokio::sync::broadcast::Receiver<SessionKill>,
    /// True while the instance listens. Each change means kills may have been missed (sent while
    /// the connection was down), so what they would have ended must be looked up in the store.
    pub listening: tokio::sync::watch::Receiver<bool>,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: Username,
    pub display_name: String,
    /// Argon2id PHC string; `None` for a user who cannot log in with a password.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the opaque token; the token itself is never stored.
    pub token_hash: String,
    pub user: Username,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// When this session last proved a second factor (at login or a step-up), and how.
    pub mfa_at: Option<Timestamp>,
    pub mfa_method: Option<String>,
}

/// A user's TOTP factor. The seed is sealed; see `jitgate_auth::secret_box`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user: Username,
    pub key_version: u32,
    pub sealed_seed: String,
    pub algorithm: String,
    pub digits: u32,
    pub period_secs: u32,
    /// `None` while the enrolment waits for its first valid code.
    pub confirmed_at: Option<Timestamp>,
    pub last_step: Option<i64>,
    pub created_at: Timestamp,
}

/// A registered WebAuthn credential (passkey or security key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// base64url; unique across all users.
    pub credential_id: String,
    pub user: Username,
    pub name: String,
    /// The relying party library's credential record (public key, counter) as JSON.
    pub passkey_json: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A pending ceremony: a login waiting for its second factor, a WebAuthn challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: String,
    pub user: Username,
    pub purpose: String,
    pub state: String,
    pub expires_at: Timestamp,
}

/// Consecutive failures for one account name (which need not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub username: String,
    pub failures: u32,
    pub last_failure_at: Timestamp,
    pub locked_until: Option<Timestamp>,
}

/// A one-time connect token for the gateway, bound to user, resource, role and grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTokenRecord {
    pub token_hash: String,
    pub user: Username,
    pub resource: ResourceName,
    pub role: String,
    pub grant_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Sessions it may open (1 unless asked for more, for pools).
    pub uses: i64,
}

/// A database role made for one grant (ephemeral access) and where its removal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralRoleRecord {
    pub grant_id: String,
    pub resource: ResourceName,
    pub role_name: String,
    pub key_version: u32,
    pub sealed_password: String,
    pub state: DbRoleState,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A resource's upstream password, sealed with the server's secrets key (the resource name is
/// the associated data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCredentialRecord {
    pub resource: ResourceName,
    /// The role whose login the password is for; empty for the resource's service login.
    pub role: String,
    pub key_version: u32,
    pub sealed_password: String,
    pub updated_at: Timestamp,
    pub updated_by: Username,
}

/// One use of a grant through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbSessionRecord {
    pub id: String,
    pub grant_id: String,
    pub user: Username,
    pub resource: ResourceName,
    pub role: String,
    pub peer: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub statements: i64,
}

/// One alert for one person (the notifier outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: String,
    pub recipient: Username,
    pub kind: String,
    /// What it is about: a request id, say.
    pub subject: String,
    pub message: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub requester: Option<Username>,
    pub status: Option<RequestStatus>,
    pub resource: Option<ResourceName>,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub user: Option<Username>,
    pub status: Option<GrantStatus>,
    pub resource: Option<ResourceName>,
    pub limit: i64,
}

/// Where a group membership or resource came from: the config file is re-applied at every start
/// and replaces what it set before; the API's entries are left alone by that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// New deadlines that other instances (or this one) committed to a shared store.
#[derive(Debug)]
pub struct DeadlineSignal {
    notify: tokio::sync::Notify,
    /// The earliest deadline announced since the last [`DeadlineSignal::take_earliest`], in
    /// milliseconds; `i64::MIN` when one of unknown time was (look again), `i64::MAX` none.
    earliest: std::sync::atomic::AtomicI64,
}

impl Default for DeadlineSignal {
    fn default() -> Self {
        Self {
            notify: tokio::sync::Notify::new(),
            earliest: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }
}

impl DeadlineSignal {
    /// A deadline at `at` (milliseconds), or one of unknown time (`None`: a notification
    /// without its time, or notifications that may have been missed).
    pub fn announce(&self, at: Option<i64>) {
        self.earliest.fetch_min(at.unwrap_or(i64::MIN), std::sync::atomic::Ordering::AcqRel);
        self.notify.notify_one();
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The earliest deadline announced since the last call, and forgets it.
    pub fn take_earliest(&self) -> i64 {
        self.earliest.swap(i64::MAX, std::sync::atomic::Ordering::AcqRel)
    }
}

/// Reads that need no transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    /// For a store shared by several instances: fires when any instance added a deadline (a
    /// request or a grant), with the earliest one it added, so each expiry engine re-reads
    /// its next deadline only when one comes before it.
    fn deadline_signal(&self) -> Option<Arc<DeadlineSignal>>;
    /// For a store shared by several instances: the session kills any of them commits
    /// ([`WriteTx::send_session_kill`]). `None` for a store one process uses alone.
    fn session_kills(&self) -> Option<KillFeed>;
    async fn ping(&self) -> Result<()>;
    /// Begins a write transaction. It holds the audit chain's head until commit or drop.
    async fn write(&self) -> Result<Box<dyn WriteTx>>;

    async fn user(&self, name: &Username) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;
    async fn user_groups(&self, name: &Username) -> Result<BTreeSet<GroupName>>;
    async fn groups(&self) -> Result<BTreeMap<GroupName, Vec<Username>>>;
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>>;
    /// A session with its user, in one read: every authenticated call starts here.
    async fn session_user(&self, token_hash: &str) -> Result<Option<(SessionRecord, UserRecord)>>;
    async fn resource(&self, name: &ResourceName) -> Result<Option<Resource>>;
    async fn resources(&self) -> Result<Vec<Resource>>;
    async fn request(&self, id: &str) -> Result<Option<AccessRequest>>;
    async fn requests(&self, filter: &RequestFilter) -> Result<Vec<AccessRequest>>;
    async fn reviews(&self, request_id: &str) -> Result<Vec<Review>>;
    async fn grant(&self, id: &str) -> Result<Option<Grant>>;
    async fn grant_for_request(&self, request_id: &str) -> Result<Option<Grant>>;
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>>;
    /// `user`'s scheduled and active grants (those with a deadline still to come or not yet
    /// swept), by index, however long their history; callers judge them at their `now`.
    async fn live_grants_of(&self, user: &Username) -> Result<Vec<Grant>>;
    /// The distinct `RESOURCE/ROLE` of `user`'s grants live at `now` — scheduled or active,
    /// not ended (what policies see as `context.active_grants`) — from the index alone.
    async fn active_roles_of(&self, user: &Username, now: Timestamp) -> Result<Vec<String>>;
    /// The earliest moment a grant or a pending request changes by itself.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
    async fn audit_events(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEvent>>;
    /// The same events as stored, details unparsed: what verification reads.
    async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>>;
    /// Events about one of `targets` (a request and its grant, say), in order.
    async fn audit_events_for(&self, targets: &[String]) -> Result<Vec<AuditEvent>>;
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// Checkpoints after `after_seq`, in order: what a witness has not been sent yet.
    async fn audit_checkpoints_after(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>>;
    async fn audit_last_checkpoint(&self) -> Result<Option<Checkpoint>>;
    async fn audit_head(&self) -> Result<ChainHead>;
    async fn meta(&self, key: &str) -> Result<Option<String>>;

    async fn totp(&self, user: &Username) -> Result<Option<TotpRecord>>;
    async fn passkeys(&self, user: &Username) -> Result<Vec<PasskeyRecord>>;
    async fn recovery_codes_left(&self, user: &Username) -> Result<i64>;
    async fn challenge(&self, id: &str) -> Result<Option<ChallengeRecord>>;
    async fn attempts(&self, username: &str) -> Result<Option<AttemptRecord>>;

    /// Break-glass requests nobody has acknowledged yet, oldest first.
    async fn requests_awaiting_ack(&self, limit: i64) -> Result<Vec<AccessRequest>>;
    async fn ephemeral_role(&self, grant_id: &str) -> Result<Option<EphemeralRoleRecord>>;
    async fn resource_credential(&self, resource: &ResourceName, role: &str) -> Result<Option<ResourceCredentialRecord>>;
    /// Ephemeral roles in `state`, oldest first.
    async fn ephemeral_roles_in(&self, state: DbRoleState) -> Result<Vec<EphemeralRoleRecord>>;
    /// Gateway sessions, newest first: the live ones only, or all, of one user or everyone.
    async fn db_sessions(&self, user: Option<&Username>, live_only: bool, limit: i64) -> Result<Vec<DbSessionRecord>>;
    /// A person's alerts, newest first.
    async fn notifications(&self, recipient: &Username, limit: i64) -> Result<Vec<NotificationRecord>>;
    /// Of the gateway sessions `ids`, those an administrator asked to end
    /// ([`WriteTx::kill_db_session`]), with the reason.
    async fn killed_db_sessions(&self, ids: &[String]) -> Result<Vec<(String, String)>>;
}

/// One all-or-nothing change. Dropping it without `commit` rolls everything back.
#[async_trait]
pub trait WriteTx: Send {
    /// The chain's head after the events appended so far.
    fn head(&self) -> &ChainHead;
    /// How many events this transaction has appended.
    fn appended(&self) -> usize;

    async fn user(&mut self, name: &Username) -> Result<Option<UserRecord>>;
    async fn user_groups(&mut self, name: &Username) -> Result<BTreeSet<GroupName>>;
    async fn count_users(&mut self) -> Result<i64>;
    async fn insert_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn update_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn ensure_group(&mut self, group: &GroupName, source: Source) -> Result<()>;
    async fn set_member(&mut self, group: &GroupName, user: &Username, member: bool, source: Source) -> Result<bool>;
    /// Removes every group and membership that `source` set; the config is then re-applied.
    async fn clear_source(&mut self, source: Source) -> Result<()>;

    async fn insert_session(&mut self, session: &SessionRecord) -> Result<()>;
    async fn touch_session(&mut self, token_hash: &str, now: Timestamp) -> Result<()>;
    async fn delete_session(&mut self, token_hash: &str) -> Result<bool>;
    async fn delete_sessions_of(&mut self, user: &Username) -> Result<u64>;
    /// Ends every session of `user` but the one whose token hash is `keep`.
    async fn delete_other_sessions_of(&mut self, user: &Username, keep: &str) -> Result<u64>;

    async fn put_resource(&mut self, resource: &Resource, source: Source, now: Timestamp) -> Result<()>;
    async fn delete_resource(&mut self, name: &ResourceName) -> Result<bool>;
    /// Names of the resources `source` set.
    async fn resources_from(&mut self, source: Source) -> Result<Vec<ResourceName>>;

    async fn request(&mut self, id: &str) -> Result<Option<AccessRequest>>;
    async fn reviews(&mut self, request_id: &str) -> Result<Vec<Review>>;
    async fn insert_request(&mut self, request: &AccessRequest) -> Result<()>;
    async fn set_request_status(&mut self, id: &str, status: RequestStatus, decided_at: Timestamp) -> Result<()>;
    async fn insert_review(&mut self, review: &Review) -> Result<()>;
    /// Pending requests whose deadline is at or before `now`, oldest first.
    async fn due_requests(&mut self, now: Timestamp, limit: i64) -> Result<Vec<AccessRequest>>;

    async fn grant(&mut self, id: &str) -> Result<Option<Grant>>;
    async fn insert_grant(&mut self, grant: &Grant) -> Result<()>;
    async fn update_grant(&mut self, grant: &Grant) -> Result<()>;
    /// Moves many grants to `status` in one statement (the expiry engine's batches); their next
    /// deadline follows from the status.
    async fn set_grants_status(&mut self, ids: &[String], status: GrantStatus) -> Result<()>;
    /// Marks many pending requests expired in one statement.
    async fn expire_requests(&mut self, ids: &[String], at: Timestamp) -> Result<()>;
    /// Grants with a transition due at or before `now`, earliest first.
    async fn due_grants(&mut self, now: Timestamp, limit: i64) -> Result<Vec<Grant>>;

    async fn set_session_mfa(&mut self, token_hash: &str, at: Timestamp, method: &str) -> Result<()>;

    /// Adds or replaces a user's TOTP factor.
    async fn put_totp(&mut self, totp: &TotpRecord) -> Result<()>;
    async fn totp(&mut self, user: &Username) -> Result<Option<TotpRecord>>;
    /// Records `step` as used if it is later than the last used one; false means it was not
    /// (a replay, possibly racing another instance).
    async fn use_totp_step(&mut self, user: &Username, step: i64, confirm_at: Option<Timestamp>) -> Result<bool>;
    async fn delete_totp(&mut self, user: &Username) -> Result<bool>;
    /// Fails with `Conflict` when the credential id is registered already (to anyone).
    async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<()>;
    async fn passkeys(&mut self, user: &Username) -> Result<Vec<PasskeyRecord>>;
    async fn update_passkey(&mut self, credential_id: &str, passkey_json: Option<&str>, used_at: Timestamp) -> Result<()>;
    async fn delete_passkey(&mut self, user: &Username, credential_id: &str) -> Result<bool>;
    /// Voids every earlier code of the user and stores these hashes.
    async fn replace_recovery_codes(&mut self, user: &Username, hashes: &[String], now: Timestamp) -> Result<()>;
    /// Marks an unused code used; false when there is no such unused code.
    async fn use_recovery_code(&mut self, user: &Username, hash: &str, now: Timestamp) -> Result<bool>;
    async fn recovery_codes_left(&mut self, user: &Username) -> Result<i64>;
    /// Stores a pending ceremony, dropping the ones that ran out before `now`.
    async fn insert_challenge(&mut self, challenge: &ChallengeRecord, now: Timestamp) -> Result<()>;
    /// Removes and returns a pending ceremony: each is used once.
    async fn take_challenge(&mut self, id: &str) -> Result<Option<ChallengeRecord>>;
    /// The attempt state of `username`, locked for the rest of the transaction so that a
    /// check and its count are one step even across instances. A name without a record gets
    /// an empty one (no failures) to lock; it goes again unless the transaction keeps it.
    async fn lock_attempts(&mut self, username: &str) -> Result<AttemptRecord>;
    /// Forgets the attempt records of names that are not users and whose last failure is
    /// older than `before`; returns how many went.
    async fn prune_attempts(&mut self, before: Timestamp) -> Result<u64>;
    async fn put_attempts(&mut self, attempts: &AttemptRecord) -> Result<()>;
    async fn clear_attempts(&mut self, username: &str) -> Result<bool>;

    /// Records the after-the-fact acknowledgement of a break-glass request; false when it is
    /// not one or was acknowledged already.
    async fn acknowledge_request(&mut self, id: &str, by: &Username, at: Timestamp) -> Result<bool>;
    async fn insert_notification(&mut self, notification: &NotificationRecord) -> Result<()>;

    async fn insert_connect_token(&mut self, token: &ConnectTokenRecord) -> Result<()>;
    /// Adds or updates (by grant) an ephemeral role's record.
    async fn put_ephemeral_role(&mut self, role: &EphemeralRoleRecord) -> Result<()>;
    /// Sets (or replaces) a resource's sealed upstream password.
    async fn put_resource_credential(&mut self, credential: &ResourceCredentialRecord) -> Result<()>;
    /// One role's stored password (`''` the service login's), or with `None` all of the resource's.
    async fn delete_resource_credential(&mut self, resource: &ResourceName, role: Option<&str>) -> Result<bool>;
    /// Uses a connect token: as many times as it allows, and only before it expires.
    async fn redeem_connect_token(&mut self, token_hash: &str, now: Timestamp) -> Result<Option<ConnectTokenRecord>>;
    async fn insert_db_session(&mut self, session: &DbSessionRecord) -> Result<()>;
    async fn end_db_session(&mut self, session: &DbSessionRecord) -> Result<()>;
    /// Records that a live gateway session is to end with `reason` (whichever instance runs
    /// it); false when no session with that id is live.
    async fn kill_db_session(&mut self, id: &str, reason: &str) -> Result<bool>;
    /// Sends `kill` to every instance sharing the store, if this transaction commits
    /// (PostgreSQL `NOTIFY`); nothing for a store one process uses alone.
    async fn send_session_kill(&mut self, kill: &SessionKill) -> Result<()>;

    async fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    async fn delete_meta(&mut self, key: &str) -> Result<()>;

    /// Lets this transaction commit without waiting for its log flush (PostgreSQL's
    /// `synchronous_commit = off`). Only for changes that are redone by themselves if a crash
    /// loses them: the expiry engine's transitions are, since a lost one is overdue at the next
    /// start and made again.
    async fn relax_durability(&mut self) -> Result<()>;

    /// Appends an event to the chain, in this transaction.
    async fn append_audit(&mut self, event: NewEvent, now: Timestamp) -> Result<()>;
    async fn insert_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<()>;
    /// The newest checkpoint, read in this transaction (under the head's lock, so no other
    /// writer adds one meanwhile): what the next checkpoint links to.
    async fn last_checkpoint(&mut self) -> Result<Option<Checkpoint>>;

    /// Commits and returns the audit events it appended.
    async fn commit(self: Box<Self>) -> Result<Vec<AuditEvent>>;
}

/// Opens the store that `url` names: `postgres://…` / `postgresql://…`, `sqlite://PATH`, or a
/// plain file path for SQLite. Migrations run on open. PostgreSQL operations give up after
/// [`DEFAULT_TIMEOUT`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with_timeout(url, DEFAULT_TIMEOUT).await
}

/// [`open`], with PostgreSQL operations bounded by `timeout`: taking a connection from the pool
/// (opening one included) and every call ([`Bounded`]). SQLite is a file in this process; its
/// calls are not bounded.
pub async fn open_with_timeout(url: &str, timeout: std::time::Duration) -> Result<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(Bounded::new(PgStore::connect_with(url, timeout).await?, timeout)))
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(SqliteStore::open(std::path::Path::new(path)).await?))
    }
}

/// Opens a store only to read it (`audit verify` beside a running server): SQLite without its
/// lock and migrations; PostgreSQL as usual.
pub async fn open_read_only(url: &str) -> Result<Arc<dyn Store>> {
    if is_postgres(url) {
        open_with_timeout(url, DEFAULT_TIMEOUT).await
    } else {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Ok(Arc::new(SqliteStore::open_read_only(std::path::Path::new(path)).await?))
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// True for a unique-key violation, which the API answers as a conflict, not a failure.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::DeadlineSignal;

    #[test]
    fn a_deadline_signal_keeps_the_earliest_announced_until_taken() {
        let s = DeadlineSignal::default();
        assert_eq!(s.take_earliest(), i64::MAX, "none announced");
        s.announce(Some(5_000));
        s.announce(Some(3_000));
        s.announce(Some(9_000));
        assert_eq!(s.take_earliest(), 3_000);
        assert_eq!(s.take_earliest(), i64::MAX, "taken once");
        // A notification without a time (or a listener that reconnected) means: look again.
        s.announce(Some(1_000));
        s.announce(None);
        assert_eq!(s.take_earliest(), i64::MIN);
    }
}
