//! Reviews of access requests: approving and denying (with the stages the policies allow each reviewer), and acknowledging a break-glass grant after the fact.

use super::*;
use crate::core::Caller;
use crate::error::ServiceError;
use crate::policy::Subject;
use jitgate_api::{RequestDetail, ReviewBody};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::{GroupName, Username};
use jitgate_core::policy::{MfaAction, Resource};
use jitgate_core::request::{AccessRequest, Approver, Decision, RequestStatus, ReviewInput};
use jitgate_core::{actions, DomainError, Timestamp};
use jitgate_store::Standing;
use serde_json::json;
use std::collections::BTreeSet;

impl Reviews<'_> {
    pub async fn review(&self, caller: &Caller, id: &str, decision: Decision, body: &ReviewBody) -> Result<RequestDetail, ServiceError> {
        let comment = body.comment.as_str();
        let action = format!("review.{}", decision.as_str());
        // The second factor comes first, outside the review's transaction: checking it is a
        // change of its own (the code is used up, the attempt counted) whatever the review does.
        // The request, whether its requester is an administrator and the reviewer's live roles,
        // in one read. The roles are those of this moment, which comes before `now` by the
        // second factor's check.
        let jitgate_store::ReviewFacts {
            request: pending,
            requester_is_admin,
            reviewer_live_roles,
        } = self
            .store
            .request_for_review(id, &caller.user.name, self.now())
            .await?
            .ok_or_else(|| ServiceError::not_found("request"))?;
        let resource = self.store.resource(&pending.resource).await?;
        // One who may not see it learns nothing, not even that it exists.
        if !self.requests().sees(caller, &pending, resource.as_ref()) {
            return Err(self.hidden(caller, &action, id, "request").await);
        }
        let needed = match &resource {
            Some(r) => r.role(&pending.role).is_ok_and(|p| p.needs_mfa(MfaAction::Approve)) && decision == Decision::Approve,
            None => true,
        };
        // A self-review is refused below whatever the factor; asking for one first would only
        // use up a code.
        let mfa_method = if pending.requester == caller.user.name {
            None
        } else {
            self.mfa().step_up(caller, needed, body.mfa.as_ref(), &action, id).await?
        };
        let now = self.now();
        let resource = resource.ok_or_else(|| DomainError::UnknownResource(pending.resource.to_string()))?;
        let policy = resource.role(&pending.role)?;
        // Who may approve for which stage is the policies' say (the stage groups are policies
        // too). The reviewer and the requester are weighed before the transaction begins, since
        // every writer waits while a transaction holds the audit head; what they are is then
        // confirmed inside it (a request's resource, role, window and reason never change).
        let mut requester = self.policies().subject_known(&pending.requester, requester_is_admin).await?;
        let (mut me, mut forbids) = self
            .approver(
                Subject::of(caller).holding(reviewer_live_roles),
                &requester,
                &pending,
                &resource,
                policy,
                now,
            )
            .await?;
        let mut tx = self.begin().await?;
        // The request, its reviews and who everyone is, confirmed in this transaction with one
        // read: the reviewer and the requester as weighed above (weighed again if an
        // administrator changed them since), and each earlier approver, weighed as of now like
        // the reviewer.
        let jitgate_store::ReviewContext {
            request,
            reviews: earlier,
            standing,
        } = tx
            .review_context(id, &caller.user.name, &pending.requester)
            .await?
            .ok_or_else(|| ServiceError::not_found("request"))?;
        let earlier_names: Vec<Username> = earlier
            .iter()
            .filter(|r| r.decision == Decision::Approve)
            .filter_map(|r| r.reviewer.person().cloned())
            .collect();
        let nobody = Standing::default();
        let current = |name: &Username| standing.get(name).unwrap_or(&nobody);
        let now_as = |name: &Username| {
            let s = current(name).clone();
            Subject::new(name.clone(), s.groups, s.is_admin)
        };
        let changed = |name: &Username, groups: &BTreeSet<GroupName>, is_admin: bool| {
            let s = current(name);
            s.groups != *groups || s.is_admin != is_admin
        };
        if changed(&requester.name, &requester.groups, requester.is_admin)
            || changed(&caller.user.name, &caller.groups, caller.user.is_admin)
        {
            requester = now_as(&pending.requester);
            (me, forbids) = self
                .approver(now_as(&caller.user.name), &requester, &request, &resource, policy, now)
                .await?;
        }
        let mut earlier_approvers = Vec::new();
        for name in &earlier_names {
            earlier_approvers.push(self.approver(now_as(name), &requester, &request, &resource, policy, now).await?.0);
        }
        if request.requester != caller.user.name && me.stages.as_ref().is_some_and(BTreeSet::is_empty) && !forbids.is_empty() {
            drop(tx);
            let e = DomainError::ForbiddenByPolicy {
                action: "approve".into(),
                policies: forbids,
            };
            return Err(self.refused(caller, &action, id, e).await);
        }
        let mut outcome = match request.review(
            policy,
            &earlier,
            &earlier_approvers,
            ReviewInput {
                reviewer: &me,
                decision,
                comment,
            },
            now,
        ) {
            Ok(o) => o,
            Err(e) => {
                drop(tx);
                return Err(self.refused(caller, &action, id, e).await);
            }
        };
        outcome.review.mfa_method = mfa_method;
        tx.insert_review(&outcome.review).await?;
        let details = json!({"comment": outcome.review.comment, "stage": outcome.review.stage, "mfa": outcome.review.mfa_method});
        tx.append_audit(NewEvent::new(caller.name(), action.as_str(), id, Outcome::Success, details), now)
            .await?;
        let mut created = None;
        let mut request = request;
        if outcome.new_status != request.status {
            tx.set_request_status(id, outcome.new_status, now).await?;
            request.status = outcome.new_status;
            request.decided_at = Some(now);
            self.metrics.decided(request.created_at.until(now));
            let progress = serde_json::to_value(&outcome.progress).unwrap_or_default();
            tx.append_audit(
                NewEvent::new(
                    caller.name(),
                    format!("request.{}", outcome.new_status),
                    id,
                    Outcome::Success,
                    json!({"progress": progress}),
                ),
                now,
            )
            .await?;
            if outcome.new_status == RequestStatus::Approved {
                created = Some(self.grants().create(&mut *tx, &request, caller.name(), now).await?);
            }
        }
        let recorded = self.commit(tx).await?;
        if let Some(g) = &created {
            self.grants().granted(g);
        }
        // Answered from what this change saw and wrote, without reading it all back: `history`
        // holds the events this review recorded (`show` gives the whole history).
        let mut reviews = earlier;
        reviews.push(outcome.review);
        Ok(RequestDetail {
            request,
            reviews,
            progress: outcome.progress,
            grant: created,
            history: recorded,
        })
    }

    /// `name` as an approver of `request` by `requester`: the stages the policies let them
    /// approve for, and the forbids that stopped them where a stage would have let them.
    pub(crate) async fn approver(
        &self,
        who: Subject,
        requester: &Subject,
        request: &AccessRequest,
        resource: &Resource,
        policy: &jitgate_core::policy::RolePolicy,
        now: Timestamp,
    ) -> Result<(Approver, Vec<String>), ServiceError> {
        let (stages, forbids) = self
            .policies()
            .approver_stages(&who, requester, request, resource, policy, now)
            .await?;
        Ok((
            Approver {
                user: who.name,
                groups: who.groups,
                stages: Some(stages),
            },
            forbids,
        ))
    }

    /// What the caller's approval of request `id` would count for, as the policies say now:
    /// each stage's name and whether they may approve for it, and the forbid policies that stop
    /// them where a stage's permit was there. For the approver's page, before they decide; the
    /// review itself decides again.
    pub async fn my_part(&self, caller: &Caller, id: &str) -> Result<ReviewPart, ServiceError> {
        let request = self.store.request(id).await?.ok_or_else(|| ServiceError::not_found("request"))?;
        let resource = self.store.resource(&request.resource).await?;
        if !self.requests().sees(caller, &request, resource.as_ref()) {
            return Err(ServiceError::not_found("request"));
        }
        let resource = resource.ok_or_else(|| DomainError::UnknownResource(request.resource.to_string()))?;
        let policy = resource.role(&request.role)?;
        let requester = self.policies().subject(&request.requester).await?;
        let (stages, forbids) = self
            .policies()
            .approver_stages(&Subject::of(caller), &requester, &request, &resource, policy, self.now())
            .await?;
        Ok(ReviewPart {
            stages: policy
                .stages
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    let name = if st.name.is_empty() {
                        format!("stage {}", i + 1)
                    } else {
                        st.name.clone()
                    };
                    (name, stages.contains(&i))
                })
                .collect(),
            forbids,
        })
    }

    /// The after-the-fact review of a break-glass grant: someone who approves for the role (not
    /// the requester) acknowledges it, and it leaves the review list.
    pub async fn acknowledge(&self, caller: &Caller, id: &str, comment: &str) -> Result<AccessRequest, ServiceError> {
        let now = self.now();
        let request = self.store.request(id).await?.ok_or_else(|| ServiceError::not_found("request"))?;
        if !self.requests().may_see(caller, &request).await? {
            return Err(self.hidden(caller, actions::REQUEST_ACKNOWLEDGE, id, "request").await);
        }
        let resource = self
            .store
            .resource(&request.resource)
            .await?
            .ok_or_else(|| DomainError::UnknownResource(request.resource.to_string()))?;
        let policy = resource.role(&request.role)?;
        let refusal = if request.requester == caller.user.name {
            Some(DomainError::SelfApprovalForbidden)
        } else if self
            .approver(
                Subject::of(caller),
                &self.policies().subject(&request.requester).await?,
                &request,
                &resource,
                policy,
                now,
            )
            .await?
            .0
            .stages
            .is_none_or(|s| s.is_empty())
        {
            Some(DomainError::NotAnApprover)
        } else if !request.break_glass {
            Some(DomainError::NotBreakGlass)
        } else {
            None
        };
        if let Some(e) = refusal {
            return Err(self.refused(caller, actions::REQUEST_ACKNOWLEDGE, id, e).await);
        }
        let mut tx = self.begin().await?;
        if !tx.acknowledge_request(id, &caller.user.name, now).await? {
            // Another approver was first; the refusal is on the record like every other.
            drop(tx);
            return Err(self
                .refused(caller, actions::REQUEST_ACKNOWLEDGE, id, DomainError::AlreadyAcknowledged)
                .await);
        }
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::REQUEST_ACKNOWLEDGE,
                id,
                Outcome::Success,
                json!({"comment": comment.trim()}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        let mut request = request;
        request.acknowledged_by = Some(caller.user.name.clone());
        request.acknowledged_at = Some(now);
        request.status = request.effective_status(now);
        Ok(request)
    }
}

/// What one person's approval of a request would count for ([`Reviews::my_part`]).
#[derive(Debug, Clone)]
pub struct ReviewPart {
    /// Each stage in order: its name, and whether this person may approve for it.
    pub stages: Vec<(String, bool)>,
    /// Forbid policies that stop this person where a stage's permit was there.
    pub forbids: Vec<String>,
}
