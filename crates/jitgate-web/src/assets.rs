//! The stylesheet and the script, built into the binary: nothing to install beside it, and
//! nothing a page loads from elsewhere.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../static/app.js")),
];

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind), (header::CACHE_CONTROL, "no-cache")], *body).into_response(),
        None => crate::pages::not_found().await.into_response(),
    }
}
