//! The second-factor handling every privileged verb shares: a code from `--otp` (single use, so
//! it may sit in argv or `JITGATE_OTP`), a recovery code from a prompt, or a prompt when the
//! server says a fresh factor is due.

use super::context::{prompt_secret, read_stdin_line, Ctx};
use anyhow::{bail, Result};
use clap::Args;
use jitgate_api::{LoginOutcome, MfaProof, SessionToken};
use jitgate_client::{session_of, Client, ClientError, Result as ClientResult};
use std::future::Future;
use std::io::IsTerminal;

#[derive(Args, Debug, Clone, Default)]
pub(super) struct MfaArgs {
    /// A code from your authenticator app, for roles and logins that need a second factor
    /// (asked for when needed and absent).
    #[arg(long, env = "JITGATE_OTP", hide_env_values = true)]
    otp: Option<String>,
    /// Use a recovery code instead (asked for; read from standard input with --json).
    #[arg(long, conflicts_with = "otp")]
    recovery_code: bool,
}

impl MfaArgs {
    pub(super) fn proof(&self) -> Result<Option<MfaProof>> {
        if let Some(code) = &self.otp {
            return Ok(Some(MfaProof::otp(code)));
        }
        if self.recovery_code {
            let code = if std::io::stdin().is_terminal() {
                prompt_secret("Recovery code: ")?
            } else {
                read_stdin_line("recovery code")?
            };
            return Ok(Some(MfaProof::recovery_code(&code)));
        }
        Ok(None)
    }
}

fn is_mfa_required(e: &ClientError) -> bool {
    e.code() == Some("mfa_required")
}

/// Asks at the terminal for a code: a TOTP code, or a recovery code when that is what was typed.
pub(super) fn prompt_for_factor() -> Result<MfaProof> {
    let code = prompt_secret("Second factor (authenticator code or recovery code): ")?;
    let code = code.trim();
    if jitgate_auth::recovery::looks_like_recovery_code(code) {
        Ok(MfaProof::recovery_code(code))
    } else {
        Ok(MfaProof::otp(code))
    }
}

/// Runs `call` with the factor the flags give; when the server answers that a fresh factor is
/// due and nobody gave one, asks at the terminal and tries once more.
pub(super) async fn with_second_factor<T, F, Fut>(args: &MfaArgs, mut call: F) -> Result<T>
where
    F: FnMut(Option<MfaProof>) -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let given = args.proof()?;
    let asked_before = given.is_some();
    match call(given).await {
        Err(e) if is_mfa_required(&e) && !asked_before && std::io::stdin().is_terminal() => {
            eprintln!("{e}");
            Ok(call(Some(prompt_for_factor()?)).await?)
        }
        other => Ok(other?),
    }
}

/// Password, then the second factor when the account has one.
pub(super) async fn login(ctx: &Ctx, username: &str, password: &str, args: &MfaArgs) -> Result<SessionToken> {
    let anon = ctx.anonymous();
    match anon.login_outcome(username, password, args.proof()?).await? {
        LoginOutcome::MfaRequired { ticket, methods, .. } => {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "this account needs a second factor ({}): pass --otp CODE or --recovery-code",
                    methods.join(", ")
                );
            }
            Ok(anon.login_mfa(ticket.expose(), prompt_for_factor()?).await?)
        }
        done => Ok(session_of(done)?),
    }
}

/// A change to one's own factors, which needs a fresh factor when one is enrolled: the proof
/// given (or asked for when the server wants one) steps the session up first.
pub(super) async fn after_step_up<T, F, Fut>(args: &MfaArgs, c: &Client, change: F) -> Result<T>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = ClientResult<T>>,
{
    let change = &change;
    with_second_factor(args, |proof| {
        let c = c.clone();
        async move {
            if let Some(p) = proof {
                c.mfa_verify(&p).await?;
            }
            change(c).await
        }
    })
    .await
}
