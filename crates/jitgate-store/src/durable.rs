//! Waiting for PostgreSQL's log flush after letting the audit head go.
//!
//! Every writer waits for the audit head, so a commit that waits for the disk while it holds
//! the head makes every writer wait for every flush, one after another. A PostgreSQL change
//! therefore commits without waiting for its flush (`synchronous_commit = off` from its
//! `BEGIN`), lets the head go, and only then waits, here, before it is acknowledged.
//!
//! PostgreSQL offers no call that waits for the log to reach a point; a transaction that writes
//! to the log and commits with the session's durability does: the log is flushed in order, so
//! its flush carries every commit before it. That transaction must write a record (one with
//! only a transaction id commits without waiting): a transactional logical message, one small
//! record, allowed to every role at any `wal_level` (a logical decoding consumer sees it under
//! the prefix `jitgate.flush`).
//!
//! Writers share flushes: one at a time runs, and it covers every change whose commit had
//! returned when it began; a writer whose change it covers returns without a flush of its own.
//! A crash between a commit and its flush loses the change unacknowledged, with everything that
//! came after it in the log.
//!
//! Such a change is visible to readers for that moment. What leaves jitgate as a statement
//! about the store (a checkpoint sent to a witness, the signed head, a notification) waits for
//! a flush that began after it read ([`crate::Store::on_disk`]), so no witness holds a
//! checkpoint of a change a crash then took back: a crash test found exactly that before.

use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

#[derive(Debug)]
pub(crate) struct LogFlusher {
    pool: PgPool,
    /// Calls so far (each counted once what it waits for is committed).
    committed: AtomicU64,
    /// Every change up to this count is on disk.
    flushed: AtomicU64,
    /// Held by the one flush in flight.
    flushing: Mutex<()>,
}

impl LogFlusher {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            committed: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flushing: Mutex::new(()),
        }
    }

    /// Returns once everything committed before the call is on disk: a change whose commit
    /// has just returned, or every change a read answered before it.
    pub(crate) async fn everything_shown_on_disk(&self) -> crate::Result<()> {
        let mine = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        if self.flushed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let _flushing = self.flushing.lock().await;
        // The flush that ran while this one waited may have begun after this change's commit.
        if self.flushed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        // Every change counted by now had committed before this flush begins.
        let covers = self.committed.load(Ordering::Acquire);
        sqlx::query("SELECT 1 FROM pg_logical_emit_message(true, 'jitgate.flush', '')")
            .execute(&self.pool)
            .await?;
        self.flushed.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }
}
