//! Delivery of checkpoints to each witness, from the store, in order.

use super::{append_to_file, last_checkpoint_in_file, post_message, LatestBody, WitnessSlot, SIGNATURE_HEADER};
use crate::config::WitnessTarget;
use crate::core::Core;
use ed25519_dalek::Signer;
use jitgate_core::actions;
use jitgate_core::audit::Checkpoint;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One delivery round for every witness, bounded in time (at shutdown, after the closing
/// checkpoint).
pub async fn flush(core: &Core, limit: Duration) {
    for slot in &core.witnesses.slots {
        let _ = tokio::time::timeout(limit, deliver_pending(core, slot)).await;
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
        let admins = core.administrators().await?;
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
        // A witness must never hold a checkpoint of a change a crash can still take back.
        if !page.is_empty() {
            core.store.on_disk().await.map_err(|e| e.to_string())?;
        }
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
