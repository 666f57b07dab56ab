//! Access requests, their reviews and the approval count: M-of-N distinct humans per stage,
//! stages AND-ed, the requester never counts, one person counts once and in one stage.

use crate::error::DomainError;
use crate::names::{GroupName, ResourceName, RoleName, Username};
use crate::policy::{RolePolicy, Stage};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRequest {
    pub id: String,
    pub requester: Username,
    pub resource: ResourceName,
    pub role: RoleName,
    pub reason: String,
    pub ticket: Option<String>,
    pub duration_secs: i64,
    pub start_at: Option<Timestamp>,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// When a pending request expires.
    pub expires_at: Timestamp,
    pub decided_at: Option<Timestamp>,
    /// The grant this request extends, if it is an extension.
    pub extends_grant: Option<String>,
    /// The second factor the requester proved for this request, when one was asked for or given.
    #[serde(default)]
    pub mfa_method: Option<crate::factor::Factor>,
    /// Granted at once under a break-glass policy; it stays on the reviewers' list until one
    /// of them acknowledges it.
    #[serde(default)]
    pub break_glass: bool,
    #[serde(default)]
    pub acknowledged_by: Option<Username>,
    #[serde(default)]
    pub acknowledged_at: Option<Timestamp>,
}

impl AccessRequest {
    /// A break-glass grant nobody has looked at yet.
    pub fn awaits_acknowledgement(&self) -> bool {
        self.break_glass && self.acknowledged_at.is_none()
    }
}

/// Who reviewed: a person, or a policy that approved by itself (`policy:ID`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Reviewer {
    Person(Username),
    Policy(String),
}

impl Reviewer {
    pub fn person(&self) -> Option<&Username> {
        match self {
            Self::Person(u) => Some(u),
            Self::Policy(_) => None,
        }
    }

    pub fn is(&self, user: &Username) -> bool {
        self.person() == Some(user)
    }
}

impl std::fmt::Display for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Person(u) => write!(f, "{u}"),
            Self::Policy(id) => write!(f, "policy:{id}"),
        }
    }
}

/// A user name, or `policy:ID` for a policy that approved by itself.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Reviewer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A user name, or `policy:ID` for a policy that approved by itself"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Reviewer {}

impl TryFrom<String> for Reviewer {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.strip_prefix("policy:") {
            Some(id) if !id.is_empty() => Ok(Self::Policy(id.to_owned())),
            Some(_) => Err("a policy reviewer needs an id".into()),
            None => Username::parse(&s).map(Self::Person),
        }
    }
}

impl From<Reviewer> for String {
    fn from(r: Reviewer) -> String {
        r.to_string()
    }
}

impl std::str::FromStr for Reviewer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Review {
    pub request_id: String,
    pub reviewer: Reviewer,
    pub decision: Decision,
    pub comment: String,
    /// The stage (0-based) this approval counts towards, if it counts.
    pub stage: Option<u32>,
    /// The second factor presented with the review, if one was.
    pub mfa_method: Option<crate::factor::Factor>,
    pub created_at: Timestamp,
}

/// One approver as the count sees them: who and the groups they belong to now.
#[derive(Debug, Clone)]
pub struct Approver {
    pub user: Username,
    pub groups: BTreeSet<GroupName>,
    /// The stages (0-based) this person may approve for, as the policies decide; `None`: the
    /// stages whose groups they are in.
    pub stages: Option<BTreeSet<usize>>,
}

impl Approver {
    fn may_approve(&self, stage_index: usize, stage: &Stage) -> bool {
        match &self.stages {
            Some(s) => s.contains(&stage_index),
            None => !stage.groups.is_disjoint(&self.groups),
        }
    }

    fn approves_any(&self, stages: &[Stage]) -> bool {
        stages.iter().enumerate().any(|(i, s)| self.may_approve(i, s))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageProgress {
    pub name: String,
    pub needed: u32,
    pub approved_by: Vec<Username>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub stages: Vec<StageProgress>,
    pub satisfied: bool,
}

/// One person's decision on a request.
#[derive(Debug, Clone, Copy)]
pub struct ReviewInput<'a> {
    pub reviewer: &'a Approver,
    pub decision: Decision,
    pub comment: &'a str,
}

/// What a review does to its request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewOutcome {
    pub review: Review,
    pub new_status: RequestStatus,
    pub progress: Progress,
}

/// Counts approvals against the stages. Approvers are matched to stage seats so that each
/// person fills at most one seat; a maximum bipartite matching (Kuhn's augmenting paths, in the
/// order the approvals came) decides, so a person who belongs to two stages' groups never
/// blocks a later approver who could only fill one of them.
pub fn count_approvals(stages: &[Stage], requester: &Username, approvers: &[Approver]) -> Progress {
    let seats: Vec<usize> = stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| std::iter::repeat_n(i, s.min_approvals as usize))
        .collect();
    let eligible: Vec<Vec<usize>> = approvers
        .iter()
        .map(|a| {
            if &a.user == requester {
                return Vec::new();
            }
            seats
                .iter()
                .enumerate()
                .filter(|(_, &stage)| a.may_approve(stage, &stages[stage]))
                .map(|(seat, _)| seat)
                .collect()
        })
        .collect();
    let mut seat_holder: Vec<Option<usize>> = vec![None; seats.len()];
    for person in 0..approvers.len() {
        let mut visited = vec![false; seats.len()];
        augment(person, &eligible, &mut seat_holder, &mut visited);
    }
    let mut progress: Vec<StageProgress> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| StageProgress {
            name: if s.name.is_empty() {
                format!("stage {}", i + 1)
            } else {
                s.name.clone()
            },
            needed: s.min_approvals,
            approved_by: Vec::new(),
        })
        .collect();
    for (seat, holder) in seat_holder.iter().enumerate() {
        if let Some(p) = holder {
            progress[seats[seat]].approved_by.push(approvers[*p].user.clone());
        }
    }
    let satisfied = seat_holder.iter().all(Option::is_some);
    Progress {
        stages: progress,
        satisfied,
    }
}

fn augment(person: usize, eligible: &[Vec<usize>], holder: &mut [Option<usize>], visited: &mut [bool]) -> bool {
    for &seat in &eligible[person] {
        if visited[seat] {
            continue;
        }
        visited[seat] = true;
        let free = match holder[seat] {
            None => true,
            Some(other) => augment(other, eligible, holder, visited),
        };
        if free {
            holder[seat] = Some(person);
            return true;
        }
    }
    false
}

impl AccessRequest {
    pub fn is_pending_at(&self, now: Timestamp) -> bool {
        self.status == RequestStatus::Pending && now < self.expires_at
    }

    /// The status as of `now`: a pending request past its deadline is expired even before the
    /// expiry engine has written it down.
    pub fn effective_status(&self, now: Timestamp) -> RequestStatus {
        if self.status == RequestStatus::Pending && now >= self.expires_at {
            RequestStatus::Expired
        } else {
            self.status
        }
    }

    fn ensure_pending(&self, now: Timestamp) -> Result<(), DomainError> {
        if self.is_pending_at(now) {
            Ok(())
        } else {
            Err(DomainError::RequestNotPending {
                status: self.effective_status(now).to_string(),
            })
        }
    }

    /// Applies one person's review. `earlier` are the reviews already recorded, in order, and
    /// `earlier_approvers` the people behind their approvals with their groups now.
    pub fn review(
        &self,
        policy: &RolePolicy,
        earlier: &[Review],
        earlier_approvers: &[Approver],
        input: ReviewInput<'_>,
        now: Timestamp,
    ) -> Result<ReviewOutcome, DomainError> {
        let ReviewInput {
            reviewer,
            decision,
            comment,
        } = input;
        // The self-review refusal comes first, so that a requester who is also in an approver
        // group learns the real reason.
        if reviewer.user == self.requester {
            return Err(DomainError::SelfApprovalForbidden);
        }
        self.ensure_pending(now)?;
        if !reviewer.approves_any(&policy.stages) {
            return Err(DomainError::NotAnApprover);
        }
        if earlier.iter().any(|r| r.reviewer.is(&reviewer.user)) {
            return Err(DomainError::AlreadyReviewed);
        }
        let mut approvers: Vec<Approver> = earlier_approvers.to_vec();
        let (new_status, stage, progress) = match decision {
            Decision::Deny => {
                let progress = count_approvals(&policy.stages, &self.requester, &approvers);
                (RequestStatus::Denied, None, progress)
            }
            Decision::Approve => {
                approvers.push(reviewer.clone());
                let progress = count_approvals(&policy.stages, &self.requester, &approvers);
                let stage = progress
                    .stages
                    .iter()
                    .position(|s| s.approved_by.contains(&reviewer.user))
                    .and_then(|i| u32::try_from(i).ok());
                let status = if progress.satisfied {
                    RequestStatus::Approved
                } else {
                    RequestStatus::Pending
                };
                (status, stage, progress)
            }
        };
        Ok(ReviewOutcome {
            review: Review {
                request_id: self.id.clone(),
                reviewer: Reviewer::Person(reviewer.user.clone()),
                decision,
                comment: comment.trim().to_owned(),
                stage,
                mfa_method: None,
                created_at: now,
            },
            new_status,
            progress,
        })
    }

    pub fn cancel(&self, by: &Username, now: Timestamp) -> Result<(), DomainError> {
        if by != &self.requester {
            return Err(DomainError::NotRequester);
        }
        self.ensure_pending(now)
    }
}

#[cfg(test)]
mod tests {
    use super::ReviewInput;
    use super::*;
    use crate::policy::ReasonRules;
    use std::time::Duration;

    fn u(n: &str) -> Username {
        Username::parse(n).unwrap()
    }
    fn groups(names: &[&str]) -> BTreeSet<GroupName> {
        names.iter().map(|n| GroupName::parse(n).unwrap()).collect()
    }
    fn approver(n: &str, gs: &[&str]) -> Approver {
        Approver {
            stages: None,
            user: u(n),
            groups: groups(gs),
        }
    }
    fn stage(gs: &[&str], min: u32) -> Stage {
        Stage {
            name: String::new(),
            groups: groups(gs),
            min_approvals: min,
        }
    }

    fn two_stage_policy() -> RolePolicy {
        RolePolicy {
            requesters: groups(&["engineers"]),
            stages: vec![stage(&["db-owners"], 1), stage(&["security"], 1)],
            max_duration: Duration::from_secs(3600),
            default_duration: Duration::from_secs(1800),
            pending_ttl: Duration::from_secs(600),
            reason: ReasonRules::default(),
            mfa: crate::policy::MfaAction::all(),
            db_role: None,
            login: None,
            password_env: None,
            allow_privileged_login: false,
            access: Default::default(),
            db_roles: Vec::new(),
            break_glass_max_duration: Duration::from_secs(3600),
        }
    }

    fn request() -> AccessRequest {
        AccessRequest {
            id: "req_1".into(),
            requester: u("alice"),
            resource: ResourceName::parse("prod-db").unwrap(),
            role: RoleName::parse("write").unwrap(),
            reason: "INC-1".into(),
            ticket: None,
            duration_secs: 1800,
            start_at: None,
            status: RequestStatus::Pending,
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(600_000),
            decided_at: None,
            extends_grant: None,
            mfa_method: None,
            break_glass: false,
            acknowledged_by: None,
            acknowledged_at: None,
        }
    }

    #[test]
    fn one_person_in_both_groups_fills_only_one_stage() {
        let stages = [stage(&["db-owners"], 1), stage(&["security"], 1)];
        let p = count_approvals(&stages, &u("alice"), &[approver("carol", &["db-owners", "security"])]);
        assert!(!p.satisfied);
        let p = count_approvals(
            &stages,
            &u("alice"),
            &[approver("carol", &["db-owners", "security"]), approver("bob", &["db-owners"])],
        );
        assert!(p.satisfied, "carol moves to security so bob can fill db-owners: {p:?}");
        assert_eq!(p.stages[0].approved_by, vec![u("bob")]);
        assert_eq!(p.stages[1].approved_by, vec![u("carol")]);
    }

    #[test]
    fn the_requester_never_counts_and_m_of_n_needs_distinct_people() {
        let stages = [stage(&["db-owners"], 2)];
        let p = count_approvals(
            &stages,
            &u("alice"),
            &[approver("alice", &["db-owners"]), approver("bob", &["db-owners"])],
        );
        assert!(!p.satisfied);
        let p = count_approvals(
            &stages,
            &u("alice"),
            &[approver("bob", &["db-owners"]), approver("dave", &["db-owners"])],
        );
        assert!(p.satisfied);
    }

    #[test]
    fn self_review_is_refused_even_for_an_approver() {
        let r = request();
        let err = r
            .review(
                &two_stage_policy(),
                &[],
                &[],
                ReviewInput {
                    reviewer: &approver("alice", &["db-owners"]),
                    decision: Decision::Approve,
                    comment: "",
                },
                Timestamp::from_millis(1),
            )
            .unwrap_err();
        assert_eq!(err, DomainError::SelfApprovalForbidden);
    }

    #[test]
    fn two_stages_need_both_and_a_second_review_by_one_person_is_refused() {
        let r = request();
        let p = two_stage_policy();
        let now = Timestamp::from_millis(1);
        let bob = approver("bob", &["db-owners"]);
        let first = r
            .review(
                &p,
                &[],
                &[],
                ReviewInput {
                    reviewer: &bob,
                    decision: Decision::Approve,
                    comment: "ok",
                },
                now,
            )
            .unwrap();
        assert_eq!(first.new_status, RequestStatus::Pending);
        assert_eq!(first.review.stage, Some(0));
        let again = r.review(
            &p,
            std::slice::from_ref(&first.review),
            std::slice::from_ref(&bob),
            ReviewInput {
                reviewer: &bob,
                decision: Decision::Approve,
                comment: "",
            },
            now,
        );
        assert_eq!(again.unwrap_err(), DomainError::AlreadyReviewed);
        let sec = approver("sam", &["security"]);
        let second = r
            .review(
                &p,
                &[first.review],
                &[bob],
                ReviewInput {
                    reviewer: &sec,
                    decision: Decision::Approve,
                    comment: "",
                },
                now,
            )
            .unwrap();
        assert_eq!(second.new_status, RequestStatus::Approved);
        assert_eq!(second.review.stage, Some(1));
    }

    #[test]
    fn outsiders_cannot_review_and_a_deny_ends_the_request() {
        let r = request();
        let p = two_stage_policy();
        let now = Timestamp::from_millis(1);
        let err = r
            .review(
                &p,
                &[],
                &[],
                ReviewInput {
                    reviewer: &approver("eve", &["sales"]),
                    decision: Decision::Deny,
                    comment: "",
                },
                now,
            )
            .unwrap_err();
        assert_eq!(err, DomainError::NotAnApprover);
        let out = r
            .review(
                &p,
                &[],
                &[],
                ReviewInput {
                    reviewer: &approver("sam", &["security"]),
                    decision: Decision::Deny,
                    comment: "no",
                },
                now,
            )
            .unwrap();
        assert_eq!(out.new_status, RequestStatus::Denied);
    }

    #[test]
    fn reviews_after_the_deadline_or_decision_are_refused() {
        let mut r = request();
        let p = two_stage_policy();
        let late = r.review(
            &p,
            &[],
            &[],
            ReviewInput {
                reviewer: &approver("bob", &["db-owners"]),
                decision: Decision::Approve,
                comment: "",
            },
            Timestamp::from_millis(600_000),
        );
        assert_eq!(late.unwrap_err().code(), "request_not_pending");
        r.status = RequestStatus::Cancelled;
        let done = r.review(
            &p,
            &[],
            &[],
            ReviewInput {
                reviewer: &approver("bob", &["db-owners"]),
                decision: Decision::Approve,
                comment: "",
            },
            Timestamp::from_millis(1),
        );
        assert_eq!(
            done.unwrap_err(),
            DomainError::RequestNotPending {
                status: "cancelled".into()
            }
        );
    }

    #[test]
    fn only_the_requester_cancels() {
        let r = request();
        assert_eq!(
            r.cancel(&u("bob"), Timestamp::from_millis(1)).unwrap_err(),
            DomainError::NotRequester
        );
        assert!(r.cancel(&u("alice"), Timestamp::from_millis(1)).is_ok());
    }
}
