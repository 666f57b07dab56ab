//! `jitgate audit …`: verify (in `audit_verify`), export (whole or from a sequence number on),
//! tail, status, public-key, rotate-key, and the HTTP witness itself.

use super::audit_verify::{self, load_config, now, VerifyArgs};
use super::context::Ctx;
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use jitgate_api::{ExportLine, EXPORT_FORMAT};
use jitgate_core::audit::{ChainHead, Checkpoint};
use jitgate_server::audit_log::parse_public_key;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum AuditCommand {
    /// Check the hash chain and the signed, chained checkpoints, against a witness when given.
    /// Exits 1 naming the first bad event or the missing checkpoint.
    Verify(VerifyArgs),
    /// Write the log with its checkpoints as JSON Lines.
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only the events after this sequence number (an incremental export; pick the last
        /// checkpoint of the previous export so the start is signed).
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Show the latest events; --follow keeps printing new ones.
    Tail {
        /// How many of the latest events.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep printing new events as they come (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// The log's head, its newest checkpoint and each witness's delivery; exits 1 when a
    /// witness is failing.
    Status,
    /// Print the public key that signs checkpoints, to keep outside jitgate.
    PublicKey,
    /// Replace the signing key, the server stopped: a checkpoint signed by the old key
    /// announces the new one; the old key file is kept as KEYFILE.retired-ID.
    RotateKey {
        /// The server's configuration file (its store and audit.signing_key_file).
        #[arg(long, env = "JITGATE_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (SQLite and the key file in it).
        #[arg(long, env = "JITGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run an HTTP witness: takes checkpoints signed by the audit key (POST /), keeps them in
    /// an append-only, fsynced file, and serves them (GET /export). Run it on another machine.
    Witness {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: std::net::SocketAddr,
        /// The file that keeps the checkpoints.
        #[arg(long)]
        file: PathBuf,
        /// The audit public key it accepts (hex, or a file holding it).
        #[arg(long)]
        public_key: String,
    },
}

pub(super) async fn run(ctx: &Ctx, cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => audit_verify::verify(ctx, args).await,
        AuditCommand::Export { output, since } => export(ctx, output, since).await,
        AuditCommand::Tail { lines, follow } => {
            let c = ctx.client()?;
            let head = c.audit_events(0, 1).await?.head_seq;
            let mut after = (head - lines.max(0)).max(0);
            loop {
                let page = c.audit_events(after, 1000).await?;
                if let Some(last) = page.events.last() {
                    after = last.seq;
                    if ctx.json {
                        for e in &page.events {
                            println!("{}", serde_json::to_string(e)?);
                        }
                    } else {
                        println!("{}", output::events(&page.events));
                    }
                }
                if !follow {
                    return Ok(ExitCode::SUCCESS);
                }
                if page.events.len() < 1000 {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        AuditCommand::Status => {
            let st = ctx.client()?.audit_status().await?;
            ctx.print(&st, |st| {
                let mut s = format!(
                    "head #{}; last checkpoint {}; checkpoints every {} ms; key {}",
                    st.head_seq,
                    match (st.last_checkpoint_seq, st.last_checkpoint_at) {
                        (Some(seq), Some(at)) => format!("#{seq} at {}", output::when(at)),
                        _ => "none".into(),
                    },
                    st.checkpoint_interval_ms,
                    st.key_id
                );
                if st.witnesses.is_empty() {
                    s.push_str("\nno witnesses configured: the checkpoints live only in the database");
                }
                for w in &st.witnesses {
                    let state = match &w.failing_since {
                        Some(since) => format!(
                            "FAILING since {}: {}",
                            output::when(*since),
                            w.last_error.clone().unwrap_or_default()
                        ),
                        None => "ok".into(),
                    };
                    s.push_str(&format!(
                        "\nwitness {}: {state}; has up to #{}; {} checkpoint(s) behind",
                        w.witness,
                        w.delivered_seq.map_or("?".into(), |d| d.to_string()),
                        w.behind
                    ));
                }
                s
            })?;
            Ok(if st.witnesses.iter().any(|w| w.failing()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        AuditCommand::PublicKey => {
            let k = ctx.client()?.audit_key().await?;
            ctx.print(&k, |k| format!("{}  (key id {})", k.public_key, k.key_id))?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::RotateKey { config, data_dir } => {
            let mut s = config.as_deref().map(load_config).transpose()?.unwrap_or_default();
            if let Some(d) = data_dir {
                s.data_dir = d;
            }
            let store = jitgate_store::open(&s.store_url())
                .await
                .map_err(|e| anyhow!("{e} (stop the server first: the key changes while nothing signs)"))?;
            let r = jitgate_server::audit_log::rotate_signing_key(store, &s.signing_key_path(), now())
                .await
                .map_err(|e| anyhow!(e))?;
            ctx.print(&r, |r| {
                format!(
                    "audit signing key rotated: {} -> {} (announced in the checkpoint at event {}).\nnew public key: {}\n\
                     Keep the old public key pinned for verification (it vouches for the new one); give every \
                     instance the new key file before starting them.",
                    r.old_key_id, r.new_key_id, r.checkpoint_seq, r.new_public_key
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Witness { listen, file, public_key } => {
            let key = parse_public_key(&public_key).map_err(|e| anyhow!("--public-key: {e}"))?;
            let w = jitgate_server::witness::server::HttpWitness::open(file.clone(), key).map_err(|e| anyhow!(e))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!(
                "jitgate audit witness: listening on http://{}, keeping {}",
                listener.local_addr()?,
                file.display()
            );
            w.serve(listener).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn export(ctx: &Ctx, output: Option<PathBuf>, since: i64) -> Result<ExitCode> {
    let c = ctx.client()?;
    // Taken before reading: every checkpoint a witness took until then covers events read here.
    let exported_at = now();
    let key = c.audit_key().await?;
    // The server's signed word on where the log stood: the file ends exactly there, so a cut
    // tail or a moved export time shows against it.
    let head = c.audit_signed_head().await?;
    let since = since.max(0);
    if since > head.seq {
        bail!("there is no event {since}: the log ends at {}", head.seq);
    }
    let mut events = c.all_audit_events(since).await?;
    events.retain(|e| e.seq <= head.seq);
    let last = events.last().map_or(since, |e| e.seq);
    // Checkpoints written after the events were read would say events were cut off.
    let all: Vec<Checkpoint> = c
        .audit_checkpoints()
        .await?
        .checkpoints
        .into_iter()
        .filter(|cp| cp.seq <= last)
        .collect();
    let (before, checkpoints): (Vec<Checkpoint>, Vec<Checkpoint>) = all.into_iter().partition(|cp| cp.seq <= since);
    let start = if since > 0 {
        let page = c.audit_events(since - 1, 1).await?;
        let e = page
            .events
            .into_iter()
            .find(|e| e.seq == since)
            .ok_or_else(|| anyhow!("there is no event {since}"))?;
        Some(ChainHead { seq: e.seq, hash: e.hash })
    } else {
        None
    };
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let header = ExportLine::Header {
        format: EXPORT_FORMAT.into(),
        key_id: key.key_id.clone(),
        public_key: key.public_key.clone(),
        exported_at,
        anchor: start.as_ref().and_then(|_| before.last().cloned()),
        since: start,
        head: Some(head),
    };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    let n = events.len();
    for e in events {
        writeln!(out, "{}", serde_json::to_string(&ExportLine::Event(e))?)?;
    }
    for cp in &checkpoints {
        writeln!(out, "{}", serde_json::to_string(&ExportLine::Checkpoint(cp.clone()))?)?;
    }
    out.flush()?;
    if let Some(p) = output {
        let summary = serde_json::json!({"file": p.display().to_string(), "events": n, "checkpoints": checkpoints.len(), "key_id": key.key_id, "since": since, "last_checkpoint": checkpoints.last().map(|c| c.seq)});
        ctx.print(&summary, |_| {
            format!(
                "exported {n} events and {} checkpoints to {} (checkpoint key {})",
                checkpoints.len(),
                p.display(),
                key.key_id
            )
        })?;
    }
    Ok(ExitCode::SUCCESS)
}
