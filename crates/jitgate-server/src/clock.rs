//! The one place that reads the wall clock. Everything else takes `now` from a [`Clock`], so
//! tests drive time with a [`ManualClock`] and the expiry engine sleeps on the same clock.

use async_trait::async_trait;
use jitgate_core::Timestamp;
use std::sync::Arc;
use tokio::sync::watch;

#[async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Returns once `now() >= deadline`.
    async fn sleep_until(&self, deadline: Timestamp);
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        // Sleep in bounded steps and re-read the wall clock, so a clock step (NTP) cannot make
        // a deadline late by more than one step.
        loop {
            let left = self.now().until(deadline);
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
        }
    }
}

/// A clock that only moves when told to. Sleepers wake when it passes their deadline.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::channel(start).0),
        }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }

    pub fn advance(&self, by: std::time::Duration) {
        let t = self.now.borrow().saturating_add(by);
        self.set(t);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut rx = self.now.subscribe();
        let _ = rx.wait_for(|now| *now >= deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_deadline() {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(Timestamp::from_millis(1000)).await });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(999));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(1));
        tokio::time::timeout(Duration::from_secs(1), sleeper).await.unwrap().unwrap();
    }
}
