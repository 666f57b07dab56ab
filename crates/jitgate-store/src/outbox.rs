//! The notification outbox: messages made from committed audit events, one per destination of
//! one channel, sent at least once with retries; the warnings due before grants end; the
//! channels' sealed secrets; people's e-mail addresses.
//!
//! The messages are made in a [`crate::WriteTx`] that moves the outbox's cursor over the audit
//! log, so each event becomes its messages exactly once, on whichever instance gets there
//! first. Sending them is bookkeeping, not a change anyone audits: claims and results are
//! written outside the audit head ([`OutboxReads::claim_deliveries`]), so a slow receiver
//! never holds up the workflow, and two instances never claim the same message (`FOR UPDATE
//! SKIP LOCKED` on PostgreSQL; SQLite has one writer).

use crate::Result;
use async_trait::async_trait;
use jitgate_core::names::Username;
use jitgate_core::Timestamp;
use std::collections::BTreeMap;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or its next one.
    Pending,
    Sent,
    /// Given up after the most attempts allowed (an administrator may queue it again).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One message to one destination of one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Also the idempotency key the receiver sees: the same on every retry.
    pub id: String,
    /// The audit event it was made from.
    pub event_seq: i64,
    /// What happened, as the notification schema names it (`request.created`, ...).
    pub kind: String,
    pub channel: String,
    /// An e-mail address, a chat channel or person; empty for a webhook (its URL is the
    /// channel's).
    pub destination: String,
    /// Messages with the same key and destination are sent in the order of their events.
    pub order_key: String,
    /// The notification as JSON (the webhook schema), rendered per channel when sent.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// Which messages an administrator lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub channel: Option<String>,
    pub limit: i64,
}

/// A channel's secret, sealed with the server's key ring (associated data: the channel name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSecretRecord {
    pub channel: String,
    pub key_version: u32,
    pub sealed: String,
    pub updated_at: Timestamp,
    pub updated_by: Username,
}

/// Reads outside a transaction, and the senders' bookkeeping.
#[async_trait]
pub trait OutboxReads: Send + Sync {
    /// Newest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>>;
    /// How many messages each channel has in each status.
    async fn delivery_counts(&self) -> Result<Vec<(String, DeliveryStatus, i64)>>;
    /// The e-mail addresses of those of `users` that have one.
    async fn user_emails(&self, users: &[Username]) -> Result<BTreeMap<Username, String>>;
    async fn channel_secret(&self, channel: &str) -> Result<Option<ChannelSecretRecord>>;
    /// Takes up to `limit` messages of `channel` due at `now` for sending until `lease_until`,
    /// counting the attempt: pending ones whose time has come, not held by another sender, and
    /// with no earlier message pending for the same order key and destination. Earliest events
    /// first.
    async fn claim_deliveries(&self, channel: &str, now: Timestamp, lease_until: Timestamp, limit: i64) -> Result<Vec<DeliveryRecord>>;
    /// Lets go of every claim: for a store one process uses alone, at its start, when the
    /// claims are those of a process that died while sending.
    async fn release_claims(&self) -> Result<u64>;
    /// The message reached its receiver.
    async fn delivery_sent(&self, id: &str, at: Timestamp) -> Result<()>;
    /// The attempt failed: try again at `next_attempt_at`, or give up (`Failed`) when
    /// `give_up`.
    async fn delivery_failed(&self, id: &str, error: &str, next_attempt_at: Timestamp, give_up: bool) -> Result<()>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait OutboxWrites: Send {
    /// The last audit event made into messages (`None` before the first time).
    async fn outbox_cursor(&mut self) -> Result<Option<i64>>;
    async fn set_outbox_cursor(&mut self, seq: i64) -> Result<()>;
    async fn insert_deliveries(&mut self, deliveries: &[DeliveryRecord]) -> Result<()>;
    /// A failed message back in the queue, due at `now`, its attempts counted afresh. False when
    /// there is no failed message `id`.
    async fn requeue_delivery(&mut self, id: &str, now: Timestamp) -> Result<bool>;
    /// False when there is no such user.
    async fn set_user_email(&mut self, user: &Username, email: Option<&str>) -> Result<bool>;
    async fn put_channel_secret(&mut self, secret: &ChannelSecretRecord) -> Result<()>;
    async fn delete_channel_secret(&mut self, channel: &str) -> Result<bool>;
    /// A warning due at `at` before grant `grant_id` ends (replacing one it had); a grant made
    /// now takes it at once ([`crate::AccessWrites::insert_grant_warned`]).
    async fn schedule_warning(&mut self, grant_id: &str, at: Timestamp) -> Result<()>;
    /// Takes the warnings due at `now`, earliest first: they are gone from the schedule.
    async fn take_due_warnings(&mut self, now: Timestamp, limit: i64) -> Result<Vec<String>>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports, the shared helpers and `CLAIM_LOCK`).
macro_rules! outbox_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        const DELIVERY_COLS: &str = "id, event_seq, kind, channel, destination, order_key, payload, status, attempts, \
                                     next_attempt_at, last_error, created_at, sent_at";

        fn delivery_from(row: &DbRow) -> Result<crate::DeliveryRecord, StoreError> {
            let status: String = row.try_get("status")?;
            Ok(crate::DeliveryRecord {
                id: row.try_get("id")?,
                event_seq: row.try_get("event_seq")?,
                kind: row.try_get("kind")?,
                channel: row.try_get("channel")?,
                destination: row.try_get("destination")?,
                order_key: row.try_get("order_key")?,
                payload: row.try_get("payload")?,
                status: crate::DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status", &status))?,
                attempts: row.try_get("attempts")?,
                next_attempt_at: ts(row.try_get("next_attempt_at")?),
                last_error: row.try_get("last_error")?,
                created_at: ts(row.try_get("created_at")?),
                sent_at: opt_ts(row.try_get("sent_at")?),
            })
        }

        fn channel_secret_from(row: &DbRow) -> Result<crate::ChannelSecretRecord, StoreError> {
            let version: i32 = row.try_get("key_version")?;
            Ok(crate::ChannelSecretRecord {
                channel: row.try_get("channel")?,
                key_version: u32::try_from(version).map_err(|e| corrupt("key version", e))?,
                sealed: row.try_get("sealed")?,
                updated_at: ts(row.try_get("updated_at")?),
                updated_by: name(row.try_get("updated_by")?, "user")?,
            })
        }

        #[async_trait]
        impl crate::OutboxReads for $store {
            async fn deliveries(&self, f: &crate::DeliveryFilter) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
                let sql = format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR channel = $2) \
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(f.status.map(|s| s.as_str()))
                    .bind(f.channel.as_deref())
                    .bind(f.limit)
                    .fetch_all(&self.read)
                    .await?;
                all(rows, delivery_from)
            }

            async fn delivery_counts(&self) -> Result<Vec<(String, crate::DeliveryStatus, i64)>, StoreError> {
                let rows =
                    sqlx::query("SELECT channel, status, COUNT(*) AS n FROM deliveries GROUP BY channel, status ORDER BY channel, status")
                        .fetch_all(&self.read)
                        .await?;
                rows.iter()
                    .map(|r| {
                        let status: String = r.try_get("status")?;
                        Ok((
                            r.try_get("channel")?,
                            crate::DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status", &status))?,
                            r.try_get("n")?,
                        ))
                    })
                    .collect()
            }

            async fn user_emails(&self, users: &[Username]) -> Result<BTreeMap<Username, String>, StoreError> {
                let mut out = BTreeMap::new();
                for chunk in users.chunks(IN_CHUNK) {
                    let sql = format!(
                        "SELECT name, email FROM users WHERE email IS NOT NULL AND name IN ({})",
                        placeholders(1, chunk.len())
                    );
                    let mut q = sqlx::query(&sql);
                    for u in chunk {
                        q = q.bind(u.as_str());
                    }
                    for r in q.fetch_all(&self.read).await? {
                        out.insert(name(r.try_get("name")?, "user")?, r.try_get("email")?);
                    }
                }
                Ok(out)
            }

            async fn channel_secret(&self, channel: &str) -> Result<Option<crate::ChannelSecretRecord>, StoreError> {
                sqlx::query("SELECT channel, key_version, sealed, updated_at, updated_by FROM channel_secrets WHERE channel = $1")
                    .bind(channel)
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(channel_secret_from)
                    .transpose()
            }

            async fn claim_deliveries(
                &self,
                channel: &str,
                now: Timestamp,
                lease_until: Timestamp,
                limit: i64,
            ) -> Result<Vec<crate::DeliveryRecord>, StoreError> {
                let sql = format!(
                    "UPDATE deliveries SET lease_until = $2, attempts = attempts + 1 WHERE id IN ( \
                       SELECT d.id FROM deliveries d \
                       WHERE d.status = 'pending' AND d.channel = $4 AND d.next_attempt_at <= $1 AND d.lease_until <= $1 \
                         AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.status = 'pending' AND e.channel = d.channel \
                           AND e.destination = d.destination AND e.order_key = d.order_key AND e.event_seq < d.event_seq) \
                       ORDER BY d.event_seq, d.id LIMIT $3{CLAIM_LOCK}) \
                     RETURNING {DELIVERY_COLS}"
                );
                let rows = sqlx::query(&sql)
                    .bind(now.as_millis())
                    .bind(lease_until.as_millis())
                    .bind(limit)
                    .bind(channel)
                    .fetch_all(&self.write)
                    .await?;
                let mut claimed = all(rows, delivery_from)?;
                claimed.sort_by(|a, b| (a.event_seq, &a.id).cmp(&(b.event_seq, &b.id)));
                Ok(claimed)
            }

            async fn release_claims(&self) -> Result<u64, StoreError> {
                let r = sqlx::query("UPDATE deliveries SET lease_until = 0 WHERE status = 'pending' AND lease_until > 0")
                    .execute(&self.write)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn delivery_sent(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE deliveries SET status = 'sent', sent_at = $2, lease_until = 0, last_error = NULL WHERE id = $1")
                    .bind(id)
                    .bind(at.as_millis())
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn delivery_failed(&self, id: &str, error: &str, next_attempt_at: Timestamp, give_up: bool) -> Result<(), StoreError> {
                sqlx::query("UPDATE deliveries SET status = $2, next_attempt_at = $3, last_error = $4, lease_until = 0 WHERE id = $1")
                    .bind(id)
                    .bind(if give_up { "failed" } else { "pending" })
                    .bind(next_attempt_at.as_millis())
                    .bind(error)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl crate::OutboxWrites for $tx {
            async fn outbox_cursor(&mut self) -> Result<Option<i64>, StoreError> {
                let v: Option<String> = sqlx::query_scalar(concat!("SELECT value FROM meta WHERE key = 'outbox.cursor'", $lock))
                    .fetch_optional(self.db().await?)
                    .await?;
                v.map(|s| s.parse::<i64>().map_err(|e| corrupt("outbox cursor", e)))
                    .transpose()
            }

            async fn set_outbox_cursor(&mut self, seq: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('outbox.cursor', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(seq.to_string())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn insert_deliveries(&mut self, deliveries: &[crate::DeliveryRecord]) -> Result<(), StoreError> {
                for chunk in deliveries.chunks(IN_CHUNK / 13) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO deliveries ({DELIVERY_COLS}) "));
                    insert.push_values(chunk, |mut row, d| {
                        row.push_bind(d.id.clone())
                            .push_bind(d.event_seq)
                            .push_bind(d.kind.clone())
                            .push_bind(d.channel.clone())
                            .push_bind(d.destination.clone())
                            .push_bind(d.order_key.clone())
                            .push_bind(d.payload.clone())
                            .push_bind(d.status.as_str())
                            .push_bind(d.attempts)
                            .push_bind(d.next_attempt_at.as_millis())
                            .push_bind(d.last_error.clone())
                            .push_bind(d.created_at.as_millis())
                            .push_bind(d.sent_at.map(|t| t.as_millis()));
                    });
                    if let Err(e) = insert.build().execute(self.db().await?).await {
                        return Err(self.conflict(e, "delivery".into()));
                    }
                }
                Ok(())
            }

            async fn requeue_delivery(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $2, lease_until = 0 \
                     WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .bind(now.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn set_user_email(&mut self, user: &Username, email: Option<&str>) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE users SET email = $2 WHERE name = $1")
                    .bind(user.as_str())
                    .bind(email)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn put_channel_secret(&mut self, s: &crate::ChannelSecretRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO channel_secrets (channel, key_version, sealed, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (channel) DO UPDATE SET key_version = excluded.key_version, sealed = excluded.sealed, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(&s.channel)
                .bind(i32::try_from(s.key_version).unwrap_or(i32::MAX))
                .bind(&s.sealed)
                .bind(s.updated_at.as_millis())
                .bind(s.updated_by.as_str())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn delete_channel_secret(&mut self, channel: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM channel_secrets WHERE channel = $1")
                    .bind(channel)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn schedule_warning(&mut self, grant_id: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE grants SET warn_at = $2 WHERE id = $1")
                    .bind(grant_id)
                    .bind(at.as_millis())
                    .execute(self.db().await?)
                    .await?;
                self.deadline_added(at.as_millis());
                Ok(())
            }

            async fn take_due_warnings(&mut self, now: Timestamp, limit: i64) -> Result<Vec<String>, StoreError> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE grants SET warn_at = NULL WHERE id IN \
                     (SELECT id FROM grants WHERE warn_at <= $1 ORDER BY warn_at, id LIMIT $2) RETURNING id",
                )
                .bind(now.as_millis())
                .bind(limit)
                .fetch_all(self.db().await?)
                .await?;
                Ok(ids)
            }
        }
    };
}

pub(crate) use outbox_sql;
