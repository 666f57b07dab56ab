//! `jitgate login --sso`: signing in through the identity provider in a browser, as `gh auth
//! login` does. The CLI listens on a loopback port; the server sends the browser there after
//! the provider, with a one-time hand-off code that only this CLI can trade (it sent the
//! SHA-256 of a verifier first and shows the verifier now), so the session token never passes
//! through the browser.

use super::context::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use axum::extract::Query;
use axum::response::Html;
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::Digest;
use std::collections::HashMap;
use std::time::Duration;

/// How long the CLI waits for the person to finish at the provider.
const WAIT_FOR_BROWSER: Duration = Duration::from_secs(300);

/// Opens `url` in the person's browser: `$BROWSER` if set, else `xdg-open`; failing that, the
/// printed URL is the way.
fn open_browser(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    let started = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if started.is_err() {
        eprintln!("(could not start {opener}: open the address yourself)");
    }
}

/// Signs in through `provider` (the only one, when not named): in a browser on this machine, or
/// with `device` a code typed at the provider on any other; the session.
pub(super) async fn sign_in(ctx: &Ctx, provider: Option<&str>, no_browser: bool, device: bool) -> Result<jitgate_api::SessionToken> {
    let c = ctx.anonymous();
    let providers = c.sso_providers().await?;
    let names = || providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
    let provider = match provider {
        Some(p) if providers.iter().any(|x| x.name == p) => p.to_owned(),
        Some(p) => bail!(
            "{} has no sign-in provider {p:?} (it has: {})",
            ctx.server(),
            if providers.is_empty() { "none".into() } else { names() }
        ),
        None => match providers.as_slice() {
            [only] => only.name.clone(),
            [] => bail!("{} offers no single sign-on: log in with a user name and password", ctx.server()),
            _ => bail!(
                "{} has several sign-in providers: say which with --sso NAME ({})",
                ctx.server(),
                names()
            ),
        },
    };

    if device {
        return device_sign_in(&c, &provider).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on a loopback port for the browser")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = tokio::sync::mpsc::channel::<HashMap<String, String>>(1);
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let tx = tx.clone();
            async move {
                let ok = q.contains_key("code");
                let _ = tx.send(q).await;
                Html(if ok {
                    "<!doctype html><title>jitgate</title><h1>Signed in</h1><p>You can close this tab and go back to the terminal.</p>"
                } else {
                    "<!doctype html><title>jitgate</title><h1>Sign-in failed</h1><p>See the terminal.</p>"
                })
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let verifier = jitgate_auth::new_token("jgv");
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.expose_secret().as_bytes()));
    let started = c
        .sso_start(&jitgate_api::SsoStartBody {
            provider: provider.clone(),
            redirect: format!("http://127.0.0.1:{port}/callback"),
            challenge,
        })
        .await?;
    eprintln!("Sign in with {provider} in your browser:\n  {}", started.authorization_url);
    if !no_browser {
        open_browser(&started.authorization_url);
    }
    eprintln!("Waiting for the browser (up to {} minutes)...", WAIT_FOR_BROWSER.as_secs() / 60);
    let mut rx = rx;
    let back = tokio::time::timeout(WAIT_FOR_BROWSER, rx.recv())
        .await
        .map_err(|_| {
            anyhow!(
                "no sign-in came back within {} minutes; nothing changed",
                WAIT_FOR_BROWSER.as_secs() / 60
            )
        })?
        .ok_or_else(|| anyhow!("the loopback listener stopped"))?;
    server.abort();
    let Some(code) = back.get("code") else {
        let error = back.get("error").map_or("no code", String::as_str);
        bail!(
            "the sign-in did not finish: {error} {}",
            back.get("error_description").map_or("", String::as_str)
        );
    };
    Ok(c.sso_hand_off(code, verifier.expose_secret()).await?)
}

/// The device authorization grant: the person types a code at the provider from any device;
/// the CLI polls (each poll waits up to 20 s at the server) until they are done.
async fn device_sign_in(c: &jitgate_client::Client, provider: &str) -> Result<jitgate_api::SessionToken> {
    let started = c.sso_device_start(provider).await?;
    match &started.verification_uri_complete {
        Some(full) => eprintln!(
            "On any device, open:\n  {full}\n(or {} and type the code {})",
            started.verification_uri, started.user_code
        ),
        None => eprintln!(
            "On any device, open {} and type the code {}",
            started.verification_uri, started.user_code
        ),
    }
    eprintln!("Waiting for you to finish there (until {})...", started.expires_at);
    loop {
        match c.sso_device_poll(started.device_id.expose()).await? {
            jitgate_api::SsoDeviceOutcome::SignedIn(session) => return Ok(session),
            jitgate_api::SsoDeviceOutcome::Pending => {}
        }
    }
}
