use crate::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// SQLite in WAL mode. Writes go through a pool of one connection, so writers queue in the
/// process instead of failing with SQLITE_BUSY; reads use their own pool and never wait for a
/// writer. Being the only writer, it remembers the audit head and the resources between
/// transactions; a second process must not write the same file (the server holds a lock file).
#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    path: PathBuf,
    cache: std::sync::Arc<crate::cache::Cache>,
    /// Held while the store is open for writing: the cache is only right for the sole writer.
    _lock: Option<std::sync::Arc<std::fs::File>>,
    /// One process writes a SQLite file, so nobody else adds deadlines.
    deadline_signal: Option<std::sync::Arc<crate::DeadlineSignal>>,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Open(format!(
                "{} is in use by another jitgate process: stop that one first (Ctrl-C in its terminal), or give this one another --data-dir",
                path.display()
            )));
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode is durable against process crashes; a power cut may lose the
            // last transactions but never corrupts the file or the chain.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // A local file does not drop connections the way a network does, so the pool's ping before
        // each use (a round trip to the connection's thread) buys nothing here.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            read,
            write,
            path: path.to_owned(),
            cache: crate::cache::Cache::sole_writer(),
            _lock: Some(std::sync::Arc::new(lock)),
            deadline_signal: None,
        })
    }

    /// Opens an existing database to read only (verification while a server may be running):
    /// no lock, no migrations, no cache; writes fail.
    pub async fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::Open(format!("{} does not exist", path.display())));
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let read = SqlitePoolOptions::new()
            .max_connections(2)
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        Ok(Self {
            write: read.clone(),
            read,
            path: path.to_owned(),
            cache: crate::cache::Cache::disabled(),
            _lock: None,
            deadline_signal: None,
        })
    }
}

impl SqliteStore {
    /// One process uses a SQLite store: its kills never need to reach another.
    fn kill_feed(&self) -> Option<crate::KillFeed> {
        None
    }

    /// A commit waits for what `PRAGMA synchronous` says, under the head: a library call, no
    /// round trip to spare.
    fn log_flusher(&self) -> Option<std::sync::Arc<crate::durable::LogFlusher>> {
        None
    }

    /// A change's transaction; the head is read in it unless the store remembers it. A commit
    /// waits for what `synchronous = NORMAL` promises, under the head: there is no flush to
    /// wait for after it (`log_flusher`).
    async fn begin_change(&self, flush_after_head: bool) -> Result<crate::sql::Began<sqlx::Transaction<'static, Sqlite>>> {
        debug_assert!(!flush_after_head, "SQLite has no flush to wait for after the head");
        Ok((self.write.begin().await?, None))
    }

    /// Bulk reads of the audit log (verification and export read every row). sqlx hands each
    /// SQLite row from its connection thread to the caller separately, which costs about 7 µs a
    /// row; rusqlite in a blocking task reads the same rows with the same SQL several times
    /// faster, which is what lets `audit verify` walk a million events in seconds.
    async fn read_audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<jitgate_core::audit::StoredEvent>> {
        let path = self.path.clone();
        let read = move || -> rusqlite::Result<Vec<jitgate_core::audit::StoredEvent>> {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let sql = format!(
                "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                crate::sql::AUDIT_COLS
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([after_seq, limit], |r| {
                Ok(jitgate_core::audit::StoredEvent {
                    seq: r.get(0)?,
                    ts: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                    details_json: r.get(6)?,
                    prev_hash: r.get(7)?,
                    hash: r.get(8)?,
                })
            })?;
            rows.collect()
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| StoreError::Open(format!("audit read task: {e}")))?
            .map_err(|e| StoreError::Corrupt(format!("audit rows: {e}")))
    }
}

impl SqliteStore {
    /// The distinct `RESOURCE/ROLE` of a user's live grants as the CTE `held(resource, role)`,
    /// the user and the time as `$USER` and `$NOW` (filled in by `held` in
    /// `review_context.rs`), by a skip scan over the live-grants index: one probe per role held, however many grants of it there are (a
    /// DISTINCT reads them all). SQLite has no LATERAL, so the next role is found by rowid:
    /// the next role of the same resource, else the first of the next resource. Each of the
    /// two is one index seek; the row-value comparison `(resource, role) > (…)` that
    /// PostgreSQL seeks with, SQLite uses on `resource` only when its right side comes from
    /// the recursion, and so walked every live grant of the role held: 0.75 ms a decision for
    /// a person with 8,000 live grants, against 0.06 ms now (`sqlite3`, `.timer on`).
    const HELD_CTE: &'static str = "WITH RECURSIVE held(resource, role) AS ( \
           SELECT resource, role FROM (SELECT resource, role FROM grants \
             WHERE username = $USER AND next_deadline IS NOT NULL AND ends_at > $NOW \
             ORDER BY resource, role LIMIT 1) \
           UNION ALL \
           SELECT g.resource, g.role FROM held JOIN grants g ON g.rowid = COALESCE( \
             (SELECT rowid FROM grants \
              WHERE username = $USER AND next_deadline IS NOT NULL AND ends_at > $NOW \
                AND resource = held.resource AND role > held.role \
              ORDER BY role LIMIT 1), \
             (SELECT rowid FROM grants \
              WHERE username = $USER AND next_deadline IS NOT NULL AND ends_at > $NOW \
                AND resource > held.resource \
              ORDER BY resource, role LIMIT 1)))";
}

impl SqliteWriteTx {
    /// One process uses a SQLite file: no other instance is told of a new deadline or a kill.
    const SHARED: bool = false;
    /// Each write runs at once: no round trip to save.
    const JOINS_WRITES: bool = false;

    /// Nothing to relax: in WAL mode with `synchronous = NORMAL` a commit does not wait for
    /// its flush already.
    async fn relax(&mut self) -> Result<()> {
        Ok(())
    }

    /// The gateway of this process ends the sessions itself; there is nobody else to tell.
    async fn announce_kill(&mut self, _kill: &crate::SessionKill) -> Result<()> {
        Ok(())
    }
}

/// One process writes SQLite, one statement at a time: a claim needs no lock.
const CLAIM_LOCK: &str = "";

crate::sql::impl_store!(SqliteStore, SqliteWriteTx, sqlx::Transaction<'static, Sqlite>, Sqlite, "sqlite", "");
