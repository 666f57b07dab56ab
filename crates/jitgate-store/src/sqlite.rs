use crate::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// SQLite in WAL mode. Writes go through a pool of one connection, so writers queue in the
/// process instead of failing with SQLITE_BUSY; reads use their own pool and never wait for a
/// writer.
#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
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
        })
    }
}

impl SqliteStore {
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

crate::sql::impl_store!(SqliteStore, SqliteWriteTx, Sqlite, "sqlite", "");
