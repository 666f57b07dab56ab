//! `jitgate policy check` (offline: the config and its `*.cedar` files) and
//! `jitgate policy explain` (through the server, which knows groups and live grants).

use super::context::Ctx;
use crate::output;
use anyhow::{anyhow, Result};
use clap::Subcommand;
use jitgate_api::ExplainBody;
use jitgate_core::Timestamp;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub(super) enum PolicyCommand {
    /// Validate the config file's Cedar policies against jitgate's schema, without a server.
    /// Exits 1 listing each problem as file:line:column.
    Check {
        /// The configuration file (its [policy] section says where the .cedar files are).
        #[arg(long, env = "JITGATE_CONFIG")]
        config: PathBuf,
    },
    /// Each action's decision for a person, role and duration, with the ids of the deciding
    /// policies.
    Explain {
        /// The person the decisions are for.
        #[arg(long)]
        user: String,
        /// The resource.
        #[arg(long)]
        resource: String,
        /// The role on it.
        #[arg(long)]
        role: String,
        /// How long the access would last, like 30m (the role's default when absent).
        #[arg(long = "for")]
        duration: Option<String>,
        /// Decide at this moment (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// The access would begin at this moment (RFC 3339), as a request with --start-at
        /// would: the clocks policies see are this moment's.
        #[arg(long)]
        start_at: Option<String>,
        /// The reason the request would give.
        #[arg(long, default_value = "")]
        reason: String,
        /// The ticket the request would give.
        #[arg(long)]
        ticket: Option<String>,
    },
}

pub(super) async fn run(ctx: &Ctx, cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { config } => {
            let settings = jitgate_server::Settings::from_file(&config).map_err(|e| anyhow!("invalid configuration: {e}"))?;
            match jitgate_server::policy::load_engine(&settings) {
                Ok(engine) => {
                    let out = serde_json::json!({
                        "ok": true,
                        "policies": engine.policy_ids(),
                        "time_zone": engine.time_zone(),
                        "dir": settings.policy_dir,
                    });
                    ctx.print(&out, |_| {
                        format!(
                            "policies OK: {} from files in {}, time zone {}",
                            engine.policy_ids().len(),
                            settings.policy_dir.as_ref().map_or("-".into(), |d| d.display().to_string()),
                            engine.time_zone()
                        )
                    })?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let out = serde_json::json!({"ok": false, "problems": e.0});
                    ctx.print(&out, |_| e.to_string())?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PolicyCommand::Explain {
            user,
            resource,
            role,
            duration,
            at,
            start_at,
            reason,
            ticket,
        } => {
            let time = |flag: &str, s: String| Timestamp::parse_rfc3339(&s).map_err(|e| anyhow!("--{flag}: {e}"));
            let at = at.map(|s| time("at", s)).transpose()?;
            let start_at = start_at.map(|s| time("start-at", s)).transpose()?;
            let body = ExplainBody {
                user,
                resource,
                role,
                duration,
                at,
                start_at,
                reason,
                ticket,
            };
            let e = ctx.client()?.explain(&body).await?;
            ctx.print(&e, output::explanation)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
