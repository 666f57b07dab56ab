//! The server's side of the PostgreSQL gateway: connect tokens for live grants, admission of
//! gateway clients (the [`Broker`]), session records and audit events, and the kill switch
//! that ends every session of a grant the moment the grant ends.

use crate::core::{new_id, AppState, Caller, Core, GrantEventKind};
use crate::error::ApiError;
use crate::policy::{Asked, Subject};
use crate::upstream::Login;
use async_trait::async_trait;
use axum::http::StatusCode;
use jitgate_api::{ConnectBody, ConnectToken, DbSessionView};
use jitgate_auth::{new_token, token_hash};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::GrantStatus;
use jitgate_core::names::{ResourceName, RoleName, Username};
use jitgate_core::policy::{AccessMode, MfaAction};
use jitgate_core::DomainError;
use jitgate_policy::PolicyAction;
use jitgate_proxy::relay::{EndReason, SessionStats};
use jitgate_proxy::upstream::UpstreamTarget;
use jitgate_proxy::{Admission, AdmissionRequest, Broker, Refusal};
use jitgate_store::{ConnectTokenRecord, DbSessionRecord, GrantFilter};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a connect token may wait to be used.
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// The most sessions one connect token may open.
const MAX_USES: u32 = 10_000;
/// Statements waiting to be written to the audit log; beyond this they are counted, not kept.
const STATEMENT_QUEUE: usize = 10_000;

struct LiveSession {
    record: DbSessionRecord,
    kill: watch::Sender<Option<String>>,
}

/// Sessions in this process, by id.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, LiveSession>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveSession>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends every session of `grant_id` with `why`. Returns how many.
    pub fn end_grant(&self, grant_id: &str, why: &str) -> usize {
        let live = self.lock();
        let mut n = 0;
        for s in live.values().filter(|s| s.record.grant_id == grant_id) {
            s.kill.send_replace(Some(why.to_owned()));
            n += 1;
        }
        n
    }

    fn kill(&self, id: &str, why: &str) -> bool {
        self.lock().get(id).map(|s| s.kill.send_replace(Some(why.to_owned()))).is_some()
    }
}

/// The server as the gateway's broker.
pub struct GatewayBroker {
    core: AppState,
    statements: mpsc::Sender<(String, String)>,
    dropped: std::sync::atomic::AtomicU64,
}

impl GatewayBroker {
    /// The broker, with the tasks that end sessions when their grants end and that write
    /// recorded statements to the audit log.
    /// Its tasks end with `stop` (the statement writer once the last session is gone), so a
    /// stopped server lets go of its store.
    pub fn start(core: AppState, stop: watch::Receiver<bool>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(STATEMENT_QUEUE);
        tokio::spawn(write_statements(core.clone(), rx));
        tokio::spawn(end_sessions_with_their_grants(core.clone(), stop));
        Arc::new(Self {
            core,
            statements: tx,
            dropped: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

/// The kill switch: a grant that expires or is revoked ends its sessions at once.
async fn end_sessions_with_their_grants(core: AppState, mut stop: watch::Receiver<bool>) {
    let mut events = core.grant_events.subscribe();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|s| *s) => break,
        };
        match event {
            Ok(e) => {
                let why = match e.kind {
                    GrantEventKind::Expired => "access grant expired",
                    GrantEventKind::Revoked => "access grant revoked",
                    _ => continue,
                };
                core.sessions.end_grant(&e.grant.id, why);
            }
            // Missed events: check every live session's grant against the store.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let ids: Vec<(String, String)> = core
                    .sessions
                    .lock()
                    .values()
                    .map(|s| (s.record.id.clone(), s.record.grant_id.clone()))
                    .collect();
                for (id, grant) in ids {
                    let live = core
                        .store
                        .grant(&grant)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|g| g.effective_status(core.now()).is_live());
                    if !live {
                        core.sessions.kill(&id, "access grant ended");
                    }
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Recorded statements go to the audit log in batches: one transaction per batch keeps a busy
/// session from costing a transaction per statement.
async fn write_statements(core: AppState, mut rx: mpsc::Receiver<(String, String)>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 500).await > 0 {
        let result = async {
            let (mut tx, start) = core.begin().await?;
            for (session, text) in batch.drain(..) {
                tx.append_audit(
                    NewEvent::new(
                        "gateway",
                        "session.statement",
                        session,
                        Outcome::Success,
                        json!({"statement": text}),
                    ),
                    core.now(),
                )
                .await?;
            }
            core.commit(tx, start).await.map(|_| ())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, "could not record session statements");
            batch.clear();
        }
    }
}

fn refusal(message: impl Into<String>) -> Refusal {
    Refusal {
        sqlstate: "28000",
        message: format!("jitgate: {}", message.into()),
    }
}

#[async_trait]
impl Broker for GatewayBroker {
    async fn admit(&self, req: AdmissionRequest) -> Result<Admission, Refusal> {
        let core = &self.core;
        let now = core.now();
        let hash = token_hash(req.token.expose_secret());
        let denied = |why: &str| {
            let event = NewEvent::new(
                req.user.as_str(),
                "session.start",
                req.database.as_str(),
                Outcome::Denied,
                json!({"reason": why, "peer": req.peer.to_string()}),
            );
            async move { core.audit_alone(event).await }
        };
        let unavailable = |e: ApiError| Refusal {
            sqlstate: "08006",
            message: format!("jitgate: {}", e.message),
        };
        let (mut tx, start) = core.begin().await.map_err(unavailable)?;
        let token = tx.redeem_connect_token(&hash, now).await.map_err(|e| unavailable(e.into()))?;
        let Some(token) = token.filter(|t| t.user.as_str() == req.user && t.resource.as_str() == req.database) else {
            // Whatever was wrong (unknown, used, expired, someone else's, another resource),
            // the token is spent if it existed: redeeming marked it.
            drop(tx);
            denied("the connect token is unknown, used, expired, or for another user or database").await;
            return Err(refusal(
                "the connect token is not valid for this user and database (get a new one with `jitgate connect`)",
            ));
        };
        let grant = tx.grant(&token.grant_id).await.map_err(|e| unavailable(e.into()))?;
        let Some(grant) = grant.filter(|g| g.effective_status(now) == GrantStatus::Active) else {
            drop(tx);
            denied("the grant is not active").await;
            return Err(refusal("access grant expired or not active"));
        };
        let resource = core.store.resource(&token.resource).await.map_err(|e| unavailable(e.into()))?;
        let role_name: RoleName = token.role.parse().map_err(|_| refusal("unknown role"))?;
        let Some((resource, ephemeral_access)) = resource.and_then(|r| {
            let p = r.roles.get(&role_name)?;
            r.postgres.as_ref()?;
            let ephemeral = p.access == AccessMode::Ephemeral;
            Some((r, ephemeral))
        }) else {
            drop(tx);
            denied("the resource has no postgres target").await;
            return Err(refusal("this resource is not reachable through the gateway"));
        };
        let application = format!("jitgate:{}", grant.user);
        // Proxy access logs in as the role's login, resolved (password, TLS roots) before the
        // session is recorded, so a resource that cannot be reached is refused without a
        // half-open session. Ephemeral access logs in as the grant's own role, below.
        let service = if ephemeral_access {
            None
        } else {
            match core.upstream_target(&resource, Login::Role(&role_name), &application).await {
                Ok(t) => Some(t),
                Err(why) => {
                    drop(tx);
                    denied(&why).await;
                    return Err(Refusal {
                        sqlstate: "08006",
                        message: format!("jitgate: the gateway cannot log in upstream: {why}"),
                    });
                }
            }
        };
        let record = DbSessionRecord {
            id: new_id("ses"),
            grant_id: grant.id.clone(),
            user: grant.user.clone(),
            resource: grant.resource.clone(),
            role: grant.role.to_string(),
            peer: req.peer.to_string(),
            started_at: now,
            ended_at: None,
            end_reason: None,
            bytes_in: 0,
            bytes_out: 0,
            statements: 0,
        };
        let stored = async {
            tx.insert_db_session(&record).await?;
            tx.append_audit(
                NewEvent::new(
                    record.user.as_str(),
                    "session.start",
                    record.id.as_str(),
                    Outcome::Success,
                    json!({"grant": record.grant_id, "resource": record.resource, "role": record.role, "peer": record.peer}),
                ),
                now,
            )
            .await?;
            Ok::<_, jitgate_store::StoreError>(())
        }
        .await;
        stored.map_err(|e| unavailable(e.into()))?;
        core.commit(tx, start).await.map_err(unavailable)?;
        let target = match service {
            Some(t) => Ok(t),
            // Ephemeral access: the session logs in as the grant's own role (made now if the
            // grant event has not made it yet).
            None => match core.ensure_ephemeral(&grant).await {
                Ok(Some((user, password))) => {
                    core.upstream_target(&resource, Login::Ephemeral(&role_name, user, password), &application)
                        .await
                }
                Ok(None) => core.upstream_target(&resource, Login::Role(&role_name), &application).await,
                Err(e) => Err(e.message),
            },
        };
        let target = match target {
            Ok(t) => t,
            Err(why) => {
                let reason = EndReason::Io(why.clone());
                let (kill, _) = watch::channel(None);
                core.sessions.lock().insert(
                    record.id.clone(),
                    LiveSession {
                        record: record.clone(),
                        kill,
                    },
                );
                self.ended(&record.id, &reason, SessionStats::default()).await;
                return Err(Refusal {
                    sqlstate: "08006",
                    message: format!("jitgate: the grant's database role is not available: {why}"),
                });
            }
        };
        let (kill, kill_rx) = watch::channel(None);
        core.sessions.lock().insert(
            record.id.clone(),
            LiveSession {
                record: record.clone(),
                kill,
            },
        );
        // The session's own deadline, on the server's clock: it ends with its grant even when
        // the store is unreachable and the expiry engine cannot record the expiry.
        {
            let (core, id, ends, mut alive) = (core.clone(), record.id.clone(), grant.ends_at, kill_rx.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = core.clock.sleep_until(ends) => {
                        core.sessions.kill(&id, "access grant expired");
                    }
                    () = async { while alive.changed().await.is_ok() {} } => {}
                }
            });
        }
        // The grant may have ended between the check and the registration.
        if core
            .store
            .grant(&grant.id)
            .await
            .ok()
            .flatten()
            .is_none_or(|g| !g.effective_status(core.now()).is_live())
        {
            core.sessions.kill(&record.id, "access grant expired");
        }
        let record_statements = resource.postgres.as_ref().is_some_and(|t| t.record_statements);
        Ok(Admission {
            session_id: record.id,
            target,
            record_statements,
            kill: kill_rx,
        })
    }

    fn statement(&self, session_id: &str, text: &str) {
        if self.statements.try_send((session_id.to_owned(), text.to_owned())).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn terminator(&self, session_id: &str) -> Option<UpstreamTarget> {
        let core = &self.core;
        let resource = core.sessions.lock().get(session_id).map(|s| s.record.resource.clone())?;
        let resource = core.store.resource(&resource).await.ok().flatten()?;
        core.upstream_target(&resource, Login::Service, "jitgate-terminator").await.ok()
    }

    async fn ended(&self, session_id: &str, reason: &EndReason, stats: SessionStats) {
        let core = &self.core;
        let Some(live) = core.sessions.lock().remove(session_id) else {
            return;
        };
        let mut record = live.record;
        record.ended_at = Some(core.now());
        record.end_reason = Some(reason.as_str());
        record.bytes_in = i64::try_from(stats.bytes_from_client).unwrap_or(i64::MAX);
        record.bytes_out = i64::try_from(stats.bytes_to_client).unwrap_or(i64::MAX);
        record.statements = i64::try_from(stats.statements).unwrap_or(i64::MAX);
        let result = async {
            let (mut tx, start) = core.begin().await?;
            tx.end_db_session(&record).await?;
            let outcome = match reason {
                EndReason::Refused(_) => Outcome::Denied,
                _ => Outcome::Success,
            };
            tx.append_audit(
                NewEvent::new(
                    record.user.as_str(),
                    "session.end",
                    record.id.as_str(),
                    outcome,
                    {
                        let mut details = json!({"reason": record.end_reason, "bytes_in": record.bytes_in, "bytes_out": record.bytes_out,
                               "statements": record.statements, "statements_not_recorded": self.dropped.load(std::sync::atomic::Ordering::Relaxed)});
                        // A killed session: how its backend was ended, whether that was seen,
                        // and how long it took from the kill.
                        if let Some(e) = stats.ending {
                            details["backend_ended"] = json!({"method": e.method, "confirmed": e.confirmed,
                                "lag_ms": e.lag_us as f64 / 1000.0, "busy": stats.busy_at_end});
                        }
                        details
                    },
                ),
                core.now(),
            )
            .await?;
            core.commit(tx, start).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, session = session_id, "could not record the end of a session");
        }
    }
}

fn view(r: DbSessionRecord) -> DbSessionView {
    DbSessionView {
        id: r.id,
        grant_id: r.grant_id,
        user: r.user,
        resource: r.resource.to_string(),
        role: r.role,
        peer: r.peer,
        started_at: r.started_at,
        ended_at: r.ended_at,
        end_reason: r.end_reason,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        statements: r.statements,
    }
}

impl Core {
    /// A one-time token to open one gateway session on a live grant of the caller's.
    pub async fn connect_token(&self, caller: &Caller, body: &ConnectBody, gateway: Option<SocketAddr>) -> Result<ConnectToken, ApiError> {
        let Some(gateway) = gateway else {
            return Err(ApiError::conflict("no_gateway", "this server runs no gateway"));
        };
        let now = self.now();
        let resource_name: ResourceName = body
            .resource
            .parse()
            .map_err(|_| DomainError::UnknownResource(body.resource.clone()))?;
        let resource = self
            .store
            .resource(&resource_name)
            .await?
            .ok_or_else(|| DomainError::UnknownResource(body.resource.clone()))?;
        let filter = GrantFilter {
            user: Some(caller.user.name.clone()),
            status: Some(GrantStatus::Active),
            resource: Some(resource.name.clone()),
            limit: 100,
        };
        let live: Vec<_> = self
            .store
            .grants(&filter)
            .await?
            .into_iter()
            .filter(|g| g.effective_status(now) == GrantStatus::Active)
            .filter(|g| body.role.as_deref().is_none_or(|r| g.role.as_str() == r))
            .collect();
        let grant = match live.as_slice() {
            [g] => g.clone(),
            [] => {
                return Err(self
                    .refused(
                        caller,
                        "session.connect",
                        resource.name.as_str(),
                        DomainError::GrantNotLive {
                            status: "missing: request access first".into(),
                        },
                    )
                    .await)
            }
            _ => {
                return Err(ApiError::bad_request(
                    "role_required",
                    "you have live grants for several roles here: say which with --role",
                ))
            }
        };
        let policy = resource.role(&grant.role)?.clone();
        if resource.postgres.is_none() {
            return Err(ApiError::conflict(
                "not_a_database",
                "this resource has no postgres target for the gateway",
            ));
        }
        let target = format!("{}/{}", resource.name, grant.role);
        let who = Subject::of(caller);
        let asked = Asked {
            resource: &resource,
            role: &grant.role,
            duration: grant.starts_at.until(grant.ends_at),
            reason: "",
            ticket: None,
        };
        let d = self.decide(PolicyAction::Connect, &who, &asked, now).await?;
        if !d.allowed && !d.policies.is_empty() {
            let e = DomainError::ForbiddenByPolicy {
                action: "connect".into(),
                policies: d.policies,
            };
            return Err(self.refused(caller, "session.connect", &target, e).await);
        }
        self.step_up(
            caller,
            policy.needs_mfa(MfaAction::Connect),
            body.mfa.as_ref(),
            "session.connect",
            &target,
        )
        .await?;
        let uses = body.uses.unwrap_or(1);
        if !(1..=MAX_USES).contains(&uses) {
            return Err(ApiError::bad_request(
                "invalid_uses",
                format!("uses must be between 1 and {MAX_USES}"),
            ));
        }
        let token = new_token("jgc");
        let record = ConnectTokenRecord {
            token_hash: token_hash(token.expose_secret()),
            user: caller.user.name.clone(),
            resource: resource.name.clone(),
            role: grant.role.to_string(),
            grant_id: grant.id.clone(),
            created_at: now,
            expires_at: now.saturating_add(TOKEN_TTL).min(grant.ends_at),
            uses: i64::from(uses),
        };
        let (mut tx, start) = self.begin().await?;
        tx.insert_connect_token(&record).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                "session.token",
                grant.id.as_str(),
                Outcome::Success,
                json!({"resource": record.resource, "role": record.role, "uses": uses}),
            ),
            now,
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(ConnectToken {
            token: token.expose_secret().into(),
            username: caller.user.name.clone(),
            resource: record.resource.to_string(),
            role: record.role,
            grant_id: record.grant_id,
            expires_at: record.expires_at,
            host: gateway.ip().to_string(),
            port: gateway.port(),
            dbname: resource.name.to_string(),
            uses,
            gateway_ca_pem: self.gateway_ca.get().map(|c| c.pem.clone()),
            gateway_ca_sha256: self.gateway_ca.get().map(|c| c.sha256.clone()),
        })
    }

    /// Gateway sessions: a person's own, or everyone's for administrators and audit readers.
    pub async fn db_sessions(&self, caller: &Caller, all: bool, live_only: bool) -> Result<Vec<DbSessionView>, ApiError> {
        let user: Option<&Username> = if all {
            if !self.is_audit_reader(caller) {
                return Err(self
                    .forbid(caller, "list_sessions", "listing everyone's sessions needs an administrator")
                    .await);
            }
            None
        } else {
            Some(&caller.user.name)
        };
        Ok(self.store.db_sessions(user, live_only, 500).await?.into_iter().map(view).collect())
    }

    pub async fn kill_session(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        self.require_admin(caller, "kill_session").await?;
        if !self.sessions.kill(id, "session ended by an administrator") {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no live session with that id on this server",
            ));
        }
        self.audit_alone(NewEvent::new(caller.name(), "session.kill", id, Outcome::Success, json!({})))
            .await;
        Ok(())
    }
}
