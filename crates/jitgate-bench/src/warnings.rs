//! `warnings`: N grants whose ending-soon warnings fall due within one window; the lag from
//! each warning's scheduled time to the moment a webhook receiver on loopback has it (signed,
//! through the outbox), driven by the expiry engine's deadlines.

use crate::history::approved_request;
use crate::{percentile, settings};
use anyhow::Result;
use jitgate_core::grant::Grant;
use jitgate_core::Timestamp;
use jitgate_server::clock::{Clock, SystemClock};
use jitgate_server::Application;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "benchmark-webhook-secret";

pub(crate) async fn warnings(backend: &str, n: usize, window_ms: i64, lead_s: u64) -> Result<()> {
    // The receiver: when each warning arrived, and for which end.
    let arrivals: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let seen = arrivals.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let at = SystemClock.now().as_millis();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if v["event"] == "grant.ending_soon" {
                        let ends = v["grant"]["ends_at"].as_str().and_then(|t| Timestamp::parse_rfc3339(t).ok());
                        if let Some(ends) = ends {
                            seen.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push((at, ends.as_millis()));
                        }
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let lead = Duration::from_secs(600);
    let dir = tempfile::tempdir()?;
    let mut s = settings(backend, dir.path()).await?;
    let notifications = jitgate_server::Settings::from_toml(
        "bench.toml",
        &format!(
            "[notifications]\nending_soon = \"10m\"\n[[notifications.channels]]\nname = \"hooks\"\nkind = \"webhook\"\nurl = \"{hook}\"\nevents = [\"grant.ending_soon\"]\n"
        ),
    )?;
    s.notifications = notifications.notifications;
    let app = Application::build(s, None, None).await?;
    let core = app.core();
    let clock = SystemClock;
    {
        let sealed = core
            .secrets
            .seal(SECRET.as_bytes(), &jitgate_server::notify::channel_secret_context("hooks"));
        let mut tx = core.store.write().await?;
        tx.put_channel_secret(&jitgate_store::ChannelSecretRecord {
            channel: "hooks".into(),
            key_version: sealed.key_version,
            sealed: sealed.data,
            updated_at: clock.now(),
            updated_by: "admin".parse().map_err(anyhow::Error::msg)?,
        })
        .await?;
        tx.commit().await?;
    }
    // Warnings fall due between `start` and `start + window` (each grant ends ten minutes after).
    let start = clock.now().saturating_add(Duration::from_secs(lead_s));
    let mut inserted = 0;
    while inserted < n {
        let mut tx = core.store.write().await?;
        for i in inserted..(inserted + 1000).min(n) {
            let warn = Timestamp::from_millis(start.as_millis() + (i as i64 * window_ms) / n as i64);
            // One grant per person: a person's grants that overlap would carry each other on,
            // and their holder is not warned of an end that is not one.
            let req = approved_request(format!("req_{i:016}"), &format!("user{i:05}"), "benchmark", 3600, clock.now())?;
            tx.insert_request(&req).await?;
            let mut g = Grant::from_request(format!("grt_{i:016}"), &req, None, clock.now());
            g.ends_at = warn.saturating_add(lead);
            tx.insert_grant_warned(&g, Some(warn)).await?;
        }
        tx.commit().await?;
        inserted = (inserted + 1000).min(n);
    }
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());
    anyhow::ensure!(clock.now() < start, "inserting took longer than the lead time; raise --lead-s");
    let give_up = Instant::now()
        + Duration::from_secs(lead_s)
        + Duration::from_millis(u64::try_from(window_ms).unwrap_or(0))
        + Duration::from_secs(60);
    while arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() < n && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lead_ms = i64::try_from(lead.as_millis())?;
    let mut lags: Vec<f64> = arrivals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(at, ends)| (at - (ends - lead_ms)) as f64)
        .collect();
    lags.sort_by(f64::total_cmp);
    println!(
        "warnings backend={backend} grants={n} window_ms={window_ms} received={} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} within_1s={:.1}%",
        lags.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(f64::NAN),
        100.0 * lags.iter().filter(|l| **l <= 1000.0).count() as f64 / n as f64
    );
    stop.stop();
    server.await??;
    Ok(())
}
