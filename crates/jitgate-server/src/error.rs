//! What goes wrong in a service, by kind: the HTTP edge (`routes::error`) turns a kind into a
//! status, the gateway into a refusal of its protocol. Nothing here knows HTTP.

use jitgate_core::DomainError;
use jitgate_store::StoreError;

/// What kind of refusal or failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not acceptable as it is.
    Invalid,
    /// No valid session, or credentials that do not prove who the caller is.
    Unauthenticated,
    /// The caller is known and may not.
    Forbidden,
    /// No such thing, or one the caller may not know of.
    NotFound,
    /// The thing is not in a state that allows it (exists already, ended, ...).
    Conflict,
    /// Well-formed, but what it asks cannot be done (a policy set that does not load).
    Unprocessable,
    /// Too many attempts or too much load: try again later.
    TooMany,
    /// Something failed that the caller cannot mend.
    Internal,
    /// An upstream database refused or failed.
    Upstream,
    /// The store (or another dependency) is away: nothing was changed.
    Unavailable,
}

/// A service's error: its kind, a stable code and a message for people.
#[derive(Debug, Clone)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait before trying again, for refusals that pass.
    pub retry_after: Option<u64>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A refusal that passes: try again after `secs` seconds.
    pub fn busy(kind: ErrorKind, code: &'static str, message: impl Into<String>, secs: u64) -> Self {
        let mut e = Self::new(kind, code, message);
        e.retry_after = Some(secs.max(1));
        e
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", format!("{what} not found"))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            "unauthenticated",
            "log in first: the session is missing, expired or revoked",
        )
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        let kind = match &e {
            DomainError::UnknownResource(_) | DomainError::UnknownRole { .. } => ErrorKind::NotFound,
            e if e.is_authorization() => ErrorKind::Forbidden,
            e if e.is_conflict() => ErrorKind::Conflict,
            _ => ErrorKind::Invalid,
        };
        Self::new(kind, e.code(), e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::conflict("already_exists", format!("{what} already exists")),
            StoreError::Timeout { op, after } => {
                tracing::error!(op, ?after, "store failure: no answer in time (store.timeout)");
                let message = if op == "commit" {
                    // The commit may have been made before the answer was lost.
                    format!("the store did not confirm the change within {after:?}; check whether it was made before trying again")
                } else {
                    format!("the store did not answer within {after:?}; nothing was changed")
                };
                Self::new(ErrorKind::Unavailable, "store_unavailable", message)
            }
            other => {
                tracing::error!(error = %other, "store failure");
                // Fail closed: nothing is granted when the store cannot be read or written.
                Self::new(
                    ErrorKind::Unavailable,
                    "store_unavailable",
                    "the store is unavailable; nothing was changed",
                )
            }
        }
    }
}
