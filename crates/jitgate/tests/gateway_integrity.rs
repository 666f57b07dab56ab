//! The gateway as an attacker holding an ordinary grant would try it, with real psql (and raw
//! protocol messages where psql cannot send them) against a real PostgreSQL: stepping out of
//! the granted role, privileged upstream logins, and what the record shows.

use crate::gateway::*;
use crate::support::*;
use std::net::SocketAddr;

/// A bare PostgreSQL protocol client, for the messages psql never sends (FunctionCall).
pub(crate) mod raw {
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// What came back for one request: rows as text, and error messages.
    #[derive(Debug, Default)]
    pub struct Answer {
        pub rows: Vec<Vec<Option<String>>>,
        pub errors: Vec<String>,
        /// FunctionCallResponse values.
        pub results: Vec<Option<Vec<u8>>>,
    }

    pub struct Conn(pub TcpStream);

    impl Conn {
        /// Logs in through the gateway with a connect token (cleartext, from loopback).
        pub async fn open(addr: SocketAddr, user: &str, db: &str, token: &str) -> Self {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut body = 196_608u32.to_be_bytes().to_vec();
            for (k, v) in [("user", user), ("database", db)] {
                body.extend_from_slice(k.as_bytes());
                body.push(0);
                body.extend_from_slice(v.as_bytes());
                body.push(0);
            }
            body.push(0);
            let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
            startup.extend_from_slice(&body);
            s.write_all(&startup).await.unwrap();
            let mut c = Self(s);
            let (kind, _) = c.next().await;
            assert_eq!(kind, b'R', "the gateway asks for the token");
            let mut pw = token.as_bytes().to_vec();
            pw.push(0);
            c.0.write_all(&msg(b'p', &pw)).await.unwrap();
            let login = c.until_ready().await;
            assert!(login.errors.is_empty(), "login refused: {:?}", login.errors);
            c
        }

        pub async fn next(&mut self) -> (u8, Vec<u8>) {
            let mut head = [0u8; 5];
            self.0.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            self.0.read_exact(&mut body).await.unwrap();
            (head[0], body)
        }

        pub async fn until_ready(&mut self) -> Answer {
            let mut a = Answer::default();
            loop {
                let (kind, body) = self.next().await;
                match kind {
                    b'Z' => return a,
                    b'E' => a.errors.push(error_message(&body)),
                    b'D' => a.rows.push(data_row(&body)),
                    b'V' => {
                        let len = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                        a.results.push((len >= 0).then(|| body[4..4 + len as usize].to_vec()));
                    }
                    _ => {}
                }
            }
        }

        pub async fn query(&mut self, sql: &str) -> Answer {
            let mut b = sql.as_bytes().to_vec();
            b.push(0);
            self.0.write_all(&msg(b'Q', &b)).await.unwrap();
            self.until_ready().await
        }

        /// A FunctionCall ('F') of function `oid` with text arguments.
        pub async fn function_call(&mut self, oid: u32, args: &[&str]) -> Answer {
            let mut b = oid.to_be_bytes().to_vec();
            b.extend_from_slice(&1u16.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&(args.len() as u16).to_be_bytes());
            for a in args {
                b.extend_from_slice(&(a.len() as i32).to_be_bytes());
                b.extend_from_slice(a.as_bytes());
            }
            b.extend_from_slice(&0u16.to_be_bytes());
            self.0.write_all(&msg(b'F', &b)).await.unwrap();
            self.until_ready().await
        }
    }

    fn error_message(body: &[u8]) -> String {
        let mut at = 0;
        while at < body.len() && body[at] != 0 {
            let code = body[at];
            let end = at + 1 + body[at + 1..].iter().position(|&c| c == 0).unwrap();
            if code == b'M' {
                return String::from_utf8_lossy(&body[at + 1..end]).into_owned();
            }
            at = end + 1;
        }
        String::new()
    }

    fn data_row(body: &[u8]) -> Vec<Option<String>> {
        let n = u16::from_be_bytes([body[0], body[1]]);
        let mut at = 2;
        (0..n)
            .map(|_| {
                let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
                at += 4;
                if len < 0 {
                    return None;
                }
                let v = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
                at += len as usize;
                Some(v)
            })
            .collect()
    }
}

/// Resource `pg` as the server has it, to add roles to.
async fn resource_pg(s: &TestServer) -> jitgate_core::policy::Resource {
    let all = s.admin.resources().await.unwrap();
    all.into_iter().find(|r| r.resource.name.as_str() == "pg").unwrap().resource
}

fn gateway(s: &TestServer) -> SocketAddr {
    *s.core.gateway_addr.get().unwrap()
}

#[tokio::test]
async fn a_read_grant_cannot_step_out_of_its_login() {
    let (s, alice, _grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    let login = read_login(&up.db);
    up.sql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let backdoor = format!("{}_backdoor", up.db);
    // Every way back to the service login the finding listed, each followed by who we are.
    let script = format!(
        "\\set ON_ERROR_STOP 0\n\
         RESET ROLE;\nSELECT current_user || '/' || session_user;\n\
         SET ROLE NONE;\nSELECT current_user || '/' || session_user;\n\
         SET ROLE {service};\nSELECT current_user || '/' || session_user;\n\
         SET SESSION AUTHORIZATION DEFAULT;\nSELECT current_user || '/' || session_user;\n\
         RESET SESSION AUTHORIZATION;\nSELECT current_user || '/' || session_user;\n\
         SELECT set_config('role', 'none', false);\nSELECT current_user || '/' || session_user;\n\
         SET SESSION AUTHORIZATION {service};\nSELECT current_user || '/' || session_user;\n\
         UPDATE t SET x = 2;\n\
         CREATE ROLE {backdoor} LOGIN;\n",
        service = up.user
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("escape.sql");
    std::fs::write(&file, script).unwrap();
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql_with(&s, "alice", "pg", t.token.expose(), &["-f", file.to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let who: Vec<&str> = stdout.lines().filter(|l| l.contains('/')).collect();
    let me = format!("{login}/{login}");
    assert_eq!(who.len(), 7, "{out:?}");
    assert!(
        who.iter().all(|w| *w == me),
        "every escape leaves the session at its login: {who:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permission denied to set role"), "{stderr}");
    assert!(stderr.contains("permission denied for table t"), "{stderr}");
    assert!(stderr.contains("permission denied to create role"), "{stderr}");

    // The same through a FunctionCall message, which psql never sends.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut c = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    let set_config: u32 = up.sql("SELECT 'set_config'::regproc::oid").parse().unwrap();
    let answer = c.function_call(set_config, &["role", "none", "false"]).await;
    assert!(answer.errors.is_empty(), "{answer:?}");
    let answer = c.function_call(set_config, &["role", &up.user, "false"]).await;
    assert!(answer.errors.iter().any(|e| e.contains("permission denied")), "{answer:?}");
    let answer = c.query("SELECT current_user, session_user").await;
    assert_eq!(answer.rows, vec![vec![Some(login.clone()), Some(login.clone())]]);
    let answer = c.query("UPDATE t SET x = 3").await;
    assert!(answer.errors.iter().any(|e| e.contains("permission denied")), "{answer:?}");
    drop(c);

    // Nothing changed upstream, and no role outlives the grant.
    assert_eq!(up.sql("SELECT x FROM t"), "1");
    assert_eq!(up.sql(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{backdoor}'")), "0");
}

#[tokio::test]
async fn a_privileged_upstream_login_is_refused_unless_the_role_allows_it() {
    let (s, alice, _grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    // Roles beside `read`: one without a login of its own (the service login, a superuser, as
    // in the old quickstart), one whose login reaches CREATEROLE through a membership, and one
    // that says it may be privileged.
    let sneaky = format!("{}_sneaky", up.db);
    let admin_group = format!("{}_admins", up.db);
    let disguised = format!("{}_disguised", up.db);
    up.sql(&format!(
        "CREATE ROLE {admin_group} NOLOGIN CREATEROLE; CREATE ROLE {sneaky} LOGIN IN ROLE {admin_group}; \
         CREATE ROLE {disguised} LOGIN SUPERUSER; ALTER ROLE {disguised} SET role = '{}'",
        read_login(&up.db)
    ));
    let mut resource = resource_pg(&s).await;
    let read = resource.roles.values().next().unwrap().clone();
    let mut role = |name: &str, login: Option<String>, allow: bool| {
        let mut p = read.clone();
        p.login = login;
        p.allow_privileged_login = allow;
        resource.roles.insert(name.parse().unwrap(), p);
    };
    role("superuser", None, false);
    role("sneaky", Some(sneaky.clone()), false);
    // A superuser whose sessions start as another role (a role-level `role` setting, which a
    // login may even set on itself): current_user and is_superuser say "read", it is not.
    role("disguised", Some(disguised.clone()), false);
    role("breakglass", None, true);
    s.admin.put_resource(&resource).await.unwrap();
    let bob = s.login("bob").await;
    for r in ["superuser", "sneaky", "disguised", "breakglass"] {
        let req = alice
            .create_request(&request_body("pg", r, Some("30m"), "try the other logins"))
            .await
            .unwrap();
        bob.approve(&req.id, "ok").await.unwrap();
    }
    let token = |role: &str| {
        let mut body = connect_body("pg");
        body.role = Some(role.into());
        let alice = &alice;
        async move { alice.connect(&body).await.unwrap().token.expose().to_owned() }
    };

    let out = run(psql(&s, "alice", "pg", &token("superuser").await, "SELECT 1")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FATAL") && err.contains("is privileged (superuser)"), "{err}");
    assert!(err.contains("allow_privileged_login"), "the message says what to do: {err}");

    let out = run(psql(&s, "alice", "pg", &token("sneaky").await, "SELECT 1")).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("CREATEROLE through membership in {admin_group}")), "{err}");

    let out = run(psql(&s, "alice", "pg", &token("disguised").await, "SELECT 1")).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("superuser"), "{err}");

    let out = run(psql(&s, "alice", "pg", &token("breakglass").await, "SELECT current_user")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.user);

    // Each refusal is on the record as a denied session.
    crate::support::eventually("the refusals are recorded", || async {
        let events = s.admin.all_audit_events(0).await.unwrap();
        events
            .iter()
            .filter(|e| e.action == "session.end" && e.outcome.as_str() == "denied")
            .count()
            == 3
    })
    .await;

    // The administrator sees why, per role.
    s.cli_login("admin").await;
    let out = s.cli("admin", &["--json", "admin", "resource", "check", "pg"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let check: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let role = |name: &str| {
        check["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(role("read")["sessions_allowed"], true);
    assert_eq!(role("read")["login"]["name"], read_login(&up.db));
    assert!(role("read")["login"]["member_of"].to_string().contains("pg_read_all_data"));
    assert_eq!(role("superuser")["sessions_allowed"], false);
    assert_eq!(role("sneaky")["sessions_allowed"], false);
    assert!(role("sneaky")["login"]["privileges"].to_string().contains("CREATEROLE"));
    assert_eq!(role("breakglass")["sessions_allowed"], true);
    let text = s.cli("admin", &["admin", "resource", "check", "pg"], None).await;
    assert!(text.stdout.contains("sessions REFUSED"), "{text:?}");
}

/// The `backend_ended` details of the session's `session.end` event, once written.
async fn backend_ended(s: &TestServer) -> serde_json::Value {
    let last_end = || async {
        let events = s.admin.all_audit_events(0).await.unwrap();
        events
            .iter()
            .rev()
            .find(|e| e.action == "session.end")
            .map(|e| e.details["backend_ended"].clone())
    };
    crate::support::eventually("the session's end is recorded", || async { last_end().await.is_some() }).await;
    last_end().await.unwrap()
}

#[tokio::test]
async fn nothing_sent_before_a_revoke_commits_after_it() {
    let (s, alice, grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    let login = read_login(&up.db);
    up.sql(&format!("CREATE TABLE t (x int); GRANT INSERT ON t TO {login}"));
    // Three ways to have work waiting upstream when the grant ends: requests pipelined behind
    // a sleep, one Query message with a sleep then an INSERT, and an explicit transaction.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut pipelined = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut one_message = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut explicit = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    {
        use tokio::io::AsyncWriteExt;
        let q = |sql: &str| raw::msg(b'Q', format!("{sql}\0").as_bytes());
        let burst = [q("SELECT pg_sleep(4)"), q("INSERT INTO t VALUES (1)")].concat();
        pipelined.0.write_all(&burst).await.unwrap();
        one_message
            .0
            .write_all(&q("SELECT pg_sleep(4); INSERT INTO t VALUES (2)"))
            .await
            .unwrap();
        explicit
            .0
            .write_all(&q("BEGIN; INSERT INTO t VALUES (3); SELECT pg_sleep(4); COMMIT"))
            .await
            .unwrap();
    }
    let sleeping = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{login}' AND query LIKE '%pg_sleep%'");
    crate::support::eventually("the three statements run", || async { up.sql(&sleeping) == "3" }).await;
    let revoked_at = std::time::Instant::now();
    alice.revoke(&grant, "done").await.unwrap();
    let backends = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{login}'");
    crate::support::eventually("the backends are gone", || async { up.sql(&backends) == "0" }).await;
    eprintln!("revoke → every backend gone: {:?}", revoked_at.elapsed());
    // Past the moment the sleeps would have ended: nothing was inserted.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(up.sql("SELECT count(*) FROM t"), "0", "nothing committed after the revoke");
    let ended = backend_ended(&s).await;
    assert_eq!(ended["method"], "terminated", "{ended}");
    assert_eq!(ended["confirmed"], true, "{ended}");
    assert!(ended["lag_ms"].as_f64().unwrap() < 5000.0, "{ended}");
}

#[tokio::test]
async fn an_idle_session_in_a_transaction_is_closed_and_rolled_back_at_the_end() {
    let (s, alice, grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    let login = read_login(&up.db);
    up.sql(&format!("CREATE TABLE t (x int); GRANT INSERT ON t TO {login}"));
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut c = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    assert!(c.query("BEGIN; INSERT INTO t VALUES (1)").await.errors.is_empty());
    alice.revoke(&grant, "done").await.unwrap();
    let backends = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{login}'");
    crate::support::eventually("the backend is gone", || async { up.sql(&backends) == "0" }).await;
    assert_eq!(up.sql("SELECT count(*) FROM t"), "0");
    let ended = backend_ended(&s).await;
    assert_eq!(ended["method"], "closed", "{ended}");
    assert_eq!(ended["confirmed"], true, "{ended}");
}

/// A fresh database on the test PostgreSQL, reached as its administrator.
async fn fresh_upstream() -> Up {
    let (host, port, user, db) = upstream().await;
    Up { host, port, user, db }
}

/// Resource `eph` in front of `up` with an ephemeral role `rw` whose grants' roles are members
/// of `db_roles`, the service login `service` and `extra` lines in `[postgres]`; and alice's
/// approved grant on it.
async fn ephemeral_grant(
    s: &TestServer,
    up: &Up,
    service: &str,
    extra: &str,
    db_roles: &[String],
) -> (jitgate_client::Client, jitgate_core::grant::Grant) {
    let spec = format!(
        "name = \"eph\"\n[postgres]\nhost = \"{}\"\nport = {}\ndatabase = \"{}\"\nuser = \"{service}\"\n{extra}\n\
         [roles.rw]\nrequesters = [\"engineers\"]\nmax_duration = \"1h\"\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\n\
         access = \"ephemeral\"\ndb_roles = {db_roles:?}\n",
        up.host, up.port, up.db
    );
    s.admin.put_resource(&toml::from_str(&spec).unwrap()).await.unwrap();
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("eph", "rw", Some("30m"), "leave something behind"))
        .await
        .unwrap();
    let grant = s.login("bob").await.approve(&r.id, "ok").await.unwrap().grant.unwrap();
    (alice, grant)
}

/// Waits until the grant's database role is removed, confirmed.
async fn role_removed(alice: &jitgate_client::Client, grant: &str) {
    crate::support::eventually("the role is removed and confirmed", || async {
        alice.grant(grant).await.unwrap().db_role.is_some_and(|d| d.ends_with(": revoked"))
    })
    .await;
}

#[tokio::test]
async fn an_ephemeral_grant_leaves_nothing_behind_with_a_createrole_only_service_login() {
    let s = TestServer::spawn(true).await;
    let up = fresh_upstream().await;
    let db = &up.db;
    // The service login can create roles and nothing more; the grant's role may read and
    // create objects in the public schema.
    let (svc, app) = (format!("{db}_svc"), format!("{db}_app"));
    up.sql(&format!(
        "CREATE ROLE {svc} LOGIN CREATEROLE; CREATE ROLE {app} NOLOGIN; \
         GRANT USAGE, CREATE ON SCHEMA public TO {app}; GRANT {app} TO {svc} WITH ADMIN OPTION; \
         GRANT pg_read_all_data TO {svc} WITH ADMIN OPTION"
    ));
    let (alice, grant) = ephemeral_grant(&s, &up, &svc, "", &["pg_read_all_data".into(), app]).await;
    let role = jitgate_server::ephemeral::role_name(&grant);

    // During the grant, plant a SECURITY DEFINER function and a table.
    let t = alice.connect(&connect_body("eph")).await.unwrap();
    let plant = "CREATE FUNCTION public.planted() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT current_user::text $$; \
                 CREATE TABLE public.planted_table (x int); SELECT public.planted()";
    let out = run(psql(&s, "alice", "eph", t.token.expose(), plant)).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().last(), Some(role.as_str()));

    alice.revoke(&grant.id, "done").await.unwrap();
    role_removed(&alice, &grant.id).await;
    assert_eq!(up.sql(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")), "0");
    assert_eq!(
        up.sql("SELECT count(*) FROM pg_proc WHERE proname = 'planted'"),
        "0",
        "the function is gone"
    );
    assert_eq!(up.sql("SELECT count(*) FROM pg_class WHERE relname = 'planted_table'"), "0");
    // Nothing was handed to the service login.
    assert_eq!(
        up.sql(&format!(
            "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE r.rolname = '{svc}'"
        )),
        "0"
    );
}

/// Makes `grant`'s role three times at once on each of `instances`, racing the provisioner of
/// the instance that approved it; every call must get the one role made, with its password.
async fn made_at_once(instances: &[&TestServer], grant: &jitgate_core::grant::Grant) -> String {
    let mut makers = tokio::task::JoinSet::new();
    for core in instances.iter().flat_map(|s| [s.core.clone(), s.core.clone(), s.core.clone()]) {
        let grant = grant.clone();
        makers.spawn(async move {
            use secrecy::ExposeSecret;
            let made = core.ensure_ephemeral(&grant).await;
            made.map(|m| m.map(|(role, password)| (role, password.expose_secret().to_owned())))
                .map_err(|e| e.message)
        });
    }
    let made = makers.join_all().await;
    assert!(made.iter().all(|m| m == &made[0]), "{made:?}");
    made[0].clone().unwrap().expect("an ephemeral role").0
}

/// Alice's approved grant on `eph` through `s`, whose role is a member of a fresh NOLOGIN role.
async fn grant_on_a_fresh_upstream(s: &TestServer) -> jitgate_core::grant::Grant {
    let up = fresh_upstream().await;
    let app = format!("{}_app", up.db);
    up.sql(&format!("CREATE ROLE {app} NOLOGIN"));
    ephemeral_grant(s, &up, &up.user, "", &[app]).await.1
}

/// Alice connects to `eph` through `s`'s gateway and is `role` there.
async fn connects_as(s: &TestServer, role: &str) {
    let t = s.login("alice").await.connect(&connect_body("eph")).await.unwrap();
    let out = run(psql(s, "alice", "eph", t.token.expose(), "SELECT current_user")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), role);
}

#[tokio::test]
async fn a_first_connect_racing_the_provisioner_gets_the_one_role_made() {
    let s = TestServer::spawn(true).await;
    let grant = grant_on_a_fresh_upstream(&s).await;
    let role = made_at_once(&[&s], &grant).await;
    connects_as(&s, &role).await;
}

#[tokio::test]
async fn two_instances_making_a_grants_role_at_once_agree_on_it() {
    let s = TestServer::spawn_pg(true).await;
    let other = s.another_instance().await;
    let grant = grant_on_a_fresh_upstream(&s).await;
    // The loser's CREATE ROLE fails on the other instance; it takes the winner's record.
    let role = made_at_once(&[&s, &other], &grant).await;
    connects_as(&other, &role).await;
}

#[tokio::test]
async fn a_role_that_cannot_be_made_fails_the_connect_without_its_password_on_the_record() {
    let s = TestServer::spawn(true).await;
    let up = fresh_upstream().await;
    let weak = format!("{}_weak", up.db);
    up.sql(&format!("CREATE ROLE {weak} LOGIN"));
    let (alice, _grant) = ephemeral_grant(&s, &up, &weak, "", &[]).await;
    let t = alice.connect(&connect_body("eph")).await.unwrap();
    let out = run(psql(&s, "alice", "eph", t.token.expose(), "SELECT 1")).await;
    assert!(!out.status.success(), "{out:?}");
    let events = s.admin.all_audit_events(0).await.unwrap();
    let record = serde_json::to_string(&events).unwrap();
    assert!(record.contains("permission denied to create role"), "the refusal is on the record");
    assert!(!record.contains("jitpw_"), "no password on the record: {record}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("jitpw_"), "{out:?}");
}

#[tokio::test]
async fn a_quarantine_role_keeps_what_a_grant_made_powerless() {
    let s = TestServer::spawn(true).await;
    let up = fresh_upstream().await;
    let (app, quarantine) = (format!("{}_app", up.db), format!("{}_quarantine", up.db));
    up.sql(&format!(
        "CREATE ROLE {app} NOLOGIN; GRANT USAGE, CREATE ON SCHEMA public TO {app}; CREATE ROLE {quarantine} NOLOGIN"
    ));
    let extra = format!("quarantine_role = \"{quarantine}\"");
    let (alice, grant) = ephemeral_grant(&s, &up, &up.user, &extra, &[app]).await;
    let t = alice.connect(&connect_body("eph")).await.unwrap();
    let plant = "CREATE FUNCTION public.planted() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT current_user::text $$";
    let out = run(psql(&s, "alice", "eph", t.token.expose(), plant)).await;
    assert!(out.status.success(), "{out:?}");
    alice.revoke(&grant.id, "done").await.unwrap();
    role_removed(&alice, &grant.id).await;
    // The function stays for inspection, owned by the quarantine role: it runs as a role
    // that can do nothing.
    assert_eq!(up.sql("SELECT public.planted()"), quarantine);
}

#[tokio::test]
async fn the_record_cannot_be_evaded_by_padding_encoding_or_function_calls() {
    let (s, alice, _grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    let dir = tempfile::tempdir().unwrap();

    // 1. Padding: 5,000 characters of comment before the part that matters.
    let padded = format!("SELECT 1 /* {} */, 'the part that matters' AS hidden", "x".repeat(5000));
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql(&s, "alice", "pg", t.token.expose(), &padded)).await;
    assert!(out.status.success(), "{out:?}");

    // 2. Another client encoding: LATIN1 bytes after a SET, in one file.
    let file = dir.path().join("latin1.sql");
    std::fs::write(
        &file,
        b"SET client_encoding = 'LATIN1';\nSELECT 'caf\xe9' AS drink, 'after the accent' AS rest;\n",
    )
    .unwrap();
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql_with(&s, "alice", "pg", t.token.expose(), &["-f", file.to_str().unwrap()])).await;
    assert!(out.status.success(), "{out:?}");

    // 3. A FunctionCall message, and 4. COPY out.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut c = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    let set_config: u32 = up.sql("SELECT 'set_config'::regproc::oid").parse().unwrap();
    assert!(c.function_call(set_config, &["role", "none", "false"]).await.errors.is_empty());
    drop(c);
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(psql(
        &s,
        "alice",
        "pg",
        t.token.expose(),
        "COPY (SELECT generate_series(1, 1000)) TO STDOUT",
    ))
    .await;
    assert!(out.status.success(), "{out:?}");

    crate::support::eventually("every statement is recorded", || async {
        let all = recorded_statements(&s).await;
        all.iter().any(|st| st["kind"] == "function_call")
            && all.iter().any(|st| st["text"].as_str().is_some_and(|t| t.starts_with("COPY")))
    })
    .await;
    let all = recorded_statements(&s).await;
    let padded_rec = all.iter().find(|st| st["truncated"] == true).expect("the padded statement");
    assert_eq!(padded_rec["length"], padded.len());
    assert_eq!(padded_rec["sha256"], hex_sha256(padded.as_bytes()));
    assert!(
        padded_rec["tail"].as_str().unwrap().ends_with("'the part that matters' AS hidden"),
        "{padded_rec}"
    );
    let latin = all
        .iter()
        .find(|st| st["text"].as_str().is_some_and(|t| t.contains("drink")))
        .expect("the LATIN1 statement");
    let text = latin["text"].as_str().unwrap();
    assert!(text.contains("'café' AS drink, 'after the accent' AS rest"), "{latin}");
    assert_eq!(latin["encoding"], "LATIN1");
    // The bytes as sent are on the record too, whatever encoding they were read in.
    assert!(latin["raw"].as_str().is_some_and(|r| !r.is_empty()), "{latin}");
    let call = all.iter().find(|st| st["kind"] == "function_call").unwrap();
    assert_eq!(call["function_oid"], set_config);
    assert_eq!(call["argument_sizes"], serde_json::json!([4, 4, 5]));
    crate::support::eventually("COPY volumes are on the record", || async {
        let events = s.admin.all_audit_events(0).await.unwrap();
        events
            .iter()
            .any(|e| e.action == "session.end" && e.details["copy_out_bytes"].as_u64().is_some_and(|n| n > 3000))
    })
    .await;
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn connect_takes_any_live_grant_of_the_role_and_names_the_roles_when_it_must_ask() {
    let (s, alice, first, _up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    // A second, shorter grant on the same role (as the quickstart's 30m and 1m ones).
    let bob = s.login("bob").await;
    let r = alice
        .create_request(&request_body("pg", "read", Some("5m"), "a second look"))
        .await
        .unwrap();
    bob.approve(&r.id, "ok").await.unwrap();
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    assert_eq!(t.grant_id, first, "the grant that ends last");
    let mut with_role = connect_body("pg");
    with_role.role = Some("read".into());
    assert_eq!(alice.connect(&with_role).await.unwrap().grant_id, first);

    // Grants on two roles: the caller must say which, and the message names them.
    let mut resource = resource_pg(&s).await;
    let read = resource.roles.values().next().unwrap().clone();
    resource.roles.insert("audit".parse().unwrap(), read);
    s.admin.put_resource(&resource).await.unwrap();
    let r = alice
        .create_request(&request_body("pg", "audit", Some("5m"), "another role"))
        .await
        .unwrap();
    bob.approve(&r.id, "ok").await.unwrap();
    let e = alice.connect(&connect_body("pg")).await.unwrap_err();
    assert_eq!(e.code(), Some("role_required"));
    assert!(e.to_string().contains("(audit, read)"), "{e}");
    assert_eq!(alice.connect(&with_role).await.unwrap().grant_id, first);
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_off_the_end() {
    let (s, alice, grant, up) = with_grant_and_upstream(TestServer::spawn(true).await).await;
    let login = read_login(&up.db);
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let mut c = raw::Conn::open(gateway(&s), "alice", "pg", t.token.expose()).await;
    {
        use tokio::io::AsyncWriteExt;
        // A result far larger than any buffer, which the client never reads: the gateway's
        // write to it blocks, and the backend blocks behind it.
        let q = raw::msg(b'Q', b"SELECT repeat('x', 1000) FROM generate_series(1, 2000000)\0");
        c.0.write_all(&q).await.unwrap();
    }
    let running = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{login}' AND state = 'active'");
    crate::support::eventually("the query runs", || async { up.sql(&running) == "1" }).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let revoked_at = std::time::Instant::now();
    alice.revoke(&grant, "done").await.unwrap();
    let backends = format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{login}'");
    crate::support::eventually("the backend is gone", || async { up.sql(&backends) == "0" }).await;
    eprintln!("revoke → backend of a client that does not read gone: {:?}", revoked_at.elapsed());
    crate::support::eventually("no live session left", || async {
        alice.db_sessions(false, true).await.unwrap().is_empty()
    })
    .await;
    drop(c);
}
