//! The PostgreSQL gateway with a real PostgreSQL and real psql: a grant opens a session, the
//! token is single use and bound to user and database, and a running session is closed when
//! its grant is revoked or expires.

use crate::cluster::{Cluster, HostAuth};
use crate::support::*;
use jitgate_api::ConnectBody;
use jitgate_client::Client;
use std::time::{Duration, Instant};

/// `jitgate connect` verifies the gateway's certificate.
mod tls;

/// Revocations and kills reach sessions on every instance sharing a PostgreSQL store.
mod instances;

/// Host, port and user of the test PostgreSQL, and a fresh database on it.
pub(crate) async fn upstream() -> (String, u16, String, String) {
    let url = jitgate_store::testing::fresh_pg_database().await.expect("PostgreSQL for tests");
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .unwrap();
    let (auth, hostpart) = rest.split_once('@').unwrap();
    let user = auth.split(':').next().unwrap().to_owned();
    let (hostport, db) = hostpart.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').map_or((hostport, 5432), |(h, p)| (h, p.parse().unwrap()));
    (host.to_owned(), port, user, db.to_owned())
}

/// A server with resource `pg` in front of a fresh database (trust auth upstream), and alice
/// holding an approved `read` grant on it.
pub(crate) async fn with_grant() -> (TestServer, Client, String) {
    with_grant_on(TestServer::spawn(true).await).await
}

/// Runs `sql` on the test PostgreSQL as its administrator, straight (not through the
/// gateway), and returns psql's unaligned output.
pub(crate) fn admin_sql(host: &str, port: u16, user: &str, db: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-tAc", sql])
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The upstream login of the test resource's `read` role: reads everything, nothing more.
pub(crate) fn read_login(db: &str) -> String {
    format!("{db}_read")
}

pub(crate) async fn with_grant_on(s: TestServer) -> (TestServer, Client, String) {
    let (s, alice, grant, _) = with_grant_and_upstream(s).await;
    (s, alice, grant)
}

/// The test PostgreSQL behind resource `pg`, reached straight as its administrator.
pub(crate) struct Up {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub db: String,
}

impl Up {
    pub fn sql(&self, sql: &str) -> String {
        admin_sql(&self.host, self.port, &self.user, &self.db, sql)
    }
}

pub(crate) async fn with_grant_and_upstream(s: TestServer) -> (TestServer, Client, String, Up) {
    let (host, port, user, db) = upstream().await;
    let login = read_login(&db);
    admin_sql(
        &host,
        port,
        &user,
        &db,
        &format!("CREATE ROLE {login} LOGIN IN ROLE pg_read_all_data"),
    );
    let spec = format!(
        r#"
name = "pg"
[postgres]
host = "{host}"
port = {port}
database = "{db}"
user = "{user}"
[roles.read]
requesters = ["engineers"]
max_duration = "1h"
stages = [{{ groups = ["db-owners"] }}]
mfa = []
login = "{login}"
"#
    );
    let resource: jitgate_core::policy::Resource = toml::from_str(&spec).unwrap();
    s.admin.put_resource(&resource).await.unwrap();
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("pg", "read", Some("30m"), "look at the data"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    (s, alice, grant.id, Up { host, port, user, db })
}

pub(crate) fn psql(s: &TestServer, user: &str, db: &str, token: &str, sql: &str) -> std::process::Command {
    psql_with(s, user, db, token, &["-c", sql])
}

/// psql through the gateway with `args` after the common ones.
pub(crate) fn psql_with(s: &TestServer, user: &str, db: &str, token: &str, args: &[&str]) -> std::process::Command {
    let gw = s.core.gateway_addr.get().unwrap();
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-tA"])
        .args(args)
        .env("PGHOST", gw.ip().to_string())
        .env("PGPORT", gw.port().to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", db)
        .env("PGPASSWORD", token)
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// Every statement recorded so far (the `statements` of all `session.statements` events).
pub(crate) async fn recorded_statements(s: &TestServer) -> Vec<serde_json::Value> {
    let events = s.admin.all_audit_events(0).await.unwrap();
    events
        .iter()
        .filter(|e| e.action == "session.statements")
        .flat_map(|e| e.details["statements"].as_array().cloned().unwrap_or_default())
        .collect()
}

pub(crate) async fn run(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("psql is installed (scripts/deps.sh)"))
        .await
        .unwrap()
}

pub(crate) fn connect_body(resource: &str) -> ConnectBody {
    ConnectBody {
        resource: resource.into(),
        role: None,
        mfa: None,
        uses: None,
    }
}

#[tokio::test]
async fn a_grant_opens_a_session_and_tokens_are_single_use_and_bound() {
    let (s, alice, _grant) = with_grant().await;
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql(&s, "alice", "pg", t.token.expose(), "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // The same token again: refused with a clear FATAL.
    let again = run(psql(&s, "alice", "pg", t.token.expose(), "SELECT 1")).await;
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("FATAL") && err.contains("connect token is not valid"), "{err}");

    // Someone else's token, a token for another database, and garbage: all refused.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let other_user = run(psql(&s, "bob", "pg", t.token.expose(), "SELECT 1")).await;
    assert!(String::from_utf8_lossy(&other_user.stderr).contains("not valid"), "{other_user:?}");
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let other_db = run(psql(&s, "alice", "prod-db", t.token.expose(), "SELECT 1")).await;
    assert!(String::from_utf8_lossy(&other_db.stderr).contains("not valid"), "{other_db:?}");
    let garbage = run(psql(&s, "alice", "pg", "jgc_nonsense", "SELECT 1")).await;
    assert!(!garbage.status.success());

    // A token for a pool opens as many sessions as it says, and no more.
    let mut pool = connect_body("pg");
    pool.uses = Some(2);
    let t = alice.connect(&pool).await.unwrap();
    for _ in 0..2 {
        assert!(run(psql(&s, "alice", "pg", t.token.expose(), "SELECT 1")).await.status.success());
    }
    assert!(!run(psql(&s, "alice", "pg", t.token.expose(), "SELECT 1")).await.status.success());
    pool.uses = Some(0);
    assert_eq!(alice.connect(&pool).await.unwrap_err().code(), Some("invalid_uses"));

    // Without a grant there is no token at all.
    let err = s.login("bob").await.connect(&connect_body("pg")).await.unwrap_err();
    assert_eq!(err.code(), Some("grant_not_live"));
    let err = alice.connect(&connect_body("prod-db")).await.unwrap_err();
    assert_eq!(err.code(), Some("grant_not_live"));

    // The session and its statement are in the audit log; the session list shows it ended.
    crate::support::eventually("session.end recorded", || async {
        s.admin.all_audit_events(0).await.unwrap().iter().any(|e| e.action == "session.end")
    })
    .await;
    crate::support::eventually("the statement is recorded", || async {
        recorded_statements(&s).await.iter().any(|st| st["text"] == "SELECT 1")
    })
    .await;
    // The statements metric counts what the record holds (the writer counts them at commit).
    crate::support::eventually("the statements metric counts the record", || async {
        let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
        let counted = metrics
            .lines()
            .find_map(|l| l.strip_prefix("jitgate_statements_recorded_total "))
            .map(str::to_owned);
        counted == Some(recorded_statements(&s).await.len().to_string())
    })
    .await;
    let events = s.admin.all_audit_events(0).await.unwrap();
    assert!(events.iter().any(|e| e.action == "session.start" && e.outcome.as_str() == "denied"));
    let sessions = alice.db_sessions(false, false).await.unwrap();
    assert_eq!(sessions.len(), 3);
    assert!(
        sessions.iter().all(|s| s.end_reason.as_deref() == Some("client_left")),
        "{sessions:?}"
    );

    // The CLI runs psql with the token in the environment.
    s.cli_login("alice").await;
    let out = s.cli("alice", &["connect", "pg", "--", "-X", "-tAc", "SELECT 40 + 2"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "42");
}

/// Starts a long statement through the gateway and returns the running psql.
pub(crate) async fn sleeping_session(s: &TestServer, alice: &Client) -> std::process::Child {
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut cmd = psql(s, "alice", "pg", t.token.expose(), "SELECT pg_sleep(60)");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    crate::support::eventually("the session is live", || async {
        !alice.db_sessions(false, true).await.unwrap().is_empty()
    })
    .await;
    // Let psql's statement reach the upstream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    child
}

pub(crate) async fn wait_exit(child: std::process::Child) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (out, started.elapsed())
}

#[tokio::test]
async fn a_running_session_ends_when_its_grant_is_revoked() {
    let (s, alice, grant) = with_grant().await;
    let child = sleeping_session(&s, &alice).await;
    let revoked_at = Instant::now();
    alice.revoke(&grant, "done").await.unwrap();
    let (out, _) = wait_exit(child).await;
    let lag = revoked_at.elapsed();
    eprintln!("revoke → psql closed: {lag:?}");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jitgate: access grant revoked"), "{err}");
    let sessions = alice.db_sessions(false, false).await.unwrap();
    crate::support::eventually("the session is recorded as killed", || async {
        alice.db_sessions(false, false).await.unwrap()[0].end_reason.as_deref() == Some("killed: access grant revoked")
    })
    .await;
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn a_cancel_request_reaches_the_right_upstream_statement() {
    let (s, alice, _grant) = with_grant().await;
    let child = sleeping_session(&s, &alice).await;
    // psql sends a CancelRequest with the key the gateway gave it on SIGINT.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let (out, took) = wait_exit(child).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("canceling statement due to user request"), "{err}");
    assert!(took < Duration::from_secs(30), "the statement was cancelled, not run out");
    // The session itself stays usable until the client leaves: it ended as the client's choice.
    crate::support::eventually("the session ended", || async {
        alice.db_sessions(false, false).await.unwrap()[0].end_reason.is_some()
    })
    .await;
}

#[tokio::test]
async fn a_running_session_ends_when_its_grant_expires() {
    let (s, alice, _grant) = with_grant().await;
    let child = sleeping_session(&s, &alice).await;
    let expired_at = Instant::now();
    s.clock().advance(Duration::from_secs(31 * 60));
    let (out, _) = wait_exit(child).await;
    eprintln!("expiry → psql closed: {:?}", expired_at.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jitgate: access grant expired"), "{err}");
    // And a token cannot be had any more.
    assert_eq!(alice.connect(&connect_body("pg")).await.unwrap_err().code(), Some("grant_not_live"));
}

/// Sets whether the database behind `url` takes connections, ending the ones it has when not.
async fn store_reachable(url: &str, reachable: bool) {
    use sqlx::Connection;
    let db = url.rsplit('/').next().unwrap();
    let mut admin = sqlx::PgConnection::connect(&jitgate_store::testing::pg_admin_url()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS {reachable}"))
        .execute(&mut admin)
        .await
        .unwrap();
    if !reachable {
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_running_session_ends_at_its_grant_deadline_while_the_store_is_down() {
    let (s, alice, grant) = with_grant_on(TestServer::spawn_pg(true).await).await;
    let child = sleeping_session(&s, &alice).await;
    let store = s.settings().store_url.clone().expect("a PostgreSQL store");
    store_reachable(&store, false).await;
    // The store is gone: nothing can record the expiry, and yet the session must end with it.
    assert!(s.core.store.grant(&grant).await.is_err(), "the store is unreachable");
    let expired_at = Instant::now();
    s.clock().advance(Duration::from_secs(31 * 60));
    let (out, _) = tokio::time::timeout(Duration::from_secs(20), wait_exit(child))
        .await
        .expect("the session ended without the store");
    eprintln!("expiry with the store down → psql closed: {:?}", expired_at.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jitgate: access grant expired"), "{err}");
    // Back again: the engine records the expiry it could not record before.
    store_reachable(&store, true).await;
    crate::support::eventually_within("the expiry is recorded once the store is back", Duration::from_secs(30), || async {
        s.core
            .store
            .grant(&grant)
            .await
            .ok()
            .flatten()
            .is_some_and(|g| g.status == jitgate_core::grant::GrantStatus::Expired)
    })
    .await;
}

#[tokio::test]
async fn rows_and_statements_larger_than_any_buffer_pass_through() {
    let (s, alice, _grant) = with_grant().await;
    // A 20 MiB row from the server, and a 17 MiB statement from the client (on stdin: argv
    // cannot carry it); the statement is recorded cut to its first 4,096 characters.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql(&s, "alice", "pg", t.token.expose(), "SELECT repeat('x', 20971520)")).await;
    assert!(out.status.success(), "{:?}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 20_971_520);
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let literal = "y".repeat(17 * 1024 * 1024);
    let script = s.dir.path().join("big.sql");
    std::fs::write(&script, format!("SELECT length('{literal}')")).unwrap();
    let cmd = psql_with(&s, "alice", "pg", t.token.expose(), &["-f", &script.display().to_string()]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{:?}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (17 * 1024 * 1024).to_string());
    crate::support::eventually("the big statement is recorded as head, tail, length and hash", || async {
        recorded_statements(&s).await.iter().any(|st| {
            st["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("SELECT length('yyy") && t.len() == 3072)
                && st["tail"].as_str().is_some_and(|t| t.ends_with("yy')"))
                && st["length"] == 17 * 1024 * 1024 + "SELECT length('')".len()
                && st["truncated"] == true
        })
    })
    .await;
}

#[tokio::test]
async fn garbage_on_the_gateway_port_is_refused_without_harm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::spawn(false).await;
    let gw = *s.core.gateway_addr.get().unwrap();
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 64],
        vec![0, 0, 0, 8, 0, 3, 0, 0],
        [0u32.to_be_bytes(), 0u32.to_be_bytes()].concat(),
        [200_000u32.to_be_bytes().to_vec(), vec![0; 8]].concat(),
    ] {
        let mut c = tokio::net::TcpStream::connect(gw).await.unwrap();
        let _ = c.write_all(&junk).await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the gateway closed the connection for {junk:?}");
    }
    // Still serving.
    assert!(tokio::net::TcpStream::connect(gw).await.is_ok());
}

/// `jitgate serve --pg ADDR` (or `JITGATE_PG`) puts the gateway there instead of where
/// `[gateway] listen` says, as `--http` does for the API; a gateway the file switched off is not
/// switched on by it.
#[tokio::test]
async fn serve_pg_moves_the_gateway_from_where_the_config_puts_it() {
    use tokio::io::AsyncBufReadExt;
    // The configured address is taken: a server that tried to listen there would not start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let configured = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("jitgate.toml");
    std::fs::write(&cfg, format!("{CONFIG}\n[gateway]\nlisten = \"{configured}\"\n")).unwrap();
    let serve = |data: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"));
        cmd.args(["serve", "--http", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .env_remove("JITGATE_PG")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    for by_env in [false, true] {
        let mut cmd = serve(if by_env { "data-env" } else { "data-flag" });
        if by_env {
            cmd.env("JITGATE_PG", "127.0.0.1:0");
        } else {
            cmd.args(["--pg", "127.0.0.1:0"]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let started = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("listening on") {
                    return line;
                }
            }
            panic!("the server ended without starting (by_env: {by_env})");
        })
        .await
        .expect("started within 20 s");
        let gw: std::net::SocketAddr = started
            .split_once("PostgreSQL gateway on ")
            .map(|(_, at)| at.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no gateway address in {started:?}"));
        assert!(gw.ip().is_loopback() && gw.port() != configured.port(), "{started}");
        assert!(tokio::net::TcpStream::connect(gw).await.is_ok(), "{started}");
        child.kill().await.unwrap();
    }

    std::fs::write(&cfg, format!("{CONFIG}\n[gateway]\nenabled = false\n")).unwrap();
    let out = serve("data-off").args(["--pg", "127.0.0.1:0"]).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--pg") && err.contains("enabled = false"), "{err}");
    drop(taken);
}

#[tokio::test]
async fn psql_connects_over_tls_and_early_bytes_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, alice, _grant) = with_grant().await;
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut cmd = psql(
        &s,
        "alice",
        "pg",
        t.token.expose(),
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    cmd.env("PGSSLMODE", "require");
    let out = run(cmd).await;
    assert!(out.status.success(), "{out:?}");
    // The gateway's own TLS, not the upstream's (which this test cluster does not have).
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");

    // SSLRequest with bytes behind it before the handshake: refused, not 'S'.
    let gw = *s.core.gateway_addr.get().unwrap();
    let mut c = tokio::net::TcpStream::connect(gw).await.unwrap();
    let mut early = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    early.extend_from_slice(b"\x16\x03\x01injected");
    c.write_all(&early).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
}

/// Every byte under `dir`, to look for secrets that must not be there.
fn all_bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_bytes_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A resource in front of `port` on this host; `extra` goes into its `[postgres]` table.
fn upstream_spec(name: &str, host: &str, port: u16, extra: &str) -> jitgate_core::policy::Resource {
    let spec = format!(
        "name = \"{name}\"\n[postgres]\nhost = \"{host}\"\nport = {port}\ndatabase = \"postgres\"\nuser = \"postgres\"\n{extra}\n\
         [roles.read]\nrequesters = [\"engineers\"]\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\n\
         # These clusters exist to test logins and TLS; their only role is the superuser.\n\
         allow_privileged_login = true\n"
    );
    toml::from_str(&spec).unwrap()
}

/// alice's token for `resource` after bob approved her request.
async fn granted_token(s: &TestServer, resource: &str) -> String {
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body(resource, "read", Some("30m"), "check the upstream"))
        .await
        .unwrap();
    s.login("bob").await.approve(&r.id, "ok").await.unwrap();
    alice.connect(&connect_body(resource)).await.unwrap().token.expose().to_owned()
}

#[tokio::test]
async fn the_gateway_logs_in_upstream_with_scram_and_md5() {
    // SCRAM with the password sealed in the store; md5 with it in an environment variable.
    for method in ["scram-sha-256", "md5"] {
        let password = format!("upstream secret for {method}");
        let cluster = Cluster::password(method, &password);
        let s = TestServer::spawn(false).await;
        let extra = if method == "md5" {
            // Read by the gateway when it logs in upstream; this test owns the variable's name.
            std::env::set_var("JITGATE_TEST_UPSTREAM_PW_MD5", &password);
            "password_env = \"JITGATE_TEST_UPSTREAM_PW_MD5\""
        } else {
            ""
        };
        s.admin
            .put_resource(&upstream_spec("pw", "127.0.0.1", cluster.port, extra))
            .await
            .unwrap();
        if method == "scram-sha-256" {
            s.admin.set_resource_credential("pw", None, &password).await.unwrap();
        }
        let token = granted_token(&s, "pw").await;
        let out = run(psql(&s, "alice", "pw", &token, "SELECT current_user")).await;
        assert!(out.status.success(), "{method}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres", "{method}");
        let hba = std::fs::read_to_string(cluster.dir.join("data/pg_hba.conf")).unwrap();
        assert!(hba.lines().any(|l| l.starts_with("host") && l.ends_with(method)), "{method}: {hba}");
        // Sealed at rest: the password is nowhere in the server's data directory.
        assert!(
            !contains(&all_bytes_under(&s.data_dir()), password.as_bytes()),
            "{method}: password stored in clear"
        );
    }
}

#[tokio::test]
async fn stored_upstream_passwords_are_sealed_admin_only_and_audited() {
    let password = "sealed upstream password";
    let cluster = Cluster::password("scram-sha-256", password);
    let s = TestServer::spawn(false).await;
    s.admin
        .put_resource(&upstream_spec("vault", "127.0.0.1", cluster.port, ""))
        .await
        .unwrap();
    let alice = s.login("alice").await;
    // Refusals change nothing.
    let e = alice.set_resource_credential("vault", None, "mine now").await.unwrap_err();
    assert!(e.to_string().contains("admin"), "{e}");
    let e = s.admin.set_resource_credential("nothing-here", None, password).await.unwrap_err();
    assert!(e.to_string().contains("not found") || e.to_string().contains("resource"), "{e}");
    let e = s.admin.set_resource_credential("vault", None, "").await.unwrap_err();
    assert!(e.to_string().contains("1 to 1024"), "{e}");
    let e = s.admin.clear_resource_credential("vault", None).await.unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");

    // Without a password the upstream refuses, and the client is told why.
    let token = granted_token(&s, "vault").await;
    let out = run(psql(&s, "alice", "vault", &token, "SELECT 1")).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"), "{out:?}");

    let listed = |who: &'static str| {
        let s = &s;
        async move {
            let c = if who == "admin" { s.admin.clone() } else { s.login(who).await };
            c.resources()
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.resource.name.as_str() == "vault")
                .unwrap()
                .upstream_credential
        }
    };
    assert_eq!(listed("admin").await.as_deref(), Some("none"));
    // Through the CLI, the password on standard input (never on argv).
    s.cli_login("admin").await;
    let out = s
        .cli(
            "admin",
            &["--json", "admin", "resource", "set-password", "vault", "--password-stdin"],
            Some(&format!("{password}\n")),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("\"sealed\"") && !out.stdout.contains(password), "{out:?}");
    assert_eq!(listed("admin").await.as_deref(), Some("sealed"));
    assert_eq!(listed("alice").await, None, "only administrators see where the password comes from");
    let out = s.cli("admin", &["admin", "resource", "list"], None).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("vault") && l.trim_end().ends_with("sealed")),
        "{out:?}"
    );
    let token = s.login("alice").await.connect(&connect_body("vault")).await.unwrap();
    let out = run(psql(&s, "alice", "vault", token.token.expose(), "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");

    let page = s.admin.audit_events(0, 10_000).await.unwrap();
    let set = page
        .events
        .iter()
        .find(|e| e.action == "resource.credential.set" && e.target == "vault")
        .expect("audited");
    assert_eq!(set.actor, "admin");
    assert!(!set.details.to_string().contains(password), "no secret in the audit log");
    assert!(!page.events.iter().any(|e| e.details.to_string().contains(password)));

    // Cleared: sessions cannot log in again; deleting the resource takes the password along.
    s.admin.clear_resource_credential("vault", None).await.unwrap();
    let token = s.login("alice").await.connect(&connect_body("vault")).await.unwrap();
    let out = run(psql(&s, "alice", "vault", token.token.expose(), "SELECT 1")).await;
    assert!(!out.status.success(), "{out:?}");
    s.admin.set_resource_credential("vault", None, password).await.unwrap();
    s.admin.delete_resource("vault").await.unwrap();
    s.admin
        .put_resource(&upstream_spec("vault", "127.0.0.1", cluster.port, ""))
        .await
        .unwrap();
    let e = s.admin.clear_resource_credential("vault", None).await.unwrap_err();
    assert!(
        e.to_string().contains("not found"),
        "a re-created resource inherits no password: {e}"
    );
}

/// A certificate authority and a server certificate it signed for `localhost`.
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "jitgate test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn upstream_tls_follows_sslmode() {
    let (ca, cert, key) = test_pki();
    let (other_ca, _, _) = test_pki();
    let password = "tls upstream password";
    let tls_cluster = Cluster::start_with(
        HostAuth::Password {
            method: "scram-sha-256",
            password,
        },
        |dir| {
            std::fs::write(dir.join("server.crt"), &cert).unwrap();
            std::fs::write(dir.join("server.key"), &key).unwrap();
            std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            format!(
                "ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n",
                d = dir.display()
            )
        },
    );
    let plain_cluster = Cluster::password("scram-sha-256", password);
    let work = tempfile::tempdir().unwrap();
    let (ca_file, other_file) = (work.path().join("ca.pem"), work.path().join("other.pem"));
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&other_file, &other_ca).unwrap();
    let s = TestServer::spawn(false).await;
    let tls_port = tls_cluster.port;
    // (resource, host, port, [postgres] lines, whether a session opens)
    let cases = [
        (
            "full",
            "localhost",
            tls_port,
            format!("sslmode = \"verify-full\"\nsslrootcert = \"{}\"", ca_file.display()),
            true,
        ),
        (
            "wrong-ca",
            "localhost",
            tls_port,
            format!("sslmode = \"verify-full\"\nsslrootcert = \"{}\"", other_file.display()),
            false,
        ),
        // The certificate names localhost, not 127.0.0.1: verify-ca accepts, verify-full not.
        (
            "ca-only",
            "127.0.0.1",
            tls_port,
            format!("sslmode = \"verify-ca\"\nsslrootcert = \"{}\"", ca_file.display()),
            true,
        ),
        (
            "wrong-name",
            "127.0.0.1",
            tls_port,
            format!("sslmode = \"verify-full\"\nsslrootcert = \"{}\"", ca_file.display()),
            false,
        ),
        ("required", "127.0.0.1", tls_port, "sslmode = \"require\"".to_owned(), true),
        (
            "no-tls-there",
            "127.0.0.1",
            plain_cluster.port,
            "sslmode = \"require\"".to_owned(),
            false,
        ),
        (
            "preferred-plain",
            "127.0.0.1",
            plain_cluster.port,
            "sslmode = \"prefer\"".to_owned(),
            true,
        ),
    ];
    for (name, host, port, extra, opens) in &cases {
        s.admin.put_resource(&upstream_spec(name, host, *port, extra)).await.unwrap();
        s.admin.set_resource_credential(name, None, password).await.unwrap();
        let token = granted_token(&s, name).await;
        let sql = "SELECT coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), 'none')";
        let out = run(psql(&s, "alice", name, &token, sql)).await;
        assert_eq!(out.status.success(), *opens, "{name}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match *name {
            "full" | "ca-only" | "required" => assert_eq!(stdout.trim(), "true", "{name}: the upstream session is encrypted"),
            "preferred-plain" => assert_eq!(stdout.trim(), "false", "{name}"),
            "no-tls-there" => assert!(stderr.contains("does not offer TLS"), "{name}: {stderr}"),
            _ => assert!(stderr.contains("TLS") && stderr.contains("certificate"), "{name}: {stderr}"),
        }
    }
    // Settings that cannot work are refused when the resource is saved.
    let e = s
        .admin
        .put_resource(&upstream_spec("bad", "/var/run/postgresql", 5432, "sslmode = \"require\""))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Unix socket"), "{e}");
}

#[tokio::test]
async fn the_gateway_reaches_a_local_upstream_over_its_unix_socket() {
    // The throwaway cluster listens on a socket in its own directory, trust for local logins.
    let cluster = Cluster::password("scram-sha-256", "unused here");
    let s = TestServer::spawn(false).await;
    let dir = cluster.dir.display().to_string();
    s.admin.put_resource(&upstream_spec("sock", &dir, cluster.port, "")).await.unwrap();
    let token = granted_token(&s, "sock").await;
    // A backend reached over a Unix socket has no client address.
    let out = run(psql(
        &s,
        "alice",
        "sock",
        &token,
        "SELECT coalesce(inet_client_addr()::text, 'socket')",
    ))
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "socket");
}

#[tokio::test]
async fn ephemeral_access_makes_a_role_for_the_grant_and_drops_it_when_the_grant_ends() {
    let s = TestServer::spawn(true).await;
    let (host, port, user, db) = upstream().await;
    let spec = format!(
        "name = \"eph\"\n[postgres]\nhost = \"{host}\"\nport = {port}\ndatabase = \"{db}\"\nuser = \"{user}\"\n\
         [roles.read]\nrequesters = [\"engineers\"]\nmax_duration = \"1h\"\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\n\
         access = \"ephemeral\"\ndb_roles = [\"pg_read_all_data\"]\n"
    );
    s.admin.put_resource(&toml::from_str(&spec).unwrap()).await.unwrap();
    let direct = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args(["-X", "-tAc", sql])
            .env("PGHOST", &host)
            .env("PGPORT", port.to_string())
            .env("PGUSER", &user)
            .env("PGDATABASE", &db)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("eph", "read", Some("30m"), "read the tables"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    let role = jitgate_server::ephemeral::role_name(&grant);
    let exists = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'");
    crate::support::eventually("the grant's role exists", || async { direct(&exists) == "1" }).await;
    let member = format!("SELECT pg_has_role('{role}', 'pg_read_all_data', 'member')");
    assert_eq!(direct(&member), "t");

    // Sessions log in as the grant's own role.
    let t = alice.connect(&connect_body("eph")).await.unwrap();
    let out = run(psql(&s, "alice", "eph", t.token.expose(), "SELECT current_user")).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), role, "{out:?}");

    // When the grant ends: the open backend is gone and so is the role, confirmed in the log.
    let t = alice.connect(&connect_body("eph")).await.unwrap();
    let mut cmd = psql(&s, "alice", "eph", t.token.expose(), "SELECT pg_sleep(60)");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let backends = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'");
    crate::support::eventually("the backend runs", || async { direct(&backends) == "1" }).await;
    s.clock().advance(Duration::from_secs(31 * 60));
    let (out, _) = wait_exit(child).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("access grant expired"));
    crate::support::eventually("the role is dropped", || async { direct(&exists) == "0" }).await;
    assert_eq!(direct(&backends), "0");
    let events = s.admin.all_audit_events(0).await.unwrap();
    assert!(events.iter().any(|e| e.action == "grant.db_role.create" && e.target == grant.id));
    assert!(events.iter().any(|e| e.action == "grant.db_role.revoked" && e.target == grant.id));
}

#[tokio::test]
async fn a_failed_role_removal_shows_as_pending_and_is_retried_until_confirmed() {
    let s = TestServer::spawn(true).await;
    let (host, port, user, db) = upstream().await;
    // The upstream trusts the service role; the variable is only there to be taken away.
    let var = "JITGATE_TEST_EPHEMERAL_RETRY_PW";
    std::env::set_var(var, "unused by a trust upstream");
    let spec = format!(
        "name = \"eph2\"\n[postgres]\nhost = \"{host}\"\nport = {port}\ndatabase = \"{db}\"\nuser = \"{user}\"\npassword_env = \"{var}\"\n\
         [roles.read]\nrequesters = [\"engineers\"]\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\naccess = \"ephemeral\"\n"
    );
    s.admin.put_resource(&toml::from_str(&spec).unwrap()).await.unwrap();
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("eph2", "read", Some("30m"), "read the tables"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    crate::support::eventually("the role exists", || async {
        alice
            .grant(&grant.id)
            .await
            .unwrap()
            .db_role
            .is_some_and(|d| d.ends_with(": active"))
    })
    .await;
    std::env::remove_var(var);
    alice.revoke(&grant.id, "done").await.unwrap();
    crate::support::eventually("the removal is pending", || async {
        alice
            .grant(&grant.id)
            .await
            .unwrap()
            .db_role
            .is_some_and(|d| d.contains("revocation pending"))
    })
    .await;
    s.cli_login("alice").await;
    let out = s.cli("alice", &["grants"], None).await;
    assert!(out.stdout.contains("revocation pending"), "{out:?}");
    // Past the first retry (5 s): the same failure again is not a new event, and the
    // administrators were alerted once.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let events = s.admin.all_audit_events(0).await.unwrap();
    let count = |action: &str| events.iter().filter(|e| e.action == action && e.target == grant.id).count();
    assert_eq!(count("grant.db_role.revoke_failed"), 1);
    assert_eq!(count("alert.revocation_stuck"), 1);
    assert!(s
        .admin
        .notifications()
        .await
        .unwrap()
        .iter()
        .any(|n| n.kind == "revocation_stuck" && n.subject == grant.id));
    std::env::set_var(var, "unused by a trust upstream");
    crate::support::eventually_within("the removal is confirmed by a retry", Duration::from_secs(15), || async {
        alice
            .grant(&grant.id)
            .await
            .unwrap()
            .db_role
            .is_some_and(|d| d.ends_with(": revoked"))
    })
    .await;
}

#[tokio::test]
async fn a_session_carries_on_into_an_approved_extension_and_ends_with_it() {
    let (s, alice, grant) = with_grant().await;
    s.cli_login("alice").await;
    let out = s
        .cli(
            "alice",
            &["extend", &grant, "--for", "20m", "--reason", "the migration runs long", "--json"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let extension = out.json()["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(out.json()["approved"], false, "the role needs an owner's approval");
    let next = s.login("bob").await.approve(&extension, "ok").await.unwrap().grant.unwrap();
    assert_eq!(
        next.starts_at,
        alice.grant(&grant).await.unwrap().ends_at,
        "the extension starts where the grant ends"
    );

    // A statement running across the first grant's end finishes: the session carries on.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut cmd = psql(&s, "alice", "pg", t.token.expose(), "SELECT pg_sleep(3); SELECT 'carried on'");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    crate::support::eventually("the session is live", || async {
        !alice.db_sessions(false, true).await.unwrap().is_empty()
    })
    .await;
    s.clock().advance(Duration::from_secs(31 * 60));
    let (out, _) = wait_exit(child).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("carried on"));
    let events = s.admin.all_audit_events(0).await.unwrap();
    let carried = events
        .iter()
        .find(|e| e.action == "session.continue")
        .expect("the carry-on is on the record");
    assert_eq!(carried.details["from"], grant.as_str());
    assert_eq!(carried.details["to"], next.id.as_str());
    let sessions = alice.db_sessions(false, false).await.unwrap();
    assert_eq!(sessions[0].grant_id, next.id, "the session now runs on the extension");

    // The extension's end is the end: nothing takes over from it.
    let child = sleeping_session(&s, &alice).await;
    s.clock().advance(Duration::from_secs(20 * 60));
    let (out, _) = wait_exit(child).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("jitgate: access grant expired"));
}

#[tokio::test]
async fn a_revoked_grant_does_not_carry_its_sessions_into_a_scheduled_extension() {
    let (s, alice, grant) = with_grant().await;
    let mut body = request_body("pg", "read", Some("20m"), "more time please");
    body.extends = Some(grant.clone());
    let r = alice.create_request(&body).await.unwrap();
    s.login("bob").await.approve(&r.id, "ok").await.unwrap();
    let child = sleeping_session(&s, &alice).await;
    s.login("bob").await.revoke(&grant, "stop now").await.unwrap();
    let (out, _) = wait_exit(child).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("jitgate: access grant revoked"));
}
