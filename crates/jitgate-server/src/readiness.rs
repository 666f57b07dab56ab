//! Readiness without waiting: a background probe pings the store every [`PROBE_EVERY`], each
//! ping bounded by `store.timeout` (at most [`PROBE_TIMEOUT_MAX`]), and keeps the outcome here;
//! `/readyz` answers from it at once, whatever the store is doing.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often the store is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// The longest a probe waits for the store, whatever `store.timeout` says.
pub const PROBE_TIMEOUT_MAX: Duration = Duration::from_secs(1);
/// A probe outcome older than this does not count (the probe is stuck or not running): not
/// ready.
const STALE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Probe {
    /// `None`: the store answered; else why not.
    problem: Option<String>,
    at: Instant,
}

/// The outcome of the last probe of the store.
#[derive(Debug)]
pub struct Readiness(Mutex<Probe>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Ready: the store was just opened (and migrated) when the server is built; the probe
    /// takes over once the server runs.
    pub fn new() -> Self {
        Self(Mutex::new(Probe {
            problem: None,
            at: Instant::now(),
        }))
    }

    /// `None` when the store answered the last probe (and that was recent); else why it is
    /// not ready.
    pub fn store_problem(&self) -> Option<String> {
        let probe = self.0.lock().map(|p| p.clone()).ok()?;
        let age = probe.at.elapsed();
        if age > STALE_AFTER {
            return Some(format!("no store probe for {}s", age.as_secs()));
        }
        probe.problem
    }

    fn record(&self, problem: Option<String>) {
        if let Ok(mut p) = self.0.lock() {
            match (&p.problem, &problem) {
                (None, Some(why)) => tracing::warn!(problem = %why, "store unavailable: not ready"),
                (Some(_), None) => tracing::info!("store answers again: ready"),
                _ => {}
            }
            *p = Probe {
                problem,
                at: Instant::now(),
            };
        }
    }
}

/// Probes `store` until stopped, each probe given `store_timeout` at most (and
/// [`PROBE_TIMEOUT_MAX`]), and keeps what it found in `readiness`.
pub async fn run(
    store: std::sync::Arc<dyn jitgate_store::Store>,
    readiness: std::sync::Arc<Readiness>,
    store_timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let timeout = store_timeout.min(PROBE_TIMEOUT_MAX);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let problem = match tokio::time::timeout(timeout, store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {timeout:?}")),
        };
        readiness.record(problem);
    }
}
