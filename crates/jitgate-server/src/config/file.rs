//! The configuration file as written: one struct per TOML section, read with serde (unknown
//! keys refused). `Settings::load` turns it into [`super::Settings`].

use super::*;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) server: ServerSection,
    #[serde(default)]
    pub(super) store: StoreSection,
    #[serde(default)]
    pub(super) auth: AuthSection,
    #[serde(default)]
    pub(super) audit: AuditSection,
    #[serde(default)]
    pub(super) mfa: MfaSection,
    #[serde(default)]
    pub(super) secrets: SecretsSection,
    #[serde(default)]
    pub(super) policy: PolicySection,
    #[serde(default)]
    pub(super) gateway: GatewaySection,
    #[serde(default)]
    pub(super) notifications: super::notifications::NotificationsSection,
    #[serde(default)]
    pub(super) metrics: MetricsSection,
    #[serde(default)]
    pub(super) groups: BTreeMap<GroupName, BTreeSet<Username>>,
    #[serde(default)]
    pub(super) resources: Vec<toml::Spanned<Resource>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    pub(super) http: Option<SocketAddr>,
    pub(super) data_dir: Option<PathBuf>,
    #[serde(default, with = "opt_duration")]
    pub(super) header_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(super) request_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_address: Option<usize>,
    #[serde(default)]
    pub(super) tls: bool,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) listen: Option<SocketAddr>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreSection {
    pub(super) url: Option<String>,
    #[serde(default, with = "opt_duration")]
    pub(super) timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    #[serde(default, with = "opt_duration")]
    pub(super) session_idle: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub(super) session_max: Option<Duration>,
    pub(super) max_failures: Option<u32>,
    #[serde(default, with = "opt_duration")]
    pub(super) lockout: Option<Duration>,
    pub(super) hash_concurrency: Option<usize>,
    pub(super) hash_queue: Option<usize>,
    pub(super) login_per_minute: Option<u32>,
    pub(super) login_burst: Option<u32>,
    pub(super) audit_failures_per_minute: Option<u32>,
    pub(super) password: Option<bool>,
    #[serde(default)]
    pub(super) break_glass: BTreeSet<Username>,
    #[serde(default)]
    pub(super) oidc: Vec<toml::Spanned<super::sso::OidcSection>>,
    #[serde(default, with = "opt_duration")]
    pub(super) api_token_max: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct MfaSection {
    #[serde(default)]
    pub(super) required: bool,
    #[serde(default, with = "opt_duration")]
    pub(super) freshness: Option<Duration>,
    pub(super) issuer: Option<String>,
    pub(super) webauthn_rp_id: Option<String>,
    pub(super) webauthn_origin: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewaySection {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) listen: Option<SocketAddr>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_ca: Option<PathBuf>,
    pub(super) public_host: Option<String>,
    #[serde(default, with = "opt_duration")]
    pub(super) startup_timeout: Option<Duration>,
    pub(super) max_unauthenticated: Option<usize>,
    pub(super) max_unauthenticated_per_address: Option<usize>,
    pub(super) max_sessions_per_user: Option<u32>,
    pub(super) connections_per_minute: Option<u32>,
    pub(super) connection_burst: Option<u32>,
    pub(super) threads: Option<usize>,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            public_host: None,
            startup_timeout: None,
            max_unauthenticated: None,
            max_unauthenticated_per_address: None,
            max_sessions_per_user: None,
            connections_per_minute: None,
            connection_burst: None,
            threads: None,
        }
    }
}

/// One relay thread per four cores: a relay thread mostly waits on its sockets, and the
/// server, the database and the clients need the rest (see `GatewayRuntime`).
pub(super) fn default_gateway_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(4))
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicySection {
    pub(super) dir: Option<PathBuf>,
    pub(super) time_zone: Option<String>,
    pub(super) on_call_group: Option<GroupName>,
    #[serde(default)]
    pub(super) on_call: Vec<OnCallShift>,
    #[serde(default, with = "opt_duration")]
    pub(super) start_at_horizon: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretsSection {
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditSection {
    pub(super) signing_key_file: Option<PathBuf>,
    pub(super) public_key_file: Option<PathBuf>,
    pub(super) checkpoint_every: Option<i64>,
    #[serde(default, with = "opt_duration")]
    pub(super) checkpoint_interval: Option<Duration>,
    #[serde(default)]
    pub(super) witnesses: Vec<WitnessSection>,
    #[serde(default)]
    pub(super) reader_groups: BTreeSet<GroupName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WitnessSection {
    pub(super) file: Option<PathBuf>,
    pub(super) url: Option<String>,
}

pub(super) mod opt_duration {
    use super::*;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "duration_text")] Duration);
        Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}
