//! Notifications: the outbox that turns committed audit events into messages
//! (`fan_out.rs`), and the sender that delivers them (`deliver.rs`) through the channels of
//! `jitgate-notify`. Both run in one task per instance; several instances share the work
//! through the store.

pub(crate) mod deliver;
pub use deliver::channel_secret_context;
pub(crate) mod fan_out;

use crate::core::Core;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the outbox looks for work nobody woke it for: events other instances committed,
/// and retries that came due.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Without channels the cursor only has to keep up with the log (so that channels added later
/// do not start from the distant past): a pass this often is enough, and costs the workflow's
/// writers nothing.
const WITHOUT_CHANNELS_EVERY: Duration = Duration::from_secs(10);
/// Pause after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the outbox until `stop`: makes messages from new audit events and sends those due,
/// woken by every commit of this instance and otherwise every half second.
pub async fn run_outbox(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let senders = match jitgate_notify::Sender::new() {
        Ok(s) => deliver::Senders::new(s, &core.settings.notifications.channels),
        Err(e) => {
            tracing::error!(error = %e, "notifications are off: cannot make an HTTP client");
            return;
        }
    };
    // A process that uses its store alone holds every claim there is: those it finds at start
    // are of its predecessor, which died while sending. They go again now, not at the lease's
    // end (several instances let a dead one's claims run out).
    if core.store.deadline_signal().is_none() {
        match core.store.release_claims().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "notifications that were being sent when the server stopped go again"),
            Err(e) => tracing::warn!(error = %e, "cannot release the outbox's claims"),
        }
    }
    let mut changes = core.changes.subscribe();
    let quiet = core.settings.notifications.channels.is_empty();
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut busy = false;
        if quiet && last_pass.is_some_and(|t| t.elapsed() < WITHOUT_CHANNELS_EVERY) {
            tokio::select! {
                () = tokio::time::sleep(WITHOUT_CHANNELS_EVERY) => continue,
                _ = stop.changed() => return,
            }
        }
        last_pass = Some(tokio::time::Instant::now());
        match core.fan_out().await {
            Ok(n) => busy |= n > 0,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot make notifications from the audit log; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        if !quiet {
            match core.deliver_due(&senders).await {
                Ok(n) => busy |= n > 0,
                Err(e) => tracing::warn!(error = %e.message, "cannot take notifications to send; retrying"),
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = senders.done.notified() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
