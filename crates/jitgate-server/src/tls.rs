//! TLS for jitgate's listeners: the gateway's (always on) and the HTTP listener's (optional,
//! `server.tls`), each with the configured certificate and key or, for the embedded default, a
//! self-signed pair made in the data directory on first start.

use crate::audit_log::read_or_create_private_file;
use crate::config::{HttpTls, Settings};
use crate::core::GatewayCa;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// The configured pair, else `STEM.crt` and `STEM.key` in the data directory, made self-signed
/// for `localhost`, 127.0.0.1 and `extra` names when either is missing (key 0600).
fn pair_or_self_signed(
    configured: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
    stem: &str,
    extra: Option<&str>,
) -> Result<(PathBuf, PathBuf), String> {
    if let Some((c, k)) = configured {
        return Ok((c.clone(), k.clone()));
    }
    let c = data_dir.join(format!("{stem}.crt"));
    let k = data_dir.join(format!("{stem}.key"));
    if !c.exists() || !k.exists() {
        // One half without the other is of no use: make both.
        match std::fs::remove_file(&k) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", k.display())),
            _ => {}
        }
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        // The name clients are told to use, when it is another (made into the first
        // certificate only: change it later with a certificate of your own).
        if let Some(h) = extra.filter(|h| !names.iter().any(|n| n == h)) {
            names.push(h.to_owned());
        }
        let pair = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a certificate: {e}"))?;
        let key = pair.signing_key.serialize_pem();
        read_or_create_private_file(&k, || zeroize::Zeroizing::new(key))?;
        std::fs::write(&c, pair.cert.pem()).map_err(|e| format!("{}: {e}", c.display()))?;
        tracing::info!(cert = %c.display(), "made a self-signed certificate ({stem}: localhost, 127.0.0.1)");
    }
    Ok((c, k))
}

fn certificates_in(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", p.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", p.display()));
    }
    Ok(certs)
}

fn key_in(p: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| format!("{}: {e}", p.display()))?
        .ok_or_else(|| format!("{}: no private key", p.display()))
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    what: &str,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{what} TLS: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The HTTP listener's TLS when `server.tls` is on: HTTPS, so that the pages are a secure
/// context (passkeys) wherever they are opened from, with HTTP/1.1 only as before.
pub fn http(settings: &Settings) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let configured = match &settings.http_tls {
        HttpTls::Off => return Ok(None),
        HttpTls::SelfSigned => None,
        HttpTls::Files(c, k) => Some((c.clone(), k.clone())),
    };
    let (c, k) = pair_or_self_signed(configured.as_ref(), &settings.data_dir, "http-tls", None)?;
    let config = server_config(certificates_in(&c)?, key_in(&k)?, &[b"http/1.1"], "HTTP")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// The gateway's TLS, and what clients trust to verify it: `gateway.tls_ca`, else the chain's
/// last certificate (the self-signed one itself, which OpenSSL, hence libpq's
/// `sslmode=verify-full`, accepts as `sslrootcert`).
pub(crate) fn gateway(settings: &Settings) -> Result<(Arc<ServerConfig>, GatewayCa), String> {
    use sha2::Digest;
    let (cert_path, key_path) = pair_or_self_signed(
        settings.gateway_tls.as_ref(),
        &settings.data_dir,
        "gateway-tls",
        settings.gateway_public_host.as_deref(),
    )?;
    let certs = certificates_in(&cert_path)?;
    let key = key_in(&key_path)?;
    // Only certificates go to clients, re-encoded: never whatever else the file holds.
    let trusted = match &settings.gateway_tls_ca {
        Some(p) => certificates_in(p)?,
        None => certs[certs.len() - 1..].to_vec(),
    };
    let ca = GatewayCa {
        pem: trusted.iter().map(|c| pem_certificate(c)).collect(),
        sha256: hex::encode(sha2::Sha256::digest(trusted[0].as_ref())),
    };
    Ok((server_config(certs, key, &[], "gateway")?, ca))
}

/// One certificate as PEM, 64 characters a line.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
