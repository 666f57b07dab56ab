//! What every verb shares: the server and the saved login ([`Ctx`]), printing text or JSON, and
//! reading secrets from a prompt or standard input (never from argv).

use crate::credentials::{self, Credentials};
use anyhow::{bail, Context, Result};
use jitgate_client::Client;
use serde::Serialize;
use std::io::BufRead;
use std::path::PathBuf;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

pub(super) struct Ctx {
    pub(super) json: bool,
    server: String,
    creds: Option<Credentials>,
    /// `--ca-file`: a certificate to trust for an https:// server.
    ca: Option<Vec<u8>>,
}

impl Ctx {
    /// The server from `--server`, else the one logged in to, else the default.
    pub(super) fn new(server: Option<String>, json: bool, ca_file: Option<&std::path::Path>) -> Result<Self> {
        let creds = credentials::load()?;
        let server = server
            .or_else(|| creds.as_ref().map(|c| c.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let ca = ca_file
            .map(|p| std::fs::read(p).with_context(|| format!("--ca-file {}", p.display())))
            .transpose()?;
        let ctx = Self { json, server, creds, ca };
        // A bad file is said at once, not at the first call.
        ctx.anonymous_checked()?;
        Ok(ctx)
    }

    fn with_ca(&self, client: Client) -> Result<Client> {
        match &self.ca {
            Some(pem) => client.trusting(pem).map_err(|e| anyhow::anyhow!("--ca-file: {e}")),
            None => Ok(client),
        }
    }

    fn anonymous_checked(&self) -> Result<Client> {
        self.with_ca(Client::new(&self.server, None))
    }

    pub(super) fn server(&self) -> &str {
        &self.server
    }

    pub(super) fn anonymous(&self) -> Client {
        // Checked when the context was made.
        self.anonymous_checked().unwrap_or_else(|_| Client::new(&self.server, None))
    }

    /// The logged-in session's client; with `JITGATE_TOKEN` set (an API token, for scripts),
    /// that token's instead.
    pub(super) fn client(&self) -> Result<Client> {
        if let Some(token) = std::env::var("JITGATE_TOKEN").ok().filter(|t| !t.is_empty()) {
            return self.with_ca(Client::new(&self.server, Some(token)));
        }
        match &self.creds {
            Some(c) if c.server.trim_end_matches('/') == self.server.trim_end_matches('/') => {
                self.with_ca(Client::new(&self.server, Some(c.token.clone())))
            }
            _ => bail!("not logged in to {}: run `jitgate login`", self.server),
        }
    }

    /// Saves a new session as this user's login to this server.
    pub(super) fn keep_session(&self, session: &jitgate_api::SessionToken) -> Result<PathBuf> {
        credentials::save(&Credentials {
            server: self.server.clone(),
            username: session.username.to_string(),
            token: session.token.expose().to_owned(),
        })
    }

    pub(super) fn print<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        use std::io::Write;
        let out = if self.json {
            serde_json::to_string_pretty(value)?
        } else {
            text(value)
        };
        // A reader that stops early (`| head`) is no error of ours: the output ends there,
        // as with any Unix tool, rather than in a panic.
        match writeln!(std::io::stdout().lock(), "{out}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        }
    }
}

pub(super) fn read_stdin_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        bail!("no {what} on standard input");
    }
    Ok(line)
}

pub(super) fn prompt_secret(prompt: &str) -> Result<String> {
    rpassword::prompt_password(prompt).context("cannot read from the terminal: use --password-stdin")
}

pub(super) fn password(from_stdin: bool, confirm: bool) -> Result<String> {
    if from_stdin {
        return read_stdin_line("password");
    }
    let p = prompt_secret("Password: ")?;
    if confirm && prompt_secret("Password again: ")? != p {
        bail!("the passwords differ");
    }
    Ok(p)
}
