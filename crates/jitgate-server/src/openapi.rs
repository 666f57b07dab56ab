//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`: every endpoint with its method,
//! purpose, request and response schema and error shape. The integration tests call each listed
//! endpoint (so the list cannot name a route the server does not have) and check real answers
//! against these schemas (so the schemas cannot drift from the types).

use serde_json::{json, Map, Value};

/// One endpoint: method, path under /api/v1, summary, needs a session, request body schema,
/// response schema (`[X]` an array of X, empty for none).
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: bool,
    pub body: Option<&'static str>,
    pub response: &'static str,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    body: Option<&'static str>,
    response: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path,
        summary,
        auth,
        body,
        response,
    }
}

pub const ENDPOINTS: &[Endpoint] = &[
    ep(
        "post",
        "/bootstrap",
        "Exchange the one-time setup token for the first administrator and a session",
        false,
        Some("BootstrapBody"),
        "SessionToken",
    ),
    ep(
        "post",
        "/login",
        "Log in with user name and password (and a second factor, if given); returns a session, or a ticket when a second factor is due",
        false,
        Some("LoginBody"),
        "LoginOutcome",
    ),
    ep(
        "post",
        "/login/mfa",
        "Finish a login with its ticket and a second factor",
        false,
        Some("LoginMfaBody"),
        "SessionToken",
    ),
    ep(
        "post",
        "/login/webauthn",
        "A WebAuthn challenge for the user behind a login ticket",
        false,
        Some("TicketBody"),
        "WebauthnChallenge",
    ),
    ep(
        "get",
        "/mfa",
        "This person's second factors and how fresh the session's last one is",
        true,
        None,
        "MfaStatus",
    ),
    ep(
        "post",
        "/mfa/verify",
        "Step up: prove a second factor now; it counts for the freshness window",
        true,
        Some("MfaProof"),
        "SteppedUp",
    ),
    ep(
        "post",
        "/mfa/totp",
        "Start a TOTP enrolment: secret, otpauth URI and QR code (SVG)",
        true,
        None,
        "TotpEnrolment",
    ),
    ep(
        "delete",
        "/mfa/totp",
        "Remove the TOTP factor (needs a fresh second factor)",
        true,
        None,
        "",
    ),
    ep(
        "post",
        "/mfa/totp/confirm",
        "Activate a TOTP enrolment with its first code; the first factor brings recovery codes",
        true,
        Some("CodeBody"),
        "FactorAdded",
    ),
    ep(
        "post",
        "/mfa/recovery-codes",
        "A new set of ten recovery codes, voiding the old set (needs a fresh second factor)",
        true,
        None,
        "RecoveryCodes",
    ),
    ep(
        "post",
        "/mfa/webauthn/challenge",
        "A WebAuthn challenge for a step-up or an action",
        true,
        None,
        "WebauthnChallenge",
    ),
    ep(
        "post",
        "/mfa/webauthn/register",
        "Start registering a passkey or security key",
        true,
        Some("PasskeyStartBody"),
        "WebauthnChallenge",
    ),
    ep(
        "post",
        "/mfa/webauthn/register/finish",
        "Finish registering a passkey with the authenticator's answer",
        true,
        Some("PasskeyFinishBody"),
        "FactorAdded",
    ),
    ep(
        "delete",
        "/mfa/webauthn/{id}",
        "Remove a passkey (needs a fresh second factor)",
        true,
        None,
        "",
    ),
    ep("post", "/logout", "End this session", true, None, ""),
    ep(
        "get",
        "/whoami",
        "The logged-in person, their groups and session expiry",
        true,
        None,
        "WhoAmI",
    ),
    ep(
        "get",
        "/resources",
        "Resources and their roles and policies",
        true,
        None,
        "[ResourceView]",
    ),
    ep(
        "get",
        "/requests",
        "List requests: scope=mine|review|all, status, resource, limit",
        true,
        None,
        "[RequestView]",
    ),
    ep(
        "post",
        "/requests",
        "Ask for a role on a resource for a time, with a reason",
        true,
        Some("CreateRequestBody"),
        "AccessRequest",
    ),
    ep(
        "get",
        "/requests/{id}",
        "A request with its reviews, approval progress, grant and history",
        true,
        None,
        "RequestDetail",
    ),
    ep(
        "post",
        "/requests/{id}/approve",
        "Approve a request (not your own)",
        true,
        Some("ReviewBody"),
        "RequestDetail",
    ),
    ep(
        "post",
        "/requests/{id}/deny",
        "Deny a request; an eligible approver's deny ends it",
        true,
        Some("ReviewBody"),
        "RequestDetail",
    ),
    ep(
        "post",
        "/requests/{id}/cancel",
        "Cancel your own pending request",
        true,
        None,
        "AccessRequest",
    ),
    ep(
        "get",
        "/grants",
        "List grants: scope=mine|all, status, resource, limit",
        true,
        None,
        "[Grant]",
    ),
    ep("get", "/grants/{id}", "One grant", true, None, "Grant"),
    ep(
        "post",
        "/grants/{id}/revoke",
        "Revoke a grant early, with a reason",
        true,
        Some("RevokeBody"),
        "Grant",
    ),
    ep(
        "get",
        "/audit/events",
        "Audit events after a sequence number (after, limit)",
        true,
        None,
        "AuditPage",
    ),
    ep(
        "get",
        "/audit/checkpoints",
        "Signed checkpoints of the audit chain",
        true,
        None,
        "CheckpointList",
    ),
    ep(
        "get",
        "/audit/verify",
        "Verify the live audit chain and its checkpoints",
        true,
        None,
        "VerifyOutcome",
    ),
    ep(
        "get",
        "/audit/status",
        "The audit log's head, newest checkpoint and witnesses",
        true,
        None,
        "AuditStatus",
    ),
    ep(
        "get",
        "/audit/head",
        "The committed head, signed with the audit key, for an export to end at",
        true,
        None,
        "SignedHead",
    ),
    ep(
        "get",
        "/audit/public-key",
        "The Ed25519 key that signs audit checkpoints",
        true,
        None,
        "AuditKey",
    ),
    ep("get", "/admin/users", "List users", true, None, "[UserView]"),
    ep("post", "/admin/users", "Create a user", true, Some("CreateUserBody"), "UserView"),
    ep(
        "post",
        "/admin/users/{name}/disable",
        "Disable a user: ends their sessions and revokes their grants",
        true,
        None,
        "UserView",
    ),
    ep("post", "/admin/users/{name}/enable", "Enable a user", true, None, "UserView"),
    ep(
        "post",
        "/requests/{id}/ack",
        "Acknowledge a break-glass grant after the fact (someone who approves for the role)",
        true,
        Some("AckBody"),
        "AccessRequest",
    ),
    ep(
        "get",
        "/notifications",
        "Your alerts (break-glass on resources you approve for), newest first; limit",
        true,
        None,
        "[NotificationView]",
    ),
    ep(
        "post",
        "/connect",
        "A one-time token (good for a minute) to open one session through the PostgreSQL gateway on a live grant",
        true,
        Some("ConnectBody"),
        "ConnectToken",
    ),
    ep(
        "get",
        "/sessions",
        "Gateway sessions: yours, or all=true (admins, audit readers); live=true for open ones",
        true,
        None,
        "[DbSessionView]",
    ),
    ep("post", "/sessions/{id}/kill", "End a live gateway session (admins)", true, None, ""),
    ep(
        "post",
        "/policy/explain",
        "Each action's policy decision for a person, role and duration, with the deciding policy ids",
        true,
        Some("ExplainBody"),
        "Explanation",
    ),
    ep(
        "post",
        "/admin/reload",
        "Reload the Cedar policy files; a bad set is refused and the last good one stays",
        true,
        None,
        "PolicyReport",
    ),
    ep(
        "post",
        "/admin/users/{name}/unlock",
        "Lift an account's attempt limit or lock (admins)",
        true,
        None,
        "",
    ),
    ep(
        "post",
        "/admin/users/{name}/password",
        "Set a password (admins, or a person for themselves)",
        true,
        Some("PasswordBody"),
        "",
    ),
    ep("get", "/admin/groups", "Groups and members", true, None, "[GroupView]"),
    ep(
        "put",
        "/admin/groups/{group}/members/{user}",
        "Add a member",
        true,
        None,
        "GroupView",
    ),
    ep(
        "delete",
        "/admin/groups/{group}/members/{user}",
        "Remove a member",
        true,
        None,
        "GroupView",
    ),
    ep(
        "put",
        "/admin/resources/{name}",
        "Create or replace a resource (not one from the config file)",
        true,
        Some("Resource"),
        "ResourceView",
    ),
    ep(
        "delete",
        "/admin/resources/{name}",
        "Delete a resource (not one from the config file)",
        true,
        None,
        "",
    ),
    ep(
        "put",
        "/admin/resources/{name}/credential",
        "Store an upstream password, sealed: the service login's, or with ?role= that role's own login's (admins)",
        true,
        Some("PasswordBody"),
        "",
    ),
    ep(
        "delete",
        "/admin/resources/{name}/credential",
        "Remove a stored upstream password (?role= as for storing; admins)",
        true,
        None,
        "",
    ),
    ep(
        "get",
        "/admin/resources/{name}/check",
        "What each role's upstream login can really do: attributes, memberships, refusals (admins)",
        true,
        None,
        "ResourceCheck",
    ),
    ep("get", "/openapi.json", "This document", false, None, ""),
];

/// Object schemas as (field, type) lists. Types: `string`, `integer`, `boolean`, `time`
/// (RFC 3339), `any`, `#Name` (another schema), `[T]` (array), `{T}` (map of T). A type ending
/// in `?` may be null and may be absent; a field starting with `-` may be absent.
const SCHEMAS: &[(&str, &[(&str, &str)])] = &[
    ("Error", &[("error", "#ErrorDetail")]),
    ("ErrorDetail", &[("code", "string"), ("message", "string")]),
    (
        "LoginBody",
        &[("username", "string"), ("password", "string"), ("-mfa", "#MfaProof")],
    ),
    (
        "BootstrapBody",
        &[("setup_token", "string"), ("username", "string"), ("password", "string")],
    ),
    (
        "SessionToken",
        &[("token", "string"), ("username", "string"), ("expires_at", "time")],
    ),
    (
        "WhoAmI",
        &[
            ("username", "string"),
            ("display_name", "string"),
            ("is_admin", "boolean"),
            ("groups", "[string]"),
            ("session_expires_at", "time"),
        ],
    ),
    (
        "CreateRequestBody",
        &[
            ("resource", "string"),
            ("role", "string"),
            ("-reason", "string"),
            ("ticket", "string?"),
            ("duration", "string?"),
            ("start_at", "time?"),
            ("extends", "string?"),
            ("-mfa", "#MfaProof"),
            ("-break_glass", "boolean"),
        ],
    ),
    (
        "AccessRequest",
        &[
            ("id", "string"),
            ("requester", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("reason", "string"),
            ("ticket", "string?"),
            ("duration_secs", "integer"),
            ("start_at", "time?"),
            ("status", "string"),
            ("created_at", "time"),
            ("expires_at", "time"),
            ("decided_at", "time?"),
            ("extends_grant", "string?"),
            ("mfa_method", "string?"),
            ("break_glass", "boolean"),
            ("acknowledged_by", "string?"),
            ("acknowledged_at", "time?"),
        ],
    ),
    (
        "RequestView",
        &[
            ("id", "string"),
            ("requester", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("reason", "string"),
            ("ticket", "string?"),
            ("duration_secs", "integer"),
            ("start_at", "time?"),
            ("status", "string"),
            ("created_at", "time"),
            ("expires_at", "time"),
            ("decided_at", "time?"),
            ("extends_grant", "string?"),
            ("mfa_method", "string?"),
            ("break_glass", "boolean"),
            ("acknowledged_by", "string?"),
            ("acknowledged_at", "time?"),
            ("grant_id", "string?"),
        ],
    ),
    (
        "Review",
        &[
            ("request_id", "string"),
            ("reviewer", "string"),
            ("decision", "string"),
            ("comment", "string"),
            ("stage", "integer?"),
            ("mfa_method", "string?"),
            ("created_at", "time"),
        ],
    ),
    (
        "StageProgress",
        &[("name", "string"), ("needed", "integer"), ("approved_by", "[string]")],
    ),
    ("Progress", &[("stages", "[#StageProgress]"), ("satisfied", "boolean")]),
    (
        "Grant",
        &[
            ("id", "string"),
            ("request_id", "string"),
            ("user", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("starts_at", "time"),
            ("ends_at", "time"),
            ("status", "string"),
            ("created_at", "time"),
            ("revoked_at", "time?"),
            ("revoked_by", "string?"),
            ("revoke_reason", "string?"),
            ("-db_role", "string"),
        ],
    ),
    (
        "RequestDetail",
        &[
            ("request", "#AccessRequest"),
            ("reviews", "[#Review]"),
            ("progress", "#Progress"),
            ("grant", "#Grant?"),
            ("history", "[#AuditEvent]"),
        ],
    ),
    ("ReviewBody", &[("-comment", "string"), ("-mfa", "#MfaProof")]),
    (
        "MfaProof",
        &[
            ("-otp", "string"),
            ("-recovery_code", "string"),
            ("-webauthn", "#WebauthnAssertion"),
        ],
    ),
    ("WebauthnAssertion", &[("challenge_id", "string"), ("credential", "any")]),
    (
        "LoginOutcome",
        &[
            ("status", "string"),
            ("-token", "string"),
            ("-username", "string"),
            ("-ticket", "string"),
            ("-methods", "[string]"),
            ("expires_at", "time"),
        ],
    ),
    ("LoginMfaBody", &[("ticket", "string"), ("mfa", "#MfaProof")]),
    ("TicketBody", &[("ticket", "string")]),
    (
        "WebauthnChallenge",
        &[("challenge_id", "string"), ("options", "any"), ("expires_at", "time")],
    ),
    (
        "PasskeyView",
        &[
            ("id", "string"),
            ("name", "string"),
            ("created_at", "time"),
            ("last_used_at", "time?"),
        ],
    ),
    (
        "MfaStatus",
        &[
            ("totp", "boolean"),
            ("totp_pending", "boolean"),
            ("passkeys", "[#PasskeyView]"),
            ("recovery_codes_left", "integer"),
            ("fresh_until", "time?"),
            ("required", "boolean"),
        ],
    ),
    (
        "TotpEnrolment",
        &[
            ("secret", "string"),
            ("otpauth_uri", "string"),
            ("qr_svg", "string"),
            ("algorithm", "string"),
            ("digits", "integer"),
            ("period_secs", "integer"),
        ],
    ),
    ("CodeBody", &[("code", "string")]),
    (
        "FactorAdded",
        &[("method", "string"), ("recovery_codes", "[string]?"), ("passkey", "#PasskeyView?")],
    ),
    ("RecoveryCodes", &[("codes", "[string]")]),
    ("PasskeyStartBody", &[("name", "string")]),
    ("PasskeyFinishBody", &[("challenge_id", "string"), ("credential", "any")]),
    ("SteppedUp", &[("method", "string"), ("fresh_until", "time")]),
    (
        "ExplainBody",
        &[
            ("user", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("duration", "string?"),
            ("at", "time?"),
            ("-reason", "string"),
            ("ticket", "string?"),
        ],
    ),
    (
        "ActionDecision",
        &[
            ("action", "string"),
            ("stage", "string?"),
            ("allowed", "boolean"),
            ("policies", "[string]"),
            ("errors", "[string]"),
        ],
    ),
    (
        "Explanation",
        &[
            ("user", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("at", "time"),
            ("time_zone", "string"),
            ("on_call", "boolean"),
            ("decisions", "[#ActionDecision]"),
        ],
    ),
    ("PolicyReport", &[("policies", "[string]"), ("time_zone", "string")]),
    ("ConnectBody", &[("resource", "string"), ("role", "string?"), ("-mfa", "#MfaProof")]),
    (
        "ConnectToken",
        &[
            ("token", "string"),
            ("username", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("grant_id", "string"),
            ("expires_at", "time"),
            ("host", "string"),
            ("port", "integer"),
            ("dbname", "string"),
            ("uses", "integer"),
            ("gateway_ca_pem", "string?"),
            ("gateway_ca_sha256", "string?"),
        ],
    ),
    (
        "DbSessionView",
        &[
            ("id", "string"),
            ("grant_id", "string"),
            ("user", "string"),
            ("resource", "string"),
            ("role", "string"),
            ("peer", "string"),
            ("started_at", "time"),
            ("ended_at", "time?"),
            ("end_reason", "string?"),
            ("bytes_in", "integer"),
            ("bytes_out", "integer"),
            ("statements", "integer"),
        ],
    ),
    ("AckBody", &[("-comment", "string")]),
    (
        "NotificationView",
        &[
            ("id", "string"),
            ("kind", "string"),
            ("subject", "string"),
            ("message", "string"),
            ("created_at", "time"),
            ("-acknowledged_by", "string"),
            ("-acknowledged_at", "time"),
        ],
    ),
    ("RevokeBody", &[("reason", "string")]),
    (
        "AuditEvent",
        &[
            ("seq", "integer"),
            ("ts", "integer"),
            ("actor", "string"),
            ("action", "string"),
            ("target", "string"),
            ("outcome", "string"),
            ("details", "any"),
            ("prev_hash", "string"),
            ("hash", "string"),
        ],
    ),
    ("AuditPage", &[("events", "[#AuditEvent]"), ("head_seq", "integer")]),
    (
        "Checkpoint",
        &[
            ("seq", "integer"),
            ("hash", "string"),
            ("ts", "integer"),
            ("key_id", "string"),
            ("signature", "string"),
            ("-prev", "#CheckpointLink"),
            ("-next_key", "string"),
        ],
    ),
    ("CheckpointLink", &[("seq", "integer"), ("hash", "string")]),
    ("CheckpointList", &[("checkpoints", "[#Checkpoint]")]),
    (
        "VerifyReport",
        &[
            ("events", "integer"),
            ("last_seq", "integer"),
            ("last_hash", "string"),
            ("checkpoints", "integer"),
            ("last_checkpoint", "integer?"),
            ("witnessed", "integer?"),
            ("uncovered_from", "[integer]?"),
        ],
    ),
    (
        "AuditStatus",
        &[
            ("head_seq", "integer"),
            ("last_checkpoint_seq", "integer?"),
            ("last_checkpoint_at", "time?"),
            ("checkpoint_interval_ms", "integer"),
            ("key_id", "string"),
            ("witnesses", "[#WitnessStatus]"),
        ],
    ),
    (
        "WitnessStatus",
        &[
            ("witness", "string"),
            ("delivered_seq", "integer?"),
            ("behind", "integer"),
            ("failing_since", "time?"),
            ("last_error", "string?"),
        ],
    ),
    (
        "VerifyOutcome",
        &[
            ("ok", "boolean"),
            ("report", "#VerifyReport?"),
            ("first_bad_seq", "integer?"),
            ("problem", "string?"),
        ],
    ),
    ("AuditKey", &[("key_id", "string"), ("public_key", "string")]),
    (
        "SignedHead",
        &[
            ("seq", "integer"),
            ("hash", "string"),
            ("ts", "integer"),
            ("key_id", "string"),
            ("signature", "string"),
        ],
    ),
    (
        "CreateUserBody",
        &[
            ("username", "string"),
            ("-display_name", "string"),
            ("password", "string?"),
            ("-admin", "boolean"),
        ],
    ),
    ("PasswordBody", &[("password", "string")]),
    (
        "UserView",
        &[
            ("username", "string"),
            ("display_name", "string"),
            ("is_admin", "boolean"),
            ("disabled", "boolean"),
            ("has_password", "boolean"),
            ("groups", "[string]"),
            ("created_at", "time"),
        ],
    ),
    ("GroupView", &[("name", "string"), ("members", "[string]")]),
    (
        "ReasonRules",
        &[("-required", "boolean"), ("-min_length", "integer"), ("ticket_pattern", "string?")],
    ),
    (
        "Stage",
        &[("-name", "string"), ("groups", "[string]"), ("-min_approvals", "integer")],
    ),
    (
        "RolePolicy",
        &[
            ("requesters", "[string]"),
            ("stages", "[#Stage]"),
            ("-max_duration", "string"),
            ("-default_duration", "string"),
            ("-pending_ttl", "string"),
            ("-reason", "#ReasonRules"),
            ("-mfa", "[string]"),
            ("-break_glass_max_duration", "string"),
            ("-db_role", "string"),
            ("-login", "string"),
            ("-password_env", "string"),
            ("-allow_privileged_login", "boolean"),
            ("-access", "string"),
            ("-db_roles", "[string]"),
        ],
    ),
    (
        "ResourceCheck",
        &[("resource", "string"), ("service", "#LoginCheck"), ("roles", "[#RoleCheck]")],
    ),
    (
        "RoleCheck",
        &[
            ("role", "string"),
            ("access", "string"),
            ("login", "#LoginCheck"),
            ("allow_privileged_login", "boolean"),
            ("sessions_allowed", "boolean"),
        ],
    ),
    (
        "LoginCheck",
        &[
            ("name", "string"),
            ("reachable", "boolean"),
            ("-error", "string"),
            ("attributes", "[string]"),
            ("member_of", "[#MemberOf]"),
            ("privileges", "[string]"),
        ],
    ),
    ("MemberOf", &[("role", "string"), ("attributes", "[string]")]),
    (
        "Resource",
        &[
            ("name", "string"),
            ("-kind", "string"),
            ("-description", "string"),
            ("roles", "{#RolePolicy}"),
            ("-postgres", "#PostgresTarget"),
        ],
    ),
    (
        "PostgresTarget",
        &[
            ("-host", "string"),
            ("-port", "integer"),
            ("database", "string"),
            ("user", "string"),
            ("-password_env", "string?"),
            ("-record_statements", "boolean"),
            ("-sslmode", "string"),
            ("-sslrootcert", "string?"),
        ],
    ),
    (
        "ResourceView",
        &[
            ("name", "string"),
            ("kind", "string"),
            ("description", "string"),
            ("roles", "{#RolePolicy}"),
            ("-postgres", "#PostgresTarget"),
            ("managed_by", "string"),
            ("-upstream_credential", "string"),
        ],
    ),
];

fn type_schema(t: &str) -> Value {
    if let Some(inner) = t.strip_suffix('?') {
        return json!({"anyOf": [type_schema(inner), {"type": "null"}]});
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return json!({"type": "array", "items": type_schema(inner)});
    }
    if let Some(inner) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        return json!({"type": "object", "additionalProperties": type_schema(inner)});
    }
    if let Some(name) = t.strip_prefix('#') {
        return json!({"$ref": format!("#/components/schemas/{name}")});
    }
    match t {
        "time" => json!({"type": "string", "format": "date-time"}),
        "any" => json!({}),
        other => json!({"type": other}),
    }
}

fn object_schema(fields: &[(&str, &str)]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (field, t) in fields {
        let (name, optional) = match field.strip_prefix('-') {
            Some(n) => (n, true),
            None => (*field, t.ends_with('?')),
        };
        properties.insert(name.to_owned(), type_schema(t));
        if !optional {
            required.push(Value::from(name));
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// `X` → a reference to schema X; `[X]` → an array of them.
fn reference(schema: &str) -> Value {
    match schema.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => type_schema(&format!("[#{inner}]")),
        None => type_schema(&format!("#{schema}")),
    }
}

pub fn document() -> Value {
    let error = json!({"description": "Refused; nothing changed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let ok = if e.response.is_empty() {
            json!({"description": "Success"})
        } else {
            json!({"description": "Success", "content": {"application/json": {"schema": reference(e.response)}}})
        };
        let mut op = json!({"summary": e.summary, "responses": {"2XX": ok, "4XX": error, "503": error}});
        if e.auth {
            op["security"] = json!([{"bearer": []}]);
        }
        if let Some(body) = e.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
        }
        let params: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(format!("/api/v1{}", e.path)).or_insert_with(|| json!({}));
        entry[e.method] = op;
    }
    let schemas: Map<String, Value> = SCHEMAS
        .iter()
        .map(|(name, fields)| ((*name).to_owned(), object_schema(fields)))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "jitgate", "version": env!("CARGO_PKG_VERSION"), "description": "Just-in-time privileged access: requests, approvals, grants, audit."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas}
    })
}
