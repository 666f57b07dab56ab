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
//! A flush is a round trip and a transaction, and it takes less time than a change holds the
//! head, so under load each would carry only its own change. So a flush waits a moment first
//! when another change is on its way (waiting for the head or holding it): until that change
//! commits, or [`GROUP_WITHIN`] at most. One flush then carries both, and the ones that
//! committed meanwhile (group commit, as PostgreSQL's `commit_delay` does inside the server).
//! A crash between a commit and its flush loses the change unacknowledged, with everything that
//! came after it in the log.
//!
//! Such a change is visible to readers for that moment. What leaves jitgate as a statement
//! about the store (a checkpoint sent to a witness, the signed head, a notification) waits for
//! a flush that began after it read ([`crate::Store::on_disk`]), so no witness holds a
//! checkpoint of a change a crash then took back: a crash test found exactly that before.

use sqlx::PgPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// The longest a flush waits for a change on its way to commit, so that it carries that one
/// too: about what a change holds the head for under load. A change waits for it only while
/// another change is on its way, never when it is alone.
const GROUP_WITHIN: Duration = Duration::from_millis(2);

#[derive(Debug)]
pub(crate) struct LogFlusher {
    pool: PgPool,
    /// Calls so far (each counted once what it waits for is committed).
    committed: AtomicU64,
    /// Every change up to this count is on disk.
    flushed: AtomicU64,
    /// Held by the one flush in flight.
    flushing: Mutex<()>,
    /// Changes on their way to commit: from before they wait for the head until they commit
    /// or end without.
    on_their_way: AtomicU64,
    /// Told at every commit counted and every change that ends without.
    moved: Notify,
}

/// A change on its way to commit, counted as such until it has committed or ends otherwise.
#[derive(Debug)]
pub(crate) struct OnItsWay {
    flusher: Arc<LogFlusher>,
    done: bool,
}

impl OnItsWay {
    /// After the change's commit, with the head let go: returns once the change is on disk.
    pub(crate) async fn committed(mut self) -> crate::Result<()> {
        let mine = self.flusher.committed.fetch_add(1, Ordering::AcqRel) + 1;
        self.arrive();
        self.flusher.flush_through(mine).await
    }

    /// No longer on its way: a flush waiting for it goes on.
    fn arrive(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.flusher.on_their_way.fetch_sub(1, Ordering::AcqRel);
            self.flusher.moved.notify_waiters();
        }
    }
}

impl Drop for OnItsWay {
    fn drop(&mut self) {
        self.arrive();
    }
}

impl LogFlusher {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            committed: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flushing: Mutex::new(()),
            on_their_way: AtomicU64::new(0),
            moved: Notify::new(),
        }
    }

    /// Counts a change as on its way, from before it waits for the head.
    pub(crate) fn on_its_way(self: &Arc<Self>) -> OnItsWay {
        self.on_their_way.fetch_add(1, Ordering::AcqRel);
        OnItsWay {
            flusher: self.clone(),
            done: false,
        }
    }

    /// Returns once everything committed before the call is on disk: every change a read
    /// answered before it.
    pub(crate) async fn everything_shown_on_disk(&self) -> crate::Result<()> {
        let mine = self.committed.fetch_add(1, Ordering::AcqRel) + 1;
        self.flush_through(mine).await
    }

    /// Returns once the first `mine` commits counted are on disk.
    async fn flush_through(&self, mine: u64) -> crate::Result<()> {
        if self.flushed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let _flushing = self.flushing.lock().await;
        // The flush that ran while this one waited may have begun after this change's commit.
        if self.flushed.load(Ordering::Acquire) >= mine {
            return Ok(());
        }
        let moved = self.moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        if self.on_their_way.load(Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout(GROUP_WITHIN, moved).await;
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
