//! API tokens: a person's credential for scripts, limited to what its scopes name and to its
//! lifetime. Made only from a signed-in session (a token never makes another), shown once.

use super::*;

/// What a token may be used for. Whatever is not named is refused, and some things no token
/// ever does: second factors, tokens, passwords, logging out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Reading what its owner may read (`GET`s, and policy explanations).
    Read,
    /// Asking for access, cancelling a request, ending a grant.
    Request,
    /// Approving, denying and acknowledging (where the role asks no fresh second factor).
    Review,
    /// Connect tokens for the gateway.
    Connect,
    /// Administration (`/admin/...`, killing sessions); only for an administrator's token.
    Admin,
}

impl TokenScope {
    pub const ALL: [Self; 5] = [Self::Read, Self::Request, Self::Review, Self::Connect, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Request => "request",
            Self::Review => "review",
            Self::Connect => "connect",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A new token.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// What it is for (1 to 64 characters on one line, not only spaces), shown in lists and
    /// the audit log.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    #[schema(min_items = 1)]
    pub scopes: Vec<TokenScope>,
    /// Like `30d` or `12h`; 30 days when absent, at most `auth.api_token_max`.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A token as its owner and administrators see it (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    pub username: Username,
    pub scopes: Vec<TokenScope>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A token just made: the token, shown this once, and what it is.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewApiToken {
    /// `Authorization: Bearer jgapi_...`; only its SHA-256 is kept.
    #[schema(value_type = String)]
    pub token: SecretText,
    pub details: ApiTokenView,
}
