//! Changes committed by other instances, for the pages that follow changes live: this
//! instance's own commits count themselves (`Core::commit`); with several instances sharing a
//! PostgreSQL store, this task looks at the audit log's head once a second and counts a change
//! when it moved past what this instance wrote. (A single SQLite instance writes everything
//! itself.) Only while some page follows changes.

use crate::core::AppState;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often the shared store's head is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub async fn follow_other_instances(core: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    if core.store.backend() != "postgres" {
        return;
    }
    let mut seen = 0_i64;
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if core.changes.receiver_count() == 0 {
            seen = 0;
            continue;
        }
        let Ok(Ok(head)) = tokio::time::timeout(core.settings.store_timeout, core.store.audit_head()).await else {
            continue;
        };
        let local = core.local_head.load(Ordering::Relaxed);
        if seen > 0 && head.seq > seen.max(local) {
            core.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        seen = seen.max(head.seq);
    }
}
