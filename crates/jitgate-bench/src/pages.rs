//! `pages`: the server time of the web pages people keep open (the approver's inbox, the
//! requester's grants and home page) with a store that holds a history of requests (issue #14:
//! 10,000 requests, p99 under 20 ms). Sequential GETs over loopback with a session cookie, so
//! each figure is the page's own time plus one local HTTP round trip.

use crate::*;

pub(crate) async fn pages(backend: &str, history_requests: usize, pending: usize, samples: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let history = History::of(history_requests, history_requests / 5);
    let (b, filled) = Bench::start_after(backend, dir.path(), None, |_| {}, history).await?;
    let alice = b.anon.with_token(&b.anon.login("alice", PASSWORD).await?.token);
    for _ in 0..pending {
        alice.create_request(&request_body("prod-db")).await?;
    }
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = |token: &str| format!("{}={token}", jitgate_web::SESSION_COOKIE);
    let alice_cookie = cookie(b.anon.login("alice", PASSWORD).await?.token.expose());
    let bob_cookie = cookie(b.anon.login("bob", PASSWORD).await?.token.expose());
    println!(
        "pages backend={backend} history_requests={history_requests} (alice's: {}) pending={pending} samples={samples} fill={:.1}s",
        history_requests / 5,
        filled.as_secs_f64()
    );
    let mut summary = format!("pages backend={backend}");
    for (page, who, cookie) in [
        ("/inbox", "bob", &bob_cookie),
        ("/grants", "alice", &alice_cookie),
        ("/", "alice", &alice_cookie),
        ("/requests", "alice", &alice_cookie),
    ] {
        let url = format!("{}{page}", b.anon.base());
        let mut times = Vec::with_capacity(samples);
        let mut bytes = 0;
        for i in 0..samples + 20 {
            let started = Instant::now();
            let r = http.get(&url).header("cookie", cookie.as_str()).send().await?;
            anyhow::ensure!(r.status().is_success(), "{page}: {}", r.status());
            let body = r.bytes().await?;
            // The first few warm the caches and connections.
            if i >= 20 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                bytes = body.len();
            }
        }
        times.sort_by(f64::total_cmp);
        let key = match page {
            "/" => "home",
            other => other.trim_start_matches('/'),
        };
        summary.push_str(&format!(
            " {key}_p50_ms={:.2} {key}_p99_ms={:.2}",
            percentile(&times, 50.0),
            percentile(&times, 99.0)
        ));
        println!(
            "  {page:<10} as {who:<5} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} KiB)",
            percentile(&times, 50.0),
            percentile(&times, 99.0),
            times.last().copied().unwrap_or(f64::NAN),
            bytes / 1024
        );
    }
    println!("{summary}");
    b.stop.stop();
    b.server.await??;
    Ok(())
}
