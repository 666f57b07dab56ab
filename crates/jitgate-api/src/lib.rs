//! Request and response bodies of the HTTP API under `/api/v1`. Domain records (requests,
//! reviews, grants, audit events) travel as the domain types themselves.

use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, SignedHead, VerifyError, VerifyReport};
use jitgate_core::grant::Grant;
use jitgate_core::names::{GroupName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{AccessRequest, Progress, Review};
use jitgate_core::Timestamp;
use serde::{Deserialize, Serialize};

mod admin;
mod audit;
mod gateway;
mod identity;
mod mfa;
mod notifications;
mod requests;
mod sso;
mod tokens;

pub use admin::*;
pub use audit::*;
pub use gateway::*;
pub use identity::*;
pub use mfa::*;
pub use notifications::*;
pub use requests::*;
pub use sso::*;
pub use tokens::*;

/// A secret inside a body (password, token): serialized as it is, never shown by `Debug`, so
/// a body that ends up in a log line or a panic message does not carry it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A secret travels as a string; the document says it is one, so tools do not show it.
impl utoipa::PartialSchema for SecretText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Password,
            )))
            .into()
    }
}

impl utoipa::ToSchema for SecretText {}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl AsRef<str> for SecretText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl From<Result<VerifyReport, VerifyError>> for VerifyOutcome {
    fn from(r: Result<VerifyReport, VerifyError>) -> Self {
        match r {
            Ok(report) => Self {
                ok: true,
                report: Some(report),
                first_bad_seq: None,
                problem: None,
            },
            Err(err) => Self {
                ok: false,
                report: None,
                first_bad_seq: Some(err.seq()),
                problem: Some(err.to_string()),
            },
        }
    }
}

pub const EXPORT_FORMAT: &str = "jitgate-audit-v1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_bodies_never_show_in_debug_but_travel_in_json() {
        let body = LoginBody {
            username: "alice".into(),
            password: "hunter2 hunter2".into(),
            mfa: Some(MfaProof::otp("314159")),
        };
        assert!(!format!("{body:?}").contains("hunter2"));
        assert!(!format!("{body:?}").contains("314159"));
        assert_eq!(serde_json::to_value(&body).unwrap()["password"], "hunter2 hunter2");
        let back: LoginBody = serde_json::from_str(r#"{"username":"a","password":"p"}"#).unwrap();
        assert_eq!(back.password.expose(), "p");
    }
}
