//! Notifications as administrators run them: the channels and their outbox, queuing a failed
//! message again, channels' secrets; and people's e-mail addresses.

use super::Notifications;
use crate::core::Caller;
use crate::error::ServiceError;
use jitgate_api::{ChannelView, DeliveryView, NotificationsOverview};
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::Username;
use jitgate_store::{DeliveryFilter, DeliveryRecord, DeliveryStatus};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// The longest channel secret taken (a Slack incoming-webhook URL is about 80 characters).
const MAX_SECRET: usize = 4096;

fn view(d: DeliveryRecord) -> DeliveryView {
    DeliveryView {
        id: d.id,
        event: d.kind,
        audit_seq: d.event_seq,
        channel: d.channel,
        destination: d.destination,
        status: d.status.as_str().to_owned(),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at,
        last_error: d.last_error,
        created_at: d.created_at,
        sent_at: d.sent_at,
    }
}

impl Notifications<'_> {
    pub async fn overview(
        &self,
        caller: &Caller,
        status: Option<&str>,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<NotificationsOverview, ServiceError> {
        self.require_admin(caller, "list_notifications").await?;
        let status = status
            .map(|s| {
                DeliveryStatus::parse(s)
                    .ok_or_else(|| ServiceError::bad_request("invalid_status", format!("status {s:?} is not pending, sent or failed")))
            })
            .transpose()?;
        let counts = self.store.delivery_counts().await?;
        let mut channels = Vec::new();
        for c in &self.settings.notifications.channels {
            let count = |s: DeliveryStatus| counts.iter().find(|(n, st, _)| n == &c.name && *st == s).map_or(0, |(_, _, n)| *n);
            channels.push(ChannelView {
                name: c.name.clone(),
                kind: c.kind.name().to_owned(),
                events: c.filter.events.iter().map(|e| e.as_str().to_owned()).collect(),
                needs_secret: c.needs_secret(),
                secret_set: self.store.channel_secret(&c.name).await?.is_some(),
                pending: count(DeliveryStatus::Pending),
                sent: count(DeliveryStatus::Sent),
                failed: count(DeliveryStatus::Failed),
            });
        }
        let deliveries = self
            .store
            .deliveries(&DeliveryFilter {
                status,
                channel: channel.map(str::to_owned),
                limit: limit.clamp(1, 1000),
            })
            .await?
            .into_iter()
            .map(view)
            .collect();
        Ok(NotificationsOverview { channels, deliveries })
    }

    /// Queues a failed message again, its attempts counted afresh.
    pub async fn retry(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        self.require_admin(caller, "retry_notification").await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        if !tx.requeue_delivery(id, now).await? {
            return Err(ServiceError::not_found("failed notification"));
        }
        tx.append_audit(
            NewEvent::new(caller.name(), actions::NOTIFICATION_RETRY, id, Outcome::Success, json!({})),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Stores a channel's secret, sealed to the channel; `None` removes it.
    pub async fn set_secret(&self, caller: &Caller, channel: &str, secret: Option<&SecretString>) -> Result<(), ServiceError> {
        self.require_admin(caller, "set_channel_secret").await?;
        let Some(configured) = self.settings.notifications.channels.iter().find(|c| c.name == channel) else {
            return Err(ServiceError::not_found("notification channel"));
        };
        // An incoming webhook's secret is where its messages go: held to the configured URLs' rule.
        if let (Some(s), jitgate_notify::ChannelKind::Slack(slack)) = (secret, &configured.kind) {
            if slack.incoming_webhook {
                crate::config::notifications::web_url("the incoming webhook", s.expose_secret())
                    .map_err(|_| ServiceError::bad_request("invalid_secret", "an incoming webhook's secret is its https:// URL"))?;
            }
        }
        if let Some(text) = secret.map(ExposeSecret::expose_secret) {
            if text.is_empty() || text.chars().count() > MAX_SECRET || text.contains('\0') {
                return Err(ServiceError::bad_request(
                    "invalid_secret",
                    format!("a channel secret is 1 to {MAX_SECRET} characters without NUL"),
                ));
            }
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let context = crate::notify::deliver::channel_secret_context(channel);
        let details = self
            .put_stored_secret(&mut *tx, caller, channel, &context, secret, "channel secret")
            .await?;
        tx.append_audit(
            NewEvent::new(caller.name(), actions::NOTIFICATION_SECRET, channel, Outcome::Success, details),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Sets (or with `None` removes) `user`'s e-mail address.
    pub async fn set_email(&self, caller: &Caller, user: &Username, email: Option<&str>) -> Result<(), ServiceError> {
        self.require_admin(caller, "set_user_email").await?;
        let email = email.map(str::trim).filter(|e| !e.is_empty());
        if let Some(e) = email {
            if e.len() > 254 || e.parse::<jitgate_notify::send::Mailbox>().is_err() || e.contains(['<', '>', ' ']) {
                return Err(ServiceError::bad_request(
                    "invalid_email",
                    format!("{e:?} is not an e-mail address"),
                ));
            }
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        if !tx.set_user_email(user, email).await? {
            return Err(ServiceError::not_found("user"));
        }
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::USER_EMAIL,
                user.as_str(),
                Outcome::Success,
                json!({"email": email}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
