//! The audit chain: its events, its head, and the signed checkpoints over it.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, NewEvent, StoredEvent};
use jitgate_core::Timestamp;

/// Reads outside a transaction.
#[async_trait]
pub trait AuditReads: Send + Sync {
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
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait AuditWrites: Send {
    /// The chain's head after the events appended so far.
    fn head(&self) -> &ChainHead;
    /// How many events this transaction has appended.
    fn appended(&self) -> usize;
    /// Appends an event to the chain, in this transaction.
    async fn append_audit(&mut self, event: NewEvent, now: Timestamp) -> Result<()>;
    async fn insert_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<()>;
    /// The newest checkpoint, read in this transaction (under the head's lock, so no other
    /// writer adds one meanwhile): what the next checkpoint links to.
    async fn last_checkpoint(&mut self) -> Result<Option<Checkpoint>>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! audit_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        fn stored_from(row: &DbRow) -> Result<StoredEvent, StoreError> {
            Ok(StoredEvent {
                seq: row.try_get("seq")?,
                ts: row.try_get("ts")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                outcome: row.try_get("outcome")?,
                details_json: row.try_get("details")?,
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        fn checkpoint_from(r: &DbRow) -> Result<Checkpoint, StoreError> {
            let prev_seq: Option<i64> = r.try_get("prev_seq")?;
            let prev_hash: Option<String> = r.try_get("prev_hash")?;
            Ok(Checkpoint {
                seq: r.try_get("seq")?,
                hash: r.try_get("hash")?,
                ts: r.try_get("ts")?,
                key_id: r.try_get("key_id")?,
                signature: r.try_get("signature")?,
                prev: match (prev_seq, prev_hash) {
                    (Some(seq), Some(hash)) => Some(jitgate_core::audit::CheckpointLink { seq, hash }),
                    _ => None,
                },
                next_key: r.try_get("next_key")?,
            })
        }

        fn audit_from(row: &DbRow) -> Result<AuditEvent, StoreError> {
            stored_from(row).map(StoredEvent::into_event)
        }

        #[async_trait]
        impl crate::AuditReads for $store {
            async fn audit_events(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
                let sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
                all(sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(&self.read).await?, audit_from)
            }

            async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
                self.read_audit_rows(after_seq, limit).await
            }

            async fn audit_events_for(&self, targets: &[String]) -> Result<Vec<AuditEvent>, StoreError> {
                let mut out = Vec::new();
                for target in targets {
                    let sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE target = $1 ORDER BY seq");
                    out.extend(all(sqlx::query(&sql).bind(target).fetch_all(&self.read).await?, audit_from)?);
                }
                out.sort_by_key(|e| e.seq);
                Ok(out)
            }

            async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
                self.audit_checkpoints_after(0, i64::MAX).await
            }

            async fn audit_checkpoints_after(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2");
                let rows = sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(&self.read).await?;
                rows.iter().map(checkpoint_from).collect()
            }

            async fn audit_last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1");
                let row = sqlx::query(&sql).fetch_optional(&self.read).await?;
                row.as_ref().map(checkpoint_from).transpose()
            }

            async fn audit_head(&self) -> Result<ChainHead, StoreError> {
                let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.read).await?;
                Ok(ChainHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? })
            }
        }

        #[async_trait]
        impl crate::AuditWrites for $tx {
            fn head(&self) -> &ChainHead {
                &self.head
            }

            fn appended(&self) -> usize {
                self.appended.len()
            }

            async fn append_audit(&mut self, event: NewEvent, now: Timestamp) -> Result<(), StoreError> {
                // Written at commit, all in one statement: a change's events cost one round
                // trip to the database, not one each. Nothing is handed back but the head
                // (`head()`): a copy of the event would copy its details, and the gateway's
                // carry hundreds of statements.
                let (e, details) = self.head.append_stored(event, now.as_millis());
                self.appended.push(e);
                self.appended_details.push(details);
                Ok(())
            }

            async fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature, prev_seq, prev_hash, next_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(c.seq)
                    .bind(&c.hash)
                    .bind(c.ts)
                    .bind(&c.key_id)
                    .bind(&c.signature)
                    .bind(c.prev.as_ref().map(|p| p.seq))
                    .bind(c.prev.as_ref().map(|p| p.hash.clone()))
                    .bind(c.next_key.clone())
                    .execute(self.db().await?)
                    .await
                    .map_err(|e| self.conflict(e, format!("checkpoint {}", c.seq)))?;
                Ok(())
            }

            async fn last_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1");
                let row = sqlx::query(&sql).fetch_optional(self.db().await?).await?;
                row.as_ref().map(checkpoint_from).transpose()
            }
        }
    };
}

pub(crate) use audit_sql;
