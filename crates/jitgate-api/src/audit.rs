//! The audit log: pages of events, checkpoints, verification, witnesses, export lines.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub head_seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditKey {
    pub key_id: String,
    /// Hex of the Ed25519 public key that signs checkpoints.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyOutcome {
    pub ok: bool,
    pub report: Option<VerifyReport>,
    /// The first sequence number at which the log is bad.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

/// Where the audit log stands: its head, its newest checkpoint, and each witness.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditStatus {
    pub head_seq: i64,
    pub last_checkpoint_seq: Option<i64>,
    pub last_checkpoint_at: Option<Timestamp>,
    pub checkpoint_interval_ms: i64,
    pub key_id: String,
    pub witnesses: Vec<WitnessStatus>,
}

/// What one witness has and how its delivery goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WitnessStatus {
    pub witness: String,
    /// The last checkpoint it acknowledged (`None`: not known yet).
    pub delivered_seq: Option<i64>,
    /// Checkpoints in the store it does not have yet.
    pub behind: i64,
    pub failing_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl WitnessStatus {
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }
}

/// One line of an exported audit file (JSON Lines).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        key_id: String,
        public_key: String,
        exported_at: Timestamp,
        /// An incremental export (`--since SEQ`): the events start after `seq`, whose hash
        /// was `hash`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<ChainHead>,
        /// The last checkpoint at or before `since`, which the file's first checkpoint links to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<Checkpoint>,
        /// The server's signed word on the head the file ends at and when it was taken
        /// (`GET /audit/head`). Files from before it have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<SignedHead>,
    },
    Event(AuditEvent),
    Checkpoint(Checkpoint),
}
