//! The CLI's saved login: server URL, user name and session token, in the user's config
//! directory, readable by its owner only.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub username: String,
    pub token: String,
}

/// `$JITGATE_CONFIG_DIR`, else the platform's config directory (`~/.config/jitgate`).
pub fn dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("JITGATE_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    dirs::config_dir()
        .map(|d| d.join("jitgate"))
        .context("cannot find a config directory: set JITGATE_CONFIG_DIR")
}

fn path() -> Result<PathBuf> {
    Ok(dir()?.join("credentials.json"))
}

pub fn load() -> Result<Option<Credentials>> {
    let p = path()?;
    match std::fs::read_to_string(&p) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is not valid; run `jitgate login` again", p.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

pub fn save(c: &Credentials) -> Result<PathBuf> {
    write_private(&dir()?, "credentials.json", serde_json::to_string_pretty(c)?.as_bytes())
}

/// Writes `contents` to `name` in directory `d` (made 0700 if missing) as a 0600 file, through
/// a temporary file renamed into place, so a reader never sees half of it.
fn write_private(d: &std::path::Path, name: &str, contents: &[u8]) -> Result<PathBuf> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(d).with_context(|| format!("cannot create {}", d.display()))?;
    let p = d.join(name);
    let tmp = d.join(format!("{name}.{}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

pub fn remove() -> Result<()> {
    match std::fs::remove_file(path()?) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes the certificate a gateway is verified with to `gateway-ca/<sha256>.pem` in the
/// config directory (directory 0700, file 0600) and returns its path, for
/// `sslrootcert`. The name is the certificate's fingerprint, so gateways never share a file
/// by accident and a changed certificate is a new file.
pub fn save_gateway_ca(sha256: &str, pem: &str) -> Result<PathBuf> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!("the server sent the gateway's certificate with a malformed fingerprint");
    }
    write_private(
        &dir()?.join("gateway-ca"),
        &format!("{}.pem", sha256.to_ascii_lowercase()),
        pem.as_bytes(),
    )
}
