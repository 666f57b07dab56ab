//! The listener: accepts connections, holds anonymous ones to their limits (in all, per
//! address, a deadline), and hands each to `session`.

use crate::broker::{Broker, Refusal};
use crate::cancels::Cancels;
use crate::per_address;
use crate::session::{refuse, serve, LoginBudget};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
                            let refusal = Refusal::too_many(format_args!(
                                "too many connections from {}; try again in {} s",
                                peer.ip(),
                                wait.as_secs().max(1)
                            ));
                            tokio::spawn(async move {
                                let mut stream = stream;
                                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), refuse(&mut stream, &refusal)).await;
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
