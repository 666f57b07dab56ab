//! What the gateway asks of the server ([`Broker`]): admit a client with its connect token, say
//! how to end a backend, hear that a session ended. The gateway knows nothing of the store or
//! the policy; the broker knows nothing of the wire protocol.

use crate::protocol::{backend, sqlstate};
use crate::relay::{self, EndReason, SessionStats};
use crate::upstream::UpstreamTarget;
use async_trait::async_trait;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

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

/// Why a client was turned away; `message` goes to the client as a FATAL error. Made by the
/// named constructors below, which prefix the text with `jitgate: ` so a client can tell the
/// gateway's refusals from the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(sqlstate: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            sqlstate,
            message: format!("jitgate: {message}"),
        }
    }

    /// The client broke the protocol.
    pub fn protocol(message: impl std::fmt::Display) -> Self {
        Self::new(sqlstate::PROTOCOL_VIOLATION, message)
    }

    /// The token or the login is refused.
    pub fn not_authorized(message: impl std::fmt::Display) -> Self {
        Self::new(sqlstate::INVALID_AUTHORIZATION, message)
    }

    /// The upstream or the store cannot be reached, or will not let the gateway in.
    pub fn unavailable(message: impl std::fmt::Display) -> Self {
        Self::new(sqlstate::CONNECTION_FAILURE, message)
    }

    /// The upstream login holds privileges its role does not allow.
    pub fn privileged(message: impl std::fmt::Display) -> Self {
        Self::new(sqlstate::INSUFFICIENT_PRIVILEGE, message)
    }

    /// A connection limit is reached.
    pub fn too_many(message: impl std::fmt::Display) -> Self {
        Self::new(sqlstate::TOO_MANY_CONNECTIONS, message)
    }

    /// The gateway is shutting down.
    pub fn shutting_down() -> Self {
        Self::new(sqlstate::CANNOT_CONNECT_NOW, "the gateway is shutting down")
    }

    /// The refusal as the FATAL ErrorResponse the client reads.
    pub fn to_message(&self) -> bytes::BytesMut {
        backend::error(true, self.sqlstate, &self.message)
    }
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
/// their own (see [`crate::Gateway::run`]), while the broker's work (the store, the audit log) belongs
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

#[async_trait]
impl Broker for BrokerOnRuntime {
    async fn admit(&self, request: AdmissionRequest) -> Result<Admission, Refusal> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.admit(request).await })
            .await
            .unwrap_or_else(|_| Err(Refusal::shutting_down()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reaches_the_client_as_a_fatal_error_with_its_code_and_the_gateways_name() {
        let r = Refusal::not_authorized("access grant expired or not active");
        assert_eq!(r.sqlstate, "28000");
        let m = r.to_message();
        let text = String::from_utf8_lossy(&m);
        assert_eq!(m[0], b'E');
        for field in ["SFATAL", "C28000", "Mjitgate: access grant expired or not active"] {
            assert!(text.contains(field), "{field} in {text:?}");
        }
        assert_eq!(Refusal::privileged("x").sqlstate, "42501");
        assert_eq!(Refusal::too_many("x").sqlstate, "53300");
        assert_eq!(Refusal::unavailable("x").sqlstate, "08006");
        assert_eq!(Refusal::protocol("x").sqlstate, "08P01");
        assert_eq!(Refusal::shutting_down().sqlstate, "57P03");
    }
}
