//! Relaying a session: both directions are framed into whole messages (a header read per
//! message, the bodies copied as they are), so that statements can be recorded and the kill
//! switch lands between messages, never inside one.

use crate::protocol::{backend, frontend, message_end, MAX_MESSAGE};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    ClientLeft,
    UpstreamLeft,
    /// The grant ended or an administrator killed the session; the text went to the client.
    Killed(String),
    ProtocolError(String),
    Io(String),
}

impl EndReason {
    pub fn as_str(&self) -> String {
        match self {
            Self::ClientLeft => "client_left".into(),
            Self::UpstreamLeft => "upstream_left".into(),
            Self::Killed(why) => format!("killed: {why}"),
            Self::ProtocolError(e) => format!("protocol_error: {e}"),
            Self::Io(e) => format!("io: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub statements: u64,
}

/// Relays until either side leaves or `kill` carries a reason. Each statement the client sends
/// is handed to `record`.
pub async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    mut kill: watch::Receiver<Option<String>>,
    mut record: impl FnMut(&str),
) -> (EndReason, SessionStats)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut stats = SessionStats::default();
    let mut from_client = BytesMut::with_capacity(4096);
    let mut from_upstream = BytesMut::with_capacity(4096);
    let end = loop {
        let killed = kill.borrow_and_update().clone();
        if let Some(why) = killed {
            let _ = client.write_all(&backend::error(true, "57P01", &format!("jitgate: {why}"))).await;
            break EndReason::Killed(why);
        }
        tokio::select! {
            read = client.read_buf(&mut from_client) => match read {
                Ok(0) => break EndReason::ClientLeft,
                Ok(_) => {
                    let (upto, leaving) = match whole_messages(&from_client, |m| {
                        if let Some(s) = frontend::statement(m) {
                            stats.statements += 1;
                            record(s);
                        }
                        frontend::is_terminate(m)
                    }) {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = client.write_all(&backend::error(true, "08P01", &format!("jitgate: {e}"))).await;
                            break EndReason::ProtocolError(e);
                        }
                    };
                    if upto > 0 {
                        let chunk = from_client.split_to(upto);
                        stats.bytes_from_client += chunk.len() as u64;
                        if let Err(e) = upstream.write_all(&chunk).await {
                            break EndReason::Io(e.to_string());
                        }
                    }
                    if leaving {
                        break EndReason::ClientLeft;
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
            read = upstream.read_buf(&mut from_upstream) => match read {
                Ok(0) => break EndReason::UpstreamLeft,
                Ok(_) => {
                    let upto = match whole_messages(&from_upstream, |_| false) {
                        Ok((n, _)) => n,
                        Err(e) => break EndReason::ProtocolError(e),
                    };
                    if upto > 0 {
                        let chunk = from_upstream.split_to(upto);
                        stats.bytes_to_client += chunk.len() as u64;
                        if let Err(e) = client.write_all(&chunk).await {
                            break EndReason::Io(e.to_string());
                        }
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
            changed = kill.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can end this session any more, so end it now.
                    let _ = client.write_all(&backend::error(true, "57P01", "jitgate: the gateway is shutting down")).await;
                    break EndReason::Killed("gateway shutting down".into());
                }
            }
        }
    };
    let _ = client.flush().await;
    let _ = upstream.shutdown().await;
    (end, stats)
}

/// How many bytes at the start of `buf` are whole messages, calling `each` on every one (it
/// returns true to stop after that message).
fn whole_messages(buf: &[u8], mut each: impl FnMut(&[u8]) -> bool) -> Result<(usize, bool), String> {
    let mut at = 0;
    while let Some(len) = message_end(&buf[at..], MAX_MESSAGE).map_err(|e| e.to_string())? {
        let stop = each(&buf[at..at + len]);
        at += len;
        if stop {
            return Ok((at, true));
        }
    }
    Ok((at, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_messages_are_passed_on() {
        let mut buf = b"Q\0\0\0\x0dSELECT 1\0".to_vec();
        buf.extend_from_slice(b"Q\0\0\0\x0dSEL");
        let mut seen = Vec::new();
        let (n, stop) = whole_messages(&buf, |m| {
            seen.push(frontend::statement(m).map(str::to_owned));
            false
        })
        .unwrap();
        assert_eq!((n, stop), (14, false));
        assert_eq!(seen, vec![Some("SELECT 1".to_owned())]);
        assert!(whole_messages(b"Q\xff\xff\xff\xff", |_| false).is_err());
        assert_eq!(
            whole_messages(b"X\0\0\0\x04Q\0\0\0\x04", frontend::is_terminate).unwrap(),
            (5, true)
        );
    }
}
