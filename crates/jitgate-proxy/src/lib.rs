//! The PostgreSQL gateway. Clients connect with their jitgate user name, the resource as the
//! database and a one-time connect token as the password; the gateway asks a [`Broker`] (the
//! server) to admit them, logs in upstream as the resource's service role, and relays until
//! either side leaves or the broker says the grant is over, when the client gets a FATAL
//! error between two messages.
//!
//! The client never learns the upstream credentials, and no session outlives its grant.

pub mod ending;
pub mod per_address;
pub mod protocol;
pub mod relay;
pub mod transport;
pub mod upstream;

use async_trait::async_trait;
use protocol::{backend, frontend, startup};
use relay::{EndReason, SessionStats};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use upstream::UpstreamTarget;

/// Who knocks: what the client said at startup.
#[derive(Debug)]
pub struct AdmissionRequest {
    pub user: String,
    pub database: String,
    pub token: SecretString,
    pub peer: SocketAddr,
}

/// A session the broker let in.
#[derive(Debug)]
pub struct Admission {
    pub session_id: String,
    pub target: UpstreamTarget,
    /// Where the session's statements go, when the resource records them.
    pub record: Option<mpsc::Sender<relay::StatementBatch>>,
    /// Carries the reason when the session must end (grant expired or revoked, killed).
    pub kill: watch::Receiver<Option<String>>,
}

/// Why a client was turned away; `message` goes to the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Redeems a connect token: single use, bound to user, resource, role and grant.
    async fn admit(&self, request: AdmissionRequest) -> Result<Admission, Refusal>;
    /// A second login that may end a session's backend when the session's own login cannot
    /// (the service login: it needs `pg_signal_backend`, or membership in the session's login).
    /// Asked only when needed.
    async fn terminator(&self, session_id: &str) -> Option<UpstreamTarget>;
    /// The session is over.
    async fn ended(&self, session_id: &str, reason: &EndReason, stats: SessionStats);
    /// Whether a new connection from `peer` may go on (a rate per source address); `Err`
    /// says how long it should wait. Asked before anything is read from it.
    fn allow_address(&self, _peer: std::net::IpAddr) -> Result<(), std::time::Duration> {
        Ok(())
    }
}

/// A broker whose calls run on another runtime: the gateway's sessions run on a runtime of
/// their own (see [`Gateway::run`]), while the broker's work (the store, the audit log) belongs
/// to the server's, whose connections and tasks must not end up registered with the gateway's.
pub struct BrokerOnRuntime {
    inner: Arc<dyn Broker>,
    runtime: tokio::runtime::Handle,
}

impl BrokerOnRuntime {
    pub fn wrap(inner: Arc<dyn Broker>, runtime: tokio::runtime::Handle) -> Arc<dyn Broker> {
        Arc::new(Self { inner, runtime })
    }
}

fn runtime_gone() -> Refusal {
    Refusal {
        sqlstate: "57P03",
        message: "jitgate: the gateway is shutting down".into(),
    }
}

#[async_trait]
impl Broker for BrokerOnRuntime {
    async fn admit(&self, request: AdmissionRequest) -> Result<Admission, Refusal> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.admit(request).await })
            .await
            .unwrap_or_else(|_| Err(runtime_gone()))
    }

    async fn terminator(&self, session_id: &str) -> Option<UpstreamTarget> {
        let (inner, id) = (self.inner.clone(), session_id.to_owned());
        self.runtime.spawn(async move { inner.terminator(&id).await }).await.ok().flatten()
    }

    async fn ended(&self, session_id: &str, reason: &EndReason, stats: SessionStats) {
        let (inner, id, reason) = (self.inner.clone(), session_id.to_owned(), reason.clone());
        let _ = self.runtime.spawn(async move { inner.ended(&id, &reason, stats).await }).await;
    }

    fn allow_address(&self, peer: std::net::IpAddr) -> Result<(), std::time::Duration> {
        self.inner.allow_address(peer)
    }
}

/// What a connection that has not logged in yet may take.
#[derive(Debug, Clone, Copy)]
pub struct GatewayLimits {
    /// TLS, startup and authentication together must be done within this.
    pub startup_timeout: std::time::Duration,
    /// Connections not logged in yet, at most; past it new ones are closed at once (admitted
    /// sessions do not count).
    pub max_unauthenticated: usize,
    /// The same per source address (IPv6: per /64), so that a few addresses cannot hold every
    /// place.
    pub max_unauthenticated_per_address: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            startup_timeout: std::time::Duration::from_secs(10),
            max_unauthenticated: 1024,
            max_unauthenticated_per_address: 32,
        }
    }
}

pub struct Gateway {
    /// Registered with a runtime only when [`Gateway::run`] starts, so that the runtime that
    /// runs the gateway is the one whose I/O driver serves its sockets.
    listener: std::net::TcpListener,
    broker: Arc<dyn Broker>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancels: Arc<Cancels>,
    limits: GatewayLimits,
}

/// Where a client's cancel key leads: the upstream of its session and the upstream's own key.
#[derive(Debug, Clone)]
struct CancelTarget {
    host: String,
    port: u16,
    key: (i32, i32),
}

/// The cancel keys handed to clients, while their sessions last.
#[derive(Default)]
struct Cancels(std::sync::Mutex<std::collections::HashMap<(i32, i32), CancelTarget>>);

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(i32, i32), CancelTarget>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh random key for `target`, registered until [`Cancels::remove`].
    fn register(&self, target: CancelTarget) -> (i32, i32) {
        use rand::Rng;
        let mut map = self.lock();
        loop {
            let key: (i32, i32) = rand::rngs::OsRng.gen();
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(key) {
                e.insert(target);
                return key;
            }
        }
    }

    fn remove(&self, key: (i32, i32)) {
        self.lock().remove(&key);
    }
}

/// Passes a CancelRequest for one of our keys on to the session's upstream, with its key.
async fn forward_cancel(cancels: &Cancels, key: (i32, i32)) {
    let Some(t) = cancels.lock().get(&key).cloned() else { return };
    ending::send_cancel(&t.host, t.port, t.key).await;
}

impl Gateway {
    /// `tls`: the server configuration to answer SSLRequest with; without it the gateway
    /// declines TLS and accepts clients only from loopback.
    pub fn bind(
        addr: SocketAddr,
        broker: Arc<dyn Broker>,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        limits: GatewayLimits,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            broker,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            cancels: Arc::new(Cancels::default()),
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `stop` turns true. Each connection's task runs on the runtime
    /// this runs on: a runtime with fewer threads than the server's serves the relay with fewer
    /// cross-thread wake-ups (see `gateway.threads`).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "gateway: cannot take its listening socket; not accepting");
                return;
            }
        };
        // Connections that have not logged in yet hold one of these: anonymous clients cannot
        // hold more sockets than this, whatever they do (admitted sessions do not count).
        let max = self.limits.max_unauthenticated.max(1);
        let logging_in = Arc::new(tokio::sync::Semaphore::new(max));
        let per_address = per_address::PerAddress::default();
        let mut last_refusal_logged: Option<std::time::Instant> = None;
        loop {
            let mut pause = false;
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Some(address_slot) = per_address.take(peer.ip(), self.limits.max_unauthenticated_per_address.max(1)) else {
                            drop(stream);
                            continue;
                        };
                        let Ok(permit) = logging_in.clone().try_acquire_owned() else {
                            // Closed at once: a flood of half-open logins gets nothing to hold.
                            if last_refusal_logged.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
                                tracing::warn!(%peer, limit = max, "gateway: too many connections logging in; closing new ones");
                                last_refusal_logged = Some(std::time::Instant::now());
                            }
                            drop(stream);
                            continue;
                        };
                        let broker = self.broker.clone();
                        if let Err(wait) = broker.allow_address(peer.ip()) {
                            // Told why (libpq shows it), without reading anything from it.
                            let message = format!(
                                "jitgate: too many connections from {}; try again in {} s",
                                peer.ip(),
                                wait.as_secs().max(1)
                            );
                            tokio::spawn(async move {
                                let mut stream = stream;
                                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), refuse(&mut stream, "53300", &message)).await;
                                drop(permit);
                            });
                            continue;
                        }
                        let tls = self.tls.clone();
                        let cancels = self.cancels.clone();
                        let deadline = tokio::time::Instant::now() + self.limits.startup_timeout;
                        let budget = LoginBudget { _permit: permit, _address: address_slot, deadline };
                        tokio::spawn(async move { serve(stream, peer, broker, tls, cancels, budget).await });
                    }
                    Err(e) => {
                        // Out of file descriptors (say): back off instead of spinning and
                        // filling the log with one line per failed accept.
                        tracing::warn!(error = %e, "gateway accept failed; pausing accepts for 100 ms");
                        pause = true;
                    }
                },
                _ = stop.wait_for(|s| *s) => break,
            }
            if pause {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, sqlstate: &str, message: &str) {
    let _ = stream.write_all(&backend::error(true, sqlstate, message)).await;
    let _ = stream.shutdown().await;
}

/// What a connection may spend before it is logged in: one of the places for unauthenticated
/// connections, until a deadline for TLS, startup and authentication together.
struct LoginBudget {
    /// Held, not read: dropping it frees the place.
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// The same for the place of its address.
    _address: per_address::AddressSlot,
    deadline: tokio::time::Instant,
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

async fn opening<S: AsyncRead + AsyncWrite + Unpin + Pending>(stream: &mut S, offer_tls: bool) -> Result<Opening, (&'static str, String)> {
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
                    return Err(("08P01", "jitgate: data arrived before the TLS handshake".into()));
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
            Err(e) => return Err(("08P01", format!("jitgate: {e}"))),
        }
    }
}

/// One client connection, start to end. Every wait on the client before admission is
/// bounded, so a silent or slow client cannot hold a task and a socket for ever.
async fn serve(
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
        Err((sqlstate, message)) => refuse(&mut tcp, sqlstate, &message).await,
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
        Ok(Err((sqlstate, message))) => return refuse(&mut stream, sqlstate, &message).await,
        Err(_) => return refuse(&mut stream, "08P01", "jitgate: the login took too long").await,
    };
    let mut upstream = match upstream::connect(&admission.target).await {
        Ok(u) => u,
        Err(e) => {
            let (reason, sqlstate) = match e {
                upstream::UpstreamError::Privileged { .. } => (EndReason::Refused(e.to_string()), "42501"),
                _ => (EndReason::Io(e.to_string()), "08006"),
            };
            broker.ended(&admission.session_id, &reason, SessionStats::default()).await;
            return refuse(&mut stream, sqlstate, &format!("jitgate: {e}")).await;
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
) -> Result<Option<Admission>, (&'static str, String)> {
    let params = match params {
        Some(p) => p,
        // After TLS: the StartupMessage comes inside it (a second SSLRequest is an error).
        None => match opening(stream, false).await? {
            Opening::Startup(p) => p,
            _ => return Ok(None),
        },
    };
    let (Some(user), Some(database)) = (params.get("user"), params.get("database").or(params.get("user"))) else {
        return Err(("08P01", "jitgate: the startup packet names no user".into()));
    };
    // The token travels as a cleartext password: only inside TLS or on this host.
    if !encrypted && !peer.ip().is_loopback() {
        return Err((
            "28000",
            "jitgate: connect tokens are only accepted over TLS or from this host (use sslmode=require)".into(),
        ));
    }
    stream
        .write_all(&backend::auth_cleartext())
        .await
        .map_err(|e| ("08006", e.to_string()))?;
    let mut msg = vec![0u8; 5];
    if stream.read_exact(&mut msg).await.is_err() {
        return Ok(None);
    }
    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
    if msg[0] != b'p' || !(5..=1024).contains(&len) {
        return Err(("08P01", "jitgate: expected the connect token as the password".into()));
    }
    msg.resize(1 + len, 0);
    if stream.read_exact(&mut msg[5..]).await.is_err() {
        return Ok(None);
    }
    let token = frontend::password(&msg).ok_or(("08P01", "jitgate: malformed password message".to_owned()))?;
    let request = AdmissionRequest {
        user: user.clone(),
        database: database.clone(),
        token: SecretString::from(token.to_owned()),
        peer,
    };
    broker.admit(request).await.map(Some).map_err(|r| (r.sqlstate, r.message))
}
