//! `jitgate-bench`: measures what issue #2 sets targets for, against the real server code.
//!
//! - `flows`: request → approve → grant over the HTTP API, concurrent clients; flows/s and
//!   latency percentiles, on SQLite and on PostgreSQL in one run.
//! - `verify`: `audit verify` of N events in a real store.
//! - `expiry`: N grants ending within one second; lag from each deadline to its expiry event.
//!
//! - `mfa`: login latency over HTTP, password only (the baseline) against password + TOTP in
//!   one call, and the in-process cost of each credential check (Argon2id at OWASP's minimum,
//!   TOTP check, seed decryption, recovery-code hash).
//!
//! - `pages`: the web pages' server time (inbox, grants, home) with a history of requests.
//! - `warnings`: N grants whose ending-soon warnings fall due within one window; lag from each
//!   warning's time to its arrival at a webhook receiver.
//!
//! Run with `scripts/bench.sh`, which builds in release mode and prints the table for
//! docs/benchmarks.md.

mod bare_relay;
mod history;
mod idle;
mod login_flood;
mod mfa;
mod pages;
mod warnings;

use history::{approved_request, checkpoint, History};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use jitgate_api::{BootstrapBody, CreateRequestBody, CreateUserBody};
use jitgate_client::Client;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::grant::{Grant, GrantStatus};
use jitgate_core::request::{AccessRequest, RequestStatus};
use jitgate_core::Timestamp;
use jitgate_server::clock::{Clock, SystemClock};
use jitgate_server::core::GrantEventKind;
use jitgate_server::{Application, Settings};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Flows {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 5000)]
        flows: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Audit witnesses: none, file, http or both (a JSONL file in another directory and
        /// jitgate's HTTP witness on a loopback port, in this process).
        #[arg(long, default_value = "none")]
        witness: String,
        #[command(flatten)]
        history: History,
    },
    Verify {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: i64,
    },
    /// Gateway memory per idle connection (a `jitgate serve` process and a stand-in upstream).
    Idle {
        /// The jitgate binary to run.
        #[arg(long, default_value = "target/release/jitgate")]
        jitgate: String,
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Clients speak TLS to the gateway (as remote clients must).
        #[arg(long)]
        tls: bool,
    },
    /// A relay that only copies bytes: the baseline for what any proxy's extra hop costs.
    BareRelay {
        #[arg(long, default_value = "127.0.0.1:16546")]
        listen: String,
        /// host:port, or the path of a Unix socket.
        #[arg(long)]
        upstream: String,
    },
    Mfa {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 200)]
        logins: usize,
    },
    /// Peak server memory and a legitimate login's latency under a flood of anonymous logins
    /// with random names (a `jitgate serve` process).
    LoginFlood {
        /// The jitgate binary to run.
        #[arg(long, default_value = "target/release/jitgate")]
        jitgate: String,
        #[arg(long, default_value_t = 150)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The baseline: hashing unbounded (512 at once, as tokio's blocking pool allows) and
        /// no rate per address, as before the limits.
        #[arg(long)]
        unbounded: bool,
        /// Each flooding request hangs up after this many milliseconds (0: waits for its
        /// answer).
        #[arg(long, default_value_t = 0)]
        give_up_ms: u64,
    },
    /// The web pages' server time with a history of requests in the store.
    Pages {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        /// Past requests (each with its ended grant), a fifth of them alice's.
        #[arg(long, default_value_t = 10_000)]
        history_requests: usize,
        /// Requests of alice's waiting for bob's review.
        #[arg(long, default_value_t = 100)]
        pending: usize,
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Ending-soon warnings for N grants due within one window, to a webhook on loopback.
    Warnings {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 1000)]
        grants: usize,
        /// The warnings fall due evenly over this window.
        #[arg(long, default_value_t = 60_000)]
        window_ms: i64,
        /// Seconds between the start of the run and the first warning.
        #[arg(long, default_value_t = 10)]
        lead_s: u64,
    },
    Expiry {
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 10_000)]
        grants: usize,
        /// The deadlines are spread evenly over this window.
        #[arg(long, default_value_t = 1000)]
        window_ms: i64,
        /// Seconds between the start of the run and the first deadline (inserting must fit).
        #[arg(long, default_value_t = 20)]
        lead_s: u64,
    },
}

const POLICY: &str = r#"
[groups]
engineers = ["alice"]
db-owners = ["bob"]

[[resources]]
name = "prod-db"
[resources.roles.read]
requesters = ["engineers"]
max_duration = "1h"
pending_ttl = "1h"
reason = { required = true, min_length = 5 }
stages = [{ groups = ["db-owners"], min_approvals = 1 }]
# The core flow without second factors; `jitgate-bench mfa` measures what they cost.
mfa = []
"#;

const PASSWORD: &str = "benchmark password";

async fn settings(backend: &str, dir: &std::path::Path) -> Result<Settings> {
    let mut s = Settings::from_toml("bench.toml", POLICY)?;
    s.http = "127.0.0.1:0".parse()?;
    s.gateway = Some("127.0.0.1:0".parse()?);
    s.data_dir = dir.join("data");
    // One client address logs in many times here; the rate per address is not what is measured.
    s.limits.login_rate = jitgate_server::limits::RateSetting::OFF;
    if backend == "postgres" {
        s.store_url = Some(jitgate_store::testing::fresh_pg_database().await?);
        s.signing_key_file = Some(dir.join("pg.key"));
    } else if backend != "sqlite" {
        anyhow::bail!("backend is sqlite or postgres");
    }
    Ok(s)
}

/// The request every benchmark flow makes.
fn request_body(resource: &str) -> CreateRequestBody {
    CreateRequestBody {
        resource: resource.into(),
        role: "read".into(),
        reason: "benchmark flow".into(),
        ticket: None,
        duration: Some("30m".into()),
        start_at: None,
        extends: None,
        mfa: None,
        break_glass: false,
    }
}

/// A server in this process with an admin and the users alice and bob.
struct Bench {
    anon: Client,
    admin: Client,
    stop: jitgate_server::StopHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Bench {
    async fn start(backend: &str, dir: &std::path::Path, clock: Option<jitgate_server::clock::SharedClock>) -> Result<Self> {
        Self::start_with(backend, dir, clock, |_| {}).await
    }

    async fn start_with(
        backend: &str,
        dir: &std::path::Path,
        clock: Option<jitgate_server::clock::SharedClock>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Result<Self> {
        Self::start_after(backend, dir, clock, tweak, History::default())
            .await
            .map(|(b, _)| b)
    }

    /// Starts the server on a store that `history` filled first; returns the fill time too.
    async fn start_after(
        backend: &str,
        dir: &std::path::Path,
        clock: Option<jitgate_server::clock::SharedClock>,
        tweak: impl FnOnce(&mut Settings),
        history: History,
    ) -> Result<(Self, Duration)> {
        let mut s = settings(backend, dir).await?;
        tweak(&mut s);
        let filled = history.fill(&s).await?;
        let app = Application::build(s, clock, None).await?;
        // With the pages, as `jitgate serve` runs.
        let app = {
            let pages = jitgate_web::router(app.core());
            app.with_pages(pages)
        };
        let url = format!("http://{}", app.addr());
        let token = app.setup_token().context("fresh store")?.expose_secret().to_owned();
        let stop = app.stop_handle();
        let server = tokio::spawn(app.run_until_stopped());
        let anon = Client::new(&url, None);
        let admin = bootstrap_with_users(&anon, token).await?;
        Ok((Self { anon, admin, stop, server }, filled))
    }
}

/// Makes the first admin with the setup token, then alice and bob (password [`PASSWORD`]);
/// returns the admin's client.
async fn bootstrap_with_users(anon: &Client, setup_token: String) -> Result<Client> {
    let admin = anon.with_token(
        &anon
            .bootstrap(&BootstrapBody {
                setup_token: setup_token.into(),
                username: "admin".parse().map_err(anyhow::Error::msg)?,
                password: PASSWORD.into(),
            })
            .await?
            .token,
    );
    for u in ["alice", "bob"] {
        admin
            .create_user(&CreateUserBody {
                username: u.parse().map_err(anyhow::Error::msg)?,
                display_name: String::new(),
                password: Some(PASSWORD.into()),
                admin: false,
            })
            .await?;
    }
    Ok(admin)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn flows(backend: &str, total: usize, concurrency: usize, witness: &str, history: History) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let elsewhere = tempfile::tempdir()?;
    let mut witnesses = Vec::new();
    if matches!(witness, "file" | "both") {
        witnesses.push(jitgate_server::config::WitnessTarget::File(elsewhere.path().join("witness.jsonl")));
    }
    if matches!(witness, "http" | "both") {
        // The witness needs the audit key before the server starts: make it first.
        let key_file = dir.path().join("witness-bench.key");
        let key = jitgate_server::audit_log::load_or_create_signing_key(&key_file).map_err(anyhow::Error::msg)?;
        let w = jitgate_server::witness::server::HttpWitness::open(elsewhere.path().join("http-witness.jsonl"), key.verifying_key())
            .map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        witnesses.push(jitgate_server::config::WitnessTarget::Http(format!(
            "http://{}/",
            listener.local_addr()?
        )));
        tokio::spawn(w.serve(listener));
    } else if !matches!(witness, "none" | "file") {
        anyhow::bail!("--witness is none, file, http or both");
    }
    let key_file = (witness != "none" && witness != "file").then(|| dir.path().join("witness-bench.key"));
    let (Bench { anon, admin, stop, server }, filled) = Bench::start_after(
        backend,
        dir.path(),
        None,
        |s| {
            s.witnesses = witnesses;
            if let Some(k) = key_file {
                s.signing_key_file = Some(k);
            }
        },
        history,
    )
    .await?;
    if !history.is_empty() {
        eprintln!("history filled in {:.1} s: {}", filled.as_secs_f64(), history.label());
    }
    let alice = anon.with_token(&anon.login("alice", PASSWORD).await?.token);
    let bob = anon.with_token(&anon.login("bob", PASSWORD).await?.token);
    let body = CreateRequestBody {
        resource: "prod-db".into(),
        role: "read".into(),
        reason: "benchmark flow".into(),
        ticket: None,
        duration: Some("30m".into()),
        start_at: None,
        extends: None,
        mfa: None,
        break_glass: false,
    };

    // Warm up connections and caches.
    for _ in 0..50 {
        let r = alice.create_request(&body).await?;
        bob.approve(&r.id, "").await?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (alice, bob, body, next) = (alice.clone(), bob.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let t = Instant::now();
                let r = alice.create_request(&body).await?;
                let d = bob.approve(&r.id, "").await?;
                anyhow::ensure!(
                    d.grant.is_some_and(|g| g.status == GrantStatus::Active),
                    "flow without an active grant"
                );
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let verify = admin.audit_verify().await?;
    let status = admin.audit_status().await?;
    let delivered: Vec<String> = status
        .witnesses
        .iter()
        .map(|w| format!("{}/{}", w.delivered_seq.unwrap_or(0), status.last_checkpoint_seq.unwrap_or(0)))
        .collect();
    println!(
        "flows backend={backend} witness={witness} delivered={} {} flows={} concurrency={concurrency} seconds={secs:.2} flows_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} audit_events={} audit_ok={}",
        delivered.join(","),
        history.label(),
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        verify.report.as_ref().map_or(0, |r| r.events),
        verify.ok
    );
    stop.stop();
    server.await??;
    Ok(())
}

async fn verify(backend: &str, events: i64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s = settings(backend, dir.path()).await?;
    std::fs::create_dir_all(&s.data_dir)?;
    let store = jitgate_store::open(&s.store_url()).await?;
    let key = jitgate_server::audit_log::load_or_create_signing_key(&s.signing_key_path()).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let batch = 20_000;
    let mut written = 0;
    while written < events {
        let mut tx = store.write().await?;
        for i in 0..batch.min(events - written) {
            let details =
                serde_json::json!({"request": format!("req_{:016}", written + i), "reason": "benchmark event", "duration_secs": 1800});
            tx.append_audit(
                NewEvent::new(
                    "alice",
                    jitgate_core::actions::REQUEST_CREATE,
                    format!("req_{:016}", written + i),
                    Outcome::Success,
                    details,
                ),
                Timestamp::from_millis(1_790_000_000_000 + written + i),
            )
            .await?;
        }
        written += batch.min(events - written);
        if written % 100_000 == 0 || written == events {
            checkpoint(&mut *tx, &key, 1_790_000_000_000).await?;
        }
        tx.commit().await?;
    }
    let fill = t.elapsed();
    let t = Instant::now();
    let outcome = jitgate_server::audit_log::verify_store(store.clone(), vec![key.verifying_key()], None).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "verify backend={backend} events={events} fill_s={:.1} verify_s={secs:.2} events_per_s={:.0} ok={} checkpoints={}",
        fill.as_secs_f64(),
        events as f64 / secs,
        outcome.ok,
        outcome.report.map_or(0, |r| r.checkpoints)
    );
    Ok(())
}

async fn expiry(backend: &str, n: usize, window_ms: i64, lead_s: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s = settings(backend, dir.path()).await?;
    let app = Application::build(s, None, None).await?;
    let core = app.core();
    let clock = SystemClock;
    // Grants end between `start` and `start + window`; inserting them takes a few seconds.
    let start = clock.now().saturating_add(Duration::from_secs(lead_s));
    let mut inserted = 0;
    while inserted < n {
        let mut tx = core.store.write().await?;
        for i in inserted..(inserted + 2000).min(n) {
            let ends = Timestamp::from_millis(start.as_millis() + (i as i64 * window_ms) / n as i64);
            let req = approved_request(format!("req_{i:016}"), "alice", "benchmark", 60, clock.now())?;
            tx.insert_request(&req).await?;
            let mut g = Grant::from_request(format!("grt_{i:016}"), &req, None, clock.now());
            g.ends_at = ends;
            tx.insert_grant(&g).await?;
        }
        tx.commit().await?;
        inserted = (inserted + 2000).min(n);
    }
    let mut events = core.grant_events.subscribe();
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());
    anyhow::ensure!(clock.now() < start, "inserting took longer than the lead time; raise --lead-s");
    let mut lags = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lags.len() < n && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(ev)) if ev.kind == GrantEventKind::Expired => {
                let lag = clock.now().as_millis() - ev.grant.ends_at.as_millis();
                lags.push(lag as f64);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => anyhow::bail!("event stream: {e}"),
            Err(_) => break,
        }
    }
    lags.sort_by(f64::total_cmp);
    println!(
        "expiry backend={backend} grants={n} window_ms={window_ms} received={} p50_ms={:.0} p99_ms={:.0} max_ms={:.0}",
        lags.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    stop.stop();
    server.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Flows {
            backend,
            flows: n,
            concurrency,
            witness,
            history,
        } => flows(&backend, n, concurrency, &witness, history).await,
        Cmd::Verify { backend, events } => verify(&backend, events).await,
        Cmd::Pages {
            backend,
            history_requests,
            pending,
            samples,
        } => pages::pages(&backend, history_requests, pending, samples).await,
        Cmd::Mfa { backend, logins } => mfa::mfa(&backend, logins).await,
        Cmd::Warnings {
            backend,
            grants,
            window_ms,
            lead_s,
        } => warnings::warnings(&backend, grants, window_ms, lead_s).await,
        Cmd::Idle { jitgate, connections, tls } => idle::idle(&jitgate, connections, tls).await,
        Cmd::BareRelay { listen, upstream } => bare_relay::run(&listen, &upstream).await,
        Cmd::LoginFlood {
            jitgate,
            concurrency,
            seconds,
            unbounded,
            give_up_ms,
        } => {
            let (label, extra) = if unbounded {
                ("unbounded", "hash_concurrency = 512\nhash_queue = 100000\nlogin_per_minute = 0")
            } else {
                ("defaults", "")
            };
            login_flood::run(&jitgate, concurrency, seconds, give_up_ms, label, extra).await
        }
        Cmd::Expiry {
            backend,
            grants,
            window_ms,
            lead_s,
        } => expiry(&backend, grants, window_ms, lead_s).await,
    }
}
