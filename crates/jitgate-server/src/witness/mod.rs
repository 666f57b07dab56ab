//! Witnesses: every checkpoint is also published outside the database, so that whoever can
//! write the database (but not the witness) cannot roll the log back or rewrite it after the
//! last checkpoint without `audit verify --witness` noticing.
//!
//! Delivery reads the checkpoints from the store, in order, after the last one the witness
//! acknowledged: nothing is skipped, a witness that was down catches up, and the store stays
//! the one source of what to send. Delivery runs beside the writers, never in their way.
//!
//! Here: the witnesses' state as the server holds it, the witness file format, and the signature
//! of a POST. Delivery is in [`delivery`], the HTTP witness server in [`server`].

pub mod delivery;
pub mod server;

use crate::config::WitnessTarget;
use ed25519_dalek::{Signer, SigningKey};
use jitgate_api::ExportLine;
use jitgate_core::audit::Checkpoint;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The header an HTTP witness checks: Ed25519 over `post_message` with the audit key, so a
/// witness takes checkpoints only from the log it witnesses.
pub const SIGNATURE_HEADER: &str = "x-jitgate-signature";

pub(crate) fn post_message(body: &[u8]) -> Vec<u8> {
    let mut m = b"jitgate-witness-post-v1\0".to_vec();
    m.extend_from_slice(body);
    m
}

pub use jitgate_api::WitnessStatus;

pub struct WitnessSlot {
    pub target: WitnessTarget,
    pub(crate) state: Mutex<WitnessStatus>,
    pub(crate) wake: Notify,
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

/// Signs `body` as a witness POST (tests and tools that speak to a witness).
pub fn sign_post(key: &SigningKey, body: &[u8]) -> String {
    hex::encode(key.sign(&post_message(body)).to_bytes())
}
