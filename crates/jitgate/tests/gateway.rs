//! The PostgreSQL gateway with a real PostgreSQL and real psql: a grant opens a session, the
//! token is single use and bound to user and database, and a running session is closed when
//! its grant is revoked or expires.

use crate::support::*;
use jitgate::client::Client;
use jitgate_api::ConnectBody;
use std::time::{Duration, Instant};

/// Host, port and user of the test PostgreSQL, and a fresh database on it.
async fn upstream() -> (String, u16, String, String) {
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
async fn with_grant() -> (TestServer, Client, String) {
    let s = TestServer::spawn(true).await;
    let (host, port, user, db) = upstream().await;
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
    (s, alice, grant.id)
}

fn psql(s: &TestServer, user: &str, db: &str, token: &str, sql: &str) -> std::process::Command {
    let gw = s.core.gateway_addr.get().unwrap();
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .env("PGHOST", gw.ip().to_string())
        .env("PGPORT", gw.port().to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", db)
        .env("PGPASSWORD", token)
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

async fn run(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("psql is installed (scripts/deps.sh)"))
        .await
        .unwrap()
}

fn connect_body(resource: &str) -> ConnectBody {
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
    let events = s.admin.all_audit_events(0).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "session.statement" && e.details["statement"] == "SELECT 1"));
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
async fn sleeping_session(s: &TestServer, alice: &Client) -> std::process::Child {
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

async fn wait_exit(child: std::process::Child) -> (std::process::Output, Duration) {
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

/// A throwaway PostgreSQL cluster whose pg_hba asks for `method` (scram-sha-256 or md5) with
/// the password of user `postgres`; stopped and removed when dropped.
struct PasswordCluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl PasswordCluster {
    fn as_postgres(cmd: &str) -> std::process::Output {
        let mut c = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", cmd]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", cmd]);
            c
        };
        c.output().expect("run initdb/pg_ctl")
    }

    fn start(method: &str, password: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (scripts/test.sh installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("pw"), password).unwrap();
        if running_as_root() {
            std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (d, b) = (dir.display(), bin.display());
        let init = Self::as_postgres(&format!(
            "'{b}/initdb' -D '{d}/data' -U postgres --auth-host={method} --auth-local=trust --pwfile='{d}/pw' -E UTF8 >'{d}/initdb.log' 2>&1"
        ));
        assert!(
            init.status.success(),
            "initdb: {}",
            std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default()
        );
        let conf = if method == "md5" { "password_encryption = md5\n" } else { "" };
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data/postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .unwrap();
        let start = Self::as_postgres(&format!(
            "'{b}/pg_ctl' -D '{d}/data' -l '{d}/server.log' -o \"-p {port} -k '{d}' -c listen_addresses=127.0.0.1\" -w start"
        ));
        assert!(start.status.success(), "pg_ctl start: {start:?}");
        if method == "md5" {
            // The password was stored as SCRAM at initdb; store it again as md5.
            let sql = format!("ALTER USER postgres PASSWORD '{password}'");
            let out = Self::as_postgres(&format!("'{b}/psql' -h '{d}' -p {port} -U postgres -d postgres -Xqc \"{sql}\""));
            assert!(out.status.success(), "{out:?}");
        }
        Self { dir, bin, port }
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl Drop for PasswordCluster {
    fn drop(&mut self) {
        let (d, b) = (self.dir.display(), self.bin.display());
        let _ = Self::as_postgres(&format!("'{b}/pg_ctl' -D '{d}/data' -m immediate stop"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_gateway_logs_in_upstream_with_scram_and_md5() {
    for (method, var) in [
        ("scram-sha-256", "JITGATE_TEST_UPSTREAM_PW_SCRAM"),
        ("md5", "JITGATE_TEST_UPSTREAM_PW_MD5"),
    ] {
        let password = format!("upstream secret for {method}");
        let cluster = PasswordCluster::start(method, &password);
        // Read by the gateway when it logs in upstream; this test owns the variable's name.
        std::env::set_var(var, &password);
        let s = TestServer::spawn(false).await;
        let spec = format!(
            "name = \"pw\"\n[postgres]\nport = {}\ndatabase = \"postgres\"\nuser = \"postgres\"\npassword_env = \"{var}\"\n\
             [roles.read]\nrequesters = [\"engineers\"]\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\n",
            cluster.port
        );
        s.admin.put_resource(&toml::from_str(&spec).unwrap()).await.unwrap();
        let alice = s.login("alice").await;
        let r = alice
            .create_request(&request_body("pw", "read", Some("30m"), "check the login"))
            .await
            .unwrap();
        s.login("bob").await.approve(&r.id, "ok").await.unwrap();
        let t = alice.connect(&connect_body("pw")).await.unwrap();
        let out = run(psql(&s, "alice", "pw", t.token.expose(), "SELECT current_user")).await;
        assert!(out.status.success(), "{method}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "postgres", "{method}");
        let log = std::fs::read_to_string(cluster.dir.join("data/pg_hba.conf")).unwrap();
        assert!(log.lines().any(|l| l.starts_with("host") && l.ends_with(method)), "{method}: {log}");
    }
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
