//! `jitgate audit verify`: the hash chain and the signed, chained checkpoints of the server's
//! log, of a store read directly, or of an exported file, against pinned keys and witnesses.

use super::context::Ctx;
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use jitgate_api::{ExportLine, VerifyOutcome, EXPORT_FORMAT};
use jitgate_core::audit::{AuditEvent, ChainHead, ChainVerifier, Checkpoint, VerifyError, VerifyReport};
use jitgate_core::Timestamp;
use jitgate_server::audit_log::{parse_public_key, public_keys_beside, verify_store, VerifyingKey};
use jitgate_server::clock::{Clock, SystemClock};
use jitgate_server::Settings;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// Verify an exported JSONL file instead of the server's log.
    #[arg(long, conflicts_with_all = ["data_dir", "store"])]
    file: Option<PathBuf>,
    /// Verify the store in this data directory directly (no server needed).
    #[arg(long, conflicts_with = "store")]
    data_dir: Option<PathBuf>,
    /// Verify this store directly (postgres://… or a SQLite path).
    #[arg(long, env = "JITGATE_VERIFY_STORE_URL", hide_env_values = true)]
    store: Option<String>,
    /// The server's configuration file: its store (unless --file, --data-dir or --store
    /// say otherwise), its audit.public_key_file as the trusted key and its
    /// audit.checkpoint_interval.
    #[arg(long, env = "JITGATE_CONFIG")]
    config: Option<PathBuf>,
    /// The trusted checkpoint key (the root): hex, or a file holding it. Repeat it for
    /// several keys; after a rotation, the key that signed the first checkpoint suffices.
    #[arg(long)]
    public_key: Vec<String>,
    /// A witness's copy of the checkpoints: its JSONL file, or an HTTP witness's URL (its
    /// /export is read). Fails when the log lacks a witnessed checkpoint or does not reach it.
    #[arg(long)]
    witness: Vec<String>,
    /// Also fail when events are left without a checkpoint for longer than the checkpoint
    /// interval allows (a deleted checkpoint, or a writer that stopped checkpointing).
    #[arg(long)]
    strict: bool,
    /// The checkpoint interval the writer keeps (default: the config's, else 10s).
    #[arg(long, value_parser = jitgate_core::time::parse_duration)]
    checkpoint_interval: Option<Duration>,
}

pub(super) fn now() -> Timestamp {
    SystemClock.now()
}

pub(super) fn load_config(path: &Path) -> Result<Settings> {
    Settings::from_file(path).map_err(|e| anyhow!("invalid configuration: {e}"))
}

pub(super) async fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<ExitCode> {
    let VerifyArgs {
        file,
        data_dir,
        store,
        config,
        public_key,
        witness,
        strict,
        checkpoint_interval,
    } = args;
    let settings = config.as_deref().map(load_config).transpose()?;
    let mut keys = public_key
        .iter()
        .map(|k| parse_public_key(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("--public-key: {e}"))?;
    if keys.is_empty() {
        if let Some(p) = settings.as_ref().and_then(|s| s.audit_public_key_file.as_ref()) {
            let k = parse_public_key(&p.display().to_string()).map_err(|e| anyhow!("audit.public_key_file {}: {e}", p.display()))?;
            keys.push(k);
        }
    }
    let interval = checkpoint_interval
        .or(settings.as_ref().map(|s| s.checkpoint_interval))
        .unwrap_or(Duration::from_secs(10));
    let mut witnessed = None;
    for w in &witness {
        witnessed.get_or_insert_with(Vec::new).extend(read_witness(w).await?);
    }
    let mut notes = Vec::new();
    if strict && witnessed.is_none() {
        notes.push(
            "no witness given: a log rolled back to an earlier checkpoint, with the later checkpoints deleted, looks whole without one"
                .to_owned(),
        );
    }
    let outcome = if let Some(path) = file {
        let (outcome, more) = verify_file(&path, keys, witnessed)?;
        notes.extend(more);
        outcome
    } else if data_dir.is_some() || store.is_some() || settings.is_some() {
        let mut s = settings.clone().unwrap_or_default();
        if let Some(d) = &data_dir {
            s.data_dir = d.clone();
            s.store_url = None;
            s.signing_key_file = None;
        }
        if let Some(u) = store {
            s.store_url = Some(u);
        }
        let url = s.store_url();
        if s.store_url.is_none() && !Path::new(&url).exists() {
            bail!("{url} does not exist");
        }
        if keys.is_empty() {
            let path = s.signing_key_path();
            if path.exists() {
                warn_untrusted_key(&format!("the signing key beside the data ({})", path.display()));
                keys = public_keys_beside(&path).map_err(|e| anyhow!(e))?;
            } else {
                eprintln!("WARNING: no trusted key: checkpoint signatures are NOT checked (pass --public-key)");
            }
        }
        let store = jitgate_store::open_read_only(&url).await?;
        let outcome = verify_store(store.clone(), keys, witnessed).await?;
        if outcome.ok && store.audit_last_checkpoint().await?.is_none() {
            notes.push("the store has no signed checkpoints yet".to_owned());
        }
        outcome
    } else {
        if witnessed.is_some() || !keys.is_empty() {
            bail!("--witness and --public-key check a store or a file you read yourself: add --file, --data-dir, --store or --config (through the server, it checks with its own key)");
        }
        ctx.client()?.audit_verify().await?
    };
    let outcome = if strict { strict_outcome(outcome, interval) } else { outcome };
    print_verify(ctx, &outcome, &notes)
}

fn print_verify(ctx: &Ctx, outcome: &VerifyOutcome, notes: &[String]) -> Result<ExitCode> {
    ctx.print(outcome, |o| match (&o.report, o.first_bad_seq) {
        (Some(r), _) => {
            let mut s = format!(
                "audit log OK: {} events, last #{} ({}); signed checkpoints verified: {}",
                r.events,
                r.last_seq,
                &r.last_hash[..16.min(r.last_hash.len())],
                r.checkpoints
            );
            if let Some(w) = r.witnessed {
                s.push_str(&format!("; witnessed checkpoints found: {w}"));
            }
            if let Some((seq, ts)) = r.uncovered_from {
                s.push_str(&format!(
                    "\nnote: events {seq}..={} rest on the hash chain alone (no checkpoint since {})",
                    r.last_seq,
                    output::when(Timestamp::from_millis(ts))
                ));
            }
            for n in notes {
                s.push_str(&format!("\nnote: {n}"));
            }
            s
        }
        (None, seq) => format!(
            "audit log FAILED verification at event {}: {}",
            seq.unwrap_or(0),
            o.problem.clone().unwrap_or_default()
        ),
    })?;
    Ok(if outcome.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn verify_file(path: &Path, keys: Vec<VerifyingKey>, witness: Option<Vec<Checkpoint>>) -> Result<(VerifyOutcome, Vec<String>)> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut header_key = None;
    let mut start = None;
    let mut signed_head = None;
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: ExportLine =
            serde_json::from_str(&line).with_context(|| format!("{}:{}: not an audit export line", path.display(), i + 1))?;
        match parsed {
            ExportLine::Header {
                format,
                public_key,
                since,
                anchor,
                head,
                ..
            } => {
                signed_head = head;
                if format != EXPORT_FORMAT {
                    bail!("{}: unknown export format {format}", path.display());
                }
                header_key = Some(public_key);
                start = since.map(|s| (s, anchor));
            }
            ExportLine::Event(e) => events.push(e),
            ExportLine::Checkpoint(c) => checkpoints.push(c),
        }
    }
    let mut notes = Vec::new();
    let keys = if keys.is_empty() {
        warn_untrusted_key("the export file's own header");
        notes.push("checkpoints were checked with the key named in the file itself; pass --public-key with the key you kept to rule out a re-signed file".to_owned());
        header_key
            .map(|k| parse_public_key(&k).map_err(|e| anyhow!(e)))
            .transpose()?
            .into_iter()
            .collect()
    } else {
        keys
    };
    // The head the server signed for this file, checked once the chain itself holds: the
    // events must end exactly there. Taking it out of the header must not take its check
    // with it.
    let Some(signed_head) = signed_head else {
        let why =
            "the export has no signed head in its header (it was removed, or an older jitgate made the file: export it again)".to_owned();
        return Ok((Err(VerifyError::ExportHead { seq: 0, why }).into(), notes));
    };
    let head_signed = keys.iter().any(|k| jitgate_core::audit::head_signature_ok(k, &signed_head));
    let mut v = ChainVerifier::new(keys, checkpoints);
    if let Some(mut w) = witness {
        // The witness goes on after the export was taken: what it took later is not in the
        // file. The signed head says where the file ends; without one, the export time (the
        // file's own word) is all there is.
        w.retain(|c| c.seq <= signed_head.seq);
        v = v.with_witness(w);
    }
    let since_head = start.as_ref().map(|(s, _)| s.clone());
    if let Some((since, anchor)) = start {
        if anchor.as_ref().is_none_or(|a| a.seq != since.seq) {
            notes.push(format!(
                "an incremental export from event {}: its starting hash is signed only when a checkpoint sits there",
                since.seq
            ));
        }
        v = match v.starting_after(since, anchor.as_ref()) {
            Ok(v) => v,
            Err(e) => return Ok((Err(e).into(), notes)),
        };
    }
    let walked = events.iter().try_for_each(|e| v.push(e));
    let outcome = match walked {
        Err(err) => Err(err).into(),
        Ok(()) if !head_signed => {
            let why = "the head the file says the server signed is not signed by the audit key (its header was edited)".to_owned();
            Err(VerifyError::ExportHead { seq: signed_head.seq, why }).into()
        }
        Ok(()) => match short_of_signed_head(&events, since_head.as_ref(), &signed_head) {
            Some(err) => Err(err).into(),
            None => v.finish(None).into(),
        },
    };
    Ok((outcome, notes))
}

/// Where a file whose chain holds together still parts from the head the server signed for
/// it: cut short, or run on past it.
fn short_of_signed_head(events: &[AuditEvent], since: Option<&ChainHead>, h: &jitgate_core::audit::SignedHead) -> Option<VerifyError> {
    let first = since.map_or(0, |s| s.seq);
    let end = events
        .last()
        .map_or((first, since.map(|s| s.hash.as_str())), |e| (e.seq, Some(e.hash.as_str())));
    if end.0 == h.seq && (end.0 == first || end.1 == Some(h.hash.as_str())) {
        return None;
    }
    let (seq, why) = if end.0 < h.seq {
        (
            end.0 + 1,
            format!(
                "missing: the server signed the head as event {} when the file was exported (the tail was cut off)",
                h.seq
            ),
        )
    } else if end.0 > h.seq {
        (
            h.seq + 1,
            format!("is past the head the server signed for this export (event {})", h.seq),
        )
    } else {
        (h.seq, "differs from the head the server signed for this export".to_owned())
    };
    Some(VerifyError::ExportHead { seq, why })
}

/// Says, loudly and on stderr, that the key that checks the log came from beside the log.
fn warn_untrusted_key(source: &str) {
    eprintln!(
        "WARNING: the audit public key was taken from {source}, not from a key you pinned. Whoever can rewrite \
         the log can replace that key too and re-sign everything. Pin the key you kept with --public-key \
         (or audit.public_key_file in the configuration)."
    );
}

/// The witness's checkpoints: a JSONL file, or an HTTP witness's export.
async fn read_witness(source: &str) -> Result<Vec<Checkpoint>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = format!("{}/export", source.trim_end_matches('/'));
        let resp = reqwest::get(&url).await.with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            bail!("GET {url}: {}", resp.status());
        }
        let text = resp.text().await?;
        jitgate_server::witness::parse_witness_lines(&text).map_err(|e| anyhow!("{url}: {e}"))
    } else {
        jitgate_server::witness::read_witness_file(Path::new(source)).map_err(|e| anyhow!(e))
    }
}

/// With --strict, an uncovered tail older than the interval allows turns success into failure.
fn strict_outcome(outcome: VerifyOutcome, interval: Duration) -> VerifyOutcome {
    let problem = outcome
        .report
        .as_ref()
        .and_then(|r: &VerifyReport| r.uncovered_tail(now().as_millis(), interval.as_millis() as i64));
    match problem {
        Some(e) => Err(e).into(),
        None => outcome,
    }
}
