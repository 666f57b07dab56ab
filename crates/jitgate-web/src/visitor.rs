//! Who is looking at a page (a [`Visitor`], signed in by the session cookie), what they send
//! ([`Change`], a form that must carry their CSRF token) and how a refusal becomes a page.

use crate::security::{csrf_token_for, same};
use crate::Web;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use jitgate_server::core::Caller;
use jitgate_server::error::{ErrorKind, ServiceError};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A signed-in person and the CSRF token their forms carry.
pub(crate) struct Visitor {
    pub caller: Caller,
    pub csrf: String,
    audit_reader: bool,
}

/// The person in the page's header.
pub(crate) struct Me {
    pub username: String,
    pub display_name: String,
    pub is_admin: bool,
    /// May read the audit log (administrators and `audit.reader_groups`).
    pub audit_reader: bool,
}

/// What the layout (`base.html`) needs from every page.
pub(crate) struct Chrome {
    pub me: Option<Me>,
    pub csrf: String,
    pub title: String,
    /// The navigation entry to mark as the current one.
    pub current: &'static str,
}

impl Visitor {
    pub fn chrome(&self, title: impl Into<String>, current: &'static str) -> Chrome {
        Chrome {
            me: Some(Me {
                username: self.caller.user.name.to_string(),
                display_name: self.caller.user.display_name.clone(),
                is_admin: self.caller.user.is_admin,
                audit_reader: self.audit_reader,
            }),
            csrf: self.csrf.clone(),
            title: title.into(),
            current,
        }
    }
}

impl Chrome {
    pub fn anonymous(title: impl Into<String>, csrf: String) -> Self {
        Self {
            me: None,
            csrf,
            title: title.into(),
            current: "",
        }
    }
}

impl FromRequestParts<Web> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, PageError> {
        // Back here after signing in, for a page; a change is not repeated (its form is gone).
        let back = || {
            if parts.method == Method::GET {
                PageError::SignIn(parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned())
            } else {
                PageError::SignIn("/".to_owned())
            }
        };
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = web.session_of(&jar) else {
            return Err(back());
        };
        // The page's script refreshing what it shows is not a use of the session.
        let quiet = parts.headers.contains_key("x-jitgate-refresh");
        let identity = web.app.identity();
        let checked = if quiet {
            identity.authenticate_quietly(token).await
        } else {
            identity.authenticate(token).await
        };
        match checked {
            Ok(caller) => Ok(Self {
                audit_reader: web.app.is_audit_reader(&caller),
                caller,
                csrf: csrf_token_for(token),
            }),
            Err(e) if e.kind == ErrorKind::Unauthenticated => Err(back()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A form with the CSRF token of the visitor's session in its `csrf` field.
#[derive(Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

/// A change a signed-in visitor sends from one of our pages: refused unless its form carries
/// the session's CSRF token (a page elsewhere cannot read it, so cannot forge the form).
pub(crate) struct Change<T> {
    pub visitor: Visitor,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<Web> for Change<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, web: &Web) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, web).await?;
        let request = Request::from_parts(parts, body);
        let axum::Form(WithCsrf { csrf, form }) = axum::Form::<WithCsrf<T>>::from_request(request, web)
            .await
            .map_err(|e| PageError::Invalid(e.body_text()))?;
        if !same(&csrf, &visitor.csrf) {
            return Err(PageError::Csrf);
        }
        Ok(Self { visitor, form })
    }
}

/// A change sent by the page's script as JSON: the CSRF token rides in `x-csrf-token`.
pub(crate) struct ScriptCall {
    pub visitor: Visitor,
}

impl FromRequestParts<Web> for ScriptCall {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, PageError> {
        let visitor = Visitor::from_request_parts(parts, web).await?;
        let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same(sent, &visitor.csrf) {
            return Err(PageError::Csrf);
        }
        Ok(Self { visitor })
    }
}

/// Why a page could not be shown, as the page that says so.
#[derive(Debug)]
pub(crate) enum PageError {
    /// Not signed in (or the session ended): to the sign-in page, then back to this path.
    SignIn(String),
    /// A form without its CSRF token, or with another session's.
    Csrf,
    /// A form that does not parse.
    Invalid(String),
    Service(ServiceError),
    Render(askama::Error),
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        Self::Render(e)
    }
}

impl From<jitgate_core::DomainError> for PageError {
    fn from(e: jitgate_core::DomainError) -> Self {
        Self::Service(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::SignIn(next) => {
                let next = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
                return Redirect::to(&format!("/signin?next={next}")).into_response();
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "This form cannot be accepted".to_owned(),
                "It did not come from a page of this session (it may be from an old page, or from another site). Nothing changed: go back, reload the page and try again.".to_owned(),
            ),
            Self::Invalid(why) => (StatusCode::BAD_REQUEST, "The form is not complete".to_owned(), why),
            Self::Service(e) => (
                jitgate_server::routes::status_of(e.kind),
                heading_of(e.kind).to_owned(),
                e.message,
            ),
            Self::Render(e) => {
                tracing::error!(error = %e, "a page could not be rendered");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong".to_owned(),
                    "The page could not be shown; the server's log says why.".to_owned(),
                )
            }
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(heading.clone(), String::new()),
            status: status.as_u16(),
            heading,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}

pub(crate) fn heading_of(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid | ErrorKind::Unprocessable => "That cannot be done as asked",
        ErrorKind::Unauthenticated => "A second factor is needed",
        ErrorKind::Forbidden => "Not allowed",
        ErrorKind::NotFound => "Not found",
        ErrorKind::Conflict => "No longer possible",
        ErrorKind::TooMany => "Too many attempts",
        ErrorKind::Internal => "Something went wrong",
        ErrorKind::Upstream => "The database did not answer as expected",
        ErrorKind::Unavailable => "jitgate cannot reach its store",
    }
}

/// Renders a page.
pub(crate) fn render(page: &impl Template) -> Result<Response, PageError> {
    Ok(Html(page.render()?).into_response())
}

/// Renders a page with a status other than 200 (a form shown again with what was wrong).
pub(crate) fn render_with(status: StatusCode, page: &impl Template) -> Result<Response, PageError> {
    Ok((status, Html(page.render()?)).into_response())
}
