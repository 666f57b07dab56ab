//! The audit log's hash chain and signed checkpoints.
//!
//! Each event's hash is SHA-256 over its canonical form, which includes its sequence number and
//! the previous event's hash; so editing, deleting or reordering any event breaks the chain at
//! that point. Checkpoints sign `(seq, hash)` with an Ed25519 key that lives outside the
//! database, so whoever can write the database cannot rewrite the whole chain consistently.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

mod checkpoint;
mod verify;

pub use checkpoint::*;
pub use verify::*;

/// The previous hash of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event before it is placed in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    /// The details as canonical text already, when the caller wrote them so
    /// ([`NewEvent::with_canonical_details`]); `details` is `Null` then.
    canonical_details: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

impl NewEvent {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Self {
        let action = action.into();
        // Every action is in the one list (and so in the README); a new one goes there first.
        debug_assert!(
            crate::actions::is_known(&action),
            "audit action {action:?} is not in jitgate_core::actions"
        );
        Self {
            actor: actor.into(),
            action,
            target: target.into(),
            outcome,
            details,
            canonical_details: None,
        }
    }

    /// An event whose details the caller wrote as their canonical text (what
    /// [`canonical_json`] makes of them): for events built in bulk, such as a gateway session's
    /// batch of hundreds of statements, where building a `Value` per item, walking it and
    /// freeing it cost more than the rest of the event. The text is hashed and stored as it is;
    /// the committed event handed back carries `Null` details (read back from the store, it has
    /// them). Debug builds check that the text is canonical.
    pub fn with_canonical_details(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: Outcome,
        details_json: String,
    ) -> Self {
        debug_assert!(
            serde_json::from_str(&details_json).is_ok_and(|v| canonical_json(&v) == details_json),
            "details not in canonical form: {details_json}"
        );
        let mut event = Self::new(actor, action, target, outcome, serde_json::Value::Null);
        event.canonical_details = Some(details_json);
        event
    }
}

/// An event in the chain, exactly as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// An event as the store keeps it: `details` as canonical JSON text (compact, keys sorted, as
/// serde_json writes a `Value`). Verification hashes this text as it is, without parsing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details_json: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    pub fn from_event(e: &AuditEvent) -> Self {
        Self {
            seq: e.seq,
            ts: e.ts,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            details_json: canonical_json(&e.details),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }

    /// Back to an event. Details that are not JSON (an edit by hand) become a JSON string, so
    /// that the event can still be shown and its hash still fails.
    pub fn into_event(self) -> AuditEvent {
        let details = serde_json::from_str(&self.details_json).unwrap_or(serde_json::Value::String(self.details_json));
        AuditEvent {
            seq: self.seq,
            ts: self.ts,
            actor: self.actor,
            action: self.action,
            target: self.target,
            outcome: self.outcome,
            details,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// SHA-256 over the canonical form: the JSON object
    /// `{"v":1,"seq":…,"ts":…,"actor":…,"action":…,"target":…,"outcome":…,"details":…,"prev_hash":…}`
    /// written compactly in that order.
    pub fn compute_hash(&self) -> String {
        hash_of(
            self.seq,
            self.ts,
            [&self.actor, &self.action, &self.target, &self.outcome],
            &self.details_json,
            &self.prev_hash,
        )
    }
}

/// The hash of an event from its parts (`texts`: actor, action, target, outcome), as
/// [`StoredEvent::compute_hash`] describes.
fn hash_of(seq: i64, ts: i64, texts: [&String; 4], details_json: &str, prev_hash: &str) -> String {
    // Fed to the hash in pieces: the details (a gateway batch's run to tens of KiB) are not
    // copied into a buffer first.
    let mut head = Vec::with_capacity(96 + texts[0].len() + texts[2].len());
    head.extend_from_slice(b"{\"v\":1,\"seq\":");
    head.extend_from_slice(seq.to_string().as_bytes());
    head.extend_from_slice(b",\"ts\":");
    head.extend_from_slice(ts.to_string().as_bytes());
    for (key, value) in ["actor", "action", "target", "outcome"].into_iter().zip(texts) {
        head.extend_from_slice(b",\"");
        head.extend_from_slice(key.as_bytes());
        head.extend_from_slice(b"\":");
        // Writing a &str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut head, value);
    }
    head.extend_from_slice(b",\"details\":");
    let mut tail = Vec::with_capacity(16 + prev_hash.len());
    tail.extend_from_slice(b",\"prev_hash\":");
    let _ = serde_json::to_writer(&mut tail, prev_hash);
    tail.push(b'}');
    let mut hasher = Sha256::new();
    hasher.update(&head);
    hasher.update(details_json.as_bytes());
    hasher.update(&tail);
    hex::encode(hasher.finalize())
}

/// The one text a JSON value is hashed and stored as: compact, object keys sorted at every
/// level. The keys are sorted here rather than left to `serde_json::Map`, whose order depends
/// on a cargo feature (`preserve_order`) that any crate in the build can switch on.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(v, &mut out);
    // serde_json writes valid UTF-8 only, and so does everything here.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `v` as serde_json's compact form with every object's keys sorted, without copying
/// the value and without a string per key or leaf (the events of a busy gateway carry
/// batches of statements, and this runs once per event on the audit writer's path).
fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Object(map) => {
            out.push(b'{');
            // Most objects are built with their keys in order already: no sort, no allocation.
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if sorted {
                for (i, (k, v)) in map.iter().enumerate() {
                    write_entry(i, k, v, out);
                }
            } else {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    write_entry(i, k, v, out);
                }
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Writing to a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_entry(i: usize, key: &str, value: &serde_json::Value, out: &mut Vec<u8>) {
    if i > 0 {
        out.push(b',');
    }
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    write_canonical(value, out);
}

/// The hash an event must carry.
pub fn compute_hash(e: &AuditEvent) -> String {
    StoredEvent::from_event(e).compute_hash()
}

/// The end of the chain: what the next event links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Places `event` after this head at time `ts_ms` and moves the head on.
    pub fn append(&mut self, event: NewEvent, ts_ms: i64) -> AuditEvent {
        self.append_stored(event, ts_ms).0
    }

    /// Like [`ChainHead::append`], also returning the details as the canonical text they are
    /// hashed as (and stored as: written once, not again at commit).
    pub fn append_stored(&mut self, mut event: NewEvent, ts_ms: i64) -> (AuditEvent, String) {
        let written = event.canonical_details.take();
        let mut out = AuditEvent {
            seq: self.seq + 1,
            ts: ts_ms,
            actor: event.actor,
            action: event.action,
            target: event.target,
            outcome: event.outcome.as_str().to_owned(),
            details: event.details,
            prev_hash: self.hash.clone(),
            hash: String::new(),
        };
        let details_json = written.unwrap_or_else(|| canonical_json(&out.details));
        out.hash = hash_of(
            out.seq,
            out.ts,
            [&out.actor, &out.action, &out.target, &out.outcome],
            &details_json,
            &out.prev_hash,
        );
        self.seq = out.seq;
        self.hash = out.hash.clone();
        (out, details_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut head = ChainHead::genesis();
        (0..n)
            .map(|i| {
                head.append(
                    NewEvent::new(
                        "alice",
                        "request.create",
                        format!("req_{i}"),
                        Outcome::Success,
                        json!({"i": i, "b": "x"}),
                    ),
                    1000 + i,
                )
            })
            .collect()
    }

    fn verify(events: &[AuditEvent], cps: Vec<Checkpoint>, key: Option<VerifyingKey>) -> Result<VerifyReport, VerifyError> {
        let mut v = ChainVerifier::new(key.into_iter().collect(), cps);
        for e in events {
            v.push(e)?;
        }
        v.finish(None)
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn a_signed_head_holds_its_place_and_time() {
        let head = ChainHead {
            seq: 12,
            hash: "ab".repeat(32),
        };
        let h = sign_head(&key(), &head, 1_000);
        assert!(head_signature_ok(&key().verifying_key(), &h));
        for edited in [
            SignedHead { seq: 11, ..h.clone() },
            SignedHead { ts: 999, ..h.clone() },
            SignedHead {
                hash: "cd".repeat(32),
                ..h.clone()
            },
        ] {
            assert!(!head_signature_ok(&key().verifying_key(), &edited), "{edited:?}");
        }
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!head_signature_ok(&other.verifying_key(), &h));
        // A checkpoint's signature over the same head does not pass for a head's.
        let cp = sign_checkpoint(&key(), &head, 1_000, CheckpointLink::genesis(), None);
        assert!(!head_signature_ok(
            &key().verifying_key(),
            &SignedHead {
                signature: cp.signature,
                ..h
            }
        ));
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let events = chain(50);
        let cp = sign_checkpoint(
            &key(),
            &ChainHead {
                seq: 40,
                hash: events[39].hash.clone(),
            },
            5,
            CheckpointLink::genesis(),
            None,
        );
        let r = verify(&events, vec![cp], Some(key().verifying_key())).unwrap();
        assert_eq!(r.events, 50);
        assert_eq!(r.checkpoints, 1);
    }

    #[test]
    fn details_written_as_canonical_text_chain_as_the_same_details_given_as_a_value() {
        let details = json!({"statements": [{"kind": "query", "n": 1, "text": "SELECT \"x\" -- \u{e9}"}]});
        let event = |d: Option<&str>| match d {
            Some(text) => NewEvent::with_canonical_details("gateway", "session.statements", "ses_1", Outcome::Success, text.to_owned()),
            None => NewEvent::new("gateway", "session.statements", "ses_1", Outcome::Success, details.clone()),
        };
        let (mut by_value, mut by_text) = (ChainHead::genesis(), ChainHead::genesis());
        let (from_value, value_text) = by_value.append_stored(event(None), 5);
        let (from_text, text) = by_text.append_stored(event(Some(&canonical_json(&details))), 5);
        assert_eq!(text, value_text);
        assert_eq!(from_text.hash, from_value.hash);
        assert_eq!(by_text, by_value);
        // Read back from the store, the event verifies as any other.
        let stored = StoredEvent {
            details_json: text,
            ..StoredEvent::from_event(&from_value)
        };
        assert_eq!(compute_hash(&stored.into_event()), from_value.hash);
        // The event handed back does not carry the details a second time.
        assert_eq!(from_text.details, serde_json::Value::Null);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "details not in canonical form")]
    fn details_written_out_of_canonical_order_are_caught_in_debug_builds() {
        let _ = NewEvent::with_canonical_details(
            "gateway",
            "session.statements",
            "ses_1",
            Outcome::Success,
            r#"{"n":1,"kind":"query"}"#.to_owned(),
        );
    }

    #[test]
    fn the_hand_written_canonical_form_is_serde_jsons_own() {
        #[derive(Serialize)]
        struct Canonical<'a> {
            v: u8,
            seq: i64,
            ts: i64,
            actor: &'a str,
            action: &'a str,
            target: &'a str,
            outcome: &'a str,
            details: &'a serde_json::Value,
            prev_hash: &'a str,
        }
        let details = json!({"z": 1, "a": ["x\"y", null], "m": {"k": "é\n"}});
        // Keys sorted at every level, whatever order they were written in.
        let sorted_text = r#"{"a":["x\"y",null],"m":{"k":"é\n"},"z":1}"#;
        assert_eq!(canonical_json(&details), sorted_text);
        let sorted_details: serde_json::Value = serde_json::from_str(sorted_text).unwrap();
        let e = ChainHead::genesis().append(
            NewEvent::new("al\"ice", "grant.revoke", "t/1", Outcome::Denied, details.clone()),
            42,
        );
        let c = Canonical {
            v: 1,
            seq: 1,
            ts: 42,
            actor: "al\"ice",
            action: "grant.revoke",
            target: "t/1",
            outcome: "denied",
            details: &sorted_details,
            prev_hash: GENESIS_HASH,
        };
        let expected = hex::encode(Sha256::digest(serde_json::to_vec(&c).unwrap()));
        assert_eq!(e.hash, expected);
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order_in_details() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        let mut head = ChainHead::genesis();
        let ea = head.clone().append(NewEvent::new("x", "grant.revoke", "z", Outcome::Success, a), 1);
        let eb = head.append(NewEvent::new("x", "grant.revoke", "z", Outcome::Success, b), 1);
        assert_eq!(ea.hash, eb.hash);
    }

    #[test]
    fn an_edit_is_found_at_its_seq() {
        let mut events = chain(10);
        events[4].actor = "mallory".into();
        assert_eq!(verify(&events, vec![], None).unwrap_err().seq(), 5);
        let mut events = chain(10);
        events[6].details = json!({"i": 6, "b": "y"});
        assert_eq!(verify(&events, vec![], None).unwrap_err(), VerifyError::HashMismatch { seq: 7 });
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let mut events = chain(10);
        let e = &mut events[4];
        e.actor = "mallory".into();
        e.hash = compute_hash(e);
        assert_eq!(verify(&events, vec![], None).unwrap_err(), VerifyError::BrokenLink { seq: 6 });
    }

    #[test]
    fn deletion_and_reordering_are_found() {
        let mut events = chain(10);
        events.remove(3);
        assert_eq!(
            verify(&events, vec![], None).unwrap_err(),
            VerifyError::Gap { expected: 4, found: 5 }
        );
        let mut events = chain(10);
        events.swap(2, 3);
        assert_eq!(verify(&events, vec![], None).unwrap_err().seq(), 3);
        // Swapping the seq numbers too: the content still links wrong.
        let mut events = chain(10);
        events.swap(2, 3);
        events[2].seq = 3;
        events[3].seq = 4;
        assert_eq!(verify(&events, vec![], None).unwrap_err().seq(), 3);
    }

    #[test]
    fn cutting_the_tail_is_found_by_a_checkpoint() {
        let events = chain(10);
        let cp = sign_checkpoint(
            &key(),
            &ChainHead {
                seq: 10,
                hash: events[9].hash.clone(),
            },
            5,
            CheckpointLink::genesis(),
            None,
        );
        let err = verify(&events[..8], vec![cp], Some(key().verifying_key())).unwrap_err();
        assert_eq!(err, VerifyError::Truncated { seq: 9, checkpoint: 10 });
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_is_refused() {
        let events = chain(5);
        let mut cp = sign_checkpoint(
            &key(),
            &ChainHead {
                seq: 5,
                hash: events[4].hash.clone(),
            },
            5,
            CheckpointLink::genesis(),
            None,
        );
        cp.ts += 1;
        assert_eq!(
            verify(&events, vec![cp], Some(key().verifying_key())).unwrap_err(),
            VerifyError::BadSignature { seq: 5 }
        );
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let cp = sign_checkpoint(
            &other,
            &ChainHead {
                seq: 5,
                hash: events[4].hash.clone(),
            },
            5,
            CheckpointLink::genesis(),
            None,
        );
        assert!(matches!(
            verify(&events, vec![cp], Some(key().verifying_key())).unwrap_err(),
            VerifyError::UnknownKey { seq: 5, .. }
        ));
    }

    #[test]
    fn a_store_head_beyond_the_chain_means_a_cut_tail() {
        let events = chain(5);
        let mut v = ChainVerifier::new(vec![], vec![]);
        for e in &events[..3] {
            v.push(e).unwrap();
        }
        let head = ChainHead {
            seq: 5,
            hash: events[4].hash.clone(),
        };
        assert_eq!(v.finish(Some(&head)).unwrap_err().seq(), 4);
    }

    /// Checkpoints every `every` events, chained, the key rotating to `rotate_to` at `rotate_at`.
    fn checkpoints(events: &[AuditEvent], every: usize, rotate: Option<(i64, &SigningKey)>) -> Vec<Checkpoint> {
        let mut prev = CheckpointLink::genesis();
        let mut signer = key();
        let mut out = Vec::new();
        for e in events.iter().skip(every - 1).step_by(every) {
            let head = ChainHead {
                seq: e.seq,
                hash: e.hash.clone(),
            };
            let announce = rotate.filter(|(at, _)| *at == e.seq).map(|(_, k)| k.verifying_key());
            let cp = sign_checkpoint(&signer, &head, e.ts, prev, announce.as_ref());
            if let Some((_, k)) = rotate.filter(|(at, _)| *at == e.seq) {
                signer = k.clone();
            }
            prev = CheckpointLink::of(&cp);
            out.push(cp);
        }
        out
    }

    #[test]
    fn a_deleted_checkpoint_is_named_by_the_next_one() {
        let events = chain(40);
        let mut cps = checkpoints(&events, 10, None);
        assert!(verify(&events, cps.clone(), Some(key().verifying_key())).is_ok());
        cps.remove(1);
        let err = verify(&events, cps, Some(key().verifying_key())).unwrap_err();
        assert!(matches!(err, VerifyError::MissingCheckpoint { seq: 20, .. }), "{err}");
    }

    #[test]
    fn a_witness_finds_what_the_log_lost() {
        let events = chain(40);
        let cps = checkpoints(&events, 10, None);
        let witnessed = |log: &[AuditEvent], store: Vec<Checkpoint>| {
            let mut v = ChainVerifier::new(vec![key().verifying_key()], store).with_witness(cps.clone());
            for e in log {
                v.push(e)?;
            }
            v.finish(None)
        };
        assert_eq!(witnessed(&events, cps.clone()).unwrap().witnessed, Some(4));
        // The tail cut with its checkpoints: the witness still has them.
        let err = witnessed(&events[..25], cps[..2].to_vec()).unwrap_err();
        assert_eq!(err, VerifyError::Truncated { seq: 26, checkpoint: 30 });
        // Everything gone.
        let err = witnessed(&[], vec![]).unwrap_err();
        assert_eq!(err, VerifyError::Truncated { seq: 1, checkpoint: 10 });
        // The last checkpoint deleted and the events after the one before rewritten.
        let mut rewritten = events.clone();
        let mut head = ChainHead {
            seq: 30,
            hash: rewritten[29].hash.clone(),
        };
        for e in rewritten.iter_mut().skip(30) {
            let mut n = NewEvent::new(
                e.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                Outcome::Success,
                e.details.clone(),
            );
            if e.seq == 33 {
                n.details = json!({"sql": "SELECT 1"});
            }
            *e = head.append(n, e.ts);
        }
        let err = witnessed(&rewritten, cps[..3].to_vec()).unwrap_err();
        assert!(matches!(err, VerifyError::MissingCheckpoint { seq: 40, .. }), "{err}");
        // Without the witness, that rewrite passes: that is what the witness is for.
        assert!(verify(&rewritten, cps[..3].to_vec(), Some(key().verifying_key())).is_ok());
    }

    #[test]
    fn an_uncovered_tail_is_reported_once_older_than_the_interval_allows() {
        let events = chain(25);
        let cps = checkpoints(&events, 10, None);
        let r = verify(&events, cps, Some(key().verifying_key())).unwrap();
        assert_eq!(r.uncovered_from, Some((21, 1020)));
        assert_eq!(r.uncovered_tail(1030, 10), None);
        let err = r.uncovered_tail(1100, 10).unwrap();
        assert_eq!(err.seq(), 21);
    }

    #[test]
    fn a_rotated_key_is_trusted_from_its_announcement_and_the_old_one_no_longer() {
        let events = chain(40);
        let new = SigningKey::from_bytes(&[8u8; 32]);
        let cps = checkpoints(&events, 10, Some((20, &new)));
        assert_eq!(cps[2].key_id, key_id(&new.verifying_key()));
        assert!(verify(&events, cps.clone(), Some(key().verifying_key())).is_ok());
        // Pinning only the new key: the first checkpoints are not vouched for.
        assert!(matches!(
            verify(&events, cps.clone(), Some(new.verifying_key())).unwrap_err(),
            VerifyError::UnknownKey { seq: 10, .. }
        ));
        // A checkpoint signed by the retired key after the rotation is refused.
        let mut forged = cps.clone();
        forged[3] = sign_checkpoint(
            &key(),
            &ChainHead {
                seq: 40,
                hash: events[39].hash.clone(),
            },
            1,
            CheckpointLink::of(&cps[2]),
            None,
        );
        assert!(matches!(
            verify(&events, forged, Some(key().verifying_key())).unwrap_err(),
            VerifyError::UnknownKey { seq: 40, .. }
        ));
    }

    #[test]
    fn an_incremental_walk_starts_at_a_signed_anchor() {
        let events = chain(40);
        let cps = checkpoints(&events, 10, None);
        let start = ChainHead {
            seq: 20,
            hash: events[19].hash.clone(),
        };
        let mut v = ChainVerifier::new(vec![key().verifying_key()], cps.clone())
            .with_witness(cps.clone())
            .starting_after(start.clone(), Some(&cps[1]))
            .unwrap();
        for e in &events[20..] {
            v.push(e).unwrap();
        }
        assert_eq!(v.finish(None).unwrap().checkpoints, 2);
        let bad = ChainHead {
            seq: 20,
            hash: events[18].hash.clone(),
        };
        let err = ChainVerifier::new(vec![key().verifying_key()], cps.clone())
            .starting_after(bad, Some(&cps[1]))
            .err()
            .unwrap();
        assert_eq!(err.seq(), 20);
    }
}
