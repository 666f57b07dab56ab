use crate::support::*;
use std::path::Path;

/// A server with some history, stopped, so the SQLite file can be edited underneath.
async fn stopped_server_with_history() -> (std::sync::Arc<tempfile::TempDir>, std::path::PathBuf, i64) {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    for i in 0..3 {
        let r = alice
            .create_request(&request_body("prod-db", "read", None, &format!("INC-{i} work")))
            .await
            .unwrap();
        s.login("bob").await.approve(&r.id, "").await.unwrap();
    }
    let head = s.audit_head().await;
    let data = s.data_dir();
    let (_, _, dir) = s.stop().await;
    (dir, data, head)
}

fn sql(db: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(statements).unwrap();
}

async fn verify_data_dir(dir: &Path) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .env("JITGATE_CONFIG_DIR", dir.join("no-cli-config"))
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn copy_data(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["jitgate.db", "audit-signing.key"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    for f in ["jitgate.db-wal", "jitgate.db-shm"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_deleting_or_reordering_audit_rows_is_found_at_that_sequence_number() {
    let (_keep, data, head) = stopped_server_with_history().await;
    let (code, out) = verify_data_dir(&data).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("audit log OK"), "{out}");

    let cases: Vec<(&str, String, i64)> = vec![
        ("edit an actor", "UPDATE audit_events SET actor = 'mallory' WHERE seq = 9".into(), 9),
        ("edit details", "UPDATE audit_events SET details = '{\"comment\":\"nothing to see\"}' WHERE seq = 12".into(), 12),
        ("delete a row", "DELETE FROM audit_events WHERE seq = 7".into(), 7),
        (
            "swap two rows' content",
            "UPDATE audit_events SET seq = -1 WHERE seq = 10; UPDATE audit_events SET seq = 10 WHERE seq = 11; UPDATE audit_events SET seq = 11 WHERE seq = -1".into(),
            10,
        ),
        ("delete the newest row", format!("DELETE FROM audit_events WHERE seq = {head}"), head),
        (
            "cut the tail and move the head back",
            format!(
                "DELETE FROM audit_events WHERE seq >= {cut}; UPDATE audit_head SET seq = {prev}, hash = (SELECT hash FROM audit_events WHERE seq = {prev})",
                cut = head - 2,
                prev = head - 3
            ),
            head - 2,
        ),
    ];
    for (what, statement, bad_seq) in cases {
        let copy = data.parent().unwrap().join(format!("tampered-{}", what.replace(' ', "-")));
        copy_data(&data, &copy);
        sql(&copy.join("jitgate.db"), &statement);
        let (code, out) = verify_data_dir(&copy).await;
        assert_eq!(code, 1, "{what}: {out}");
        assert!(
            out.contains(&format!("FAILED verification at event {bad_seq}:")),
            "{what}: expected seq {bad_seq}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_and_an_edited_export_does_not() {
    let s = TestServer::spawn(false).await;
    let alice = s.login("alice").await;
    let r = alice
        .create_request(&request_body("prod-db", "read", None, "INC-3 export"))
        .await
        .unwrap();
    s.login("bob").await.approve(&r.id, "").await.unwrap();
    s.core.checkpoint_now().await.unwrap();
    s.cli_login("admin").await;
    let file = s.dir.path().join("audit.jsonl");
    let out = s
        .cli("admin", &["--json", "audit", "export", "--output", file.to_str().unwrap()], None)
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let key = s.admin.audit_key().await.unwrap();
    let ok = s
        .cli(
            "admin",
            &["audit", "verify", "--file", file.to_str().unwrap(), "--public-key", &key.public_key],
            None,
        )
        .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let live = s.cli("admin", &["--json", "audit", "verify"], None).await;
    assert_eq!(live.json()["ok"], true);

    // Edit event 4's actor in the file.
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["type"] == "event" && v["seq"] == 4 {
                v["actor"] = "mallory".into();
            }
            v.to_string()
        })
        .collect();
    let bad = s.dir.path().join("edited.jsonl");
    std::fs::write(&bad, edited.join("\n")).unwrap();
    let out = s
        .cli(
            "admin",
            &["audit", "verify", "--file", bad.to_str().unwrap(), "--public-key", &key.public_key],
            None,
        )
        .await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("at event 4:"), "{out:?}");

    // The untouched file checked against a key that did not sign it fails too.
    let other = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let out = s
        .cli(
            "admin",
            &["audit", "verify", "--file", file.to_str().unwrap(), "--public-key", other],
            None,
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("unknown key"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_shows_the_newest_events() {
    let s = TestServer::spawn(false).await;
    s.cli_login("admin").await;
    let out = s.cli("admin", &["--json", "audit", "tail", "-n", "3"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["action"], "auth.login");
    assert_eq!(lines[2]["seq"], s.audit_head().await);
}

/// Writers take the chain's head only at commit: two instances on one PostgreSQL database,
/// each with several clients making and approving requests at once, with a checkpoint every
/// ten events, still write one unbroken chain, every event once, and one line of checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_writing_at_once_keep_one_chain_and_one_line_of_checkpoints() {
    let url = jitgate_store::testing::fresh_pg_database().await.unwrap();
    // What is tested is one chain under contention, not failing fast: with the rest of the suite
    // on two shared cores, a writer here can wait past the default 1 s for the audit head.
    let a = TestServer::spawn_with(Backend::Postgres(url), false, |s| {
        s.checkpoint_every = 10;
        s.store_timeout = std::time::Duration::from_secs(10);
    })
    .await;
    let b = a.another_instance().await;
    let head_before = a.audit_head().await;
    let mut tasks = Vec::new();
    for server in [&a, &b] {
        for _ in 0..4 {
            let (alice, bob) = (server.login("alice").await, server.login("bob").await);
            tasks.push(tokio::spawn(async move {
                for i in 0..15 {
                    let r = alice
                        .create_request(&request_body("prod-db", "read", Some("5m"), &format!("INC-{i} concurrent work")))
                        .await
                        .unwrap();
                    bob.approve(&r.id, "").await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let verified = a.admin.audit_verify().await.unwrap();
    assert!(verified.ok, "{verified:?}");
    let report = verified.report.unwrap();
    // Each flow writes request.create, review.approve, request.approved and grant.create.
    let events = a.admin.all_audit_events(head_before).await.unwrap();
    for action in ["request.create", "review.approve", "request.approved", "grant.create"] {
        assert_eq!(events.iter().filter(|e| e.action == action).count(), 2 * 4 * 15, "{action}");
    }
    let checkpoints = a.admin.audit_checkpoints().await.unwrap().checkpoints;
    assert!(checkpoints.len() >= 2 * 4 * 15 * 4 / 10 - 1, "{} checkpoints", checkpoints.len());
    assert!(report.checkpoints + 1 >= checkpoints.len(), "verify checked the checkpoints");
    for pair in checkpoints.windows(2) {
        assert!(pair[0].seq < pair[1].seq);
        assert_eq!(pair[1].prev.as_ref().map(|p| p.seq), Some(pair[0].seq), "one line of checkpoints");
    }
}

/// Every change reads and writes as one step, whichever instance makes it: the two stages of
/// a request approved at the same moment through two instances both count, and the request
/// gets exactly one grant (a change that read the request before the other committed would
/// leave it pending, or grant it twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stages_approved_at_once_through_two_instances_make_one_grant() {
    let a = TestServer::spawn_pg(false).await;
    let b = a.another_instance().await;
    let alice = a.login("alice").await;
    let (bob, sam) = (a.login("bob").await, b.login("sam").await);
    for i in 0..10 {
        let mut body = request_body("prod-db", "write", Some("5m"), &format!("INC-{i} both stages at once"));
        body.ticket = Some(format!("INC-{i}"));
        let r = alice.create_request(&body).await.unwrap();
        let (by_bob, by_sam) = tokio::join!(bob.approve(&r.id, ""), sam.approve(&r.id, ""));
        by_bob.unwrap();
        by_sam.unwrap();
        let detail = alice.request(&r.id).await.unwrap();
        assert_eq!(detail.request.status.to_string(), "approved", "round {i}: {detail:?}");
        assert!(detail.grant.is_some(), "round {i}");
        let grants = alice
            .grants(&jitgate_client::ListParams {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(grants.iter().filter(|g| g.request_id == r.id).count(), 1, "round {i}");
    }
    assert!(a.admin.audit_verify().await.unwrap().ok);
}
