//! Single sign-on: the providers, starting a CLI sign-in and its hand-off, and what an ID token
//! maps to (for administrators debugging a mapping).

use super::*;

/// A provider people can sign in with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoProviderView {
    /// How jitgate names it (`jitgate login --sso NAME`).
    pub name: String,
    /// What the sign-in page's button says.
    pub display_name: String,
}

/// A CLI's sign-in through the browser: where its loopback listener waits, and the SHA-256 of
/// a verifier only it knows (base64url, no padding), which it shows to trade the hand-off code.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoStartBody {
    pub provider: String,
    /// `http://127.0.0.1:PORT/...` (a loopback address with a port).
    pub redirect: String,
    /// base64url(SHA-256(verifier)), 43 characters.
    pub challenge: String,
}

/// Where to send the person.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoStarted {
    pub authorization_url: String,
}

/// The code the browser brought to the CLI's loopback address, and the verifier.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoHandOffBody {
    pub code: SecretText,
    pub verifier: SecretText,
}

/// An ID token to check against a provider's config, pasted by an administrator.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcTestBody {
    pub id_token: SecretText,
}

/// One check of the token.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OidcCheckView {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// A jitgate group the token's groups map to, from which of the provider's groups and by
/// which rule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OidcGroupView {
    pub group: String,
    pub from: String,
    pub rule: String,
}

/// What an ID token would do at sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OidcTestView {
    pub provider: String,
    pub checks: Vec<OidcCheckView>,
    /// The jitgate user it names, if it names a valid one.
    pub username: Option<String>,
    pub username_problem: Option<String>,
    /// The provider's groups, as the configured claim gives them.
    pub their_groups: Vec<String>,
    pub groups: Vec<OidcGroupView>,
    /// The provider's groups no rule takes.
    pub unmapped: Vec<String>,
    /// Groups a rule took but made a name jitgate cannot use, with why.
    pub refused: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// Whether the sign-in counts as a second factor (by `amr`/`acr` and the provider's config).
    pub second_factor: bool,
    /// Every claim, as the token has them.
    #[schema(value_type = Object)]
    pub claims: serde_json::Value,
}

/// A device sign-in to start (for a machine without a browser).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoDeviceBody {
    pub provider: String,
}

/// What to show the person, and the id to poll with (a secret: only this CLI holds it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SsoDeviceStarted {
    #[schema(value_type = String)]
    pub device_id: SecretText,
    /// The code the person types at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// The same with the code in it, where the provider gives one.
    pub verification_uri_complete: Option<String>,
    pub expires_at: Timestamp,
}

/// The id of a device sign-in under way.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoDevicePollBody {
    #[schema(value_type = String)]
    pub device_id: SecretText,
}

/// Where a device sign-in stands: still waiting for the person, or done with a session.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SsoDeviceOutcome {
    /// Ask again (the call itself waits up to 20 s for the person).
    Pending,
    SignedIn(SessionToken),
}
