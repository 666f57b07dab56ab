//! Throwaway databases for tests: a fresh SQLite file or a fresh PostgreSQL database each time,
//! so tests never see each other's rows.

use crate::{PgStore, SqliteStore, StoreError};
use rand::Rng;
use sqlx::Connection;

/// The PostgreSQL server tests use: `JITGATE_TEST_PG_URL`, or the machine's local one.
pub fn pg_admin_url() -> String {
    std::env::var("JITGATE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_pg_database() -> Result<String, StoreError> {
    let admin = pg_admin_url();
    let name = format!("jitgate_test_{:016x}", rand::thread_rng().gen::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
        StoreError::Open(format!(
            "tests need PostgreSQL at {admin} (set JITGATE_TEST_PG_URL, or run scripts/test.sh): {e}"
        ))
    })?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
    Ok(format!("{base}/{name}"))
}

pub async fn fresh_pg() -> Result<PgStore, StoreError> {
    PgStore::connect(&fresh_pg_database().await?).await
}

pub async fn fresh_sqlite(dir: &std::path::Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(&dir.join("jitgate.db")).await
}
