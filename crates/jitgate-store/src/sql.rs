//! What both backends share: the column lists, the helpers every aggregate's SQL uses, the
//! write transaction (which holds the audit head and writes the events at commit) and the
//! [`crate::Store`] and [`crate::WriteTx`] methods that belong to no aggregate.
//!
//! SQLite and PostgreSQL both accept `$N` parameters, `CAST(… AS TEXT)` and partial indexes, so
//! one SQL text serves both; `impl_store!` stamps out an implementation per backend, in the
//! backend's module, because sqlx's row and executor types differ per database. Each
//! aggregate's SQL lives in the aggregate's own file (`identity.rs`, `access.rs`, ...). What
//! differs between the backends is written in the backend's file: `HELD_CTE`,
//! `CLAIM_LOCK`, `SHARED`, `relax` and `announce_kill`.

pub(crate) const USER_COLS: &str = "name, display_name, password_hash, is_admin, disabled, created_at";
pub(crate) const REQUEST_COLS: &str =
    "id, requester, resource, role, reason, ticket, duration_secs, start_at, status, created_at, expires_at, decided_at, extends_grant, mfa_method, break_glass, acknowledged_by, acknowledged_at";
pub(crate) const REVIEW_COLS: &str = "request_id, reviewer, decision, comment, stage, mfa_method, created_at";
pub(crate) const GRANT_COLS: &str =
    "id, request_id, username, resource, role, starts_at, ends_at, status, created_at, revoked_at, revoked_by, revoke_reason";
pub(crate) const CHECKPOINT_COLS: &str = "seq, hash, ts, key_id, signature, prev_seq, prev_hash, next_key";
pub(crate) const AUDIT_COLS: &str = "seq, ts, actor, action, target, outcome, details, prev_hash, hash";

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> crate::StoreError {
    crate::StoreError::Corrupt(format!("{what}: {e}"))
}

/// A change's transaction as a backend begins it, and the audit head when it was read in the
/// same round trip.
pub(crate) type Began<T> = (T, Option<jitgate_core::audit::ChainHead>);

macro_rules! impl_store {
    ($store:ident, $tx:ident, $change:ty, $db:ty, $backend:literal, $lock:literal) => {
        use crate::sql::{corrupt, AUDIT_COLS, CHECKPOINT_COLS, GRANT_COLS, REQUEST_COLS, REVIEW_COLS, USER_COLS};
        use crate::{
            AttemptRecord, ChallengeRecord, ConnectTokenRecord, EphemeralRoleRecord, GatewaySession, GrantFilter, NotificationRecord,
            PasskeyRecord, RequestFilter, ResourceCredentialRecord, SessionRecord, Source, Store, StoreError, TotpRecord, UserRecord,
            WriteTx,
        };
        use async_trait::async_trait;
        use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, NewEvent, StoredEvent};
        use jitgate_core::factor::{Ceremony, Factor};
        use jitgate_core::grant::{DbRoleState, Grant, GrantStatus};
        use jitgate_core::names::{GroupName, ResourceName, RoleName, Username};
        use jitgate_core::policy::Resource;
        use jitgate_core::request::{AccessRequest, Decision, RequestStatus, Review};
        use jitgate_core::Timestamp;
        use sqlx::Row;
        use std::collections::{BTreeMap, BTreeSet};

        type DbRow = <$db as sqlx::Database>::Row;

        fn ts(ms: i64) -> Timestamp {
            Timestamp::from_millis(ms)
        }

        fn opt_ts(ms: Option<i64>) -> Option<Timestamp> {
            ms.map(Timestamp::from_millis)
        }

        fn name<T: std::str::FromStr<Err = String>>(s: String, what: &str) -> Result<T, StoreError> {
            s.parse().map_err(|e: String| corrupt(what, e))
        }

        /// A stored second factor's name, read back (NULL for none).
        fn factor(stored: Option<String>) -> Result<Option<jitgate_core::factor::Factor>, StoreError> {
            stored
                .map(|s| jitgate_core::factor::Factor::parse(&s).ok_or_else(|| corrupt("second factor", s)))
                .transpose()
        }

        fn all<T>(rows: Vec<DbRow>, f: fn(&DbRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
            rows.iter().map(f).collect()
        }

        /// Ids per `IN (...)` list: well under both backends' limit on bound parameters.
        const IN_CHUNK: usize = 500;

        /// `$first, $first+1, ...`: `n` placeholders for an `IN (...)` list.
        fn placeholders(first: usize, n: usize) -> String {
            (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        }

        crate::identity::identity_sql!($store, $tx, $db, $lock);
        crate::resources::resources_sql!($store, $tx, $db, $lock);
        crate::access::access_sql!($store, $tx, $db, $lock);
        crate::review_context::review_sql!($store, $db);
        crate::audit::audit_sql!($store, $tx, $db, $lock);
        crate::mfa::mfa_sql!($store, $tx, $db, $lock);
        crate::gateway::gateway_sql!($store, $tx, $db, $lock);
        crate::outbox::outbox_sql!($store, $tx, $db, $lock);
        crate::sso::sso_sql!($store, $tx, $db, $lock);
        crate::tokens::tokens_sql!($store, $tx, $db, $lock);

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn deadline_signal(&self) -> Option<std::sync::Arc<crate::DeadlineSignal>> {
                self.deadline_signal.clone()
            }

            fn session_kills(&self) -> Option<crate::KillFeed> {
                self.kill_feed()
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            async fn on_disk(&self) -> Result<(), StoreError> {
                match self.log_flusher() {
                    Some(flusher) => flusher.everything_shown_on_disk().await,
                    None => Ok(()),
                }
            }

            async fn write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
                // On its way from before it waits for the head: a change that has just
                // committed may wait a moment for this one, so that one flush carries both (see
                // `crate::durable`). A backend with no flush to wait for commits durably.
                let flush_after_head = self.log_flusher().map(|flusher| flusher.on_its_way());
                let slot = self.cache.hold_head().await;
                let (mut tx, locked) = self.begin_change(flush_after_head.is_some()).await?;
                let head = match slot.known().or(locked) {
                    Some(head) => head,
                    None => {
                        let row = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1", $lock))
                            .fetch_one(&mut *tx)
                            .await?;
                        ChainHead {
                            seq: row.try_get("seq")?,
                            hash: row.try_get("hash")?,
                        }
                    }
                };
                Ok(Box::new($tx {
                    head,
                    tx,
                    appended: Vec::new(),
                    appended_details: Vec::new(),
                    poisoned: false,
                    slot,
                    directory_changed: false,
                    earliest_deadline: None,
                    deferred: Vec::new(),
                    flush_after_head,
                }))
            }

            async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.read)
                    .await?)
            }
        }

        pub struct $tx {
            tx: $change,
            head: ChainHead,
            appended: Vec<AuditEvent>,
            /// Each appended event's details as the canonical text it was hashed as.
            appended_details: Vec<String>,
            poisoned: bool,
            slot: crate::cache::HeadSlot,
            directory_changed: bool,
            /// The earliest deadline this transaction added (milliseconds), announced to every
            /// instance at commit.
            earliest_deadline: Option<i64>,
            /// Writes held back until the change's next statement (see [`Deferred`]).
            deferred: Vec<Deferred>,
            /// Where to wait for the log flush once the head is let go, for a backend that
            /// commits under the head without waiting for it (see [`crate::durable`]); `None`
            /// once the change's durability is relaxed.
            flush_after_head: Option<crate::durable::OnItsWay>,
        }

        /// Writes held back at most; a request's or a review's change holds four.
        const HELD_AT_MOST: usize = 8;

        /// A write whose answer nobody waits for (an insert; an update that reports nothing).
        /// Every statement of a change costs a round trip to the database while the change
        /// holds the audit head, and every writer waits for the head; so, where the backend can
        /// join data-modifying statements into one (PostgreSQL's `WITH w AS (INSERT …)`), such
        /// writes are held back and sent with the change's next statement: its next read, or
        /// the audit events at commit. SQLite is a library call away and runs each at once.
        /// The sub-statements of one statement share a snapshot and do not see each other's
        /// rows, so an update is never joined with writes held back on its own table: those
        /// are sent first.
        struct Deferred {
            table: &'static str,
            /// What it writes, for a conflict's message.
            what: String,
            push: Box<dyn FnOnce(&mut sqlx::QueryBuilder<'static, $db>) + Send>,
        }

        impl $tx {
            /// Runs `write` now or with the next statement (see [`Deferred`]).
            async fn defer(
                &mut self,
                table: &'static str,
                update: bool,
                what: String,
                push: impl FnOnce(&mut sqlx::QueryBuilder<'static, $db>) + Send + 'static,
            ) -> Result<(), StoreError> {
                if !Self::JOINS_WRITES {
                    let mut q = sqlx::QueryBuilder::<'static, $db>::new("");
                    push(&mut q);
                    let done = q.build().execute(&mut *self.tx).await;
                    done.map_err(|e| self.conflict(e, what))?;
                    return Ok(());
                }
                // A change that writes rows by the thousand (an import) sends them a few at a
                // time: one statement of thousands of sub-statements plans slowly and nears the
                // protocol's limit on bound values.
                if self.deferred.len() >= HELD_AT_MOST || update && self.deferred.iter().any(|d| d.table == table) {
                    self.flush().await?;
                }
                self.deferred.push(Deferred {
                    table,
                    what,
                    push: Box::new(push),
                });
                Ok(())
            }

            /// Opens `q` with the held-back writes as `WITH w0 AS (…), w1 AS (…)`, and names
            /// them; nothing when none are held back.
            fn push_deferred(&mut self, q: &mut sqlx::QueryBuilder<'static, $db>) -> Option<String> {
                if self.deferred.is_empty() {
                    return None;
                }
                let mut what = Vec::with_capacity(self.deferred.len());
                q.push("WITH ");
                for (i, d) in self.deferred.drain(..).enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.push(format!("w{i} AS ("));
                    (d.push)(q);
                    q.push(")");
                    what.push(d.what);
                }
                Some(what.join(", "))
            }

            /// Sends the held-back writes, in one statement.
            async fn flush(&mut self) -> Result<(), StoreError> {
                let mut q = sqlx::QueryBuilder::<'static, $db>::new("");
                let Some(what) = self.push_deferred(&mut q) else {
                    return Ok(());
                };
                q.push(" SELECT 1");
                // The writes are out of `deferred` now: a call given up while they are on their
                // way must leave the change unable to commit without them.
                let poisoned = std::mem::replace(&mut self.poisoned, true);
                let done = q.build().execute(&mut *self.tx).await;
                done.map_err(|e| self.conflict(e, what))?;
                self.poisoned = poisoned;
                Ok(())
            }

            /// The connection, for a statement that reads, or writes what must be written now:
            /// the writes held back go first.
            async fn db(&mut self) -> Result<&mut <$db as sqlx::Database>::Connection, StoreError> {
                self.flush().await?;
                Ok(&mut *self.tx)
            }
        }

        impl $tx {
            /// PostgreSQL aborts a transaction at its first failed statement (SQLite does not);
            /// marking the transaction poisoned makes `commit` refuse on both, the same way.
            fn conflict(&mut self, e: sqlx::Error, what: String) -> StoreError {
                self.poisoned = true;
                if crate::is_unique_violation(&e) {
                    StoreError::Conflict(what)
                } else {
                    StoreError::Database(e)
                }
            }

            fn deadline_added(&mut self, at_ms: i64) {
                self.earliest_deadline = Some(self.earliest_deadline.map_or(at_ms, |e| e.min(at_ms)));
            }
        }

        #[async_trait]
        impl WriteTx for $tx {
            async fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM meta WHERE key = $1")
                    .bind(key)
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn relax_durability(&mut self) -> Result<(), StoreError> {
                self.relax().await
            }

            async fn commit(mut self: Box<Self>) -> Result<Vec<AuditEvent>, StoreError> {
                if self.poisoned {
                    return Err(StoreError::Aborted);
                }
                // The audit_head row follows by trigger (see the migration).
                // A new deadline is announced at commit to every instance's expiry engine (see
                // PgStore), with the time, so an engine waiting for an earlier one reads nothing.
                // The announcement rides on the events' insert: one round trip less while the
                // head is held.
                let mut deadline = self.earliest_deadline.filter(|_| Self::SHARED).map(|at| at.to_string());
                if self.appended.is_empty() {
                    self.flush().await?;
                    if let Some(at) = deadline.take() {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(crate::DEADLINE_CHANNEL)
                            .bind(at)
                            .execute(&mut *self.tx)
                            .await?;
                    }
                }
                let mut details = std::mem::take(&mut self.appended_details).into_iter();
                let events = std::mem::take(&mut self.appended);
                for chunk in events.chunks(1000) {
                    let announce = deadline.take();
                    // The writes held back ride on the first chunk's statement.
                    let mut insert = sqlx::QueryBuilder::<'static, $db>::new("");
                    let held = self.push_deferred(&mut insert);
                    let wrapped = held.is_some() || announce.is_some();
                    if wrapped {
                        insert.push(if held.is_some() {
                            ", inserted AS ("
                        } else {
                            "WITH inserted AS ("
                        });
                    }
                    insert.push(format!("INSERT INTO audit_events ({AUDIT_COLS}) "));
                    let texts: Vec<String> = details.by_ref().take(chunk.len()).collect();
                    insert.push_values(chunk.iter().zip(texts), |mut row, (e, d)| {
                        row.push_bind(e.seq)
                            .push_bind(e.ts)
                            .push_bind(e.actor.clone())
                            .push_bind(e.action.clone())
                            .push_bind(e.target.clone())
                            .push_bind(e.outcome.clone())
                            .push_bind(d)
                            .push_bind(e.prev_hash.clone())
                            .push_bind(e.hash.clone());
                    });
                    if wrapped {
                        insert.push(" RETURNING 1) ");
                    }
                    if let Some(at) = announce {
                        insert
                            .push("SELECT pg_notify(")
                            .push_bind(crate::DEADLINE_CHANNEL)
                            .push(", ")
                            .push_bind(at);
                        insert.push(") FROM (SELECT 1 FROM inserted LIMIT 1) AS announced");
                    } else if wrapped {
                        insert.push("SELECT 1");
                    }
                    let done = insert.build().execute(&mut *self.tx).await;
                    match held {
                        Some(what) => {
                            done.map_err(|e| self.conflict(e, what))?;
                        }
                        None => {
                            done?;
                        }
                    }
                }
                self.appended = events;
                let this = *self;
                this.tx.commit().await?;
                this.slot.committed(&this.head, this.directory_changed);
                // Acknowledged only once on disk (see `crate::durable`).
                if let Some(on_its_way) = this.flush_after_head {
                    on_its_way.committed().await?;
                }
                Ok(this.appended)
            }
        }
    };
}

pub(crate) use impl_store;
