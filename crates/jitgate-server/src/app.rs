//! Building and running the server: `Application::build` binds its listener (port 0 in tests),
//! so tests start the real thing.

use crate::audit_log::{load_or_create_signing_key, read_or_create_private_file};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::core::{AppState, Core, Keys};
use jitgate_auth::passkeys::RelyingParty;
use jitgate_auth::secret_box::KeyRing;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Application {
    listener: TcpListener,
    gateway: Option<(jitgate_proxy::Gateway, GatewayRuntime)>,
    addr: SocketAddr,
    core: AppState,
    setup_token: Option<SecretString>,
    stop_tx: watch::Sender<bool>,
    pages: Option<axum::Router>,
    /// HTTPS on the HTTP listener (`server.tls`).
    http_tls: Option<tokio_rustls::TlsAcceptor>,
    /// `/metrics` on a listener of its own (`metrics.listen`).
    metrics_listener: Option<TcpListener>,
}

/// The runtime the gateway's sessions run on (`gateway.threads` workers), apart from the
/// server's. On two cores shared with PostgreSQL, one relay thread served `pgbench -S -c 8`
/// 0.98 x PgBouncer's rate where the server's two-worker runtime reached 0.91 x, at a quarter
/// less CPU per transaction: with fewer workers a session's wake-ups stay on the thread that
/// polls the sockets instead of waking another (docs/benchmarks.md).
struct GatewayRuntime(Option<tokio::runtime::Runtime>);

impl GatewayRuntime {
    fn start(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("jitgate-gateway")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("the gateway runtime runs until dropped").handle().clone()
    }
}

impl Drop for GatewayRuntime {
    fn drop(&mut self) {
        // Dropped from async code (the server's own runtime): a plain drop would block there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Stops a running [`Application`] from elsewhere (tests, signal handlers).
#[derive(Clone)]
pub struct StopHandle(watch::Sender<bool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl From<jitgate_store::StoreError> for StartError {
    fn from(e: jitgate_store::StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<jitgate_policy::LoadError> for StartError {
    fn from(e: jitgate_policy::LoadError) -> Self {
        Self::Policy(e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    // No `#[from]` on these two: their text already includes the inner error, and a source
    // would print it a second time (`jitgate: … X: X` through anyhow's `{:#}`).
    #[error("cannot open the store: {0}")]
    Store(jitgate_store::StoreError),
    #[error("audit signing key: {0}")]
    Key(String),
    #[error("secrets key ring: {0}")]
    Secrets(String),
    #[error("WebAuthn: {0}")]
    Webauthn(String),
    #[error("invalid policies:\n{0}")]
    Policy(jitgate_policy::LoadError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("the PostgreSQL gateway cannot listen on {0}: {1}")]
    Gateway(SocketAddr, std::io::Error),
    #[error("{0}")]
    Setup(String),
}

impl Application {
    pub async fn build(settings: Settings, clock: Option<SharedClock>, config_file: Option<&str>) -> Result<Self, StartError> {
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
        if settings.store_url.is_none() {
            create_private_dir(&settings.data_dir).map_err(|e| StartError::DataDir(settings.data_dir.display().to_string(), e))?;
        }
        let store = jitgate_store::open_with_timeout(&settings.store_url(), settings.store_timeout).await?;
        let key = load_or_create_signing_key(&settings.signing_key_path()).map_err(StartError::Key)?;
        for w in &settings.witnesses {
            if let crate::config::WitnessTarget::File(p) = w {
                if settings.store_url.is_none() && p.starts_with(&settings.data_dir) {
                    tracing::warn!(witness = %p.display(), "an audit witness inside the data directory protects nothing against whoever can write that directory: put it on another volume or machine");
                }
            }
        }
        let listener = TcpListener::bind(settings.http)
            .await
            .map_err(|e| StartError::Listen(settings.http, e))?;
        let addr = listener.local_addr().map_err(|e| StartError::Listen(settings.http, e))?;
        let policy = crate::policy::load_engine(&settings)?;
        let secrets = load_secrets(&settings)?;
        let http_tls = crate::tls::http(&settings).map_err(StartError::Setup)?;
        let rp_id = settings.webauthn_rp_id.clone().unwrap_or_else(|| "localhost".into());
        let scheme = if http_tls.is_some() { "https" } else { "http" };
        let origin = settings
            .webauthn_origin
            .clone()
            .unwrap_or_else(|| format!("{scheme}://localhost:{}", addr.port()));
        let relying_party = RelyingParty::new(&rp_id, &origin).map_err(|e| StartError::Webauthn(e.to_string()))?;
        // Links in notifications lead to the pages, wherever people reach them.
        let mut settings = settings;
        if settings.notifications.public_url.is_none() {
            settings.notifications.public_url = url::Url::parse(&origin).ok();
        }
        let keys = Keys {
            signing: key,
            secrets,
            relying_party,
        };
        let core = Arc::new(Core::new(store, clock, settings, keys, policy));
        let setup = |e: crate::error::ServiceError| StartError::Setup(e.message);
        core.identity().apply_config(config_file).await.map_err(setup)?;
        // Cover whatever the last run appended after its last checkpoint (a crash, say).
        core.checkpoint_now().await.map_err(setup)?;
        let setup_token = core.identity().prepare_bootstrap().await.map_err(setup)?;
        let stop_tx = watch::channel(false).0;
        let gateway = match core.settings.gateway {
            Some(at) => {
                let (tls, ca) = crate::tls::gateway(&core.settings).map_err(StartError::Setup)?;
                let _ = core.gateway_ca.set(ca);
                let runtime = GatewayRuntime::start(core.settings.gateway_threads).map_err(|e| StartError::Gateway(at, e))?;
                let broker = crate::gateway::GatewayBroker::start(core.clone(), stop_tx.subscribe());
                let broker = jitgate_proxy::BrokerOnRuntime::wrap(broker, tokio::runtime::Handle::current());
                let limits = jitgate_proxy::GatewayLimits {
                    startup_timeout: core.settings.limits.gateway_startup_timeout,
                    max_unauthenticated: core.settings.limits.gateway_max_unauthenticated,
                    max_unauthenticated_per_address: core.settings.limits.gateway_max_unauthenticated_per_address,
                };
                let g = jitgate_proxy::Gateway::bind(at, broker, Some(tls), limits).map_err(|e| StartError::Gateway(at, e))?;
                let bound = g.local_addr().map_err(|e| StartError::Gateway(at, e))?;
                let _ = core.gateway_addr.set(bound);
                Some((g, runtime))
            }
            None => None,
        };
        jitgate_auth::warm_up();
        let metrics_listener = match core.settings.metrics {
            crate::config::MetricsPlace::Listen(at) => Some(TcpListener::bind(at).await.map_err(|e| StartError::Listen(at, e))?),
            _ => None,
        };
        Ok(Self {
            listener,
            gateway,
            addr,
            core,
            setup_token,
            stop_tx,
            pages: None,
            http_tls,
            metrics_listener,
        })
    }

    /// Whether the HTTP listener speaks HTTPS.
    pub fn serves_https(&self) -> bool {
        self.http_tls.is_some()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the PostgreSQL gateway listens, if it runs.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.core.gateway_addr.get().copied()
    }

    pub fn core(&self) -> AppState {
        self.core.clone()
    }

    /// The one-time token that `jitgate admin bootstrap` exchanges for the first admin; only
    /// on a store without users.
    pub fn setup_token(&self) -> Option<&SecretString> {
        self.setup_token.as_ref()
    }

    /// Serves `pages` (the web interface) beside the API, on every path the API does not take.
    #[must_use]
    pub fn with_pages(mut self, pages: axum::Router) -> Self {
        self.pages = Some(pages);
        self
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_tx.clone())
    }

    /// Serves until stopped, then writes a final checkpoint.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let engine = tokio::spawn(self.core.clone().run_engine(self.stop_tx.subscribe()));
        let gateway = self
            .gateway
            .map(|(g, runtime)| (runtime.handle().spawn(g.run(self.stop_tx.subscribe())), runtime));
        let provisioner = tokio::spawn(crate::ephemeral::run_provisioner(self.core.clone(), self.stop_tx.subscribe()));
        let housekeeping = tokio::spawn(crate::services::attempts::run_housekeeping(
            self.core.clone(),
            self.stop_tx.subscribe(),
        ));
        let checkpointer = tokio::spawn(self.core.clone().run_checkpointer(self.stop_tx.subscribe()));
        let other_instances = tokio::spawn(crate::changes::follow_other_instances(self.core.clone(), self.stop_tx.subscribe()));
        let outbox = tokio::spawn(crate::notify::run_outbox(self.core.clone(), self.stop_tx.subscribe()));
        let metrics = self.metrics_listener.map(|l| {
            let mut stop = self.stop_tx.subscribe();
            let app = crate::routes::metrics_router(self.core.clone());
            tokio::spawn(async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            })
        });
        let readiness = tokio::spawn(crate::readiness::run(
            self.core.store.clone(),
            self.core.readiness.clone(),
            self.core.settings.store_timeout,
            self.stop_tx.subscribe(),
        ));
        let witnesses: Vec<_> = self
            .core
            .witnesses
            .slots
            .iter()
            .map(|slot| {
                tokio::spawn(crate::witness::delivery::run(
                    self.core.clone(),
                    slot.clone(),
                    self.stop_tx.subscribe(),
                ))
            })
            .collect();
        let mut stop = self.stop_tx.subscribe();
        let app = crate::routes::router(self.core.clone(), self.pages);
        let limits = self.core.settings.limits.clone();
        let served = serve_http(self.listener, self.http_tls, app, &limits, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        self.stop_tx.send_replace(true);
        let _ = engine.await;
        // The gateway's runtime stays up to the end: sessions told of the stop are still
        // sending their last statements to the record.
        let gateway_runtime = match gateway {
            Some((accepting, runtime)) => {
                let _ = accepting.await;
                Some(runtime)
            }
            None => None,
        };
        let _ = provisioner.await;
        let _ = housekeeping.await;
        let _ = checkpointer.await;
        let _ = other_instances.await;
        let _ = outbox.await;
        if let Some(m) = metrics {
            let _ = m.await;
        }
        let _ = readiness.await;
        for w in witnesses {
            let _ = w.await;
        }
        if let Err(e) = self.core.checkpoint_now().await {
            tracing::warn!(error = %e.message, "could not write the closing checkpoint");
        }
        // The closing checkpoint to the witnesses too, if they answer soon.
        crate::witness::delivery::flush(&self.core, std::time::Duration::from_secs(3)).await;
        drop(gateway_runtime);
        served
    }
}

/// Serves the API over HTTP/1.1 with the bounds anonymous traffic needs: a cap on open
/// connections (past it, new ones are closed at once), a deadline for each request head,
/// which also closes a kept-alive connection idle that long, and a deadline for each whole
/// request. `axum::serve` has none of these; hyper has them, so the loop is ours. HTTP/2 is
/// not offered: its clients may idle legitimately, and jitgate's clients speak HTTP/1.1.
async fn serve_http(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    limits: &crate::limits::LimitSettings,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.http_max_connections));
    let per_address = crate::limits::PerAddress::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.http_header_timeout)
        .keep_alive(true);
    let request_timeout = limits.http_request_timeout;
    let mut refused_logged_at: Option<std::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Some(address_slot) = per_address.take(peer.ip(), limits.http_max_connections_per_address) else {
            // One address (or /64) may not hold every place.
            drop(stream);
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            if refused_logged_at.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
                tracing::warn!(
                    cap = limits.http_max_connections,
                    "HTTP connection cap reached: closing new connections"
                );
                refused_logged_at = Some(std::time::Instant::now());
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let app = app.clone();
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let started = std::time::Instant::now();
            async move {
                let answer = match tokio::time::timeout(request_timeout, app.oneshot(req.map(axum::body::Body::new))).await {
                    Ok(answer) => answer,
                    Err(_) => Ok(axum::response::IntoResponse::into_response(
                        crate::routes::ApiError::request_timeout(format!(
                            "the request took longer than {} (server.request_timeout)",
                            humantime_secs(request_timeout)
                        )),
                    )),
                };
                // One line per request (probes at debug); the query string is left out.
                if let Ok(r) = &answer {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    let status = r.status().as_u16();
                    if path == "/healthz" || path == "/readyz" {
                        tracing::debug!(%peer, %method, path, status, ms, "http");
                    } else {
                        tracing::info!(%peer, %method, path, status, ms, "http");
                    }
                }
                answer
            }
        });
        let stream = crate::limits::StallGuard::new(stream, limits.http_header_timeout);
        let watcher = graceful.watcher();
        let (http, tls, handshake_limit) = (http.clone(), tls.clone(), limits.http_header_timeout);
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
                }
                // The handshake runs here, not in the accepting loop, and has the head's
                // deadline: a client that opens and stays silent holds nothing for long.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                        let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await;
                    }
                }
            }
            drop((permit, address_slot));
        });
    }
    drop(listener);
    // Requests under way get a moment to finish; a client that holds on longer is cut.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
    }
    Ok(())
}

fn humantime_secs(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs())
}

/// `JITGATE_SECRETS_KEY` when set (production: from a secret manager), else the key file,
/// made on first start for the embedded default.
fn load_secrets(settings: &Settings) -> Result<KeyRing, StartError> {
    if let Ok(text) = std::env::var("JITGATE_SECRETS_KEY") {
        return KeyRing::parse(&text).map_err(|e| StartError::Secrets(format!("JITGATE_SECRETS_KEY: {e}")));
    }
    let path = settings.secrets_key_path();
    let text = read_or_create_private_file(&path, KeyRing::generate_text).map_err(StartError::Secrets)?;
    KeyRing::parse(&text).map_err(|e| StartError::Secrets(format!("{}: {e}", path.display())))
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}
