//! The access workflow: requests, reviews, grants, revocation.

use crate::core::{new_id, Caller, Core, GrantEventKind};
use crate::error::ApiError;
use jitgate_api::{CreateRequestBody, RequestDetail, RequestView, ResourceView, ReviewBody};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::{Grant, GrantStatus};
use jitgate_core::names::{ResourceName, RoleName};
use jitgate_core::policy::{MfaAction, RequestDraft, Resource};
use jitgate_core::request::{count_approvals, AccessRequest, Approver, Decision, RequestStatus, ReviewInput};
use jitgate_core::time::parse_duration;
use jitgate_core::DomainError;
use jitgate_store::{GrantFilter, RequestFilter, Source};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Mine,
    Review,
    All,
}

impl Core {
    async fn resource_named(&self, name: &str) -> Result<Resource, ApiError> {
        let unknown = || ApiError::from(DomainError::UnknownResource(name.to_owned()));
        let parsed = ResourceName::parse(name).map_err(|_| unknown())?;
        self.store.resource(&parsed).await?.ok_or_else(unknown)
    }

    pub async fn list_resources(&self) -> Result<Vec<ResourceView>, ApiError> {
        let resources = self.store.resources().await?;
        let from_config = |r: &Resource| self.settings.resources.iter().any(|c| c.name == r.name);
        Ok(resources
            .into_iter()
            .map(|resource| ResourceView {
                managed_by: if from_config(&resource) { "config" } else { "api" }.into(),
                resource,
            })
            .collect())
    }

    pub async fn put_resource(&self, caller: &Caller, resource: Resource) -> Result<ResourceView, ApiError> {
        self.require_admin(caller, "put_resource").await?;
        if let Some(problem) = resource.problems().into_iter().next() {
            return Err(ApiError::bad_request("invalid_resource", problem));
        }
        let (mut tx, start) = self.begin().await?;
        if tx.resources_from(Source::Config).await?.contains(&resource.name) {
            return Err(ApiError::conflict(
                "managed_by_config",
                format!("resource '{}' is declared in the config file; change it there", resource.name),
            ));
        }
        tx.put_resource(&resource, Source::Api, self.now()).await?;
        let details = serde_json::to_value(&resource).unwrap_or_default();
        tx.append_audit(
            NewEvent::new(caller.name(), "resource.put", resource.name.as_str(), Outcome::Success, details),
            self.now(),
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(ResourceView {
            resource,
            managed_by: "api".into(),
        })
    }

    pub async fn delete_resource(&self, caller: &Caller, name: &ResourceName) -> Result<(), ApiError> {
        self.require_admin(caller, "delete_resource").await?;
        let (mut tx, start) = self.begin().await?;
        if tx.resources_from(Source::Config).await?.contains(name) {
            return Err(ApiError::conflict(
                "managed_by_config",
                format!("resource '{name}' is declared in the config file; remove it there"),
            ));
        }
        if !tx.delete_resource(name).await? {
            return Err(ApiError::not_found("resource"));
        }
        tx.append_audit(
            NewEvent::new(caller.name(), "resource.delete", name.as_str(), Outcome::Success, json!({})),
            self.now(),
        )
        .await?;
        self.commit(tx, start).await?;
        Ok(())
    }

    pub async fn create_request(&self, caller: &Caller, body: CreateRequestBody) -> Result<AccessRequest, ApiError> {
        let now = self.now();
        let resource = self.resource_named(&body.resource).await?;
        let role_name = RoleName::parse(&body.role).map_err(|_| DomainError::UnknownRole {
            resource: resource.name.to_string(),
            role: body.role.clone(),
        })?;
        let policy = resource.role(&role_name)?;
        let duration = match body.duration.as_deref() {
            Some(d) => Some(parse_duration(d).map_err(|e| ApiError::bad_request("invalid_duration", e))?),
            None => None,
        };
        let draft = RequestDraft {
            requester: &caller.user.name,
            requester_groups: &caller.groups,
            duration,
            reason: &body.reason,
            ticket: body.ticket.as_deref(),
            start_at: body.start_at,
        };
        let target = format!("{}/{}", resource.name, role_name);
        let checked = match policy.check_request(&resource.name, &role_name, &draft, now) {
            Ok(c) => c,
            Err(e) => return Err(self.refused(caller, "request.create", &target, e).await),
        };
        let mfa_method = self
            .step_up(
                caller,
                policy.needs_mfa(MfaAction::Request),
                body.mfa.as_ref(),
                "request.create",
                &target,
            )
            .await?;
        let now = self.now();
        let (mut tx, start) = self.begin().await?;
        if let Some(grant_id) = &body.extends {
            let grant = tx.grant(grant_id).await?.ok_or_else(|| ApiError::not_found("grant to extend"))?;
            if grant.user != caller.user.name || grant.resource != resource.name || grant.role != role_name {
                return Err(DomainError::ExtensionMismatch.into());
            }
            let status = grant.effective_status(now);
            if !status.is_live() {
                return Err(DomainError::GrantNotLive {
                    status: status.to_string(),
                }
                .into());
            }
        }
        let request = AccessRequest {
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
        };
        tx.insert_request(&request).await?;
        let details = json!({
            "resource": request.resource, "role": request.role, "reason": request.reason, "ticket": request.ticket,
            "duration_secs": request.duration_secs, "start_at": request.start_at.map(|t| t.as_millis()),
            "extends": request.extends_grant, "expires_at": request.expires_at.as_millis(), "mfa": request.mfa_method,
        });
        tx.append_audit(
            NewEvent::new(caller.name(), "request.create", request.id.as_str(), Outcome::Success, details),
            now,
        )
        .await?;
        self.commit(tx, start).await?;
        self.engine.deadline_added(request.expires_at);
        Ok(request)
    }

    async fn may_see_request(&self, caller: &Caller, r: &AccessRequest) -> Result<bool, ApiError> {
        if r.requester == caller.user.name || self.is_audit_reader(caller) {
            return Ok(true);
        }
        Ok(self
            .store
            .resource(&r.resource)
            .await?
            .is_some_and(|res| res.roles.get(&r.role).is_some_and(|p| p.is_approver(&caller.groups))))
    }

    pub async fn list_requests(
        &self,
        caller: &Caller,
        scope: Scope,
        status: Option<RequestStatus>,
        resource: Option<ResourceName>,
        limit: i64,
    ) -> Result<Vec<RequestView>, ApiError> {
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
                filter.status = Some(RequestStatus::Pending);
                filter.limit = 1000;
                let resources = self.store.resources().await?;
                let mut out = Vec::new();
                for r in self.store.requests(&filter).await? {
                    let approver = resources
                        .iter()
                        .find(|res| res.name == r.resource)
                        .and_then(|res| res.roles.get(&r.role))
                        .is_some_and(|p| p.is_approver(&caller.groups));
                    let reviewed = approver && self.store.reviews(&r.id).await?.iter().any(|v| v.reviewer == caller.user.name);
                    if approver && r.requester != caller.user.name && !reviewed && r.is_pending_at(now) {
                        out.push(r);
                    }
                }
                out.truncate(usize::try_from(limit).unwrap_or(100));
                out
            }
        };
        let mut views = Vec::with_capacity(requests.len());
        for r in requests.iter_mut() {
            r.status = r.effective_status(now);
            if status.is_some_and(|s| s != r.status) {
                continue;
            }
            let grant_id = if r.status == RequestStatus::Approved {
                self.store.grant_for_request(&r.id).await?.map(|g| g.id)
            } else {
                None
            };
            views.push(RequestView {
                request: r.clone(),
                grant_id,
            });
        }
        Ok(views)
    }

    pub async fn request_detail(&self, caller: &Caller, id: &str) -> Result<RequestDetail, ApiError> {
        let now = self.now();
        let mut request = self.store.request(id).await?.ok_or_else(|| ApiError::not_found("request"))?;
        if !self.may_see_request(caller, &request).await? {
            return Err(ApiError::not_found("request"));
        }
        request.status = request.effective_status(now);
        let reviews = self.store.reviews(id).await?;
        let mut approvers = Vec::new();
        for r in reviews.iter().filter(|r| r.decision == Decision::Approve) {
            approvers.push(Approver {
                user: r.reviewer.clone(),
                groups: self.store.user_groups(&r.reviewer).await?,
            });
        }
        let stages = self
            .store
            .resource(&request.resource)
            .await?
            .and_then(|res| res.roles.get(&request.role).map(|p| p.stages.clone()))
            .unwrap_or_default();
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

    pub async fn review(&self, caller: &Caller, id: &str, decision: Decision, body: &ReviewBody) -> Result<RequestDetail, ApiError> {
        let comment = body.comment.as_str();
        let action = format!("review.{}", decision.as_str());
        // The second factor comes first, outside the review's transaction: checking it is a
        // change of its own (the code is used up, the attempt counted) whatever the review does.
        let pending = self.store.request(id).await?.ok_or_else(|| ApiError::not_found("request"))?;
        let needed = match self.store.resource(&pending.resource).await? {
            Some(r) => r.role(&pending.role).is_ok_and(|p| p.needs_mfa(MfaAction::Approve)) && decision == Decision::Approve,
            None => true,
        };
        // A self-review is refused below whatever the factor; asking for one first would only
        // use up a code.
        let mfa_method = if pending.requester == caller.user.name {
            None
        } else {
            self.step_up(caller, needed, body.mfa.as_ref(), &action, id).await?
        };
        let now = self.now();
        let (mut tx, start) = self.begin().await?;
        let request = tx.request(id).await?.ok_or_else(|| ApiError::not_found("request"))?;
        let resource = self
            .store
            .resource(&request.resource)
            .await?
            .ok_or_else(|| DomainError::UnknownResource(request.resource.to_string()))?;
        let policy = resource.role(&request.role)?;
        let earlier = tx.reviews(id).await?;
        let mut earlier_approvers = Vec::new();
        for r in earlier.iter().filter(|r| r.decision == Decision::Approve) {
            earlier_approvers.push(Approver {
                user: r.reviewer.clone(),
                groups: tx.user_groups(&r.reviewer).await?,
            });
        }
        let me = Approver {
            user: caller.user.name.clone(),
            groups: caller.groups.clone(),
        };
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
                let extends = match &request.extends_grant {
                    Some(g) => tx.grant(g).await?,
                    None => None,
                };
                let grant = Grant::from_request(new_id("grt"), &request, extends.as_ref(), now);
                tx.insert_grant(&grant).await?;
                let details = json!({
                    "request": id, "user": grant.user, "resource": grant.resource, "role": grant.role,
                    "starts_at": grant.starts_at.as_millis(), "ends_at": grant.ends_at.as_millis(), "status": grant.status,
                });
                tx.append_audit(
                    NewEvent::new(caller.name(), "grant.create", grant.id.as_str(), Outcome::Success, details),
                    now,
                )
                .await?;
                created = Some(grant);
            }
        }
        let recorded = self.commit(tx, start).await?;
        if let Some(g) = &created {
            self.publish(GrantEventKind::Created, g);
            if let Some(d) = g.next_deadline() {
                self.engine.deadline_added(d);
            }
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

    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<AccessRequest, ApiError> {
        let now = self.now();
        let (mut tx, start) = self.begin().await?;
        let mut request = tx.request(id).await?.ok_or_else(|| ApiError::not_found("request"))?;
        if request.requester != caller.user.name && !self.may_see_request(caller, &request).await? {
            return Err(ApiError::not_found("request"));
        }
        if let Err(e) = request.cancel(&caller.user.name, now) {
            drop(tx);
            return Err(self.refused(caller, "request.cancel", id, e).await);
        }
        tx.set_request_status(id, RequestStatus::Cancelled, now).await?;
        tx.append_audit(NewEvent::new(caller.name(), "request.cancel", id, Outcome::Success, json!({})), now)
            .await?;
        self.commit(tx, start).await?;
        request.status = RequestStatus::Cancelled;
        request.decided_at = Some(now);
        Ok(request)
    }

    async fn may_act_on_grant(&self, caller: &Caller, g: &Grant) -> Result<bool, ApiError> {
        if g.user == caller.user.name || caller.user.is_admin {
            return Ok(true);
        }
        Ok(self
            .store
            .resource(&g.resource)
            .await?
            .is_some_and(|r| r.is_approver(&caller.groups)))
    }

    pub async fn list_grants(
        &self,
        caller: &Caller,
        scope: Scope,
        status: Option<GrantStatus>,
        resource: Option<ResourceName>,
        limit: i64,
    ) -> Result<Vec<Grant>, ApiError> {
        let now = self.now();
        let mut filter = GrantFilter {
            user: None,
            status: None,
            resource,
            limit: limit.clamp(1, 1000),
        };
        match scope {
            Scope::Mine => filter.user = Some(caller.user.name.clone()),
            Scope::All | Scope::Review => {
                if !self.is_audit_reader(caller) {
                    return Err(self
                        .forbid(
                            caller,
                            "list_grants",
                            "listing every grant needs an administrator or an audit reader",
                        )
                        .await);
                }
            }
        }
        let mut grants = self.store.grants(&filter).await?;
        for g in grants.iter_mut() {
            g.status = g.effective_status(now);
        }
        grants.retain(|g| status.is_none_or(|s| s == g.status));
        Ok(grants)
    }

    pub async fn grant_detail(&self, caller: &Caller, id: &str) -> Result<Grant, ApiError> {
        let mut g = self.store.grant(id).await?.ok_or_else(|| ApiError::not_found("grant"))?;
        if !self.may_act_on_grant(caller, &g).await? && !self.is_audit_reader(caller) {
            return Err(ApiError::not_found("grant"));
        }
        g.status = g.effective_status(self.now());
        Ok(g)
    }

    pub async fn revoke(&self, caller: &Caller, id: &str, reason: &str) -> Result<Grant, ApiError> {
        let now = self.now();
        let (mut tx, start) = self.begin().await?;
        let mut grant = tx.grant(id).await?.ok_or_else(|| ApiError::not_found("grant"))?;
        let may = self.may_act_on_grant(caller, &grant).await?;
        if let Err(e) = grant.check_revoke(reason, now, may) {
            drop(tx);
            return Err(self.refused(caller, "grant.revoke", id, e).await);
        }
        grant.status = GrantStatus::Revoked;
        grant.revoked_at = Some(now);
        grant.revoked_by = Some(caller.user.name.clone());
        grant.revoke_reason = Some(reason.trim().to_owned());
        tx.update_grant(&grant).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                "grant.revoke",
                id,
                Outcome::Success,
                json!({"reason": grant.revoke_reason, "user": grant.user}),
            ),
            now,
        )
        .await?;
        self.commit(tx, start).await?;
        self.publish(GrantEventKind::Revoked, &grant);
        Ok(grant)
    }
}
