//! `/metrics` in Prometheus' text format (the `prometheus` crate; `promtool check metrics`
//! finds nothing to say about it). Every label is bounded: states,
//! directions, results and configured channel names; never a user, a resource instance or an id.
//!
//! Counters and histograms are this instance's since its start; the gauges that describe the
//! store (requests by state, live grants, the outbox) are read from it at each scrape, so every
//! instance reports the same for those.

use jitgate_core::actions;
use jitgate_core::audit::AuditEvent;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    decision_seconds: Histogram,
    expiry_lag_seconds: Histogram,
    gateway_bytes: IntCounterVec,
    gateway_sessions_total: IntCounter,
    statements: IntCounter,
    deliveries: IntCounterVec,
    login_failures: IntCounter,
    locks: IntCounter,
    requests: IntGaugeVec,
    live_grants: IntGauge,
    gateway_sessions: IntGauge,
    outbox: IntGaugeVec,
    /// When the store's gauges were last read: scrapes share one read a second, so that
    /// anonymous scrapes, however many, cost the store at most that.
    store_read: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often a scrape reads the store's counts.
const STORE_GAUGES_EVERY: Duration = Duration::from_secs(1);

/// Registers `metric` in `registry`; the names are constants, so a clash is a bug caught by
/// every test that starts a server.
fn registered<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.unwrap_or_else(|e| unreachable!("a metric's definition is constant: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| unreachable!("metric names are distinct: {e}"));
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new_custom(Some("jitgate".into()), None).unwrap_or_else(|e| unreachable!("a constant prefix: {e}"));
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets));
        Self {
            // From a second to a week: decisions wait for people.
            decision_seconds: registered(
                &r,
                histogram(
                    "request_decision_seconds",
                    "Time from a request to its approval or denial",
                    vec![1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 86400.0, 7.0 * 86400.0],
                ),
            ),
            // From a millisecond to a minute: the promise is 100 ms.
            expiry_lag_seconds: registered(
                &r,
                histogram(
                    "grant_expiry_lag_seconds",
                    "How late the expiry engine ended grants, after their end",
                    vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 60.0],
                ),
            ),
            gateway_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("gateway_bytes_total", "Bytes relayed by the gateway, by direction"),
                    &["direction"],
                ),
            ),
            gateway_sessions_total: registered(
                &r,
                IntCounter::new("gateway_sessions_ended_total", "Gateway sessions that ended on this instance"),
            ),
            statements: registered(
                &r,
                IntCounter::new("statements_recorded_total", "Statements recorded in the audit log"),
            ),
            deliveries: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "notification_attempts_total",
                        "Attempts to deliver notifications, by channel and result",
                    ),
                    &["channel", "result"],
                ),
            ),
            login_failures: registered(
                &r,
                IntCounter::new("login_failures_total", "Failed logins and second-factor checks"),
            ),
            locks: registered(
                &r,
                IntCounter::new("account_locks_total", "Accounts or factors locked after too many failures"),
            ),
            requests: registered(
                &r,
                IntGaugeVec::new(Opts::new("requests", "Access requests in the store, by state"), &["state"]),
            ),
            live_grants: registered(&r, IntGauge::new("grants_live", "Grants scheduled or active in the store")),
            gateway_sessions: registered(&r, IntGauge::new("gateway_sessions", "Gateway sessions open on this instance")),
            outbox: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new("notifications_outbox", "Notifications in the outbox, by channel and status"),
                    &["channel", "status"],
                ),
            ),
            store_read: tokio::sync::Mutex::new(None),
            registry: r,
        }
    }
}

impl Metrics {
    /// Counts statements once their events are committed. The statement writer calls this:
    /// the committed events it hands over carry no details to count from.
    pub fn statements_recorded(&self, n: u64) {
        self.statements.inc_by(n);
    }

    /// Counts what committed audit events say (called with every commit).
    pub fn observe_events(&self, events: &[AuditEvent]) {
        for e in events {
            match e.action.as_str() {
                actions::AUTH_LOGIN | actions::MFA_VERIFY if e.outcome != "success" => {
                    self.login_failures.inc();
                }
                actions::AUTH_FAILURES_SUMMARISED => {
                    self.login_failures.inc_by(e.details["count"].as_u64().unwrap_or(1));
                }
                actions::AUTH_LOCKED => {
                    self.locks.inc();
                }
                _ => {}
            }
        }
    }

    pub fn decided(&self, waited: Duration) {
        self.decision_seconds.observe(waited.as_secs_f64());
    }

    pub fn expired_late(&self, lag: Duration) {
        self.expiry_lag_seconds.observe(lag.as_secs_f64());
    }

    pub fn session_ended(&self, from_client: u64, to_client: u64) {
        self.gateway_sessions_total.inc();
        self.gateway_bytes.with_label_values(&["from_client"]).inc_by(from_client);
        self.gateway_bytes.with_label_values(&["to_client"]).inc_by(to_client);
    }

    pub fn delivered(&self, channel: &str, ok: bool) {
        self.deliveries
            .with_label_values(&[channel, if ok { "sent" } else { "failed" }])
            .inc();
    }
}

impl Metrics {
    /// Whether the store's gauges are due for a read (at most once a second), holding the
    /// turn: scrapes that come meanwhile wait for this one's read rather than make their own.
    pub(crate) async fn store_turn(&self) -> tokio::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.store_read.lock().await
    }

    pub(crate) fn store_due(last: &Option<tokio::time::Instant>) -> bool {
        last.is_none_or(|t| t.elapsed() >= STORE_GAUGES_EVERY)
    }

    pub(crate) fn set_requests(&self, state: &str, n: i64) {
        self.requests.with_label_values(&[state]).set(n);
    }

    pub(crate) fn set_live_grants(&self, n: i64) {
        self.live_grants.set(n);
    }

    pub(crate) fn set_gateway_sessions(&self, n: i64) {
        self.gateway_sessions.set(n);
    }

    pub(crate) fn set_outbox(&self, channel: &str, status: &str, n: i64) {
        self.outbox.with_label_values(&[channel, status]).set(n);
    }

    /// Everything in the text format.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
