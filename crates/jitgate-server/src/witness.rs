//! Witnesses: every checkpoint is also published outside the database, so that whoever can
//! write the database (but not the witness) cannot roll the log back or rewrite it after the
//! last checkpoint without `audit verify --witness` noticing.
//!
//! Delivery reads the checkpoints from the store, in order, after the last one the witness
//! acknowledged: nothing is skipped, a witness that was down catches up, and the store stays
//! the one source of what to send. Delivery runs beside the writers, never in their way.

use crate::config::WitnessTarget;
use crate::core::Core;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use jitgate_api::ExportLine;
use jitgate_core::actions;
use jitgate_core::audit::{checkpoint_hash, checkpoint_signature_ok, key_id, parse_verifying_key, Checkpoint, CheckpointLink};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The header an HTTP witness checks: Ed25519 over [`post_message`] with the audit key, so a
/// witness takes checkpoints only from the log it witnesses.
pub const SIGNATURE_HEADER: &str = "x-jitgate-signature";

fn post_message(body: &[u8]) -> Vec<u8> {
    let mut m = b"jitgate-witness-post-v1\0".to_vec();
    m.extend_from_slice(body);
    m
}

pub use jitgate_api::WitnessStatus;

pub struct WitnessSlot {
    pub target: WitnessTarget,
    state: Mutex<WitnessStatus>,
    wake: Notify,
}

impl WitnessSlot {
    pub fn status(&self) -> WitnessStatus {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Witnesses {
    pub slots: Vec<Arc<WitnessSlot>>,
}

impl Witnesses {
    pub fn new(targets: &[WitnessTarget]) -> Self {
        Self {
            slots: targets
                .iter()
                .map(|t| {
                    Arc::new(WitnessSlot {
                        target: t.clone(),
                        state: Mutex::new(WitnessStatus {
                            witness: t.to_string(),
                            ..WitnessStatus::default()
                        }),
                        wake: Notify::new(),
                    })
                })
                .collect(),
        }
    }

    /// A checkpoint was written: deliver it.
    pub fn wake(&self) {
        for s in &self.slots {
            s.wake.notify_one();
        }
    }

    pub fn statuses(&self) -> Vec<WitnessStatus> {
        self.slots.iter().map(|s| s.status()).collect()
    }

    /// One delivery round for every witness, bounded in time (at shutdown, after the closing
    /// checkpoint).
    pub async fn flush(&self, core: &Core, limit: Duration) {
        for slot in &self.slots {
            let _ = tokio::time::timeout(limit, deliver_pending(core, slot)).await;
        }
    }
}

/// Delivers one witness's checkpoints until stopped, retrying with a growing delay; the first
/// failure of a run of failures raises an alert, the recovery is recorded too.
pub async fn run(core: Arc<Core>, slot: Arc<WitnessSlot>, mut stop: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let result = deliver_pending(&core, &slot).await;
        let wait = match result {
            Ok(()) => {
                if failures > 0 {
                    recovered(&core, &slot).await;
                }
                failures = 0;
                // A periodic look as well as the wake-up: another instance's checkpoints too.
                Duration::from_secs(2)
            }
            Err(e) => {
                failures += 1;
                failed(&core, &slot, e, failures == 1).await;
                // 250 ms, doubling, at most 5 s: a witness back up is caught up soon.
                Duration::from_millis(250u64.saturating_mul(1 << failures.min(5))).min(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = slot.wake.notified(), if failures == 0 => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn failed(core: &Core, slot: &WitnessSlot, error: String, first: bool) {
    let now = core.now();
    if let Ok(mut s) = slot.state.lock() {
        s.failing_since.get_or_insert(now);
        s.last_error = Some(error.clone());
    }
    tracing::warn!(witness = %slot.target, error = %error, "an audit witness cannot take checkpoints");
    if !first {
        return;
    }
    let message = format!(
        "The audit witness {} cannot take checkpoints: {error}. The server keeps serving and retries; until it \
         catches up, the newest checkpoints exist only in the database.",
        slot.target
    );
    let result = async {
        let mut tx = core.begin().await?;
        let admins: Vec<_> = core
            .store
            .users()
            .await?
            .into_iter()
            .filter(|u| u.is_admin && !u.disabled)
            .map(|u| u.name)
            .collect();
        crate::core::alert(
            &mut *tx,
            "audit_witness_failed",
            &slot.target.to_string(),
            &message,
            &admins,
            jitgate_core::audit::Outcome::Failure,
            serde_json::json!({"error": error}),
            now,
        )
        .await?;
        core.commit(tx).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e.message, "could not record the witness alert");
    }
}

async fn recovered(core: &Core, slot: &WitnessSlot) {
    let since = slot.state.lock().ok().and_then(|mut s| {
        s.last_error = None;
        s.failing_since.take()
    });
    tracing::info!(witness = %slot.target, "the audit witness has caught up");
    core.audit_alone(jitgate_core::audit::NewEvent::new(
        "system",
        actions::AUDIT_WITNESS_RECOVERED,
        slot.target.to_string(),
        jitgate_core::audit::Outcome::Success,
        serde_json::json!({"failing_since": since}),
    ))
    .await;
}

/// Sends what the witness lacks, oldest first.
async fn deliver_pending(core: &Core, slot: &WitnessSlot) -> Result<(), String> {
    let known = slot.state.lock().map_err(|_| "poisoned".to_owned())?.delivered_seq;
    let mut delivered = match known {
        Some(seq) => seq,
        None => {
            let latest = latest(core, &slot.target).await?;
            // The witness's newest checkpoint must be in the store as it is: if not, the store
            // was rolled back or rewritten under us, and sending on would bury the evidence.
            if let Some(w) = &latest {
                let ours = core.store.audit_checkpoints_after(w.seq - 1, 1).await.map_err(|e| e.to_string())?;
                if ours.first() != Some(w) {
                    return Err(format!(
                        "the witness holds the checkpoint at event {}, which the store does not: the store was rolled back or rewritten (run jitgate audit verify --witness)",
                        w.seq
                    ));
                }
            }
            let seq = latest.map_or(0, |c| c.seq);
            set_delivered(slot, seq);
            seq
        }
    };
    loop {
        let page = core
            .store
            .audit_checkpoints_after(delivered, 200)
            .await
            .map_err(|e| e.to_string())?;
        for cp in &page {
            if let Err(e) = append(core, &slot.target, cp).await {
                // Ask the witness where it stands before the next try.
                if let Ok(mut s) = slot.state.lock() {
                    s.delivered_seq = None;
                }
                return Err(e);
            }
            delivered = cp.seq;
            set_delivered(slot, delivered);
        }
        if page.len() < 200 {
            break;
        }
    }
    let behind = core
        .store
        .audit_checkpoints_after(delivered, 1_000_000)
        .await
        .map(|v| v.len() as i64)
        .unwrap_or(0);
    if let Ok(mut s) = slot.state.lock() {
        s.behind = behind;
    }
    Ok(())
}

fn set_delivered(slot: &WitnessSlot, seq: i64) {
    if let Ok(mut s) = slot.state.lock() {
        s.delivered_seq = Some(seq);
    }
}

/// Counts what a witness lacks, for a status read between deliveries.
pub async fn refresh_behind(core: &Core) {
    for slot in &core.witnesses.slots {
        // Not known yet (the witness never answered): all of them may be missing.
        let seq = slot.status().delivered_seq.unwrap_or(0);
        if let Ok(v) = core.store.audit_checkpoints_after(seq, 1_000_000).await {
            if let Ok(mut s) = slot.state.lock() {
                s.behind = v.len() as i64;
            }
        }
    }
}

async fn latest(core: &Core, target: &WitnessTarget) -> Result<Option<Checkpoint>, String> {
    match target {
        WitnessTarget::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || last_checkpoint_in_file(&path))
                .await
                .map_err(|e| e.to_string())?
        }
        WitnessTarget::Http(url) => {
            let resp = http_client(core).get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url}: {}", resp.status()));
            }
            let body: LatestBody = resp.json().await.map_err(|e| format!("GET {url}: {e}"))?;
            Ok(body.latest)
        }
    }
}

async fn append(core: &Core, target: &WitnessTarget, cp: &Checkpoint) -> Result<(), String> {
    match target {
        WitnessTarget::File(path) => {
            let (path, cp) = (path.clone(), cp.clone());
            tokio::task::spawn_blocking(move || append_to_file(&path, &cp))
                .await
                .map_err(|e| e.to_string())?
        }
        WitnessTarget::Http(url) => {
            let body = serde_json::to_vec(cp).map_err(|e| e.to_string())?;
            let signature = hex::encode(core.signing_key.sign(&post_message(&body)).to_bytes());
            let resp = http_client(core)
                .post(url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                Err(format!("POST {url}: {status} {}", text.chars().take(300).collect::<String>()))
            }
        }
    }
}

fn http_client(core: &Core) -> &reqwest::Client {
    core.witness_http.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LatestBody {
    pub latest: Option<Checkpoint>,
}

/// The newest checkpoint of a witness file (its last line), without reading the whole file.
pub fn last_checkpoint_in_file(path: &Path) -> Result<Option<Checkpoint>, String> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let len = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(line) = tail.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str::<ExportLine>(line) {
        Ok(ExportLine::Checkpoint(c)) => Ok(Some(c)),
        _ => Err(format!("{}: the last line is not a checkpoint", path.display())),
    }
}

/// Every checkpoint of a witness file.
pub fn read_witness_file(path: &Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_witness_lines(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn parse_witness_lines(text: &str) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ExportLine>(line) {
            Ok(ExportLine::Checkpoint(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("line {}: not a checkpoint: {e}", i + 1)),
        }
    }
    Ok(out)
}

/// Appends one line and waits for it to be on disk: a witness that acknowledges what a crash
/// then loses is no witness.
pub fn append_to_file(path: &Path, cp: &Checkpoint) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let new = !path.exists();
    if new {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
    }
    let mut line = serde_json::to_vec(&ExportLine::Checkpoint(cp.clone())).map_err(|e| e.to_string())?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(err)?;
    f.write_all(&line).map_err(err)?;
    f.sync_data().map_err(err)?;
    if new {
        // The file's name must survive a crash too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
    }
    Ok(())
}

/// The HTTP witness (`jitgate audit witness`): takes checkpoints signed by the audit key (and
/// by the keys it announces), each linked to the one before, into an append-only file; serves
/// its newest checkpoint (`GET /`) and the whole file (`GET /export`).
pub struct HttpWitness {
    file: PathBuf,
    state: tokio::sync::Mutex<HttpWitnessState>,
}

struct HttpWitnessState {
    /// The key whose signatures it takes now.
    key: VerifyingKey,
    latest: Option<Checkpoint>,
    /// What it holds, by seq: an instance that is behind sends older checkpoints again, which
    /// are fine when identical and evidence of a rewrite when not.
    seen: std::collections::HashMap<i64, String>,
}

impl HttpWitness {
    /// Opens (or starts) the file; `key` is the trust root, as for `audit verify`.
    pub fn open(file: PathBuf, key: VerifyingKey) -> Result<Arc<Self>, String> {
        let mut key = key;
        let existing = if file.exists() { read_witness_file(&file)? } else { Vec::new() };
        for cp in &existing {
            if let Some(k) = cp.next_key.as_deref().and_then(parse_verifying_key) {
                key = k;
            }
        }
        Ok(Arc::new(Self {
            file,
            state: tokio::sync::Mutex::new(HttpWitnessState {
                key,
                seen: existing.iter().map(|c| (c.seq, checkpoint_hash(c))).collect(),
                latest: existing.last().cloned(),
            }),
        }))
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route("/", get(witness_latest).post(witness_post))
            .route("/export", get(witness_export))
            .with_state(self)
    }

    /// Serves until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }

    async fn take(&self, signature: &str, body: &[u8]) -> Result<i64, (u16, String)> {
        let mut st = self.state.lock().await;
        let sig = hex::decode(signature)
            .ok()
            .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
            .ok_or((401, "bad signature".to_owned()))?;
        st.key
            .verify_strict(&post_message(body), &sig)
            .map_err(|_| (401, "not signed by the audit key in force".to_owned()))?;
        let cp: Checkpoint = serde_json::from_slice(body).map_err(|e| (400, format!("not a checkpoint: {e}")))?;
        if st.latest.as_ref().is_some_and(|l| cp.seq <= l.seq) {
            return match st.seen.get(&cp.seq) {
                Some(h) if *h == checkpoint_hash(&cp) => Ok(cp.seq),
                Some(_) => Err((409, format!("differs from the witnessed checkpoint at event {}", cp.seq))),
                None => Err((409, format!("event {} is before the witness's newest checkpoint", cp.seq))),
            };
        }
        if cp.key_id != key_id(&st.key) || !checkpoint_signature_ok(&st.key, &cp) {
            return Err((400, "the checkpoint's own signature does not verify".into()));
        }
        if let Some(latest) = &st.latest {
            if cp.prev.as_ref() != Some(&CheckpointLink::of(latest)) {
                return Err((
                    409,
                    format!("does not link to the witness's newest checkpoint (event {})", latest.seq),
                ));
            }
        }
        let (file, line) = (self.file.clone(), cp.clone());
        tokio::task::spawn_blocking(move || append_to_file(&file, &line))
            .await
            .map_err(|e| (500, e.to_string()))?
            .map_err(|e| (500, e))?;
        if let Some(k) = cp.next_key.as_deref().and_then(parse_verifying_key) {
            st.key = k;
        }
        let seq = cp.seq;
        st.seen.insert(seq, checkpoint_hash(&cp));
        st.latest = Some(cp);
        Ok(seq)
    }
}

type WitnessState = axum::extract::State<Arc<HttpWitness>>;

async fn witness_latest(axum::extract::State(w): WitnessState) -> axum::Json<LatestBody> {
    axum::Json(LatestBody {
        latest: w.state.lock().await.latest.clone(),
    })
}

async fn witness_post(
    axum::extract::State(w): WitnessState,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    match w.take(signature, &body).await {
        Ok(seq) => (axum::http::StatusCode::OK, format!("{{\"latest_seq\":{seq}}}")),
        Err((code, message)) => (
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
            serde_json::json!({"error": message}).to_string(),
        ),
    }
}

async fn witness_export(axum::extract::State(w): WitnessState) -> (axum::http::StatusCode, String) {
    let _held = w.state.lock().await;
    match tokio::fs::read_to_string(&w.file).await {
        Ok(text) => (axum::http::StatusCode::OK, text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (axum::http::StatusCode::OK, String::new()),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Signs `body` as a witness POST (tests and tools that speak to a witness).
pub fn sign_post(key: &SigningKey, body: &[u8]) -> String {
    hex::encode(key.sign(&post_message(body)).to_bytes())
}
