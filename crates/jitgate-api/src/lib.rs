//! Request and response bodies of the HTTP API under `/api/v1`. Domain records (requests,
//! reviews, grants, audit events) travel as the domain types themselves.

use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, SignedHead, VerifyError, VerifyReport};
use jitgate_core::grant::Grant;
use jitgate_core::names::{GroupName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::request::{AccessRequest, Progress, Review};
use jitgate_core::Timestamp;
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: SecretText,
    /// The second factor, for a login in one call (`jitgate login --otp`). Without it, a user
    /// with a factor gets a ticket to finish the login with.
    #[serde(default)]
    pub mfa: Option<MfaProof>,
}

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

/// What `POST /auth/login` answers: a session, or a ticket to finish the login with a second
/// factor (`POST /auth/login/mfa`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginOutcome {
    Authenticated {
        token: SecretText,
        username: Username,
        expires_at: Timestamp,
    },
    MfaRequired {
        ticket: SecretText,
        /// What the user has: any of `totp`, `webauthn`, `recovery_code`.
        methods: Vec<String>,
        expires_at: Timestamp,
    },
}

impl From<SessionToken> for LoginOutcome {
    fn from(s: SessionToken) -> Self {
        Self::Authenticated {
            token: s.token,
            username: s.username,
            expires_at: s.expires_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaBody {
    pub ticket: SecretText,
    pub mfa: MfaProof,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketBody {
    pub ticket: SecretText,
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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapBody {
    pub setup_token: SecretText,
    pub username: Username,
    /// 12 to 1,024 characters.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 1024)]
    pub password: SecretText,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionToken {
    pub token: SecretText,
    pub username: Username,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub username: Username,
    pub display_name: String,
    pub is_admin: bool,
    pub groups: Vec<GroupName>,
    pub session_expires_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    #[schema(value_type = jitgate_core::names::ResourceName)]
    pub resource: String,
    #[schema(value_type = jitgate_core::names::RoleName)]
    pub role: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// Like `30m` or `1h`; the role's default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    /// The grant this request extends.
    #[serde(default)]
    pub extends: Option<String>,
    /// A second factor for roles that ask for one at request time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
    /// Break glass: access at once, where a policy allows it, with an alert to the approvers
    /// and a review after the fact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

/// `POST /connect`: a one-time token for the gateway, for a live grant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    #[schema(value_type = jitgate_core::names::ResourceName)]
    pub resource: String,
    /// The role to connect with; when absent, the one live grant on the resource.
    #[serde(default)]
    #[schema(value_type = Option<jitgate_core::names::RoleName>)]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
    /// Sessions the token may open within its minute: 1 unless a pool (or pgbench -c N) needs
    /// more; at most 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10000)]
    pub uses: Option<u32>,
}

/// What a client needs to open one session through the gateway: the token is the password,
/// good once and for a minute.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectToken {
    pub token: SecretText,
    pub username: Username,
    pub resource: String,
    pub role: String,
    pub grant_id: String,
    pub expires_at: Timestamp,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub uses: u32,
    /// The certificate (PEM) to trust as root when verifying the gateway
    /// (`sslmode=verify-full sslrootcert=...`); `None` when the gateway runs without TLS.
    #[serde(default)]
    pub gateway_ca_pem: Option<String>,
    /// SHA-256 of the first certificate in `gateway_ca_pem` (its DER), lowercase hex.
    #[serde(default)]
    pub gateway_ca_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DbSessionView {
    pub id: String,
    pub grant_id: String,
    pub user: Username,
    pub resource: String,
    pub role: String,
    pub peer: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub statements: i64,
}

/// `POST /policy/explain`: what the policies say for a person, a role and a duration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    #[schema(value_type = Username)]
    pub user: String,
    #[schema(value_type = jitgate_core::names::ResourceName)]
    pub resource: String,
    #[schema(value_type = jitgate_core::names::RoleName)]
    pub role: String,
    /// Like `30m`; the role's default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// The moment to decide at; now when absent.
    #[serde(default)]
    pub at: Option<Timestamp>,
    /// When the access would begin (a scheduled request); `at` when absent.
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionDecision {
    pub action: String,
    /// For `approve`: the stage the approval would count for.
    pub stage: Option<String>,
    pub allowed: bool,
    /// The policies that decided: the permits that allowed, or the forbids that denied.
    pub policies: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Explanation {
    pub user: Username,
    pub resource: String,
    pub role: String,
    pub at: Timestamp,
    pub time_zone: String,
    pub on_call: bool,
    pub decisions: Vec<ActionDecision>,
}

/// The policies in force after a reload.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyReport {
    pub policies: Vec<String>,
    pub time_zone: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub created_at: Timestamp,
    /// For a break-glass alert: who acknowledged the use, once someone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<Username>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    #[serde(default)]
    pub comment: String,
    /// A second factor for roles that ask for one at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: String,
}

/// A request as the API shows it: the stored record with its status as of now.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: AccessRequest,
    pub grant_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestDetail {
    pub request: AccessRequest,
    pub reviews: Vec<Review>,
    pub progress: Progress,
    pub grant: Option<Grant>,
    /// From `show`: every event about the request and its grant. From approve or deny: the
    /// events that review recorded.
    pub history: Vec<AuditEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    pub username: Username,
    #[serde(default)]
    pub display_name: String,
    /// 12 to 1,024 characters; without one the user logs in through a password set later.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 1024)]
    pub password: Option<SecretText>,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// 12 to 1,024 characters.
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 1024)]
    pub password: SecretText,
    /// Changing one's own password: the password it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<SecretText>,
    /// Changing one's own password with a second factor enrolled: a proof, unless the session
    /// proved one within `mfa.freshness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaProof>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: Username,
    pub display_name: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub has_password: bool,
    pub groups: Vec<GroupName>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: GroupName,
    pub members: Vec<Username>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceView {
    #[serde(flatten)]
    pub resource: Resource,
    pub managed_by: String,
    /// Where the gateway's upstream password comes from (`sealed`, `env` or `none`); shown to
    /// administrators, for resources with a postgres target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_credential: Option<String>,
}

/// The resource's own fields and the two this view adds, as one object: `Resource` refuses
/// unknown fields when it is read (`additionalProperties: false`), so the `allOf` that
/// `#[serde(flatten)]` would be documented as could never be satisfied.
impl utoipa::PartialSchema for ResourceView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
        use utoipa::openapi::RefOr;
        let mut view = match <Resource as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(o)) => o,
            _ => Object::new(),
        };
        view.additional_properties = None;
        view.description = Some("A resource as the API shows it: its configuration and who manages it".into());
        view.properties.insert(
            "managed_by".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("`config` or `api`"))
                .into(),
        );
        view.required.push("managed_by".into());
        view.properties.insert(
            "upstream_credential".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "Where the gateway's upstream password comes from (`sealed`, `env` or `none`); shown to administrators",
                ))
                .into(),
        );
        RefOr::T(Schema::Object(view))
    }
}

impl utoipa::ToSchema for ResourceView {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <Resource as utoipa::ToSchema>::schemas(schemas);
    }
}

/// `PUT /admin/resources/{name}/credential`: the upstream login's password, sealed when stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// 1 to 1,024 characters, no NUL.
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 1024, pattern = "^[^\\u0000]*$")]
    pub password: SecretText,
}

/// What each role of a resource gives a session upstream: `jitgate admin resource check`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceCheck {
    pub resource: String,
    /// The service login (the provisioner's, and the sessions' of roles without a login).
    pub service: LoginCheck,
    pub roles: Vec<RoleCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleCheck {
    pub role: String,
    /// `proxy` or `ephemeral`.
    pub access: String,
    /// The login sessions use; for ephemeral roles, what the grant's role will be member of.
    pub login: LoginCheck,
    pub allow_privileged_login: bool,
    /// Whether sessions on this role start (false: refused as privileged, or unreachable).
    pub sessions_allowed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginCheck {
    pub name: String,
    /// Whether the gateway could log in and read the login's roles.
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The login's own attributes (SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, CREATEDB).
    pub attributes: Vec<String>,
    /// Every role it is a member of, directly or not, with their attributes.
    pub member_of: Vec<MemberOf>,
    /// What makes the login privileged, in words; empty when it is not.
    pub privileges: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberOf {
    pub role: String,
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub head_seq: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditKey {
    pub key_id: String,
    /// Hex of the Ed25519 public key that signs checkpoints.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyOutcome {
    pub ok: bool,
    pub report: Option<VerifyReport>,
    /// The first sequence number at which the log is bad.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
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

/// Where the audit log stands: its head, its newest checkpoint, and each witness.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditStatus {
    pub head_seq: i64,
    pub last_checkpoint_seq: Option<i64>,
    pub last_checkpoint_at: Option<Timestamp>,
    pub checkpoint_interval_ms: i64,
    pub key_id: String,
    pub witnesses: Vec<WitnessStatus>,
}

/// What one witness has and how its delivery goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WitnessStatus {
    pub witness: String,
    /// The last checkpoint it acknowledged (`None`: not known yet).
    pub delivered_seq: Option<i64>,
    /// Checkpoints in the store it does not have yet.
    pub behind: i64,
    pub failing_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl WitnessStatus {
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }
}

/// One line of an exported audit file (JSON Lines).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        key_id: String,
        public_key: String,
        exported_at: Timestamp,
        /// An incremental export (`--since SEQ`): the events start after `seq`, whose hash
        /// was `hash`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<ChainHead>,
        /// The last checkpoint at or before `since`, which the file's first checkpoint links to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<Checkpoint>,
        /// The server's signed word on the head the file ends at and when it was taken
        /// (`GET /audit/head`). Files from before it have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<SignedHead>,
    },
    Event(AuditEvent),
    Checkpoint(Checkpoint),
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
