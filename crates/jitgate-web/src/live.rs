//! Live updates: a server-sent event stream that says "changed" when something people can see
//! was committed (a request, a decision, a grant starting or ending). The page's script then
//! fetches itself again and swaps in the parts marked `data-live`; the event carries nothing
//! but the word. It does tell every open page *that* something changed somewhere (timing,
//! not content): the page's own fetch then shows only what its reader may see.
//!
//! A stream is a connection held open, so it is bounded: it ends within seconds of its session
//! ending (signed out, disabled, idle, expired), one person holds at most
//! [`STREAMS_PER_PERSON`] of them, and all streams together at most a quarter of
//! `server.max_connections`, so open pages can never take the places the API needs. Past a
//! bound the page simply stops following changes (a reload still shows them).

use crate::visitor::PageError;
use crate::Web;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use jitgate_core::names::Username;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most one "changed" per this: a burst of changes (an approval's several events, many
/// grants ending together) costs each open page one fetch.
const AT_MOST_EVERY: Duration = Duration::from_millis(500);
/// How often a stream checks that its session still stands.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Open pages following changes, per person (tabs, devices).
pub(crate) const STREAMS_PER_PERSON: usize = 8;

/// The streams open now, per person and in all.
#[derive(Default)]
pub(crate) struct LiveStreams {
    open: Mutex<(usize, HashMap<Username, usize>)>,
}

/// One open stream's place; given back when the stream ends.
struct Place {
    streams: Arc<LiveStreams>,
    who: Username,
}

impl LiveStreams {
    fn take(self: &Arc<Self>, who: &Username, total_cap: usize) -> Option<Place> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = open.1.get(who).copied().unwrap_or(0);
        if open.0 >= total_cap || mine >= STREAMS_PER_PERSON {
            return None;
        }
        open.0 += 1;
        open.1.insert(who.clone(), mine + 1);
        Some(Place {
            streams: self.clone(),
            who: who.clone(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.who);
            }
        }
    }
}

/// What a stream carries between events.
struct Following {
    web: Web,
    token: String,
    changes: tokio::sync::watch::Receiver<u64>,
    check: tokio::time::Interval,
    _place: Place,
}

pub(crate) async fn events(State(web): State<Web>, jar: CookieJar) -> Result<Response, PageError> {
    let Some(token) = web.session_of(&jar).map(str::to_owned) else {
        return Err(PageError::SignIn("/".into()));
    };
    // Following changes is not a use of the session: an unattended page does not keep it alive.
    let caller = match web.app.identity().authenticate_quietly(&token).await {
        Ok(c) => c,
        Err(_) => return Err(PageError::SignIn("/".into())),
    };
    let total_cap = (web.app.settings.limits.http_max_connections / 4).max(1);
    let Some(place) = web.live.take(&caller.user.name, total_cap) else {
        return Ok((StatusCode::TOO_MANY_REQUESTS, "too many pages follow changes at once").into_response());
    };
    let mut check = tokio::time::interval(SESSION_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.reset();
    let state = Following {
        changes: web.app.changes.subscribe(),
        web,
        token,
        check,
        _place: place,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            tokio::select! {
                changed = s.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    // Later changes within the pause are seen as one.
                    tokio::time::sleep(AT_MOST_EVERY).await;
                    s.changes.mark_unchanged();
                    let event: Result<Event, std::convert::Infallible> = Ok(Event::default().event("changed").data("changed"));
                    return Some((event, s));
                }
                _ = s.check.tick() => {
                    if s.web.app.identity().authenticate_quietly(&s.token).await.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}
