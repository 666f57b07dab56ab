//! Ending a killed session's backend so that nothing it was sent runs after the end.
//!
//! Closing the connection is not enough: a backend reads what is already in its socket before
//! it sees the end of the stream, so a statement running at the kill would finish (and
//! commit), and requests pipelined behind it would run after it. A CancelRequest stops only the
//! running statement, after which the queued ones would run. So a busy backend is terminated
//! (`pg_terminate_backend`, which aborts its transaction and reads nothing more), over a
//! second login as the session's own login (a role may end its own backends), or the service
//! login; a cancel only where neither login is possible. An idle backend gets Terminate.
//! Either way the gateway waits to see the backend's connection close, and says so.

use crate::relay::Ending;
use crate::transport::Transport;
use crate::upstream::{self, UpstreamTarget};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long to wait for the backend's connection to close before calling the end unconfirmed.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// Ends the backend behind `stream` (whose cancel key is `key`: its process id first).
pub async fn end_backend(
    stream: &mut Transport,
    busy: bool,
    login: &UpstreamTarget,
    terminator: impl std::future::Future<Output = Option<UpstreamTarget>>,
    key: Option<(i32, i32)>,
) -> Ending {
    let started = Instant::now();
    let method = match (busy, key) {
        (true, Some((pid, secret))) => {
            if terminate(login, pid).await || terminate_with(terminator.await.as_ref(), pid).await {
                "terminated"
            } else {
                send_cancel(&login.host, login.port, (pid, secret)).await;
                "cancelled"
            }
        }
        _ => {
            // Terminate ('X'): the backend rolls back an open transaction and exits.
            let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
            "closed"
        }
    };
    let _ = stream.shutdown().await;
    let confirmed = tokio::time::timeout(CONFIRM_WITHIN, async {
        let mut sink = [0u8; 4096];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    Ending {
        method,
        confirmed,
        lag_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

async fn terminate_with(t: Option<&UpstreamTarget>, pid: i32) -> bool {
    match t {
        Some(t) => terminate(t, pid).await,
        None => false,
    }
}

/// `pg_terminate_backend(pid)` as `t`; true when the server says it signalled the backend.
async fn terminate(t: &UpstreamTarget, pid: i32) -> bool {
    let sql = format!("SELECT pg_catalog.pg_terminate_backend({pid})");
    match upstream::query_all(t, &[sql]).await {
        Ok(rows) => rows.first().and_then(|r| r.first()).is_some_and(|v| v.as_deref() == Some("t")),
        Err(e) => {
            tracing::warn!(login = %t.user, error = %e, "could not terminate a killed session's backend");
            false
        }
    }
}

/// A CancelRequest for the backend with `key`. Cancel requests go in plain text, as libpq's
/// do: PostgreSQL reads them before any authentication, and they carry only the key.
pub(crate) async fn send_cancel(host: &str, port: u16, key: (i32, i32)) {
    let mut packet = Vec::with_capacity(16);
    packet.extend_from_slice(&16u32.to_be_bytes());
    packet.extend_from_slice(&80_877_102u32.to_be_bytes());
    packet.extend_from_slice(&key.0.to_be_bytes());
    packet.extend_from_slice(&key.1.to_be_bytes());
    if let Ok(mut up) = crate::transport::open_plain(host, port).await {
        let _ = up.write_all(&packet).await;
        let _ = up.shutdown().await;
    }
}
