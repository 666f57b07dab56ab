//! One client connection, from its first packet to its end: the opening (TLS, cancel or
//! startup), the login with a connect token, the upstream login, the relay, and making sure
//! nothing runs upstream after a kill.

use crate::broker::{Admission, AdmissionRequest, Broker, Refusal};
use crate::cancels::{forward_cancel, CancelTarget, Cancels};
use crate::protocol::{backend, frontend, startup};
use crate::relay::{self, EndReason, SessionStats};
use crate::{ending, per_address, upstream};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, refusal: &Refusal) {
    let _ = stream.write_all(&refusal.to_message()).await;
    let _ = stream.shutdown().await;
}

/// What a connection may spend before it is logged in: one of the places for unauthenticated
/// connections, until a deadline for TLS, startup and authentication together.
pub(crate) struct LoginBudget {
    /// Held, not read: dropping it frees the place.
    pub(crate) _permit: tokio::sync::OwnedSemaphorePermit,
    /// The same for the place of its address.
    pub(crate) _address: per_address::AddressSlot,
    pub(crate) deadline: tokio::time::Instant,
}

/// What the first packets asked for.
enum Opening {
    Startup(BTreeMap<String, String>),
    /// The client asked for TLS and we agreed: the handshake comes next.
    Tls,
    Cancel((i32, i32)),
    Gone,
}

/// Reads startup packets until a StartupMessage, or until the client asks for TLS that we
/// offer. GSSAPI encryption is declined; TLS too when not configured.
/// Whether a client sent bytes that are waiting unread on the socket.
trait Pending {
    fn has_pending(&self) -> bool;
}

impl Pending for TcpStream {
    fn has_pending(&self) -> bool {
        // Nothing to read is `WouldBlock`; a byte read here is the end of the connection anyway.
        let mut probe = [0u8; 1];
        matches!(self.try_read(&mut probe), Ok(n) if n > 0)
    }
}

impl<S> Pending for tokio_rustls::server::TlsStream<S> {
    fn has_pending(&self) -> bool {
        false
    }
}

async fn opening<S: AsyncRead + AsyncWrite + Unpin + Pending>(stream: &mut S, offer_tls: bool) -> Result<Opening, Refusal> {
    loop {
        let packet = match startup::read(stream).await {
            Ok(p) => p,
            Err(_) => return Ok(Opening::Gone),
        };
        match startup::parse(&packet) {
            Ok(startup::Startup::SslRequest) if offer_tls => {
                // Bytes sent after SSLRequest but before the handshake would be read as if
                // they had come through TLS (CVE-2021-23214): refuse them.
                if stream.has_pending() {
                    return Err(Refusal::protocol("data arrived before the TLS handshake"));
                }
                if stream.write_all(b"S").await.is_err() {
                    return Ok(Opening::Gone);
                }
                return Ok(Opening::Tls);
            }
            Ok(startup::Startup::SslRequest) | Ok(startup::Startup::GssEncRequest) => {
                if stream.write_all(b"N").await.is_err() {
                    return Ok(Opening::Gone);
                }
            }
            Ok(startup::Startup::Cancel { process_id, secret_key }) => return Ok(Opening::Cancel((process_id, secret_key))),
            Ok(startup::Startup::Startup { params }) => return Ok(Opening::Startup(params)),
            Err(e) => return Err(Refusal::protocol(e)),
        }
    }
}

/// One client connection, start to end. Every wait on the client before admission is
/// bounded, so a silent or slow client cannot hold a task and a socket for ever.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    broker: Arc<dyn Broker>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancels: Arc<Cancels>,
    budget: LoginBudget,
) {
    let deadline = budget.deadline;
    let _ = tcp.set_nodelay(true);
    let first = tokio::time::timeout_at(deadline, async {
        let mut probe = tcp;
        let opened = opening(&mut probe, tls.is_some()).await;
        (probe, opened)
    });
    let (mut tcp, opened) = match first.await {
        Ok(x) => x,
        Err(_) => return,
    };
    match opened {
        Ok(Opening::Gone) => {}
        Ok(Opening::Cancel(key)) => forward_cancel(&cancels, key).await,
        Ok(Opening::Startup(params)) => session(tcp, peer, broker, Some(params), false, &cancels, budget).await,
        Ok(Opening::Tls) => {
            let Some(acceptor) = tls else { return };
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => session(stream, peer, broker, None, true, &cancels, budget).await,
                _ => tracing::debug!(%peer, "gateway TLS handshake failed"),
            }
        }
        Err(refusal) => refuse(&mut tcp, &refusal).await,
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin + Send + Pending>(
    mut stream: S,
    peer: SocketAddr,
    broker: Arc<dyn Broker>,
    params: Option<BTreeMap<String, String>>,
    encrypted: bool,
    cancels: &Cancels,
    budget: LoginBudget,
) {
    let login = tokio::time::timeout_at(budget.deadline, login(&mut stream, peer, broker.as_ref(), params, encrypted)).await;
    drop(budget);
    let admission = match login {
        Ok(Ok(Some(a))) => a,
        Ok(Ok(None)) => return,
        Ok(Err(refusal)) => return refuse(&mut stream, &refusal).await,
        Err(_) => return refuse(&mut stream, &Refusal::protocol("the login took too long")).await,
    };
    let mut upstream = match upstream::connect(&admission.target).await {
        Ok(u) => u,
        Err(e) => {
            let (reason, refusal) = match e {
                upstream::UpstreamError::Privileged { .. } => (EndReason::Refused(e.to_string()), Refusal::privileged(&e)),
                _ => (EndReason::Io(e.to_string()), Refusal::unavailable(&e)),
            };
            broker.ended(&admission.session_id, &reason, SessionStats::default()).await;
            return refuse(&mut stream, &refusal).await;
        }
    };
    let mut hello = backend::auth_ok();
    // The client's cancel key is the gateway's own; a cancel with it is passed on to the
    // upstream with the upstream's key, which the client never sees.
    let key = upstream.key.map(|k| {
        cancels.register(CancelTarget {
            host: admission.target.host.clone(),
            port: admission.target.port,
            key: k,
        })
    });
    let (pid, secret) = key.unwrap_or((0, 0));
    hello.extend_from_slice(&backend::backend_key_data(pid, secret));
    hello.extend_from_slice(&upstream.greeting);
    if stream.write_all(&hello).await.is_err() {
        broker
            .ended(&admission.session_id, &EndReason::ClientLeft, SessionStats::default())
            .await;
        return;
    }
    let recording = admission.record.clone().map(|sink| relay::Recording {
        session: Arc::from(admission.session_id.as_str()),
        sink,
        encoding: Arc::from(upstream.client_encoding.as_str()),
    });
    let (reason, mut stats) = relay::relay(&mut stream, &mut upstream.stream, admission.kill, recording).await;
    if matches!(reason, EndReason::Killed(_)) {
        let ending = ending::end_backend(
            &mut upstream.stream,
            stats.busy_at_end,
            &admission.target,
            broker.terminator(&admission.session_id),
            upstream.key,
        )
        .await;
        stats.ending = Some(ending);
    }
    if let Some(k) = key {
        cancels.remove(k);
    }
    broker.ended(&admission.session_id, &reason, stats).await;
}

/// The startup exchange up to admission. `Ok(None)`: the client went away or asked for
/// something that ends the connection.
async fn login<S: AsyncRead + AsyncWrite + Unpin + Pending>(
    stream: &mut S,
    peer: SocketAddr,
    broker: &dyn Broker,
    params: Option<BTreeMap<String, String>>,
    encrypted: bool,
) -> Result<Option<Admission>, Refusal> {
    let params = match params {
        Some(p) => p,
        // After TLS: the StartupMessage comes inside it (a second SSLRequest is an error).
        None => match opening(stream, false).await? {
            Opening::Startup(p) => p,
            _ => return Ok(None),
        },
    };
    let (Some(user), Some(database)) = (params.get("user"), params.get("database").or(params.get("user"))) else {
        return Err(Refusal::protocol("the startup packet names no user"));
    };
    // The token travels as a cleartext password: only inside TLS or on this host.
    if !encrypted && !peer.ip().is_loopback() {
        return Err(Refusal::not_authorized(
            "connect tokens are only accepted over TLS or from this host (use sslmode=require)",
        ));
    }
    stream.write_all(&backend::auth_cleartext()).await.map_err(Refusal::unavailable)?;
    let mut msg = vec![0u8; 5];
    if stream.read_exact(&mut msg).await.is_err() {
        return Ok(None);
    }
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    if msg[0] != b'p' || !(5..=1024).contains(&len) {
        return Err(Refusal::protocol("expected the connect token as the password"));
    }
    msg.resize(1 + len, 0);
    if stream.read_exact(&mut msg[5..]).await.is_err() {
        return Ok(None);
    }
    let token = frontend::password(&msg).ok_or_else(|| Refusal::protocol("malformed password message"))?;
    let request = AdmissionRequest {
        user: user.clone(),
        database: database.clone(),
        token: SecretString::from(token.to_owned()),
        peer,
    };
    broker.admit(request).await.map(Some)
}
