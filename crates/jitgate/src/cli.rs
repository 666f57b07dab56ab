//! Command-line interface. Every verb has `--json`; secrets come from prompts, stdin or the
//! environment, never from argv.

use crate::cli_audit::{audit, AuditCommand};
use crate::cli_mfa::{login, with_second_factor, MfaArgs, MfaCommand};
use crate::client::{Client, ClientError, ListParams};
use crate::credentials::{self, Credentials};
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use jitgate_api::{BootstrapBody, CreateRequestBody, CreateUserBody};
use jitgate_core::names::Username;
use jitgate_core::policy::Resource;
use jitgate_core::Timestamp;
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

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
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API and expiry engine).
    Serve(ServeArgs),
    /// Log in and keep the session token in your config directory.
    Login {
        /// User name (asked for when absent).
        username: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// End the session and forget the token.
    Logout,
    /// Change your own password: asks for the current one, the new one twice, and a second
    /// factor when you have one (your other sessions end).
    Password {
        /// Read the current password, then the new one, from the first two lines of standard
        /// input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Who you are logged in as.
    Whoami,
    /// Resources and the roles you can request.
    Resources,
    /// Ask for a role on a resource for a bounded time.
    Request {
        /// The resource (`jitgate resources` lists them).
        resource: String,
        /// The role on it to ask for.
        #[arg(long)]
        role: String,
        /// How long, like 30m or 2h (the role's default when absent).
        #[arg(long = "for")]
        duration: Option<String>,
        /// Why you need it (approvers see it; roles may ask for a minimum length).
        #[arg(long, default_value = "")]
        reason: String,
        /// A ticket reference, like INC-123 (required where the role names a pattern).
        #[arg(long)]
        ticket: Option<String>,
        /// Start later, at this RFC 3339 time.
        #[arg(long)]
        start_at: Option<String>,
        /// Extend this grant: the new grant starts where it ends.
        #[arg(long)]
        extends: Option<String>,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Break glass: access at once where a policy allows it, with a mandatory reason and a
    /// fresh second factor; every approver is alerted and reviews it after the fact.
    BreakGlass {
        /// The resource.
        resource: String,
        /// The role on it.
        #[arg(long)]
        role: String,
        /// How long, like 30m (capped by the role's break_glass_max_duration).
        #[arg(long = "for")]
        duration: Option<String>,
        /// Why it cannot wait (mandatory; every approver reads it).
        #[arg(long)]
        reason: String,
        /// A ticket reference, like INC-123.
        #[arg(long)]
        ticket: Option<String>,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Open a database session through the gateway: gets a one-time token for your live grant
    /// and runs psql with it in PGPASSWORD (never on the command line), over TLS verified
    /// against the gateway certificate the server hands over (sslmode=verify-full).
    Connect {
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
    },
    /// Gateway sessions: yours, or everyone's with --all; --kill ends one (admins).
    Sessions {
        /// Everyone's sessions (admins and audit readers), not only yours.
        #[arg(long)]
        all: bool,
        /// Only the open ones.
        #[arg(long)]
        live: bool,
        /// End this session now (admins): its statement is stopped and the client cut off.
        #[arg(long, value_name = "SESSION")]
        kill: Option<String>,
    },
    /// Acknowledge a break-glass grant after the fact.
    Ack {
        /// The break-glass request's id.
        id: String,
        /// A note for the record.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Your alerts: break-glass use on resources you approve for.
    Notifications,
    /// Cedar policies: check the files offline, explain a decision.
    #[command(subcommand)]
    Policy(crate::cli_policy::PolicyCommand),
    /// List requests: yours, those waiting for your review, or all.
    Requests {
        /// Those waiting for your review.
        #[arg(long, conflicts_with = "all")]
        review: bool,
        /// Everyone's (admins and audit readers).
        #[arg(long)]
        all: bool,
        /// Only this status: pending, approved, denied, cancelled, expired.
        #[arg(long)]
        status: Option<String>,
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        /// At most this many, newest first (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One request with its reviews, approval progress, grant and history.
    Show {
        /// The request's id (req_…).
        id: String,
    },
    /// Approve someone else's request.
    Approve {
        /// The request's id (req_…).
        id: String,
        /// A note for the requester and the record.
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Deny a request.
    Deny {
        /// The request's id (req_…).
        id: String,
        /// Why (the requester sees it).
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Cancel your own pending request.
    Cancel {
        /// The request's id (req_…).
        id: String,
    },
    /// List grants: yours, or all.
    Grants {
        /// Everyone's (admins, approvers of the resource, audit readers).
        #[arg(long)]
        all: bool,
        /// Only this status: scheduled, active, expired, revoked.
        #[arg(long)]
        status: Option<String>,
        /// Only this resource.
        #[arg(long)]
        resource: Option<String>,
        /// At most this many, newest first (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// End a grant early.
    Revoke {
        /// The grant's id (grt_…).
        id: String,
        /// Why it ends early (mandatory, on the record).
        #[arg(long)]
        reason: String,
    },
    /// Second factors: status, TOTP, recovery codes, passkeys, step-up.
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// The audit log: verify, export, tail, status, rotate-key, witness.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Administration: bootstrap, users, groups, resources.
    #[command(subcommand)]
    Admin(AdminCommand),
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

#[derive(Args, Debug)]
struct ServeArgs {
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
    http: Option<std::net::SocketAddr>,
    /// Store URL: postgres://… or a SQLite path (default: SQLite in the data directory).
    #[arg(long, env = "JITGATE_STORE_URL", hide_env_values = true)]
    store: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create the first administrator with the one-time setup token `serve` printed.
    Bootstrap {
        /// The first administrator's user name.
        #[arg(long, default_value = "admin")]
        username: String,
        /// Read the password from the first line of standard input (the setup token then
        /// comes from JITGATE_SETUP_TOKEN).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Reload the Cedar policy files (like SIGHUP); a bad set is refused and the old one stays.
    Reload,
    /// Users: list, create, disable, enable, set a password, unlock.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups and their members (groups from the config file are re-applied at each start).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Resources: list, apply, delete, upstream passwords, privilege check.
    #[command(subcommand)]
    Resource(ResourceCommand),
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Every user, with admin and disabled flags.
    List,
    /// Create a user; the password is asked for (or read with --password-stdin).
    Create {
        /// The new user's name (lowercase letters, digits, `.`, `_`, `-`).
        username: String,
        /// Make them an administrator.
        #[arg(long)]
        admin: bool,
        /// A name for people to read.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Create the user without a password (they cannot log in until one is set).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        /// Making an administrator asks for your fresh second factor, if you have one.
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Disable a user: ends their sessions and revokes their live grants.
    Disable {
        /// Whom to disable.
        username: String,
    },
    /// Let a disabled user log in again.
    Enable {
        /// Whom to enable.
        username: String,
    },
    /// Set someone else's password (their sessions end); for your own, `jitgate password`.
    SetPassword {
        /// Whose password.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Asks for your fresh second factor, if you have one.
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Lift the attempt limit or lock on an account after failed logins or codes.
    Unlock {
        /// Whose account.
        username: String,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Every group with its members.
    List,
    /// Add a member (the group is made if it does not exist).
    Add {
        /// The group.
        group: String,
        /// The user to add.
        username: String,
    },
    /// Remove a member.
    Remove {
        /// The group.
        group: String,
        /// The user to remove.
        username: String,
    },
}

#[derive(Subcommand, Debug)]
enum ResourceCommand {
    /// Every resource, with where it came from and which upstream password it uses.
    List,
    /// Create or replace a resource from a TOML or JSON file.
    Apply {
        /// The resource file (one `[[resources]]` entry's fields, as in the config).
        file: PathBuf,
    },
    /// Delete a resource made through the API (not one from the config file).
    Delete {
        /// The resource's name.
        name: String,
    },
    /// Store the password of the resource's upstream service role, sealed with the server's
    /// secrets key (asked for at a terminal, or read with --password-stdin; never on argv).
    /// It takes precedence over `password_env`.
    SetPassword {
        /// The resource's name.
        name: String,
        /// The password of this role's own upstream login (`login = "..."` on the role)
        /// instead of the service login's.
        #[arg(long)]
        role: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a stored upstream password (the gateway falls back to `password_env`).
    ClearPassword {
        /// The resource's name.
        name: String,
        /// The role whose own login's password to remove.
        #[arg(long)]
        role: Option<String>,
    },
    /// Show what each role's upstream login can really do: attributes, memberships, and
    /// whether sessions are refused as privileged.
    Check {
        /// The resource's name.
        name: String,
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

pub(crate) struct Ctx {
    pub(crate) json: bool,
    server: String,
    creds: Option<Credentials>,
}

impl Ctx {
    pub(crate) fn anonymous(&self) -> Client {
        Client::new(&self.server, None)
    }

    pub(crate) fn client(&self) -> Result<Client> {
        match &self.creds {
            Some(c) if c.server.trim_end_matches('/') == self.server.trim_end_matches('/') => {
                Ok(Client::new(&self.server, Some(c.token.clone())))
            }
            _ => bail!("not logged in to {}: run `jitgate login`", self.server),
        }
    }

    /// Saves a new session as this user's login to this server.
    pub(crate) fn keep_session(&self, session: &jitgate_api::SessionToken) -> Result<PathBuf> {
        credentials::save(&Credentials {
            server: self.server.clone(),
            username: session.username.to_string(),
            token: session.token.expose().to_owned(),
        })
    }

    pub(crate) fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            println!("{}", text(value));
        }
        Ok(())
    }
}

pub(crate) fn read_stdin_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(line)
}

/// Writes generated text to standard output; a reader that stopped early (`| head`) is fine.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

pub(crate) fn prompt_secret(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).context("cannot read from the terminal: use --password-stdin")
}

fn password(from_stdin: bool, confirm: bool) -> Result<String> {
    if from_stdin {
        return read_stdin_line("password");
    }
    let p = prompt_secret("Password: ")?;
    if confirm && prompt_secret("Password again: ")? != p {
        bail!("the passwords differ");
    }
    Ok(p)
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => return serve(args).await,
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
    let creds = credentials::load()?;
    let server = cli
        .server
        .clone()
        .or_else(|| creds.as_ref().map(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let ctx = Ctx {
        json: cli.json,
        server,
        creds,
    };
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

async fn command(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    let ok = Ok(ExitCode::SUCCESS);
    match command {
        Command::Serve(_) | Command::Completions { .. } | Command::Man { .. } => unreachable!("handled before"),
        Command::Login {
            username,
            password_stdin,
            mfa,
        } => {
            let username = match username {
                Some(u) => u,
                None => {
                    eprint!("User name: ");
                    std::io::stderr().flush()?;
                    read_stdin_line("user name")?
                }
            };
            let pw = password(password_stdin, false)?;
            let session = login(ctx, &username, &pw, &mfa).await?;
            let path = ctx.keep_session(&session)?;
            #[derive(Serialize)]
            struct Out<'a> {
                username: &'a str,
                server: &'a str,
                expires_at: Timestamp,
                credentials: String,
            }
            let out = Out {
                username: session.username.as_str(),
                server: &ctx.server,
                expires_at: session.expires_at,
                credentials: path.display().to_string(),
            };
            ctx.print(&out, |o| {
                format!(
                    "logged in to {} as {} (session ends by {})",
                    o.server,
                    o.username,
                    output::when(o.expires_at)
                )
            })?;
            ok
        }
        Command::Password { password_stdin, mfa } => {
            let c = ctx.client()?;
            let (current, new) = if password_stdin {
                let mut lines = std::io::stdin().lines();
                let mut next = |what: &str| -> Result<String> {
                    match lines.next() {
                        Some(Ok(l)) if !l.is_empty() => Ok(l),
                        _ => bail!("no {what} on standard input (the current password on line 1, the new one on line 2)"),
                    }
                };
                (next("current password")?, next("new password")?)
            } else {
                let current = prompt_secret("Current password: ")?;
                let new = prompt_secret("New password: ")?;
                if prompt_secret("New password again: ")? != new {
                    bail!("the new passwords differ; nothing was changed");
                }
                (current, new)
            };
            let me = c.whoami().await?.username;
            with_second_factor(&mfa, |proof| {
                let c = c.clone();
                let (me, current, new) = (me.clone(), current.clone(), new.clone());
                async move { c.change_password(me.as_str(), &current, &new, proof).await }
            })
            .await?;
            ctx.print(&serde_json::json!({"username": me, "password_changed": true}), |_| {
                "password changed; your other sessions ended".into()
            })?;
            ok
        }
        Command::Logout => {
            if let Ok(c) = ctx.client() {
                // The token is forgotten even if the server cannot be told.
                if let Err(e) = c.logout().await {
                    eprintln!("jitgate: the server did not confirm the logout: {e}");
                }
            }
            credentials::remove()?;
            ctx.print(&serde_json::json!({"logged_out": true}), |_| "logged out".into())?;
            ok
        }
        Command::Whoami => {
            let me = ctx.client()?.whoami().await?;
            ctx.print(&me, |m| {
                let groups = m.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(", ");
                format!(
                    "{}{}\ngroups: {}\nsession ends by {}",
                    m.username,
                    if m.is_admin { " (admin)" } else { "" },
                    if groups.is_empty() { "-".into() } else { groups },
                    m.session_expires_at
                )
            })?;
            ok
        }
        Command::Resources => {
            let list = ctx.client()?.resources().await?;
            ctx.print(&list, |l| {
                if l.is_empty() {
                    return "no resources".into();
                }
                let rows = l
                    .iter()
                    .flat_map(|v| {
                        v.resource.roles.iter().map(move |(name, p)| {
                            let stages = p
                                .stages
                                .iter()
                                .map(|s| {
                                    format!(
                                        "{}×{}",
                                        s.min_approvals,
                                        s.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join("|")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(" AND ");
                            vec![
                                v.resource.name.to_string(),
                                name.to_string(),
                                jitgate_core::time::format_duration(p.max_duration),
                                stages,
                            ]
                        })
                    })
                    .collect();
                output::table(&["RESOURCE", "ROLE", "MAX", "APPROVALS"], rows)
            })?;
            ok
        }
        Command::Request {
            resource,
            role,
            duration,
            reason,
            ticket,
            start_at,
            extends,
            mfa,
        } => {
            let start_at = start_at.map(|s| Timestamp::parse_rfc3339(&s).map_err(|e| anyhow!(e))).transpose()?;
            let body = CreateRequestBody {
                resource,
                role,
                reason,
                ticket,
                duration,
                start_at,
                extends,
                mfa: None,
                break_glass: false,
            };
            let r = send_request(ctx, body, &mfa).await?;
            // The request names no reviewer; an approval at once came from a policy, and the
            // requester should know which one.
            let approving_policy = if r.status == jitgate_core::request::RequestStatus::Approved && !ctx.json {
                ctx.client()?.request(r.id.as_str()).await.ok().and_then(|d| {
                    d.reviews.into_iter().find_map(|v| match v.reviewer {
                        jitgate_core::request::Reviewer::Policy(p) => Some(p),
                        jitgate_core::request::Reviewer::Person(_) => None,
                    })
                })
            } else {
                None
            };
            ctx.print(&r, |r| {
                let what = format!(
                    "{}: {} on {} for {}",
                    r.id,
                    r.role,
                    r.resource,
                    jitgate_core::time::format_duration(std::time::Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0)))
                );
                let state = if r.status == jitgate_core::request::RequestStatus::Approved {
                    match &approving_policy {
                        Some(p) => format!("is approved by policy `{p}`: the grant is yours (jitgate grants)"),
                        None => "is approved by policy: the grant is yours (jitgate grants)".to_owned(),
                    }
                } else {
                    format!("is pending approval (expires {} unless approved)", output::when(r.expires_at))
                };
                format!("{what} {state}\nshow it with: jitgate show {}", r.id)
            })?;
            ok
        }
        Command::Requests {
            review,
            all,
            status,
            resource,
            limit,
        } => {
            let scope = if review {
                "review"
            } else if all {
                "all"
            } else {
                "mine"
            };
            let params = ListParams {
                scope: Some(scope.into()),
                status,
                resource,
                limit: Some(limit),
            };
            let list = ctx.client()?.requests(&params).await?;
            ctx.print(&list, |l| output::requests(l))?;
            ok
        }
        Command::Show { id } => {
            let d = ctx.client()?.request(&id).await?;
            ctx.print(&d, output::detail)?;
            ok
        }
        Command::Approve { id, comment, mfa } => {
            let c = ctx.client()?;
            let d = with_second_factor(&mfa, |proof| c.review(&id, true, &comment, proof)).await?;
            ctx.print(&d, |d| review_summary("approved", d))?;
            ok
        }
        Command::Deny { id, comment, mfa } => {
            let c = ctx.client()?;
            let d = with_second_factor(&mfa, |proof| c.review(&id, false, &comment, proof)).await?;
            ctx.print(&d, |d| review_summary("denied", d))?;
            ok
        }
        Command::Cancel { id } => {
            let r = ctx.client()?.cancel(&id).await?;
            ctx.print(&r, |r| format!("{} cancelled", r.id))?;
            ok
        }
        Command::Grants {
            all,
            status,
            resource,
            limit,
        } => {
            let params = ListParams {
                scope: Some(if all { "all" } else { "mine" }.into()),
                status,
                resource,
                limit: Some(limit),
            };
            let list = ctx.client()?.grants(&params).await?;
            ctx.print(&list, |l| output::grants(l))?;
            ok
        }
        Command::Revoke { id, reason } => {
            let g = ctx.client()?.revoke(&id, &reason).await?;
            ctx.print(&g, output::grant)?;
            ok
        }
        Command::Mfa(m) => crate::cli_mfa::run(ctx, m).await,
        Command::Policy(p) => crate::cli_policy::run(ctx, p).await,
        Command::BreakGlass {
            resource,
            role,
            duration,
            reason,
            ticket,
            mfa,
        } => {
            let body = CreateRequestBody {
                resource,
                role,
                reason,
                ticket,
                duration,
                start_at: None,
                extends: None,
                mfa: None,
                break_glass: true,
            };
            let r = send_request(ctx, body, &mfa).await?;
            ctx.print(&r, |r| {
                format!(
                    "{}: break-glass {} on {} is {}; the approvers were alerted and will review it\nshow it with: jitgate show {}",
                    r.id, r.role, r.resource, r.status, r.id
                )
            })?;
            ok
        }
        Command::Connect {
            resource,
            role,
            print_dsn,
            uses,
            mfa,
            psql_args,
        } => {
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
            let mut dsn = format!("postgresql://{}@{host}:{}/{}", t.username, t.port, t.dbname);
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
                return ok;
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
        Command::Sessions { all, live, kill } => {
            let c = ctx.client()?;
            if let Some(id) = kill {
                c.kill_session(&id).await?;
                ctx.print(&serde_json::json!({"killed": id}), |_| format!("session {id} ended"))?;
                return ok;
            }
            let list = c.db_sessions(all, live).await?;
            ctx.print(&list, |l| {
                if l.is_empty() {
                    return "no sessions".into();
                }
                let rows = l
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.user.to_string(),
                            format!("{}/{}", s.resource, s.role),
                            output::when(s.started_at),
                            s.end_reason.clone().unwrap_or_else(|| "live".into()),
                            s.statements.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "USER", "ACCESS", "STARTED", "STATE", "STATEMENTS"], rows)
            })?;
            ok
        }
        Command::Ack { id, comment } => {
            let r = ctx.client()?.acknowledge(&id, &comment).await?;
            ctx.print(&r, |r| format!("{} acknowledged", r.id))?;
            ok
        }
        Command::Notifications => {
            let list = ctx.client()?.notifications().await?;
            ctx.print(&list, |l| {
                if l.is_empty() {
                    return "no notifications".into();
                }
                l.iter()
                    .map(|n| match (&n.acknowledged_by, n.acknowledged_at) {
                        (Some(by), Some(at)) => {
                            format!(
                                "{}  {} (acknowledged by {by} at {})",
                                output::when(n.created_at),
                                n.message,
                                output::when(at)
                            )
                        }
                        _ => format!("{}  {}", output::when(n.created_at), n.message),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            ok
        }
        Command::Audit(a) => audit(ctx, a).await,
        Command::Admin(a) => admin(ctx, a).await,
    }
}

/// Creates a request, with a second factor when one is due (asked for at a terminal).
async fn send_request(ctx: &Ctx, mut body: CreateRequestBody, mfa: &MfaArgs) -> Result<jitgate_core::request::AccessRequest> {
    let c = ctx.client()?;
    with_second_factor(mfa, |proof| {
        body.mfa = proof;
        let (c, body) = (c.clone(), body.clone());
        async move { c.create_request(&body).await }
    })
    .await
}

fn review_summary(verb: &str, d: &jitgate_api::RequestDetail) -> String {
    let mut s = format!("you {verb} {}; the request is {}", d.request.id, d.request.status);
    if let Some(g) = &d.grant {
        s.push_str(&format!("\n{}", output::grant(g)));
    } else if d.request.status == jitgate_core::request::RequestStatus::Pending {
        let waiting: Vec<String> = d
            .progress
            .stages
            .iter()
            .filter(|s| (s.approved_by.len() as u32) < s.needed)
            .map(|s| format!("{} ({}/{})", s.name, s.approved_by.len(), s.needed))
            .collect();
        s.push_str(&format!("\nstill waiting for: {}", waiting.join(", ")));
    }
    s
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

async fn serve(args: ServeArgs) -> Result<ExitCode> {
    init_logging()?;
    let config_name = args.config.as_ref().map(|p| p.display().to_string());
    let mut settings = match &args.config {
        Some(p) => jitgate_server::Settings::from_file(p).map_err(|e| anyhow!("invalid configuration: {e}"))?,
        None => jitgate_server::Settings::default(),
    };
    if let Some(d) = args.data_dir {
        settings.data_dir = d;
    }
    if let Some(h) = args.http {
        settings.http = h;
    }
    if let Some(s) = args.store {
        settings.store_url = Some(s);
    }
    let backend = if settings.store_url.is_some() {
        "the configured store".to_owned()
    } else {
        format!("SQLite in {}", settings.data_dir.display())
    };
    let app = jitgate_server::Application::build(settings, None, config_name.as_deref()).await?;
    #[cfg(unix)]
    {
        // SIGHUP reloads the policy files; a bad set is refused, logged and audited, and the
        // last good one stays in force. Installed before the start is announced, so a SIGHUP
        // sent on seeing it finds the handler.
        let core = app.core();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match core.reload_policies("system").await {
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

async fn admin(ctx: &Ctx, cmd: AdminCommand) -> Result<ExitCode> {
    match cmd {
        AdminCommand::Reload => {
            let report = ctx.client()?.reload().await?;
            ctx.print(&report, |r| {
                format!(
                    "policies reloaded: {} from files ({}), time zone {}",
                    r.policies.len(),
                    r.policies.join(", "),
                    r.time_zone
                )
            })?;
        }
        AdminCommand::Bootstrap { username, password_stdin } => {
            let setup_token = match std::env::var("JITGATE_SETUP_TOKEN") {
                Ok(t) if !t.is_empty() => t,
                _ if password_stdin => bail!("with --password-stdin, give the setup token in JITGATE_SETUP_TOKEN"),
                _ => prompt_secret("Setup token (printed by `jitgate serve`): ")?,
            };
            let username = Username::parse(&username).map_err(|e| anyhow!(e))?;
            let pw = password(password_stdin, !password_stdin)?;
            let session = ctx
                .anonymous()
                .bootstrap(&BootstrapBody {
                    setup_token: setup_token.into(),
                    username,
                    password: pw.into(),
                })
                .await?;
            ctx.keep_session(&session)?;
            let out = serde_json::json!({"username": session.username, "admin": true, "expires_at": session.expires_at});
            ctx.print(&out, |_| format!("created administrator {} and logged in", session.username))?;
        }
        AdminCommand::User(u) => {
            let c = ctx.client()?;
            match u {
                UserCommand::List => {
                    let users = c.users().await?;
                    ctx.print(&users, |l| {
                        let rows = l
                            .iter()
                            .map(|u| {
                                let state = if u.disabled {
                                    "disabled"
                                } else if !u.has_password {
                                    "no password"
                                } else {
                                    "active"
                                };
                                vec![
                                    u.username.to_string(),
                                    if u.is_admin { "yes".into() } else { "no".into() },
                                    state.into(),
                                    u.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
                                ]
                            })
                            .collect();
                        output::table(&["USER", "ADMIN", "STATE", "GROUPS"], rows)
                    })?;
                }
                UserCommand::Create {
                    username,
                    admin,
                    display_name,
                    password_stdin,
                    no_password,
                    mfa,
                } => {
                    let username = Username::parse(&username).map_err(|e| anyhow!(e))?;
                    let password = if no_password {
                        None
                    } else {
                        Some(password(password_stdin, !password_stdin)?)
                    };
                    let body = CreateUserBody {
                        username,
                        display_name,
                        password: password.map(Into::into),
                        admin,
                    };
                    let body = &body;
                    let u = crate::cli_mfa::after_step_up(&mfa, &c, |c| async move { c.create_user(body).await }).await?;
                    ctx.print(&u, |u| {
                        format!("created user {}{}", u.username, if u.is_admin { " (admin)" } else { "" })
                    })?;
                }
                UserCommand::Disable { username } => {
                    let u = c.set_user_disabled(&username, true).await?;
                    ctx.print(&u, |u| format!("disabled {}: sessions ended, live grants revoked", u.username))?;
                }
                UserCommand::Enable { username } => {
                    let u = c.set_user_disabled(&username, false).await?;
                    ctx.print(&u, |u| format!("enabled {}", u.username))?;
                }
                UserCommand::Unlock { username } => {
                    c.unlock_user(&username).await?;
                    ctx.print(&serde_json::json!({"username": username, "unlocked": true}), |_| {
                        format!("{username} is unlocked; their failed attempts are forgotten")
                    })?;
                }
                UserCommand::SetPassword {
                    username,
                    password_stdin,
                    mfa,
                } => {
                    let pw = password(password_stdin, !password_stdin)?;
                    let (who, pw) = (&username, &pw);
                    crate::cli_mfa::after_step_up(&mfa, &c, |c| async move { c.set_password(who, pw).await }).await?;
                    ctx.print(&serde_json::json!({"username": username, "password_set": true}), |_| {
                        format!("password set for {username}; their other sessions ended")
                    })?;
                }
            }
        }
        AdminCommand::Group(g) => {
            let c = ctx.client()?;
            match g {
                GroupCommand::List => {
                    let groups = c.groups().await?;
                    ctx.print(&groups, |l| {
                        let rows = l
                            .iter()
                            .map(|g| {
                                vec![
                                    g.name.to_string(),
                                    g.members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
                                ]
                            })
                            .collect();
                        output::table(&["GROUP", "MEMBERS"], rows)
                    })?;
                }
                GroupCommand::Add { group, username } => {
                    let g = c.set_member(&group, &username, true).await?;
                    ctx.print(&g, |g| format!("{username} is now in {}", g.name))?;
                }
                GroupCommand::Remove { group, username } => {
                    let g = c.set_member(&group, &username, false).await?;
                    ctx.print(&g, |g| format!("{username} is no longer in {}", g.name))?;
                }
            }
        }
        AdminCommand::Resource(r) => {
            let c = ctx.client()?;
            match r {
                ResourceCommand::List => {
                    let list = c.resources().await?;
                    ctx.print(&list, |l| {
                        let rows = l
                            .iter()
                            .map(|v| {
                                vec![
                                    v.resource.name.to_string(),
                                    v.resource.kind.clone(),
                                    v.resource.roles.keys().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
                                    v.upstream_credential.clone().unwrap_or_else(|| "-".into()),
                                ]
                            })
                            .collect();
                        output::table(&["RESOURCE", "KIND", "ROLES", "UPSTREAM PASSWORD"], rows)
                    })?;
                }
                ResourceCommand::Apply { file } => {
                    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let resource: Resource = if file.extension().is_some_and(|e| e == "json") {
                        serde_json::from_str(&text).with_context(|| format!("{} is not a valid resource", file.display()))?
                    } else {
                        toml::from_str(&text).with_context(|| format!("{} is not a valid resource", file.display()))?
                    };
                    let v = c.put_resource(&resource).await?;
                    ctx.print(&v, |v| format!("resource {} saved", v.resource.name))?;
                }
                ResourceCommand::Delete { name } => {
                    c.delete_resource(&name).await?;
                    ctx.print(&serde_json::json!({"deleted": name}), |_| format!("resource {name} deleted"))?;
                }
                ResourceCommand::SetPassword {
                    name,
                    role,
                    password_stdin,
                } => {
                    let pw = password(password_stdin, !password_stdin)?;
                    c.set_resource_credential(&name, role.as_deref(), &pw).await?;
                    let whose = role.as_ref().map_or_else(|| name.clone(), |r| format!("{name} role {r}"));
                    ctx.print(&serde_json::json!({"resource": name, "role": role, "credential": "sealed"}), |_| {
                        format!("upstream password for {whose} stored (sealed); new sessions log in with it")
                    })?;
                }
                ResourceCommand::ClearPassword { name, role } => {
                    c.clear_resource_credential(&name, role.as_deref()).await?;
                    let whose = role.as_ref().map_or_else(|| name.clone(), |r| format!("{name} role {r}"));
                    ctx.print(
                        &serde_json::json!({"resource": name, "role": role, "credential": "removed"}),
                        |_| format!("stored upstream password for {whose} removed"),
                    )?;
                }
                ResourceCommand::Check { name } => {
                    let check = c.check_resource(&name).await?;
                    ctx.print(&check, output::resource_check)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `localhost` or a loopback address: the only place a token may go without TLS.
fn is_local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes what may not stand as is in a URI query value.
fn uri_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every argument says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{here} (the command itself)"));
                }
                walk(sub, &here, missing);
            }
        }
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        walk(&Cli::command(), "jitgate", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    #[test]
    fn serve_help_leaves_out_the_client_flags_that_other_verbs_keep() {
        let help = |path: &[&str]| {
            let args = ["jitgate"].iter().chain(path).chain(&["--help"]).copied();
            let e = Cli::command().try_get_matches_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            e.to_string()
        };
        let serve = help(&["serve"]);
        assert!(serve.contains("--config"), "{serve}");
        assert!(!serve.contains("--server") && !serve.contains("--json"), "{serve}");
        let requests = help(&["requests"]);
        assert!(requests.contains("--server") && requests.contains("--json"), "{requests}");
        // Hidden is not removed: a stray `--json` after `serve` still parses as before.
        assert!(Cli::command().try_get_matches_from(["jitgate", "serve", "--json"]).is_ok());
    }

    /// Every `jitgate ...` command in the README's shell blocks is one the CLI accepts, so the
    /// README cannot drift from the flags and verbs that exist.
    #[test]
    fn every_command_in_the_readme_parses() {
        let readme = include_str!("../../../README.md");
        let commands = readme_commands(readme);
        assert!(commands.len() > 40, "found only {} commands in the README", commands.len());
        let mut bad = Vec::new();
        for words in &commands {
            if let Err(e) = Cli::command().try_get_matches_from(words) {
                use clap::error::ErrorKind;
                if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    bad.push(format!("{}\n    {}", words.join(" "), e.to_string().lines().next().unwrap_or("")));
                }
            }
        }
        assert!(bad.is_empty(), "README commands the CLI refuses:\n{}", bad.join("\n"));
    }

    /// The `jitgate` invocations in the README's ```sh blocks, as words: continuations joined,
    /// `$(...)` replaced by a placeholder (and its own `jitgate` calls taken too), comments cut,
    /// pipelines and `;`/`&&` lists split, leading `VAR=value` words dropped.
    fn readme_commands(readme: &str) -> Vec<Vec<String>> {
        let mut lines = Vec::new();
        let mut in_sh = false;
        let mut pending = String::new();
        for line in readme.lines() {
            if line.starts_with("```") {
                in_sh = !in_sh && line.trim() == "```sh";
                continue;
            }
            if !in_sh {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(head) => pending.push_str(head),
                None => {
                    pending.push_str(line);
                    lines.push(std::mem::take(&mut pending));
                }
            }
        }
        let mut out = Vec::new();
        for line in lines {
            let mut pieces = vec![line];
            while let Some(piece) = pieces.pop() {
                let (outer, inner) = take_substitutions(&piece);
                pieces.extend(inner);
                for segment in split_commands(&outer) {
                    let Some(mut words) = shlex::split(&segment) else {
                        panic!("cannot split README line: {segment}")
                    };
                    while words.first().is_some_and(|w| w.contains('=') && !w.starts_with('-')) {
                        words.remove(0);
                    }
                    if words.first().is_some_and(|w| w == "jitgate") {
                        out.push(words);
                    }
                }
            }
        }
        out
    }

    /// `a $(b) c` -> (`a X c`, [`b`]), for nested parentheses too.
    fn take_substitutions(s: &str) -> (String, Vec<String>) {
        let (mut outer, mut inner) = (String::new(), Vec::new());
        let mut rest = s;
        while let Some(at) = rest.find("$(") {
            outer.push_str(&rest[..at]);
            let body = &rest[at + 2..];
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(body.len(), |(i, _)| i);
            inner.push(body[..end].to_owned());
            outer.push('X');
            rest = body.get(end + 1..).unwrap_or("");
        }
        outer.push_str(rest);
        (outer, inner)
    }

    /// Splits at `|`, `;` and `&&` outside quotes and drops a `#` comment.
    fn split_commands(s: &str) -> Vec<String> {
        let (mut out, mut cur, mut quote) = (Vec::new(), String::new(), None::<char>);
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    cur.push(c);
                }
                (Some(_), c) => cur.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    cur.push(c);
                }
                (None, '#') if cur.is_empty() || cur.ends_with(char::is_whitespace) => break,
                (None, '|' | ';') => out.push(std::mem::take(&mut cur)),
                (None, '&') if chars.peek() == Some(&'&') => {
                    chars.next();
                    out.push(std::mem::take(&mut cur));
                }
                (None, c) => cur.push(c),
            }
        }
        out.push(cur);
        out.into_iter().filter(|s| !s.trim().is_empty()).collect()
    }
}
