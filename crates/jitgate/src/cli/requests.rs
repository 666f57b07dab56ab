//! Asking for access and deciding on it: `resources`, `request`, `break-glass`, `ack`,
//! `notifications`, `requests`, `show`, `approve`, `deny`, `cancel`.

use super::context::Ctx;
use super::second_factor::{with_second_factor, MfaArgs};
use crate::output;
use anyhow::{anyhow, Result};
use clap::Args;
use jitgate_api::CreateRequestBody;
use jitgate_client::ListParams;
use jitgate_core::Timestamp;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub(super) struct RequestArgs {
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
}

#[derive(Args, Debug)]
pub(super) struct ExtendArgs {
    /// The grant to extend (`jitgate grants`); it must be yours and still live.
    grant: String,
    /// How much longer, like 30m (the role's default when absent).
    #[arg(long = "for")]
    duration: Option<String>,
    /// Why you need more time (approvers see it).
    #[arg(long, default_value = "")]
    reason: String,
    /// A ticket reference, like INC-123.
    #[arg(long)]
    ticket: Option<String>,
    #[command(flatten)]
    mfa: MfaArgs,
}

#[derive(Args, Debug)]
pub(super) struct BreakGlassArgs {
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
}

#[derive(Args, Debug)]
pub(super) struct AckArgs {
    /// The break-glass request's id.
    id: String,
    /// A note for the record.
    #[arg(long, default_value = "")]
    comment: String,
}

#[derive(Args, Debug)]
pub(super) struct ListArgs {
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
}

#[derive(Args, Debug)]
pub(super) struct ShowArgs {
    /// The request's id (req_…).
    id: String,
}

#[derive(Args, Debug)]
pub(super) struct ApproveArgs {
    /// The request's id (req_…).
    id: String,
    /// A note for the requester and the record.
    #[arg(long, default_value = "")]
    comment: String,
    #[command(flatten)]
    mfa: MfaArgs,
}

#[derive(Args, Debug)]
pub(super) struct DenyArgs {
    /// The request's id (req_…).
    id: String,
    /// Why (the requester sees it).
    #[arg(long, default_value = "")]
    comment: String,
    #[command(flatten)]
    mfa: MfaArgs,
}

#[derive(Args, Debug)]
pub(super) struct CancelArgs {
    /// The request's id (req_…).
    id: String,
}

pub(super) async fn resources(ctx: &Ctx) -> Result<ExitCode> {
    let list = ctx.client()?.resources().await?;
    ctx.print(&list, |l| output::requestable(l))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn request(ctx: &Ctx, args: RequestArgs) -> Result<ExitCode> {
    let RequestArgs {
        resource,
        role,
        duration,
        reason,
        ticket,
        start_at,
        extends,
        mfa,
    } = args;
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
    Ok(ExitCode::SUCCESS)
}

/// `jitgate extend GRANT --for 30m --reason ...`: a request for the same role on the same
/// resource that starts where the grant ends. Approved (by people or by a policy), its grant
/// takes over at that moment and open gateway sessions carry on.
pub(super) async fn extend(ctx: &Ctx, args: ExtendArgs) -> Result<ExitCode> {
    let ExtendArgs {
        grant,
        duration,
        reason,
        ticket,
        mfa,
    } = args;
    let g = ctx.client()?.grant(&grant).await?;
    let body = CreateRequestBody {
        resource: g.resource.to_string(),
        role: g.role.to_string(),
        reason,
        ticket,
        duration,
        start_at: None,
        extends: Some(g.id.clone()),
        mfa: None,
        break_glass: false,
    };
    let r = send_request(ctx, body, &mfa).await?;
    let approved = r.status == jitgate_core::request::RequestStatus::Approved;
    let until = g
        .ends_at
        .saturating_add(std::time::Duration::from_secs(u64::try_from(r.duration_secs).unwrap_or(0)));
    let out = serde_json::json!({"request": r, "grant": g.id, "approved": approved, "until": approved.then_some(until)});
    ctx.print(&out, |_| {
        if approved {
            format!(
                "{}: extension approved; your access to {} on {} continues until {} (sessions carry on)",
                r.id,
                g.role,
                g.resource,
                output::when(until)
            )
        } else {
            format!(
                "{}: extension of {} is pending approval (expires {} unless approved)
show it with: jitgate show {}",
                r.id,
                g.id,
                output::when(r.expires_at),
                r.id
            )
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn break_glass(ctx: &Ctx, args: BreakGlassArgs) -> Result<ExitCode> {
    let BreakGlassArgs {
        resource,
        role,
        duration,
        reason,
        ticket,
        mfa,
    } = args;
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
    Ok(ExitCode::SUCCESS)
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

pub(super) async fn acknowledge(ctx: &Ctx, args: AckArgs) -> Result<ExitCode> {
    let AckArgs { id, comment } = args;
    let r = ctx.client()?.acknowledge(&id, &comment).await?;
    ctx.print(&r, |r| format!("{} acknowledged", r.id))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn notifications(ctx: &Ctx) -> Result<ExitCode> {
    let list = ctx.client()?.notifications().await?;
    ctx.print(&list, |l| output::notifications(l))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list(ctx: &Ctx, args: ListArgs) -> Result<ExitCode> {
    let ListArgs {
        review,
        all,
        status,
        resource,
        limit,
    } = args;
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
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn show(ctx: &Ctx, args: ShowArgs) -> Result<ExitCode> {
    let d = ctx.client()?.request(&args.id).await?;
    ctx.print(&d, output::detail)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn approve(ctx: &Ctx, args: ApproveArgs) -> Result<ExitCode> {
    let ApproveArgs { id, comment, mfa } = args;
    review(ctx, &id, true, &comment, &mfa).await
}

pub(super) async fn deny(ctx: &Ctx, args: DenyArgs) -> Result<ExitCode> {
    let DenyArgs { id, comment, mfa } = args;
    review(ctx, &id, false, &comment, &mfa).await
}

async fn review(ctx: &Ctx, id: &str, approve: bool, comment: &str, mfa: &MfaArgs) -> Result<ExitCode> {
    let c = ctx.client()?;
    let d = with_second_factor(mfa, |proof| c.review(id, approve, comment, proof)).await?;
    ctx.print(&d, |d| review_summary(if approve { "approved" } else { "denied" }, d))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(ctx: &Ctx, args: CancelArgs) -> Result<ExitCode> {
    let r = ctx.client()?.cancel(&args.id).await?;
    ctx.print(&r, |r| format!("{} cancelled", r.id))?;
    Ok(ExitCode::SUCCESS)
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
