//! Policy decisions with Cedar. Each resource's roles become Cedar policies of their own (who
//! may request, who may approve for which stage), whether the resource comes from the config
//! file or the API, and the operator's `*.cedar` files add to them: more permits (automatic approval in working hours, on-call break-glass) and forbids,
//! which override every permit. Everything is validated against the schema jitgate ships
//! (`schema.cedarschema`); a decision names the policies that made it.
//!
//! No I/O and no clock: files come in as text, time as a parameter.

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use jitgate_core::names::{GroupName, RoleName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::Timestamp;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The schema policies are checked against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    Request,
    Approve,
    AutoApprove,
    BreakGlass,
    Connect,
}

impl PolicyAction {
    pub const ALL: [Self; 5] = [Self::Request, Self::Approve, Self::AutoApprove, Self::BreakGlass, Self::Connect];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Approve => "approve",
            Self::AutoApprove => "auto_approve",
            Self::BreakGlass => "break_glass",
            Self::Connect => "connect",
        }
    }
}

/// A policy file as read: its name (for messages) and text.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub name: String,
    pub text: String,
}

/// One thing wrong with the policies, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyProblem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// What the policies say about one action, and which policies said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The ids of the policies that decided: the permits that allowed, or the forbids that
    /// denied (empty when nothing permitted).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they count as not applying).
    pub errors: Vec<String>,
}

/// The person an action is about.
#[derive(Debug, Clone)]
pub struct Person<'a> {
    pub name: &'a Username,
    pub groups: &'a BTreeSet<GroupName>,
    pub is_admin: bool,
}

/// For `approve`: the request under review.
#[derive(Debug, Clone)]
pub struct UnderReview<'a> {
    pub id: &'a str,
    pub requester: Person<'a>,
    /// The stage the approval would count for.
    pub stage: &'a str,
}

/// Everything a decision may look at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub principal: Person<'a>,
    pub resource: &'a Resource,
    pub role: &'a RoleName,
    pub duration: Duration,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    /// The principal's live grants, as "RESOURCE/ROLE".
    pub active_grants: &'a BTreeSet<String>,
    pub on_call: bool,
    /// The moment `context.utc` and `context.local` describe: when the access begins for
    /// `request`, `auto_approve`, `break_glass` and `connect`; the review for `approve`.
    pub now: Timestamp,
    /// When the access begins and ends (`context.start`, `context.end`); `None`: from `now`
    /// for `duration`.
    pub window: Option<(Timestamp, Timestamp)>,
    pub review: Option<UnderReview<'a>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct LoadError(pub Vec<PolicyProblem>);

/// Decisions share what they are prepared with when their resource, action and the
/// principal's groups are the same.
type PreparedKey = (String, PolicyAction, Vec<GroupName>);

/// Entries kept before the cache starts afresh (a bound on memory, far above the number of
/// resources × actions × distinct group sets of an ordinary organisation).
const PREPARED_CAP: usize = 50_000;

/// What every decision about one resource and action shares, built once.
struct Prepared {
    spec: Resource,
    policies: PolicySet,
    /// The Resource entity and one Role entity per role (attributes evaluated once).
    resource_entity: Entity,
    role_entities: HashMap<String, Entity>,
}

pub struct PolicyEngine {
    /// The policies from the files, validated.
    policies: PolicySet,
    time_zone: jiff::tz::TimeZone,
    time_zone_name: String,
    file_policy_ids: Vec<String>,
    /// Per resource and action: the file policies that can apply to it plus the ones its roles
    /// make, built when first needed or when the resource changed (resources change through
    /// the API and on other instances, so the spec is compared at each decision). Cedar
    /// evaluates every policy of a set; leaving out the ones whose scope cannot match keeps a
    /// decision's cost to the policies that concern it.
    per_resource: Mutex<HashMap<PreparedKey, Arc<Prepared>>>,
    authorizer: Authorizer,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.policies.policies().count())
            .field("time_zone", &self.time_zone_name)
            .finish()
    }
}

/// The schema's entity type names, parsed once: Cedar parses a name with its full grammar,
/// which costs more than the rest of a decision.
fn type_name(kind: &str) -> EntityTypeName {
    static NAMES: std::sync::OnceLock<HashMap<&'static str, EntityTypeName>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        ["User", "Group", "Resource", "Role", "Request", "Action"]
            .into_iter()
            .filter_map(|k| EntityTypeName::from_str(k).ok().map(|n| (k, n)))
            .collect()
    });
    names
        .get(kind)
        .cloned()
        .unwrap_or_else(|| unreachable!("entity types are the schema's: {kind}"))
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(kind), EntityId::new(id))
}

fn role_id(resource: &str, role: &str) -> String {
    format!("{resource}/{role}")
}

fn cedar_set(groups: &BTreeSet<GroupName>) -> String {
    groups.iter().map(|g| format!("Group::\"{g}\"")).collect::<Vec<_>>().join(", ")
}

/// A resource's roles as Cedar: requesters may `request`; each stage's groups may `approve`
/// for that stage. Ids: `role:RESOURCE/ROLE:request`, `role:RESOURCE/ROLE:approve:STAGE`.
pub fn role_policies(r: &Resource) -> String {
    let mut out = String::new();
    {
        for (role, p) in &r.roles {
            let rid = role_id(r.name.as_str(), role.as_str());
            out.push_str(&format!(
                "@id(\"role:{rid}:request\")\npermit(principal, action == Action::\"request\", resource == Role::\"{rid}\") when {{ principal in [{}] }};\n",
                cedar_set(&p.requesters)
            ));
            for (i, s) in p.stages.iter().enumerate() {
                let stage = stage_name(&s.name, i);
                out.push_str(&format!(
                    "@id(\"role:{rid}:approve:{stage}\")\npermit(principal, action == Action::\"approve\", resource in Role::\"{rid}\") when {{ context.stage == \"{stage}\" && principal in [{}] }};\n",
                    cedar_set(&s.groups)
                ));
            }
        }
    }
    out
}

/// A stage's name as policies and progress show it.
pub fn stage_name(name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("stage {}", index + 1)
    } else {
        name.to_owned()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}

/// Problems from a Cedar diagnostic, each at the first label's place in `text`.
fn problems(file: &str, text: &str, d: &dyn miette::Diagnostic) -> PolicyProblem {
    let offset = d.labels().and_then(|mut l| l.next()).map_or(0, |l| l.offset());
    let (line, column) = line_col(text, offset);
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message.push_str(&format!(" ({help})"));
    }
    PolicyProblem {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

impl PolicyEngine {
    /// Builds the engine from the policy files, validating them against the schema. Every
    /// problem is reported, each with its file, line and column.
    pub fn load(files: &[PolicyFile], time_zone: &str) -> Result<Self, LoadError> {
        let tz = jiff::tz::TimeZone::get(time_zone).map_err(|e| {
            LoadError(vec![PolicyProblem {
                file: "config".into(),
                line: 0,
                column: 0,
                message: format!("policy time zone '{time_zone}': {e}"),
            }])
        })?;
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA).map_err(|e| {
            LoadError(vec![PolicyProblem {
                file: "schema.cedarschema".into(),
                line: 0,
                column: 0,
                message: e.to_string(),
            }])
        })?;
        let mut all = PolicySet::new();
        let mut problems_found = Vec::new();
        let mut file_policy_ids = Vec::new();
        let mut origin: HashMap<String, usize> = HashMap::new();
        for (file_index, file) in files.iter().enumerate() {
            let parsed = match PolicySet::from_str(&file.text) {
                Ok(p) => p,
                Err(e) => {
                    problems_found.push(problems(&file.name, &file.text, &e));
                    continue;
                }
            };
            for (n, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{}#{}", file.name, n + 1), str::to_owned);
                if id.starts_with("role:") || all.add(policy.new_id(PolicyId::new(&id))).is_err() {
                    problems_found.push(PolicyProblem {
                        file: file.name.clone(),
                        line: 0,
                        column: 0,
                        message: format!("policy id '{id}' is used twice (or taken: ids starting 'role:' are jitgate's)"),
                    });
                    continue;
                }
                origin.insert(id.clone(), file_index);
                file_policy_ids.push(id);
            }
        }
        let validation = Validator::new(schema).validate(&all, ValidationMode::Strict);
        for e in validation.validation_errors() {
            if let Some(file) = origin.get(e.policy_id().to_string().as_str()).map(|&i| &files[i]) {
                problems_found.push(problems(&file.name, &file.text, e));
            }
        }
        if !problems_found.is_empty() {
            return Err(LoadError(problems_found));
        }
        Ok(Self {
            policies: all,
            time_zone: tz,
            time_zone_name: time_zone.to_owned(),
            file_policy_ids,
            per_resource: Mutex::new(HashMap::new()),
            authorizer: Authorizer::new(),
        })
    }

    /// What decides `action` about `resource`, built on first use or when the resource changed.
    fn prepared(&self, resource: &Resource, action: PolicyAction, groups: &BTreeSet<GroupName>) -> Result<Arc<Prepared>, String> {
        let key = (resource.name.to_string(), action, groups.iter().cloned().collect());
        let mut cache = self.per_resource.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = cache.get(&key) {
            if &p.spec == resource {
                return Ok(p.clone());
            }
        }
        let action_uid = uid("Action", action.as_str());
        let resource_uid = uid("Resource", resource.name.as_str());
        let mut policies = PolicySet::new();
        let generated = PolicySet::from_str(&role_policies(resource)).map_err(|e| e.to_string())?;
        for p in self.policies.policies() {
            if may_apply(p, &action_uid, &resource_uid, resource) && principal_may_match(p, groups) {
                policies.add(p.clone()).map_err(|e| e.to_string())?;
            }
        }
        for p in generated.policies() {
            let id = p.annotation("id").unwrap_or_default().to_owned();
            if may_apply(p, &action_uid, &resource_uid, resource) {
                policies.add(p.new_id(PolicyId::new(id))).map_err(|e| e.to_string())?;
            }
        }
        let name = resource.name.as_str();
        let resource_entity = Entity::new(
            resource_uid.clone(),
            HashMap::from([
                ("name".to_owned(), RestrictedExpression::new_string(name.to_owned())),
                ("kind".to_owned(), RestrictedExpression::new_string(resource.kind.clone())),
            ]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let mut role_entities = HashMap::new();
        for (role, p) in &resource.roles {
            let rid = role_id(name, role.as_str());
            let e = Entity::new(
                uid("Role", &rid),
                HashMap::from([
                    ("name".to_owned(), RestrictedExpression::new_string(role.to_string())),
                    ("resource".to_owned(), RestrictedExpression::new_string(name.to_owned())),
                    (
                        "max_duration_secs".to_owned(),
                        RestrictedExpression::new_long(secs(p.max_duration.as_secs())),
                    ),
                ]),
                HashSet::from([resource_uid.clone()]),
            )
            .map_err(|e| e.to_string())?;
            role_entities.insert(role.to_string(), e);
        }
        let prepared = Arc::new(Prepared {
            spec: resource.clone(),
            policies,
            resource_entity,
            role_entities,
        });
        if cache.len() >= PREPARED_CAP {
            cache.clear();
        }
        cache.insert(key, prepared.clone());
        Ok(prepared)
    }

    pub fn time_zone(&self) -> &str {
        &self.time_zone_name
    }

    pub fn policy_ids(&self) -> &[String] {
        &self.file_policy_ids
    }

    /// Policies from files.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    fn clock(&self, now: Timestamp, tz: &jiff::tz::TimeZone) -> RestrictedExpression {
        let ts = jiff::Timestamp::from_millisecond(now.as_millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let dt = ts.to_zoned(tz.clone()).datetime();
        let weekday = dt.weekday();
        let day = format!("{weekday:?}");
        record([
            ("hour", RestrictedExpression::new_long(i64::from(dt.hour()))),
            ("minute", RestrictedExpression::new_long(i64::from(dt.minute()))),
            ("weekday", RestrictedExpression::new_long(i64::from(weekday.to_monday_one_offset()))),
            ("day", RestrictedExpression::new_string(day)),
            ("date", RestrictedExpression::new_string(dt.date().to_string())),
        ])
    }

    /// A moment in both clocks, and as Unix seconds for arithmetic.
    fn moment(&self, at: Timestamp) -> RestrictedExpression {
        record([
            ("utc", self.clock(at, &jiff::tz::TimeZone::UTC)),
            ("local", self.clock(at, &self.time_zone)),
            ("unix_secs", RestrictedExpression::new_long(at.as_millis().div_euclid(1000))),
        ])
    }

    fn person(p: &Person<'_>) -> Entity {
        let attrs = HashMap::from([
            ("name".to_owned(), RestrictedExpression::new_string(p.name.to_string())),
            ("is_admin".to_owned(), RestrictedExpression::new_bool(p.is_admin)),
        ]);
        let parents: HashSet<EntityUid> = p.groups.iter().map(|g| uid("Group", g.as_str())).collect();
        Entity::new(uid("User", p.name.as_str()), attrs, parents)
            .unwrap_or_else(|_| Entity::new_no_attrs(uid("User", p.name.as_str()), HashSet::new()))
    }

    /// What the policies say about `action` on these facts.
    pub fn decide(&self, action: PolicyAction, facts: &Facts<'_>) -> Decision {
        match self.try_decide(action, facts) {
            Ok(d) => d,
            // Fail closed: a request the schema refuses is a denial, with the reason.
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e],
            },
        }
    }

    fn try_decide(&self, action: PolicyAction, facts: &Facts<'_>) -> Result<Decision, String> {
        let prepared = self.prepared(facts.resource, action, facts.principal.groups)?;
        let rid = role_id(facts.resource.name.as_str(), facts.role.as_str());
        let role_entity = prepared
            .role_entities
            .get(facts.role.as_str())
            .ok_or_else(|| format!("no role {rid}"))?;
        // Groups need no entities of their own: `principal in Group::"x"` looks at the
        // principal's parents.
        let mut entities = vec![
            Self::person(&facts.principal),
            prepared.resource_entity.clone(),
            role_entity.clone(),
        ];
        let (resource_uid, stage) = match &facts.review {
            Some(r) => {
                entities.push(
                    Entity::new(
                        uid("Request", r.id),
                        HashMap::from([
                            (
                                "requester".to_owned(),
                                RestrictedExpression::new_entity_uid(uid("User", r.requester.name.as_str())),
                            ),
                            (
                                "duration_secs".to_owned(),
                                RestrictedExpression::new_long(secs(facts.duration.as_secs())),
                            ),
                            ("reason".to_owned(), RestrictedExpression::new_string(facts.reason.to_owned())),
                            (
                                "ticket".to_owned(),
                                RestrictedExpression::new_string(facts.ticket.unwrap_or("").to_owned()),
                            ),
                        ]),
                        HashSet::from([uid("Role", &rid)]),
                    )
                    .map_err(|e| e.to_string())?,
                );
                if r.requester.name != facts.principal.name {
                    entities.push(Self::person(&r.requester));
                }
                (uid("Request", r.id), r.stage.to_owned())
            }
            None => (uid("Role", &rid), String::new()),
        };
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let (start, end) = facts
            .window
            .unwrap_or_else(|| (facts.now, facts.now.saturating_add(facts.duration)));
        let context = Context::from_pairs([
            (
                "duration_secs".to_owned(),
                RestrictedExpression::new_long(secs(facts.duration.as_secs())),
            ),
            ("reason".to_owned(), RestrictedExpression::new_string(facts.reason.to_owned())),
            (
                "ticket".to_owned(),
                RestrictedExpression::new_string(facts.ticket.unwrap_or("").to_owned()),
            ),
            (
                "groups".to_owned(),
                RestrictedExpression::new_set(
                    facts
                        .principal
                        .groups
                        .iter()
                        .map(|g| RestrictedExpression::new_string(g.to_string())),
                ),
            ),
            (
                "active_grants".to_owned(),
                RestrictedExpression::new_set(facts.active_grants.iter().map(|g| RestrictedExpression::new_string(g.clone()))),
            ),
            ("on_call".to_owned(), RestrictedExpression::new_bool(facts.on_call)),
            ("utc".to_owned(), self.clock(facts.now, &jiff::tz::TimeZone::UTC)),
            ("local".to_owned(), self.clock(facts.now, &self.time_zone)),
            ("start".to_owned(), self.moment(start)),
            ("end".to_owned(), self.moment(end)),
            ("stage".to_owned(), RestrictedExpression::new_string(stage)),
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            uid("User", facts.principal.name.as_str()),
            uid("Action", action.as_str()),
            resource_uid,
            context,
            // The context is built here to the schema's shape, and the policies were
            // validated against it; checking each request again would double its cost.
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = self.authorizer.is_authorized(&request, &prepared.policies, &entities);
        let mut policies: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        policies.sort();
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow,
            policies,
            errors: response.diagnostics().errors().map(ToString::to_string).collect(),
        })
    }
}

/// Whether `policy`'s scope can match `action` on a role of `resource`: false only when its
/// action or its resource scope names something else. Conservative: anything not certain to
/// miss stays in.
fn may_apply(policy: &cedar_policy::Policy, action: &EntityUid, resource_uid: &EntityUid, resource: &Resource) -> bool {
    use cedar_policy::{ActionConstraint, ResourceConstraint};
    let action_ok = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => &a == action,
        ActionConstraint::In(list) => list.contains(action),
    };
    let target = match policy.resource_constraint() {
        ResourceConstraint::Eq(x) | ResourceConstraint::In(x) | ResourceConstraint::IsIn(_, x) => Some(x),
        _ => None,
    };
    let resource_ok = match target {
        Some(x) if x.type_name().to_string() == "Resource" => &x == resource_uid,
        Some(x) if x.type_name().to_string() == "Role" => {
            let id: &str = x.id().as_ref();
            id.split_once('/')
                .is_some_and(|(res, role)| res == resource.name.as_str() && resource.roles.keys().any(|r| r.as_str() == role))
        }
        _ => true,
    };
    action_ok && resource_ok
}

/// Whether `policy`'s principal scope can match someone in `groups`: false only for a scope
/// `principal in Group::"g"` with `g` not among them.
fn principal_may_match(policy: &cedar_policy::Policy, groups: &BTreeSet<GroupName>) -> bool {
    use cedar_policy::PrincipalConstraint;
    match policy.principal_constraint() {
        PrincipalConstraint::In(x) | PrincipalConstraint::IsIn(_, x) if x.type_name().to_string() == "Group" => {
            let id: &str = x.id().as_ref();
            groups.iter().any(|g| g.as_str() == id)
        }
        _ => true,
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn record<const N: usize>(fields: [(&str, RestrictedExpression); N]) -> RestrictedExpression {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap_or_else(|_| unreachable!("distinct keys"))
}

#[cfg(test)]
mod tests;
