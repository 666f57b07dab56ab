//! Signing in through an identity provider: the sign-in page's "Sign in with ..." buttons lead
//! here, the provider sends the browser back to `/sso/callback`, and a signed-in person can
//! prove themselves again at the provider (a step-up). The same calls as the CLI's
//! ([`jitgate_server::services::sso`]); what differs is the cookie that ties a sign-in to the
//! browser that started it.

use crate::security::local_path;
use crate::visitor::{render_with, Change, Chrome, ErrorPage, PageError};
use crate::Web;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use jitgate_server::routes::ClientAddr as Peer;
use jitgate_server::services::sso::{Finished, Return};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "sso_done.html")]
struct Continue {
    chrome: Chrome,
    next: String,
    message: String,
}

fn refused(web: &Web, jar: CookieJar, status: StatusCode, message: String) -> Result<Response, PageError> {
    let (jar, csrf) = web.presession_token(jar);
    let page = ErrorPage {
        chrome: Chrome::anonymous("Sign-in refused", csrf),
        heading: "Sign-in refused".into(),
        message,
        status: status.as_u16(),
    };
    Ok((web.without_sso_binding(jar), render_with(status, &page)?).into_response())
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

/// "Sign in with ...": off to the provider, with a cookie that only this browser holds.
pub(crate) async fn start(
    State(web): State<Web>,
    peer: Peer,
    jar: CookieJar,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
) -> Result<Response, PageError> {
    if let Err(e) = web.app.limits.logins.check_http(peer.0) {
        return refused(&web, jar, jitgate_server::routes::status_of(e.kind), e.message);
    }
    let (jar, binding) = web.with_sso_binding(jar);
    let back = Return::Web {
        next: local_path(q.next.as_deref()),
        browser: jitgate_auth::token_hash(&binding),
    };
    match web.app.sso().start(&provider, back).await {
        Ok(url) => Ok((jar, Redirect::to(&url)).into_response()),
        Err(e) => refused(&web, jar, jitgate_server::routes::status_of(e.kind), e.message),
    }
}

#[derive(Deserialize)]
pub(crate) struct StepUpForm {
    next: Option<String>,
}

/// A signed-in person proves themselves again at the provider.
pub(crate) async fn step_up(
    State(web): State<Web>,
    Path(provider): Path<String>,
    change: Change<StepUpForm>,
) -> Result<Response, PageError> {
    let Change { visitor: v, form } = change;
    let jar = CookieJar::new();
    let (jar, binding) = web.with_sso_binding(jar);
    let back = Return::StepUp {
        session: v.caller.session.token_hash.clone(),
        next: local_path(form.next.as_deref()),
        browser: jitgate_auth::token_hash(&binding),
    };
    let url = web.app.sso().start(&provider, back).await?;
    Ok((jar, Redirect::to(&url)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Back from the provider.
pub(crate) async fn callback(
    State(web): State<Web>,
    peer: Peer,
    jar: CookieJar,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    if let Err(e) = web.app.limits.logins.check_http(peer.0) {
        return refused(&web, jar, jitgate_server::routes::status_of(e.kind), e.message);
    }
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return refused(
            &web,
            jar,
            StatusCode::UNAUTHORIZED,
            format!("the identity provider said {error}: {detail}"),
        );
    }
    let (Some(state), Some(code)) = (q.state, q.code) else {
        return refused(&web, jar, StatusCode::BAD_REQUEST, "the provider sent no code or state".into());
    };
    let binding = web.sso_binding_of(&jar).map(str::to_owned);
    let app = web.app.clone();
    let finished = jitgate_server::routes::to_the_end(async move { app.sso().finish(&state, &code, binding.as_deref()).await }).await;
    let jar = web.without_sso_binding(jar);
    // The way back from the provider is a cross-site navigation, on which the browser holds
    // back SameSite=Strict cookies (the session's) for the whole redirect chain: a page of our
    // own moves on, so the next request is same-site and carries the new session.
    let onward = |jar: CookieJar, next: String, message: &str| -> Result<Response, PageError> {
        let page = Continue {
            chrome: Chrome::anonymous("Signed in", String::new()),
            next,
            message: message.to_owned(),
        };
        Ok((jar, render_with(StatusCode::OK, &page)?).into_response())
    };
    match finished {
        Ok(Finished::Web { session, next }) => {
            let max_age = ((session.expires_at.as_millis() - web.app.now().as_millis()) / 1000).max(1);
            let jar = web.with_session(jar, session.token.expose(), max_age);
            onward(jar, next, "Signed in.")
        }
        Ok(Finished::SteppedUp { next }) => onward(jar, next, "Confirmed: your second factor counts again for a while."),
        Ok(Finished::Cli { redirect }) => Ok((jar, Redirect::to(&redirect)).into_response()),
        Err(e) => refused(&web, jar, jitgate_server::routes::status_of(e.kind), e.message),
    }
}
