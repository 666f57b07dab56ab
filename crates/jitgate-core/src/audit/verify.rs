//! Verifying a chain: every hash, every link, every checkpoint and signature, in one walk.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("event {seq}: its content does not match its hash (edited)")]
    HashMismatch { seq: i64 },
    #[error("event {seq}: does not link to the event before it (that one or this one was edited, deleted, inserted or moved)")]
    BrokenLink { seq: i64 },
    #[error("event {expected} is missing (found {found} next)")]
    Gap { expected: i64, found: i64 },
    #[error("checkpoint at event {seq}: bad signature")]
    BadSignature { seq: i64 },
    #[error("checkpoint at event {seq}: signed by an unknown key {key_id} (not the trusted key in force there)")]
    UnknownKey { seq: i64, key_id: String },
    #[error("event {seq}: differs from the signed checkpoint")]
    CheckpointMismatch { seq: i64 },
    #[error("event {seq} is missing: a signed checkpoint covers events up to {checkpoint}")]
    Truncated { seq: i64, checkpoint: i64 },
    #[error("event {seq}: the chain ends at {seq} but the store's head says {head}")]
    HeadMismatch { seq: i64, head: i64 },
    #[error("checkpoint at event {seq} is missing: {why}")]
    MissingCheckpoint { seq: i64, why: String },
    #[error("checkpoint at event {seq}: does not link to the checkpoint before it ({why})")]
    BrokenCheckpointChain { seq: i64, why: String },
    #[error("checkpoint at event {seq}: differs from the witness's copy")]
    WitnessMismatch { seq: i64 },
    /// An export does not end where the head the server signed for it says.
    #[error("event {seq}: {why}")]
    ExportHead { seq: i64, why: String },
    #[error("event {seq}: events {seq}..={last} are not covered by any checkpoint though the first is {age_ms} ms old (checkpoints come every {interval_ms} ms: one was deleted, or the writer stopped checkpointing)")]
    UncoveredTail {
        seq: i64,
        last: i64,
        age_ms: i64,
        interval_ms: i64,
    },
}

impl VerifyError {
    /// The first sequence number at which the log is bad.
    pub fn seq(&self) -> i64 {
        match self {
            Self::HashMismatch { seq }
            | Self::BrokenLink { seq }
            | Self::BadSignature { seq }
            | Self::UnknownKey { seq, .. }
            | Self::CheckpointMismatch { seq }
            | Self::Truncated { seq, .. }
            | Self::MissingCheckpoint { seq, .. }
            | Self::BrokenCheckpointChain { seq, .. }
            | Self::WitnessMismatch { seq }
            | Self::ExportHead { seq, .. }
            | Self::UncoveredTail { seq, .. } => *seq,
            Self::Gap { expected, .. } => *expected,
            Self::HeadMismatch { seq, head } => (*seq + 1).min(*head),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub events: i64,
    pub last_seq: i64,
    pub last_hash: String,
    pub checkpoints: usize,
    pub last_checkpoint: Option<i64>,
    /// Witnessed checkpoints found in the log (`None`: no witness was given).
    #[serde(default)]
    pub witnessed: Option<usize>,
    /// The first event after the last checkpoint, and its time (ms): the stretch that rests on
    /// the hash chain alone.
    #[serde(default)]
    pub uncovered_from: Option<(i64, i64)>,
}

impl VerifyReport {
    /// With `--strict`: events left without a checkpoint for longer than the writer allows
    /// (twice the interval, for the timer's own lateness) mean a deleted checkpoint or a
    /// writer that stopped checkpointing.
    pub fn uncovered_tail(&self, now_ms: i64, interval_ms: i64) -> Option<VerifyError> {
        let (seq, ts) = self.uncovered_from?;
        let age_ms = now_ms - ts;
        (age_ms > 2 * interval_ms).then_some(VerifyError::UncoveredTail {
            seq,
            last: self.last_seq,
            age_ms,
            interval_ms,
        })
    }
}

/// Walks a chain in sequence order. Checkpoints are given up front (sorted by seq) and checked as
/// the walk reaches them; a checkpoint beyond the last event means events were cut off the end.
///
/// The trust root is the pinned keys: the first checkpoint must be signed by one of them, each
/// later one by the key in force (the first key, or the last one announced by a checkpoint
/// signed by the key before it). Without pinned keys signatures are not checked (links are).
pub struct ChainVerifier {
    pinned: Vec<VerifyingKey>,
    current: Option<VerifyingKey>,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    witness: Option<Vec<Checkpoint>>,
    next_witness: usize,
    /// The last checkpoint checked; `None` when the walk starts after an unknown one.
    prev_link: Option<CheckpointLink>,
    /// A v2 (chained) checkpoint was seen: no v1 one may follow.
    chained: bool,
    head: ChainHead,
    events: i64,
    uncovered_from: Option<(i64, i64)>,
}

impl ChainVerifier {
    pub fn new(pinned: Vec<VerifyingKey>, mut checkpoints: Vec<Checkpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.seq);
        Self {
            pinned,
            current: None,
            checkpoints,
            next_checkpoint: 0,
            witness: None,
            next_witness: 0,
            prev_link: Some(CheckpointLink::genesis()),
            chained: false,
            head: ChainHead::genesis(),
            events: 0,
            uncovered_from: None,
        }
    }

    /// Also checks against a witness's copy of the checkpoints: each must be in the log,
    /// identical, and the chain must reach it.
    pub fn with_witness(mut self, mut witness: Vec<Checkpoint>) -> Self {
        witness.sort_by_key(|c| c.seq);
        witness.dedup_by(|a, b| a == b);
        self.witness = Some(witness);
        self
    }

    /// Starts the walk after `head` (an incremental export): checkpoints up to it are not
    /// checked, except `anchor`, the last of them, which the next one must link to and whose
    /// signature, when it is at `head` itself, vouches for the starting hash.
    pub fn starting_after(mut self, head: ChainHead, anchor: Option<&Checkpoint>) -> Result<Self, VerifyError> {
        self.checkpoints.retain(|c| c.seq > head.seq);
        if let Some(w) = self.witness.as_mut() {
            w.retain(|c| c.seq > head.seq);
        }
        self.prev_link = None;
        if let Some(a) = anchor {
            self.check_signature(a)?;
            if a.seq == head.seq && a.hash != head.hash {
                return Err(VerifyError::CheckpointMismatch { seq: a.seq });
            }
            self.accept(a)?;
        }
        self.head = head;
        Ok(self)
    }

    pub fn push(&mut self, e: &AuditEvent) -> Result<(), VerifyError> {
        self.push_stored(&StoredEvent::from_event(e))
    }

    pub fn push_stored(&mut self, e: &StoredEvent) -> Result<(), VerifyError> {
        let expected = self.head.seq + 1;
        if e.seq != expected {
            return Err(if e.seq > expected {
                VerifyError::Gap { expected, found: e.seq }
            } else {
                VerifyError::BrokenLink { seq: e.seq }
            });
        }
        let hash = e.compute_hash();
        if e.prev_hash != self.head.hash {
            // An event whose own hash is still right but whose link is wrong was moved; one
            // whose hash is wrong was edited. Both are reported at this seq.
            return Err(if hash == e.hash {
                VerifyError::BrokenLink { seq: e.seq }
            } else {
                VerifyError::HashMismatch { seq: e.seq }
            });
        }
        if hash != e.hash {
            return Err(VerifyError::HashMismatch { seq: e.seq });
        }
        self.head = ChainHead { seq: e.seq, hash };
        self.events += 1;
        if self.uncovered_from.is_none() {
            self.uncovered_from = Some((e.seq, e.ts));
        }
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.seq > e.seq {
                break;
            }
            let cp = cp.clone();
            self.check_checkpoint(&cp, e)?;
            self.next_checkpoint += 1;
        }
        self.check_witness_up_to(e.seq)?;
        Ok(())
    }

    /// The witness's checkpoints up to `seq` must be in the log as they are.
    fn check_witness_up_to(&mut self, seq: i64) -> Result<(), VerifyError> {
        let Some(witness) = &self.witness else { return Ok(()) };
        while let Some(w) = witness.get(self.next_witness) {
            if w.seq > seq {
                break;
            }
            match self.checkpoints.binary_search_by_key(&w.seq, |c| c.seq) {
                Err(_) => {
                    return Err(VerifyError::MissingCheckpoint {
                        seq: w.seq,
                        why: "the witness holds it, the log does not".into(),
                    })
                }
                Ok(i) if self.checkpoints[i] != *w => return Err(VerifyError::WitnessMismatch { seq: w.seq }),
                Ok(_) => {}
            }
            self.next_witness += 1;
        }
        Ok(())
    }

    fn check_signature(&mut self, cp: &Checkpoint) -> Result<(), VerifyError> {
        if self.pinned.is_empty() {
            return Ok(());
        }
        let key = match self.current {
            Some(k) => k,
            None => match self.pinned.iter().find(|k| key_id(k) == cp.key_id) {
                Some(k) => *k,
                None => {
                    return Err(VerifyError::UnknownKey {
                        seq: cp.seq,
                        key_id: cp.key_id.clone(),
                    })
                }
            },
        };
        if cp.key_id != key_id(&key) {
            return Err(VerifyError::UnknownKey {
                seq: cp.seq,
                key_id: cp.key_id.clone(),
            });
        }
        if !checkpoint_signature_ok(&key, cp) {
            return Err(VerifyError::BadSignature { seq: cp.seq });
        }
        self.current = Some(key);
        Ok(())
    }

    /// Takes `cp` (already signature-checked) as the last checkpoint: its link to the one
    /// before, and the key it announces.
    fn accept(&mut self, cp: &Checkpoint) -> Result<(), VerifyError> {
        match (&cp.prev, &self.prev_link) {
            (None, _) if self.chained => {
                return Err(VerifyError::BrokenCheckpointChain {
                    seq: cp.seq,
                    why: "an unchained (v1) checkpoint after chained ones".into(),
                })
            }
            (Some(link), Some(expected)) if link != expected => {
                return Err(if link.seq > expected.seq {
                    VerifyError::MissingCheckpoint {
                        seq: link.seq,
                        why: format!("the checkpoint at event {} names it as the one before", cp.seq),
                    }
                } else {
                    VerifyError::BrokenCheckpointChain {
                        seq: cp.seq,
                        why: format!("it names the checkpoint at event {}, the log has {} there", link.seq, expected.seq),
                    }
                });
            }
            _ => {}
        }
        self.chained |= cp.prev.is_some();
        if let Some(next) = &cp.next_key {
            let Some(k) = parse_verifying_key(next) else {
                return Err(VerifyError::BadSignature { seq: cp.seq });
            };
            if !self.pinned.is_empty() {
                self.current = Some(k);
            }
        }
        self.prev_link = Some(CheckpointLink::of(cp));
        Ok(())
    }

    fn check_checkpoint(&mut self, cp: &Checkpoint, at: &StoredEvent) -> Result<(), VerifyError> {
        self.check_signature(cp)?;
        if cp.seq != at.seq || cp.hash != at.hash {
            return Err(VerifyError::CheckpointMismatch { seq: cp.seq });
        }
        self.accept(cp)?;
        self.uncovered_from = None;
        Ok(())
    }

    /// Ends the walk. `store_head` is the head the store recorded, when verifying a live store.
    pub fn finish(self, store_head: Option<&ChainHead>) -> Result<VerifyReport, VerifyError> {
        let beyond = self.checkpoints.get(self.next_checkpoint).map(|c| c.seq);
        let witnessed_beyond = self.witness.as_ref().and_then(|w| w.get(self.next_witness)).map(|c| c.seq);
        if let Some(cp) = [beyond, witnessed_beyond].into_iter().flatten().min() {
            return Err(VerifyError::Truncated {
                seq: self.head.seq + 1,
                checkpoint: cp,
            });
        }
        if let Some(h) = store_head {
            if h.seq != self.head.seq || h.hash != self.head.hash {
                return Err(VerifyError::HeadMismatch {
                    seq: self.head.seq,
                    head: h.seq,
                });
            }
        }
        Ok(VerifyReport {
            events: self.events,
            last_seq: self.head.seq,
            last_hash: self.head.hash,
            checkpoints: self.next_checkpoint,
            last_checkpoint: self.checkpoints.last().map(|c| c.seq),
            witnessed: self.witness.as_ref().map(|w| w.len()),
            uncovered_from: self.uncovered_from,
        })
    }
}
