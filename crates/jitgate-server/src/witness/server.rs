//! The HTTP witness (`jitgate audit witness`): a small server of its own, run apart from jitgate.

use super::{append_to_file, post_message, read_witness_file, LatestBody, SIGNATURE_HEADER};
use ed25519_dalek::VerifyingKey;
use jitgate_core::audit::{checkpoint_hash, checkpoint_signature_ok, key_id, parse_verifying_key, Checkpoint, CheckpointLink};
use std::path::PathBuf;
use std::sync::Arc;

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
