//! The shared state every handler and the expiry engine work on, and the helpers that make
//! each change all-or-nothing with its audit event.

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::error::ServiceError;
use ed25519_dalek::SigningKey;
use jitgate_auth::passkeys::RelyingParty;
use jitgate_auth::secret_box::KeyRing;
use jitgate_core::actions;
use jitgate_core::audit::{sign_checkpoint, AuditEvent, CheckpointLink, NewEvent, Outcome};
use jitgate_core::grant::Grant;
use jitgate_core::names::GroupName;
use jitgate_core::{DomainError, Timestamp};
use jitgate_store::{SessionRecord, Store, UserRecord, WriteTx};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantEventKind {
    Created,
    Activated,
    Expired,
    Revoked,
}

/// What the gateway and the notifiers subscribe to: a grant changed.
#[derive(Debug, Clone, Serialize)]
pub struct GrantEvent {
    pub kind: GrantEventKind,
    pub grant: Grant,
    pub at: Timestamp,
}

/// How the expiry engine learns of a deadline earlier than the one it sleeps towards.
#[derive(Debug)]
pub struct EngineWake {
    pub(crate) notify: Notify,
    /// The deadline the engine sleeps until, in ms: any earlier deadline wakes it. `i64::MAX`
    /// while it looks for its next deadline or has none; `i64::MIN` before it first runs (its
    /// first sweep sees everything).
    pub(crate) sleeping_until: AtomicI64,
}

impl EngineWake {
    fn new() -> Self {
        Self {
            notify: Notify::new(),
            sleeping_until: AtomicI64::new(i64::MIN),
        }
    }

    pub fn deadline_added(&self, deadline: Timestamp) {
        if deadline.as_millis() < self.sleeping_until.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
    }
}

pub struct Core {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub settings: Settings,
    pub signing_key: SigningKey,
    /// Seals secrets at rest (TOTP seeds).
    pub secrets: KeyRing,
    pub relying_party: RelyingParty,
    /// The Cedar policies in force; a reload swaps them whole.
    pub policy: std::sync::RwLock<Arc<jitgate_policy::PolicyEngine>>,
    pub grant_events: broadcast::Sender<GrantEvent>,
    /// Counts the committed changes people can see (every audit event but recorded
    /// statements), so that open pages learn when to show the new state.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// The newest audit event this instance committed: changes past it were made by another
    /// instance ([`crate::changes`] tells the pages of those).
    pub local_head: std::sync::atomic::AtomicI64,
    pub engine: EngineWake,
    /// The gateway's live sessions in this process.
    pub sessions: Arc<crate::live_sessions::Sessions>,
    /// Where the gateway listens, once it does.
    pub gateway_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// What clients trust to verify the gateway's TLS, once it has TLS.
    pub gateway_ca: std::sync::OnceLock<GatewayCa>,
    /// Bounds on hashing, rates per address, and the audit of anonymous failures.
    pub limits: crate::limits::Limits,
    /// Where checkpoints are published outside the database.
    pub witnesses: crate::witness::Witnesses,
    /// Whether the store answered its last probe: what `/readyz` says without waiting on it.
    pub readiness: Arc<crate::readiness::Readiness>,
    pub(crate) witness_http: std::sync::OnceLock<reqwest::Client>,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::Metrics,
    /// The OpenID Connect relying party: the providers' discovery documents and keys.
    pub oidc: jitgate_sso::RelyingParty,
    /// One lock per grant whose ephemeral role is being made: the provisioner (on the grant's
    /// event) and the gateway (at a first connect) both make a missing role, and without it
    /// both would find no record and the second CREATE ROLE would fail the connect.
    pub(crate) role_making: crate::keyed_lock::KeyedLocks,
}

/// One log line per committed audit event: every request, decision, grant change, session
/// start and end, and refusal reaches the operator's log as well as the audit log. Recorded
/// statements are many and go to the audit log only (debug here).
fn log_events(events: &[AuditEvent]) {
    for e in events {
        let outcome = e.outcome.as_str();
        if e.action == actions::SESSION_STATEMENTS {
            tracing::debug!(seq = e.seq, actor = %e.actor, target = %e.target, "{}", e.action);
        } else if outcome == "success" {
            tracing::info!(seq = e.seq, actor = %e.actor, target = %e.target, outcome, "{}", e.action);
        } else {
            let code = e.details.get("code").or_else(|| e.details.get("reason")).map(|c| c.to_string());
            tracing::warn!(seq = e.seq, actor = %e.actor, target = %e.target, outcome, code, "{}", e.action);
        }
    }
}

/// The certificate a client trusts as the root when it verifies the gateway
/// (`sslmode=verify-full sslrootcert=...`).
#[derive(Debug, Clone)]
pub struct GatewayCa {
    /// One or more certificates, PEM.
    pub pem: String,
    /// SHA-256 of the first certificate's DER, lowercase hex (`openssl x509 -fingerprint
    /// -sha256` without the colons).
    pub sha256: String,
}

pub type AppState = Arc<Core>;

/// The keys a server holds outside its store.
pub struct Keys {
    pub signing: SigningKey,
    pub secrets: KeyRing,
    pub relying_party: RelyingParty,
}

/// A logged-in person, as every authenticated handler sees them.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRecord,
    pub groups: BTreeSet<GroupName>,
    /// The session; for an API token, one that stands for it (its hash, never fresh from a
    /// second factor).
    pub session: SessionRecord,
    /// For a call made with an API token: what it may do. `None`: a signed-in person.
    pub token_scopes: Option<BTreeSet<jitgate_api::TokenScope>>,
}

impl Caller {
    pub fn name(&self) -> &str {
        self.user.name.as_str()
    }
}

impl Core {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, settings: Settings, keys: Keys, policy: jitgate_policy::PolicyEngine) -> Self {
        let limits = crate::limits::Limits::new(&settings.limits);
        let settings_witnesses = settings.witnesses.clone();
        Self {
            store,
            clock,
            settings,
            signing_key: keys.signing,
            secrets: keys.secrets,
            relying_party: keys.relying_party,
            policy: std::sync::RwLock::new(Arc::new(policy)),
            grant_events: broadcast::channel(4096).0,
            changes: tokio::sync::watch::Sender::new(0),
            local_head: std::sync::atomic::AtomicI64::new(0),
            engine: EngineWake::new(),
            sessions: Arc::default(),
            gateway_addr: std::sync::OnceLock::new(),
            gateway_ca: std::sync::OnceLock::new(),
            limits,
            witnesses: crate::witness::Witnesses::new(&settings_witnesses),
            readiness: Arc::new(crate::readiness::Readiness::new()),
            witness_http: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::default(),
            oidc: jitgate_sso::RelyingParty::new(),
            role_making: crate::keyed_lock::KeyedLocks::default(),
        }
    }

    /// Refuses (and audits the refusal of) `operation` for anyone but an administrator.
    pub async fn require_admin(&self, caller: &Caller, operation: &str) -> Result<(), ServiceError> {
        if caller.user.is_admin {
            Ok(())
        } else {
            Err(self.forbid(caller, operation, "this needs an administrator").await)
        }
    }

    pub fn policy(&self) -> Arc<jitgate_policy::PolicyEngine> {
        self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Begins a change.
    pub async fn begin(&self) -> Result<Box<dyn WriteTx>, ServiceError> {
        Ok(self.store.write().await?)
    }

    /// Commits a change, adding a signed checkpoint when its events took the chain across a
    /// multiple of `checkpoint_every`, so a checkpoint is part of the same transaction as its
    /// events.
    pub async fn commit(&self, mut tx: Box<dyn WriteTx>) -> Result<Vec<AuditEvent>, ServiceError> {
        let every = self.settings.checkpoint_every;
        let head = tx.head().seq;
        let start = head - i64::try_from(tx.appended()).unwrap_or(head);
        let checkpointed = head / every > start / every && self.add_checkpoint(&mut *tx, None).await?;
        let events = tx.commit().await?;
        if checkpointed {
            self.witnesses.wake();
        }
        log_events(&events);
        self.metrics.observe_events(&events);
        if let Some(last) = events.last() {
            self.local_head.fetch_max(last.seq, std::sync::atomic::Ordering::Relaxed);
        }
        if events.iter().any(|e| e.action != actions::SESSION_STATEMENTS) {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(events)
    }

    /// Signs the head as the checkpoint after the newest one, unless that one is at the head
    /// already. Read and written under the head's lock, so checkpoints form one line even
    /// with several instances.
    pub async fn add_checkpoint(&self, tx: &mut dyn WriteTx, announce: Option<&ed25519_dalek::VerifyingKey>) -> Result<bool, ServiceError> {
        let head = tx.head().clone();
        let last = tx.last_checkpoint().await?;
        if last.as_ref().is_some_and(|c| c.seq >= head.seq) || head.seq == 0 && announce.is_none() {
            return Ok(false);
        }
        let prev = last.as_ref().map_or_else(CheckpointLink::genesis, CheckpointLink::of);
        let cp = sign_checkpoint(&self.signing_key, &head, self.now().as_millis(), prev, announce);
        tx.insert_checkpoint(&cp).await?;
        Ok(true)
    }

    /// Writes a signed checkpoint at the current head if it has none yet: at start, at stop,
    /// and every `checkpoint_interval`.
    pub async fn checkpoint_now(&self) -> Result<(), ServiceError> {
        let mut tx = self.begin().await?;
        if self.add_checkpoint(&mut *tx, None).await? {
            tx.commit().await?;
            self.witnesses.wake();
        }
        Ok(())
    }

    /// Checkpoints every `checkpoint_interval` when events were appended, until stopped.
    pub async fn run_checkpointer(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut checkpointed_at = -1;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Reading the head is cheap; taking the writers' lock only when there is something
            // to sign keeps an idle server from contending with anyone.
            match self.store.audit_head().await {
                Ok(h) if h.seq == checkpointed_at => continue,
                Ok(h) => {
                    if let Err(e) = self.checkpoint_now().await {
                        tracing::warn!(error = %e.message, "could not write a timed checkpoint");
                    } else {
                        checkpointed_at = h.seq;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read the audit head"),
            }
        }
    }

    /// Records one event in a change of its own: refusals and failed logins, whose main change
    /// was not made.
    pub async fn audit_alone(&self, event: NewEvent) {
        let result = async {
            let mut tx = self.begin().await?;
            tx.append_audit(event, self.now()).await?;
            self.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, "could not record an audit event");
        }
    }

    /// Every refusal is on the record: `denied` when the caller may not, `failure` when what
    /// they asked cannot be (a lease over the maximum, a connect without a live grant, …).
    pub async fn refused(&self, caller: &Caller, action: &str, target: &str, err: DomainError) -> ServiceError {
        let outcome = if err.is_authorization() {
            Outcome::Denied
        } else {
            Outcome::Failure
        };
        let details = serde_json::json!({"code": err.code(), "message": err.to_string()});
        self.audit_alone(NewEvent::new(caller.name(), action, target, outcome, details))
            .await;
        err.into()
    }

    /// A 404 for someone acting on a request or grant they may not see: the answer says no
    /// more than for an id that does not exist, and the record keeps the attempt.
    pub async fn hidden(&self, caller: &Caller, action: &str, target: &str, what: &str) -> ServiceError {
        let details = serde_json::json!({"code": "not_visible", "message": format!("{what} not visible to {}", caller.name())});
        self.audit_alone(NewEvent::new(caller.name(), action, target, Outcome::Denied, details))
            .await;
        ServiceError::not_found(what)
    }

    /// A 403 for `operation`, recorded as a denied authorization.
    pub async fn forbid(&self, caller: &Caller, operation: &str, message: &str) -> ServiceError {
        let details = serde_json::json!({"code": "forbidden", "message": message});
        self.audit_alone(NewEvent::new(
            caller.name(),
            format!("api.{operation}"),
            operation,
            Outcome::Denied,
            details,
        ))
        .await;
        ServiceError::forbidden(message)
    }

    pub fn publish(&self, kind: GrantEventKind, grant: &Grant) {
        // No subscriber is fine: the event is also in the audit log.
        let _ = self.grant_events.send(GrantEvent {
            kind,
            grant: grant.clone(),
            at: self.now(),
        });
    }

    /// Every administrator who can act (not disabled): whom alerts go to.
    pub async fn administrators(&self) -> Result<Vec<jitgate_core::names::Username>, jitgate_store::StoreError> {
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| u.is_admin && !u.disabled)
            .map(|u| u.name)
            .collect())
    }

    pub fn is_audit_reader(&self, caller: &Caller) -> bool {
        caller.user.is_admin || !self.settings.audit_reader_groups.is_disjoint(&caller.groups)
    }
}

/// Short random ids with a prefix that says what they name: `req_…`, `grt_…`.
/// An alert, in the transaction of what raised it: a notification `kind` about `subject` to
/// each recipient, and one `alert.KIND` audit event naming them (with `details` beside).
#[allow(clippy::too_many_arguments)]
pub async fn alert(
    tx: &mut dyn WriteTx,
    kind: &str,
    subject: &str,
    message: &str,
    recipients: &[jitgate_core::names::Username],
    outcome: Outcome,
    mut details: serde_json::Value,
    now: Timestamp,
) -> Result<(), jitgate_store::StoreError> {
    for r in recipients {
        tx.insert_notification(&jitgate_store::NotificationRecord {
            id: new_id("ntf"),
            recipient: r.clone(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            message: message.to_owned(),
            created_at: now,
        })
        .await?;
    }
    details["recipients"] = serde_json::json!(recipients);
    tx.append_audit(NewEvent::new("system", format!("alert.{kind}"), subject, outcome, details), now)
        .await
        .map(|_| ())
}

pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::thread_rng();
    let body: String = (0..16).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}_{body}")
}
