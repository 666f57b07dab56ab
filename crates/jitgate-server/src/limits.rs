//! What keeps anonymous traffic from exhausting the server: a bound on password hashing at
//! once, rate limits per source address, and a summary in place of one audit event per
//! failed anonymous attempt once they come faster than a rate.

use crate::error::{ErrorKind, ServiceError};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jitgate_auth::PasswordWorker;
use jitgate_core::Timestamp;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Argon2id holds 19 MiB while it runs: at most `running` run at once, each on a thread of
/// its own that keeps its working memory for good ([`PasswordWorker`]), and at most `queue`
/// more wait; past that the answer is 503 with `Retry-After`. Memory stays `running` × 19 MiB
/// whatever arrives (tokio's blocking pool would run up to 512 at once, and the allocator
/// would keep what each thread once took).
pub struct HashLimiter {
    jobs: std::sync::mpsc::SyncSender<Job>,
    in_flight: Arc<AtomicUsize>,
    /// Running plus waiting.
    capacity: usize,
}

/// A hash to run, and whether anyone still wants the answer. The closure holds the hash's place
/// in the count: given back when the hash is done (before the answer goes) or the job is dropped
/// unrun, not when the caller stops waiting.
struct Job {
    work: Box<dyn FnOnce(&mut PasswordWorker) + Send>,
    wanted: Box<dyn Fn() -> bool + Send>,
}

/// Counts one hash from admission until it is done or dropped unrun.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admitted: a place in the queue for one hash; dropping it unused gives the place back.
pub struct HashTicket<'a> {
    limiter: &'a HashLimiter,
    in_flight: InFlight,
}

impl HashTicket<'_> {
    async fn run<T: Send + 'static>(self, work: impl FnOnce(&mut PasswordWorker) -> T + Send + 'static) -> Result<T, ServiceError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<T>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let answer = tx.clone();
        let in_flight = self.in_flight;
        let job = Job {
            // The place is given back before the answer is sent, so whoever the answer wakes
            // finds it free (and a job dropped unrun gives it back with its closure).
            work: Box::new(move |w| {
                let result = work(w);
                drop(in_flight);
                if let Some(tx) = answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                    let _ = tx.send(result);
                }
            }),
            // A caller that went away (client gone, request timed out) wants no hash: its job
            // is dropped unrun and its place given back.
            wanted: Box::new(move || {
                tx.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(|t| !t.is_closed())
            }),
        };
        // The channel holds at most `capacity` jobs and admission holds at most `capacity`
        // places, so this never waits.
        if self.limiter.jobs.try_send(job).is_err() {
            return Err(ServiceError::busy(
                ErrorKind::Unavailable,
                "busy",
                "too many logins at once: try again in a moment",
                1,
            ));
        }
        rx.await
            .map_err(|_| ServiceError::new(ErrorKind::Internal, "internal", "a password check failed"))
    }

    /// Checks `password` against `stored` (or the dummy hash when `None`), as
    /// [`jitgate_auth::verify_password`].
    pub async fn verify(self, stored: Option<String>, password: SecretString) -> Result<bool, ServiceError> {
        self.run(move |w| w.verify(stored.as_deref(), &password)).await
    }

    /// Hashes a new password, as [`jitgate_auth::hash_password`].
    pub async fn hash(self, password: SecretString) -> Result<String, ServiceError> {
        self.run(move |w| w.hash(&password))
            .await?
            .map_err(|e| ServiceError::new(ErrorKind::Internal, "internal", e.to_string()))
    }
}

impl HashLimiter {
    pub fn new(running: usize, queue: usize) -> Self {
        let running = running.max(1);
        let capacity = running + queue;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..running {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("jitgate-argon2-{i}")).spawn(move || {
                // The 19 MiB come with the first job, and stay.
                let mut worker: Option<PasswordWorker> = None;
                loop {
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    if (job.wanted)() {
                        (job.work)(worker.get_or_insert_with(PasswordWorker::new));
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Self {
            jobs: tx,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
        }
    }

    /// One Argon2 at a time per core, by default.
    pub fn default_running() -> usize {
        std::thread::available_parallelism().map_or(2, usize::from)
    }

    /// A place in the queue, or 503 when it is full. Taken before anything else of a login
    /// is done, so a refused login has cost nothing and counted nothing.
    pub fn admit(&self) -> Result<HashTicket<'_>, ServiceError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(self.in_flight.clone());
        if before >= self.capacity {
            return Err(ServiceError::busy(
                ErrorKind::Unavailable,
                "busy",
                "too many logins at once: try again in a moment",
                1,
            ));
        }
        Ok(HashTicket { limiter: self, in_flight })
    }
}

/// Requests per minute and burst allowed from one source address; 0 per minute turns the
/// limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateSetting {
    pub const OFF: Self = Self { per_minute: 0, burst: 0 };
}

/// A token bucket per source address (`governor`, keyed by IP).
pub struct AddressLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    what: &'static str,
}

impl AddressLimiter {
    pub fn new(setting: RateSetting, what: &'static str) -> Self {
        let limiter = NonZeroU32::new(setting.per_minute).map(|rate| {
            let burst = NonZeroU32::new(setting.burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self { limiter, what }
    }

    /// `Err(wait)` when `addr` is over its rate.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let Some(l) = &self.limiter else { return Ok(()) };
        l.check_key(&address_key(addr)).map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    /// The same, as the HTTP answer.
    pub fn check_http(&self, addr: IpAddr) -> Result<(), ServiceError> {
        self.check(addr).map_err(|wait| {
            ServiceError::busy(
                ErrorKind::TooMany,
                "rate_limited",
                format!("too many {} from {addr}: slow down", self.what),
                wait.as_secs_f64().ceil() as u64,
            )
        })
    }

    /// Forgets addresses whose buckets are full again, so the map stays as small as the
    /// set of recent senders.
    pub fn shrink(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// One minute's failed anonymous attempts: the first `per_minute` are audited one by one, the
/// rest counted, and the count goes on the record as one summary event when the minute is
/// over (with the next such failure, or the housekeeping tick, whichever comes first).
pub struct FailureSummary {
    per_minute: u32,
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    started: Option<Timestamp>,
    written: u32,
    suppressed: BTreeMap<String, u64>,
}

/// What a summary event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub from: Timestamp,
    pub to: Timestamp,
    pub by_action: BTreeMap<String, u64>,
}

impl Summary {
    pub fn total(&self) -> u64 {
        self.by_action.values().sum()
    }
}

const WINDOW: Duration = Duration::from_secs(60);

impl FailureSummary {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: Mutex::new(Window::default()),
        }
    }

    /// Whether the failure of `action` at `now` goes on the record as an event of its own,
    /// and the summary of the minute before when that minute is over.
    pub fn admit(&self, action: &str, now: Timestamp) -> (bool, Option<Summary>) {
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let summary = Self::roll(&mut w, now);
        let own = w.written < self.per_minute;
        if own {
            w.written += 1;
        } else {
            *w.suppressed.entry(action.to_owned()).or_default() += 1;
        }
        (own, summary)
    }

    /// The summary of a minute that is over, if it left anything uncounted.
    pub fn due(&self, now: Timestamp) -> Option<Summary> {
        let mut w = self.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::roll(&mut w, now)
    }

    fn roll(w: &mut Window, now: Timestamp) -> Option<Summary> {
        let started = *w.started.get_or_insert(now);
        if now < started.saturating_add(WINDOW) {
            return None;
        }
        let summary = (!w.suppressed.is_empty()).then(|| Summary {
            from: started,
            to: started.saturating_add(WINDOW),
            by_action: std::mem::take(&mut w.suppressed),
        });
        *w = Window {
            started: Some(now),
            ..Window::default()
        };
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_core::actions;

    #[test]
    fn past_the_rate_failures_are_counted_and_summarised_once_the_minute_is_over() {
        let s = FailureSummary::new(3);
        let t0 = Timestamp::from_millis(1_000_000);
        let own: Vec<bool> = (0..10).map(|_| s.admit(actions::AUTH_LOGIN, t0).0).collect();
        assert_eq!(own.iter().filter(|o| **o).count(), 3);
        assert_eq!(s.due(t0.saturating_add(Duration::from_secs(59))), None);
        let (own, summary) = s.admit(actions::AUTH_LOGIN, t0.saturating_add(WINDOW));
        assert!(own, "a new minute writes again");
        let summary = summary.expect("the minute before is summarised");
        assert_eq!(summary.total(), 7);
        assert_eq!(summary.from, t0);
        // Nothing is summarised twice.
        assert_eq!(s.due(t0.saturating_add(WINDOW * 3)), None);
    }

    #[test]
    fn the_hash_queue_is_bounded_and_the_workers_answer_as_the_crate_does() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let l = HashLimiter::new(1, 2);
            let a = l.admit().expect("1");
            let b = l.admit().expect("2");
            let c = l.admit().expect("3");
            let refused = l.admit().err().expect("the queue is full");
            assert_eq!((refused.kind, refused.retry_after), (ErrorKind::Unavailable, Some(1)));
            drop(a);
            let d = l.admit().expect("a place came free");
            let pw = SecretString::from("a long test password".to_owned());
            let hash = b.hash(pw.clone()).await.expect("hashed");
            assert!(c.verify(Some(hash.clone()), pw).await.expect("checked"));
            assert!(!d.verify(Some(hash), SecretString::from("wrong".to_owned())).await.expect("checked"));
            // Every place was given back.
            let _all: Vec<_> = (0..3).map(|_| l.admit().expect("free again")).collect();
        });
    }

    #[test]
    fn one_address_over_its_rate_waits_while_another_does_not() {
        let l = AddressLimiter::new(RateSetting { per_minute: 1, burst: 2 }, "logins");
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        assert!(l.check(a).is_ok() && l.check(a).is_ok());
        assert!(l.check(a).is_err());
        assert!(l.check(b).is_ok());
        assert!(AddressLimiter::new(RateSetting::OFF, "x").check(a).is_ok());
    }
}

/// The limits a server applies, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Argon2 verifications at once (`auth.hash_concurrency`; default: the number of cores).
    pub hash_concurrency: usize,
    /// Logins waiting for one beyond that, before 503 (`auth.hash_queue`).
    pub hash_queue: usize,
    /// Logins (password, second factor, bootstrap) per source address (`auth.login_per_minute`,
    /// `auth.login_burst`).
    pub login_rate: RateSetting,
    /// Failed anonymous attempts audited one by one per minute before they are summarised
    /// (`auth.audit_failures_per_minute`).
    pub audit_failures_per_minute: u32,
    /// The whole request head must arrive within this, and a kept-alive connection is closed
    /// after this long without a new request (`server.header_timeout`).
    pub http_header_timeout: Duration,
    /// A request (its body and its answer) must be done within this (`server.request_timeout`).
    pub http_request_timeout: Duration,
    /// Open HTTP connections at most (`server.max_connections`).
    pub http_max_connections: usize,
    /// Open HTTP connections per address (IPv6: per /64) at most
    /// (`server.max_connections_per_address`).
    pub http_max_connections_per_address: usize,
    /// A gateway client must finish TLS, startup and authentication within this
    /// (`gateway.startup_timeout`).
    pub gateway_startup_timeout: Duration,
    /// Gateway connections that have not authenticated yet, at most
    /// (`gateway.max_unauthenticated`).
    pub gateway_max_unauthenticated: usize,
    /// The same per address (IPv6: per /64) (`gateway.max_unauthenticated_per_address`).
    pub gateway_max_unauthenticated_per_address: usize,
    /// Live gateway sessions per person; 0: no cap (`gateway.max_sessions_per_user`).
    pub gateway_max_sessions_per_user: u32,
    /// New gateway connections per source address (`gateway.connections_per_minute`,
    /// `gateway.connection_burst`).
    pub gateway_rate: RateSetting,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            hash_concurrency: HashLimiter::default_running(),
            hash_queue: 16,
            login_rate: RateSetting { per_minute: 60, burst: 20 },
            audit_failures_per_minute: 60,
            http_header_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(30),
            http_max_connections: 1024,
            http_max_connections_per_address: 64,
            gateway_startup_timeout: Duration::from_secs(10),
            gateway_max_unauthenticated: 1024,
            gateway_max_unauthenticated_per_address: 32,
            gateway_max_sessions_per_user: 0,
            gateway_rate: RateSetting {
                per_minute: 600,
                burst: 100,
            },
        }
    }
}

/// The limits' running state, one per server.
pub struct Limits {
    pub hashing: HashLimiter,
    pub logins: AddressLimiter,
    pub gateway: AddressLimiter,
    pub failures: FailureSummary,
}

impl Limits {
    pub fn new(s: &LimitSettings) -> Self {
        Self {
            hashing: HashLimiter::new(s.hash_concurrency, s.hash_queue),
            logins: AddressLimiter::new(s.login_rate, "login attempts"),
            gateway: AddressLimiter::new(s.gateway_rate, "connections"),
            failures: FailureSummary::new(s.audit_failures_per_minute),
        }
    }
}

pub use jitgate_proxy::per_address::{address_key, AddressSlot, PerAddress};

/// A connection whose writes may not stall longer than a limit: a client that asks and never
/// reads (pipelined requests, a large answer) would otherwise hold its connection, and its
/// place under the cap, for ever, since hyper's header timeout does not run while it writes.
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// A write that made progress disarms the deadline; one still pending arms it, and fails
    /// once it has passed.
    fn guard<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading")))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
