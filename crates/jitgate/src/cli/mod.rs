//! Command-line interface. Every verb has `--json`; secrets come from prompts, stdin or the
//! environment, never from argv.
//!
//! This module parses and dispatches; each noun has a module of its own with its arguments and
//! its handler (`audit` with `audit_verify` beside it). The nouns share `context` and
//! `second_factor`, which use no noun, and never use one another.

mod account;
mod admin;
mod audit;
mod audit_verify;
mod connect;
mod context;
mod grants;
mod mfa;
mod policy;
mod requests;
mod second_factor;
mod serve;
mod sso;
mod tokens;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use context::Ctx;
use jitgate_client::ClientError;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "jitgate",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("JITGATE_COMMIT"), ")"),
    about = "Just-in-time privileged access: request, approve, use, expire, audit."
)]
pub struct Cli {
    /// The jitgate server (default: the one you logged in to, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "JITGATE_SERVER")]
    server: Option<String>,
    /// A PEM certificate to trust for an https:// server besides the system's roots, e.g. the
    /// self-signed one a server with `server.tls` makes (`DATA_DIR/http-tls.crt`).
    #[arg(long, global = true, env = "JITGATE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API and expiry engine).
    Serve(serve::ServeArgs),
    /// Log in and keep the session token in your config directory.
    Login(account::LoginArgs),
    /// End the session and forget the token.
    Logout,
    /// Change your own password: asks for the current one, the new one twice, and a second
    /// factor when you have one (your other sessions end).
    Password(account::PasswordArgs),
    /// Who you are logged in as.
    Whoami,
    /// Resources and the roles you can request.
    Resources,
    /// Ask for a role on a resource for a bounded time.
    Request(requests::RequestArgs),
    /// Ask for more time on a live grant of yours: a request that starts where the grant ends;
    /// once approved, open sessions carry on into it.
    Extend(requests::ExtendArgs),
    /// Break glass: access at once where a policy allows it, with a mandatory reason and a
    /// fresh second factor; every approver is alerted and reviews it after the fact.
    BreakGlass(requests::BreakGlassArgs),
    /// Open a database session through the gateway: gets a one-time token for your live grant
    /// and runs psql with it in PGPASSWORD (never on the command line), over TLS verified
    /// against the gateway certificate the server hands over (sslmode=verify-full).
    Connect(connect::ConnectArgs),
    /// Gateway sessions: yours, or everyone's with --all; --kill ends one (admins).
    Sessions(connect::SessionsArgs),
    /// Acknowledge a break-glass grant after the fact.
    Ack(requests::AckArgs),
    /// Your alerts: break-glass use on resources you approve for.
    Notifications,
    /// Cedar policies: check the files offline, explain a decision.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// List requests: yours, those waiting for your review, or all.
    Requests(requests::ListArgs),
    /// One request with its reviews, approval progress, grant and history.
    Show(requests::ShowArgs),
    /// Approve someone else's request.
    Approve(requests::ApproveArgs),
    /// Deny a request.
    Deny(requests::DenyArgs),
    /// Cancel your own pending request.
    Cancel(requests::CancelArgs),
    /// List grants: yours, or all.
    Grants(grants::ListArgs),
    /// End a grant early.
    Revoke(grants::RevokeArgs),
    /// Second factors: status, TOTP, recovery codes, passkeys, step-up.
    #[command(subcommand)]
    Mfa(mfa::MfaCommand),
    /// The audit log: verify, export, tail, status, rotate-key, witness.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// API tokens for scripts: create, list, revoke (scripts send one as JITGATE_TOKEN).
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Administration: bootstrap, users, groups, resources.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Print a shell completion script: `jitgate completions bash > /etc/bash_completion.d/jitgate`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --dir, write one page per command there.
    Man {
        /// Write jitgate.1, jitgate-request.1, … into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jitgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes generated text to standard output; a reader that stopped early (`| head`) is fine.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => return serve::serve(args).await,
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "jitgate", &mut script);
            write_stdout(&script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                    clap_mangen::generate_to(cmd, &dir).with_context(|| format!("cannot write man pages to {}", dir.display()))?;
                    eprintln!("man pages written to {}", dir.display());
                }
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(cmd).render(&mut page).context("cannot render the man page")?;
                    write_stdout(&page)?;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let ctx = Ctx::new(cli.server, cli.json, cli.ca_file.as_deref())?;
    let result = command(&ctx, cli.command).await;
    match result {
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Api { code, message, .. }) if code == "unauthenticated" => {
                bail!("{message} (run `jitgate login`)")
            }
            Some(ClientError::Api { code, message, .. }) if ctx.json => {
                eprintln!("{}", serde_json::json!({"error": {"code": code, "message": message}}));
                Ok(ExitCode::FAILURE)
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

/// Hands a client verb to its noun's handler.
async fn command(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve(_) | Command::Completions { .. } | Command::Man { .. } => unreachable!("handled before"),
        Command::Login(args) => account::log_in(ctx, args).await,
        Command::Logout => account::log_out(ctx).await,
        Command::Password(args) => account::change_password(ctx, args).await,
        Command::Whoami => account::whoami(ctx).await,
        Command::Token(cmd) => tokens::run(ctx, cmd).await,
        Command::Resources => requests::resources(ctx).await,
        Command::Request(args) => requests::request(ctx, args).await,
        Command::BreakGlass(args) => requests::break_glass(ctx, args).await,
        Command::Extend(args) => requests::extend(ctx, args).await,
        Command::Connect(args) => connect::connect(ctx, args).await,
        Command::Sessions(args) => connect::sessions(ctx, args).await,
        Command::Ack(args) => requests::acknowledge(ctx, args).await,
        Command::Notifications => requests::notifications(ctx).await,
        Command::Policy(cmd) => policy::run(ctx, cmd).await,
        Command::Requests(args) => requests::list(ctx, args).await,
        Command::Show(args) => requests::show(ctx, args).await,
        Command::Approve(args) => requests::approve(ctx, args).await,
        Command::Deny(args) => requests::deny(ctx, args).await,
        Command::Cancel(args) => requests::cancel(ctx, args).await,
        Command::Grants(args) => grants::list(ctx, args).await,
        Command::Revoke(args) => grants::revoke(ctx, args).await,
        Command::Mfa(cmd) => mfa::run(ctx, cmd).await,
        Command::Audit(cmd) => audit::run(ctx, cmd).await,
        Command::Admin(cmd) => admin::run(ctx, cmd).await,
    }
}

#[cfg(test)]
mod tests;
