//! Notifications with real receivers on loopback: a webhook receiver that checks signatures as
//! the README says to, a Slack-compatible Web API, a real SMTP server (aiosmtpd); a receiver
//! that is down for a while; kill -9 of the server; warnings before access ends; /metrics.

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jitgate_server::clock::Clock;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const HOOK_SECRET: &str = "whsec-test-6b1c0b5a";

/// What the webhook receiver saw, and how it behaves.
#[derive(Default)]
pub(crate) struct Hooks {
    /// Accepted messages, in the order they came.
    pub(crate) accepted: Vec<Value>,
    /// Every request as sent (headers of interest and body), accepted or not, for replays.
    raw: Vec<(String, String, Bytes)>,
    seen: BTreeSet<String>,
    /// Answer 503 to everything while set.
    down: bool,
    /// Signatures this far from now are refused; 0: five minutes. A server on a manual clock
    /// signs with its own time.
    pub(crate) window: i64,
    refused: Vec<String>,
}

pub(crate) type SharedHooks = Arc<Mutex<Hooks>>;

/// The receiver the README describes: signature checked over `t.body` within five minutes of
/// now, each `Jitgate-Delivery` id taken once.
async fn hook(State(h): State<SharedHooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (sig, id) = (header("jitgate-signature"), header("jitgate-delivery"));
    let mut h = h.lock().unwrap();
    h.raw.push((sig.clone(), id.clone(), body.clone()));
    if h.down {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now = jitgate_server::clock::SystemClock.now().as_millis() / 1000;
    let window = if h.window == 0 { 300 } else { h.window };
    if let Err(e) = jitgate_notify::signature::verify(HOOK_SECRET.as_bytes(), &sig, &body, now, window) {
        h.refused.push(e.to_string());
        return StatusCode::UNAUTHORIZED;
    }
    if !h.seen.insert(id.clone()) {
        h.refused.push(format!("replayed {id}"));
        return StatusCode::CONFLICT;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], id.as_str(), "the body's id is the delivery header");
    h.accepted.push(v);
    StatusCode::NO_CONTENT
}

async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub(crate) async fn hook_receiver() -> (SharedHooks, String) {
    let hooks = SharedHooks::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(hooks.clone());
    let addr = serve(app).await;
    (hooks, format!("http://{addr}/hook"))
}

/// `[notifications]` (with the lines `top`) and one webhook channel `hooks` to `url` (with the
/// lines `channel`), as a config file has them.
pub(crate) fn hooks_at(url: &str, top: &str, channel: &str) -> String {
    format!("[notifications]\n{top}[[notifications.channels]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"{url}\"\n{channel}")
}

/// The test settings with `[notifications]` as the config file would have it.
pub(crate) fn with_notifications(extra: &str) -> impl FnOnce(&mut jitgate_server::Settings) {
    let parsed = jitgate_server::Settings::from_toml("test.toml", &format!("{CONFIG}\n{extra}")).expect("the notifications config parses");
    move |s| s.notifications = parsed.notifications
}

pub(crate) fn events_of(h: &SharedHooks, request: &str) -> Vec<String> {
    h.lock()
        .unwrap()
        .accepted
        .iter()
        .filter(|v| v["request"]["id"] == request)
        .map(|v| v["event"].as_str().unwrap().to_owned())
        .collect()
}

async fn ask_and_approve(server: &TestServer) -> (String, String) {
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", Some("20m"), "INC-7 look at the slow query"))
        .await
        .unwrap();
    let approved = bob.approve(r.id.as_str(), "ok").await.unwrap();
    let grant = approved.grant.expect("approved: a grant").id;
    (r.id.to_string(), grant.to_string())
}

#[tokio::test]
async fn webhooks_are_signed_carry_the_schema_and_a_replay_or_altered_body_is_refused() {
    let (hooks, url) = hook_receiver().await;
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&hooks_at(&url, "", ""))).await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let (request, grant) = ask_and_approve(&server).await;
    let alice = server.login("alice").await;
    alice.revoke(&grant, "done with it").await.unwrap();
    eventually("the request's four messages arrive", || async {
        events_of(&hooks, &request).len() >= 4
    })
    .await;
    assert_eq!(
        events_of(&hooks, &request),
        ["request.created", "request.approved", "grant.started", "grant.ended"],
        "in the order they happened"
    );
    let accepted = hooks.lock().unwrap().accepted.clone();
    let created = accepted.iter().find(|v| v["event"] == "request.created").unwrap();
    assert_eq!(created["schema"], "jitgate.notification/v1");
    assert_eq!(
        created["recipients"],
        serde_json::json!(["bob", "carol"]),
        "the owner stage's members, not the requester"
    );
    assert_eq!(created["request"]["requester"], "alice");
    assert_eq!(created["request"]["reason"], "INC-7 look at the slow query");
    assert_eq!(
        created["url"],
        format!("{}/requests/{request}", server.url.replace("127.0.0.1", "localhost"))
    );
    assert_eq!(created["stages"][0]["name"], "owner");
    let ended = accepted.iter().find(|v| v["event"] == "grant.ended").unwrap();
    assert_eq!(ended["grant"]["id"], grant.as_str());
    assert_eq!(ended["comment"], "done with it");
    assert_eq!(ended["recipients"], serde_json::json!(["alice"]));

    // A replay of a message the receiver took, and the same message altered, are refused.
    let (sig, id, body) = hooks.lock().unwrap().raw[0].clone();
    let http = reqwest::Client::new();
    let send = |sig: String, body: Vec<u8>| {
        http.post(&url)
            .header("jitgate-signature", sig)
            .header("jitgate-delivery", id.clone())
            .body(body)
            .send()
    };
    assert_eq!(send(sig.clone(), body.to_vec()).await.unwrap().status(), 409, "replayed");
    let mut altered = body.to_vec();
    let at = altered.windows(5).position(|w| w == b"alice").unwrap();
    altered[at..at + 5].copy_from_slice(b"mallo");
    assert_eq!(send(sig.clone(), altered).await.unwrap().status(), 401, "altered");
    let old = jitgate_notify::signature::sign(HOOK_SECRET.as_bytes(), 1_600_000_000, &body);
    assert_eq!(send(old, body.to_vec()).await.unwrap().status(), 401, "signed long ago");
    let refused = hooks.lock().unwrap().refused.clone();
    assert_eq!(refused.len(), 3, "{refused:?}");

    // The outbox says what it sent.
    let overview = server.admin.notifications_overview(None, Some("hooks"), 50).await.unwrap();
    assert_eq!(overview.channels[0].name, "hooks");
    assert!(overview.channels[0].secret_set);
    assert!(overview.deliveries.iter().all(|d| d.status == "sent"), "{:?}", overview.deliveries);
    assert_eq!(overview.channels[0].failed, 0);
}

#[tokio::test]
async fn a_webhook_channel_without_its_secret_sends_nothing_unsigned() {
    let (hooks, url) = hook_receiver().await;
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&hooks_at(&url, "", ""))).await;
    let (request, _) = ask_and_approve(&server).await;
    eventually("the failure is on the record", || async {
        let o = server.admin.notifications_overview(Some("pending"), None, 50).await.unwrap();
        o.deliveries
            .iter()
            .any(|d| d.last_error.as_deref().is_some_and(|e| e.contains("set-secret hooks")))
    })
    .await;
    assert!(hooks.lock().unwrap().raw.is_empty(), "nothing reached the receiver");
    // Once the secret is set, the waiting messages go, in order.
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    eventually_within("the messages go once the secret is set", Duration::from_secs(30), || async {
        events_of(&hooks, &request).len() >= 3
    })
    .await;
    assert_eq!(
        events_of(&hooks, &request),
        ["request.created", "request.approved", "grant.started"]
    );
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_message_once_and_in_order() {
    let (hooks, url) = hook_receiver().await;
    hooks.lock().unwrap().down = true;
    let server = TestServer::spawn_with(
        Backend::Postgres(jitgate_store::testing::fresh_pg_database().await.unwrap()),
        false,
        with_notifications(&hooks_at(
            &url,
            "",
            "events = [\"request.created\", \"request.approved\", \"grant.started\", \"grant.ended\", \"request.cancelled\"]\n",
        )),
    )
    .await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let alice = server.login("alice").await;
    let (first, grant) = ask_and_approve(&server).await;
    alice.revoke(&grant, "finished early").await.unwrap();
    let mut write = request_body("prod-db", "write", Some("1h"), "INC-9 schema fix");
    write.ticket = Some("INC-9".into());
    let second = alice.create_request(&write).await.unwrap();
    alice.cancel(second.id.as_str()).await.unwrap();
    eventually_within(
        "the receiver was tried and refused several times",
        Duration::from_secs(20),
        || async { hooks.lock().unwrap().raw.len() >= 4 },
    )
    .await;
    let o = server.admin.notifications_overview(Some("pending"), None, 50).await.unwrap();
    assert!(
        o.deliveries
            .iter()
            .any(|d| d.attempts >= 1 && d.last_error.as_deref().is_some_and(|e| e.contains("503"))),
        "{:?}",
        o.deliveries
    );
    hooks.lock().unwrap().down = false;
    eventually_within(
        "every message arrives once the receiver is back",
        Duration::from_secs(30),
        || async { events_of(&hooks, &first).len() >= 4 && events_of(&hooks, second.id.as_str()).len() >= 2 },
    )
    .await;
    assert_eq!(
        events_of(&hooks, &first),
        ["request.created", "request.approved", "grant.started", "grant.ended"]
    );
    assert_eq!(events_of(&hooks, second.id.as_str()), ["request.created", "request.cancelled"]);
    let h = hooks.lock().unwrap();
    let ids: Vec<&str> = h.accepted.iter().map(|v| v["id"].as_str().unwrap()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "no idempotency key delivered twice");
    assert!(h.refused.is_empty(), "{:?}", h.refused);
}

/// A server process of our own, to kill -9.
struct Process {
    child: tokio::process::Child,
    url: String,
    log: std::path::PathBuf,
}

async fn start_process(dir: &std::path::Path, port: u16) -> Process {
    let log = dir.join(format!("serve-{}.log", jitgate_server::clock::SystemClock.now().as_millis()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["serve", "--config"])
        .arg(dir.join("jitgate.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually_within("the server answers", Duration::from_secs(20), || async {
        reqwest::get(format!("{url}/healthz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    Process { child, url, log }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn kill_9_of_the_server_between_writing_and_sending_loses_nothing() {
    let (hooks, url) = hook_receiver().await;
    hooks.lock().unwrap().down = true;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jitgate.toml"),
        format!(
            "{CONFIG}\n[gateway]\nenabled = false\n[notifications]\n[[notifications.channels]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"{url}\"\nevents = [\"request.created\", \"request.cancelled\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut first = start_process(dir.path(), port).await;
    let err = first.log.with_extension("err");
    let setup = {
        let text = std::fs::read_to_string(&first.log).unwrap() + &std::fs::read_to_string(&err).unwrap();
        regex::Regex::new(r"jgsetup_[A-Za-z0-9_-]+")
            .unwrap()
            .find(&text)
            .expect("a setup token")
            .as_str()
            .to_owned()
    };
    let anon = jitgate_client::Client::new(&first.url, None);
    let session = anon
        .bootstrap(&jitgate_api::BootstrapBody {
            setup_token: setup.into(),
            username: "admin".parse().unwrap(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap();
    let admin = anon.with_token(&session.token);
    admin
        .create_user(&jitgate_api::CreateUserBody {
            username: "alice".parse().unwrap(),
            display_name: String::new(),
            password: Some(PASSWORD.into()),
            admin: false,
        })
        .await
        .unwrap();
    admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let alice = anon.with_token(&anon.login("alice", PASSWORD).await.unwrap().token);
    // One message written and tried (the receiver is down) ...
    let tried = alice
        .create_request(&request_body("prod-db", "read", None, "INC-1 before the crash"))
        .await
        .unwrap();
    eventually("the first message was tried", || async { !hooks.lock().unwrap().raw.is_empty() }).await;
    // ... and one committed just before the kill, very likely not yet made into a message.
    let last = alice
        .create_request(&request_body("prod-db", "read", None, "INC-2 at the crash"))
        .await
        .unwrap();
    alice.cancel(last.id.as_str()).await.unwrap();
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    hooks.lock().unwrap().down = false;
    let _second = start_process(dir.path(), port).await;
    eventually_within("every message arrives after the restart", Duration::from_secs(30), || async {
        !events_of(&hooks, tried.id.as_str()).is_empty() && events_of(&hooks, last.id.as_str()).len() >= 2
    })
    .await;
    assert_eq!(events_of(&hooks, tried.id.as_str()), ["request.created"]);
    assert_eq!(events_of(&hooks, last.id.as_str()), ["request.created", "request.cancelled"]);
}

/// A Slack-compatible Web API: `users.lookupByEmail` and `chat.postMessage`, with the bot token
/// checked and each message held to Block Kit's rules.
#[derive(Default)]
struct SlackApi {
    posted: Vec<Value>,
    problems: Vec<String>,
}

const SLACK_TOKEN: &str = "xoxb-test-token";

fn block_kit_problems(m: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if !m["text"].is_string() {
        p.push("no fallback text".into());
    }
    let Some(blocks) = m["blocks"].as_array() else {
        return vec!["no blocks".into()];
    };
    if blocks.is_empty() || blocks.len() > 50 {
        p.push(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("section") => {
                if let Some(t) = b["text"]["text"].as_str() {
                    if t.is_empty() || t.len() > 3000 {
                        p.push("section text length".into());
                    }
                }
                if let Some(f) = b["fields"].as_array() {
                    if f.len() > 10 || f.iter().any(|f| f["type"] != "mrkdwn" && f["type"] != "plain_text") {
                        p.push("section fields".into());
                    }
                }
                if b["text"].is_null() && b["fields"].is_null() {
                    p.push("empty section".into());
                }
            }
            Some("actions") => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    if e["type"] != "button" || e["text"]["type"] != "plain_text" || !e["url"].is_string() {
                        p.push(format!("element {e}"));
                    }
                    if e.get("value").is_some() {
                        p.push("a button with a value an app could act on".into());
                    }
                }
            }
            Some("context") => {}
            other => p.push(format!("block type {other:?}")),
        }
    }
    p
}

async fn slack_lookup(
    State(s): State<Arc<Mutex<SlackApi>>>,
    headers: HeaderMap,
    q: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SLACK_TOKEN}")) {
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_auth"}));
    }
    match q.get("email").map(String::as_str) {
        Some("bob@example.com") => axum::Json(serde_json::json!({"ok": true, "user": {"id": "U0BOB"}})),
        other => {
            s.lock().unwrap().problems.push(format!("lookup of {other:?}"));
            axum::Json(serde_json::json!({"ok": false, "error": "users_not_found"}))
        }
    }
}

/// An incoming webhook: no token, the URL is the credential; posts where it was made.
async fn slack_incoming(State(s): State<Arc<Mutex<SlackApi>>>, axum::Json(mut m): axum::Json<Value>) -> (StatusCode, &'static str) {
    let mut s = s.lock().unwrap();
    let problems = block_kit_problems(&m);
    if !problems.is_empty() || m.get("channel").is_some() {
        s.problems.extend(problems);
        return (StatusCode::BAD_REQUEST, "invalid_payload");
    }
    m["channel"] = Value::String("(incoming webhook)".into());
    s.posted.push(m);
    (StatusCode::OK, "ok")
}

async fn slack_post(State(s): State<Arc<Mutex<SlackApi>>>, headers: HeaderMap, axum::Json(m): axum::Json<Value>) -> axum::Json<Value> {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SLACK_TOKEN}")) {
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_auth"}));
    }
    let mut s = s.lock().unwrap();
    let problems = block_kit_problems(&m);
    if !problems.is_empty() {
        s.problems.extend(problems);
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_blocks"}));
    }
    s.posted.push(m);
    axum::Json(serde_json::json!({"ok": true, "ts": "1.2"}))
}

#[tokio::test]
async fn slack_gets_block_kit_in_the_resource_channel_and_to_approvers_by_email_with_only_a_link() {
    let slack = Arc::new(Mutex::new(SlackApi::default()));
    let app = axum::Router::new()
        .route("/api/users.lookupByEmail", axum::routing::get(slack_lookup))
        .route("/api/chat.postMessage", axum::routing::post(slack_post))
        .route("/services/T0/B0/incoming-secret", axum::routing::post(slack_incoming))
        .with_state(slack.clone());
    let addr = serve(app).await;
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&format!(
        "[notifications]\npublic_url = \"https://jitgate.example.com\"\n[[notifications.channels]]\nname = \"slack\"\nkind = \"slack\"\napi_url = \"http://{addr}/api\"\nchannel = \"#access\"\nresource_channels = {{ \"prod-db\" = \"#db-oncall\" }}\ndirect_by_email = true\nevents = [\"request.created\"]\n[[notifications.channels]]\nname = \"security\"\nkind = \"slack\"\nincoming_webhook = true\nevents = [\"request.created\"]\n"
    )))
    .await;
    server.admin.set_channel_secret("slack", SLACK_TOKEN).await.unwrap();
    server
        .admin
        .set_channel_secret("security", &format!("http://{addr}/services/T0/B0/incoming-secret"))
        .await
        .unwrap();
    server.admin.set_user_email("bob", Some("bob@example.com")).await.unwrap();
    let alice = server.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", None, "INC-5 <!channel> look"))
        .await
        .unwrap();
    eventually("the channels and bob are told", || async {
        slack.lock().unwrap().posted.len() >= 3
    })
    .await;
    let s = slack.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let to: BTreeSet<&str> = s.posted.iter().map(|m| m["channel"].as_str().unwrap()).collect();
    assert_eq!(
        to,
        BTreeSet::from(["#db-oncall", "U0BOB", "(incoming webhook)"]),
        "the resource's channel, bob found by e-mail (carol has none), and the incoming webhook"
    );
    let text = s.posted[0].to_string();
    assert!(text.contains(&format!("https://jitgate.example.com/requests/{}", r.id)), "{text}");
    assert!(!text.contains("<!channel>"), "what a requester typed cannot ping a channel");
}

/// The mail as a reader sees it: quoted-printable soft breaks joined and `=XX` decoded (headers
/// and the rest pass through).
fn quoted_printable_decoded(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// aiosmtpd in the venv `scripts/deps.sh` makes.
fn smtp_python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/notify-tools/venv/bin/python");
    assert!(p.exists(), "aiosmtpd is not installed: run scripts/deps.sh (the test command does)");
    p
}

#[tokio::test]
async fn e_mail_reaches_a_real_smtp_server_in_plain_text_and_html() {
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_sink.py");
    let mut sink = tokio::process::Command::new(smtp_python())
        .arg(script)
        .arg(port.to_string())
        .arg(maildir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(sink.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
    }
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&format!(
        "[notifications]\n[[notifications.channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\nfrom = \"jitgate <jitgate@example.com>\"\nevents = [\"request.created\", \"request.denied\"]\n"
    )))
    .await;
    server.admin.set_user_email("bob", Some("bob@example.com")).await.unwrap();
    server.admin.set_user_email("carol", Some("carol@example.com")).await.unwrap();
    server.admin.set_user_email("alice", Some("alice@example.com")).await.unwrap();
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", Some("15m"), "INC-3 <b>vacuum</b> & analyse"))
        .await
        .unwrap();
    bob.deny(r.id.as_str(), "use the replica").await.unwrap();
    let mails = || {
        let mut v: Vec<String> = std::fs::read_dir(maildir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        v.sort();
        v
    };
    eventually_within("three e-mails arrive", Duration::from_secs(20), || async { mails().len() >= 3 }).await;
    let all: Vec<String> = mails().iter().map(|m| quoted_printable_decoded(m)).collect();
    let to_bob = all
        .iter()
        .find(|m| m.starts_with("X-Envelope-To: bob@example.com"))
        .expect("bob is told");
    assert!(all.iter().any(|m| m.starts_with("X-Envelope-To: carol@example.com")), "carol too");
    assert!(
        to_bob.contains("Subject: [jitgate] alice asks for read on prod-db for 15m"),
        "{to_bob}"
    );
    assert!(to_bob.contains("multipart/alternative"));
    assert!(to_bob.contains("text/plain") && to_bob.contains("text/html"));
    assert!(to_bob.contains(&format!("/requests/{}", r.id)));
    assert!(to_bob.contains("Message-ID: <ntf_"), "the idempotency key as the Message-ID");
    assert!(
        to_bob.contains("&lt;b&gt;vacuum&lt;/b&gt; &amp; analyse"),
        "the reason is escaped in the HTML part"
    );
    let to_alice = all
        .iter()
        .find(|m| m.starts_with("X-Envelope-To: alice@example.com"))
        .expect("alice hears of the denial");
    assert!(to_alice.contains("was denied by bob"), "{to_alice}");
    assert!(to_alice.contains("use the replica"));
}

#[tokio::test]
async fn the_holder_is_warned_once_before_the_end_unless_an_extension_takes_over() {
    let (hooks, url) = hook_receiver().await;
    hooks.lock().unwrap().window = 365 * 86400;
    let server = TestServer::spawn_with(
        Backend::Sqlite,
        true,
        with_notifications(&hooks_at(&url, "ending_soon = \"5m\"\n", "events = [\"grant.ending_soon\"]\n")),
    )
    .await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let (request, grant) = ask_and_approve(&server).await;
    server.clock().advance(Duration::from_secs(14 * 60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events_of(&hooks, &request).is_empty(), "not before its time");
    server.clock().advance(Duration::from_secs(60) + Duration::from_millis(1));
    eventually("the warning arrives", || async { !events_of(&hooks, &request).is_empty() }).await;
    let warning = hooks.lock().unwrap().accepted[0].clone();
    assert_eq!(warning["event"], "grant.ending_soon");
    assert_eq!(warning["grant"]["id"], grant.as_str());
    assert!(warning["url"].as_str().unwrap().ends_with("/grants"));
    assert_eq!(warning["recipients"], serde_json::json!(["alice"]));
    let audit = server.core.store.audit_events_for(std::slice::from_ref(&grant)).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "grant.ending_soon").count(), 1, "warned once");

    // Two extensions, one after the other: the first is not warned of (the second takes over
    // at its end), the second is.
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let extend = |of: String| {
        let mut b = request_body("prod-db", "read", Some("20m"), "INC-7 the query is still slow");
        b.extends = Some(of);
        b
    };
    let r2 = alice.create_request(&extend(grant.clone())).await.unwrap();
    let g2 = bob.approve(&r2.id, "ok").await.unwrap().grant.unwrap();
    let r3 = alice.create_request(&extend(g2.id.clone())).await.unwrap();
    let g3 = bob.approve(&r3.id, "ok").await.unwrap().grant.unwrap();
    assert_eq!((g2.starts_at, g3.starts_at), (g2.starts_at, g2.ends_at), "back to back");
    server.clock().advance(Duration::from_secs(21 * 60)); // 36 minutes in: g2's warning was due
    server.clock().advance(Duration::from_secs(20 * 60)); // 56 minutes in: g3's is
    eventually("g3's warning arrives", || async { !events_of(&hooks, &r3.id).is_empty() }).await;
    assert!(events_of(&hooks, &r2.id).is_empty(), "g2 does not end: g3 takes over");
    let audit = server.core.store.audit_events(0, 10_000).await.unwrap();
    let warned: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "grant.ending_soon")
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(warned, [grant.as_str(), g3.id.as_str()]);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_bounded_labels() {
    let (_hooks, url) = hook_receiver().await;
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&hooks_at(&url, "", ""))).await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let (_request, _grant) = ask_and_approve(&server).await;
    let alice = server.login("alice").await;
    let mut write = request_body("prod-db", "write", Some("1h"), "INC-4 pending one");
    write.ticket = Some("INC-4".into());
    alice.create_request(&write).await.unwrap();
    assert!(jitgate_client::Client::new(&server.url, None)
        .login("alice", "wrong password")
        .await
        .is_err());
    eventually("the messages are sent", || async {
        server
            .admin
            .notifications_overview(Some("pending"), None, 50)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    })
    .await;
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("jitgate_requests{state=\"pending\"}"), 1.0);
    assert_eq!(value("jitgate_requests{state=\"approved\"}"), 1.0);
    assert_eq!(value("jitgate_grants_live"), 1.0);
    assert_eq!(value("jitgate_request_decision_seconds_count"), 1.0);
    assert!(value("jitgate_login_failures_total") >= 1.0);
    assert!(value("jitgate_notification_attempts_total{channel=\"hooks\",result=\"sent\"}") >= 4.0);
    assert_eq!(value("jitgate_notifications_outbox{channel=\"hooks\",status=\"pending\"}"), 0.0);
    assert!(text.contains("# TYPE jitgate_login_failures_total counter"), "{text}");
    for name in ["alice", "bob", "prod-db", "req_", "grt_"] {
        assert!(!text.contains(name), "a label names {name}:\n{text}");
    }
    // promtool (Debian's prometheus package, which scripts/deps.sh installs) has the last
    // word on the format and the naming rules.
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("promtool is not installed: run scripts/deps.sh (the test command does)");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn notification_administration_refuses_what_it_should() {
    let (_hooks, url) = hook_receiver().await;
    let server = TestServer::spawn_with(Backend::Sqlite, false, with_notifications(&hooks_at(&url, "", ""))).await;
    let alice = server.login("alice").await;
    let code = |e: jitgate_client::ClientError| e.code().unwrap_or_default().to_owned();
    assert_eq!(code(alice.notifications_overview(None, None, 10).await.unwrap_err()), "forbidden");
    assert_eq!(code(alice.set_channel_secret("hooks", "x").await.unwrap_err()), "forbidden");
    assert_eq!(
        code(alice.set_user_email("alice", Some("a@example.com")).await.unwrap_err()),
        "forbidden"
    );
    assert_eq!(code(server.admin.set_channel_secret("nope", "x").await.unwrap_err()), "not_found");
    assert_eq!(
        code(server.admin.set_channel_secret("hooks", "").await.unwrap_err()),
        "invalid_secret"
    );
    assert_eq!(
        code(server.admin.set_user_email("bob", Some("not an address")).await.unwrap_err()),
        "invalid_email"
    );
    assert_eq!(
        code(server.admin.set_user_email("nobody", Some("n@example.com")).await.unwrap_err()),
        "not_found"
    );
    assert_eq!(code(server.admin.retry_notification("ntf_nope").await.unwrap_err()), "not_found");
    assert_eq!(
        code(server.admin.notifications_overview(Some("lost"), None, 10).await.unwrap_err()),
        "invalid_query"
    );
    // The secret is sealed at rest: the store holds no trace of it.
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let stored = server.core.store.channel_secret("hooks").await.unwrap().unwrap();
    assert!(!stored.sealed.contains(HOOK_SECRET) && !stored.sealed.contains("whsec"));
    let audit = server.core.store.audit_events(0, 10_000).await.unwrap();
    assert!(audit.iter().all(|e| !e.details.to_string().contains(HOOK_SECRET)));
}

#[test]
fn bad_channel_configuration_is_refused_with_its_line() {
    let bad = [
        (
            "kind = \"webhook\"\nurl = \"http://hooks.example.com/x\"",
            "plain http only to a loopback",
        ),
        ("kind = \"webhook\"", "needs url"),
        (
            "kind = \"webhook\"\nurl = \"https://h.example.com\"\nevents = [\"request.made\"]",
            "unknown event",
        ),
        (
            "kind = \"webhook\"\nurl = \"https://h.example.com\"\nsmtp_host = \"x\"",
            "does not take smtp_host",
        ),
        (
            "kind = \"email\"\nsmtp_host = \"smtp.example.com\"\nsmtp_tls = \"none\"\nfrom = \"a@example.com\"",
            "only to a loopback relay",
        ),
        (
            "kind = \"email\"\nsmtp_host = \"smtp.example.com\"\nfrom = \"not an address\"",
            "is not an address",
        ),
        ("kind = \"slack\"", "say where messages go"),
        ("kind = \"slack\"\nincoming_webhook = true\nchannel = \"#x\"", "need a bot token"),
        ("kind = \"pager\"", "is not webhook, slack or email"),
    ];
    for (body, why) in bad {
        let text = format!("{CONFIG}\n[notifications]\n[[notifications.channels]]\nname = \"c\"\n{body}\n");
        let header = text.lines().position(|l| l == "[[notifications.channels]]").unwrap() + 1;
        let err = jitgate_server::Settings::from_toml("t.toml", &text).expect_err(body).to_string();
        assert!(err.contains(why), "{body}: {err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!((header..=header + 1).contains(&line), "{body}: at the channel ({header}): {err}");
    }
}

#[tokio::test]
async fn a_message_that_keeps_failing_alerts_the_admins_is_given_up_and_can_be_queued_again() {
    let (hooks, url) = hook_receiver().await;
    hooks.lock().unwrap().down = true;
    let server = TestServer::spawn_with(
        Backend::Sqlite,
        false,
        with_notifications(&hooks_at(
            &url,
            "alert_after = 1\ngive_up_after = 2\n",
            "events = [\"request.created\"]\n",
        )),
    )
    .await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let alice = server.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", None, "INC-8 keeps failing"))
        .await
        .unwrap();
    server.cli_login("admin").await;
    let failed = || async {
        let out = server.cli("admin", &["admin", "notifications", "--failed", "--json"], None).await;
        assert_eq!(out.code, 0, "{out:?}");
        out.json()["deliveries"].as_array().cloned().unwrap_or_default()
    };
    eventually_within("the message is given up after two attempts", Duration::from_secs(20), || async {
        !failed().await.is_empty()
    })
    .await;
    let given_up = failed().await;
    assert_eq!(given_up[0]["attempts"], 2);
    assert!(given_up[0]["last_error"].as_str().unwrap().contains("503"), "{given_up:?}");
    let alerts = server.admin.notifications().await.unwrap();
    let alert = alerts
        .iter()
        .find(|a| a.kind == "notification_failing")
        .expect("the admins are alerted");
    assert!(alert.message.contains("hooks"), "{}", alert.message);
    assert_eq!(
        alerts.iter().filter(|a| a.kind == "notification_failing").count(),
        1,
        "once, not per attempt"
    );
    // The text view names the channel's state.
    let text = server.cli("admin", &["admin", "notifications"], None).await;
    assert!(text.stdout.contains("hooks") && text.stdout.contains("failed:"), "{}", text.stdout);
    // Back up, queued again: delivered.
    hooks.lock().unwrap().down = false;
    let id = given_up[0]["id"].as_str().unwrap();
    let out = server.cli("admin", &["admin", "notifications", "retry", id], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    eventually("the message arrives once queued again", || async {
        events_of(&hooks, r.id.as_str()) == ["request.created"]
    })
    .await;
    let again = server.cli("admin", &["admin", "notifications", "retry", id], None).await;
    assert_ne!(again.code, 0, "only a failed message can be queued again");
}

#[tokio::test]
async fn a_receiver_that_hangs_holds_up_only_its_own_channel() {
    let hanging = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT
        }),
    );
    let stuck = serve(hanging).await;
    let (hooks, url) = hook_receiver().await;
    let server = TestServer::spawn_with(
        Backend::Sqlite,
        false,
        with_notifications(&format!(
            "{}[[notifications.channels]]\nname = \"stuck\"\nkind = \"webhook\"\nurl = \"http://{stuck}/hook\"\n",
            hooks_at(&url, "", "events = [\"request.created\"]\n")
        )),
    )
    .await;
    server.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    server.admin.set_channel_secret("stuck", HOOK_SECRET).await.unwrap();
    let alice = server.login("alice").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let r = alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} a look")))
            .await
            .unwrap();
        ids.push(r.id.to_string());
    }
    // Far more messages than the stuck channel has room for; the other channel gets all of its
    // own at once.
    eventually_within("every message reaches the working channel", Duration::from_secs(10), || async {
        ids.iter().all(|id| !events_of(&hooks, id).is_empty())
    })
    .await;
    let o = server
        .admin
        .notifications_overview(Some("pending"), Some("stuck"), 100)
        .await
        .unwrap();
    assert_eq!(o.deliveries.len(), 40, "the stuck channel's messages wait, none lost");
}

#[tokio::test]
async fn metrics_can_move_off_the_api_port() {
    let port = free_port();
    let at: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = TestServer::spawn_with(Backend::Sqlite, false, move |s| {
        s.metrics = jitgate_server::config::MetricsPlace::Listen(at);
    })
    .await;
    assert_eq!(reqwest::get(format!("{}/metrics", server.url)).await.unwrap().status(), 404);
    let text = reqwest::get(format!("http://{at}/metrics")).await.unwrap().text().await.unwrap();
    assert!(text.contains("jitgate_requests{state=\"pending\"} 0"), "{text}");
    let off = TestServer::spawn_with(Backend::Sqlite, false, |s| s.metrics = jitgate_server::config::MetricsPlace::Off).await;
    assert_eq!(reqwest::get(format!("{}/metrics", off.url)).await.unwrap().status(), 404);
}

#[tokio::test]
async fn two_instances_on_one_store_send_each_message_once_and_tell_each_stage() {
    let (hooks, url) = hook_receiver().await;
    let a = TestServer::spawn_with(
        Backend::Postgres(jitgate_store::testing::fresh_pg_database().await.unwrap()),
        false,
        with_notifications(&hooks_at(&url, "", "")),
    )
    .await;
    a.admin.set_channel_secret("hooks", HOOK_SECRET).await.unwrap();
    let b = a.another_instance().await;
    // Two stages: bob's approval (owner) on one instance advances it, sam's (security) on the
    // other approves it.
    let mut write = request_body("prod-db", "write", Some("1h"), "INC-12 fix the index");
    write.ticket = Some("INC-12".into());
    let r = a.login("alice").await.create_request(&write).await.unwrap();
    b.login("bob").await.approve(&r.id, "owner ok").await.unwrap();
    // Told while it is still waiting (what a message says is read when it is made).
    eventually("the stage is told", || async { events_of(&hooks, &r.id).len() >= 2 }).await;
    a.login("sam").await.approve(&r.id, "security ok").await.unwrap();
    // And a load of others, half through each instance.
    let mut others = Vec::new();
    for i in 0..20 {
        let on = if i % 2 == 0 { &a } else { &b };
        others.push(
            on.login("alice")
                .await
                .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} look")))
                .await
                .unwrap()
                .id,
        );
    }
    eventually_within("every message arrives", Duration::from_secs(30), || async {
        events_of(&hooks, &r.id).len() >= 4 && others.iter().all(|id| !events_of(&hooks, id).is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        events_of(&hooks, &r.id),
        ["request.created", "request.stage_advanced", "request.approved", "grant.started"]
    );
    let h = hooks.lock().unwrap();
    let advanced = h.accepted.iter().find(|v| v["event"] == "request.stage_advanced").unwrap();
    assert_eq!(
        advanced["recipients"],
        serde_json::json!(["alice", "carol", "sam"]),
        "the requester and the security stage's members"
    );
    assert_eq!(advanced["stages"][0]["approved_by"], serde_json::json!(["bob"]));
    assert_eq!(advanced["comment"], "owner ok");
    // Each message reached the receiver once: not once per instance.
    let ids: Vec<&str> = h.raw.iter().map(|(_, id, _)| id.as_str()).collect();
    let distinct: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "sent twice: {ids:?}");
    assert_eq!(ids.len(), 4 + 20);
}
