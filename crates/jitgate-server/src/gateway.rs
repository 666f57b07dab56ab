//! The server's side of the PostgreSQL gateway: connect tokens for live grants, admission of
//! gateway clients (the [`Broker`]), session records and audit events, and the kill switch
//! that ends every session of a grant the moment the grant ends.

use crate::core::{new_id, AppState, GrantEventKind};
use crate::error::ServiceError;
use crate::live_sessions::{grant_ended, LiveSession, GRANT_EXPIRED, GRANT_REVOKED};
use crate::upstream::Login;
use async_trait::async_trait;
use jitgate_auth::token_hash;
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::GrantStatus;
use jitgate_core::policy::AccessMode;
use jitgate_proxy::relay::{EndReason, SessionStats, StatementBatch};
use jitgate_proxy::upstream::UpstreamTarget;
use jitgate_proxy::{Admission, AdmissionRequest, Broker, Refusal};
use jitgate_store::{GatewaySession, KillTarget, SessionKill};
use secrecy::ExposeSecret;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// How often live sessions are checked against the store while kills from other instances
/// cannot be heard.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// The server as the gateway's broker.
pub struct GatewayBroker {
    core: AppState,
    statements: mpsc::Sender<StatementBatch>,
}

impl GatewayBroker {
    /// The broker, with the tasks that end sessions when their grants end and that write
    /// recorded statements to the audit log.
    /// Its tasks end with `stop` (the statement writer once the last session is gone), so a
    /// stopped server lets go of its store.
    pub fn start(core: AppState, stop: watch::Receiver<bool>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(crate::recording::QUEUE);
        tokio::spawn(crate::recording::write_statements(core.clone(), rx));
        tokio::spawn(end_sessions_with_their_grants(core.clone(), stop));
        Arc::new(Self { core, statements: tx })
    }
}

/// What woke the kill switch.
enum Wake {
    Grant(Result<crate::core::GrantEvent, broadcast::error::RecvError>),
    Kill(Result<SessionKill, broadcast::error::RecvError>),
    /// The store's listener lost its connection or has a new one.
    Listening(bool),
    Tick,
    /// The check against the store finished.
    Checked,
    Stop,
}

/// The kill switch: a grant that expires or is revoked ends its sessions at once, and so does
/// a kill that any instance sharing the store commits (a revocation, a disabled user's grants,
/// an administrator's kill), through the same [`crate::live_sessions::Sessions::end`]. When kills may have been
/// missed (the store's listener is down or was, or an event queue overflowed), the sessions
/// here are checked against the store: at once, and every second while the listener is down.
async fn end_sessions_with_their_grants(core: AppState, mut stop: watch::Receiver<bool>) {
    let mut events = core.grant_events.subscribe();
    let feed = core.store.session_kills();
    let (mut kills, mut listening) = match feed {
        Some(f) => (Some(f.kills), Some(f.listening)),
        None => (None, None),
    };
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The check running, and whether another is due once it is done (it may have read the
    // store before what made the next one due).
    let mut check: Option<tokio::task::JoinHandle<()>> = None;
    let mut due = false;
    loop {
        let deaf = listening.as_ref().is_some_and(|l| !*l.borrow());
        let wake = tokio::select! {
            e = events.recv() => Wake::Grant(e),
            Some(k) = async { Some(kills.as_mut()?.recv().await) } => Wake::Kill(k),
            Some(up) = async {
                let l = listening.as_mut()?;
                l.changed().await.ok()?;
                Some(*l.borrow_and_update())
            } => Wake::Listening(up),
            _ = tick.tick(), if deaf => Wake::Tick,
            _ = async {
                if let Some(c) = check.as_mut() {
                    let _ = c.await;
                }
            }, if due && check.is_some() => Wake::Checked,
            _ = stop.wait_for(|s| *s) => Wake::Stop,
        };
        let recheck = match wake {
            Wake::Grant(Ok(e)) => {
                match e.kind {
                    // An extension may take over: sessions that can carry on do.
                    GrantEventKind::Expired if core.sessions.has_continuable(&e.grant.id) => {
                        let (core, id) = (core.clone(), e.grant.id.clone());
                        tokio::spawn(async move { core.end_or_continue(&id, GRANT_EXPIRED).await });
                    }
                    GrantEventKind::Expired => {
                        core.sessions.end(&grant_ended(&e.grant.id, GRANT_EXPIRED));
                    }
                    GrantEventKind::Revoked => {
                        core.sessions.end(&grant_ended(&e.grant.id, GRANT_REVOKED));
                    }
                    _ => continue,
                }
                false
            }
            Wake::Kill(Ok(kill)) => {
                core.sessions.end(&kill);
                false
            }
            Wake::Grant(Err(broadcast::error::RecvError::Lagged(_))) | Wake::Kill(Err(broadcast::error::RecvError::Lagged(_))) => true,
            Wake::Kill(Err(broadcast::error::RecvError::Closed)) => {
                kills = None;
                true
            }
            Wake::Listening(up) => {
                if up {
                    tracing::info!("hearing kills from other instances again; checking live sessions against the store");
                } else {
                    tracing::warn!("cannot hear kills from other instances; checking live sessions against the store every second");
                }
                true
            }
            Wake::Tick => true,
            Wake::Checked => {
                check = None;
                false
            }
            Wake::Grant(Err(broadcast::error::RecvError::Closed)) | Wake::Stop => break,
        };
        // One check at a time: with the store slow or down, checks do not pile up.
        due |= recheck;
        if due && check.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            check = Some(tokio::spawn(check_sessions_against_store(core.clone())));
            due = false;
        }
    }
}

/// How long the look for an extension at a grant's end may take before its sessions end
/// anyway: a store that does not answer must not keep access going.
const SUCCESSOR_LOOKUP: Duration = Duration::from_millis(100);

impl crate::core::Core {
    /// The grant that takes over when grant `ended` of `user` (`resource`, `role`) ends at
    /// `ends_at`: live, the same person, resource and role, begun by then and ending later (an
    /// extension starts where its grant ends). `None` as well when the store does not answer
    /// within [`SUCCESSOR_LOOKUP`].
    async fn successor(
        &self,
        user: &jitgate_core::names::Username,
        resource: &jitgate_core::names::ResourceName,
        role: &jitgate_core::names::RoleName,
        ends_at: jitgate_core::Timestamp,
    ) -> Option<jitgate_core::grant::Grant> {
        let now = self.now();
        let grants = tokio::time::timeout(SUCCESSOR_LOOKUP, self.store.live_grants_of(user))
            .await
            .ok()?
            .ok()?;
        grants
            .into_iter()
            .filter(|g| &g.resource == resource && &g.role == role && g.starts_at <= ends_at && g.ends_at > now)
            .filter(|g| g.effective_status(now).is_live())
            .max_by_key(|g| g.ends_at)
    }

    /// At the end of grant `ended`: its sessions here that can carry on move onto the grant
    /// that takes over (each with a `session.continue` event); the rest end with `why`.
    pub(crate) async fn end_or_continue(self: &Arc<Self>, ended: &str, why: &str) {
        let probe = self
            .sessions
            .lock()
            .values()
            .find(|s| s.record.grant_id == ended && s.continuable)
            .map(|s| (s.record.user.clone(), s.record.resource.clone(), s.record.role.clone(), s.ends_at));
        if let Some((user, resource, role, ends)) = probe {
            if let Some(next) = self.successor(&user, &resource, &role, ends).await {
                let moved = self.sessions.continue_into(ended, &next);
                if !moved.is_empty() {
                    self.record_continued(ended, &next, &moved).await;
                }
            }
        }
        self.sessions.end(&grant_ended(ended, why));
    }

    async fn record_continued(&self, from: &str, to: &jitgate_core::grant::Grant, sessions: &[String]) {
        let now = self.now();
        let result = async {
            let mut tx = self.begin().await?;
            for id in sessions {
                tx.continue_db_session(id, &to.id).await?;
                tx.append_audit(
                    NewEvent::new(
                        to.user.as_str(),
                        actions::SESSION_CONTINUE,
                        id.as_str(),
                        Outcome::Success,
                        json!({"from": from, "to": to.id, "until": to.ends_at.as_millis()}),
                    ),
                    now,
                )
                .await?;
            }
            self.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            // The sessions carry on under the new grant's deadline either way; the record of
            // it is what is missing.
            tracing::error!(error = %e.message, from, to = %to.id, "cannot record sessions carried on into an extension");
        }
    }
}

/// Ends the sessions here whose grant is no longer live or that an administrator killed, as
/// the store has it: for kills this instance may have missed. A store that cannot be read ends
/// nothing (the sessions' own deadline timers still end them with their grants).
async fn check_sessions_against_store(core: AppState) {
    let live: Vec<(String, String)> = core
        .sessions
        .lock()
        .values()
        .map(|s| (s.record.id.clone(), s.record.grant_id.clone()))
        .collect();
    if live.is_empty() {
        return;
    }
    let grants: std::collections::BTreeSet<&String> = live.iter().map(|(_, g)| g).collect();
    for grant in grants {
        let why = match core.store.grant(grant).await {
            Ok(Some(g)) => match g.effective_status(core.now()) {
                s if s.is_live() => continue,
                GrantStatus::Revoked => GRANT_REVOKED,
                _ => GRANT_EXPIRED,
            },
            Ok(None) => "access grant ended",
            Err(e) => {
                tracing::warn!(error = %e, grant = %grant, "cannot check a live session's grant");
                continue;
            }
        };
        core.sessions.end(&grant_ended(grant, why));
    }
    let ids: Vec<String> = live.into_iter().map(|(id, _)| id).collect();
    match core.store.killed_db_sessions(&ids).await {
        Ok(killed) => {
            for (id, why) in killed {
                core.sessions.end(&SessionKill {
                    target: KillTarget::Session(id),
                    reason: why,
                });
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot check live sessions for kills"),
    }
}

#[async_trait]
impl Broker for GatewayBroker {
    fn allow_address(&self, peer: std::net::IpAddr) -> Result<(), std::time::Duration> {
        self.core.limits.gateway.check(peer)
    }

    async fn admit(&self, req: AdmissionRequest) -> Result<Admission, Refusal> {
        let core = &self.core;
        let now = core.now();
        let hash = token_hash(req.token.expose_secret());
        let denied = |why: &str| {
            let event = NewEvent::new(
                req.user.as_str(),
                actions::SESSION_START,
                req.database.as_str(),
                Outcome::Denied,
                json!({"reason": why, "peer": req.peer.to_string()}),
            );
            async move { core.audit_alone(event).await }
        };
        let unavailable = |e: ServiceError| Refusal::unavailable(e.message);
        let cap = core.settings.limits.gateway_max_sessions_per_user;
        let _slot = if cap > 0 {
            match core.sessions.reserve(&req.user, cap) {
                Some(slot) => Some(slot),
                None => {
                    denied("too many sessions").await;
                    return Err(Refusal::too_many(format_args!(
                        "{} has {cap} gateway sessions open already (gateway.max_sessions_per_user); close one first",
                        req.user
                    )));
                }
            }
        } else {
            None
        };
        let mut tx = core.begin().await.map_err(unavailable)?;
        let token = tx.redeem_connect_token(&hash, now).await.map_err(|e| unavailable(e.into()))?;
        let Some(token) = token.filter(|t| t.user.as_str() == req.user && t.resource.as_str() == req.database) else {
            // Whatever was wrong (unknown, used, expired, someone else's, another resource),
            // the token is spent if it existed: redeeming marked it.
            drop(tx);
            denied("the connect token is unknown, used, expired, or for another user or database").await;
            return Err(Refusal::not_authorized(
                "the connect token is not valid for this user and database (get a new one with `jitgate connect`)",
            ));
        };
        let grant = tx.grant(&token.grant_id).await.map_err(|e| unavailable(e.into()))?;
        let Some(grant) = grant.filter(|g| g.effective_status(now) == GrantStatus::Active) else {
            drop(tx);
            denied("the grant is not active").await;
            return Err(Refusal::not_authorized("access grant expired or not active"));
        };
        // Read in the transaction, not from what this instance remembers: a resource removed a
        // moment ago on another instance admits nobody.
        let resource = tx.resource(&token.resource).await.map_err(|e| unavailable(e.into()))?;
        let role_name = &token.role;
        let Some((resource, ephemeral_access)) = resource.and_then(|r| {
            let p = r.roles.get(role_name)?;
            r.postgres.as_ref()?;
            let ephemeral = p.access == AccessMode::Ephemeral;
            Some((r, ephemeral))
        }) else {
            drop(tx);
            denied("the resource has no postgres target").await;
            return Err(Refusal::not_authorized("this resource is not reachable through the gateway"));
        };
        let application = format!("jitgate:{}", grant.user);
        // Proxy access logs in as the role's login, resolved (password, TLS roots) before the
        // session is recorded, so a resource that cannot be reached is refused without a
        // half-open session. Ephemeral access logs in as the grant's own role, below.
        let service = if ephemeral_access {
            None
        } else {
            match core.upstream_target(&resource, Login::Role(role_name), &application).await {
                Ok(t) => Some(t),
                Err(why) => {
                    drop(tx);
                    denied(&why).await;
                    return Err(Refusal::unavailable(format_args!("the gateway cannot log in upstream: {why}")));
                }
            }
        };
        let record = GatewaySession {
            id: new_id("ses"),
            grant_id: grant.id.clone(),
            user: grant.user.clone(),
            resource: grant.resource.clone(),
            role: grant.role.clone(),
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
                    actions::SESSION_START,
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
        core.commit(tx).await.map_err(unavailable)?;
        let target = match service {
            Some(t) => Ok(t),
            // Ephemeral access: the session logs in as the grant's own role (made now if the
            // grant event has not made it yet).
            None => match core.ensure_ephemeral(&grant).await {
                Ok(Some((user, password))) => {
                    core.upstream_target(&resource, Login::Ephemeral(role_name, user, password), &application)
                        .await
                }
                Ok(None) => core.upstream_target(&resource, Login::Role(role_name), &application).await,
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
                        ends_at: grant.ends_at,
                        continuable: false,
                    },
                );
                self.ended(&record.id, &reason, SessionStats::default()).await;
                return Err(Refusal::unavailable(format_args!(
                    "the grant's database role is not available: {why}"
                )));
            }
        };
        let (kill, kill_rx) = watch::channel(None);
        core.sessions.lock().insert(
            record.id.clone(),
            LiveSession {
                record: record.clone(),
                kill,
                ends_at: grant.ends_at,
                continuable: !ephemeral_access,
            },
        );
        // The session's own deadline, on the server's clock: it ends with its grant even when
        // the store is unreachable and the expiry engine cannot record the expiry. At the end,
        // an extension that takes over carries it on.
        {
            let (core, id, mut ends, mut alive) = (core.clone(), record.id.clone(), grant.ends_at, kill_rx.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = core.clock.sleep_until(ends) => {}
                        () = async { while alive.changed().await.is_ok() {} } => return,
                    }
                    let Some((grant_id, now_ends)) = core.sessions.lock().get(&id).map(|s| (s.record.grant_id.clone(), s.ends_at)) else {
                        return;
                    };
                    if now_ends > ends {
                        // Carried on into an extension already (by the kill switch).
                        ends = now_ends;
                        continue;
                    }
                    core.end_or_continue(&grant_id, GRANT_EXPIRED).await;
                    match core.sessions.lock().get(&id) {
                        Some(s) if s.ends_at > ends && s.kill.borrow().is_none() => ends = s.ends_at,
                        _ => return,
                    }
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
            record: record_statements.then(|| self.statements.clone()),
            kill: kill_rx,
        })
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
        core.metrics.session_ended(stats.bytes_from_client, stats.bytes_to_client);
        let result = async {
            let mut tx = core.begin().await?;
            tx.end_db_session(&record).await?;
            let outcome = match (reason, stats.ending) {
                (EndReason::Refused(_), _) => Outcome::Denied,
                // The backend could only be cancelled, or was not seen to go: what it had
                // queued may have run after the end. On the record as a failure.
                (_, Some(e)) if e.method == "cancelled" || !e.confirmed => Outcome::Failure,
                _ => Outcome::Success,
            };
            tx.append_audit(
                NewEvent::new(
                    record.user.as_str(),
                    actions::SESSION_END,
                    record.id.as_str(),
                    outcome,
                    {
                        let mut details = json!({"reason": record.end_reason, "bytes_in": record.bytes_in, "bytes_out": record.bytes_out,
                               "statements": record.statements, "copy_in_bytes": stats.copy_in_bytes, "copy_out_bytes": stats.copy_out_bytes});
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
            core.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, session = session_id, "could not record the end of a session");
        }
    }
}
