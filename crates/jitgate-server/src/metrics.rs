//! `/metrics` in Prometheus' text format (`prometheus-client`). Every label is bounded: states,
//! directions, results and configured channel names; never a user, a resource instance or an id.
//!
//! Counters and histograms are this instance's since its start; the gauges that describe the
//! store (requests by state, live grants, the outbox) are read from it at each scrape, so every
//! instance reports the same for those.

use crate::core::Core;
use crate::error::ServiceError;
use jitgate_core::actions;
use jitgate_core::audit::AuditEvent;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelResult {
    channel: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelStatus {
    channel: String,
    status: &'static str,
}

pub struct Metrics {
    registry: Registry,
    decision_seconds: Histogram,
    expiry_lag_seconds: Histogram,
    gateway_bytes: Family<Direction, Counter>,
    gateway_sessions_total: Counter,
    statements: Counter,
    deliveries: Family<ChannelResult, Counter>,
    login_failures: Counter,
    locks: Counter,
    requests: Family<State, Gauge>,
    live_grants: Gauge,
    gateway_sessions: Gauge,
    outbox: Family<ChannelStatus, Gauge>,
    /// When the store's gauges were last read: scrapes share one read a second, so that
    /// anonymous scrapes, however many, cost the store at most that.
    store_read: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How often a scrape reads the store's counts.
const STORE_GAUGES_EVERY: Duration = Duration::from_secs(1);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jitgate");
        // From a second to a week: decisions wait for people.
        let decision_seconds = Histogram::new([1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 86400.0, 7.0 * 86400.0]);
        // From a millisecond to a minute: the promise is 100 ms.
        let expiry_lag_seconds = Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 60.0]);
        let m = Self {
            registry: Registry::default(),
            decision_seconds,
            expiry_lag_seconds,
            gateway_bytes: Family::default(),
            gateway_sessions_total: Counter::default(),
            statements: Counter::default(),
            deliveries: Family::default(),
            login_failures: Counter::default(),
            locks: Counter::default(),
            requests: Family::default(),
            live_grants: Gauge::default(),
            gateway_sessions: Gauge::default(),
            outbox: Family::default(),
            store_read: tokio::sync::Mutex::new(None),
        };
        registry.register("requests", "Access requests in the store, by state", m.requests.clone());
        registry.register(
            "request_decision_seconds",
            "Time from a request to its approval or denial",
            m.decision_seconds.clone(),
        );
        registry.register("grants_live", "Grants scheduled or active in the store", m.live_grants.clone());
        registry.register(
            "grant_expiry_lag_seconds",
            "How late the expiry engine ended grants, after their end",
            m.expiry_lag_seconds.clone(),
        );
        registry.register(
            "gateway_sessions",
            "Gateway sessions open on this instance",
            m.gateway_sessions.clone(),
        );
        registry.register(
            "gateway_sessions_ended",
            "Gateway sessions that ended on this instance",
            m.gateway_sessions_total.clone(),
        );
        registry.register(
            "gateway_bytes",
            "Bytes relayed by the gateway, by direction",
            m.gateway_bytes.clone(),
        );
        registry.register("statements_recorded", "Statements recorded in the audit log", m.statements.clone());
        registry.register(
            "notifications_outbox",
            "Notifications in the outbox, by channel and status",
            m.outbox.clone(),
        );
        registry.register(
            "notification_attempts",
            "Attempts to deliver notifications, by channel and result",
            m.deliveries.clone(),
        );
        registry.register("login_failures", "Failed logins and second-factor checks", m.login_failures.clone());
        registry.register(
            "account_locks",
            "Accounts or factors locked after too many failures",
            m.locks.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts what committed audit events say (called with every commit).
    pub fn observe_events(&self, events: &[AuditEvent]) {
        for e in events {
            match e.action.as_str() {
                actions::SESSION_STATEMENTS => {
                    let n = e.details["statements"].as_array().map_or(0, Vec::len);
                    self.statements.inc_by(n as u64);
                }
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
        self.gateway_bytes
            .get_or_create(&Direction { direction: "from_client" })
            .inc_by(from_client);
        self.gateway_bytes
            .get_or_create(&Direction { direction: "to_client" })
            .inc_by(to_client);
    }

    pub fn delivered(&self, channel: &str, ok: bool) {
        self.deliveries
            .get_or_create(&ChannelResult {
                channel: channel.to_owned(),
                result: if ok { "sent" } else { "failed" },
            })
            .inc();
    }
}

impl Core {
    /// The scrape: the store's gauges read now, then everything in the text format.
    pub async fn render_metrics(&self) -> Result<String, ServiceError> {
        let m = &self.metrics;
        {
            let mut last = m.store_read.lock().await;
            if last.is_none_or(|t| t.elapsed() >= STORE_GAUGES_EVERY) {
                self.read_store_gauges().await?;
                *last = Some(tokio::time::Instant::now());
            }
        }
        m.gateway_sessions
            .set(i64::try_from(self.sessions.lock().len()).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).map_err(|e| ServiceError::internal(e.to_string()))?;
        Ok(out)
    }

    async fn read_store_gauges(&self) -> Result<(), ServiceError> {
        let m = &self.metrics;
        let counts = self.store.request_counts().await?;
        for status in ["pending", "approved", "denied", "cancelled", "expired"] {
            let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            m.requests.get_or_create(&State { state: status.to_owned() }).set(n);
        }
        m.live_grants.set(self.store.live_grant_count(self.now()).await?);
        let outbox = self.store.delivery_counts().await?;
        for channel in &self.settings.notifications.channels {
            for status in [jitgate_store::DeliveryStatus::Pending, jitgate_store::DeliveryStatus::Failed] {
                let n = outbox
                    .iter()
                    .find(|(c, s, _)| c == &channel.name && *s == status)
                    .map_or(0, |(_, _, n)| *n);
                m.outbox
                    .get_or_create(&ChannelStatus {
                        channel: channel.name.clone(),
                        status: status.as_str(),
                    })
                    .set(n);
            }
        }
        Ok(())
    }
}
