//! People: logging in (with or without a second factor), bootstrap, sessions, users and groups.

use super::*;

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
