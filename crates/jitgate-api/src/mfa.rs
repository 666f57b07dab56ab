//! Second factors: proofs, TOTP enrolment, passkeys, recovery codes, step-up.

use super::*;

/// A second factor, given with an action or to a step-up: exactly one of the three.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<SecretText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<WebauthnAssertion>,
}

/// Exactly one of `otp`, `recovery_code` or `webauthn`, none of them null.
impl utoipa::PartialSchema for MfaProof {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Password,
                )))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A second factor: exactly one of a TOTP code, a recovery code or a WebAuthn assertion",
            ))
            .property("otp", text())
            .property("recovery_code", text())
            .property("webauthn", utoipa::openapi::Ref::from_schema_name("WebauthnAssertion"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .min_properties(Some(1))
            .max_properties(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for MfaProof {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("WebauthnAssertion".into(), <WebauthnAssertion as utoipa::PartialSchema>::schema()));
    }
}

impl MfaProof {
    pub fn otp(code: &str) -> Self {
        Self {
            otp: Some(code.into()),
            ..Self::default()
        }
    }

    pub fn recovery_code(code: &str) -> Self {
        Self {
            recovery_code: Some(code.into()),
            ..Self::default()
        }
    }
}

/// A WebAuthn assertion answering the challenge `challenge_id`. `credential` is the browser's
/// `PublicKeyCredential` as JSON (what `navigator.credentials.get` returns, serialized).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebauthnAssertion {
    pub challenge_id: String,
    pub credential: serde_json::Value,
}

/// A WebAuthn ceremony to complete: `options` goes to `navigator.credentials.create/get` (or a
/// software authenticator); the answer comes back with `challenge_id`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebauthnChallenge {
    pub challenge_id: String,
    pub options: serde_json::Value,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MfaStatus {
    /// A confirmed TOTP factor.
    pub totp: bool,
    /// An enrolment waiting for its first code.
    pub totp_pending: bool,
    pub passkeys: Vec<PasskeyView>,
    pub recovery_codes_left: i64,
    /// Until when this session's last second factor counts as fresh for step-up.
    pub fresh_until: Option<Timestamp>,
    /// `[mfa] required`: a factor is needed before any request or review.
    pub required: bool,
}

/// A started TOTP enrolment. `secret` and `otpauth_uri` carry the seed: show them once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    pub secret: SecretText,
    pub otpauth_uri: SecretText,
    pub qr_svg: String,
    pub algorithm: String,
    pub digits: u32,
    pub period_secs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    pub code: SecretText,
}

/// A factor was added. `recovery_codes` is set when this was the user's first factor: the only
/// time they are shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FactorAdded {
    pub method: String,
    pub recovery_codes: Option<Vec<SecretText>>,
    pub passkey: Option<PasskeyView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub codes: Vec<SecretText>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyStartBody {
    /// A label for the credential, like `laptop` or `yubikey`: 1 to 64 characters, no control
    /// characters, no space at either end.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyFinishBody {
    pub challenge_id: String,
    pub credential: serde_json::Value,
}

/// A step-up was accepted: the session's factor is fresh until `fresh_until`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SteppedUp {
    pub method: String,
    pub fresh_until: Timestamp,
}
