//! `jitgate login`, `logout`, `password` and `whoami`: your own session and password.

use super::context::{password, prompt_secret, read_stdin_line, Ctx};
use super::second_factor::{login, with_second_factor, MfaArgs};
use crate::credentials;
use crate::output;
use anyhow::{bail, Result};
use clap::Args;
use jitgate_core::Timestamp;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct LoginArgs {
    /// User name (asked for when absent).
    #[arg(conflicts_with = "sso")]
    username: Option<String>,
    /// Sign in through the identity provider in your browser (the provider's name, when the
    /// server has several).
    #[arg(long, num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["password_stdin"])]
    sso: Option<String>,
    /// With --sso: only print the address to open (for a machine without a browser, or to
    /// open it elsewhere on this machine).
    #[arg(long, requires = "sso")]
    no_browser: bool,
    /// With --sso: sign in by typing a code at the provider on another device (no browser on
    /// this machine), where the provider offers it.
    #[arg(long, requires = "sso", conflicts_with = "no_browser")]
    device: bool,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    mfa: MfaArgs,
}

#[derive(Args, Debug)]
pub(super) struct PasswordArgs {
    /// Read the current password, then the new one, from the first two lines of standard
    /// input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    mfa: MfaArgs,
}

pub(super) async fn log_in(ctx: &Ctx, args: LoginArgs) -> Result<ExitCode> {
    let LoginArgs {
        username,
        sso,
        no_browser,
        device,
        password_stdin,
        mfa,
    } = args;
    if let Some(provider) = sso {
        let provider = Some(provider.as_str()).filter(|p| !p.is_empty());
        let session = super::sso::sign_in(ctx, provider, no_browser, device).await?;
        return report_login(ctx, &session);
    }
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
    report_login(ctx, &session)
}

fn report_login(ctx: &Ctx, session: &jitgate_api::SessionToken) -> Result<ExitCode> {
    let path = ctx.keep_session(session)?;
    #[derive(Serialize)]
    struct Out<'a> {
        username: &'a str,
        server: &'a str,
        expires_at: Timestamp,
        credentials: String,
    }
    let out = Out {
        username: session.username.as_str(),
        server: ctx.server(),
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
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn change_password(ctx: &Ctx, args: PasswordArgs) -> Result<ExitCode> {
    let PasswordArgs { password_stdin, mfa } = args;
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
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn log_out(ctx: &Ctx) -> Result<ExitCode> {
    if let Ok(c) = ctx.client() {
        // The token is forgotten even if the server cannot be told.
        if let Err(e) = c.logout().await {
            eprintln!("jitgate: the server did not confirm the logout: {e}");
        }
    }
    credentials::remove()?;
    ctx.print(&serde_json::json!({"logged_out": true}), |_| "logged out".into())?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn whoami(ctx: &Ctx) -> Result<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
}
