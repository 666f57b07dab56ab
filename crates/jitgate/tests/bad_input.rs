use crate::support::*;
use jitgate_client::{Client, ListParams};
use reqwest::Method;

async fn snapshot(s: &TestServer) -> (i64, usize, usize) {
    let all = ListParams {
        scope: Some("all".into()),
        limit: Some(1000),
        ..Default::default()
    };
    (
        s.audit_head().await,
        s.admin.requests(&all).await.unwrap().len(),
        s.admin.grants(&all).await.unwrap().len(),
    )
}

#[tokio::test]
async fn bad_requests_get_a_clear_code_and_change_nothing() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let before = snapshot(&s).await;
    let cases: Vec<(jitgate_api::CreateRequestBody, u16, &str)> = vec![
        (request_body("no-such-db", "read", None, "valid reason"), 404, "unknown_resource"),
        (request_body("Bad Name", "read", None, "valid reason"), 404, "unknown_resource"),
        (request_body("prod-db", "admin", None, "valid reason"), 404, "unknown_role"),
        (
            request_body("prod-db", "read", Some("2h"), "valid reason"),
            400,
            "duration_too_long",
        ),
        (
            request_body("prod-db", "read", Some("10s"), "valid reason"),
            400,
            "duration_too_short",
        ),
        (
            request_body("prod-db", "read", Some("forever"), "valid reason"),
            400,
            "invalid_duration",
        ),
        (request_body("prod-db", "read", None, ""), 400, "reason_required"),
        (request_body("prod-db", "read", None, "   "), 400, "reason_required"),
        (request_body("prod-db", "read", None, "abc"), 400, "reason_too_short"),
        (request_body("prod-db", "write", None, "valid reason"), 400, "ticket_required"),
    ];
    for (body, status, code) in cases {
        let err = alice.create_request(&body).await.unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(status), Some(code)), "{body:?}");
        assert!(!err.to_string().is_empty());
    }
    let mut bad_ticket = request_body("prod-db", "write", None, "valid reason");
    bad_ticket.ticket = Some("JIRA-1".into());
    assert_eq!(alice.create_request(&bad_ticket).await.unwrap_err().code(), Some("ticket_invalid"));
    let mut past = request_body("prod-db", "read", None, "valid reason");
    past.start_at = Some(jitgate_core::Timestamp::from_millis(0));
    assert_eq!(alice.create_request(&past).await.unwrap_err().code(), Some("start_in_past"));
    let after = snapshot(&s).await;
    assert_eq!(
        (after.1, after.2),
        (before.1, before.2),
        "no refused request left a request or grant"
    );
    // What was asked and refused is on the record, each once, as a failure (not a change).
    let events = s.admin.all_audit_events(before.0).await.unwrap();
    let refusals: Vec<_> = events.iter().filter(|e| e.seq > before.0).collect();
    assert_eq!(refusals.len() as i64, after.0 - before.0);
    assert!(
        refusals
            .iter()
            .all(|e| e.actor == "alice" && e.outcome == "failure" && e.details["code"].is_string()),
        "{refusals:?}"
    );
}

#[tokio::test]
async fn an_ineligible_requester_is_refused_and_the_refusal_is_audited() {
    let s = TestServer::spawn(false).await;
    let bob = s.login("bob").await; // bob is a db-owner, not an engineer
    let (head, reqs, grants) = snapshot(&s).await;
    let err = bob
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("not_eligible")));
    let (head2, reqs2, grants2) = snapshot(&s).await;
    assert_eq!((reqs2, grants2), (reqs, grants));
    assert_eq!(head2, head + 1, "one denied-authorization event");
}

#[tokio::test]
async fn malformed_oversized_and_unknown_input_is_refused_cleanly() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let before = snapshot(&s).await;
    let post = |body: &[u8], ct: &'static str| alice.raw(Method::POST, "/api/v1/requests", ct, body.to_vec());
    let (status, text) = post(b"{\"resource\": \"prod-db\", ", "application/json").await.unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("\"invalid_json\""), "{text}");
    let (status, text) = post(
        b"{\"resource\": \"prod-db\", \"role\": \"read\", \"reason\": \"valid\", \"surprise\": 1}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(status, 400, "unknown fields are refused: {text}");
    let (status, text) = post(b"[1,2,3]", "application/json").await.unwrap();
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(b"{}", "text/plain").await.unwrap();
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("unsupported_media_type"));
    let huge = format!(
        "{{\"resource\": \"prod-db\", \"role\": \"read\", \"reason\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let (status, text) = post(huge.as_bytes(), "application/json").await.unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");

    for (what, err) in [
        ("request", alice.request("req_doesnotexist").await.unwrap_err()),
        ("approve", alice.approve("req_doesnotexist", "").await.unwrap_err()),
        ("cancel", alice.cancel("req_doesnotexist").await.unwrap_err()),
        ("grant", alice.grant("grt_doesnotexist").await.unwrap_err()),
        ("revoke", alice.revoke("grt_doesnotexist", "why").await.unwrap_err()),
        ("path", alice.request("../../admin/users").await.unwrap_err()),
    ] {
        assert_eq!((err.status(), err.code()), (Some(404), Some("not_found")), "{what}: {err:?}");
    }
    let (status, text) = alice
        .raw(Method::GET, "/api/v1/requests?status=sideways", "application/json", vec![])
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("invalid_query"), "{text}");
    let (status, text) = alice
        .raw(Method::GET, "/api/v1/nothing-here", "application/json", vec![])
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(text.contains("no_such_endpoint"), "{text}");
    let (status, _) = Client::new(&s.url, Some("jgs_forged".into()))
        .raw(Method::GET, "/api/v1/whoami", "application/json", vec![])
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(snapshot(&s).await, before);
}

#[tokio::test]
async fn every_documented_endpoint_exists_and_health_answers() {
    let s = TestServer::spawn(false).await;
    let anon = Client::new(&s.url, None);
    let (status, doc) = anon
        .raw(Method::GET, "/api/v1/openapi.json", "application/json", vec![])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let operations: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    assert!(operations.len() >= 54, "{} operations documented", operations.len());
    for (method, path) in &operations {
        let concrete = path
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{group}", "x")
            .replace("{user}", "x");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (_, text) = anon.raw(m, &concrete, "application/json", b"{}".to_vec()).await.unwrap();
        assert!(!text.contains("no_such_endpoint"), "{method} {path} is documented but not routed");
    }
    assert_eq!(anon.raw(Method::GET, "/healthz", "text/plain", vec![]).await.unwrap().0, 200);

    // Real answers, checked against the documented schemas.
    let schemas = doc["components"]["schemas"].clone();
    let alice = s.login("alice").await;
    let mut body = request_body("prod-db", "read", Some("30m"), "schema check");
    body.start_at = Some(s.core.now().saturating_add(std::time::Duration::from_secs(24 * 3600)));
    let created = alice.create_request(&body).await.unwrap();
    let detail = s.login("bob").await.approve(&created.id, "ok").await.unwrap();
    let grant = detail.grant.clone().unwrap();
    let revoked = alice.revoke(&grant.id, "done").await.unwrap();
    let samples: Vec<(&str, serde_json::Value)> = vec![
        ("AccessRequest", serde_json::to_value(&created).unwrap()),
        ("RequestDetail", serde_json::to_value(&detail).unwrap()),
        (
            "RequestDetail",
            serde_json::to_value(alice.request(&created.id).await.unwrap()).unwrap(),
        ),
        (
            "RequestView",
            serde_json::to_value(&alice.requests(&ListParams::default()).await.unwrap()[0]).unwrap(),
        ),
        ("Grant", serde_json::to_value(&revoked).unwrap()),
        ("WhoAmI", serde_json::to_value(alice.whoami().await.unwrap()).unwrap()),
        ("ResourceView", serde_json::to_value(&alice.resources().await.unwrap()[0]).unwrap()),
        (
            "AuditPage",
            serde_json::to_value(s.admin.audit_events(0, 5).await.unwrap()).unwrap(),
        ),
        (
            "CheckpointList",
            serde_json::to_value(s.admin.audit_checkpoints().await.unwrap()).unwrap(),
        ),
        (
            "VerifyOutcome",
            serde_json::to_value(s.admin.audit_verify().await.unwrap()).unwrap(),
        ),
        ("AuditKey", serde_json::to_value(s.admin.audit_key().await.unwrap()).unwrap()),
        ("UserView", serde_json::to_value(&s.admin.users().await.unwrap()[0]).unwrap()),
        ("GroupView", serde_json::to_value(&s.admin.groups().await.unwrap()[0]).unwrap()),
        (
            "ErrorBody",
            serde_json::from_str(&anon.raw(Method::GET, "/api/v1/whoami", "application/json", vec![]).await.unwrap().1).unwrap(),
        ),
        ("CreateRequestBody", serde_json::to_value(&body).unwrap()),
    ];
    for (name, value) in samples {
        conforms(
            &value,
            &serde_json::json!({"$ref": format!("#/components/schemas/{name}")}),
            &schemas,
            name,
        );
    }
    assert_eq!(anon.raw(Method::GET, "/readyz", "text/plain", vec![]).await.unwrap().0, 200);
}

#[tokio::test]
async fn an_invalid_config_stops_the_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[server]\nhttp = \"127.0.0.1:0\"\n\n[[resources]]\nname = \"db\"\n[resources.roles.read]\nrequesters = [\"eng\"]\nstages = []\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:1"), "{err}");
    assert!(err.contains("at least one approval stage"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[tokio::test]
async fn a_second_server_on_the_same_sqlite_file_is_refused() {
    let s = TestServer::spawn(false).await;
    let mut settings = jitgate_server::Settings::from_toml("test.toml", CONFIG).unwrap();
    settings.http = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = s.data_dir();
    let err = jitgate_server::Application::build(settings, None, None)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("in use by another jitgate process"), "{err}");
    // The first server is unharmed.
    s.admin.whoami().await.unwrap();
}

/// A small checker for the subset of JSON Schema the document uses.
/// Checks `v` against `schema` (the subset of JSON Schema 2020-12 the API document uses:
/// `$ref`, `type` (one or a list), `oneOf`/`anyOf`/`allOf`, `enum`, `properties`, `required`,
/// `additionalProperties`, `items`, string `pattern` and lengths); panics with where and why.
pub fn conforms(v: &serde_json::Value, schema: &serde_json::Value, all: &serde_json::Value, at: &str) {
    if let Err(why) = check(v, schema, all, at) {
        panic!("{why}");
    }
}

fn check(v: &serde_json::Value, schema: &serde_json::Value, all: &serde_json::Value, at: &str) -> Result<(), String> {
    check_fields(v, schema, all, at, true)
}

/// The properties a schema names, through `$ref` and `allOf` (a `#[serde(flatten)]` shows up
/// as `allOf`: each part names some of the fields, together all of them).
fn known_fields(schema: &serde_json::Value, all: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(r) = schema["$ref"].as_str() {
        out.extend(known_fields(&all[r.rsplit('/').next().unwrap()], all));
    }
    for each in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(known_fields(each, all));
    }
    out
}

/// `closed`: a field the schema does not name is an error (not so for one part of an `allOf`).
fn check_fields(v: &serde_json::Value, schema: &serde_json::Value, all: &serde_json::Value, at: &str, closed: bool) -> Result<(), String> {
    use serde_json::Value;
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        if !all[name].is_object() {
            return Err(format!("{at}: no schema {name}"));
        }
        check_fields(v, &all[name], all, at, closed)?;
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for each in parts {
            check_fields(v, each, all, at, false)?;
        }
        if let (true, Some(obj)) = (closed, v.as_object()) {
            let known = known_fields(schema, all);
            if let Some(key) = obj.keys().find(|k| !known.contains(k)) {
                return Err(format!("{at}.{key}: not in the schema"));
            }
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let fits = options.iter().filter(|o| check(v, o, all, at).is_ok()).count();
            let ok = if key == "oneOf" { fits == 1 } else { fits >= 1 };
            if !ok {
                return Err(format!("{at}: {v} fits {fits} of the {key} options"));
            }
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            return Err(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.is_empty() {
        return Ok(());
    }
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.iter().any(|t| *t == kind || (*t == "number" && kind == "integer")) {
        return Err(format!("{at}: expected {types:?}, got {v}"));
    }
    match v {
        Value::Object(obj) => {
            let props = schema["properties"].as_object();
            for req in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(req.as_str().unwrap()) {
                    return Err(format!("{at}: required field {req} missing"));
                }
            }
            for (key, val) in obj {
                let at = format!("{at}.{key}");
                match (props.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                    (Some(s), _) => check(val, s, all, &at)?,
                    (None, Some(Value::Bool(false))) if closed => return Err(format!("{at}: not in the schema")),
                    (None, Some(extra)) if extra.is_object() => check(val, extra, all, &at)?,
                    // A closed object: every field the server sends is documented.
                    (None, _) if props.is_some() && closed && schema["allOf"].is_null() => return Err(format!("{at}: not in the schema")),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], all, &format!("{at}[{i}]"))?;
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if schema["maxLength"].as_u64().is_some_and(|m| chars > m) || schema["minLength"].as_u64().is_some_and(|m| chars < m) {
                return Err(format!("{at}: {text:?} is outside the documented length"));
            }
            if let Some(p) = schema["pattern"].as_str() {
                if !regex::Regex::new(p).unwrap().is_match(text) {
                    return Err(format!("{at}: {text:?} does not match {p}"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The workflow's refusals, walked code by code (the request-form codes are walked in
/// `bad_requests_get_a_clear_code_and_change_nothing`, the policy and break-glass ones in
/// `policy.rs`): each is answered with its code and leaves exactly one event naming it, by the
/// person refused; nothing else changes.
#[tokio::test]
async fn every_workflow_refusal_is_on_the_record_with_its_code() {
    // Engineers read the audit log here: alice sees dave's grant but may not end it.
    let s = TestServer::spawn_with(Backend::Sqlite, false, |settings| {
        settings.audit_reader_groups.insert("engineers".parse().unwrap());
    })
    .await;
    let (alice, bob, dave) = (s.login("alice").await, s.login("bob").await, s.login("dave").await);
    // One request still pending, one approved (a live grant), one cancelled.
    let pending = alice
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap();
    let approved = alice
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap();
    bob.approve(approved.id.as_str(), "ok").await.unwrap();
    let grant = alice.request(approved.id.as_str()).await.unwrap().grant.unwrap();
    let cancelled = alice
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap();
    alice.cancel(cancelled.id.as_str()).await.unwrap();
    let ended = alice
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap();
    bob.approve(ended.id.as_str(), "ok").await.unwrap();
    let ended_grant = alice.request(ended.id.as_str()).await.unwrap().grant.unwrap();
    alice.revoke(ended_grant.id.as_str(), "done").await.unwrap();
    let dave_request = dave
        .create_request(&request_body("prod-db", "read", None, "valid reason"))
        .await
        .unwrap();
    bob.approve(dave_request.id.as_str(), "ok").await.unwrap();
    let dave_grant = dave.request(dave_request.id.as_str()).await.unwrap().grant.unwrap();

    let mut extend_other = request_body("prod-db", "read", None, "valid reason");
    extend_other.extends = Some(dave_grant.id.to_string());
    let mut extend_ended = request_body("prod-db", "read", None, "valid reason");
    extend_ended.extends = Some(ended_grant.id.to_string());

    let mut after = s.audit_head().await;
    let mut walked = std::collections::BTreeSet::new();
    // Each refusal: its status and code, and exactly one new event, by the person refused,
    // `denied` or `failure`, naming the code.
    macro_rules! refused {
        ($who:literal, $status:literal, $code:literal, $call:expr) => {{
            let err = $call.await.map(|_| ()).unwrap_err();
            assert_eq!((err.status(), err.code()), (Some($status), Some($code)), "{}: {err:?}", $who);
            let events = s.admin.all_audit_events(after).await.unwrap();
            assert_eq!(events.len(), 1, "{} refused {} leaves one event: {events:?}", $who, $code);
            let e = &events[0];
            assert_eq!(e.actor, $who, "{e:?}");
            assert!(e.outcome == "denied" || e.outcome == "failure", "{e:?}");
            assert_eq!(e.details["code"], $code, "{e:?}");
            after = e.seq;
            walked.insert($code);
        }};
    }
    refused!("alice", 403, "self_approval_forbidden", alice.approve(pending.id.as_str(), ""));
    // An administrator sees every request but approves only where a stage names them.
    refused!("admin", 403, "not_an_approver", s.admin.approve(pending.id.as_str(), ""));
    refused!("bob", 409, "request_not_pending", bob.approve(cancelled.id.as_str(), ""));
    refused!("bob", 403, "not_requester", bob.cancel(pending.id.as_str()));
    refused!("alice", 409, "request_not_pending", alice.cancel(approved.id.as_str()));
    refused!("alice", 409, "grant_not_live", alice.revoke(ended_grant.id.as_str(), "again"));
    refused!(
        "alice",
        403,
        "not_allowed_to_revoke",
        alice.revoke(dave_grant.id.as_str(), "seen enough")
    );
    refused!("alice", 400, "revoke_reason_required", alice.revoke(grant.id.as_str(), ""));
    refused!("alice", 400, "extension_mismatch", alice.create_request(&extend_other));
    refused!("alice", 409, "grant_not_live", alice.create_request(&extend_ended));
    refused!("bob", 409, "not_break_glass", bob.acknowledge(approved.id.as_str(), ""));
    refused!(
        "bob",
        403,
        "not_eligible",
        bob.create_request(&request_body("prod-db", "read", None, "valid reason"))
    );
    // Two stages: bob's approval leaves it pending for security, and his second is refused.
    let mut write = request_body("prod-db", "write", None, "valid reason");
    write.ticket = Some("INC-1".into());
    let write = alice.create_request(&write).await.unwrap();
    bob.approve(write.id.as_str(), "ok").await.unwrap();
    let approved_at = s.audit_head().await;
    assert!(approved_at > after, "the request and the approval are on the record");
    after = approved_at;
    refused!("bob", 409, "already_reviewed", bob.approve(write.id.as_str(), "twice"));
    assert_eq!(after, s.audit_head().await, "nothing else was written");
    assert_eq!(walked.len(), 11);

    // Nothing the refusals touched changed.
    let now = jitgate_server::clock::Clock::now(&jitgate_server::clock::SystemClock);
    assert!(alice.grant(grant.id.as_str()).await.unwrap().effective_status(now).is_live());
    assert!(dave.grant(dave_grant.id.as_str()).await.unwrap().effective_status(now).is_live());
}
