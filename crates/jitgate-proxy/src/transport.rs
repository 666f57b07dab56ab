//! How the gateway reaches an upstream: TCP, a Unix socket on this host, or TLS over TCP after
//! PostgreSQL's SSLRequest, with libpq's `sslmode` meanings.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};

/// TLS to the upstream.
#[derive(Debug, Clone)]
pub enum UpstreamTls {
    Disable,
    /// TLS when offered, not authenticated; plain text otherwise.
    Prefer,
    /// TLS or nothing; the certificate is not checked.
    Require,
    /// A certificate chaining to these roots, for any name.
    VerifyCa(Arc<RootCertStore>),
    /// A certificate chaining to these roots, for the target's host name.
    VerifyFull(Arc<RootCertStore>),
}

impl UpstreamTls {
    /// The Mozilla roots, for `verify-*` without a configured authority.
    pub fn public_roots() -> Arc<RootCertStore> {
        static ROOTS: std::sync::OnceLock<Arc<RootCertStore>> = std::sync::OnceLock::new();
        ROOTS
            .get_or_init(|| Arc::new(RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())))
            .clone()
    }

    /// Roots from PEM text (a `sslrootcert` file).
    pub fn roots_from_pem(pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        let mut reader = io::BufReader::new(pem);
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| format!("not PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("not a usable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("no certificate in it".into());
        }
        Ok(Arc::new(roots))
    }
}

/// An open connection to the upstream, whichever way it goes.
pub enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

/// The socket path libpq derives from a directory and a port.
pub fn socket_path(dir: &str, port: u16) -> String {
    format!("{}/.s.PGSQL.{port}", dir.trim_end_matches('/'))
}

/// Connects to `host:port` (a Unix socket when `host` starts with `/`), without TLS.
pub async fn open_plain(host: &str, port: u16) -> io::Result<Transport> {
    if host.starts_with('/') {
        return Ok(Transport::Unix(UnixStream::connect(socket_path(host, port)).await?));
    }
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(Transport::Tcp(tcp))
}

/// Connects and, as `tls` asks, negotiates TLS. Errors are texts for the operator.
pub async fn open(host: &str, port: u16, tls: &UpstreamTls) -> Result<Transport, String> {
    if host.starts_with('/') {
        // libpq does not use TLS on Unix sockets either: the kernel carries the bytes.
        if !matches!(tls, UpstreamTls::Disable | UpstreamTls::Prefer) {
            return Err(format!("{}: TLS does not apply to a Unix socket", socket_path(host, port)));
        }
        return open_plain(host, port)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", socket_path(host, port)));
    }
    let where_ = format!("{host}:{port}");
    let mut tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot reach {where_}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("{where_}: {e}"))?;
    if matches!(tls, UpstreamTls::Disable) {
        return Ok(Transport::Tcp(tcp));
    }
    // SSLRequest: length 8, code 80877103.
    let mut request = [0u8; 8];
    request[..4].copy_from_slice(&8u32.to_be_bytes());
    request[4..].copy_from_slice(&80_877_103u32.to_be_bytes());
    tcp.write_all(&request).await.map_err(|e| format!("{where_}: {e}"))?;
    // One byte read, nothing buffered: whatever follows the 'S' goes to the TLS layer, so bytes
    // a man in the middle slips in before the handshake cannot pass as server messages
    // (CVE-2021-23222).
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| format!("{where_}: no answer to the TLS request: {e}"))?;
    match answer[0] {
        b'S' => {}
        b'N' if matches!(tls, UpstreamTls::Prefer) => return Ok(Transport::Tcp(tcp)),
        b'N' => return Err(format!("{where_} does not offer TLS (the resource's sslmode asks for it)")),
        other => return Err(format!("{where_}: unexpected answer {other:#04x} to the TLS request")),
    }
    let config = client_config(tls);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("'{host}' is not a host name for TLS: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to {where_} failed: {e}"))?;
    Ok(Transport::Tls(Box::new(stream)))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `tls` (the certificate checks its mode asks for).
pub fn client_config(tls: &UpstreamTls) -> Arc<ClientConfig> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match tls {
        UpstreamTls::Disable | UpstreamTls::Prefer | UpstreamTls::Require => Arc::new(AnyCertificate(provider.clone())),
        UpstreamTls::VerifyCa(roots) => Arc::new(AnyName(webpki(roots, &provider))),
        UpstreamTls::VerifyFull(roots) => webpki(roots, &provider),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

fn webpki(roots: &Arc<RootCertStore>, provider: &Arc<CryptoProvider>) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .expect("a non-empty root store")
}

/// `sslmode=require`/`prefer`: encryption without authentication, as libpq does it. The
/// handshake signatures are still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not compared.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_follow_libpq() {
        assert_eq!(socket_path("/var/run/postgresql", 5432), "/var/run/postgresql/.s.PGSQL.5432");
        assert_eq!(socket_path("/tmp/", 6000), "/tmp/.s.PGSQL.6000");
    }

    #[test]
    fn root_files_must_hold_certificates() {
        assert!(UpstreamTls::roots_from_pem(b"").is_err());
        assert!(UpstreamTls::roots_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        assert!(!UpstreamTls::public_roots().is_empty());
    }
}
