//! Sending what the outbox holds: at least once, retried with exponential back-off, in order
//! per request and destination, never holding up the workflow.
//!
//! A message is claimed (with a lease) before it is sent and marked after; a sender that dies
//! in between leaves the lease to run out and the message is sent again, under the same
//! idempotency key. Several instances claim with `FOR UPDATE SKIP LOCKED` and never take the
//! same message.

use crate::core::Core;
use crate::error::ServiceError;
use jitgate_core::Timestamp;
use jitgate_notify::Notice;
use jitgate_store::DeliveryRecord;
use secrecy::SecretString;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Messages of one channel being sent at once on this instance. A channel claims no more than
/// it has room for, so every message claimed starts at once (and is marked well within its
/// lease), and a channel whose receiver hangs holds up only its own messages.
pub(crate) const PER_CHANNEL: usize = 64;
/// The longest one attempt may take, every call and retry of the transport included (a Slack
/// look-up and post, an SMTP conversation).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(25);
/// How long a claim holds a message: past [`ATTEMPT_LIMIT`], so a live sender always marks it
/// first; a dead one's message goes again after this.
const LEASE: Duration = Duration::from_secs(60);
/// The back-off doubles from this up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// When attempt `attempts` (1 for the first) failed at `now`, when to try again: 1 s, 2 s,
/// 4 s, ... up to ten minutes, less a random tenth so that messages that failed together do
/// not all come back together.
pub(crate) fn next_attempt(now: Timestamp, attempts: i32) -> Timestamp {
    use rand::Rng;
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
    let backoff = FIRST_BACKOFF.saturating_mul(1u32 << doublings).min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.0..0.1);
    now.saturating_add(backoff.mul_f64(1.0 - jitter))
}

/// This instance's senders: the room each channel has, and a signal when a send is done.
pub(crate) struct Senders {
    sender: jitgate_notify::Sender,
    room: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>,
    pub(crate) done: Arc<tokio::sync::Notify>,
}

impl Senders {
    pub(crate) fn new(sender: jitgate_notify::Sender, channels: &[jitgate_notify::Channel]) -> Self {
        Self {
            sender,
            room: channels
                .iter()
                .map(|c| (c.name.clone(), Arc::new(tokio::sync::Semaphore::new(PER_CHANNEL))))
                .collect(),
            done: Arc::default(),
        }
    }
}

impl Core {
    /// Starts sending the messages due now, on each channel as many as it has room for, and
    /// returns how many it started; the sends go on by themselves (`senders.done` says when one
    /// ends).
    pub(crate) async fn deliver_due(self: &Arc<Self>, senders: &Senders) -> Result<usize, ServiceError> {
        let mut started = 0;
        for (channel, room) in &senders.room {
            // A claim is a query over the outbox: under a backlog, one per half a channel's
            // room rather than one per message sent (1,000 warnings at once on PostgreSQL took
            // 10 s claiming one by one as sends ended, under a second this way).
            let free = room.available_permits();
            if free < PER_CHANNEL / 2 {
                continue;
            }
            let now = self.now();
            // The claim is a write committed with the session's durability: its flush carries
            // the messages it claims, so nothing is sent about a change a crash can take back
            // (see `jitgate_store::Store::on_disk`).
            let claimed = self
                .store
                .claim_deliveries(channel, now, now.saturating_add(LEASE), i64::try_from(free).unwrap_or(0))
                .await?;
            for d in claimed {
                let Ok(permit) = room.clone().try_acquire_owned() else {
                    // Only this loop takes permits: room was counted above. Should it ever
                    // lack, the lease runs out and the message goes again.
                    break;
                };
                let (core, sender, done) = (self.clone(), senders.sender.clone(), senders.done.clone());
                started += 1;
                tokio::spawn(async move {
                    core.deliver_one(&sender, d).await;
                    drop(permit);
                    done.notify_one();
                });
            }
        }
        Ok(started)
    }

    async fn deliver_one(&self, sender: &jitgate_notify::Sender, d: DeliveryRecord) {
        let outcome = self.attempt(sender, &d).await;
        let now = self.now();
        let recorded = match &outcome {
            Ok(()) => {
                self.metrics.delivered(&d.channel, true);
                self.store.delivery_sent(&d.id, now).await
            }
            Err(why) => {
                self.metrics.delivered(&d.channel, false);
                let limits = &self.settings.notifications;
                let give_up = d.attempts >= i32::try_from(limits.give_up_after).unwrap_or(i32::MAX);
                tracing::warn!(delivery = %d.id, channel = %d.channel, attempts = d.attempts, give_up, error = %why, "a notification was not delivered");
                if d.attempts == i32::try_from(limits.alert_after).unwrap_or(i32::MAX) {
                    if let Err(e) = self.alert_failing(&d, why).await {
                        tracing::error!(error = %e.message, "cannot alert of a failing notification");
                    }
                }
                self.store.delivery_failed(&d.id, why, next_attempt(now, d.attempts), give_up).await
            }
        };
        if let Err(e) = recorded {
            // The lease runs out and the message is tried again: at least once, maybe twice.
            tracing::error!(delivery = %d.id, error = %e, "cannot record a notification's delivery");
        }
    }

    async fn attempt(&self, sender: &jitgate_notify::Sender, d: &DeliveryRecord) -> Result<(), String> {
        let Some(channel) = self.settings.notifications.channels.iter().find(|c| c.name == d.channel) else {
            return Err(format!("channel {} is no longer configured", d.channel));
        };
        let notice: Notice = serde_json::from_str(&d.payload).map_err(|e| format!("stored message unreadable: {e}"))?;
        let secret = self.channel_secret(&channel.name).await.map_err(|e| e.message)?;
        let now_secs = self.now().as_millis().div_euclid(1000);
        match tokio::time::timeout(
            ATTEMPT_LIMIT,
            sender.send(channel, secret.as_ref(), &d.destination, &notice, now_secs),
        )
        .await
        {
            Ok(sent) => sent.map_err(|e| e.0),
            Err(_) => Err(format!("not done within {} s", ATTEMPT_LIMIT.as_secs())),
        }
    }

    /// A channel's secret, unsealed; `None` when none was set.
    pub(crate) async fn channel_secret(&self, channel: &str) -> Result<Option<SecretString>, ServiceError> {
        self.stored_secret(channel, &channel_secret_context(channel)).await
    }

    /// Administrators hear (in jitgate, and in the audit log) that a channel keeps failing; not
    /// through the channels, which may be what is failing.
    async fn alert_failing(&self, d: &DeliveryRecord, why: &str) -> Result<(), ServiceError> {
        let admins = self.administrators().await?;
        let message = format!(
            "notification {} ({} on channel {}) failed {} times; last: {why}. See `jitgate admin notifications --failed`.",
            d.id, d.kind, d.channel, d.attempts
        );
        let now = self.now();
        let mut tx = self.begin().await?;
        crate::core::alert(
            &mut *tx,
            "notification_failing",
            &d.id,
            &message,
            &admins,
            jitgate_core::audit::Outcome::Failure,
            json!({"channel": d.channel, "event": d.kind, "attempts": d.attempts, "error": why}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}

/// What a channel's secret is sealed to: it opens only as that channel's.
pub fn channel_secret_context(channel: &str) -> String {
    format!("notification-channel:{channel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_ten_minutes() {
        let now = Timestamp::from_millis(1_000_000);
        let wait = |n| next_attempt(now, n).as_millis() - now.as_millis();
        for (attempt, full) in [(1, 1_000), (2, 2_000), (3, 4_000), (10, 512_000), (11, 600_000), (40, 600_000)] {
            let w = wait(attempt);
            assert!(
                w <= full && w >= full * 9 / 10,
                "attempt {attempt}: waited {w} ms, expected about {full}"
            );
        }
    }
}
