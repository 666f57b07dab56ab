//! The PostgreSQL gateway: connect tokens and sessions.

use super::*;

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

/// A gateway session as `GET /api/v1/sessions` lists it.
pub use jitgate_core::session::GatewaySession;
