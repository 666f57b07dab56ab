//! `jitgate serve`: the server (API, expiry engine, PostgreSQL gateway), its log, and the
//! signals it answers (SIGHUP reloads the policies, SIGINT and SIGTERM stop it).

use anyhow::{anyhow, bail, Result};
use clap::Args;
use jitgate_server::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    // The client flags are global so that they work after any verb; they mean nothing to the
    // server, so `serve` takes them as arguments of its own, hidden from its help (clap does not
    // hand a global argument to a subcommand that has one of the same name).
    /// Not used by the server.
    #[arg(id = "server", long = "server", hide = true)]
    _server: Option<String>,
    /// Not used by the server.
    #[arg(id = "json", long = "json", hide = true)]
    _json: bool,
    /// Configuration file (TOML).
    #[arg(long, env = "JITGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded database and keys live (default ./jitgate-data).
    #[arg(long, env = "JITGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the API (default 127.0.0.1:8080).
    #[arg(long, env = "JITGATE_HTTP")]
    http: Option<SocketAddr>,
    /// Address for the PostgreSQL gateway (default 127.0.0.1:6432; overrides [gateway] listen).
    #[arg(long, env = "JITGATE_PG")]
    pg: Option<SocketAddr>,
    /// Store URL: postgres://… or a SQLite path (default: SQLite in the data directory).
    #[arg(long, env = "JITGATE_STORE_URL", hide_env_values = true)]
    store: Option<String>,
}

/// The server's log on standard error: `JITGATE_LOG` filters (default `info`);
/// `JITGATE_LOG_FORMAT=json` writes one JSON object per line for log shippers; plain text is
/// coloured only on a terminal, so a log file holds no escape codes.
fn init_logging() -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match std::env::var("JITGATE_LOG_FORMAT").unwrap_or_default().as_str() {
        "json" => builder.json().with_current_span(false).init(),
        "" | "text" => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        other => bail!("JITGATE_LOG_FORMAT={other:?}: use text or json"),
    }
    Ok(())
}

/// The configuration file's settings (or the defaults), with the flags laid over them.
fn settings(args: ServeArgs) -> Result<Settings> {
    let mut settings = match &args.config {
        Some(p) => Settings::from_file(p).map_err(|e| anyhow!("invalid configuration: {e}"))?,
        None => Settings::default(),
    };
    if let Some(d) = args.data_dir {
        settings.data_dir = d;
    }
    if let Some(h) = args.http {
        settings.http = h;
    }
    if let Some(pg) = args.pg {
        // The address moves; a gateway the configuration switched off stays off, and saying
        // where it should listen is a contradiction to point out rather than to settle.
        if settings.gateway.is_none() {
            bail!("--pg {pg}: the PostgreSQL gateway is switched off in the configuration ([gateway] enabled = false)");
        }
        settings.gateway = Some(pg);
    }
    if let Some(s) = args.store {
        settings.store_url = Some(s);
    }
    Ok(settings)
}

pub(super) async fn serve(args: ServeArgs) -> Result<ExitCode> {
    init_logging()?;
    let config_name = args.config.as_ref().map(|p| p.display().to_string());
    let settings = settings(args)?;
    let backend = if settings.store_url.is_some() {
        "the configured store".to_owned()
    } else {
        format!("SQLite in {}", settings.data_dir.display())
    };
    let app = jitgate_server::Application::build(settings, None, config_name.as_deref()).await?;
    let app = {
        let pages = jitgate_web::router(app.core());
        app.with_pages(pages)
    };
    #[cfg(unix)]
    {
        // SIGHUP reloads the policy files; a bad set is refused, logged and audited, and the
        // last good one stays in force. Installed before the start is announced, so a SIGHUP
        // sent on seeing it finds the handler.
        let core = app.core();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match core.policies().reload("system").await {
                        Ok(r) => eprintln!("jitgate: policies reloaded ({} from files)", r.policies.len()),
                        Err(e) => eprintln!("jitgate: {}", e.message),
                    }
                }
            });
        }
    }
    eprintln!(
        "jitgate {} listening on http://{} ({backend}){}",
        env!("CARGO_PKG_VERSION"),
        app.addr(),
        app.gateway_addr()
            .map(|g| format!("; PostgreSQL gateway on {g}"))
            .unwrap_or_default()
    );
    if let Some(token) = app.setup_token() {
        use secrecy::ExposeSecret;
        eprintln!("\nThis store has no users yet. Create the first administrator with\n    jitgate admin bootstrap --username admin\nand give it this one-time setup token:\n    {}\n", token.expose_secret());
    }
    let stop = app.stop_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("jitgate: stopping");
        stop.stop();
    });
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::{settings, ServeArgs};
    use clap::Parser;
    use std::net::SocketAddr;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(args: &[&str]) -> ServeArgs {
        Serve::try_parse_from(["serve"].iter().chain(args)).unwrap().args
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// `--pg` moves the gateway as `--http` moves the API: over the default and over the
    /// configuration file's `[gateway] listen`, leaving the rest of the file alone.
    #[test]
    fn pg_overrides_the_gateway_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("jitgate.toml");
        std::fs::write(
            &cfg,
            "[server]\nhttp = \"127.0.0.1:9001\"\n\n[gateway]\nlisten = \"127.0.0.1:9002\"\n",
        )
        .unwrap();
        let cfg = cfg.to_str().unwrap();

        let default = settings(serve(&[])).unwrap();
        assert_eq!(default.gateway, Some(addr("127.0.0.1:6432")));
        let flagged = settings(serve(&["--pg", "0.0.0.0:7432"])).unwrap();
        assert_eq!(flagged.gateway, Some(addr("0.0.0.0:7432")));

        let from_file = settings(serve(&["--config", cfg])).unwrap();
        assert_eq!(
            (from_file.http, from_file.gateway),
            (addr("127.0.0.1:9001"), Some(addr("127.0.0.1:9002")))
        );
        let both = settings(serve(&["--config", cfg, "--pg", "[::1]:7433", "--http", "127.0.0.1:7080"])).unwrap();
        assert_eq!((both.http, both.gateway), (addr("127.0.0.1:7080"), Some(addr("[::1]:7433"))));
        let only_pg = settings(serve(&["--config", cfg, "--pg", "127.0.0.1:7434"])).unwrap();
        assert_eq!(
            (only_pg.http, only_pg.gateway),
            (addr("127.0.0.1:9001"), Some(addr("127.0.0.1:7434")))
        );

        assert!(
            Serve::try_parse_from(["serve", "--pg", "localhost"]).is_err(),
            "an address, not a host name"
        );
    }

    #[test]
    fn pg_does_not_switch_on_a_gateway_the_configuration_switched_off() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("jitgate.toml");
        std::fs::write(&cfg, "[gateway]\nenabled = false\n").unwrap();
        let cfg = cfg.to_str().unwrap();
        assert_eq!(settings(serve(&["--config", cfg])).unwrap().gateway, None);
        let err = settings(serve(&["--config", cfg, "--pg", "127.0.0.1:7432"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--pg") && err.contains("enabled = false"), "{err}");
    }
}
