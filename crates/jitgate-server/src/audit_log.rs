//! The audit signing key (a file outside the database) and verification of the live chain.

use ed25519_dalek::SigningKey;
use jitgate_api::VerifyOutcome;
use jitgate_core::actions;
use jitgate_core::audit::{key_id, sign_checkpoint, ChainVerifier, Checkpoint, CheckpointLink, NewEvent, Outcome};
use jitgate_store::Store;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Reads the signing key, or makes one (mode 0600) when the file does not exist yet.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, String> {
    if next_key_path(path).exists() {
        return Err(format!(
            "{} exists: a key rotation did not finish; run `jitgate audit rotate-key` again to finish it",
            next_key_path(path).display()
        ));
    }
    let text = read_or_create_private_file(path, || {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        tracing::info!(path = %path.display(), "generated a new audit signing key");
        zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())))
    })?;
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{}: not a hex key: {e}", path.display()))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{}: the key must be 32 bytes of hex", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a key file, or creates it (mode 0600, never overwriting) with `make`'s text when it
/// does not exist: the embedded default makes its own keys on first start.
pub fn read_or_create_private_file(
    path: &Path,
    make: impl FnOnce() -> zeroize::Zeroizing<String>,
) -> Result<zeroize::Zeroizing<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(zeroize::Zeroizing::new(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = make();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(text)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads a public key given as hex text, or the path of a file holding that hex.
pub use ed25519_dalek::VerifyingKey;

/// Reads a public key given as hex text, or the path of a file holding that hex.
pub fn parse_public_key(text_or_path: &str) -> Result<VerifyingKey, String> {
    let text = if Path::new(text_or_path).is_file() {
        std::fs::read_to_string(text_or_path).map_err(|e| format!("{text_or_path}: {e}"))?
    } else {
        text_or_path.to_owned()
    };
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not a hex key: {e}"))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| "a key is 32 bytes of hex".to_owned())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// The public half of an existing signing key file (never creates one).
pub fn public_key_of_signing_file(path: &Path) -> Result<VerifyingKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{}: not a hex key: {e}", path.display()))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{}: the key must be 32 bytes of hex", path.display()))?;
    Ok(SigningKey::from_bytes(&seed).verifying_key())
}

/// Walks the whole chain in the store and its checkpoints (and a witness's copy of them, when
/// given). The next page is read while this one is checked, so reading and hashing use both
/// cores.
pub async fn verify_store(
    store: Arc<dyn Store>,
    keys: Vec<VerifyingKey>,
    witness: Option<Vec<Checkpoint>>,
) -> Result<VerifyOutcome, jitgate_store::StoreError> {
    const PAGE: i64 = 20_000;
    let checkpoints = store.audit_checkpoints().await?;
    let head = store.audit_head().await?;
    let mut verifier = ChainVerifier::new(keys, checkpoints);
    if let Some(w) = witness {
        verifier = verifier.with_witness(w);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(async move {
        let mut after = 0;
        loop {
            let page = store.audit_rows(after, PAGE).await;
            let last = page.as_ref().ok().and_then(|p| p.last().map(|e| e.seq));
            let done = last.is_none();
            if tx.send(page).await.is_err() || done {
                return;
            }
            after = last.unwrap_or(after);
        }
    });
    while let Some(page) = rx.recv().await {
        let page = page?;
        if page.is_empty() {
            break;
        }
        // Hashing a page takes a while: off the async workers.
        let (back, checked) = tokio::task::spawn_blocking(move || {
            let checked = page.iter().try_for_each(|e| verifier.push_stored(e));
            (verifier, checked)
        })
        .await
        .map_err(|e| jitgate_store::StoreError::Open(format!("verification task: {e}")))?;
        verifier = back;
        if let Err(err) = checked {
            reader.abort();
            return Ok(VerifyOutcome::from(Err(err)));
        }
    }
    Ok(verifier.finish(Some(&head)).into())
}

fn next_key_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".next");
    p.into()
}

/// Where a rotated-out key is kept (its public half still verifies the older checkpoints).
pub fn retired_key_path(path: &Path, key_id: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".retired-{key_id}"));
    p.into()
}

/// The public halves of the signing key file and of the keys it replaced, oldest first by the
/// files' times: what `verify --data-dir` falls back to (with a warning: they are the data's
/// own, not a root the operator pinned).
pub fn public_keys_beside(path: &Path) -> Result<Vec<VerifyingKey>, String> {
    let mut keys = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        let prefix = format!("{name}.retired-");
        let mut retired: Vec<(std::time::SystemTime, std::path::PathBuf)> =
            std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
                .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
                .collect();
        retired.sort();
        for (_, p) in retired {
            keys.push(public_key_of_signing_file(&p)?);
        }
    }
    keys.push(public_key_of_signing_file(path)?);
    Ok(keys)
}

/// What a key rotation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rotation {
    pub old_key_id: String,
    pub new_key_id: String,
    pub new_public_key: String,
    pub checkpoint_seq: i64,
}

/// Replaces the signing key: a new key is made (kept as `PATH.next` until done), a checkpoint
/// signed by the old key announces it (with an `audit.key_rotated` event), then the old key
/// file becomes `PATH.retired-ID` and the new one takes its place. The store must not be in use
/// (SQLite refuses while a server holds it; with PostgreSQL, stop every instance first, then
/// give them all the new key). Run again after a crash, it finishes what was begun.
pub async fn rotate_signing_key(store: Arc<dyn Store>, path: &Path, now: jitgate_core::Timestamp) -> Result<Rotation, String> {
    let next_path = next_key_path(path);
    let old_text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let old = parse_signing_key(&old_text, path)?;
    let new_text = read_or_create_private_file(&next_path, || {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        zeroize::Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())))
    })?;
    let new = parse_signing_key(&new_text, &next_path)?;
    let (old_id, new_id) = (key_id(&old.verifying_key()), key_id(&new.verifying_key()));
    let new_public = hex::encode(new.verifying_key().as_bytes());
    let mut tx = store.write().await.map_err(|e| e.to_string())?;
    let last = tx.last_checkpoint().await.map_err(|e| e.to_string())?;
    let seq = match last {
        // An earlier run committed the announcement and stopped before the renames.
        Some(c) if c.next_key.as_deref() == Some(new_public.as_str()) => {
            drop(tx);
            c.seq
        }
        last => {
            tx.append_audit(
                NewEvent::new(
                    "system",
                    actions::AUDIT_KEY_ROTATED,
                    new_id.clone(),
                    Outcome::Success,
                    serde_json::json!({"old_key_id": old_id, "new_key_id": new_id, "new_public_key": new_public}),
                ),
                now,
            )
            .await
            .map_err(|e| e.to_string())?;
            let prev = last.as_ref().map_or_else(CheckpointLink::genesis, CheckpointLink::of);
            let cp = sign_checkpoint(&old, tx.head(), now.as_millis(), prev, Some(&new.verifying_key()));
            tx.insert_checkpoint(&cp).await.map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            cp.seq
        }
    };
    let retired = retired_key_path(path, &old_id);
    std::fs::rename(path, &retired).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::rename(&next_path, path).map_err(|e| format!("{}: {e}", next_path.display()))?;
    Ok(Rotation {
        old_key_id: old_id,
        new_key_id: new_id,
        new_public_key: new_public,
        checkpoint_seq: seq,
    })
}

fn parse_signing_key(text: &str, path: &Path) -> Result<SigningKey, String> {
    let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).map_err(|e| format!("{}: not a hex key: {e}", path.display()))?);
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{}: the key must be 32 bytes of hex", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}
