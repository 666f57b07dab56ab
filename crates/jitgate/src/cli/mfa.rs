//! `jitgate mfa …`: status, step-up, TOTP, recovery codes, passkeys.

use super::context::{read_stdin_line, Ctx};
use super::second_factor::{after_step_up, prompt_for_factor, MfaArgs};
use crate::output;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum MfaCommand {
    /// Your factors, recovery codes left, and how long your last proof stays fresh.
    Status,
    /// Step up: prove a factor now, so the next privileged actions need no code for a while.
    Verify {
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Authenticator-app codes (TOTP).
    #[command(subcommand)]
    Totp(TotpCommand),
    /// Ten new one-time recovery codes; the old ones stop working.
    RecoveryCodes {
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Passkeys and security keys (registered from a browser; listed and removed here).
    #[command(subcommand)]
    Webauthn(WebauthnCommand),
}

#[derive(Subcommand, Debug)]
pub(super) enum TotpCommand {
    /// Show a QR code to scan, then ask for the first code to switch it on. With --json, prints
    /// the secret and URI and leaves the first code to `jitgate mfa totp confirm`.
    Enroll {
        #[command(flatten)]
        mfa: MfaArgs,
    },
    /// Switch on a started enrolment with the app's current code.
    Confirm {
        /// The code the authenticator app shows now.
        code: String,
    },
    /// Remove the TOTP factor.
    Remove {
        #[command(flatten)]
        mfa: MfaArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum WebauthnCommand {
    /// Your passkeys and security keys.
    List,
    /// Remove one (a fresh second factor is asked for).
    Remove {
        /// The passkey's id, as `list` shows it.
        id: String,
        #[command(flatten)]
        mfa: MfaArgs,
    },
}

fn terminal_qr(uri: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(uri.as_bytes()).context("cannot draw the QR code")?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

fn codes_text(codes: &[jitgate_api::SecretText]) -> String {
    let mut s = String::from("recovery codes (each works once; keep them somewhere safe, they are not shown again):\n");
    for c in codes {
        s.push_str(&format!("    {}\n", c.expose()));
    }
    s
}

pub(super) async fn run(ctx: &Ctx, cmd: MfaCommand) -> Result<ExitCode> {
    let c = ctx.client()?;
    match cmd {
        MfaCommand::Status => {
            let st = c.mfa_status().await?;
            ctx.print(&st, |s| {
                let mut out = format!(
                    "totp: {}\npasskeys: {}\nrecovery codes left: {}",
                    if s.totp {
                        "on"
                    } else if s.totp_pending {
                        "waiting for its first code (jitgate mfa totp confirm CODE)"
                    } else {
                        "off"
                    },
                    if s.passkeys.is_empty() {
                        "none".to_owned()
                    } else {
                        s.passkeys.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", ")
                    },
                    s.recovery_codes_left
                );
                match s.fresh_until {
                    Some(t) => out.push_str(&format!("\nstep-up fresh until {}", output::when(t))),
                    None => out.push_str("\nno fresh step-up"),
                }
                if s.required {
                    out.push_str("\nthis server requires a second factor before requests and reviews");
                }
                out
            })?;
        }
        MfaCommand::Verify { mfa } => {
            let proof = match mfa.proof()? {
                Some(p) => p,
                None if std::io::stdin().is_terminal() => prompt_for_factor()?,
                None => bail!("give the code with --otp CODE or --recovery-code"),
            };
            let up = c.mfa_verify(&proof).await?;
            ctx.print(&up, |u| {
                format!("second factor ({}) accepted; fresh until {}", u.method, output::when(u.fresh_until))
            })?;
        }
        MfaCommand::Totp(TotpCommand::Enroll { mfa }) => {
            let e = after_step_up(&mfa, &c, |c| async move { c.totp_enrol().await }).await?;
            if ctx.json || !std::io::stdin().is_terminal() {
                ctx.print(&e, |e| {
                    format!(
                        "secret: {}\nuri: {}\nthen: jitgate mfa totp confirm CODE",
                        e.secret.expose(),
                        e.otpauth_uri.expose()
                    )
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}", terminal_qr(e.otpauth_uri.expose())?);
            println!("Scan this with your authenticator app, or type the secret: {}", e.secret.expose());
            eprint!("Code from the app: ");
            std::io::Write::flush(&mut std::io::stderr())?;
            let code = read_stdin_line("code")?;
            let added = c.totp_confirm(code.trim()).await?;
            println!("TOTP is on.");
            if let Some(codes) = &added.recovery_codes {
                print!("{}", codes_text(codes));
            }
        }
        MfaCommand::Totp(TotpCommand::Confirm { code }) => {
            let added = c.totp_confirm(code.trim()).await?;
            ctx.print(&added, |a| {
                let mut s = "TOTP is on.".to_owned();
                if let Some(codes) = &a.recovery_codes {
                    s.push('\n');
                    s.push_str(&codes_text(codes));
                }
                s
            })?;
        }
        MfaCommand::Totp(TotpCommand::Remove { mfa }) => {
            after_step_up(&mfa, &c, |c| async move { c.totp_remove().await }).await?;
            ctx.print(&serde_json::json!({"totp": false}), |_| "TOTP factor removed".into())?;
        }
        MfaCommand::RecoveryCodes { mfa } => {
            let codes = after_step_up(&mfa, &c, |c| async move { c.new_recovery_codes().await }).await?;
            ctx.print(&codes, |r| codes_text(&r.codes))?;
        }
        MfaCommand::Webauthn(WebauthnCommand::List) => {
            let st = c.mfa_status().await?;
            ctx.print(&st.passkeys, |list| output::passkeys(list))?;
        }
        MfaCommand::Webauthn(WebauthnCommand::Remove { id, mfa }) => {
            after_step_up(&mfa, &c, |c| {
                let id = id.clone();
                async move { c.passkey_remove(&id).await }
            })
            .await?;
            ctx.print(&serde_json::json!({"removed": id}), |_| format!("passkey {id} removed"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
