//! Access requests: asking, reviewing, cancelling, acknowledging break-glass, and the alerts they raise.

use super::*;
use crate::core::{new_id, Caller};
use crate::error::ServiceError;
use crate::policy::{Asked, Subject};
use jitgate_api::{CreateRequestBody, NotificationView, RequestDetail, RequestView};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::{GroupName, ResourceName, RoleName, Username};
use jitgate_core::policy::{check_start_horizon, not_permitted, MfaAction, RequestDraft, Resource};
use jitgate_core::request::{count_approvals, AccessRequest, Decision, RequestStatus, Review, Reviewer};
use jitgate_core::time::parse_duration;
use jitgate_core::{actions, DomainError, Timestamp};
use jitgate_policy::PolicyAction;
use jitgate_store::{RequestFilter, WriteTx};
use serde_json::json;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Mine,
    Review,
    All,
}

impl Requests<'_> {
    pub async fn create(&self, caller: &Caller, body: CreateRequestBody) -> Result<AccessRequest, ServiceError> {
        let now = self.now();
        let resource = self.resources().named(&body.resource).await?;
        let role_name = RoleName::parse(&body.role).map_err(|_| DomainError::UnknownRole {
            resource: resource.name.to_string(),
            role: body.role.clone(),
        })?;
        let policy = resource.role(&role_name)?;
        let duration = match body.duration.as_deref() {
            Some(d) => Some(parse_duration(d).map_err(|e| ServiceError::bad_request("invalid_duration", e))?),
            None => None,
        };
        let target = format!("{}/{}", resource.name, role_name);
        let action = if body.break_glass {
            actions::REQUEST_BREAK_GLASS
        } else {
            actions::REQUEST_CREATE
        };
        let who = Subject::of(caller);
        // An extension's access begins where the grant it extends ends: decide for that.
        let extends_from = match &body.extends {
            Some(id) => self.store.grant(id).await?.map(|g| g.ends_at),
            None => None,
        };
        let asked = Asked {
            resource: &resource,
            role: &role_name,
            duration: duration.unwrap_or(policy.default_duration),
            reason: &body.reason,
            ticket: body.ticket.as_deref(),
            start_at: body.start_at.max(extends_from),
        };
        check_start_horizon(body.start_at, now, self.settings.start_at_horizon)?;
        // The policies first: who may ask (or break glass), and the forbids over every permit.
        let kind = if body.break_glass {
            PolicyAction::BreakGlass
        } else {
            PolicyAction::Request
        };
        let decision = self.policies().decide(kind, &who, &asked, now).await?;
        if !decision.allowed {
            let refusal = not_permitted(kind.as_str(), decision.policies, body.break_glass, &resource.name, &role_name);
            return Err(self.refused(caller, action, &target, refusal).await);
        }
        if body.break_glass {
            if let Err(e) = policy.check_break_glass(asked.duration, &body.reason) {
                return Err(self.refused(caller, action, &target, e).await);
            }
        }
        let draft = RequestDraft {
            requester: &caller.user.name,
            requester_groups: &caller.groups,
            policy_permits: true,
            duration,
            reason: &body.reason,
            ticket: body.ticket.as_deref(),
            start_at: body.start_at,
        };
        let checked = match policy.check_request(&resource.name, &role_name, &draft, now) {
            Ok(c) => c,
            Err(e) => return Err(self.refused(caller, action, &target, e).await),
        };
        // Breaking glass always takes a fresh second factor, whatever the role lists: it skips
        // every approval.
        let needs_factor = body.break_glass || policy.needs_mfa(MfaAction::Request);
        let mfa_method = self.mfa().step_up(caller, needs_factor, body.mfa.as_ref(), action, &target).await?;
        // Approved at once: break glass, or a policy that approves by itself.
        let approved_by = if body.break_glass {
            decision.policies.first().cloned()
        } else {
            let auto = self.policies().decide(PolicyAction::AutoApprove, &who, &asked, now).await?;
            if auto.allowed {
                auto.policies.first().cloned()
            } else {
                None
            }
        };
        let now = self.now();
        let mut tx = self.begin().await?;
        if let Some(grant_id) = &body.extends {
            let grant = tx
                .grant(grant_id)
                .await?
                .ok_or_else(|| ServiceError::not_found("grant to extend"))?;
            if let Err(e) = grant.check_extension(&caller.user.name, &resource.name, &role_name, now) {
                // The refusal is written in a change of its own; this one has written nothing.
                drop(tx);
                return Err(self.refused(caller, action, &target, e).await);
            }
        }
        let mut request = AccessRequest {
            id: new_id("req"),
            requester: caller.user.name.clone(),
            resource: resource.name.clone(),
            role: role_name,
            reason: checked.reason,
            ticket: checked.ticket,
            duration_secs: i64::try_from(checked.duration.as_secs()).unwrap_or(i64::MAX),
            start_at: checked.start_at,
            status: RequestStatus::Pending,
            created_at: now,
            expires_at: checked.expires_at,
            decided_at: None,
            extends_grant: body.extends,
            mfa_method,
            break_glass: body.break_glass,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        tx.insert_request(&request).await?;
        let details = json!({
            "resource": request.resource, "role": request.role, "reason": request.reason, "ticket": request.ticket,
            "duration_secs": request.duration_secs, "start_at": request.start_at.map(|t| t.as_millis()),
            "extends": request.extends_grant, "expires_at": request.expires_at.as_millis(), "mfa": request.mfa_method,
            "break_glass": request.break_glass, "policies": decision.policies,
        });
        tx.append_audit(
            NewEvent::new(caller.name(), action, request.id.as_str(), Outcome::Success, details),
            now,
        )
        .await?;
        let mut created = None;
        if let Some(policy_id) = approved_by {
            let review = Review {
                request_id: request.id.clone(),
                reviewer: Reviewer::Policy(policy_id.clone()),
                decision: Decision::Approve,
                comment: if request.break_glass { "break-glass" } else { "automatic approval" }.into(),
                stage: None,
                mfa_method: None,
                created_at: now,
            };
            tx.insert_review(&review).await?;
            tx.set_request_status(&request.id, RequestStatus::Approved, now).await?;
            request.status = RequestStatus::Approved;
            request.decided_at = Some(now);
            self.metrics.decided(request.created_at.until(now));
            let by = review.reviewer.to_string();
            tx.append_audit(
                NewEvent::new(
                    by.as_str(),
                    actions::REQUEST_APPROVED,
                    request.id.as_str(),
                    Outcome::Success,
                    json!({"policy": policy_id, "break_glass": request.break_glass}),
                ),
                now,
            )
            .await?;
            created = Some(self.grants().create(&mut *tx, &request, &by, now).await?);
            if request.break_glass {
                self.alert_approvers(&mut *tx, &request, &resource, now).await?;
            }
        }
        self.commit(tx).await?;
        self.engine.deadline_added(request.expires_at);
        if let Some(g) = &created {
            self.grants().granted(g);
        }
        Ok(request)
    }

    pub async fn notifications(&self, caller: &Caller, limit: i64) -> Result<Vec<NotificationView>, ServiceError> {
        let stored = self.store.notifications(&caller.user.name, limit.clamp(1, 1000)).await?;
        let mut views = Vec::with_capacity(stored.len());
        for n in stored {
            // Whether a break-glass alert still wants an acknowledgement is the request's state
            // now, not the text written when it was raised; so the hint is added here.
            let (mut message, mut acknowledged_by, mut acknowledged_at) = (n.message, None, None);
            if n.kind == "break_glass" {
                match self.store.request(&n.subject).await? {
                    Some(r) if r.acknowledged_by.is_some() => {
                        acknowledged_by = r.acknowledged_by;
                        acknowledged_at = r.acknowledged_at;
                    }
                    Some(r) if !message.contains("jitgate ack ") => {
                        message.push_str(&format!(" Acknowledge it with `jitgate ack {}`.", r.id));
                    }
                    _ => {}
                }
            }
            views.push(NotificationView {
                id: n.id,
                kind: n.kind,
                subject: n.subject,
                message,
                created_at: n.created_at,
                acknowledged_by,
                acknowledged_at,
            });
        }
        Ok(views)
    }

    /// A break-glass grant alerts everyone who approves for the resource's roles.
    async fn alert_approvers(
        &self,
        tx: &mut dyn WriteTx,
        request: &AccessRequest,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let approver_groups: BTreeSet<&GroupName> = resource
            .roles
            .values()
            .flat_map(|p| p.stages.iter().flat_map(|s| s.groups.iter()))
            .collect();
        let members = self.store.groups().await?;
        let recipients: BTreeSet<Username> = approver_groups
            .into_iter()
            .filter_map(|g| members.get(g))
            .flatten()
            .filter(|u| **u != request.requester)
            .cloned()
            .collect();
        let message = format!(
            "{} broke glass: {} on {} for {} — \"{}\". Review it with `jitgate show {}`.",
            request.requester,
            request.role,
            request.resource,
            jitgate_core::time::format_duration(std::time::Duration::from_secs(u64::try_from(request.duration_secs).unwrap_or(0))),
            request.reason,
            request.id,
        );
        let recipients: Vec<Username> = recipients.into_iter().collect();
        crate::core::alert(
            &mut *tx,
            "break_glass",
            request.id.as_str(),
            &message,
            &recipients,
            Outcome::Success,
            json!({}),
            now,
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn may_see(&self, caller: &Caller, r: &AccessRequest) -> Result<bool, ServiceError> {
        if r.requester == caller.user.name || self.is_audit_reader(caller) {
            return Ok(true);
        }
        Ok(self.sees(caller, r, self.store.resource(&r.resource).await?.as_ref()))
    }

    /// [`Requests::may_see`] with the request's resource read already.
    pub(crate) fn sees(&self, caller: &Caller, r: &AccessRequest, resource: Option<&Resource>) -> bool {
        r.requester == caller.user.name
            || self.is_audit_reader(caller)
            || resource.is_some_and(|res| res.roles.get(&r.role).is_some_and(|p| p.is_approver(&caller.groups)))
    }

    pub async fn list(
        &self,
        caller: &Caller,
        scope: Scope,
        status: Option<RequestStatus>,
        resource: Option<ResourceName>,
        limit: i64,
    ) -> Result<Vec<RequestView>, ServiceError> {
        let now = self.now();
        let limit = limit.clamp(1, 1000);
        let mut filter = RequestFilter {
            status,
            resource,
            limit,
            requester: None,
        };
        let mut requests = match scope {
            Scope::Mine => {
                filter.requester = Some(caller.user.name.clone());
                self.store.requests(&filter).await?
            }
            Scope::All => {
                if !self.is_audit_reader(caller) {
                    return Err(self
                        .forbid(
                            caller,
                            "list_requests",
                            "listing every request needs an administrator or an audit reader",
                        )
                        .await);
                }
                self.store.requests(&filter).await?
            }
            Scope::Review => {
                // Pending requests the caller may approve and has not reviewed, then break-glass
                // grants waiting for their after-the-fact acknowledgement.
                filter.status = Some(RequestStatus::Pending);
                filter.limit = 1000;
                let resources = self.store.resources().await?;
                let me = Subject::of(caller);
                let mut out = Vec::new();
                let pending = self.store.requests(&filter).await?;
                let awaiting = self.store.requests_awaiting_ack(1000).await?;
                // Read once for the whole list: what the caller reviewed already, and each
                // requester as decisions see them (an inbox is often one person's requests).
                let ids: Vec<String> = pending.iter().map(|r| r.id.clone()).collect();
                let reviewed_ids = self.store.reviewed_by(&caller.user.name, &ids).await?;
                let mut requesters: std::collections::HashMap<Username, Subject> = std::collections::HashMap::new();
                for r in pending.into_iter().chain(awaiting) {
                    if r.requester == caller.user.name || !(r.is_pending_at(now) || r.awaits_acknowledgement()) {
                        continue;
                    }
                    let Some((res, p)) = resources
                        .iter()
                        .find(|res| res.name == r.resource)
                        .and_then(|res| res.roles.get(&r.role).map(|p| (res, p)))
                    else {
                        continue;
                    };
                    if !requesters.contains_key(&r.requester) {
                        let subject = self.policies().subject(&r.requester).await?;
                        requesters.insert(r.requester.clone(), subject);
                    }
                    let requester = &requesters[&r.requester];
                    if self.policies().approver_stages(&me, requester, &r, res, p, now).await?.0.is_empty() {
                        continue;
                    }
                    if !reviewed_ids.contains(&r.id) || r.awaits_acknowledgement() {
                        out.push(r);
                    }
                }
                out.truncate(usize::try_from(limit).unwrap_or(100));
                out
            }
        };
        for r in requests.iter_mut() {
            r.status = r.effective_status(now);
        }
        requests.retain(|r| status.is_none_or(|s| s == r.status));
        let approved: Vec<String> = requests
            .iter()
            .filter(|r| r.status == RequestStatus::Approved)
            .map(|r| r.id.clone())
            .collect();
        let mut grant_ids = self.store.grant_ids_for_requests(&approved).await?;
        Ok(requests
            .into_iter()
            .map(|r| RequestView {
                grant_id: grant_ids.remove(&r.id),
                request: r,
            })
            .collect())
    }

    pub async fn detail(&self, caller: &Caller, id: &str) -> Result<RequestDetail, ServiceError> {
        let now = self.now();
        let mut request = self.store.request(id).await?.ok_or_else(|| ServiceError::not_found("request"))?;
        if !self.may_see(caller, &request).await? {
            return Err(ServiceError::not_found("request"));
        }
        request.status = request.effective_status(now);
        let reviews = self.store.reviews(id).await?;
        let resource = self.store.resource(&request.resource).await?;
        let role = resource.as_ref().and_then(|res| res.roles.get(&request.role));
        let mut approvers = Vec::new();
        if let (Some(res), Some(p)) = (&resource, role) {
            let requester = self.policies().subject(&request.requester).await?;
            for name in reviews
                .iter()
                .filter(|r| r.decision == Decision::Approve)
                .filter_map(|r| r.reviewer.person())
            {
                let who = self.policies().subject(name).await?;
                approvers.push(self.reviews().approver(who, &requester, &request, res, p, now).await?.0);
            }
        }
        let stages = role.map(|p| p.stages.clone()).unwrap_or_default();
        let progress = count_approvals(&stages, &request.requester, &approvers);
        let mut grant = self.store.grant_for_request(id).await?;
        if let Some(g) = grant.as_mut() {
            g.status = g.effective_status(now);
        }
        let mut targets = vec![id.to_owned()];
        targets.extend(grant.as_ref().map(|g| g.id.clone()));
        let history = self.store.audit_events_for(&targets).await?;
        Ok(RequestDetail {
            request,
            reviews,
            progress,
            grant,
            history,
        })
    }

    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<AccessRequest, ServiceError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut request = tx.request(id).await?.ok_or_else(|| ServiceError::not_found("request"))?;
        if request.requester != caller.user.name && !self.may_see(caller, &request).await? {
            drop(tx);
            return Err(self.hidden(caller, actions::REQUEST_CANCEL, id, "request").await);
        }
        if let Err(e) = request.cancel(&caller.user.name, now) {
            drop(tx);
            return Err(self.refused(caller, actions::REQUEST_CANCEL, id, e).await);
        }
        tx.set_request_status(id, RequestStatus::Cancelled, now).await?;
        tx.append_audit(
            NewEvent::new(caller.name(), actions::REQUEST_CANCEL, id, Outcome::Success, json!({})),
            now,
        )
        .await?;
        self.commit(tx).await?;
        request.status = RequestStatus::Cancelled;
        request.decided_at = Some(now);
        Ok(request)
    }
}
