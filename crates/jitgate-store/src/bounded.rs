//! A deadline on every store operation, so that a store which stops answering makes callers
//! fail fast (the API answers 503 `store_unavailable`) rather than wait for the kernel to give
//! up on a connection.
//!
//! The pool's acquire timeout (which also bounds opening a connection) covers a store that is
//! down or refuses connections, but not a connection that was established before the server
//! went quiet: a query on it waits until TCP gives up, minutes later. PostgreSQL's own
//! `statement_timeout` runs on the server and does nothing when the server is gone, and sqlx
//! offers no TCP keepalive or user timeout. So the bound is kept here, on the client, around
//! each call of the [`Store`] and [`WriteTx`] traits: a call that does not finish in time is
//! dropped (for a transaction: rolled back, or in doubt if it was the commit) and fails with
//! [`StoreError::Timeout`].

use crate::{
    AccessReads, AccessWrites, AttemptRecord, AuditReads, AuditWrites, ChallengeRecord, ConnectTokenRecord, EphemeralRoleRecord,
    GatewayReads, GatewaySession, GatewayWrites, GrantFilter, IdentityReads, IdentityWrites, KillFeed, MfaReads, MfaWrites,
    NotificationRecord, OutboxReads, OutboxWrites, PasskeyRecord, RequestFilter, ResourceCredentialRecord, ResourceReads, ResourceWrites,
    Result, SessionKill, SessionRecord, Source, SsoReads, SsoWrites, Store, StoreError, TokenReads, TokenWrites, TotpRecord, UserRecord,
    WriteTx,
};
use async_trait::async_trait;
use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, NewEvent, StoredEvent};
use jitgate_core::factor::Factor;
use jitgate_core::grant::{DbRoleState, Grant, GrantStatus};
use jitgate_core::names::{GroupName, ResourceName, RoleName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{AccessRequest, RequestStatus, Review};
use jitgate_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What reads of the audit log in pages (up to 20 000 events, for verification and export)
/// get at least: they move far more data than any other call, and a page that takes a few
/// seconds is slow, not lost.
pub const BULK_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A store whose every call gives up after `limit` (pages of the audit log after
/// [`BULK_READ_TIMEOUT`] at least).
pub struct Bounded<S> {
    inner: S,
    limit: Duration,
}

impl<S: Store> Bounded<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn bulk_limit(&self) -> Duration {
        self.limit.max(BULK_READ_TIMEOUT)
    }
}

async fn within<T>(limit: Duration, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Timeout { op, after: limit }))
}

/// Stamps out one read trait for [`Bounded`]: every call bounded by the store's limit, the
/// bulk reads of the audit log by [`BULK_READ_TIMEOUT`] at least.
macro_rules! bounded_reads {
    ($trait:ident {
        bulk { $($bulk:ident($($barg:ident: $bty:ty),*) -> $bret:ty;)* }
        each { $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* }
    }) => {
        #[async_trait]
        impl<S: Store> $trait for Bounded<S> {
            $(
                async fn $bulk(&self, $($barg: $bty),*) -> Result<$bret> {
                    within(self.bulk_limit(), stringify!($bulk), self.inner.$bulk($($barg),*)).await
                }
            )*

            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    within(self.limit, stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

#[async_trait]
impl<S: Store> Store for Bounded<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn deadline_signal(&self) -> Option<Arc<crate::DeadlineSignal>> {
        self.inner.deadline_signal()
    }

    fn session_kills(&self) -> Option<KillFeed> {
        self.inner.session_kills()
    }

    async fn ping(&self) -> Result<()> {
        within(self.limit, "ping", self.inner.ping()).await
    }

    async fn on_disk(&self) -> Result<()> {
        within(self.limit, "on_disk", self.inner.on_disk()).await
    }

    /// Bounded as a whole: waiting for the writers' lock, taking a connection, `BEGIN`
    /// and reading the audit head.
    async fn write(&self) -> Result<Box<dyn WriteTx>> {
        let inner = within(self.limit, "write", self.inner.write()).await?;
        Ok(Box::new(BoundedTx {
            inner,
            limit: self.limit,
            timed_out: None,
        }))
    }

    async fn meta(&self, key: &str) -> Result<Option<String>> {
        within(self.limit, "meta", self.inner.meta(key)).await
    }
}

bounded_reads! {
    IdentityReads {
        bulk {
        }
        each {
            user(name: &Username) -> Option<UserRecord>;
            users() -> Vec<UserRecord>;
            user_groups(name: &Username) -> BTreeSet<GroupName>;
            groups() -> BTreeMap<GroupName, Vec<Username>>;
            session(token_hash: &str) -> Option<SessionRecord>;
            session_user(token_hash: &str) -> Option<(SessionRecord, UserRecord)>;
        }
    }
}

bounded_reads! {
    ResourceReads {
        bulk {
        }
        each {
            resource(name: &ResourceName) -> Option<Resource>;
            resources() -> Vec<Resource>;
        }
    }
}

bounded_reads! {
    AccessReads {
        bulk {
        }
        each {
            request(id: &str) -> Option<AccessRequest>;
            request_for_review(id: &str, reviewer: &Username, now: Timestamp) -> Option<crate::ReviewFacts>;
            requests(filter: &RequestFilter) -> Vec<AccessRequest>;
            reviews(request_id: &str) -> Vec<Review>;
            reviewed_by(reviewer: &Username, ids: &[String]) -> std::collections::BTreeSet<String>;
            grant(id: &str) -> Option<Grant>;
            grant_for_request(request_id: &str) -> Option<Grant>;
            grant_ids_for_requests(ids: &[String]) -> std::collections::BTreeMap<String, String>;
            grants(filter: &GrantFilter) -> Vec<Grant>;
            live_grants_of(user: &Username) -> Vec<Grant>;
            active_roles_of(user: &Username, now: Timestamp) -> Vec<String>;
            next_deadline() -> Option<Timestamp>;
            requests_awaiting_ack(limit: i64) -> Vec<AccessRequest>;
            request_counts() -> Vec<(String, i64)>;
            live_grant_count(now: Timestamp) -> i64;
            notifications(recipient: &Username, limit: i64) -> Vec<NotificationRecord>;
        }
    }
}

bounded_reads! {
    AuditReads {
        bulk {
            audit_events(after_seq: i64, limit: i64) -> Vec<AuditEvent>;
            audit_rows(after_seq: i64, limit: i64) -> Vec<StoredEvent>;
            audit_events_for(targets: &[String]) -> Vec<AuditEvent>;
            audit_checkpoints() -> Vec<Checkpoint>;
            audit_checkpoints_after(after_seq: i64, limit: i64) -> Vec<Checkpoint>;
        }
        each {
            audit_last_checkpoint() -> Option<Checkpoint>;
            audit_head() -> ChainHead;
        }
    }
}

bounded_reads! {
    OutboxReads {
        bulk {
        }
        each {
            deliveries(filter: &crate::DeliveryFilter) -> Vec<crate::DeliveryRecord>;
            delivery_counts() -> Vec<(String, crate::DeliveryStatus, i64)>;
            user_emails(users: &[Username]) -> BTreeMap<Username, String>;
            channel_secret(channel: &str) -> Option<crate::ChannelSecretRecord>;
            claim_deliveries(channel: &str, now: Timestamp, lease_until: Timestamp, limit: i64) -> Vec<crate::DeliveryRecord>;
            release_claims() -> u64;
            delivery_sent(id: &str, at: Timestamp) -> ();
            delivery_failed(id: &str, error: &str, next_attempt_at: Timestamp, give_up: bool) -> ();
        }
    }
}

bounded_reads! {
    TokenReads {
        bulk {
        }
        each {
            api_token_user(token_hash: &str) -> Option<(crate::ApiTokenRecord, UserRecord)>;
            api_tokens(user: Option<&Username>) -> Vec<crate::ApiTokenRecord>;
            touch_api_token(id: &str, at: Timestamp) -> ();
        }
    }
}

bounded_reads! {
    SsoReads {
        bulk {
        }
        each {
            put_sso_sign_in(record: &crate::SsoSignInRecord, now: Timestamp) -> ();
            take_sso_sign_in(id: &str, now: Timestamp) -> Option<crate::SsoSignInRecord>;
            sso_identities_of(user: &Username) -> Vec<crate::SsoIdentityRecord>;
        }
    }
}

bounded_reads! {
    MfaReads {
        bulk {
        }
        each {
            totp(user: &Username) -> Option<TotpRecord>;
            passkeys(user: &Username) -> Vec<PasskeyRecord>;
            recovery_codes_left(user: &Username) -> i64;
            challenge(id: &str) -> Option<ChallengeRecord>;
            attempts(username: &str) -> Option<AttemptRecord>;
        }
    }
}

bounded_reads! {
    GatewayReads {
        bulk {
        }
        each {
            ephemeral_role(grant_id: &str) -> Option<EphemeralRoleRecord>;
            ephemeral_roles_for(grant_ids: &[String]) -> Vec<EphemeralRoleRecord>;
            resource_credential(resource: &ResourceName, role: Option<&RoleName>) -> Option<ResourceCredentialRecord>;
            ephemeral_roles_in(state: DbRoleState) -> Vec<EphemeralRoleRecord>;
            db_sessions(user: Option<&Username>, live_only: bool, limit: i64) -> Vec<GatewaySession>;
            killed_db_sessions(ids: &[String]) -> Vec<(String, String)>;
        }
    }
}

/// A write transaction whose every call gives up after `limit`. After one call timed out the
/// connection is in an unknown state: every later call, `commit` included, fails at once, and
/// dropping the transaction rolls it back.
struct BoundedTx {
    inner: Box<dyn WriteTx>,
    limit: Duration,
    /// The call that timed out, if one did.
    timed_out: Option<&'static str>,
}

impl BoundedTx {
    fn usable(&self) -> Result<()> {
        match self.timed_out {
            Some(op) => Err(StoreError::Timeout { op, after: self.limit }),
            None => Ok(()),
        }
    }

    fn settle<T>(&mut self, op: &'static str, outcome: std::result::Result<Result<T>, tokio::time::error::Elapsed>) -> Result<T> {
        outcome.unwrap_or_else(|_| {
            self.timed_out = Some(op);
            Err(StoreError::Timeout { op, after: self.limit })
        })
    }
}

/// Stamps out calls of a write trait for [`BoundedTx`], each bounded by the limit and refused
/// once any call timed out.
macro_rules! bounded_writes {
    ($trait:ident { $($extra:item)* } $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl $trait for BoundedTx {
            $($extra)*

            $(
                async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret> {
                    self.usable()?;
                    let outcome = tokio::time::timeout(self.limit, self.inner.$name($($arg),*)).await;
                    self.settle(stringify!($name), outcome)
                }
            )*
        }
    };
}

bounded_writes! {
    IdentityWrites {}
    user(name: &Username) -> Option<UserRecord>;
    user_groups(name: &Username) -> BTreeSet<GroupName>;
    count_users() -> i64;
    insert_user(user: &UserRecord) -> ();
    update_user(user: &UserRecord) -> ();
    ensure_group(group: &GroupName, source: Source) -> ();
    set_member(group: &GroupName, user: &Username, member: bool, source: Source) -> bool;
    clear_source(source: Source) -> ();
    insert_session(session: &SessionRecord) -> ();
    touch_session(token_hash: &str, now: Timestamp) -> ();
    delete_session(token_hash: &str) -> bool;
    delete_sessions_of(user: &Username) -> u64;
    delete_other_sessions_of(user: &Username, keep: &str) -> u64;
}

bounded_writes! {
    OutboxWrites {}
    outbox_cursor() -> Option<i64>;
    set_outbox_cursor(seq: i64) -> ();
    insert_deliveries(deliveries: &[crate::DeliveryRecord]) -> ();
    requeue_delivery(id: &str, now: Timestamp) -> bool;
    set_user_email(user: &Username, email: Option<&str>) -> bool;
    put_channel_secret(secret: &crate::ChannelSecretRecord) -> ();
    delete_channel_secret(channel: &str) -> bool;
    schedule_warning(grant_id: &str, at: Timestamp) -> ();
    take_due_warnings(now: Timestamp, limit: i64) -> Vec<String>;
}

bounded_writes! {
    TokenWrites {}
    insert_api_token(token: &crate::ApiTokenRecord) -> ();
    api_token(id: &str) -> Option<crate::ApiTokenRecord>;
    revoke_api_token(id: &str, at: Timestamp) -> bool;
    revoke_api_tokens_of(user: &Username, at: Timestamp) -> u64;
}

bounded_writes! {
    SsoWrites {}
    sso_identity(provider: &str, subject: &str) -> Option<crate::SsoIdentityRecord>;
    sso_identity_of(provider: &str, user: &Username) -> Option<crate::SsoIdentityRecord>;
    link_sso_identity(identity: &crate::SsoIdentityRecord) -> ();
    touch_sso_identity(provider: &str, subject: &str, at: Timestamp) -> ();
    sso_groups_of(user: &Username) -> BTreeSet<GroupName>;
    remove_member_from(group: &GroupName, user: &Username, source: Source) -> bool;
}

bounded_writes! {
    ResourceWrites {}
    put_resource(resource: &Resource, source: Source, now: Timestamp) -> ();
    delete_resource(name: &ResourceName) -> bool;
    resources_from(source: Source) -> Vec<ResourceName>;
    resource(name: &ResourceName) -> Option<Resource>;
}

bounded_writes! {
    AccessWrites {}
    request(id: &str) -> Option<AccessRequest>;
    reviews(request_id: &str) -> Vec<Review>;
    review_context(id: &str, reviewer: &Username, requester: &Username) -> Option<crate::ReviewContext>;
    insert_request(request: &AccessRequest) -> ();
    set_request_status(id: &str, status: RequestStatus, decided_at: Timestamp) -> ();
    insert_review(review: &Review) -> ();
    due_requests(now: Timestamp, limit: i64) -> Vec<AccessRequest>;
    grant(id: &str) -> Option<Grant>;
    insert_grant(grant: &Grant) -> ();
    insert_grant_warned(grant: &Grant, warn_at: Option<Timestamp>) -> ();
    update_grant(grant: &Grant) -> ();
    set_grants_status(ids: &[String], status: GrantStatus) -> ();
    expire_requests(ids: &[String], at: Timestamp) -> ();
    due_grants(now: Timestamp, limit: i64) -> Vec<Grant>;
    acknowledge_request(id: &str, by: &Username, at: Timestamp) -> bool;
    insert_notification(notification: &NotificationRecord) -> ();
}

bounded_writes! {
    AuditWrites {
        fn head(&self) -> &ChainHead {
            self.inner.head()
        }

        fn appended(&self) -> usize {
            self.inner.appended()
        }
    }
    append_audit(event: NewEvent, now: Timestamp) -> ();
    insert_checkpoint(checkpoint: &Checkpoint) -> ();
    last_checkpoint() -> Option<Checkpoint>;
}

bounded_writes! {
    MfaWrites {}
    set_session_mfa(token_hash: &str, at: Timestamp, method: Factor) -> ();
    put_totp(totp: &TotpRecord) -> ();
    totp(user: &Username) -> Option<TotpRecord>;
    use_totp_step(user: &Username, step: i64, confirm_at: Option<Timestamp>) -> bool;
    delete_totp(user: &Username) -> bool;
    insert_passkey(passkey: &PasskeyRecord) -> ();
    passkeys(user: &Username) -> Vec<PasskeyRecord>;
    update_passkey(credential_id: &str, passkey_json: Option<&str>, used_at: Timestamp) -> ();
    delete_passkey(user: &Username, credential_id: &str) -> bool;
    replace_recovery_codes(user: &Username, hashes: &[String], now: Timestamp) -> ();
    use_recovery_code(user: &Username, hash: &str, now: Timestamp) -> bool;
    recovery_codes_left(user: &Username) -> i64;
    insert_challenge(challenge: &ChallengeRecord, now: Timestamp) -> ();
    take_challenge(id: &str) -> Option<ChallengeRecord>;
    lock_attempts(username: &str) -> AttemptRecord;
    prune_attempts(before: Timestamp) -> u64;
    put_attempts(attempts: &AttemptRecord) -> ();
    clear_attempts(username: &str) -> bool;
}

bounded_writes! {
    GatewayWrites {}
    insert_connect_token(token: &ConnectTokenRecord) -> ();
    put_ephemeral_role(role: &EphemeralRoleRecord) -> ();
    put_resource_credential(credential: &ResourceCredentialRecord) -> ();
    delete_resource_credential(resource: &ResourceName, role: Option<&RoleName>) -> bool;
    delete_resource_credentials(resource: &ResourceName) -> u64;
    redeem_connect_token(token_hash: &str, now: Timestamp) -> Option<ConnectTokenRecord>;
    insert_db_session(session: &GatewaySession) -> ();
    continue_db_session(id: &str, grant_id: &str) -> bool;
    end_db_session(session: &GatewaySession) -> ();
    kill_db_session(id: &str, reason: &str) -> bool;
    send_session_kill(kill: &SessionKill) -> ();
}

bounded_writes! {
    WriteTx {
        /// A commit that times out is in doubt: it may have been made (the error says so).
        async fn commit(self: Box<Self>) -> Result<Vec<AuditEvent>> {
            self.usable()?;
            let limit = self.limit;
            tokio::time::timeout(limit, self.inner.commit())
                .await
                .unwrap_or_else(|_| Err(StoreError::Timeout { op: "commit", after: limit }))
        }
    }
    set_meta(key: &str, value: &str) -> ();
    delete_meta(key: &str) -> ();
    relax_durability() -> ();
}
