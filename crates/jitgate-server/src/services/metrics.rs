//! The scrape of `/metrics`: the store's gauges read (at most once a second), then everything
//! in the text format ([`crate::metrics`]).

use crate::core::Core;
use crate::error::ServiceError;
use crate::metrics::Metrics;

impl Core {
    /// The scrape: the store's gauges read now, then everything in the text format.
    pub async fn render_metrics(&self) -> Result<String, ServiceError> {
        let m = &self.metrics;
        {
            let mut last = m.store_turn().await;
            if Metrics::store_due(&last) {
                self.read_store_gauges().await?;
                *last = Some(tokio::time::Instant::now());
            }
        }
        m.set_gateway_sessions(i64::try_from(self.sessions.lock().len()).unwrap_or(i64::MAX));
        m.encode().map_err(|e| ServiceError::internal(e.to_string()))
    }

    async fn read_store_gauges(&self) -> Result<(), ServiceError> {
        let m = &self.metrics;
        let counts = self.store.request_counts().await?;
        for status in ["pending", "approved", "denied", "cancelled", "expired"] {
            let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            m.set_requests(status, n);
        }
        m.set_live_grants(self.store.live_grant_count(self.now()).await?);
        let outbox = self.store.delivery_counts().await?;
        for channel in &self.settings.notifications.channels {
            for status in [jitgate_store::DeliveryStatus::Pending, jitgate_store::DeliveryStatus::Failed] {
                let n = outbox
                    .iter()
                    .find(|(c, s, _)| c == &channel.name && *s == status)
                    .map_or(0, |(_, _, n)| *n);
                m.set_outbox(&channel.name, status.as_str(), n);
            }
        }
        Ok(())
    }
}
