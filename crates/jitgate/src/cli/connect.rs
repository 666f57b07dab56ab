//! Using a grant through the gateway: `jitgate connect` (psql, or a DSN for other clients) and
//! `jitgate sessions`.

use super::context::Ctx;
use super::second_factor::{with_second_factor, MfaArgs};
use crate::credentials;
use crate::output;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct ConnectArgs {
    /// The resource you hold a live grant on.
    resource: String,
    /// The granted role (needed only when you hold several on the resource).
    #[arg(long)]
    role: Option<String>,
    /// Print the connection string (with sslmode=verify-full and the sslrootcert file it
    /// needs) and the one-time password instead of running psql.
    #[arg(long)]
    print_dsn: bool,
    /// Sessions the password may open within its minute (for a pool or pgbench -c N).
    #[arg(long, default_value_t = 1)]
    uses: u32,
    #[command(flatten)]
    mfa: MfaArgs,
    /// Arguments for psql, after `--`.
    #[arg(last = true)]
    psql_args: Vec<String>,
}

#[derive(Args, Debug)]
pub(super) struct SessionsArgs {
    /// Everyone's sessions (admins and audit readers), not only yours.
    #[arg(long)]
    all: bool,
    /// Only the open ones.
    #[arg(long)]
    live: bool,
    /// End this session now (admins): its statement is stopped and the client cut off.
    #[arg(long, value_name = "SESSION")]
    kill: Option<String>,
}

pub(super) async fn connect(ctx: &Ctx, args: ConnectArgs) -> Result<ExitCode> {
    let ConnectArgs {
        resource,
        role,
        print_dsn,
        uses,
        mfa,
        psql_args,
    } = args;
    let c = ctx.client()?;
    let body = jitgate_api::ConnectBody {
        resource,
        role,
        mfa: None,
        uses: Some(uses),
    };
    let t = with_second_factor(&mfa, |proof| {
        let (c, mut body) = (c.clone(), body.clone());
        body.mfa = proof;
        async move { c.connect(&body).await }
    })
    .await?;
    // The token is the password: send it only to a gateway whose certificate checks
    // out against the one the server handed over with it (never `sslmode=prefer`,
    // which anyone on the path can strip or answer with a certificate of their own).
    let root = match (&t.gateway_ca_pem, &t.gateway_ca_sha256) {
        (Some(pem), Some(sha)) => Some(credentials::save_gateway_ca(sha, pem)?),
        (Some(_), None) => bail!("the server sent the gateway's certificate without its fingerprint"),
        (None, _) if is_local_host(&t.host) => None,
        (None, _) => bail!(
            "the gateway at {} runs without TLS: jitgate connect will not send the one-time password across \
             the network in clear (ask an administrator to give the gateway a certificate)",
            t.host
        ),
    };
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    let mut dsn = format!(
        "postgresql://{}@{host}:{}/{}",
        uri_escape(t.username.as_str()),
        t.port,
        uri_escape(&t.dbname)
    );
    if let Some(root) = &root {
        dsn.push_str("?sslmode=verify-full&sslrootcert=");
        dsn.push_str(&uri_escape(&root.display().to_string()));
    }
    if print_dsn {
        let out = serde_json::json!({
            "dsn": dsn,
            "password": t.token.expose(),
            "expires_at": t.expires_at,
            "sslmode": root.as_ref().map(|_| "verify-full"),
            "sslrootcert": root,
            "gateway_ca_sha256": t.gateway_ca_sha256,
        });
        ctx.print(&out, |_| {
            format!(
                "{dsn}\npassword (one use, until {}): {}",
                output::when(t.expires_at),
                t.token.expose()
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut psql = std::process::Command::new("psql");
    psql.args(&psql_args)
        .env("PGHOST", &t.host)
        .env("PGPORT", t.port.to_string())
        .env("PGUSER", t.username.as_str())
        .env("PGDATABASE", &t.dbname)
        .env("PGPASSWORD", t.token.expose());
    if let Some(root) = &root {
        psql.env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", root);
    }
    let status = psql
        .status()
        .context("cannot run psql (install postgresql-client, or use --print-dsn)")?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub(super) async fn sessions(ctx: &Ctx, args: SessionsArgs) -> Result<ExitCode> {
    let SessionsArgs { all, live, kill } = args;
    let c = ctx.client()?;
    if let Some(id) = kill {
        c.kill_session(&id).await?;
        ctx.print(&serde_json::json!({"killed": id}), |_| format!("session {id} ended"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = c.db_sessions(all, live).await?;
    ctx.print(&list, |l| output::sessions(l))?;
    Ok(ExitCode::SUCCESS)
}

/// `localhost` or a loopback address: the only place a token may go without TLS.
fn is_local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes a value for a libpq connection URI: everything but unreserved characters
/// (and `/` in a path) is escaped, so a path with `&`, `=` or a space cannot add parameters.
fn uri_escape(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(s, KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::{is_local_host, uri_escape};

    #[test]
    fn only_loopback_counts_as_local_and_paths_are_escaped() {
        for local in ["127.0.0.1", "127.3.4.5", "::1", "localhost", "LOCALHOST"] {
            assert!(is_local_host(local), "{local}");
        }
        for remote in ["0.0.0.0", "10.0.0.1", "db.example.com", "localhost.example.com", "::"] {
            assert!(!is_local_host(remote), "{remote}");
        }
        assert_eq!(uri_escape("/home/a b/ca&x=1.pem"), "/home/a%20b/ca%26x%3D1.pem");
    }
}
