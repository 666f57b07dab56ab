//! `jitgate admin …`: bootstrap, policy reload, users, groups and resources.

use super::context::{password, prompt_secret, Ctx};
use super::second_factor::{after_step_up, MfaArgs};
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use jitgate_api::{BootstrapBody, CreateUserBody};
use jitgate_core::names::Username;
use jitgate_core::policy::Resource;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum AdminCommand {
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
    /// The notification channels and their messages: what is pending, sent or failed.
    Notifications(NotificationsArgs),
    /// Notification channels' secrets (webhook signing keys, Slack tokens, SMTP passwords).
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Single sign-on providers: their client secrets, and what an ID token maps to.
    #[command(subcommand)]
    Oidc(OidcCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum OidcCommand {
    /// Store a provider's client secret, sealed (asked for at a terminal, or read with
    /// --secret-stdin; never on argv).
    SetSecret {
        /// The provider's name (`[[auth.oidc]] name`).
        provider: String,
        /// Read the secret from the first line of standard input.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Check an ID token against a provider's config and show its claims, the user and groups
    /// they map to and whether the sign-in counts as a second factor (the token is read from
    /// standard input: paste it, or pipe it).
    Test {
        /// The provider's name.
        provider: String,
    },
}

#[derive(clap::Args, Debug)]
pub(super) struct NotificationsArgs {
    #[command(subcommand)]
    action: Option<NotificationsAction>,
    /// Only messages that were given up on.
    #[arg(long, conflicts_with = "pending")]
    failed: bool,
    /// Only messages still to be sent.
    #[arg(long)]
    pending: bool,
    /// Only this channel's messages.
    #[arg(long)]
    channel: Option<String>,
    /// At most this many messages, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

#[derive(Subcommand, Debug)]
pub(super) enum NotificationsAction {
    /// Queue a failed message again, its attempts counted afresh.
    Retry {
        /// The message's id (`ntf_...`).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum ChannelCommand {
    /// Store a channel's secret, sealed with the server's secrets key (asked for at a terminal,
    /// or read with --secret-stdin; never on argv).
    SetSecret {
        /// The channel's name (`[[notifications.channels]] name`).
        name: String,
        /// Read the secret from the first line of standard input.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// Remove a channel's stored secret (its messages then fail until one is set).
    ClearSecret {
        /// The channel's name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum UserCommand {
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
    /// Set where a user's notifications by e-mail go (and how Slack finds them).
    SetEmail {
        /// Whose address.
        username: String,
        /// The address; omit it with --clear to remove the one set.
        #[arg(required_unless_present = "clear")]
        email: Option<String>,
        /// Remove the address.
        #[arg(long, conflicts_with = "email")]
        clear: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum GroupCommand {
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
pub(super) enum ResourceCommand {
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

pub(super) async fn run(ctx: &Ctx, cmd: AdminCommand) -> Result<ExitCode> {
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
                    ctx.print(&users, |l| output::users(l))?;
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
                    let u = after_step_up(&mfa, &c, |c| async move { c.create_user(body).await }).await?;
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
                UserCommand::SetEmail { username, email, clear: _ } => {
                    c.set_user_email(&username, email.as_deref()).await?;
                    ctx.print(&serde_json::json!({"username": username, "email": email}), |_| match &email {
                        Some(e) => format!("{username}'s notifications by e-mail go to {e}"),
                        None => format!("{username} has no e-mail address any more"),
                    })?;
                }
                UserCommand::SetPassword {
                    username,
                    password_stdin,
                    mfa,
                } => {
                    let pw = password(password_stdin, !password_stdin)?;
                    let (who, pw) = (&username, &pw);
                    after_step_up(&mfa, &c, |c| async move { c.set_password(who, pw).await }).await?;
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
                    ctx.print(&groups, |l| output::groups(l))?;
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
                    ctx.print(&list, |l| output::resources(l))?;
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
        AdminCommand::Notifications(args) => {
            let c = ctx.client()?;
            match args.action {
                Some(NotificationsAction::Retry { id }) => {
                    c.retry_notification(&id).await?;
                    ctx.print(&serde_json::json!({"id": id, "status": "pending"}), |_| {
                        format!("{id} is queued again; it is sent within a second if its receiver answers")
                    })?;
                }
                None => {
                    let status = if args.failed {
                        Some("failed")
                    } else if args.pending {
                        Some("pending")
                    } else {
                        None
                    };
                    let overview = c.notifications_overview(status, args.channel.as_deref(), args.limit).await?;
                    ctx.print(&overview, output::outbox)?;
                }
            }
        }
        AdminCommand::Oidc(cmd) => {
            let c = ctx.client()?;
            match cmd {
                OidcCommand::SetSecret { provider, secret_stdin } => {
                    let secret = if secret_stdin {
                        super::context::read_stdin_line("secret")?
                    } else {
                        prompt_secret(&format!("Client secret for provider {provider}: "))?
                    };
                    c.set_oidc_secret(&provider, &secret).await?;
                    ctx.print(&serde_json::json!({"provider": provider, "secret": "sealed"}), |_| {
                        format!("client secret for provider {provider} stored (sealed)")
                    })?;
                }
                OidcCommand::Test { provider } => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("Paste the ID token and press Enter:");
                    }
                    let token = super::context::read_stdin_line("ID token")?;
                    let seen = c.oidc_test(&provider, token.trim()).await?;
                    ctx.print(&seen, output::oidc_test)?;
                }
            }
        }
        AdminCommand::Channel(cmd) => {
            let c = ctx.client()?;
            match cmd {
                ChannelCommand::SetSecret { name, secret_stdin } => {
                    let secret = if secret_stdin {
                        super::context::read_stdin_line("secret")?
                    } else {
                        prompt_secret(&format!("Secret for channel {name}: "))?
                    };
                    c.set_channel_secret(&name, &secret).await?;
                    ctx.print(&serde_json::json!({"channel": name, "secret": "sealed"}), |_| {
                        format!("secret for channel {name} stored (sealed); its next messages use it")
                    })?;
                }
                ChannelCommand::ClearSecret { name } => {
                    c.clear_channel_secret(&name).await?;
                    ctx.print(&serde_json::json!({"channel": name, "secret": "removed"}), |_| {
                        format!("secret for channel {name} removed")
                    })?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
