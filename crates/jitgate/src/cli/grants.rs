//! `jitgate grants` and `jitgate revoke`: the leases approved requests made.

use super::context::Ctx;
use crate::output;
use anyhow::Result;
use clap::Args;
use jitgate_client::ListParams;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct ListArgs {
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
}

#[derive(Args, Debug)]
pub(super) struct RevokeArgs {
    /// The grant's id (grt_…).
    id: String,
    /// Why it ends early (mandatory, on the record).
    #[arg(long)]
    reason: String,
}

pub(super) async fn list(ctx: &Ctx, args: ListArgs) -> Result<ExitCode> {
    let ListArgs {
        all,
        status,
        resource,
        limit,
    } = args;
    let params = ListParams {
        scope: Some(if all { "all" } else { "mine" }.into()),
        status,
        resource,
        limit: Some(limit),
    };
    let list = ctx.client()?.grants(&params).await?;
    ctx.print(&list, |l| output::grants(l))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn revoke(ctx: &Ctx, args: RevokeArgs) -> Result<ExitCode> {
    let RevokeArgs { id, reason } = args;
    let g = ctx.client()?.revoke(&id, &reason).await?;
    ctx.print(&g, output::grant)?;
    Ok(ExitCode::SUCCESS)
}
