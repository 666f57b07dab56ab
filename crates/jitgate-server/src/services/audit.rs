//! The audit log as people read it: pages of events, checkpoints, the signed head, verification and the witnesses' status.

use super::*;
use crate::audit_log::{public_keys_beside, verify_store};
use crate::core::Caller;
use crate::error::ServiceError;
pub use ed25519_dalek::VerifyingKey;
use jitgate_api::{AuditKey, AuditPage, VerifyOutcome};
use jitgate_core::audit::key_id;

impl Audit<'_> {
    async fn require_reader(&self, caller: &Caller, operation: &str) -> Result<(), ServiceError> {
        if self.is_audit_reader(caller) {
            Ok(())
        } else {
            Err(self
                .forbid(caller, operation, "reading the audit log needs an administrator or an audit reader")
                .await)
        }
    }

    pub async fn page(&self, caller: &Caller, after: i64, limit: i64) -> Result<AuditPage, ServiceError> {
        self.require_reader(caller, "audit_page").await?;
        let events = self.store.audit_events(after.max(0), limit.clamp(1, 10_000)).await?;
        let head_seq = self.store.audit_head().await?.seq;
        Ok(AuditPage { events, head_seq })
    }

    pub async fn checkpoints(&self, caller: &Caller) -> Result<jitgate_api::CheckpointList, ServiceError> {
        self.require_reader(caller, "audit_checkpoints").await?;
        Ok(jitgate_api::CheckpointList {
            checkpoints: self.store.audit_checkpoints().await?,
        })
    }

    /// The committed head, signed now, for an export to end at.
    pub async fn signed_head(&self, caller: &Caller) -> Result<jitgate_core::audit::SignedHead, ServiceError> {
        self.require_reader(caller, "audit_head").await?;
        let head = self.store.audit_head().await?;
        // Signed only once on disk: a signed head is evidence held outside.
        self.store.on_disk().await?;
        Ok(jitgate_core::audit::sign_head(&self.signing_key, &head, self.now().as_millis()))
    }

    pub fn key(&self) -> AuditKey {
        let public = self.signing_key.verifying_key();
        AuditKey {
            key_id: key_id(&public),
            public_key: hex::encode(public.as_bytes()),
        }
    }

    pub async fn verify(&self, caller: &Caller) -> Result<VerifyOutcome, ServiceError> {
        self.require_reader(caller, "audit_verify").await?;
        // The server's own key is the one in force now: walk from the first checkpoint's key
        // when it rotated since, taking the retired keys beside it.
        let keys = public_keys_beside(&self.settings.signing_key_path()).unwrap_or_else(|_| vec![self.signing_key.verifying_key()]);
        Ok(verify_store(self.store.clone(), keys, None).await?)
    }

    pub async fn status(&self, caller: &Caller) -> Result<jitgate_api::AuditStatus, ServiceError> {
        self.require_reader(caller, "audit_status").await?;
        crate::witness::delivery::refresh_behind(self).await;
        let head = self.store.audit_head().await?;
        let last = self.store.audit_last_checkpoint().await?;
        let key = self.key();
        Ok(jitgate_api::AuditStatus {
            head_seq: head.seq,
            last_checkpoint_seq: last.as_ref().map(|c| c.seq),
            last_checkpoint_at: last.as_ref().map(|c| jitgate_core::Timestamp::from_millis(c.ts)),
            checkpoint_interval_ms: self.settings.checkpoint_interval.as_millis() as i64,
            key_id: key.key_id,
            witnesses: self.witnesses.statuses(),
        })
    }
}
