//! `jitgate-bench login-flood`: what a flood of anonymous logins costs the server. A `jitgate
//! serve` process (the release binary) takes N concurrent logins with random names, each
//! worker from its own loopback address (127.0.0.2 …) so that the rate per address does not
//! simply stop them all, for a fixed time; meanwhile a legitimate user logs in from 127.0.0.1
//! every 200 ms. Reported: the server's peak resident memory (VmHWM), the answers the flood
//! got, and the legitimate login's latency (to a session, honouring `Retry-After` as the CLI
//! would).

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field}"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One run: `concurrency` flooding workers for `seconds`, with `extra` lines in the config's
/// `[auth]` section (the limits under test).
/// `give_up_ms`: each flooding request is dropped after this long (0: never), as a flood of
/// clients that hang up before their answer would.
pub async fn run(jitgate: &str, concurrency: usize, seconds: u64, give_up_ms: u64, label: &str, extra_auth: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let http = free_port()?;
    let config = dir.path().join("jitgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp = \"127.0.0.1:{http}\"\ndata_dir = \"{}\"\nmax_connections = 4096\n[gateway]\nenabled = false\n[auth]\n{extra_auth}\n",
            dir.path().join("data").display()
        ),
    )?;
    let (mut server, pid, token) = crate::idle::spawn_server(jitgate, &config).await?;
    let base = format!("http://127.0.0.1:{http}");
    let anon = jitgate_client::Client::new(&base, None);
    crate::bootstrap_with_users(&anon, token).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = status_kib(pid, "VmRSS:")?;

    let url = format!("{base}/api/v1/login");
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let ip = std::net::IpAddr::from([127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8]);
        let mut client = reqwest::Client::builder().local_address(ip);
        if give_up_ms > 0 {
            client = client.timeout(Duration::from_millis(give_up_ms));
        }
        let client = client.build()?;
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut counts = [0u64; 4]; // 401, 429, 503, other
            let mut n = 0u64;
            while Instant::now() < stop_at {
                n += 1;
                let body = serde_json::json!({"username": format!("flood{i}x{n}"), "password": "not the password at all"});
                let status = match client.post(&url).json(&body).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => {
                        // Gave up (or refused at the door): a moment before the next.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        0
                    }
                };
                let slot = match status {
                    401 => 0,
                    429 => 1,
                    503 => 2,
                    _ => 3,
                };
                counts[slot] += 1;
                if status == 429 || status == 503 {
                    // A flood that backs off a little, as most scripts do; the server's
                    // answer is what matters, not how hard one worker spins.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            counts
        }));
    }
    // The legitimate user, every 200 ms, from the address nobody floods from.
    let mut legit = Vec::new();
    let mut legit_failed = 0;
    let legit_client = reqwest::Client::new();
    let mut peak_rss = rss_before;
    while Instant::now() < stop_at {
        let started = Instant::now();
        let mut ok = false;
        for _ in 0..20 {
            let r = legit_client
                .post(&url)
                .json(&serde_json::json!({"username": "bob", "password": crate::PASSWORD}))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_millis(wait.min(2) * 1000 / 4)).await;
                }
                _ => break,
            }
        }
        if ok {
            legit.push(started.elapsed());
        } else {
            legit_failed += 1;
        }
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:")?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut totals = [0u64; 4];
    for w in workers {
        for (t, c) in totals.iter_mut().zip(w.await?) {
            *t += c;
        }
    }
    let hwm = status_kib(pid, "VmHWM:")?;
    legit.sort();
    println!(
        "login-flood {label} concurrency={concurrency} seconds={seconds} give_up_ms={give_up_ms} server_rss_mib: before={:.0} peak_sampled={:.0} hwm={:.0} \
         flood_answers: 401={} 429={} 503={} other={} legit_logins: ok={} failed={legit_failed} p50_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        rss_before as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        legit.len(),
        percentile(&legit, 0.5).as_secs_f64() * 1000.0,
        percentile(&legit, 0.99).as_secs_f64() * 1000.0,
        legit.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    server.kill().await?;
    Ok(())
}
