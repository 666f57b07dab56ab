//! Throwaway databases for tests: a fresh SQLite file or a fresh PostgreSQL database each time,
//! so tests never see each other's rows.
// A helper for tests: a panic is how it reports that the test machine is not as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// Client halves of connections whose upstream side a [`SilentRelay`] cut.
pub type Held = std::sync::Arc<std::sync::Mutex<Vec<(tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf)>>>;

/// A relay to a PostgreSQL database (`via` is its URL) that, while `cut` is true, cuts the
/// upstream side of every connection that has sent `LISTEN` and keeps its client side open and
/// silent (`held`): a listener's connection dropped by a NAT or a load balancer without a word.
/// Other connections pass untouched.
pub struct SilentRelay {
    pub via: String,
    pub cut: tokio::sync::watch::Sender<bool>,
    pub held: Held,
}

impl SilentRelay {
    /// A relay to the database `url` names.
    pub async fn to(url: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (pg_host, pg_db) = url.split_once('@').unwrap().1.split_once('/').unwrap();
        let (pg_host, pg_db) = (pg_host.to_owned(), pg_db.to_owned());
        // A relay to PostgreSQL that can cut the LISTEN connection's upstream side while keeping
        // the client side open and silent.
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let via_relay = format!("{}@{}/{pg_db}", url.split_once('@').unwrap().0, relay.local_addr().unwrap());
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut_listen = cut.clone();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = held.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = relay.accept().await.unwrap();
                let upstream = tokio::net::TcpStream::connect(&pg_host).await.unwrap();
                let (mut cut, keep) = (cut_listen.subscribe(), keep.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = upstream.into_split();
                    let (mut from_client, mut from_upstream) = (vec![0u8; 65536], vec![0u8; 65536]);
                    let mut listens = false;
                    loop {
                        tokio::select! {
                            r = cr.read(&mut from_client) => {
                                let Ok(n @ 1..) = r else { return };
                                listens |= from_client[..n].windows(6).any(|w| w == b"LISTEN");
                                if uw.write_all(&from_client[..n]).await.is_err() { return }
                            }
                            r = ur.read(&mut from_upstream) => {
                                let Ok(n @ 1..) = r else { return };
                                if cw.write_all(&from_upstream[..n]).await.is_err() { return }
                            }
                            () = async { drop(cut.wait_for(|c| *c).await) }, if listens => {
                                drop((ur, uw));
                                keep.lock().unwrap().push((cr, cw));
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { via: via_relay, cut, held }
    }
}
