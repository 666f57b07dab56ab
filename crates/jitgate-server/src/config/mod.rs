//! The configuration file (TOML): server, store, sessions, audit, groups and resources.
//! A bad file stops the start with its path, line, column and the reason.

use jitgate_auth::attempts::{AttemptPolicy, MAX_FAILURES_CAP};
use jitgate_core::names::{GroupName, Username};
use jitgate_core::policy::Resource;
use jitgate_core::time::duration_text;
use jitgate_core::Timestamp;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
pub(crate) mod notifications;
pub(crate) mod sso;
use file::*;
pub use notifications::NotificationSettings;
pub use sso::SignInSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: SQLite at `data_dir/jitgate.db`.
    pub store_url: Option<String>,
    /// How long a PostgreSQL store operation, or taking or opening a connection for it, may
    /// take before it fails (503 `store_unavailable`).
    pub store_timeout: Duration,
    pub session_idle: Duration,
    pub session_max: Duration,
    /// `None`: `data_dir/audit-signing.key`.
    pub signing_key_file: Option<PathBuf>,
    /// A signed checkpoint every this many events.
    pub checkpoint_every: i64,
    /// And a checkpoint this often whenever events were appended, so the events that rest on
    /// the hash chain alone are at most this old.
    pub checkpoint_interval: Duration,
    /// Where checkpoints are published, outside the database.
    pub witnesses: Vec<WitnessTarget>,
    /// The public key `audit verify --config` trusts (the root: not taken from the data).
    pub audit_public_key_file: Option<PathBuf>,
    /// Groups whose members may read the audit log (admins always may).
    pub audit_reader_groups: BTreeSet<GroupName>,
    pub groups: BTreeMap<GroupName, BTreeSet<Username>>,
    pub resources: Vec<Resource>,
    /// A second factor is needed before any request or review.
    pub mfa_required: bool,
    /// How long a proved second factor counts for a step-up.
    pub mfa_freshness: Duration,
    /// The name authenticator apps show beside the account.
    pub mfa_issuer: String,
    /// WebAuthn relying party id; `None`: `localhost`.
    pub webauthn_rp_id: Option<String>,
    /// The origin pages are served from; `None`: `http://localhost:PORT` of the API.
    pub webauthn_origin: Option<String>,
    /// The key ring that seals secrets at rest; `None`: `data_dir/secrets.key`. The
    /// `JITGATE_SECRETS_KEY` variable, when set, wins over both.
    pub secrets_key_file: Option<PathBuf>,
    pub attempts: AttemptPolicy,
    /// Where the `*.cedar` files are; `None`: the config file's directory (none without one).
    pub policy_dir: Option<PathBuf>,
    /// The time zone policies see as `context.local`.
    pub policy_time_zone: String,
    /// Members of this group are on call (`context.on_call`).
    pub on_call_group: Option<GroupName>,
    /// On-call shifts, in addition to the group.
    pub on_call: Vec<OnCallShift>,
    /// Whether the HTTP listener speaks HTTPS (`server.tls`, `server.tls_cert`/`tls_key`).
    pub http_tls: HttpTls,
    /// The PostgreSQL gateway's address; `None`: no gateway.
    pub gateway: Option<SocketAddr>,
    /// The gateway's TLS certificate and key (PEM); `None`: a self-signed pair made in the
    /// data directory on first start.
    pub gateway_tls: Option<(PathBuf, PathBuf)>,
    /// The certificate (PEM) clients trust to verify the gateway, handed to them with each
    /// connect token; `None`: the last certificate of the configured chain (or the
    /// self-signed one).
    pub gateway_tls_ca: Option<PathBuf>,
    /// The host name clients reach the gateway by (and its certificate names), handed out with
    /// connect tokens; `None`: the listen address (`127.0.0.1` when it listens on all).
    pub gateway_public_host: Option<String>,
    /// Worker threads of the gateway's own runtime (`gateway.threads`); default one per four
    /// cores, at least one.
    pub gateway_threads: usize,
    /// Bounds on what anonymous traffic can take: hashing, rates, timeouts, connections.
    pub limits: crate::limits::LimitSettings,
    /// How far ahead a request may ask its access to start (`policy.start_at_horizon`).
    pub start_at_horizon: Duration,
    /// Channels, warnings before access ends, retries (`[notifications]`).
    pub notifications: NotificationSettings,
    /// Local passwords and single sign-on providers (`[auth]`, `[[auth.oidc]]`).
    pub sign_in: SignInSettings,
    /// Where `/metrics` is served (`[metrics]`).
    pub metrics: MetricsPlace,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsPlace {
    /// On the API's listener (the default).
    #[default]
    Api,
    /// On a listener of its own, and not on the API's (`metrics.listen`).
    Listen(SocketAddr),
    /// Nowhere (`metrics.enabled = false`).
    Off,
}

/// A witness: somewhere the database's writers cannot rewrite that keeps every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessTarget {
    /// An append-only JSON Lines file (fsynced), on another volume or machine.
    File(PathBuf),
    /// An HTTP(S) witness (`jitgate audit witness`): signed POSTs, retried until acknowledged.
    Http(String),
}

impl std::fmt::Display for WitnessTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Http(u) => f.write_str(u),
        }
    }
}

/// One person on call from `from` until `until`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallShift {
    pub user: Username,
    pub from: Timestamp,
    pub until: Timestamp,
}

/// The HTTP listener's TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HttpTls {
    /// Plain HTTP (the default: loopback, or behind a proxy that speaks TLS).
    #[default]
    Off,
    /// HTTPS with a certificate for `localhost` made in the data directory on first start.
    SelfSigned,
    /// HTTPS with this certificate chain and key (PEM).
    Files(PathBuf, PathBuf),
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("jitgate-data"),
            store_url: None,
            store_timeout: jitgate_store::DEFAULT_TIMEOUT,
            session_idle: Duration::from_secs(3600),
            session_max: Duration::from_secs(12 * 3600),
            signing_key_file: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            witnesses: Vec::new(),
            audit_public_key_file: None,
            audit_reader_groups: BTreeSet::new(),
            groups: BTreeMap::new(),
            resources: Vec::new(),
            mfa_required: false,
            mfa_freshness: Duration::from_secs(300),
            mfa_issuer: "jitgate".into(),
            webauthn_rp_id: None,
            webauthn_origin: None,
            secrets_key_file: None,
            attempts: AttemptPolicy::default(),
            policy_dir: None,
            policy_time_zone: "UTC".into(),
            on_call_group: None,
            on_call: Vec::new(),
            gateway: Some(SocketAddr::from(([127, 0, 0, 1], 6432))),
            http_tls: HttpTls::Off,
            gateway_tls: None,
            gateway_tls_ca: None,
            gateway_public_host: None,
            gateway_threads: default_gateway_threads(),
            limits: crate::limits::LimitSettings::default(),
            start_at_horizon: Duration::from_secs(7 * 24 * 3600),
            notifications: NotificationSettings::default(),
            sign_in: SignInSettings::default(),
            metrics: MetricsPlace::Api,
        }
    }
}

impl Settings {
    pub fn store_url(&self) -> String {
        self.store_url
            .clone()
            .unwrap_or_else(|| self.data_dir.join("jitgate.db").display().to_string())
    }

    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file.clone().unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-signing.key"))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}

/// Policy files sit beside the config file unless it says where; a relative `[policy] dir` is
/// read from the config file's directory. A config named without a directory (`fuzz.toml`) is
/// in the current one, `.` (its `parent()` is the empty path, which no directory read accepts).
fn policy_dir_beside(config: &Path, given: Option<PathBuf>) -> PathBuf {
    let here = match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match given {
        Some(d) if d.is_relative() => here.join(d),
        Some(d) => d,
        None => here,
    }
}

impl Settings {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            reason: format!("cannot read: {e}"),
        })?;
        let mut settings = Self::from_toml(&file, &text)?;
        settings.policy_dir = Some(policy_dir_beside(path, settings.policy_dir.take()));
        Ok(settings)
    }

    pub fn from_toml(file: &str, text: &str) -> Result<Self, ConfigError> {
        let err_at = |offset: usize, reason: String| {
            let (line, column) = line_col(text, offset);
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                reason,
            }
        };
        let parsed: FileConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            err_at(offset, e.message().to_owned())
        })?;
        let mut settings = Settings::default();
        if let Some(http) = parsed.server.http {
            settings.http = http;
        }
        if let Some(dir) = parsed.server.data_dir.clone() {
            settings.data_dir = dir;
        }
        let err_key = |key: &str, reason: String| err_at(text.find(key.rsplit('.').next().unwrap_or(key)).unwrap_or(0), reason);
        apply_limits(&mut settings, &parsed, &err_key)?;
        settings.store_url = parsed.store.url;
        match parsed.store.timeout {
            Some(d) if d.is_zero() => {
                // `timeout` alone would find `[server]`'s `header_timeout` first.
                let at = text.find("[store]").and_then(|i| text[i..].find("timeout").map(|j| i + j));
                return Err(err_at(at.unwrap_or(0), "store.timeout must be longer than 0s".into()));
            }
            Some(d) => settings.store_timeout = d,
            None => {}
        }
        if let Some(h) = parsed.policy.start_at_horizon {
            settings.start_at_horizon = h;
        }
        settings.session_idle = parsed.auth.session_idle.unwrap_or(settings.session_idle);
        settings.session_max = parsed.auth.session_max.unwrap_or(settings.session_max);
        if settings.session_idle > settings.session_max {
            return Err(err_at(
                text.find("session_idle").unwrap_or(0),
                "auth.session_idle is longer than auth.session_max".into(),
            ));
        }
        if let Some(n) = parsed.auth.max_failures {
            if !(1..=MAX_FAILURES_CAP).contains(&n) {
                return Err(err_at(
                    text.find("max_failures").unwrap_or(0),
                    format!("auth.max_failures must be between 1 and {MAX_FAILURES_CAP}"),
                ));
            }
            settings.attempts.max_failures = n;
        }
        settings.attempts.lock_for = parsed.auth.lockout.unwrap_or(settings.attempts.lock_for);
        settings.mfa_required = parsed.mfa.required;
        settings.mfa_freshness = parsed.mfa.freshness.unwrap_or(settings.mfa_freshness);
        if let Some(issuer) = parsed.mfa.issuer {
            if issuer.is_empty() || issuer.contains(':') {
                return Err(err_at(
                    text.find("issuer").unwrap_or(0),
                    "mfa.issuer must be non-empty and without ':'".into(),
                ));
            }
            settings.mfa_issuer = issuer;
        }
        settings.webauthn_rp_id = parsed.mfa.webauthn_rp_id;
        settings.webauthn_origin = parsed.mfa.webauthn_origin;
        settings.secrets_key_file = parsed.secrets.key_file;
        settings.policy_dir = parsed.policy.dir;
        if let Some(tz) = parsed.policy.time_zone {
            settings.policy_time_zone = tz;
        }
        settings.on_call_group = parsed.policy.on_call_group;
        settings.on_call = parsed.policy.on_call;
        settings.http_tls = match (parsed.server.tls, parsed.server.tls_cert, parsed.server.tls_key) {
            (_, Some(c), Some(k)) => HttpTls::Files(c, k),
            (true, None, None) => HttpTls::SelfSigned,
            (false, None, None) => HttpTls::Off,
            _ => return Err(err_key("server.tls_cert", "server.tls_cert and server.tls_key go together".into())),
        };
        settings.gateway_tls = match (parsed.gateway.tls_cert, parsed.gateway.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(err_at(
                    text.find("tls_").unwrap_or(0),
                    "gateway.tls_cert and gateway.tls_key go together".into(),
                ))
            }
        };
        if parsed.gateway.tls_ca.is_some() && settings.gateway_tls.is_none() {
            return Err(err_at(
                text.find("tls_ca").unwrap_or(0),
                "gateway.tls_ca needs gateway.tls_cert and gateway.tls_key".into(),
            ));
        }
        settings.gateway_tls_ca = parsed.gateway.tls_ca;
        if let Some(h) = parsed.gateway.public_host.as_deref() {
            if h.is_empty() || h.contains(['/', ' ', ':']) && h.parse::<std::net::IpAddr>().is_err() {
                return Err(err_at(
                    text.find("public_host").unwrap_or(0),
                    format!("gateway.public_host must be a host name or IP address, not {h:?}"),
                ));
            }
        }
        settings.gateway_public_host = parsed.gateway.public_host;
        match parsed.gateway.threads {
            Some(0) => {
                return Err(err_key(
                    "gateway.threads",
                    "gateway.threads must be at least 1 (leave it out for one per four cores)".to_owned(),
                ))
            }
            Some(n) if n > 256 => {
                return Err(err_key(
                    "gateway.threads",
                    format!("gateway.threads = {n} is more than 256; the relay waits on sockets, it needs few threads"),
                ))
            }
            Some(n) => settings.gateway_threads = n,
            None => {}
        }
        settings.gateway = if parsed.gateway.enabled {
            parsed.gateway.listen.or(settings.gateway)
        } else {
            None
        };
        settings.signing_key_file = parsed.audit.signing_key_file;
        if let Some(n) = parsed.audit.checkpoint_every {
            if n < 1 {
                return Err(err_at(
                    text.find("checkpoint_every").unwrap_or(0),
                    "audit.checkpoint_every must be at least 1".into(),
                ));
            }
            settings.checkpoint_every = n;
        }
        if let Some(d) = parsed.audit.checkpoint_interval {
            if d < Duration::from_millis(100) {
                return Err(err_at(
                    text.find("checkpoint_interval").unwrap_or(0),
                    "audit.checkpoint_interval must be at least 100ms".into(),
                ));
            }
            settings.checkpoint_interval = d;
        }
        settings.audit_public_key_file = parsed.audit.public_key_file;
        for w in parsed.audit.witnesses {
            let at = text.find("witnesses").unwrap_or(0);
            settings.witnesses.push(match (w.file, w.url) {
                (Some(f), None) => WitnessTarget::File(f),
                (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => WitnessTarget::Http(u),
                (None, Some(u)) => return Err(err_at(at, format!("audit.witnesses: {u:?} is not an http:// or https:// URL"))),
                _ => return Err(err_at(at, "each of audit.witnesses has either file or url".into())),
            });
        }
        settings.audit_reader_groups = parsed.audit.reader_groups;
        notifications::apply(&mut settings, parsed.notifications, &err_at, &err_key)?;
        let auth = parsed.auth;
        sso::apply(
            &mut settings,
            auth.password,
            auth.break_glass,
            auth.oidc,
            auth.api_token_max,
            &err_at,
            &err_key,
        )?;
        settings.metrics = match (parsed.metrics.enabled, parsed.metrics.listen) {
            (false, None) => MetricsPlace::Off,
            (false, Some(_)) => {
                return Err(err_key(
                    "metrics.listen",
                    "metrics.listen with metrics.enabled = false: choose one".into(),
                ))
            }
            (true, Some(at)) => MetricsPlace::Listen(at),
            (true, None) => MetricsPlace::Api,
        };
        settings.groups = parsed.groups;
        let mut seen = BTreeSet::new();
        for spanned in parsed.resources {
            let start = spanned.span().start;
            let resource = spanned.into_inner();
            if let Some(problem) = resource.problems().into_iter().next() {
                return Err(err_at(start, problem));
            }
            if !seen.insert(resource.name.clone()) {
                return Err(err_at(start, format!("resource '{}' is declared twice", resource.name)));
            }
            settings.resources.push(resource);
        }
        Ok(settings)
    }
}

/// The `[server]`, `[auth]` and `[gateway]` limits; a zero where zero means nothing useful
/// (a timeout, a cap) is refused.
fn apply_limits(settings: &mut Settings, parsed: &FileConfig, err_key: &dyn Fn(&str, String) -> ConfigError) -> Result<(), ConfigError> {
    use crate::limits::RateSetting;
    let l = &mut settings.limits;
    let positive_duration = |key: &str, v: Option<Duration>, into: &mut Duration| -> Result<(), ConfigError> {
        match v {
            Some(d) if d.is_zero() => Err(err_key(key, format!("{key} must be longer than 0s"))),
            Some(d) => {
                *into = d;
                Ok(())
            }
            None => Ok(()),
        }
    };
    let positive_count = |key: &str, v: Option<usize>, into: &mut usize| -> Result<(), ConfigError> {
        match v {
            Some(0) => Err(err_key(key, format!("{key} must be at least 1"))),
            Some(n) => {
                *into = n;
                Ok(())
            }
            None => Ok(()),
        }
    };
    positive_duration("server.header_timeout", parsed.server.header_timeout, &mut l.http_header_timeout)?;
    positive_duration("server.request_timeout", parsed.server.request_timeout, &mut l.http_request_timeout)?;
    positive_count("server.max_connections", parsed.server.max_connections, &mut l.http_max_connections)?;
    positive_count(
        "server.max_connections_per_address",
        parsed.server.max_connections_per_address,
        &mut l.http_max_connections_per_address,
    )?;
    positive_count("auth.hash_concurrency", parsed.auth.hash_concurrency, &mut l.hash_concurrency)?;
    if let Some(q) = parsed.auth.hash_queue {
        l.hash_queue = q;
    }
    let rate = |per_minute: Option<u32>, burst: Option<u32>, default: RateSetting| RateSetting {
        per_minute: per_minute.unwrap_or(default.per_minute),
        burst: burst.unwrap_or(default.burst),
    };
    l.login_rate = rate(parsed.auth.login_per_minute, parsed.auth.login_burst, l.login_rate);
    if let Some(n) = parsed.auth.audit_failures_per_minute {
        l.audit_failures_per_minute = n;
    }
    positive_duration(
        "gateway.startup_timeout",
        parsed.gateway.startup_timeout,
        &mut l.gateway_startup_timeout,
    )?;
    positive_count(
        "gateway.max_unauthenticated",
        parsed.gateway.max_unauthenticated,
        &mut l.gateway_max_unauthenticated,
    )?;
    positive_count(
        "gateway.max_unauthenticated_per_address",
        parsed.gateway.max_unauthenticated_per_address,
        &mut l.gateway_max_unauthenticated_per_address,
    )?;
    if let Some(n) = parsed.gateway.max_sessions_per_user {
        l.gateway_max_sessions_per_user = n;
    }
    l.gateway_rate = rate(
        parsed.gateway.connections_per_minute,
        parsed.gateway.connection_burst,
        l.gateway_rate,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
http = "127.0.0.1:9999"

[groups]
engineers = ["alice"]
db-owners = ["bob"]

[[resources]]
name = "prod-db"
[resources.roles.read]
requesters = ["engineers"]
max_duration = "1h"
stages = [{ groups = ["db-owners"], min_approvals = 1 }]
"#;

    #[test]
    fn a_good_file_loads() {
        let s = Settings::from_toml("x.toml", GOOD).unwrap();
        assert_eq!(s.http.port(), 9999);
        assert_eq!(s.resources.len(), 1);
        assert_eq!(s.groups.len(), 2);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = Settings::from_toml("x.toml", "[server]\nhttp = \n").unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("x.toml", 2), "{err}");
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let text = GOOD.replace("max_duration", "max_durration");
        let err = Settings::from_toml("x.toml", &text).unwrap_err();
        assert!(err.reason.contains("max_durration"), "{err}");
        assert!(err.line >= 10, "{err}");
    }

    #[test]
    fn a_policy_problem_names_the_resource_line() {
        let text = GOOD.replace("stages = [{ groups = [\"db-owners\"], min_approvals = 1 }]", "stages = []");
        let err = Settings::from_toml("x.toml", &text).unwrap_err();
        assert!(err.reason.contains("at least one approval stage"), "{err}");
        assert!(err.line >= 9, "{err}");
    }

    #[test]
    fn a_bad_duration_or_name_is_refused() {
        let err = Settings::from_toml("x.toml", &GOOD.replace("\"1h\"", "\"one hour\"")).unwrap_err();
        assert!(err.reason.contains("not a duration"), "{err}");
        let err = Settings::from_toml("x.toml", &GOOD.replace("alice", "Alice")).unwrap_err();
        assert!(err.reason.contains("not a valid user name"), "{err}");
    }

    #[test]
    fn gateway_threads_default_to_one_per_four_cores_and_refuse_zero() {
        let with = |extra: &str| Settings::from_toml("x.toml", &format!("[gateway]\n{extra}\n{GOOD}"));
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(with("").unwrap().gateway_threads, cores.div_ceil(4));
        assert_eq!(with("threads = 3").unwrap().gateway_threads, 3);
        let err = with("threads = 0").unwrap_err();
        assert!(err.reason.contains("at least 1") && err.line == 2, "{err}");
        assert!(with("threads = 1000").unwrap_err().reason.contains("more than 256"));
        assert!(with("threads = -1").is_err());
    }

    #[test]
    fn gateway_public_host_and_db_role() {
        let with = |extra: &str| Settings::from_toml("x.toml", &format!("[gateway]\n{extra}\n{GOOD}"));
        assert_eq!(
            with("public_host = \"db-gw.example.com\"").unwrap().gateway_public_host.as_deref(),
            Some("db-gw.example.com")
        );
        let err = with("public_host = \"http://x\"").unwrap_err();
        assert!(err.reason.contains("public_host"), "{err}");
        // SET ROLE is no boundary: a role that asks for it is refused, with what to do instead.
        let text = GOOD.replace("max_duration", "db_role = \"reader\"\nmax_duration");
        let err = Settings::from_toml("x.toml", &text).unwrap_err();
        assert!(
            err.reason.contains("db_role is no longer supported") && err.reason.contains("login"),
            "{err}"
        );
    }

    #[test]
    fn audit_witnesses_and_interval() {
        let s = Settings::from_toml(
            "x.toml",
            "[audit]\ncheckpoint_interval = \"2s\"\npublic_key_file = \"/etc/k\"\n[[audit.witnesses]]\nfile = \"/w/a.jsonl\"\n[[audit.witnesses]]\nurl = \"https://w.example/\"\n",
        )
        .unwrap();
        assert_eq!(s.checkpoint_interval, Duration::from_secs(2));
        assert_eq!(
            s.witnesses,
            vec![
                WitnessTarget::File("/w/a.jsonl".into()),
                WitnessTarget::Http("https://w.example/".into())
            ]
        );
        assert_eq!(Settings::default().checkpoint_interval, Duration::from_secs(10));
        let err = Settings::from_toml("x.toml", "[[audit.witnesses]]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(err.reason.contains("not an http"), "{err}");
        let err = Settings::from_toml("x.toml", "[[audit.witnesses]]\n").unwrap_err();
        assert!(err.reason.contains("either file or url"), "{err}");
    }

    #[test]
    fn the_quickstart_example_loads() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/quickstart.toml"));
        let s = Settings::from_file(path).unwrap();
        assert_eq!(s.mfa_freshness, Duration::from_secs(300));
        assert!(!s.mfa_required);
        let read = &s.resources[0].roles[&"read".parse().unwrap()];
        assert!(read.needs_mfa(jitgate_core::policy::MfaAction::Approve));
        let engine = crate::policy::load_engine(&s).unwrap();
        assert_eq!(engine.policy_ids().len(), 3);
        assert_eq!(engine.time_zone(), "Europe/Berlin");
    }

    #[test]
    fn the_production_and_container_examples_load() {
        let text = include_str!("../../../../examples/production.toml");
        let s = Settings::from_toml("production.toml", text).unwrap();
        assert!(s.mfa_required && s.store_url.as_deref().is_some_and(|u| u.starts_with("postgres://")));
        assert_eq!(s.witnesses.len(), 2);
        assert_eq!(s.limits.gateway_max_sessions_per_user, 5);
        assert!(s.signing_key_path().starts_with("/etc/jitgate/keys"));
        assert!(
            s.resources[0].roles.values().all(|r| r.login.is_some()),
            "no role hands out the service login"
        );
        let c = Settings::from_toml("container.toml", include_str!("../../../../deploy/container.toml")).unwrap();
        assert_eq!(c.http.port(), 8080);
    }

    #[test]
    fn policies_are_found_beside_a_config_named_without_a_directory() {
        assert_eq!(policy_dir_beside(Path::new("fuzz.toml"), None), PathBuf::from("."));
        assert_eq!(
            policy_dir_beside(Path::new("fuzz.toml"), Some("policies".into())),
            PathBuf::from("./policies")
        );
        assert_eq!(
            policy_dir_beside(Path::new("/etc/jitgate/jitgate.toml"), None),
            PathBuf::from("/etc/jitgate")
        );
        assert_eq!(
            policy_dir_beside(Path::new("conf/jitgate.toml"), Some("/srv/policies".into())),
            PathBuf::from("/srv/policies")
        );
    }

    #[test]
    fn limits_are_read_and_zero_where_it_means_nothing_is_refused() {
        let s = Settings::from_toml(
            "x.toml",
            "[server]\nheader_timeout = \"5s\"\nmax_connections = 10\n[auth]\nhash_concurrency = 3\nlogin_per_minute = 0\n\
             [gateway]\nstartup_timeout = \"3s\"\nmax_sessions_per_user = 2\n[policy]\nstart_at_horizon = \"1d\"\n",
        )
        .unwrap();
        assert_eq!(s.limits.http_header_timeout, Duration::from_secs(5));
        assert_eq!((s.limits.http_max_connections, s.limits.hash_concurrency), (10, 3));
        assert_eq!(s.limits.login_rate.per_minute, 0);
        assert_eq!(s.limits.gateway_startup_timeout, Duration::from_secs(3));
        assert_eq!(s.limits.gateway_max_sessions_per_user, 2);
        assert_eq!(s.start_at_horizon, Duration::from_secs(86400));
        for bad in [
            "[server]\nheader_timeout = \"0s\"\n",
            "[server]\nmax_connections = 0\n",
            "[gateway]\nmax_unauthenticated = 0\n",
        ] {
            let e = Settings::from_toml("x.toml", bad).unwrap_err();
            assert!(e.reason.contains("must be"), "{e}");
            assert_eq!(e.line, 2, "{e}");
        }
    }

    #[test]
    fn the_store_timeout_is_read_and_zero_is_refused() {
        assert_eq!(Settings::default().store_timeout, Duration::from_secs(1));
        let s = Settings::from_toml("x.toml", "[store]\nurl = \"postgres://x@h/db\"\ntimeout = \"250ms\"\n").unwrap();
        assert_eq!(s.store_timeout, Duration::from_millis(250));
        let e = Settings::from_toml("x.toml", "[server]\nheader_timeout = \"5s\"\n[store]\ntimeout = \"0s\"\n").unwrap_err();
        assert!(e.reason.contains("store.timeout must be longer than 0s") && e.line == 4, "{e}");
    }

    #[test]
    fn mfa_and_attempt_settings_are_checked() {
        let s = Settings::from_toml(
            "x.toml",
            "[auth]\nmax_failures = 5\nlockout = \"1h\"\n[mfa]\nrequired = true\nfreshness = \"2m\"\n[secrets]\nkey_file = \"/k\"\n",
        )
        .unwrap();
        assert_eq!((s.attempts.max_failures, s.attempts.lock_for), (5, Duration::from_secs(3600)));
        assert!(s.mfa_required);
        assert_eq!(s.mfa_freshness, Duration::from_secs(120));
        assert_eq!(s.secrets_key_path(), PathBuf::from("/k"));
        let err = Settings::from_toml("x.toml", "[auth]\nmax_failures = 11\n").unwrap_err();
        assert!(err.reason.contains("between 1 and 10") && err.line == 2, "{err}");
        let err = Settings::from_toml("x.toml", "[mfa]\nissuer = \"a:b\"\n").unwrap_err();
        assert!(err.reason.contains("issuer"), "{err}");
        let err = Settings::from_toml("x.toml", "[mfa]\nfreshnes = \"5m\"\n").unwrap_err();
        assert!(err.reason.contains("freshnes"), "{err}");
    }
}
