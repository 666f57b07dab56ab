//! Relaying a session: bytes are forwarded as they arrive, in both directions, while a
//! [`Framer`] per direction follows the message boundaries by reading only the headers. So
//! statements can be recorded, nothing is buffered beyond one read (a 1 GB row passes through
//! in 8 KiB pieces), and the kill switch's FATAL message lands between two server messages.

use crate::protocol::framing::{Event, Framer};
use crate::protocol::statement::{RecordedStatement, StatementCapture, StatementKind};
use crate::protocol::{backend, frontend, sqlstate};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
    /// COPY data from the client (COPY FROM STDIN) and to it (COPY TO STDOUT), in bytes.
    pub copy_in_bytes: u64,
    pub copy_out_bytes: u64,
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
/// The longest message a client may send: PostgreSQL's own limit (1 GB − 1).
const MAX_CLIENT_MESSAGE: u32 = 0x3fff_ffff + 4;
/// How long a server message in flight may take to finish before a kill, so the FATAL message
/// arrives whole; after that the connection is closed without it.
const FINISH_WITHIN: Duration = Duration::from_millis(100);
/// Recorded statements go to the record writer in batches of at most this many...
const BATCH: usize = 256;
/// ...or after this long, whichever comes first.
const BATCH_WITHIN: Duration = Duration::from_millis(50);
/// The longest ParameterStatus body read (for `client_encoding`).
const MAX_STATUS: usize = 256;

/// A session's statements on their way to the record.
#[derive(Debug)]
pub struct StatementBatch {
    pub session: Arc<str>,
    pub statements: Vec<RecordedStatement>,
}

/// Where a recorded session's statements go. The queue is bounded: when the writer falls
/// behind, the session waits for room; no statement is dropped.
#[derive(Debug, Clone)]
pub struct Recording {
    pub session: Arc<str>,
    pub sink: mpsc::Sender<StatementBatch>,
    /// The session's `client_encoding` at the start (the upstream's greeting says it).
    pub encoding: Arc<str>,
}

/// What the relay follows of the client's messages.
struct FromClient {
    /// Requests sent that the upstream has not answered with ReadyForQuery yet (each Query,
    /// Sync and FunctionCall gets one).
    awaiting_ready: u64,
    /// Extended-protocol messages not yet followed by a Sync (an Execute runs as soon as it
    /// arrives).
    unsynced: bool,
    /// The statement being read, when recording.
    capture: Option<StatementCapture>,
    batch: Vec<RecordedStatement>,
    /// When the oldest statement in `batch` must be sent at the latest.
    batch_due: Option<Instant>,
    leaving: bool,
}

/// Relays until either side leaves or `kill` carries a reason, recording each statement the
/// client sends when `recording` says where to.
pub async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    mut kill: watch::Receiver<Option<String>>,
    recording: Option<Recording>,
) -> (EndReason, SessionStats)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut stats = SessionStats::default();
    let mut from_client = vec![0u8; READ_BUFFER];
    let mut from_upstream = vec![0u8; READ_BUFFER];
    let body_kinds: &'static [u8] = if recording.is_some() { b"QPF" } else { b"" };
    let mut client_frames = Framer::with_max_len(body_kinds, MAX_CLIENT_MESSAGE);
    let mut upstream_frames = Framer::new(b"S");
    let mut encoding: Arc<str> = recording.as_ref().map_or_else(|| Arc::from("UTF8"), |r| r.encoding.clone());
    let mut status = Vec::new();
    let mut seen = FromClient {
        awaiting_ready: 0,
        unsynced: false,
        capture: None,
        batch: Vec::new(),
        batch_due: None,
        leaving: false,
    };
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
    // One timer for sending a batch that is not full, set when a batch starts (a new timer per
    // message would cost a timer-wheel registration each).
    let flush = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(flush);
    let mut flush_set_for = None;
    // Only the client hears why a protocol error ended its session; the upstream is not told.
    let mut client_broke_protocol = false;
    // A write to the client cut short by a kill: the stream to it ends inside a message, so no
    // FATAL can follow.
    let mut client_cut_off = false;
    let end = 'relay: loop {
        if seen.batch_due != flush_set_for {
            if let Some(due) = seen.batch_due {
                flush.as_mut().reset(due);
            }
            flush_set_for = seen.batch_due;
        }
        tokio::select! {
            biased;
            why = &mut killed => break EndReason::Killed(why),
            () = &mut flush, if seen.batch_due.is_some() => {
                if let Some(r) = &recording {
                    tokio::select! {
                        biased;
                        why = &mut killed => break 'relay EndReason::Killed(why),
                        sent = send_batch(r, &mut seen) => if !sent { break 'relay EndReason::Io("the statement record is closed".into()) },
                    }
                }
            }
            read = client.read(&mut from_client) => match read {
                Ok(0) => break EndReason::ClientLeft,
                Ok(n) => {
                    let fed = client_frames.feed(&from_client[..n], false, |event| {
                        on_client_event(event, &mut seen, &mut stats, &encoding)
                    });
                    let upto = match fed {
                        Ok(upto) => upto,
                        Err(e) => {
                            client_broke_protocol = true;
                            break EndReason::ProtocolError(e.to_string());
                        }
                    };
                    stats.bytes_from_client += upto as u64;
                    // A write the upstream does not take (it is busy) must not hold off a kill. The
                    // write is polled first: when it completes at once, as it nearly always does,
                    // the kill switch costs nothing here.
                    tokio::select! {
                        biased;
                        written = upstream.write_all(&from_client[..upto]) => if let Err(e) = written {
                            break 'relay EndReason::Io(e.to_string());
                        },
                        why = &mut killed => break 'relay EndReason::Killed(why),
                    }
                    if seen.leaving {
                        break EndReason::ClientLeft;
                    }
                    if seen.batch.len() >= BATCH {
                        if let Some(r) = &recording {
                            // A full batch waits for room in the record's queue: a writer that
                            // falls behind slows sessions down, it never loses statements.
                            tokio::select! {
                                biased;
                                why = &mut killed => break 'relay EndReason::Killed(why),
                                sent = send_batch(r, &mut seen) => if !sent { break 'relay EndReason::Io("the statement record is closed".into()) },
                            }
                        }
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
            read = upstream.read(&mut from_upstream) => match read {
                Ok(0) => break EndReason::UpstreamLeft,
                Ok(n) => {
                    let fed = upstream_frames.feed(&from_upstream[..n], false, |e| {
                        on_upstream_event(e, &mut seen, &mut stats, &mut status, &mut encoding);
                        true
                    });
                    if let Err(e) = fed {
                        break EndReason::ProtocolError(format!("upstream: {e}"));
                    }
                    stats.bytes_to_client += n as u64;
                    // Nor a client that does not read.
                    tokio::select! {
                        biased;
                        written = client.write_all(&from_upstream[..n]) => if let Err(e) = written {
                            break 'relay EndReason::Io(e.to_string());
                        },
                        why = &mut killed => {
                            client_cut_off = true;
                            break 'relay EndReason::Killed(why);
                        }
                    }
                }
                Err(e) => break EndReason::Io(e.to_string()),
            },
        }
    };
    // What is left of the record goes too, without holding up the end of the session.
    if let Some(r) = &recording {
        if !seen.batch.is_empty() {
            let batch = StatementBatch {
                session: r.session.clone(),
                statements: std::mem::take(&mut seen.batch),
            };
            if let Err(mpsc::error::TrySendError::Full(batch)) = r.sink.try_send(batch) {
                let sink = r.sink.clone();
                tokio::spawn(async move { sink.send(batch).await });
            }
        }
    }
    let last_words = match &end {
        EndReason::Killed(why) => Some((sqlstate::ADMIN_SHUTDOWN, format!("jitgate: {why}"))),
        EndReason::ProtocolError(e) if client_broke_protocol => Some((sqlstate::PROTOCOL_VIOLATION, format!("jitgate: {e}"))),
        _ => None,
    };
    if let Some((code, text)) = last_words.filter(|_| !client_cut_off) {
        if !upstream_frames.at_boundary() {
            let finish = async {
                loop {
                    let n = match upstream.read(&mut from_upstream).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let fed = upstream_frames.feed(&from_upstream[..n], true, |e| {
                        on_upstream_event(e, &mut seen, &mut stats, &mut status, &mut encoding);
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
            let _ = client.write_all(&backend::error(true, code, &text)).await;
        }
    }
    let _ = client.flush().await;
    stats.busy_at_end = seen.awaiting_ready > 0 || seen.unsynced;
    // A killed session's upstream is ended by the caller, who knows how to stop a backend
    // that is still working; otherwise the upstream hears the end now.
    if !matches!(end, EndReason::Killed(_)) {
        let _ = upstream.shutdown().await;
    }
    (end, stats)
}

/// Waits for room in the record's queue and sends the batch; false when the writer is gone.
async fn send_batch(r: &Recording, seen: &mut FromClient) -> bool {
    // `reserve` first, so a kill while waiting keeps the batch (sent at the end).
    let Ok(permit) = r.sink.reserve().await else {
        return false;
    };
    permit.send(StatementBatch {
        session: r.session.clone(),
        statements: std::mem::replace(&mut seen.batch, Vec::with_capacity(BATCH)),
    });
    seen.batch_due = None;
    true
}

fn on_client_event(event: Event<'_>, seen: &mut FromClient, stats: &mut SessionStats, encoding: &Arc<str>) -> bool {
    match event {
        Event::Start(kind, len) => {
            match kind {
                b'Q' | b'S' | b'F' => {
                    seen.awaiting_ready += 1;
                    seen.unsynced = false;
                }
                b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => seen.unsynced = true,
                b'd' => stats.copy_in_bytes += u64::from(len),
                _ => {}
            }
            if let Some(k) = StatementKind::of(kind) {
                stats.statements += 1;
                seen.capture = Some(StatementCapture::new(k, len));
            }
            seen.leaving = frontend::is_terminate(&[kind]);
            !seen.leaving
        }
        Event::Body(piece) => {
            if let Some(c) = seen.capture.as_mut() {
                c.feed(piece);
            }
            true
        }
        Event::End(_) => {
            if let Some(c) = seen.capture.take() {
                seen.batch.push(c.finish(stats.statements, encoding.clone()));
                seen.batch_due.get_or_insert_with(|| Instant::now() + BATCH_WITHIN);
            }
            true
        }
    }
}

fn on_upstream_event(event: Event<'_>, seen: &mut FromClient, stats: &mut SessionStats, status: &mut Vec<u8>, encoding: &mut Arc<str>) {
    match event {
        Event::Start(b'Z', _) => seen.awaiting_ready = seen.awaiting_ready.saturating_sub(1),
        Event::Start(b'd', len) => stats.copy_out_bytes += u64::from(len),
        Event::Start(b'S', _) => status.clear(),
        Event::Body(piece) if status.len() + piece.len() <= MAX_STATUS => status.extend_from_slice(piece),
        // The upstream reports every change of client_encoding (SET, set_config, RESET ...):
        // later statements are read in it.
        Event::End(b'S') => {
            let mut parts = status.split(|&c| c == 0);
            if let (Some(b"client_encoding"), Some(value)) = (parts.next(), parts.next()) {
                *encoding = Arc::from(String::from_utf8_lossy(value).as_ref());
            }
        }
        _ => {}
    }
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

    fn recording(capacity: usize) -> (Recording, mpsc::Receiver<StatementBatch>) {
        let (sink, rx) = mpsc::channel(capacity);
        let r = Recording {
            session: Arc::from("ses_1"),
            sink,
            encoding: Arc::from("UTF8"),
        };
        (r, rx)
    }

    async fn all_recorded(mut rx: mpsc::Receiver<StatementBatch>) -> Vec<RecordedStatement> {
        let mut out = Vec::new();
        while let Some(b) = rx.recv().await {
            out.extend(b.statements);
        }
        out.sort_by_key(|s| s.seq);
        out
    }

    #[tokio::test]
    async fn statements_are_recorded_and_a_kill_waits_for_the_message_in_flight() {
        let (mut client, mut client_end) = duplex(1 << 20);
        let (mut upstream, mut upstream_end) = duplex(1 << 20);
        let (kill_tx, kill) = watch::channel(None);
        let (rec, rx) = recording(16);
        let relay = tokio::spawn(async move { relay(&mut client_end, &mut upstream_end, kill, Some(rec)).await });
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
        let (end, stats) = relay.await.unwrap();
        assert_eq!(end, EndReason::Killed("access grant expired".into()));
        let seen = all_recorded(rx).await;
        let texts: Vec<_> = seen.iter().map(|s| (s.seq, s.kind, s.head.clone())).collect();
        assert_eq!(
            texts,
            vec![
                (1, StatementKind::Query, b"SELECT 1".to_vec()),
                (2, StatementKind::Parse, b"SELECT $1".to_vec())
            ]
        );
        assert_eq!(stats.statements, 2);
        assert!(stats.busy_at_end, "the Query was never answered");
        let mut to_client = Vec::new();
        client.read_to_end(&mut to_client).await.unwrap();
        assert_eq!(&to_client[..row.len()], &row[..], "the row arrived whole");
        assert_eq!(to_client[row.len()], b'E');
        assert!(String::from_utf8_lossy(&to_client).contains("jitgate: access grant expired"));
    }

    #[tokio::test]
    async fn statements_follow_the_client_encoding_the_upstream_reports() {
        let (mut client, mut client_end) = duplex(1 << 16);
        let (mut upstream, mut upstream_end) = duplex(1 << 16);
        let (_kill_tx, kill) = watch::channel(None);
        let (rec, rx) = recording(16);
        let relay = tokio::spawn(async move { relay(&mut client_end, &mut upstream_end, kill, Some(rec)).await });
        client.write_all(&msg(b'Q', b"SET client_encoding = 'LATIN1'\0")).await.unwrap();
        let mut sink = vec![0u8; 36];
        upstream.read_exact(&mut sink).await.unwrap();
        upstream
            .write_all(&[msg(b'S', b"client_encoding\0LATIN1\0"), msg(b'Z', b"I")].concat())
            .await
            .unwrap();
        let mut answer = vec![0u8; 34];
        client.read_exact(&mut answer).await.unwrap();
        client.write_all(&msg(b'Q', b"SELECT '\xe9t\xe9'\0")).await.unwrap();
        client.write_all(&msg(b'X', b"")).await.unwrap();
        let (end, _) = relay.await.unwrap();
        assert_eq!(end, EndReason::ClientLeft);
        let seen = all_recorded(rx).await;
        assert_eq!(&*seen[0].encoding, "UTF8");
        assert_eq!(&*seen[1].encoding, "LATIN1");
        assert_eq!(seen[1].head, b"SELECT '\xe9t\xe9'");
    }

    #[tokio::test]
    async fn a_full_record_queue_holds_the_session_and_loses_nothing() {
        let (mut client, mut client_end) = duplex(1 << 20);
        let (mut upstream, mut upstream_end) = duplex(1 << 20);
        let (_kill_tx, kill) = watch::channel(None);
        // Room for one batch only, and nobody reading yet.
        let (rec, mut rx) = recording(1);
        let relay = tokio::spawn(async move { relay(&mut client_end, &mut upstream_end, kill, Some(rec)).await });
        let passed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = passed.clone();
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 16];
            while let Ok(n @ 1..) = upstream.read(&mut sink).await {
                counted.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // Three full batches, one write each: the first fills the queue, the relay waits with
        // the second, and the third stays unread.
        let mut sizes = Vec::new();
        for round in 0..3 {
            let batch: Vec<u8> = (0..BATCH)
                .flat_map(|i| msg(b'Q', format!("SELECT {}\0", round * BATCH + i).as_bytes()))
                .collect();
            sizes.push(batch.len());
            client.write_all(&batch).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!relay.is_finished());
        assert_eq!(
            passed.load(std::sync::atomic::Ordering::SeqCst),
            sizes[0] + sizes[1],
            "the session is held while its record cannot keep up"
        );
        // The session waits; once the writer reads, everything arrives, in order, complete.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.statements.len(), BATCH);
        client.write_all(&msg(b'X', b"")).await.unwrap();
        let (end, stats) = relay.await.unwrap();
        assert_eq!(end, EndReason::ClientLeft);
        let mut seen: Vec<_> = first.statements;
        seen.extend(all_recorded(rx).await);
        assert_eq!(seen.len(), BATCH * 3);
        assert_eq!(stats.statements, (BATCH * 3) as u64);
        assert!(seen.iter().enumerate().all(|(i, s)| s.seq == i as u64 + 1));
        drain.abort();
    }

    #[tokio::test]
    async fn terminate_ends_the_session_after_passing_it_on() {
        let (mut client, mut client_end) = duplex(1024);
        let (mut upstream, mut upstream_end) = duplex(1024);
        let (_kill_tx, kill) = watch::channel(None);
        let relay = tokio::spawn(async move { relay(&mut client_end, &mut upstream_end, kill, None).await });
        client.write_all(&[msg(b'X', b""), msg(b'Q', b"late\0")].concat()).await.unwrap();
        let (end, _) = relay.await.unwrap();
        assert_eq!(end, EndReason::ClientLeft);
        let mut passed = Vec::new();
        upstream.read_to_end(&mut passed).await.unwrap();
        assert_eq!(passed, msg(b'X', b""), "nothing after Terminate is passed on");
    }
}
