//! From the audit log to the outbox: each committed event that people should hear of becomes
//! one message per destination of each channel whose filter admits it.
//!
//! The audit event is written in the transaction of the change it records, so the change and
//! the fact that it must be told are one commit. The outbox's cursor over the log moves in the
//! same transaction that writes the messages, so each event becomes its messages once: a crash
//! before that commit leaves the cursor where it was, and the next pass (on any instance) makes
//! them. Who is told is read when the messages are made (the approvers of a stage are the
//! members of its groups then).

use crate::core::Core;
use crate::error::ServiceError;
use jitgate_core::actions;
use jitgate_core::audit::AuditEvent;
use jitgate_core::grant::Grant;
use jitgate_core::names::Username;
use jitgate_core::request::{AccessRequest, Approver, Decision, RequestStatus};
use jitgate_core::Timestamp;
use jitgate_notify::notice::{GrantPart, RequestPart, StagePart, SCHEMA};
use jitgate_notify::{EventKind, Notice};
use jitgate_store::{DeliveryRecord, DeliveryStatus};
use std::collections::{BTreeMap, BTreeSet};

/// Events whose messages are made at once.
const CONCURRENT_READS: usize = 16;

/// Audit events read per pass.
const BATCH: i64 = 500;

/// Events older than this when first read are not told any more: channels configured long
/// after the events (or a server down for days) would otherwise flood people with the past.
const TOO_OLD_MS: i64 = 24 * 3600 * 1000;

impl Core {
    /// Makes the messages of the audit events past the outbox's cursor. Returns how many
    /// events it read (0: nothing new).
    pub(crate) async fn fan_out(&self) -> Result<usize, ServiceError> {
        let cursor = match self.store.meta(OUTBOX_CURSOR).await? {
            Some(c) => c
                .parse::<i64>()
                .map_err(|e| ServiceError::internal(format!("outbox cursor {c:?}: {e}")))?,
            None => return self.start_outbox_at_head().await.map(|()| 0),
        };
        let events = self.store.audit_events(cursor, BATCH).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let now = self.now();
        let mut deliveries = Vec::new();
        if !self.settings.notifications.channels.is_empty() {
            // Each event's reads (its request, grant, people) are independent of the others':
            // several at once, the messages kept in the events' order.
            let recent: Vec<&AuditEvent> = events.iter().filter(|e| now.as_millis() - e.ts < TOO_OLD_MS).collect();
            for chunk in recent.chunks(CONCURRENT_READS) {
                let made = futures_util::future::try_join_all(chunk.iter().map(|e| self.messages_of(e, now))).await?;
                deliveries.extend(made.into_iter().flatten());
            }
        }
        let mut tx = self.begin().await?;
        if tx.outbox_cursor().await? != Some(cursor) {
            // Another instance made these messages first.
            return Ok(events.len());
        }
        tx.insert_deliveries(&deliveries).await?;
        tx.set_outbox_cursor(last).await?;
        self.commit(tx).await?;
        Ok(events.len())
    }

    async fn messages_of(&self, event: &AuditEvent, now: Timestamp) -> Result<Vec<DeliveryRecord>, ServiceError> {
        match self.notice_for(event).await? {
            Some(notice) => self.deliveries_for(event, notice, now).await,
            None => Ok(Vec::new()),
        }
    }

    /// The first time: the outbox starts at the log's head (the past is not told).
    async fn start_outbox_at_head(&self) -> Result<(), ServiceError> {
        let mut tx = self.begin().await?;
        if tx.outbox_cursor().await?.is_none() {
            let head = tx.head().seq;
            tx.set_outbox_cursor(head).await?;
            self.commit(tx).await?;
        }
        Ok(())
    }

    /// One message per channel that takes `notice` and per destination there.
    async fn deliveries_for(&self, event: &AuditEvent, mut notice: Notice, now: Timestamp) -> Result<Vec<DeliveryRecord>, ServiceError> {
        let channels: Vec<_> = self
            .settings
            .notifications
            .channels
            .iter()
            .filter(|c| c.filter.admits(&notice))
            .collect();
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let recipients: Vec<Username> = notice.recipients.iter().filter_map(|r| r.parse().ok()).collect();
        let emails: BTreeMap<String, String> = self
            .store
            .user_emails(&recipients)
            .await?
            .into_iter()
            .map(|(u, e)| (u.to_string(), e))
            .collect();
        let order_key = notice
            .request
            .as_ref()
            .map(|r| r.id.clone())
            .or_else(|| notice.grant.as_ref().map(|g| g.id.clone()))
            .unwrap_or_else(|| notice.event.as_str().to_owned());
        let mut out = Vec::new();
        for channel in channels {
            for (n, destination) in channel.destinations(&notice, &emails).into_iter().enumerate() {
                let id = format!("ntf_{}_{}_{n}", event.seq, channel.name);
                notice.id.clone_from(&id);
                out.push(DeliveryRecord {
                    id,
                    event_seq: event.seq,
                    kind: notice.event.as_str().to_owned(),
                    channel: channel.name.clone(),
                    destination,
                    order_key: order_key.clone(),
                    payload: serde_json::to_string(&notice).map_err(|e| ServiceError::internal(e.to_string()))?,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                    sent_at: None,
                });
            }
        }
        Ok(out)
    }

    /// What `event` tells, and to whom; `None` for events nobody is told of.
    async fn notice_for(&self, event: &AuditEvent) -> Result<Option<Notice>, ServiceError> {
        if event.outcome != "success" && !event.action.starts_with("alert.") {
            return Ok(None);
        }
        let request = |id: &str| {
            let id = id.to_owned();
            async move { self.store.request(&id).await }
        };
        let kind = match event.action.as_str() {
            actions::REQUEST_CREATE => EventKind::RequestCreated,
            actions::REVIEW_APPROVE => EventKind::StageAdvanced,
            actions::REQUEST_APPROVED => EventKind::RequestApproved,
            actions::REQUEST_DENIED => EventKind::RequestDenied,
            actions::REQUEST_CANCEL => EventKind::RequestCancelled,
            actions::REQUEST_EXPIRE => EventKind::RequestExpired,
            actions::ALERT_BREAK_GLASS => EventKind::BreakGlassUsed,
            actions::GRANT_CREATE | actions::GRANT_ACTIVATE => EventKind::GrantStarted,
            actions::GRANT_ENDING_SOON => EventKind::GrantEndingSoon,
            actions::GRANT_EXPIRE | actions::GRANT_REVOKE => EventKind::GrantEnded,
            actions::ALERT_REVOCATION_STUCK => EventKind::RevocationFailed,
            actions::ALERT_AUDIT_WITNESS_FAILED => EventKind::WitnessUnreachable,
            _ => return Ok(None),
        };
        let (mut req, mut grant): (Option<AccessRequest>, Option<Grant>) = (None, None);
        match kind {
            EventKind::GrantStarted | EventKind::GrantEndingSoon | EventKind::GrantEnded => {
                grant = self.store.grant(&event.target).await?;
                let Some(g) = &grant else { return Ok(None) };
                // A grant made for a later start begins with its own `grant.activate`.
                if event.action == actions::GRANT_CREATE && g.starts_at.as_millis() > event.ts {
                    return Ok(None);
                }
                req = request(&g.request_id).await?;
            }
            EventKind::RevocationFailed => grant = self.store.grant(&event.target).await?,
            EventKind::WitnessUnreachable => {}
            _ => req = request(&event.target).await?,
        }
        let base = self.public_url();
        let mut stages = Vec::new();
        let recipients: Vec<Username> = match (kind, &req) {
            (EventKind::RequestCreated, Some(r)) => {
                // Approved in the same breath (by a policy): nobody needs to review it.
                if r.status != RequestStatus::Pending && r.decided_at.is_some_and(|d| d.as_millis() <= event.ts) {
                    return Ok(None);
                }
                let (progress, wanted) = self.stages_of(r, event.ts).await?;
                stages = progress;
                wanted.into_iter().collect()
            }
            (EventKind::StageAdvanced, Some(r)) => {
                // The last approval is told as `request.approved`.
                if r.decided_at.is_some_and(|d| d.as_millis() <= event.ts) {
                    return Ok(None);
                }
                let (progress, wanted) = self.stages_of(r, event.ts).await?;
                stages = progress;
                std::iter::once(r.requester.clone()).chain(wanted).collect()
            }
            (EventKind::RequestApproved, Some(r)) if event.actor.starts_with("policy:") && !r.break_glass => {
                // Approved by a policy as it was asked: the requester saw it happen.
                return Ok(None);
            }
            (EventKind::BreakGlassUsed | EventKind::RevocationFailed | EventKind::WitnessUnreachable, _) => event.details["recipients"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect(),
            (_, Some(r)) => vec![r.requester.clone()],
            (_, None) => grant.iter().map(|g| g.user.clone()).collect(),
        };
        let comment = match kind {
            EventKind::RequestDenied => self.last_comment(&event.target, Decision::Deny).await?,
            EventKind::StageAdvanced => event.details["comment"].as_str().map(str::to_owned).filter(|c| !c.is_empty()),
            EventKind::GrantEnded => grant.as_ref().and_then(|g| g.revoke_reason.clone()),
            EventKind::RevocationFailed | EventKind::WitnessUnreachable => Some(event.details.to_string()),
            _ => None,
        };
        let request_part = req.as_ref().map(|r| RequestPart {
            id: r.id.clone(),
            requester: r.requester.to_string(),
            resource: r.resource.to_string(),
            role: r.role.to_string(),
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            duration: jitgate_core::time::format_duration(std::time::Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0))),
            duration_secs: r.duration_secs,
            status: r.status.to_string(),
            break_glass: r.break_glass,
            url: format!("{base}requests/{}", r.id),
        });
        let grant_part = grant.as_ref().map(|g| GrantPart {
            id: g.id.clone(),
            user: g.user.to_string(),
            resource: g.resource.to_string(),
            role: g.role.to_string(),
            starts_at: g.starts_at.to_rfc3339(),
            ends_at: g.ends_at.to_rfc3339(),
            status: g.effective_status(Timestamp::from_millis(event.ts)).to_string(),
            url: format!("{base}grants"),
        });
        let summary = summary(kind, event, req.as_ref(), grant.as_ref());
        let url = match kind {
            EventKind::GrantStarted | EventKind::GrantEndingSoon | EventKind::GrantEnded => format!("{base}grants"),
            EventKind::RevocationFailed | EventKind::WitnessUnreachable => format!("{base}audit"),
            _ => request_part.as_ref().map_or_else(|| base.to_string(), |r| r.url.clone()),
        };
        let mut recipients: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        recipients.sort();
        recipients.dedup();
        Ok(Some(Notice {
            schema: SCHEMA.to_owned(),
            id: String::new(),
            event: kind,
            occurred_at: Timestamp::from_millis(event.ts).to_rfc3339(),
            audit_seq: event.seq,
            actor: event.actor.clone(),
            summary,
            request: request_part,
            grant: grant_part,
            stages,
            comment,
            recipients,
            url,
        }))
    }

    /// The request's stages as they stood at `as_of` (the event's time: the messages say the
    /// same however late they are made), and the people who could still approve then: members
    /// of the groups of stages not yet satisfied, but not the requester nor who had approved.
    async fn stages_of(&self, r: &AccessRequest, as_of: i64) -> Result<(Vec<StagePart>, BTreeSet<Username>), ServiceError> {
        let Some(resource) = self.store.resource(&r.resource).await? else {
            return Ok((Vec::new(), BTreeSet::new()));
        };
        let Some(policy) = resource.roles.get(&r.role) else {
            return Ok((Vec::new(), BTreeSet::new()));
        };
        let reviews = self.store.reviews(&r.id).await?;
        let mut approvers = Vec::new();
        let mut reviewed = BTreeSet::new();
        for review in reviews.iter().filter(|r| r.created_at.as_millis() <= as_of) {
            if let Some(person) = review.reviewer.person() {
                reviewed.insert(person.clone());
                if review.decision == Decision::Approve {
                    approvers.push(Approver {
                        user: person.clone(),
                        groups: self.store.user_groups(person).await?,
                        stages: None,
                    });
                }
            }
        }
        let progress = jitgate_core::request::count_approvals(&policy.stages, &r.requester, &approvers);
        let members = self.store.groups().await?;
        let mut wanted = BTreeSet::new();
        for (stage, p) in policy.stages.iter().zip(&progress.stages) {
            if (p.approved_by.len() as u32) < p.needed {
                for g in &stage.groups {
                    wanted.extend(members.get(g).into_iter().flatten().cloned());
                }
            }
        }
        wanted.remove(&r.requester);
        wanted.retain(|u| !reviewed.contains(u));
        let parts = progress
            .stages
            .into_iter()
            .map(|s| StagePart {
                name: s.name,
                needed: s.needed,
                approved_by: s.approved_by.iter().map(ToString::to_string).collect(),
            })
            .collect();
        Ok((parts, wanted))
    }

    async fn last_comment(&self, request_id: &str, decision: Decision) -> Result<Option<String>, ServiceError> {
        Ok(self
            .store
            .reviews(request_id)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.decision == decision)
            .map(|r| format!("{}: {}", r.reviewer, r.comment))
            .filter(|c| !c.ends_with(": ")))
    }

    /// Where links in messages point: `notifications.public_url` (the pages' origin unless
    /// configured, see `Application::build`); always ending in `/`.
    pub fn public_url(&self) -> String {
        let base = self
            .settings
            .notifications
            .public_url
            .as_ref()
            .map_or_else(|| format!("http://localhost:{}/", self.settings.http.port()), ToString::to_string);
        if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        }
    }
}

/// Where the outbox's cursor is kept (the `meta` table).
pub(crate) const OUTBOX_CURSOR: &str = "outbox.cursor";

fn summary(kind: EventKind, event: &AuditEvent, r: Option<&AccessRequest>, g: Option<&Grant>) -> String {
    let what = match (r, g) {
        (Some(r), _) => format!("{} on {}", r.role, r.resource),
        (None, Some(g)) => format!("{} on {}", g.role, g.resource),
        (None, None) => String::new(),
    };
    let requester = r
        .map(|r| r.requester.to_string())
        .or(g.map(|g| g.user.to_string()))
        .unwrap_or_default();
    let duration = r
        .map(|r| jitgate_core::time::format_duration(std::time::Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0))))
        .unwrap_or_default();
    match kind {
        EventKind::RequestCreated => format!("{requester} asks for {what} for {duration}"),
        EventKind::StageAdvanced => format!("{} approved {requester}'s request for {what}; more approvals needed", event.actor),
        EventKind::RequestApproved => format!("{requester}'s request for {what} was approved"),
        EventKind::RequestDenied => format!("{requester}'s request for {what} was denied by {}", event.actor),
        EventKind::RequestCancelled => format!("{requester}'s request for {what} was cancelled by {}", event.actor),
        EventKind::RequestExpired => format!("{requester}'s request for {what} expired without a decision"),
        EventKind::BreakGlassUsed => format!("{requester} broke glass: {what} for {duration}, without approval"),
        EventKind::GrantStarted => format!("{requester}'s access to {what} has started"),
        EventKind::GrantEndingSoon => format!(
            "{requester}'s access to {what} ends at {}",
            g.map(|g| g.ends_at.to_rfc3339()).unwrap_or_default()
        ),
        EventKind::GrantEnded if event.action == actions::GRANT_REVOKE => {
            format!("{requester}'s access to {what} was revoked by {}", event.actor)
        }
        EventKind::GrantEnded => format!("{requester}'s access to {what} has ended"),
        EventKind::RevocationFailed => format!("the database role of grant {} could not be removed", event.target),
        EventKind::WitnessUnreachable => format!("audit witness {} is not taking checkpoints", event.target),
    }
}
