//! The audit log against an insider who can write the database (SQLite file or PostgreSQL) but
//! holds neither the signing key nor write access to the witness. Each attack must be caught
//! by `jitgate audit verify` with the witness, exit status 1, naming the first bad event or the
//! missing checkpoint. The HTTP witness in these tests is jitgate's own (`audit witness`), run
//! on a loopback port.

use crate::support::*;
use jitgate_api::ExportLine;
use jitgate_core::audit::{canonical_json, AuditEvent, ChainHead, Checkpoint, NewEvent, Outcome, GENESIS_HASH};
use jitgate_server::config::WitnessTarget;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The log as an insider sees it: events, checkpoints and the head row.
#[derive(Clone)]
struct Log {
    events: Vec<AuditEvent>,
    checkpoints: Vec<Checkpoint>,
    head: ChainHead,
}

async fn read_log(url: &str) -> Log {
    let store = jitgate_store::open_read_only(url).await.unwrap();
    Log {
        events: store.audit_events(0, 1_000_000).await.unwrap(),
        checkpoints: store.audit_checkpoints().await.unwrap(),
        head: store.audit_head().await.unwrap(),
    }
}

macro_rules! write_back {
    ($pool:expr, $log:expr) => {{
        let pool = $pool;
        let log: &Log = $log;
        let mut tx = pool.begin().await.unwrap();
        for t in ["audit_events", "audit_checkpoints"] {
            sqlx::query(&format!("DELETE FROM {t}")).execute(&mut *tx).await.unwrap();
        }
        for e in &log.events {
            sqlx::query("INSERT INTO audit_events (seq, ts, actor, action, target, outcome, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(e.seq)
                .bind(e.ts)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.outcome)
                .bind(canonical_json(&e.details))
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        for c in &log.checkpoints {
            sqlx::query("INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature, prev_seq, prev_hash, next_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.ts)
                .bind(&c.key_id)
                .bind(&c.signature)
                .bind(c.prev.as_ref().map(|p| p.seq))
                .bind(c.prev.as_ref().map(|p| p.hash.clone()))
                .bind(c.next_key.clone())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        // After the inserts: their trigger moves the head, the insider sets it as they like.
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(log.head.seq)
            .bind(&log.head.hash)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }};
}

/// Writes the (tampered) log into the database, as someone with write access to it would.
async fn write_log(url: &str, log: &Log) {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        write_back!(&pool, log);
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{url}")).await.unwrap();
        write_back!(&pool, log);
        pool.close().await;
    }
}

/// The log as an export file.
fn write_export(path: &Path, log: &Log, header: &ExportLine) {
    let mut lines = vec![serde_json::to_string(header).unwrap()];
    lines.extend(
        log.events
            .iter()
            .map(|e| serde_json::to_string(&ExportLine::Event(e.clone())).unwrap()),
    );
    lines.extend(
        log.checkpoints
            .iter()
            .map(|c| serde_json::to_string(&ExportLine::Checkpoint(c.clone())).unwrap()),
    );
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn read_export(path: &Path) -> (ExportLine, Log) {
    let mut header = None;
    let mut log = Log {
        events: vec![],
        checkpoints: vec![],
        head: ChainHead::genesis(),
    };
    for line in std::fs::read_to_string(path).unwrap().lines() {
        match serde_json::from_str::<ExportLine>(line).unwrap() {
            h @ ExportLine::Header { .. } => header = Some(h),
            ExportLine::Event(e) => log.events.push(e),
            ExportLine::Checkpoint(c) => log.checkpoints.push(c),
        }
    }
    (header.unwrap(), log)
}

/// Recomputes every hash from `from` on, as an insider without the key can.
fn rechain(log: &mut Log, from: i64) {
    let i = (from - 1) as usize;
    let mut head = if i == 0 {
        ChainHead::genesis()
    } else {
        ChainHead {
            seq: log.events[i - 1].seq,
            hash: log.events[i - 1].hash.clone(),
        }
    };
    for e in log.events.iter_mut().skip(i) {
        let outcome = Outcome::parse(&e.outcome).unwrap();
        let n = NewEvent::new(e.actor.clone(), e.action.clone(), e.target.clone(), outcome, e.details.clone());
        *e = head.append(n, e.ts);
    }
    log.head = head;
}

struct Attack {
    what: &'static str,
    /// The sequence number the verdict must name.
    names: i64,
    /// Words the verdict must hold.
    says: &'static str,
    /// Whether verification of the store alone (no witness) still sees it.
    seen_without_witness: bool,
    log: Log,
}

/// The insider's attacks on `log` (with at least four checkpoints).
fn attacks(log: &Log) -> Vec<Attack> {
    let h = log.head.seq;
    let cps: Vec<i64> = log.checkpoints.iter().map(|c| c.seq).collect();
    assert!(cps.len() >= 4 && h > 20, "history too short: head {h}, checkpoints {cps:?}");
    let mut out = Vec::new();

    let mut l = log.clone();
    l.events[4].details = serde_json::json!({"sql": "SELECT 1"});
    out.push(Attack {
        what: "edit one event",
        names: 5,
        says: "does not match its hash",
        seen_without_witness: true,
        log: l,
    });

    let mut l = log.clone();
    l.events.remove(6);
    out.push(Attack {
        what: "delete one event",
        names: 7,
        says: "missing",
        seen_without_witness: true,
        log: l,
    });

    let mut l = log.clone();
    l.events.swap(9, 10);
    l.events[9].seq = 10;
    l.events[10].seq = 11;
    out.push(Attack {
        what: "swap two events",
        names: 10,
        says: "",
        seen_without_witness: true,
        log: l,
    });

    let mut l = log.clone();
    l.events.truncate((h - 3) as usize);
    out.push(Attack {
        what: "cut the tail, head left alone",
        names: h - 2,
        says: "missing",
        seen_without_witness: true,
        log: l,
    });

    // Back to just after a checkpoint, with everything later gone, the head rolled back too.
    let keep = cps[cps.len() - 3];
    let mut l = log.clone();
    l.events.truncate(keep as usize);
    l.checkpoints.retain(|c| c.seq <= keep);
    l.head = ChainHead {
        seq: keep,
        hash: l.events[keep as usize - 1].hash.clone(),
    };
    let first_lost_checkpoint = cps[cps.len() - 2];
    out.push(Attack {
        what: "cut the tail, roll the head back, delete the later checkpoints",
        names: keep + 1,
        says: "missing",
        seen_without_witness: false,
        log: l,
    });

    let l = Log {
        events: vec![],
        checkpoints: vec![],
        head: ChainHead {
            seq: 0,
            hash: GENESIS_HASH.into(),
        },
    };
    out.push(Attack {
        what: "delete everything",
        names: 1,
        says: "missing",
        seen_without_witness: false,
        log: l,
    });

    // A statement rewritten after the last checkpoint the insider keeps, the chain recomputed.
    let mut l = log.clone();
    l.checkpoints.retain(|c| c.seq <= keep);
    l.events[keep as usize].details = serde_json::json!({"sql": "SELECT 1"});
    rechain(&mut l, keep + 1);
    out.push(Attack {
        what: "rewrite an event and recompute the chain after the last checkpoint",
        names: first_lost_checkpoint,
        says: "checkpoint at event",
        seen_without_witness: false,
        log: l,
    });

    let mut l = log.clone();
    let middle = cps[1];
    l.checkpoints.retain(|c| c.seq != middle);
    out.push(Attack {
        what: "delete one checkpoint in the middle",
        names: middle,
        says: "is missing",
        seen_without_witness: true,
        log: l,
    });
    out
}

async fn jitgate(args: &[&str]) -> CliOutput {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(args)
        .env("JITGATE_CONFIG_DIR", "/nonexistent-jitgate-cli-config")
        .env_remove("JITGATE_CONFIG")
        .output()
        .await
        .unwrap();
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn public_key_hex(key_file: &Path) -> String {
    let k = jitgate_server::audit_log::public_key_of_signing_file(key_file).unwrap();
    k.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A witness on "another machine": jitgate's HTTP witness on a loopback port.
async fn http_witness(file: PathBuf, key_hex: &str, listener: tokio::net::TcpListener) -> (String, tokio::task::JoinHandle<()>) {
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let key = jitgate_server::audit_log::parse_public_key(key_hex).unwrap();
    let w = jitgate_server::witness::server::HttpWitness::open(file, key).unwrap();
    let task = tokio::spawn(async move {
        let _ = w.serve(listener).await;
    });
    (url, task)
}

/// A server with a witness and some history (many checkpoints: one every 4 events), stopped.
/// Returns the store URL, the pinned key, the witness (file path or URL) and the test dir.
async fn history(backend: Backend, witness: WitnessTarget, key_file: PathBuf) -> (String, String, Arc<tempfile::TempDir>) {
    let s = TestServer::spawn_with(backend, false, |st| {
        st.checkpoint_every = 4;
        st.checkpoint_interval = Duration::from_millis(200);
        st.signing_key_file = Some(key_file.clone());
        st.witnesses = vec![witness];
    })
    .await;
    let alice = s.login("alice").await;
    let bob = s.login("bob").await;
    for i in 0..5 {
        let r = alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} work")))
            .await
            .unwrap();
        bob.approve(&r.id, "").await.unwrap();
    }
    let url = s.settings().store_url();
    let (_, _, dir) = s.stop().await;
    (url, public_key_hex(&key_file), dir)
}

async fn every_attack_is_caught(url: &str, key: &str, witness: &str) {
    let log = read_log(url).await;
    let witnessed = jitgate_server::witness::parse_witness_lines(&if witness.starts_with("http") {
        reqwest::get(format!("{witness}export")).await.unwrap().text().await.unwrap()
    } else {
        std::fs::read_to_string(witness).unwrap()
    })
    .unwrap();
    assert_eq!(
        witnessed, log.checkpoints,
        "the witness holds every checkpoint, the closing one too"
    );

    let ok = jitgate(&[
        "audit",
        "verify",
        "--store",
        url,
        "--public-key",
        key,
        "--witness",
        witness,
        "--strict",
    ])
    .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(
        ok.stdout
            .contains(&format!("witnessed checkpoints found: {}", log.checkpoints.len())),
        "{ok:?}"
    );

    for a in attacks(&log) {
        write_log(url, &a.log).await;
        let out = jitgate(&["audit", "verify", "--store", url, "--public-key", key, "--witness", witness]).await;
        assert_eq!(out.code, 1, "{}: {out:?}", a.what);
        assert!(
            out.stdout.contains(&format!("FAILED verification at event {}:", a.names)) && out.stdout.contains(a.says),
            "{}: expected event {} ({:?}): {out:?}",
            a.what,
            a.names,
            a.says
        );
        let alone = jitgate(&["audit", "verify", "--store", url, "--public-key", key]).await;
        assert_eq!(alone.code == 1, a.seen_without_witness, "{} without the witness: {alone:?}", a.what);
    }
    write_log(url, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_with_the_sqlite_file_is_caught_by_the_file_witness() {
    let elsewhere = tempfile::tempdir().unwrap();
    let witness = elsewhere.path().join("witness/audit.jsonl");
    let key_file = elsewhere.path().join("keys/audit-signing.key");
    let (url, key, _dir) = history(Backend::Sqlite, WitnessTarget::File(witness.clone()), key_file).await;
    every_attack_is_caught(&url, &key, witness.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_with_the_postgresql_database_is_caught_by_the_http_witness() {
    let elsewhere = tempfile::tempdir().unwrap();
    let key_file = elsewhere.path().join("audit-signing.key");
    jitgate_server::audit_log::load_or_create_signing_key(&key_file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (witness_url, _w) = http_witness(elsewhere.path().join("w.jsonl"), &public_key_hex(&key_file), listener).await;
    let pg = jitgate_store::testing::fresh_pg_database().await.unwrap();
    let (url, key, _dir) = history(Backend::Postgres(pg), WitnessTarget::Http(witness_url.clone()), key_file).await;
    every_attack_is_caught(&url, &key, &witness_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insider_editing_an_export_is_caught_by_the_witness() {
    let elsewhere = tempfile::tempdir().unwrap();
    let witness = elsewhere.path().join("audit.jsonl");
    let key_file = elsewhere.path().join("audit-signing.key");
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.checkpoint_every = 4;
        st.signing_key_file = Some(key_file.clone());
        st.witnesses = vec![WitnessTarget::File(witness.clone())];
    })
    .await;
    let alice = s.login("alice").await;
    for i in 0..5 {
        let r = alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} export")))
            .await
            .unwrap();
        s.login("bob").await.approve(&r.id, "").await.unwrap();
    }
    s.core.checkpoint_now().await.unwrap();
    s.cli_login("admin").await;
    let file = s.dir.path().join("audit.jsonl");
    let out = s.cli("admin", &["audit", "export", "--output", file.to_str().unwrap()], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let (_, _, _dir) = s.stop().await;
    let key = public_key_hex(&key_file);
    let w = witness.to_str().unwrap();
    let f = file.to_str().unwrap();
    let ok = jitgate(&["audit", "verify", "--file", f, "--public-key", &key, "--witness", w]).await;
    assert_eq!(ok.code, 0, "{ok:?}");

    let (header, mut log) = read_export(&file);
    // An export has no head row: what stands for it is its last event.
    log.head = ChainHead {
        seq: log.events.last().unwrap().seq,
        hash: log.events.last().unwrap().hash.clone(),
    };
    // The witness also holds the closing checkpoint, taken after the export: a file is held
    // to what the witness had when it was exported.
    let bad = s_path(&file, "tampered.jsonl");
    for a in attacks(&log) {
        write_export(&bad, &a.log, &header);
        let b = bad.to_str().unwrap();
        let out = jitgate(&["audit", "verify", "--file", b, "--public-key", &key, "--witness", w]).await;
        assert_eq!(out.code, 1, "{}: {out:?}", a.what);
        assert!(
            out.stdout.contains(&format!("FAILED verification at event {}:", a.names)) && out.stdout.contains(a.says),
            "{}: expected event {}: {out:?}",
            a.what,
            a.names
        );
    }

    // The header is the insider's to edit too. Cut the tail and move the export time back
    // before the witness's later checkpoints: the head the server signed still says where the
    // file ended, with or without the witness.
    let ExportLine::Header {
        format,
        key_id,
        public_key,
        exported_at,
        since,
        anchor,
        head,
    } = header.clone()
    else {
        unreachable!()
    };
    let signed = head.clone().expect("an export carries the server's signed head");
    assert_eq!(signed.seq, log.head.seq, "the file ends at the head the server signed");
    let mut cut = log.clone();
    let keep = cut.events.len() - 3;
    cut.events.truncate(keep);
    let new_end = cut.events.last().unwrap().seq;
    cut.checkpoints.retain(|c| c.seq <= new_end);
    let first_cut_ts = log.events[keep].ts;
    let with = |head: Option<jitgate_core::audit::SignedHead>| ExportLine::Header {
        format: format.clone(),
        key_id: key_id.clone(),
        public_key: public_key.clone(),
        exported_at: jitgate_core::Timestamp::from_millis(first_cut_ts.min(exported_at.as_millis()) - 1),
        since: since.clone(),
        anchor: anchor.clone(),
        head,
    };
    let forged = jitgate_core::audit::SignedHead {
        seq: new_end,
        hash: cut.events.last().unwrap().hash.clone(),
        ..signed.clone()
    };
    let b = bad.to_str().unwrap();
    for (what, head, says) in [
        (
            "the signed head kept",
            Some(signed.clone()),
            format!("FAILED verification at event {0}: event {0}: missing", new_end + 1),
        ),
        ("the head moved to the cut", Some(forged), "header was edited".to_owned()),
        ("the head taken out", None, "no signed head".to_owned()),
    ] {
        write_export(&bad, &cut, &with(head));
        for args in [
            vec!["audit", "verify", "--file", b, "--public-key", &key, "--witness", w],
            vec!["audit", "verify", "--file", b, "--public-key", &key],
        ] {
            let out = jitgate(&args).await;
            assert_eq!(out.code, 1, "{what}: {out:?}");
            assert!(out.stdout.contains(&says), "{what}: expected {says:?}: {out:?}");
        }
    }
}

fn s_path(beside: &Path, name: &str) -> PathBuf {
    beside.with_file_name(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_that_is_down_is_caught_up_once_back_and_the_gap_shows_meanwhile() {
    let elsewhere = tempfile::tempdir().unwrap();
    let key_file = elsewhere.path().join("audit-signing.key");
    jitgate_server::audit_log::load_or_create_signing_key(&key_file).unwrap();
    // A port with nothing on it yet: the witness machine is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let witness_url = format!("http://127.0.0.1:{port}/");
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.checkpoint_interval = Duration::from_millis(200);
        st.signing_key_file = Some(key_file.clone());
        st.witnesses = vec![WitnessTarget::Http(witness_url.clone())];
    })
    .await;
    s.cli_login("admin").await;
    // The server keeps serving.
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", None, "INC-9 during the outage"))
        .await
        .unwrap();
    s.login("bob").await.approve(&r.id, "").await.unwrap();
    eventually_within("the witness is seen failing", Duration::from_secs(5), || async {
        s.core.witnesses.statuses()[0].failing()
    })
    .await;
    // Visible: /readyz detail (still ready), `audit status` (exit 1), an alert on the record.
    let (code, body) = jitgate_client::Client::new(&s.url, None)
        .raw(reqwest::Method::GET, "/readyz", "text/plain", vec![])
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        body.starts_with("ready") && body.contains(&format!("audit witness {witness_url} failing")),
        "{body}"
    );
    eventually_within("checkpoints wait for the witness", Duration::from_secs(5), || async {
        let out = s.cli("admin", &["audit", "status"], None).await;
        out.code == 1 && out.stdout.contains("FAILING") && !out.stdout.contains(" 0 checkpoint(s) behind")
    })
    .await;
    let alerts = s.core.store.audit_events(0, 10_000).await.unwrap();
    assert!(
        alerts.iter().any(|e| e.action == "alert.audit_witness_failed"),
        "an alert on the record"
    );

    // The witness comes back: everything is delivered, in order, nothing skipped.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let wfile = elsewhere.path().join("w.jsonl");
    let (_, _w) = http_witness(wfile.clone(), &public_key_hex(&key_file), listener).await;
    eventually_within("the witness catches up", Duration::from_secs(10), || async {
        let st = &s.core.witnesses.statuses()[0];
        let last = s.core.store.audit_last_checkpoint().await.unwrap().map(|c| c.seq);
        !st.failing() && st.delivered_seq == last
    })
    .await;
    let out = s.cli("admin", &["--json", "audit", "status"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["witnesses"][0]["failing_since"], serde_json::Value::Null);
    let url = s.settings().store_url();
    let (_, _, _dir) = s.stop().await;
    let store_cps = read_log(&url).await.checkpoints;
    let witnessed = jitgate_server::witness::read_witness_file(&wfile).unwrap();
    assert_eq!(witnessed, store_cps, "every checkpoint, from the first, in order");
    let key = public_key_hex(&key_file);
    let ok = jitgate(&[
        "audit",
        "verify",
        "--store",
        &url,
        "--public-key",
        &key,
        "--witness",
        wfile.to_str().unwrap(),
    ])
    .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let events = read_log(&url).await.events;
    assert!(events.iter().any(|e| e.action == "audit.witness_recovered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_come_by_time_and_strict_verify_reports_an_uncovered_tail() {
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.checkpoint_interval = Duration::from_millis(200);
    })
    .await;
    let before = s.core.store.audit_last_checkpoint().await.unwrap().map_or(0, |c| c.seq);
    let alice = s.login("alice").await;
    alice
        .create_request(&request_body("prod-db", "read", None, "INC-1 timed"))
        .await
        .unwrap();
    let head = s.audit_head().await;
    assert!(head > before);
    eventually_within("a checkpoint by time at the head", Duration::from_secs(3), || async {
        s.core.store.audit_last_checkpoint().await.unwrap().is_some_and(|c| c.seq >= head)
    })
    .await;
    let url = s.settings().store_url();
    let key = public_key_hex(&s.settings().signing_key_path());
    let (_, _, _dir) = s.stop().await;
    // The insider deletes the newest checkpoints: the checkpoint chain is whole, the tail
    // now rests on the hash chain alone, long past the interval.
    let mut log = read_log(&url).await;
    let keep = log.checkpoints.iter().map(|c| c.seq).filter(|&s| s <= before).max().unwrap();
    log.checkpoints.retain(|c| c.seq <= keep);
    write_log(&url, &log).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lax = jitgate(&[
        "audit",
        "verify",
        "--store",
        &url,
        "--public-key",
        &key,
        "--checkpoint-interval",
        "200ms",
    ])
    .await;
    assert_eq!(lax.code, 0, "{lax:?}");
    assert!(lax.stdout.contains("rest on the hash chain alone"), "{lax:?}");
    let strict = jitgate(&[
        "audit",
        "verify",
        "--store",
        &url,
        "--public-key",
        &key,
        "--checkpoint-interval",
        "200ms",
        "--strict",
    ])
    .await;
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(
        strict.stdout.contains(&format!("FAILED verification at event {}:", keep + 1)) && strict.stdout.contains("not covered"),
        "{strict:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_announced_by_the_old_one_and_the_data_dir_key_is_flagged() {
    let s = TestServer::spawn(false).await;
    s.login("alice").await;
    let data = s.data_dir();
    let key_file = s.settings().signing_key_path();
    let old_key = public_key_hex(&key_file);
    let (settings, clock, dir) = s.stop().await;
    let d = data.to_str().unwrap();
    let out = jitgate(&["--json", "audit", "rotate-key", "--data-dir", d]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let new_key = out.json()["new_public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    assert_eq!(public_key_hex(&key_file), new_key);
    let s = TestServer::restart(settings, clock, dir).await;
    s.login("bob").await;
    s.core.checkpoint_now().await.unwrap();
    let cps = s.core.store.audit_checkpoints().await.unwrap();
    let (_, _, _dir) = s.stop().await;
    let announced = cps.iter().position(|c| c.next_key.as_deref() == Some(new_key.as_str())).unwrap();
    assert!(cps.len() > announced + 1, "checkpoints signed by the new key follow");

    // The old key pinned: the new one is taken on the old one's word.
    let out = jitgate(&["audit", "verify", "--data-dir", d, "--public-key", &old_key, "--strict"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("WARNING"), "{out:?}");
    // Only the new key pinned: the first checkpoints are vouched for by nobody it trusts.
    let out = jitgate(&["audit", "verify", "--data-dir", d, "--public-key", &new_key]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("unknown key"), "{out:?}");
    // No key pinned: the data directory's own keys, said loudly.
    let out = jitgate(&["audit", "verify", "--data-dir", d]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("WARNING: the audit public key was taken from the signing key beside the data"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_verifies_on_its_own_against_the_witness() {
    let elsewhere = tempfile::tempdir().unwrap();
    let witness = elsewhere.path().join("audit.jsonl");
    let s = TestServer::spawn_with(Backend::Sqlite, false, |st| {
        st.checkpoint_every = 4;
        st.witnesses = vec![WitnessTarget::File(witness.clone())];
    })
    .await;
    s.cli_login("admin").await;
    let alice = s.login("alice").await;
    for i in 0..2 {
        alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} first batch")))
            .await
            .unwrap();
    }
    s.core.checkpoint_now().await.unwrap();
    let first = s.dir.path().join("first.jsonl");
    let out = s
        .cli("admin", &["--json", "audit", "export", "-o", first.to_str().unwrap()], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let since = out.json()["last_checkpoint"].as_i64().unwrap();
    for i in 0..3 {
        alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} second batch")))
            .await
            .unwrap();
    }
    s.core.checkpoint_now().await.unwrap();
    let next = s.dir.path().join("next.jsonl");
    let since_text = since.to_string();
    let out = s
        .cli(
            "admin",
            &["--json", "audit", "export", "--since", &since_text, "-o", next.to_str().unwrap()],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let key = public_key_hex(&s.settings().signing_key_path());
    let (_, _, _dir) = s.stop().await;
    let (header, log) = read_export(&next);
    assert_eq!(log.events.first().unwrap().seq, since + 1);
    let w = witness.to_str().unwrap();
    let ok = jitgate(&[
        "audit",
        "verify",
        "--file",
        next.to_str().unwrap(),
        "--public-key",
        &key,
        "--witness",
        w,
    ])
    .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    // An event of the increment edited: caught at that event.
    let mut bad = log.clone();
    bad.events[1].actor = "mallory".into();
    let badf = elsewhere.path().join("bad.jsonl");
    write_export(&badf, &bad, &header);
    let out = jitgate(&[
        "audit",
        "verify",
        "--file",
        badf.to_str().unwrap(),
        "--public-key",
        &key,
        "--witness",
        w,
    ])
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!("at event {}:", since + 2)), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_witness_takes_only_signed_linked_checkpoints() {
    use jitgate_core::audit::{sign_checkpoint, CheckpointLink};
    let dir = tempfile::tempdir().unwrap();
    let key = jitgate_server::audit_log::load_or_create_signing_key(&dir.path().join("k")).unwrap();
    let other = jitgate_server::audit_log::load_or_create_signing_key(&dir.path().join("o")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key_hex: String = key.verifying_key().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let (url, _w) = http_witness(dir.path().join("w.jsonl"), &key_hex, listener).await;
    let send = |cp: &Checkpoint, signer| {
        let body = serde_json::to_vec(cp).unwrap();
        let sig = jitgate_server::witness::sign_post(signer, &body);
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(&url)
                .header(jitgate_server::witness::SIGNATURE_HEADER, sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let head = |seq: i64| ChainHead {
        seq,
        hash: format!("{seq:064x}"),
    };
    let first = sign_checkpoint(&key, &head(5), 1, CheckpointLink::genesis(), None);
    assert_eq!(send(&first, &other).await, 401, "a POST not signed by the audit key");
    let forged = sign_checkpoint(&other, &head(5), 1, CheckpointLink::genesis(), None);
    assert_eq!(send(&forged, &key).await, 400, "a checkpoint the audit key did not sign");
    assert_eq!(send(&first, &key).await, 200);
    assert_eq!(send(&first, &key).await, 200, "the same again (a lost answer) is fine");
    let unlinked = sign_checkpoint(&key, &head(9), 2, CheckpointLink::genesis(), None);
    assert_eq!(send(&unlinked, &key).await, 409, "a checkpoint that skips the witness's newest");
    let rewritten = sign_checkpoint(&key, &head(5), 3, CheckpointLink::genesis(), None);
    assert_eq!(send(&rewritten, &key).await, 409, "another checkpoint at a witnessed seq");
    let second = sign_checkpoint(&key, &head(9), 2, CheckpointLink::of(&first), None);
    assert_eq!(send(&second, &key).await, 200);
    let export = reqwest::get(format!("{url}export")).await.unwrap().text().await.unwrap();
    assert_eq!(jitgate_server::witness::parse_witness_lines(&export).unwrap(), vec![first, second]);
}
