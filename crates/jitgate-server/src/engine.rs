//! The expiry engine: sleeps until the next deadline (a grant's start or end, a pending
//! request's expiry), makes every transition due by then exactly once, each with its audit
//! event in the same transaction, and publishes grant events after the commit.
//!
//! Exactly once: transitions are made inside a write transaction, which holds the audit head,
//! so two engines (two instances on PostgreSQL) never both see the same grant as due.

use crate::core::{Core, GrantEventKind};
use crate::error::ServiceError;
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::{GrantStatus, Transition};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Transitions per transaction: large enough that 10,000 grants ending in the same second
/// take a handful of commits, small enough that one commit stays short.
const BATCH: i64 = 1000;

/// When the store is shared by several instances, each hears of the others' deadlines through
/// the store's notifications; should one be missed (a lost connection), the engine still
/// re-reads its next deadline this often.
const SHARED_STORE_RECHECK: Duration = Duration::from_secs(60);

/// Reads made at once for a batch of warnings.
const CONCURRENT_READS: usize = 16;

/// Pause before retrying after the store failed.
const RETRY: Duration = Duration::from_millis(500);

impl Core {
    /// Makes every transition due at `now`. Returns how many it made.
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let mut total = 0;
        loop {
            let now = self.now();
            let mut tx = self.begin().await?;
            let grants = tx.due_grants(now, BATCH).await?;
            let requests = tx.due_requests(now, BATCH).await?;
            let warnings = tx.take_due_warnings(now, BATCH).await?;
            if grants.is_empty() && requests.is_empty() && warnings.is_empty() {
                return Ok(total);
            }
            let full = grants.len() as i64 == BATCH || requests.len() as i64 == BATCH || warnings.len() as i64 == BATCH;
            // Safe to commit without waiting for the flush: a transition lost in a crash is
            // overdue at the next start and made then.
            tx.relax_durability().await?;
            let mut events = Vec::with_capacity(grants.len());
            let (mut activated, mut expired) = (Vec::new(), Vec::new());
            for mut g in grants {
                let Some(t) = g.due_transition(now) else { continue };
                if t == Transition::Activate {
                    if let Some(forbidden_by) = self.forbidden_at_start(&mut *tx, &g, now).await? {
                        // Judged again for the time access happens: a policy that forbids it
                        // now wins over the approval given before.
                        let why = format!("a policy forbids this access at its start ({})", forbidden_by.join(", "));
                        // Scheduled, so live: the revoke cannot be refused.
                        let _ = g.revoke(None, &why, now);
                        tx.update_grant(&g).await?;
                        let details =
                            json!({"user": g.user, "resource": g.resource, "role": g.role, "reason": why, "policies": forbidden_by});
                        tx.append_audit(
                            NewEvent::new("system", actions::GRANT_ACTIVATE, g.id.as_str(), Outcome::Denied, details),
                            now,
                        )
                        .await?;
                        events.push((GrantEventKind::Revoked, g));
                        continue;
                    }
                }
                let (kind, action) = match t {
                    Transition::Activate => {
                        g.status = GrantStatus::Active;
                        activated.push(g.id.clone());
                        (GrantEventKind::Activated, actions::GRANT_ACTIVATE)
                    }
                    Transition::Expire => {
                        g.status = GrantStatus::Expired;
                        expired.push(g.id.clone());
                        self.metrics.expired_late(g.ends_at.until(now));
                        (GrantEventKind::Expired, actions::GRANT_EXPIRE)
                    }
                };
                let details = json!({"user": g.user, "resource": g.resource, "role": g.role, "deadline": g.ends_at.as_millis()});
                tx.append_audit(NewEvent::new("system", action, g.id.as_str(), Outcome::Success, details), now)
                    .await?;
                events.push((kind, g));
            }
            tx.set_grants_status(&activated, GrantStatus::Active).await?;
            tx.set_grants_status(&expired, GrantStatus::Expired).await?;
            let request_ids: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
            tx.expire_requests(&request_ids, now).await?;
            for r in &requests {
                tx.append_audit(
                    NewEvent::new(
                        "system",
                        actions::REQUEST_EXPIRE,
                        r.id.as_str(),
                        Outcome::Success,
                        json!({"requester": r.requester}),
                    ),
                    now,
                )
                .await?;
            }
            let warned = self.warn_ending_soon(&mut *tx, &warnings, now).await?;
            total += events.len() + requests.len() + warned;
            self.commit(tx).await?;
            for (kind, g) in &events {
                self.publish(*kind, g);
            }
            if !full {
                return Ok(total);
            }
        }
    }

    /// Warns the holders of grants `ids` that their access ends soon (one `grant.ending_soon`
    /// event each, which the outbox tells them of), unless the grant ended already or an
    /// extension takes over at its end. Returns how many were warned.
    async fn warn_ending_soon(
        &self,
        tx: &mut dyn jitgate_store::WriteTx,
        ids: &[String],
        now: jitgate_core::Timestamp,
    ) -> Result<usize, ServiceError> {
        // The grants and their holders' other live grants are committed rows: read them from
        // the pool, several at once, rather than one by one on the transaction's connection
        // (on PostgreSQL a round trip each).
        let mut due = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CONCURRENT_READS) {
            due.extend(futures_util::future::try_join_all(chunk.iter().map(|id| self.warning_due(id, now))).await?);
        }
        let mut warned = 0;
        for g in due.into_iter().flatten() {
            let details = json!({"user": g.user, "resource": g.resource, "role": g.role, "ends_at": g.ends_at.as_millis()});
            tx.append_audit(
                NewEvent::new("system", actions::GRANT_ENDING_SOON, g.id.as_str(), Outcome::Success, details),
                now,
            )
            .await?;
            warned += 1;
        }
        Ok(warned)
    }

    /// Grant `id` if its holder is to be warned at `now`: still live, and no grant of theirs
    /// takes over at its end.
    async fn warning_due(
        &self,
        id: &str,
        now: jitgate_core::Timestamp,
    ) -> Result<Option<jitgate_core::grant::Grant>, jitgate_store::StoreError> {
        let Some(g) = self.store.grant(id).await? else { return Ok(None) };
        if !g.effective_status(now).is_live() {
            return Ok(None);
        }
        let continued = self.store.live_grants_of(&g.user).await?.iter().any(|next| {
            next.id != g.id && next.resource == g.resource && next.role == g.role && next.starts_at <= g.ends_at && next.ends_at > g.ends_at
        });
        Ok((!continued).then_some(g))
    }

    /// For a scheduled grant about to begin: the policies that now forbid its `request`
    /// (decided for its window, as a request made now for it would be), or `None` when it may
    /// begin. A request that cannot be read any more does not stop it.
    async fn forbidden_at_start(
        &self,
        tx: &mut dyn jitgate_store::WriteTx,
        g: &jitgate_core::grant::Grant,
        now: jitgate_core::Timestamp,
    ) -> Result<Option<Vec<String>>, ServiceError> {
        let Some(request) = tx.request(&g.request_id).await? else {
            return Ok(None);
        };
        let Some(resource) = self.store.resource(&g.resource).await? else {
            return Ok(None);
        };
        let who = self.policies().subject(&g.user).await?;
        let asked = crate::policy::Asked {
            resource: &resource,
            role: &g.role,
            duration: g.starts_at.max(now).until(g.ends_at),
            reason: &request.reason,
            ticket: request.ticket.as_deref(),
            start_at: Some(g.starts_at),
        };
        let action = if request.break_glass {
            jitgate_policy::PolicyAction::BreakGlass
        } else {
            jitgate_policy::PolicyAction::Request
        };
        let d = self.policies().decide(action, &who, &asked, now).await?;
        if d.allowed && !request.break_glass {
            // Approved by a policy alone (no person approved it): that policy must still
            // approve it for when it begins.
            let by_people = tx
                .reviews(&request.id)
                .await?
                .iter()
                .any(|r| r.decision == jitgate_core::request::Decision::Approve && r.reviewer.person().is_some());
            if !by_people {
                let auto = self
                    .policies()
                    .decide(jitgate_policy::PolicyAction::AutoApprove, &who, &asked, now)
                    .await?;
                if !auto.allowed {
                    let mut why = vec!["no policy approves it by itself any more".to_owned()];
                    why.extend(auto.policies);
                    return Ok(Some(why));
                }
            }
        }
        Ok((!d.allowed).then(|| {
            if d.policies.is_empty() {
                vec!["no policy permits it any more".to_owned()]
            } else {
                d.policies
            }
        }))
    }

    /// Runs until `stop` turns true. Overdue transitions (from while the server was down) are
    /// made at once on start.
    pub async fn run_engine(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let shared = self.store.deadline_signal();
        loop {
            if *stop.borrow() {
                return;
            }
            // From here until the sleep starts, every new deadline wakes the engine: one added
            // after the read below leaves a permit in the Notify, and the sleep ends at once.
            self.engine.sleeping_until.store(i64::MAX, Ordering::Release);
            // What other instances announced before the read is in it.
            if let Some(signal) = &shared {
                signal.take_earliest();
            }
            let next = match self.store.next_deadline().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the next deadline; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            if next.is_some_and(|t| t <= self.now()) {
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e.message, "expiry sweep failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = stop.changed() => return,
                    }
                }
                continue;
            }
            let next_ms = next.map_or(i64::MAX, |t| t.as_millis());
            self.engine.sleeping_until.store(next_ms, Ordering::Release);
            let clock = self.clock.clone();
            let until_deadline = async move {
                match next {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let recheck = async {
                if shared.is_some() {
                    tokio::time::sleep(SHARED_STORE_RECHECK).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::pin!(until_deadline, recheck);
            loop {
                let other_instance = async {
                    match &shared {
                        Some(signal) => signal.notified().await,
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = &mut until_deadline => break,
                    _ = self.engine.notify.notified() => break,
                    _ = other_instance => {
                        // A deadline after the one awaited changes nothing: no read (a busy
                        // store announces one per request and per grant).
                        if shared.as_ref().is_some_and(|s| s.take_earliest() < next_ms) {
                            break;
                        }
                    }
                    _ = &mut recheck => break,
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
