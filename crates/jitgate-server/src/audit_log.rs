//! The audit signing key (a file outside the database) and verification of the live chain.

use crate::core::{Caller, Core};
use crate::error::ApiError;
use ed25519_dalek::SigningKey;
use jitgate_api::{AuditKey, AuditPage, VerifyOutcome};
use jitgate_core::audit::{key_id, ChainVerifier};
use jitgate_store::Store;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Reads the signing key, or makes one (mode 0600) when the file does not exist yet.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, String> {
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

/// Walks the whole chain in the store and its checkpoints. The next page is read while this
/// one is checked, so reading and hashing use both cores.
pub async fn verify_store(store: Arc<dyn Store>, key: Option<VerifyingKey>) -> Result<VerifyOutcome, jitgate_store::StoreError> {
    const PAGE: i64 = 20_000;
    let checkpoints = store.audit_checkpoints().await?;
    let head = store.audit_head().await?;
    let mut verifier = ChainVerifier::new(key, checkpoints);
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

impl Core {
    async fn require_audit_reader(&self, caller: &Caller, operation: &str) -> Result<(), ApiError> {
        if self.is_audit_reader(caller) {
            Ok(())
        } else {
            Err(self
                .forbid(caller, operation, "reading the audit log needs an administrator or an audit reader")
                .await)
        }
    }

    pub async fn audit_page(&self, caller: &Caller, after: i64, limit: i64) -> Result<AuditPage, ApiError> {
        self.require_audit_reader(caller, "audit_page").await?;
        let events = self.store.audit_events(after.max(0), limit.clamp(1, 10_000)).await?;
        let head_seq = self.store.audit_head().await?.seq;
        Ok(AuditPage { events, head_seq })
    }

    pub async fn audit_checkpoints(&self, caller: &Caller) -> Result<jitgate_api::CheckpointList, ApiError> {
        self.require_audit_reader(caller, "audit_checkpoints").await?;
        Ok(jitgate_api::CheckpointList {
            checkpoints: self.store.audit_checkpoints().await?,
        })
    }

    pub fn audit_key(&self) -> AuditKey {
        let public = self.signing_key.verifying_key();
        AuditKey {
            key_id: key_id(&public),
            public_key: hex::encode(public.as_bytes()),
        }
    }

    pub async fn audit_verify(&self, caller: &Caller) -> Result<VerifyOutcome, ApiError> {
        self.require_audit_reader(caller, "audit_verify").await?;
        Ok(verify_store(self.store.clone(), Some(self.signing_key.verifying_key())).await?)
    }
}
