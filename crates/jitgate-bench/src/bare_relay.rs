//! The floor any PostgreSQL proxy stands on: a relay that copies bytes both ways and does
//! nothing else (no framing, no login, no audit), for `bench/pgbench.sh` to run beside jitgate
//! and PgBouncer. What it loses against direct connections is the cost of the extra hop itself.

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream, UnixStream};

pub async fn run(listen: &str, upstream: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
    eprintln!("bare relay on {} -> {upstream}", listener.local_addr()?);
    loop {
        let (mut client, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            // A path is a Unix socket (as PostgreSQL names them), anything else host:port.
            if upstream.starts_with('/') {
                if let Ok(mut up) = UnixStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            } else if let Ok(mut up) = TcpStream::connect(&upstream).await {
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
            }
        });
    }
}
