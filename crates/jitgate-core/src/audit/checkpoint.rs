//! Signed checkpoints: what the chain was at a sequence number, signed with a key that lives
//! outside the database, each linked to the one before it; and the signed head of an export.

use super::*;

/// Where a checkpoint points back to: the checkpoint before it, by sequence number and
/// [`checkpoint_hash`]. The first checkpoint points to [`CheckpointLink::genesis`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointLink {
    pub seq: i64,
    pub hash: String,
}

impl CheckpointLink {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    pub fn of(cp: &Checkpoint) -> Self {
        Self {
            seq: cp.seq,
            hash: checkpoint_hash(cp),
        }
    }
}

/// A signed statement that the chain had `hash` at `seq`; since v2 also that the checkpoint
/// before it was `prev` (so deleting a checkpoint breaks the next one's link) and, on a key
/// rotation, which key signs from the next checkpoint on (`next_key`, signed by the old key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub ts: i64,
    pub key_id: String,
    pub signature: String,
    /// `None` only on v1 checkpoints, written before checkpoints were chained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<CheckpointLink>,
    /// The public key (hex) that signs every later checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<String>,
}

fn checkpoint_message(cp: &Checkpoint) -> Vec<u8> {
    let Some(prev) = &cp.prev else {
        let mut m = b"jitgate-audit-checkpoint-v1\0".to_vec();
        m.extend_from_slice(&cp.seq.to_be_bytes());
        m.extend_from_slice(cp.hash.as_bytes());
        m.extend_from_slice(&cp.ts.to_be_bytes());
        return m;
    };
    // Texts are length-prefixed so that no two different checkpoints share a message.
    fn text(m: &mut Vec<u8>, t: &str) {
        m.extend_from_slice(&(t.len() as u32).to_be_bytes());
        m.extend_from_slice(t.as_bytes());
    }
    let mut m = b"jitgate-audit-checkpoint-v2\0".to_vec();
    m.extend_from_slice(&cp.seq.to_be_bytes());
    text(&mut m, &cp.hash);
    m.extend_from_slice(&cp.ts.to_be_bytes());
    m.extend_from_slice(&prev.seq.to_be_bytes());
    text(&mut m, &prev.hash);
    text(&mut m, &cp.key_id);
    text(&mut m, cp.next_key.as_deref().unwrap_or(""));
    m
}

/// What the next checkpoint links to: SHA-256 of everything this one signs.
pub fn checkpoint_hash(cp: &Checkpoint) -> String {
    hex::encode(Sha256::digest(checkpoint_message(cp)))
}

pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Signs `head` as the checkpoint after `prev`; `next_key` announces the key that signs the
/// checkpoints after this one (a rotation: the old key vouches for the new).
pub fn sign_checkpoint(key: &SigningKey, head: &ChainHead, ts: i64, prev: CheckpointLink, next_key: Option<&VerifyingKey>) -> Checkpoint {
    let mut cp = Checkpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        ts,
        key_id: key_id(&key.verifying_key()),
        signature: String::new(),
        prev: Some(prev),
        next_key: next_key.map(|k| hex::encode(k.as_bytes())),
    };
    cp.signature = hex::encode(key.sign(&checkpoint_message(&cp)).to_bytes());
    cp
}

/// The head as the server saw it when an audit export was taken, signed with the audit key:
/// a file whose tail was cut, or whose export time was moved back (to hide checkpoints a
/// witness took later), no longer matches what it says. Not stored: it vouches for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedHead {
    pub seq: i64,
    pub hash: String,
    /// When it was read, in milliseconds.
    pub ts: i64,
    pub key_id: String,
    pub signature: String,
}

fn head_message(h: &SignedHead) -> Vec<u8> {
    // Its own prefix: no checkpoint signature can pass for a head's, nor the reverse.
    let mut m = b"jitgate-audit-export-head-v1\0".to_vec();
    m.extend_from_slice(&h.seq.to_be_bytes());
    m.extend_from_slice(&(h.hash.len() as u32).to_be_bytes());
    m.extend_from_slice(h.hash.as_bytes());
    m.extend_from_slice(&h.ts.to_be_bytes());
    m
}

pub fn sign_head(key: &SigningKey, head: &ChainHead, ts: i64) -> SignedHead {
    let mut h = SignedHead {
        seq: head.seq,
        hash: head.hash.clone(),
        ts,
        key_id: key_id(&key.verifying_key()),
        signature: String::new(),
    };
    h.signature = hex::encode(key.sign(&head_message(&h)).to_bytes());
    h
}

pub fn head_signature_ok(key: &VerifyingKey, h: &SignedHead) -> bool {
    let Ok(bytes) = hex::decode(&h.signature) else { return false };
    let Ok(sig) = Signature::from_slice(&bytes) else { return false };
    key.verify_strict(&head_message(h), &sig).is_ok()
}

pub fn checkpoint_signature_ok(key: &VerifyingKey, cp: &Checkpoint) -> bool {
    let Ok(bytes) = hex::decode(&cp.signature) else { return false };
    let Ok(sig) = Signature::from_slice(&bytes) else { return false };
    key.verify_strict(&checkpoint_message(cp), &sig).is_ok()
}

/// A public key from its hex text.
pub fn parse_verifying_key(hex_text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}
