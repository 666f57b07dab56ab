//! Attempt limits that guard passwords and second factors alike, stored so every instance counts the same failures.

use super::*;
use crate::error::{ErrorKind, ServiceError};
use jitgate_auth::attempts::{AttemptState, Gate};
use jitgate_core::audit::{NewEvent, Outcome};
pub use jitgate_core::factor::Factor;
use jitgate_core::names::Username;
use jitgate_core::{actions, Timestamp};
use jitgate_store::{AttemptRecord, WriteTx};
use serde_json::json;

fn summary_event(s: &crate::limits::Summary) -> NewEvent {
    NewEvent::new(
        "system",
        actions::AUTH_FAILURES_SUMMARISED,
        "anonymous",
        Outcome::Failure,
        json!({"count": s.total(), "by_action": s.by_action, "from": s.from.as_millis(), "to": s.to.as_millis()}),
    )
}

/// One failure charged ahead of a slow check: the attempt state before and after it.
pub(crate) struct Charge {
    before: AttemptState,
    after: AttemptState,
}

/// The attempt record of `user`'s second factors, apart from their password's: a factor
/// proved must not wipe the count of password guesses (a stolen session could enrol a factor
/// and spend its recovery codes to guess the current password for ever), and a password
/// known must not wipe the count of factor guesses. `/` is never in a user name.
pub(crate) fn factor_key(user: &Username) -> String {
    format!("{user}/factor")
}

/// Why an attempt may not go ahead now.
pub(crate) struct AttemptRefusal {
    code: &'static str,
    message: String,
    until: Timestamp,
}

fn attempt_state(r: &AttemptRecord) -> AttemptState {
    AttemptState {
        failures: r.failures,
        last_failure_at: r.last_failure_at,
        locked_until: r.locked_until,
    }
}

impl Attempts<'_> {
    /// Locks the attempt record of `username` in `tx` and says whether an attempt may go
    /// ahead now; the state returned is what a failure builds on.
    pub(crate) async fn gate_in(&self, tx: &mut dyn WriteTx, username: &str) -> Result<Result<AttemptState, AttemptRefusal>, ServiceError> {
        let now = self.now();
        let state = attempt_state(&tx.lock_attempts(username).await?);
        Ok(match self.settings.attempts.gate(Some(&state), now) {
            Gate::Open => Ok(state),
            Gate::Wait { until } => Err(AttemptRefusal {
                code: "too_many_attempts",
                message: format!("too many failed attempts: try again in {} s", now.until(until).as_secs().max(1)),
                until,
            }),
            Gate::Locked { until } => Err(AttemptRefusal {
                code: "account_locked",
                message: format!(
                    "locked after repeated failed attempts until {}; an administrator can unlock it sooner",
                    until.to_rfc3339()
                ),
                until,
            }),
        })
    }

    /// Audits a refused attempt and turns it into the answer. Call it after the transaction
    /// that found the gate closed is gone (on SQLite it holds the only writer).
    pub(crate) async fn refuse(&self, username: &str, action: &str, refusal: AttemptRefusal) -> ServiceError {
        self.note_anonymous_refusal(username, action, refusal.code, refusal.until).await;
        let wait = self.now().until(refusal.until).as_secs();
        ServiceError::busy(ErrorKind::TooMany, refusal.code, refusal.message, wait)
    }

    /// Appends the event of a failed anonymous attempt, or counts it for the minute's summary
    /// when such failures come faster than `auth.audit_failures_per_minute`.
    pub(crate) async fn append_failure_event(&self, tx: &mut dyn WriteTx, event: NewEvent) -> Result<(), ServiceError> {
        let now = self.now();
        let (own, summary) = self.limits.failures.admit(&event.action, now);
        if let Some(summary) = summary {
            tx.append_audit(summary_event(&summary), now).await?;
        }
        if own {
            tx.append_audit(event, now).await?;
        }
        Ok(())
    }

    /// Audits a refusal by the attempt gate (through the same summary as failures).
    async fn note_anonymous_refusal(&self, username: &str, action: &str, code: &str, until: Timestamp) {
        let event = NewEvent::new(
            username,
            action,
            username,
            Outcome::Denied,
            json!({"code": code, "until": until.as_millis()}),
        );
        self.audit_failure_alone(event).await;
    }

    /// [`Attempts::append_failure_event`] in a change of its own.
    pub(crate) async fn audit_failure_alone(&self, event: NewEvent) {
        let result = async {
            let mut tx = self.begin().await?;
            self.append_failure_event(&mut *tx, event).await?;
            self.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, "could not record a failed attempt");
        }
    }

    /// Takes back the failure [`Attempts::charge`] charged for a check that passed: the
    /// record goes back to what it was when nothing else changed it since, else loses one
    /// failure (and the lock this charge brought, if any).
    pub(crate) async fn refund(&self, username: &str, charged: &Charge) -> Result<(), ServiceError> {
        let mut tx = self.begin().await?;
        let now = attempt_state(&tx.lock_attempts(username).await?);
        let back = if now == charged.after {
            charged.before
        } else {
            AttemptState {
                failures: now.failures.saturating_sub(1),
                last_failure_at: now.last_failure_at,
                locked_until: now.locked_until.filter(|until| charged.after.locked_until != Some(*until)),
            }
        };
        if back.failures == 0 && back.locked_until.is_none() {
            tx.clear_attempts(username).await?;
        } else {
            tx.put_attempts(&AttemptRecord {
                username: username.to_owned(),
                failures: back.failures,
                last_failure_at: back.last_failure_at,
                locked_until: back.locked_until,
            })
            .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Forgets the attempt records of names that are not users, once whatever limit they
    /// carried has run out (a lock, or the longest delay).
    pub async fn prune(&self) -> Result<u64, ServiceError> {
        let a = &self.settings.attempts;
        let before = self.now().saturating_sub(a.lock_for.max(a.max_delay));
        let mut tx = self.begin().await?;
        let gone = tx.prune_attempts(before).await?;
        self.commit(tx).await?;
        Ok(gone)
    }

    /// Writes the summary of a minute that is over, if one is due (the housekeeping tick).
    pub async fn flush_failure_summary(&self) {
        if let Some(summary) = self.limits.failures.due(self.now()) {
            self.audit_alone(summary_event(&summary)).await;
        }
    }

    /// Passes the gate and charges one failure in the same step, for a check too slow to run
    /// inside the transaction (the password). A failure keeps the charge (and reports the
    /// lock it brought), a success takes it back ([`Attempts::refund`]).
    pub(crate) async fn charge(&self, username: &str, action: &str) -> Result<Charge, ServiceError> {
        let mut tx = self.begin().await?;
        let before = match self.gate_in(&mut *tx, username).await? {
            Ok(state) => state,
            Err(refusal) => {
                drop(tx);
                return Err(self.refuse(username, action, refusal).await);
            }
        };
        let after = self.put_failure(&mut *tx, username, &before).await?;
        self.commit(tx).await?;
        Ok(Charge { before, after })
    }

    async fn put_failure(&self, tx: &mut dyn WriteTx, username: &str, previous: &AttemptState) -> Result<AttemptState, ServiceError> {
        let now = self.now();
        let next = self.settings.attempts.after_failure(Some(previous), now);
        tx.put_attempts(&AttemptRecord {
            username: username.to_owned(),
            failures: next.failures,
            last_failure_at: now,
            locked_until: next.locked_until,
        })
        .await?;
        Ok(next)
    }

    async fn audit_lock(&self, tx: &mut dyn WriteTx, username: &str, state: &AttemptState) -> Result<(), ServiceError> {
        if let Some(until) = state.locked_until {
            tx.append_audit(
                NewEvent::new(
                    "system",
                    actions::AUTH_LOCKED,
                    username,
                    Outcome::Success,
                    json!({"failures": state.failures, "until": until.as_millis()}),
                ),
                self.now(),
            )
            .await?;
        }
        Ok(())
    }

    /// Counts one failure for `username` in `tx`, whose gate returned `previous`, and records
    /// the lock it may bring.
    pub(crate) async fn count_failure(&self, tx: &mut dyn WriteTx, username: &str, previous: &AttemptState) -> Result<(), ServiceError> {
        let next = self.put_failure(tx, username, previous).await?;
        self.audit_lock(tx, username, &next).await
    }

    /// Records a failed password check that [`Attempts::charge`] counted already: its
    /// audit event, and the lock the charge brought.
    pub(crate) async fn record_charged_failure(&self, username: &str, event: NewEvent, charged: &Charge) {
        let result = async {
            let mut tx = self.begin().await?;
            self.append_failure_event(&mut *tx, event).await?;
            self.audit_lock(&mut *tx, username, &charged.after).await?;
            self.commit(tx).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e.message, "could not record a failed attempt");
        }
    }
}

/// Once a minute: the summary of anonymous failures that is due, the attempt records of names
/// that are not users once their limits have run out, and the rate limiters' idle addresses.
pub async fn run_housekeeping(core: crate::core::AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        core.attempts().flush_failure_summary().await;
        if let Err(e) = core.attempts().prune().await {
            tracing::warn!(error = %e.message, "could not prune attempt records");
        }
        core.limits.logins.shrink();
        core.limits.gateway.shrink();
    }
}
