//! Relaying a session: bytes are forwarded as they arrive, in both directions, while a
//! [`Framer`] per direction follows the message boundaries by reading only the headers. So
//! statements can be recorded, nothing is buffered beyond one read (a 1 GB row passes through
//! in 8 KiB pieces), and the kill switch's FATAL message lands between two server messages.

use crate::protocol::framing::{Event, Framer};
use crate::protocol::{backend, frontend};
use std::time::Duration;
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
    /// The gateway refused to open the session upstream (a privileged login, say).
    Refused(String),
}

impl EndReason {
    pub fn as_str(&self) -> String {
        match self {
            Self::ClientLeft => "client_left".into(),
            Self::UpstreamLeft => "upstream_left".into(),
            Self::Killed(why) => format!("killed: {why}"),
            Self::ProtocolError(e) => format!("protocol_error: {e}"),
            Self::Io(e) => format!("io: {e}"),
            Self::Refused(e) => format!("refused: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub statements: u64,
    /// Whether the upstream was still working on something the client sent when the relay
    /// ended (a statement running, or requests queued behind it).
    pub busy_at_end: bool,
    /// How a killed session's backend was ended, and whether its end was seen.
    pub ending: Option<Ending>,
}

/// How the gateway made sure nothing runs upstream after a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// `closed` (idle: Terminate sent), `terminated` (pg_terminate_backend), `cancelled`
    /// (CancelRequest only, when no termination could be had).
    pub method: &'static str,
    /// The backend's connection was seen to close.
    pub confirmed: bool,
    /// From the kill to the confirmation (or to giving up), in microseconds.
    pub lag_us: u64,
}

/// Bytes read at once per direction.
const READ_BUFFER: usize = 8192;
/// The first bytes of each statement kept for recording (the caller cuts further).
const STATEMENT_CAPTURE: usize = 16 * 1024;
/// The longest message a client may send: PostgreSQL's own limit (1 GB − 1).
const MAX_CLIENT_MESSAGE: u32 = 0x3fff_ffff + 4;
/// How long a server message in flight may take to finish before a kill, so the FATAL message
/// arrives whole; after that the connection is closed without it.
const FINISH_WITHIN: Duration = Duration::from_millis(100);

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
    let mut from_client = vec![0u8; READ_BUFFER];
    let mut from_upstream = vec![0u8; READ_BUFFER];
    let mut client_frames = Framer::with_max_len(b"QP", STATEMENT_CAPTURE, MAX_CLIENT_MESSAGE);
    let mut upstream_frames = Framer::new(b"", 0);
    // Requests sent that the upstream has not answered with ReadyForQuery yet (each Query,
    // Sync and FunctionCall gets one), and extended-protocol messages not yet followed by a
    // Sync (an Execute runs as soon as it arrives).
    let mut awaiting_ready: u64 = 0;
    let mut unsynced = false;
    // One long-lived wait on the kill switch (registered once, not once per message).
    let killed = async move {
        loop {
            if let Some(why) = kill.borrow_and_update().clone() {
                return why;
            }
            if kill.changed().await.is_err() {
                // The sender is gone: nobody can end this session any more, so end it now.
                return "the gateway is shutting down".to_owned();
            }
        }
    };
    tokio::pin!(killed);
    // Only the client hears why a protocol error ended its session; the upstream is not told.
    let mut client_broke_protocol = false;
    let end = loop {
        tokio::select! {
            biased;
            why = &mut killed => break EndReason::Killed(why),
            read = client.read(&mut from_client) => match read {
                Ok(0) => break EndReason::ClientLeft,
                Ok(n) => {
                    let mut leaving = false;
                    let fed = client_frames.feed(&from_client[..n], false, |event| match event {
                        Event::Start(kind) => {
                            match kind {
                                b'Q' | b'S' | b'F' => {
                                    awaiting_ready += 1;
                                    unsynced = false;
                                }
                                b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => unsynced = true,
                                _ => {}
                            }
                            leaving = frontend::is_terminate(&[kind]);
                            !leaving
                        }
                        Event::Captured(c) => {
                            stats.statements += 1;
                            if let Some(text) = frontend::statement_in_body(c.kind, &c.body) {
                                record(text);
                            }
                            true
                        }
                    });
                    let upto = match fed {
                        Ok(upto) => upto,
                        Err(e) => {
                            client_broke_protocol = true;
                            break EndReason::ProtocolError(e.to_string());
                        }
                    };
                    stats.bytes_from_client += upto as u64;
                    if let Err(e) = upstream.write_all(&from_client[..upto]).await {
                        break EndReason::Io(e.to_string());
                    }
                    if leaving {
                        break EndReason::ClientLeft;
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
            read = upstream.read(&mut from_upstream) => match read {
                Ok(0) => break EndReason::UpstreamLeft,
                Ok(n) => {
                    let ready = upstream_frames.feed(&from_upstream[..n], false, |e| {
                        if matches!(e, Event::Start(b'Z')) {
                            awaiting_ready = awaiting_ready.saturating_sub(1);
                        }
                        true
                    });
                    if let Err(e) = ready {
                        break EndReason::ProtocolError(format!("upstream: {e}"));
                    }
                    stats.bytes_to_client += n as u64;
                    if let Err(e) = client.write_all(&from_upstream[..n]).await {
                        break EndReason::Io(e.to_string());
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
        }
    };
    let last_words = match &end {
        EndReason::Killed(why) => Some(("57P01", format!("jitgate: {why}"))),
        EndReason::ProtocolError(e) if client_broke_protocol => Some(("08P01", format!("jitgate: {e}"))),
        _ => None,
    };
    if let Some((sqlstate, text)) = last_words {
        if !upstream_frames.at_boundary() {
            let finish = async {
                loop {
                    let n = match upstream.read(&mut from_upstream).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let fed = upstream_frames.feed(&from_upstream[..n], true, |e| {
                        if matches!(e, Event::Start(b'Z')) {
                            awaiting_ready = awaiting_ready.saturating_sub(1);
                        }
                        true
                    });
                    let Ok(upto) = fed else {
                        return;
                    };
                    if client.write_all(&from_upstream[..upto]).await.is_err() || upstream_frames.at_boundary() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(FINISH_WITHIN, finish).await;
        }
        if upstream_frames.at_boundary() {
            let _ = client.write_all(&backend::error(true, sqlstate, &text)).await;
        }
    }
    let _ = client.flush().await;
    stats.busy_at_end = awaiting_ready > 0 || unsynced;
    // A killed session's upstream is ended by the caller, who knows how to stop a backend
    // that is still working; otherwise the upstream hears the end now.
    if !matches!(end, EndReason::Killed(_)) {
        let _ = upstream.shutdown().await;
    }
    (end, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn statements_are_recorded_and_a_kill_waits_for_the_message_in_flight() {
        let (mut client, mut client_end) = duplex(1 << 20);
        let (mut upstream, mut upstream_end) = duplex(1 << 20);
        let (kill_tx, kill) = watch::channel(None);
        let relay = tokio::spawn(async move {
            let mut seen = Vec::new();
            let out = relay(&mut client_end, &mut upstream_end, kill, |s| seen.push(s.to_owned())).await;
            (out, seen)
        });
        // A statement split across two writes, and a Parse.
        let q = msg(b'Q', b"SELECT 1\0");
        client.write_all(&q[..3]).await.unwrap();
        client.write_all(&q[3..]).await.unwrap();
        let parse = msg(b'P', b"s\0SELECT $1\0\0\0");
        client.write_all(&parse).await.unwrap();
        let mut got = vec![0u8; q.len() + parse.len()];
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..q.len()], &q[..]);
        // Half a server message, then the kill: the rest still arrives before the FATAL.
        let row = msg(b'D', &[9; 1000]);
        upstream.write_all(&row[..500]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        kill_tx.send(Some("access grant expired".into())).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        upstream.write_all(&row[500..]).await.unwrap();
        let ((end, stats), seen) = relay.await.unwrap();
        assert_eq!(end, EndReason::Killed("access grant expired".into()));
        assert_eq!(seen, vec!["SELECT 1".to_owned(), "SELECT $1".to_owned()]);
        assert_eq!(stats.statements, 2);
        let mut to_client = Vec::new();
        client.read_to_end(&mut to_client).await.unwrap();
        assert_eq!(&to_client[..row.len()], &row[..], "the row arrived whole");
        assert_eq!(to_client[row.len()], b'E');
        assert!(String::from_utf8_lossy(&to_client).contains("jitgate: access grant expired"));
    }

    #[tokio::test]
    async fn terminate_ends_the_session_after_passing_it_on() {
        let (mut client, mut client_end) = duplex(1024);
        let (mut upstream, mut upstream_end) = duplex(1024);
        let (_kill_tx, kill) = watch::channel(None);
        let relay = tokio::spawn(async move { relay(&mut client_end, &mut upstream_end, kill, |_| {}).await });
        client.write_all(&[msg(b'X', b""), msg(b'Q', b"late\0")].concat()).await.unwrap();
        let ((end, _), _) = (relay.await.unwrap(), ());
        assert_eq!(end, EndReason::ClientLeft);
        let mut passed = Vec::new();
        upstream.read_to_end(&mut passed).await.unwrap();
        assert_eq!(passed, msg(b'X', b""), "nothing after Terminate is passed on");
    }
}
