use jitgate_api::BootstrapBody;
use jitgate_client::Client;
use jitgate_core::names::Username;
use jitgate_core::Timestamp;
use jitgate_server::clock::{ManualClock, SharedClock};
use jitgate_server::core::AppState;
use jitgate_server::{Application, Settings, StopHandle};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const PASSWORD: &str = "a long test password";

/// The policy most tests use: `read` needs one db-owner; `write` needs a db-owner AND a
/// security approver; neither asks for a second factor. `dba` needs a db-owner and a fresh
/// second factor for every action.
pub const CONFIG: &str = r#"
[groups]
engineers = ["alice", "carol", "dave"]
db-owners = ["bob", "carol"]
security = ["sam", "carol"]

[[resources]]
name = "prod-db"
description = "production PostgreSQL"

[resources.roles.read]
requesters = ["engineers"]
max_duration = "1h"
default_duration = "30m"
pending_ttl = "10m"
reason = { required = true, min_length = 5 }
stages = [{ name = "owner", groups = ["db-owners"], min_approvals = 1 }]
mfa = []

[resources.roles.write]
requesters = ["engineers"]
max_duration = "2h"
pending_ttl = "1h"
reason = { required = true, min_length = 5, ticket_pattern = "INC-[0-9]+" }
stages = [
  { name = "owner", groups = ["db-owners"], min_approvals = 1 },
  { name = "security", groups = ["security"], min_approvals = 1 },
]
mfa = []

# Every action needs a fresh second factor (the default when a role says nothing).
[resources.roles.dba]
requesters = ["engineers"]
max_duration = "1h"
reason = { required = true, min_length = 5 }
stages = [{ name = "owner", groups = ["db-owners"], min_approvals = 1 }]
"#;

pub enum Backend {
    Sqlite,
    Postgres(String),
}

pub struct TestServer {
    pub url: String,
    pub core: AppState,
    pub clock: Option<ManualClock>,
    pub dir: Arc<tempfile::TempDir>,
    pub admin: Client,
    stop: StopHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    settings: Settings,
}

pub fn t0() -> Timestamp {
    // Tuesday 2026-11-24 10:00:00 UTC
    Timestamp::parse_rfc3339("2026-11-24T10:00:00Z").unwrap()
}

fn settings(dir: &Path, backend: &Backend) -> Settings {
    let mut s = Settings::from_toml("test.toml", CONFIG).unwrap();
    s.http = "127.0.0.1:0".parse().unwrap();
    s.gateway = Some("127.0.0.1:0".parse().unwrap());
    s.data_dir = dir.join("data");
    // Every test logs in from 127.0.0.1, many times a minute; the rate per address has tests
    // of its own.
    s.limits.login_rate = jitgate_server::limits::RateSetting::OFF;
    if let Backend::Postgres(url) = backend {
        s.store_url = Some(url.clone());
        s.signing_key_file = Some(dir.join("pg-signing.key"));
    }
    s
}

async fn start(settings: Settings, clock: Option<ManualClock>) -> (Application, String) {
    let shared: Option<SharedClock> = clock.clone().map(|c| Arc::new(c) as SharedClock);
    let app = Application::build(settings, shared, Some("test.toml"))
        .await
        .expect("server starts");
    let pages = jitgate_web::router(app.core());
    let app = app.with_pages(pages);
    let url = format!("http://{}", app.addr());
    (app, url)
}

impl TestServer {
    /// A fresh server with the test policy, an admin `admin`, and users alice, bob, carol,
    /// dave and sam with passwords. `manual` puts it on a manual clock starting at [`t0`].
    pub async fn spawn(manual: bool) -> Self {
        Self::spawn_on(Backend::Sqlite, manual).await
    }

    pub async fn spawn_pg(manual: bool) -> Self {
        let url = jitgate_store::testing::fresh_pg_database().await.expect("PostgreSQL for tests");
        Self::spawn_on(Backend::Postgres(url), manual).await
    }

    pub async fn spawn_on(backend: Backend, manual: bool) -> Self {
        Self::spawn_with(backend, manual, |_| {}).await
    }

    /// Like [`spawn_on`](Self::spawn_on), with the test settings changed by `tweak` first.
    pub async fn spawn_with(backend: Backend, manual: bool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut settings = settings(dir.path(), &backend);
        tweak(&mut settings);
        let clock = manual.then(|| ManualClock::new(t0()));
        let (app, url) = start(settings.clone(), clock.clone()).await;
        let token = app.setup_token().expect("a new store offers bootstrap").expose_secret().to_owned();
        let app_parts = Running::serve(app, url.clone(), clock, dir, settings);
        let anon = Client::new(&url, None);
        let session = anon
            .bootstrap(&BootstrapBody {
                setup_token: token.into(),
                username: Username::parse("admin").unwrap(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap();
        let admin = anon.with_token(&session.token);
        for name in ["alice", "bob", "carol", "dave", "sam"] {
            admin
                .create_user(&jitgate_api::CreateUserBody {
                    username: Username::parse(name).unwrap(),
                    display_name: String::new(),
                    password: Some(PASSWORD.into()),
                    admin: false,
                })
                .await
                .unwrap();
        }
        Self::running(app_parts, admin)
    }

    pub async fn login(&self, user: &str) -> Client {
        let anon = Client::new(&self.url, None);
        let s = anon.login(user, PASSWORD).await.unwrap();
        anon.with_token(&s.token)
    }

    pub fn clock(&self) -> &ManualClock {
        self.clock.as_ref().expect("this test server runs on a manual clock")
    }

    /// Settings for a second server on the same store and key (PostgreSQL only).
    pub fn settings_for_another_instance(&self) -> Settings {
        self.settings.clone()
    }

    /// A second instance on this one's PostgreSQL store, secrets and signing keys (and manual
    /// clock), with its own API and gateway ports.
    pub async fn another_instance(&self) -> Self {
        Self::restart(self.settings_for_another_instance(), self.clock.clone(), self.dir.clone()).await
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn data_dir(&self) -> PathBuf {
        self.settings.data_dir.clone()
    }

    /// Stops the server (graceful: final checkpoint written) and waits for it.
    pub async fn stop(self) -> (Settings, Option<ManualClock>, Arc<tempfile::TempDir>) {
        self.stop.stop();
        self.task.await.unwrap().unwrap();
        (self.settings, self.clock, self.dir)
    }

    /// Starts a server again on the same store and files.
    pub async fn restart(settings: Settings, clock: Option<ManualClock>, dir: Arc<tempfile::TempDir>) -> Self {
        // The stopped server's last tasks (a session's end being recorded, say) may hold the
        // store a moment longer: wait for its lock to be let go, as an operator would.
        let mut tries = 0;
        let (app, url) = loop {
            let shared: Option<SharedClock> = clock.clone().map(|c| Arc::new(c) as SharedClock);
            match Application::build(settings.clone(), shared, Some("test.toml")).await {
                Ok(app) => {
                    let pages = jitgate_web::router(app.core());
                    let app = app.with_pages(pages);
                    let url = format!("http://{}", app.addr());
                    break (app, url);
                }
                Err(e) if tries < 50 && e.to_string().contains("in use by another jitgate process") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server starts: {e:?}"),
            }
        };
        assert!(app.setup_token().is_none(), "a store with users offers no bootstrap");
        let parts = Running::serve(app, url, clock, dir, settings);
        let anon = Client::new(&parts.url, None);
        let admin = anon.with_token(&anon.login("admin", PASSWORD).await.unwrap().token);
        Self::running(parts, admin)
    }

    fn running(p: Running, admin: Client) -> Self {
        Self {
            url: p.url,
            core: p.core,
            clock: p.clock,
            dir: p.dir,
            admin,
            stop: p.stop,
            task: p.task,
            settings: p.settings,
        }
    }

    /// Runs the real `jitgate` binary as `user` (each user has their own config directory).
    pub async fn cli(&self, user: &str, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let config_dir = self.dir.path().join(format!("cli-{user}"));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"));
        cmd.args(args)
            .env("JITGATE_CONFIG_DIR", &config_dir)
            .env("JITGATE_SERVER", &self.url)
            .env_remove("JITGATE_SETUP_TOKEN")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run the jitgate binary");
        {
            use tokio::io::AsyncWriteExt;
            let mut input = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).await.unwrap();
            }
        }
        let out = child.wait_with_output().await.unwrap();
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub async fn cli_login(&self, user: &str) {
        let out = self
            .cli(user, &["login", user, "--password-stdin"], Some(&format!("{PASSWORD}\n")))
            .await;
        assert_eq!(out.code, 0, "login {user}: {out:?}");
    }

    pub async fn audit_head(&self) -> i64 {
        self.core.store.audit_head().await.unwrap().seq
    }
}

/// A started server before its admin client exists.
struct Running {
    url: String,
    core: AppState,
    clock: Option<ManualClock>,
    dir: Arc<tempfile::TempDir>,
    stop: StopHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    settings: Settings,
}

impl Running {
    fn serve(app: Application, url: String, clock: Option<ManualClock>, dir: Arc<tempfile::TempDir>, settings: Settings) -> Self {
        let core = app.core();
        let stop = app.stop_handle();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            url,
            core,
            clock,
            dir,
            stop,
            task,
            settings,
        }
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
    pub fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(self.stderr.trim()).unwrap_or_else(|e| panic!("stderr not JSON ({e}): {self:?}"));
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn request_body(resource: &str, role: &str, duration: Option<&str>, reason: &str) -> jitgate_api::CreateRequestBody {
    jitgate_api::CreateRequestBody {
        resource: resource.into(),
        role: role.into(),
        reason: reason.into(),
        ticket: None,
        duration: duration.map(str::to_owned),
        start_at: None,
        extends: None,
        mfa: None,
        break_glass: false,
    }
}

/// Waits (bounded) for a condition the engine brings about in the background.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, std::time::Duration::from_secs(2), f).await
}

/// Like [`eventually`], for what happens on a timer of its own (retries).
pub async fn eventually_within<F, Fut>(what: &str, limit: std::time::Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}
