//! The HTTP edge of [`ServiceError`]: each kind becomes a status here and nowhere else, with the
//! error shape every answer shares (`{"error": {"code", "message"}}`).

use crate::error::{ErrorKind, ServiceError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jitgate_api::{ErrorBody, ErrorDetail};

/// A service error on its way out as an HTTP answer, or a request the edge refused itself (a
/// body or query that does not parse).
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    error: ServiceError,
}

impl ApiError {
    fn edge(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let kind = if status.is_server_error() {
            ErrorKind::Internal
        } else {
            ErrorKind::Invalid
        };
        Self {
            status,
            error: ServiceError::new(kind, code, message),
        }
    }
}

impl ApiError {
    /// The server gave up on a request that took longer than `server.request_timeout`.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::edge(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }
}

/// The status of each kind of service error.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self {
            status: status_of(error.kind),
            error,
        }
    }
}

impl From<jitgate_core::DomainError> for ApiError {
    fn from(e: jitgate_core::DomainError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::edge(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::edge(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ),
            _ => ServiceError::bad_request("invalid_json", r.body_text()).into(),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ServiceError::bad_request("invalid_query", r.body_text()).into()
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ServiceError::bad_request("invalid_path", r.body_text()).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error.code.to_owned(),
                message: self.error.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.error.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
