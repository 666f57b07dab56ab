//! Decisions of the Cedar policies for the workflow, their explanation, and their reload.

use super::*;
use crate::core::Caller;
use crate::error::{ErrorKind, ServiceError};
use crate::policy::{load_engine, Asked, Subject};
use jitgate_api::{ActionDecision, ExplainBody, Explanation, PolicyReport};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::{RoleName, Username};
use jitgate_core::policy::{Resource, RolePolicy};
use jitgate_core::request::AccessRequest;
use jitgate_core::time::parse_duration;
use jitgate_core::{actions, DomainError, Timestamp};
use jitgate_policy::{stage_name, Decision, Facts, PolicyAction, UnderReview};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

impl Policies<'_> {
    fn on_call(&self, who: &Subject, now: Timestamp) -> bool {
        self.settings.on_call_group.as_ref().is_some_and(|g| who.groups.contains(g))
            || self
                .settings
                .on_call
                .iter()
                .any(|s| s.user == who.name && s.from <= now && now < s.until)
    }

    async fn live_grants<'s>(&self, who: &'s Subject, now: Timestamp) -> Result<&'s BTreeSet<String>, ServiceError> {
        who.live_roles
            .get_or_try_init(|| async { Ok(self.store.active_roles_of(&who.name, now).await?.into_iter().collect()) })
            .await
    }

    /// What the policies say about `action` by `who` on what is `asked`, decided at `now`
    /// for the time the access happens: the clocks (`context.utc`, `context.local`) and
    /// `on_call` are those of the moment it begins, and `context.start`/`context.end` its
    /// window; the grants already held are those of `now`.
    pub async fn decide(&self, action: PolicyAction, who: &Subject, asked: &Asked<'_>, now: Timestamp) -> Result<Decision, ServiceError> {
        let grants = self.live_grants(who, now).await?;
        let start = asked.start_at.map_or(now, |s| s.max(now));
        let facts = Facts {
            principal: who.person(),
            resource: asked.resource,
            role: asked.role,
            duration: asked.duration,
            reason: asked.reason,
            ticket: asked.ticket,
            active_grants: grants,
            on_call: self.on_call(who, start),
            now: start,
            window: Some((start, start.saturating_add(asked.duration))),
            review: None,
        };
        Ok(self.policy().decide(action, &facts))
    }

    /// A person as decisions see them, read from the store.
    pub async fn subject(&self, name: &Username) -> Result<Subject, ServiceError> {
        let is_admin = self.store.user(name).await?.is_some_and(|u| u.is_admin);
        self.subject_known(name, is_admin).await
    }

    /// A person as decisions see them, whether they are an administrator read already with
    /// something else (a round trip less).
    pub async fn subject_known(&self, name: &Username, is_admin: bool) -> Result<Subject, ServiceError> {
        Ok(Subject::new(name.clone(), self.store.user_groups(name).await?, is_admin))
    }

    /// The `approve` decision for each stage of `policy`, with `approver` reviewing `request`
    /// by `requester`.
    async fn stage_decisions(
        &self,
        approver: &Subject,
        requester: &Subject,
        request: &AccessRequest,
        resource: &Resource,
        policy: &RolePolicy,
        now: Timestamp,
    ) -> Result<Vec<(String, Decision)>, ServiceError> {
        let grants = self.live_grants(approver, now).await?;
        let engine = self.policy();
        let on_call = self.on_call(approver, now);
        let mut out = Vec::with_capacity(policy.stages.len());
        let duration = Duration::from_secs(u64::try_from(request.duration_secs).unwrap_or(0));
        let start = request.start_at.map_or(now, |s| s.max(now));
        for (i, stage) in policy.stages.iter().enumerate() {
            let name = stage_name(&stage.name, i);
            let facts = Facts {
                principal: approver.person(),
                resource,
                role: &request.role,
                duration: Duration::from_secs(u64::try_from(request.duration_secs).unwrap_or(0)),
                reason: &request.reason,
                ticket: request.ticket.as_deref(),
                active_grants: grants,
                on_call,
                now,
                window: Some((start, start.saturating_add(duration))),
                review: Some(UnderReview {
                    id: &request.id,
                    requester: requester.person(),
                    stage: &name,
                }),
            };
            let d = engine.decide(PolicyAction::Approve, &facts);
            out.push((name, d));
        }
        Ok(out)
    }

    /// The stages `approver` may approve `request` (by `requester`) for, and the forbids that
    /// stopped them where a stage's permit was there.
    pub async fn approver_stages(
        &self,
        approver: &Subject,
        requester: &Subject,
        request: &AccessRequest,
        resource: &Resource,
        policy: &RolePolicy,
        now: Timestamp,
    ) -> Result<(BTreeSet<usize>, Vec<String>), ServiceError> {
        let mut stages = BTreeSet::new();
        let mut forbids = Vec::new();
        let decisions = self.stage_decisions(approver, requester, request, resource, policy, now).await?;
        for (i, (_, d)) in decisions.into_iter().enumerate() {
            if d.allowed {
                stages.insert(i);
            } else {
                forbids.extend(d.policies);
            }
        }
        forbids.sort();
        forbids.dedup();
        Ok((stages, forbids))
    }

    /// Reads and validates the policy files again. A bad set is refused (and audited) and the
    /// last good one stays in force.
    pub async fn reload(&self, actor: &str) -> Result<PolicyReport, ServiceError> {
        match load_engine(&self.settings) {
            Ok(engine) => {
                let report = PolicyReport {
                    policies: engine.policy_ids().to_vec(),
                    time_zone: engine.time_zone().to_owned(),
                };
                *self.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(engine);
                self.audit_alone(NewEvent::new(
                    actor,
                    actions::POLICY_RELOAD,
                    "policies",
                    Outcome::Success,
                    json!({"policies": report.policies}),
                ))
                .await;
                Ok(report)
            }
            Err(e) => {
                let problems: Vec<String> = e.0.iter().map(ToString::to_string).collect();
                self.audit_alone(NewEvent::new(
                    actor,
                    actions::POLICY_RELOAD,
                    "policies",
                    Outcome::Failure,
                    json!({"problems": problems, "kept": self.policy().policy_ids()}),
                ))
                .await;
                Err(ServiceError::new(
                    ErrorKind::Unprocessable,
                    "policy_invalid",
                    format!(
                        "the policies were not reloaded; the last good set stays in force:\n{}",
                        problems.join("\n")
                    ),
                ))
            }
        }
    }

    pub async fn admin_reload(&self, caller: &Caller) -> Result<PolicyReport, ServiceError> {
        self.require_admin(caller, "reload").await?;
        self.reload(caller.name()).await
    }

    /// Each action's decision for `body`'s person, role and duration, with the deciding
    /// policies. Admins and audit readers may ask about anyone, others about themselves.
    pub async fn explain(&self, caller: &Caller, body: &ExplainBody) -> Result<Explanation, ServiceError> {
        let user = Username::parse(&body.user).map_err(|e| ServiceError::bad_request("invalid_user", e))?;
        if user != caller.user.name && !self.is_audit_reader(caller) {
            return Err(self
                .forbid(caller, "explain", "explaining someone else's access needs an administrator")
                .await);
        }
        let record = self.store.user(&user).await?.ok_or_else(|| ServiceError::not_found("user"))?;
        let resource = self.resources().named(&body.resource).await?;
        let role = RoleName::parse(&body.role).map_err(|_| DomainError::UnknownRole {
            resource: body.resource.clone(),
            role: body.role.clone(),
        })?;
        let policy = resource.role(&role)?.clone();
        let duration = match body.duration.as_deref() {
            Some(d) => parse_duration(d).map_err(|e| ServiceError::bad_request("invalid_duration", e))?,
            None => policy.default_duration,
        };
        let at = body.at.unwrap_or_else(|| self.now());
        let who = Subject::new(user.clone(), self.store.user_groups(&user).await?, record.is_admin);
        let asked = Asked {
            resource: &resource,
            role: &role,
            duration,
            reason: &body.reason,
            ticket: body.ticket.as_deref(),
            start_at: body.start_at,
        };
        let mut decisions = Vec::new();
        for action in [
            PolicyAction::Request,
            PolicyAction::AutoApprove,
            PolicyAction::BreakGlass,
            PolicyAction::Connect,
        ] {
            let d = self.decide(action, &who, &asked, at).await?;
            // `connect` is judged as the gateway judges it: a live grant is the permit, and
            // only a forbid stops it (no permit is needed).
            let allowed = if action == PolicyAction::Connect {
                d.allowed || d.policies.is_empty()
            } else {
                d.allowed
            };
            decisions.push(ActionDecision {
                action: action.as_str().into(),
                stage: None,
                allowed,
                policies: d.policies,
                errors: d.errors,
            });
        }
        // As an approver of someone else's request for the same role.
        let hypothetical = AccessRequest {
            id: "req_explain".into(),
            requester: Username::parse("someone-else").map_err(|e| ServiceError::bad_request("invalid_user", e))?,
            resource: resource.name.clone(),
            role: role.clone(),
            reason: body.reason.clone(),
            ticket: body.ticket.clone(),
            duration_secs: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
            start_at: body.start_at,
            status: jitgate_core::request::RequestStatus::Pending,
            created_at: at,
            expires_at: at,
            decided_at: None,
            extends_grant: None,
            mfa_method: None,
            break_glass: false,
            acknowledged_by: None,
            acknowledged_at: None,
        };
        let someone_else = Subject::new(hypothetical.requester.clone(), BTreeSet::new(), false);
        for (stage, d) in self
            .stage_decisions(&who, &someone_else, &hypothetical, &resource, &policy, at)
            .await?
        {
            decisions.push(ActionDecision {
                action: PolicyAction::Approve.as_str().into(),
                stage: Some(stage),
                allowed: d.allowed,
                policies: d.policies,
                errors: d.errors,
            });
        }
        Ok(Explanation {
            on_call: self.on_call(&who, at),
            user,
            resource: resource.name.to_string(),
            role: role.to_string(),
            at,
            time_zone: self.policy().time_zone().to_owned(),
            decisions,
        })
    }
}
