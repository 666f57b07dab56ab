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
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            cache: crate::cache::Cache::disabled(),
        })
    }
}

impl PgStore {
    async fn read_audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<jitgate_core::audit::StoredEvent>> {
        sqlx_audit_rows(&self.read, after_seq, limit).await
    }
}

crate::sql::impl_store!(PgStore, PgWriteTx, Postgres, "postgres", " FOR UPDATE");
