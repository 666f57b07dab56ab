//! Storage for jitgate. One [`Store`] made of a trait per aggregate, two implementations: SQLite
//! (the embedded default) and PostgreSQL (several instances sharing one database). Each
//! aggregate's file holds its records, its read and write traits and its SQL, written once for
//! both backends; `sql.rs` stamps them out per backend, and `sqlite.rs` / `postgres.rs` hold
//! what differs. Both pass the same conformance suite (`tests/conformance.rs`).
//!
//! Every change happens in a [`WriteTx`], which holds the audit chain's head for its whole
//! life: writers are serialized, so the audit event that records a change is appended in the
//! same transaction as the change, and the chain never forks. The serialization is also what
//! makes each change's reads and writes one step (two approvals of one request, two engines
//! expiring one grant): a change relies on no other lock.

use async_trait::async_trait;
use jitgate_core::audit::AuditEvent;
use std::sync::Arc;

mod access;
mod audit;
mod bounded;
mod cache;
mod durable;
mod gateway;
mod identity;
mod mfa;
mod outbox;
mod pg_change;
mod postgres;
mod resources;
mod review_context;
mod sql;
mod sqlite;
mod sso;
pub mod testing;
mod tokens;

pub use access::{AccessReads, AccessWrites, GrantFilter, NotificationRecord, RequestFilter};
pub use audit::{AuditReads, AuditWrites};
pub use gateway::{
    ConnectTokenRecord, EphemeralRoleRecord, GatewayReads, GatewaySession, GatewayWrites, KillFeed, KillTarget, ResourceCredentialRecord,
    SessionKill,
};
pub use identity::{IdentityReads, IdentityWrites, SessionRecord, Source, Standing, UserRecord};
pub use mfa::{AttemptRecord, ChallengeRecord, MfaReads, MfaWrites, PasskeyRecord, TotpRecord};
pub use outbox::{ChannelSecretRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, OutboxReads, OutboxWrites};
pub use resources::{ResourceReads, ResourceWrites};
pub use review_context::{ReviewContext, ReviewFacts};
pub use sso::{SsoIdentityRecord, SsoReads, SsoSignInRecord, SsoWrites};
pub use tokens::{ApiTokenRecord, TokenReads, TokenWrites};

/// Every store trait, for code that calls a concrete store (`SqliteStore`, `PgStore`) rather
/// than a `dyn Store`, whose aggregate methods need their traits in scope.
pub mod prelude {
    pub use crate::{
        AccessReads, AccessWrites, AuditReads, AuditWrites, GatewayReads, GatewayWrites, IdentityReads, IdentityWrites, MfaReads,
        MfaWrites, OutboxReads, OutboxWrites, ResourceReads, ResourceWrites, SsoReads, SsoWrites, Store, TokenReads, TokenWrites, WriteTx,
    };
}

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
/// Where each PostgreSQL instance notifies itself to learn that its LISTEN connection still hears.
pub const HEARTBEAT_CHANNEL: &str = "jitgate_heartbeat";

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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

/// A store: the reads of every aggregate, each in its own trait and file (users and sessions,
/// resources, requests and grants, the audit chain, second factors, the gateway), and the
/// start of every change ([`Store::write`]).
#[async_trait]
pub trait Store:
    IdentityReads
    + ResourceReads
    + AccessReads
    + AuditReads
    + MfaReads
    + GatewayReads
    + OutboxReads
    + SsoReads
    + TokenReads
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;
    /// For a store shared by several instances: fires when any instance added a deadline (a
    /// request or a grant), with the earliest one it added, so each expiry engine re-reads
    /// its next deadline only when one comes before it.
    fn deadline_signal(&self) -> Option<Arc<DeadlineSignal>>;
    /// For a store shared by several instances: the session kills any of them commits
    /// ([`GatewayWrites::send_session_kill`]). `None` for a store one process uses alone.
    fn session_kills(&self) -> Option<KillFeed>;
    async fn ping(&self) -> Result<()>;
    /// Returns once everything this store has shown so far (every read answered before the
    /// call) is on disk. A PostgreSQL change is visible a moment before its flush (see
    /// `durable.rs`), and a crash in that moment loses it; whatever leaves jitgate as a
    /// statement about the store (a checkpoint sent to a witness, a signed head, a
    /// notification) waits for this first, so nothing outside ever vouches for a change the
    /// store then lacks. SQLite: at once (its commits are visible when they are written).
    async fn on_disk(&self) -> Result<()>;
    /// Begins a write transaction. It holds the audit chain's head until commit or drop.
    async fn write(&self) -> Result<Box<dyn WriteTx>>;
    /// A store-wide setting (the audit signing key's id, say).
    async fn meta(&self, key: &str) -> Result<Option<String>>;
}

/// One all-or-nothing change, across any of the aggregates. Dropping it without `commit` rolls
/// everything back.
///
/// A write that answers nothing (inserting a request, a review or a grant; a request's status)
/// may be sent with the change's next statement rather than at once (PostgreSQL: see
/// `Deferred` in `sql.rs`): its conflict is then reported by that statement's call, at the
/// latest by `commit`, and either way nothing of the change is written.
#[async_trait]
pub trait WriteTx:
    IdentityWrites + ResourceWrites + AccessWrites + AuditWrites + MfaWrites + GatewayWrites + OutboxWrites + SsoWrites + TokenWrites + Send
{
    async fn set_meta(&mut self, key: &str, value: &str) -> Result<()>;
    async fn delete_meta(&mut self, key: &str) -> Result<()>;

    /// Lets this transaction commit without waiting for its log flush (PostgreSQL's
    /// `synchronous_commit = off`). Only for changes that are redone by themselves if a crash
    /// loses them: the expiry engine's transitions are, since a lost one is overdue at the next
    /// start and made again.
    async fn relax_durability(&mut self) -> Result<()>;

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
