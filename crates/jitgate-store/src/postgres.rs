use crate::Result;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};
use std::time::Duration;

/// PostgreSQL, for several jitgate instances sharing the load. Writers serialize on the audit
/// head row (`SELECT … FOR UPDATE`), so the chain stays one line across instances.
#[derive(Clone)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    cache: std::sync::Arc<crate::cache::Cache>,
    deadline_signal: Option<std::sync::Arc<tokio::sync::Notify>>,
    _listener: std::sync::Arc<ListenerTask>,
}

/// Stops the LISTEN task when the last clone of the store goes.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let signal = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(crate::DEADLINE_CHANNEL).await?;
        let wake = signal.clone();
        let task = tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection; a notification missed
                // meanwhile is covered by the engine's slow periodic re-read.
                match listener.recv().await {
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "deadline notifications interrupted; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Self {
            read: pool.clone(),
            write: pool,
            cache: crate::cache::Cache::disabled(),
            deadline_signal: Some(signal),
            _listener: std::sync::Arc::new(ListenerTask(task)),
        })
    }
}

impl PgStore {
    async fn read_audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<jitgate_core::audit::StoredEvent>> {
        sqlx_audit_rows(&self.read, after_seq, limit).await
    }
}

crate::sql::impl_store!(PgStore, PgWriteTx, Postgres, "postgres", " FOR UPDATE");
