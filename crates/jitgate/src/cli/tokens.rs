//! `jitgate token …`: API tokens for scripts (which then set `JITGATE_TOKEN`).

use super::context::Ctx;
use anyhow::{bail, Result};
use clap::Subcommand;
use jitgate_api::{CreateTokenBody, TokenScope};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum TokenCommand {
    /// Make a token: scoped, expiring, shown once (asks for a fresh second factor when you have
    /// one: `jitgate mfa verify` first). Scripts send it as `JITGATE_TOKEN`.
    Create {
        /// What it is for.
        name: String,
        /// read, request, review, connect or admin (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// How long it lives, like 30d or 12h (30 days unless given).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Your tokens (with --all, everyone's: administrators).
    List {
        /// Everyone's tokens (administrators).
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id (tok_...).
        id: String,
    },
}

pub(super) async fn run(ctx: &Ctx, cmd: TokenCommand) -> Result<ExitCode> {
    let c = ctx.client()?;
    match cmd {
        TokenCommand::Create { name, scopes, expires } => {
            let mut parsed = Vec::new();
            for s in &scopes {
                match TokenScope::parse(s) {
                    Some(x) => parsed.push(x),
                    None => bail!("unknown scope {s:?}: read, request, review, connect or admin"),
                }
            }
            let made = c
                .create_token(&CreateTokenBody {
                    name,
                    scopes: parsed,
                    expires_in: expires,
                })
                .await?;
            ctx.print(&made, |m| {
                format!(
                    "token {} ({}) until {}; shown only now:\n{}",
                    m.details.id,
                    m.details.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    m.details.expires_at,
                    m.token.expose()
                )
            })?;
        }
        TokenCommand::List { all } => {
            let tokens = c.tokens(all).await?;
            ctx.print(&tokens, |ts| {
                if ts.is_empty() {
                    return "no tokens".into();
                }
                ts.iter()
                    .map(|t| {
                        let state = if t.revoked_at.is_some() { " (revoked)" } else { "" };
                        let scopes = t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                        format!("{}  {}  {}  {scopes}  until {}{state}", t.id, t.username, t.name, t.expires_at)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        TokenCommand::Revoke { id } => {
            c.revoke_token(&id).await?;
            ctx.print(&serde_json::json!({"id": id, "revoked": true}), |_| format!("token {id} revoked"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
