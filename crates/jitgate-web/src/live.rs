//! Live updates: a server-sent event stream that says "changed" when something people can see
//! was committed (a request, a decision, a grant starting or ending). The page's script then
//! fetches itself again and swaps in the parts marked `data-live`; the event carries nothing
//! but the word, so it tells no one anything they could not see by reloading.

use crate::visitor::Visitor;
use crate::Web;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::WatchStream;

/// At most one "changed" per this: a burst of changes (an approval's several events, many
/// grants ending together) costs each open page one fetch.
const AT_MOST_EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn events(State(web): State<Web>, v: Visitor) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = WatchStream::from_changes(web.app.changes.subscribe());
    // The stream ends with the session; the browser's reconnect then meets the sign-in.
    let left_ms = (v.caller.session.expires_at.as_millis() - web.app.now().as_millis()).max(0);
    let session_end = tokio::time::sleep(Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)));
    let stream = tokio_stream::StreamExt::throttle(changes, AT_MOST_EVERY)
        .map(|_| Ok(Event::default().event("changed").data("changed")))
        .take_until(session_end);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
