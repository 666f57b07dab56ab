//! A store with a past (issue #18): ended grants, their requests and audit events, written
//! before the server starts.

use crate::*;

/// A store with a past, filled before the server starts (issue #18): the flows then run
/// behind it, as they would after a year of use.
#[derive(clap::Args, Clone, Copy, Default)]
pub(crate) struct History {
    /// Ended grants (each with its approved request) spread over --history-users people.
    #[arg(long, default_value_t = 0)]
    history_grants: usize,
    /// People the history's grants belong to (u0000, u0001, ...).
    #[arg(long, default_value_t = 1000)]
    history_users: usize,
    /// Ended grants of alice's own, the requester of every measured flow, so her decisions run
    /// behind a long history of hers.
    #[arg(long, default_value_t = 0)]
    history_alice: usize,
    /// Audit events in the history (chained, a signed checkpoint every 100,000).
    #[arg(long, default_value_t = 0)]
    history_events: i64,
}

impl History {
    /// `grants` ended grants with their requests, `alices` of them alice's.
    pub(crate) fn of(grants: usize, alices: usize) -> Self {
        Self {
            history_grants: grants.saturating_sub(alices),
            history_alice: alices,
            history_users: 1000,
            history_events: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.history_grants == 0 && self.history_alice == 0 && self.history_events == 0
    }

    pub(crate) fn label(&self) -> String {
        format!(
            "history_grants={} history_alice={} history_events={}",
            self.history_grants, self.history_alice, self.history_events
        )
    }

    /// Writes the history into the store the server will open; returns how long it took.
    pub(crate) async fn fill(&self, s: &Settings) -> Result<Duration> {
        let started = Instant::now();
        if self.is_empty() {
            return Ok(started.elapsed());
        }
        std::fs::create_dir_all(&s.data_dir)?;
        let store = jitgate_store::open(&s.store_url()).await?;
        let key = jitgate_server::audit_log::load_or_create_signing_key(&s.signing_key_path()).map_err(anyhow::Error::msg)?;
        let now = SystemClock.now();
        let year_ms: i64 = 365 * 24 * 3600 * 1000;
        let total = self.history_grants + self.history_alice;
        let mut done = 0;
        while done < total {
            let mut tx = store.write().await?;
            for i in done..(done + 2000).min(total) {
                let user = if i < self.history_alice {
                    "alice".to_owned()
                } else {
                    format!("u{:04}", i % self.history_users.max(1))
                };
                // Spread over the last year, oldest first, each 30 minutes long and over.
                let created = Timestamp::from_millis(now.as_millis() - year_ms + (i as i64 * (year_ms - 3_600_000)) / total as i64);
                let req = approved_request(format!("req_h{i:015}"), &user, "an earlier investigation", 1800, created)?;
                tx.insert_request(&req).await?;
                let mut g = Grant::from_request(format!("grt_h{i:015}"), &req, None, created);
                g.ends_at = Timestamp::from_millis(created.as_millis() + 1_800_000);
                g.status = GrantStatus::Expired;
                tx.insert_grant(&g).await?;
            }
            tx.commit().await?;
            done = (done + 2000).min(total);
        }
        let mut written = 0;
        while written < self.history_events {
            let mut tx = store.write().await?;
            let n = 20_000.min(self.history_events - written);
            for i in written..written + n {
                let details =
                    serde_json::json!({"resource": "prod-db", "role": "read", "reason": "an earlier investigation", "duration_secs": 1800});
                tx.append_audit(
                    NewEvent::new(
                        format!("u{:04}", i % 1000),
                        jitgate_core::actions::REQUEST_CREATE,
                        format!("req_e{i:015}"),
                        Outcome::Success,
                        details,
                    ),
                    Timestamp::from_millis(now.as_millis() - year_ms + i),
                )
                .await?;
            }
            written += n;
            if written % 100_000 == 0 || written == self.history_events {
                checkpoint(&mut *tx, &key, now.as_millis() - year_ms + written).await?;
            }
            tx.commit().await?;
        }
        Ok(started.elapsed())
    }
}

/// An approved request of `requester` for read on prod-db, made and decided at `at`.
pub(crate) fn approved_request(id: String, requester: &str, reason: &str, duration_secs: i64, at: Timestamp) -> Result<AccessRequest> {
    Ok(AccessRequest {
        id,
        requester: requester.parse().map_err(anyhow::Error::msg)?,
        resource: "prod-db".parse().map_err(anyhow::Error::msg)?,
        role: "read".parse().map_err(anyhow::Error::msg)?,
        reason: reason.into(),
        ticket: None,
        duration_secs,
        start_at: None,
        status: RequestStatus::Approved,
        created_at: at,
        expires_at: at,
        decided_at: Some(at),
        extends_grant: None,
        mfa_method: None,
        break_glass: false,
        acknowledged_by: None,
        acknowledged_at: None,
    })
}

/// Signs the transaction's head as the checkpoint after the newest one, at `at_ms`.
pub(crate) async fn checkpoint(tx: &mut dyn jitgate_store::WriteTx, key: &ed25519_dalek::SigningKey, at_ms: i64) -> Result<()> {
    let prev = tx
        .last_checkpoint()
        .await?
        .map_or_else(jitgate_core::audit::CheckpointLink::genesis, |c| {
            jitgate_core::audit::CheckpointLink::of(&c)
        });
    let cp = jitgate_core::audit::sign_checkpoint(key, tx.head(), at_ms, prev, None);
    tx.insert_checkpoint(&cp).await?;
    Ok(())
}
