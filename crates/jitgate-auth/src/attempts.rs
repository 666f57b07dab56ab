//! Attempt limits for passwords and second factors, per account name. The state lives in the
//! store (so it holds across restarts and instances); this module only decides, given that
//! state and the time, whether an attempt may go ahead and what a failure leads to.
//!
//! Names that do not exist are counted like names that do, so the answers (delay, lock) never
//! tell whether an account exists.

use jitgate_core::Timestamp;
use std::time::Duration;

/// The most consecutive failures before the soft lock, whatever the config says.
pub const MAX_FAILURES_CAP: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Consecutive failures that lock the account (1..=10).
    pub max_failures: u32,
    /// How long the soft lock lasts, unless an administrator lifts it sooner.
    pub lock_for: Duration,
    /// Failures allowed back to back before delays start.
    pub free_failures: u32,
    /// The longest delay between two attempts before the lock.
    pub max_delay: Duration,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self {
            max_failures: MAX_FAILURES_CAP,
            lock_for: Duration::from_secs(15 * 60),
            free_failures: 4,
            max_delay: Duration::from_secs(60),
        }
    }
}

/// What the store keeps per account name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    pub failures: u32,
    pub last_failure_at: Timestamp,
    pub locked_until: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too soon after the last failure: come back at `until`.
    Wait {
        until: Timestamp,
    },
    Locked {
        until: Timestamp,
    },
}

impl AttemptPolicy {
    /// The delay that follows the `failures`-th consecutive failure: none for the first
    /// `free_failures`, then 1 s, 2 s, 4 s … up to `max_delay`.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures <= self.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures - 1).min(16);
        Duration::from_secs(1u64 << doublings).min(self.max_delay)
    }

    pub fn gate(&self, state: Option<&AttemptState>, now: Timestamp) -> Gate {
        let Some(s) = state else { return Gate::Open };
        if let Some(until) = s.locked_until {
            return if now < until { Gate::Locked { until } } else { Gate::Open };
        }
        let until = s.last_failure_at.saturating_add(self.delay_after(s.failures));
        if now < until {
            Gate::Wait { until }
        } else {
            Gate::Open
        }
    }

    /// The state after one more failure at `now`. A lock that has run out starts the count
    /// afresh.
    pub fn after_failure(&self, state: Option<&AttemptState>, now: Timestamp) -> AttemptState {
        let previous = match state {
            Some(s) if s.locked_until.is_some_and(|until| now >= until) => 0,
            Some(s) => s.failures,
            None => 0,
        };
        let failures = previous.saturating_add(1);
        let max = self.max_failures.clamp(1, MAX_FAILURES_CAP);
        AttemptState {
            failures,
            last_failure_at: now,
            locked_until: (failures >= max).then(|| now.saturating_add(self.lock_for)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    #[test]
    fn delays_grow_then_the_tenth_failure_locks() {
        let p = AttemptPolicy::default();
        let mut state = None;
        let mut now = at(1_000);
        for n in 1..=9 {
            assert_eq!(p.gate(state.as_ref(), now), Gate::Open, "attempt {n}");
            let s = p.after_failure(state.as_ref(), now);
            assert_eq!((s.failures, s.locked_until), (n, None));
            let delay = p.delay_after(n);
            if n <= 4 {
                assert_eq!(delay, Duration::ZERO);
            } else {
                assert_eq!(delay, Duration::from_secs(1 << (n - 5)));
                assert_eq!(
                    p.gate(Some(&s), now),
                    Gate::Wait {
                        until: now.saturating_add(delay)
                    }
                );
            }
            now = now.saturating_add(delay);
            state = Some(s);
        }
        let locked = p.after_failure(state.as_ref(), now);
        assert_eq!(locked.failures, 10);
        let until = now.saturating_add(p.lock_for);
        assert_eq!(locked.locked_until, Some(until));
        assert_eq!(p.gate(Some(&locked), now), Gate::Locked { until });
        assert_eq!(p.gate(Some(&locked), until), Gate::Open);
        // After the lock runs out, counting starts again.
        assert_eq!(p.after_failure(Some(&locked), until).failures, 1);
    }

    #[test]
    fn the_cap_holds_whatever_is_configured() {
        let p = AttemptPolicy {
            max_failures: 50,
            ..AttemptPolicy::default()
        };
        let mut s = None;
        for _ in 0..10 {
            s = Some(p.after_failure(s.as_ref(), at(0)));
        }
        assert!(s.unwrap().locked_until.is_some());
        assert_eq!(p.delay_after(40), p.max_delay);
    }
}
