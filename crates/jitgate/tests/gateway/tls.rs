//! `jitgate connect` sends its token only to a gateway whose certificate checks out: psql runs
//! with `sslmode=verify-full` against the certificate the server hands over with the token, so
//! neither an impostor with a certificate of its own nor one that refuses TLS gets the token.

use super::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// A PEM's certificates without the line breaks, to compare two encodings of them.
fn pem_body(pem: &str) -> String {
    pem.split_whitespace().collect()
}

/// psql on a connection string, with the password in the environment and nothing of the
/// test's own environment that could change where or how it connects.
fn psql_dsn(dsn: &str, password: &str, sql: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-tA", "-d", dsn, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGGSSENCMODE", "disable");
    for var in ["PGHOST", "PGHOSTADDR", "PGPORT", "PGSSLMODE", "PGSSLROOTCERT", "PGSERVICE"] {
        cmd.env_remove(var);
    }
    cmd
}

/// `jitgate --json connect pg --print-dsn` as alice: the DSN and the password.
async fn printed_dsn(s: &TestServer) -> (String, String, serde_json::Value) {
    let out = s.cli("alice", &["--json", "connect", "pg", "--print-dsn"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = out.json();
    let dsn = v["dsn"].as_str().unwrap().to_owned();
    let password = v["password"].as_str().unwrap().to_owned();
    (dsn, password, v)
}

#[tokio::test]
async fn jitgate_connect_runs_psql_over_verified_tls() {
    let (s, alice, _grant) = with_grant().await;
    s.cli_login("alice").await;

    // The server hands over the certificate its gateway serves, and its fingerprint.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let served = s.data_dir().join("gateway-tls.crt");
    let pem = t.gateway_ca_pem.clone().expect("the gateway runs with TLS");
    assert_eq!(pem_body(&pem), pem_body(&std::fs::read_to_string(&served).unwrap()));
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&served)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout);
    let fp = fp.trim().rsplit('=').next().unwrap().replace(':', "").to_ascii_lowercase();
    assert_eq!(t.gateway_ca_sha256.as_deref(), Some(fp.as_str()));
    let (_, doc) = Client::new(&s.url, None)
        .raw(reqwest::Method::GET, "/api/v1/openapi.json", "application/json", vec![])
        .await
        .unwrap();
    let schemas = serde_json::from_str::<serde_json::Value>(&doc).unwrap()["components"]["schemas"].clone();
    let answer = serde_json::to_value(&t).unwrap();
    crate::bad_input::conforms(&answer, &schemas["ConnectToken"], &schemas, "ConnectToken");
    assert!(answer["gateway_ca_pem"].is_string() && answer["gateway_ca_sha256"].is_string());

    // The real binary runs psql, over TLS.
    let out = s
        .cli(
            "alice",
            &["connect", "pg", "--", "-X", "-tA", "-c", "SELECT 40 + 2", "-c", "\\conninfo"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("42\n"), "{out:?}");
    assert!(out.stdout.contains("SSL connection"), "{out:?}");

    // --print-dsn: verify-full against a private copy of that certificate; the DSN works.
    let (dsn, password, v) = printed_dsn(&s).await;
    assert!(dsn.contains("sslmode=verify-full"), "{dsn}");
    assert!(dsn.contains("sslrootcert="), "{dsn}");
    assert_eq!(v["sslmode"], "verify-full");
    let root = std::path::PathBuf::from(v["sslrootcert"].as_str().unwrap());
    assert!(root.starts_with(s.dir.path().join("cli-alice")), "{root:?}");
    assert_eq!(pem_body(&std::fs::read_to_string(&root).unwrap()), pem_body(&pem));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o600);
        assert_eq!(mode(root.parent().unwrap()), 0o700);
    }
    let out = run(psql_dsn(&dsn, &password, "SELECT 'over verified TLS'")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over verified TLS");
    // The certificate also names localhost.
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let by_name = format!(
        "postgresql://alice@localhost:{}/pg?sslmode=verify-full&sslrootcert={}",
        t.port,
        root.display()
    );
    let out = run(psql_dsn(&by_name, t.token.expose(), "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");

    // How psql is run: the token only in PGPASSWORD, never in its arguments.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("psql");
    std::fs::write(&fake, "#!/bin/sh\nenv > \"$0.env\"\nprintf '%s\\n' \"$@\" > \"$0.args\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(["connect", "pg", "--", "-c", "SELECT 1"])
        .env("JITGATE_CONFIG_DIR", s.dir.path().join("cli-alice"))
        .env("JITGATE_SERVER", &s.url)
        .env("PATH", path)
        .env("PGSSLMODE", "disable")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let env = std::fs::read_to_string(bin.path().join("psql.env")).unwrap();
    let args = std::fs::read_to_string(bin.path().join("psql.args")).unwrap();
    assert!(env.lines().any(|l| l == "PGSSLMODE=verify-full"), "{env}");
    assert!(env.lines().any(|l| l == format!("PGSSLROOTCERT={}", root.display())), "{env}");
    let token = env.lines().find_map(|l| l.strip_prefix("PGPASSWORD=")).unwrap();
    assert!(token.starts_with("jgc"), "{env}");
    assert!(!args.contains(token), "{args}");

    // A restart keeps the certificate; a lost one is made again, with its key.
    let (settings, clock, dir) = s.stop().await;
    let s = TestServer::restart(settings.clone(), clock.clone(), dir.clone()).await;
    let again = s.login("alice").await.connect(&connect_body("pg")).await.unwrap();
    assert_eq!(again.gateway_ca_sha256, t.gateway_ca_sha256);
    let (settings, clock, dir) = s.stop().await;
    std::fs::remove_file(settings.data_dir.join("gateway-tls.crt")).unwrap();
    let s = TestServer::restart(settings, clock, dir).await;
    s.cli_login("alice").await;
    let (dsn, password, v) = printed_dsn(&s).await;
    assert_ne!(v["gateway_ca_sha256"].as_str(), t.gateway_ca_sha256.as_deref());
    let out = run(psql_dsn(&dsn, &password, "SELECT 1")).await;
    assert!(out.status.success(), "{out:?}");
}

/// A listener on loopback posing as the gateway: with `tls` it completes TLS with its own
/// certificate, without it answers 'N' to SSLRequest; either way it then asks for the
/// password in clear, as the gateway does, and keeps every byte the client sends.
struct Impostor {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Impostor {
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (kept, tls) = (kept.clone(), tls.clone());
                tokio::spawn(async move {
                    let _ = pose(tcp, tls, kept).await;
                });
            }
        });
        Self { addr, received, task }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pose(mut tcp: tokio::net::TcpStream, tls: Option<Arc<rustls::ServerConfig>>, kept: Arc<Mutex<Vec<u8>>>) -> std::io::Result<()> {
    let mut first = [0u8; 8];
    tcp.read_exact(&mut first).await?;
    kept.lock().unwrap().extend_from_slice(&first);
    if first != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
        return ask_password(tcp, kept, Some(first)).await;
    }
    match tls {
        None => {
            tcp.write_all(b"N").await?;
            ask_password(tcp, kept, None).await
        }
        Some(config) => {
            tcp.write_all(b"S").await?;
            let stream = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
            ask_password(stream, kept, None).await
        }
    }
}

/// Reads the startup message (its first 8 bytes may be in `start`), asks for a cleartext
/// password and reads the answer.
async fn ask_password<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    kept: Arc<Mutex<Vec<u8>>>,
    start: Option<[u8; 8]>,
) -> std::io::Result<()> {
    let (len, have) = match start {
        Some(b) => (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 8),
        None => {
            let mut l = [0u8; 4];
            s.read_exact(&mut l).await?;
            kept.lock().unwrap().extend_from_slice(&l);
            (u32::from_be_bytes(l) as usize, 4)
        }
    };
    let mut rest = vec![0u8; len.saturating_sub(have).min(10_000)];
    s.read_exact(&mut rest).await?;
    kept.lock().unwrap().extend_from_slice(&rest);
    s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
    s.flush().await?;
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    kept.lock().unwrap().extend_from_slice(&head);
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4).min(10_000)];
    s.read_exact(&mut body).await?;
    kept.lock().unwrap().extend_from_slice(&body);
    Ok(())
}

/// TLS with a certificate of the impostor's own, for the same names as the gateway's.
fn impostor_tls() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = CertificateDer::from(pair.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn an_impostor_gateway_never_gets_the_token() {
    let (s, _alice, _grant) = with_grant().await;
    s.cli_login("alice").await;
    let (dsn, password, _) = printed_dsn(&s).await;
    let gw = *s.core.gateway_addr.get().unwrap();
    let base = dsn.split('?').next().unwrap().to_owned();

    // (b) its own certificate; (c) no TLS at all. The control is what psql does without
    // verification, to show the impostor would catch the token.
    for (tls, refusal, weak) in [
        (Some(impostor_tls()), "certificate verify failed", "require"),
        (None, "server does not support SSL", "prefer"),
    ] {
        let impostor = Impostor::start(tls).await;
        let moved = |dsn: &str| dsn.replace(&format!(":{}/", gw.port()), &format!(":{}/", impostor.addr.port()));
        let out = run(psql_dsn(&moved(&dsn), &password, "SELECT 1")).await;
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(refusal), "{stderr}");
        assert!(!contains(&impostor.received(), password.as_bytes()), "the impostor got the token");

        let control = format!("{}?sslmode={weak}", moved(&base));
        let _ = run(psql_dsn(&control, &password, "SELECT 1")).await;
        assert!(
            contains(&impostor.received(), password.as_bytes()),
            "without verify-full the impostor would have had it ({weak})"
        );
    }

    // The real gateway still takes the token: nobody spent it.
    let out = run(psql_dsn(&dsn, &password, "SELECT 'still good'")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still good");
}

/// An address of this host that is not loopback, when it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    ["192.0.2.1:9", "10.255.255.254:9", "203.0.113.1:9"].iter().find_map(|to| {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        sock.connect(to).ok()?;
        let ip = sock.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

#[tokio::test]
async fn without_tls_a_token_is_taken_only_from_loopback() {
    let s = TestServer::spawn_with(Backend::Sqlite, true, |st| st.gateway = Some("0.0.0.0:0".parse().unwrap())).await;
    let (s, alice, _grant) = with_grant_on(s).await;
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this host has no address other than loopback");
        return;
    };
    let port = s.core.gateway_addr.get().unwrap().port();
    let from = |host: String, sslmode: &str, token: &str| {
        let dsn = format!("postgresql://alice@{host}:{port}/pg?sslmode={sslmode}");
        psql_dsn(&dsn, token, "SELECT 1")
    };
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(from(ip.to_string(), "disable", t.token.expose())).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only accepted over TLS or from this host"), "{stderr}");
    // The same token (refused before it was sent) over TLS from the same address, and
    // another without TLS from loopback.
    let out = run(from(ip.to_string(), "require", t.token.expose())).await;
    assert!(out.status.success(), "{out:?}");
    let t = alice.connect(&connect_body("pg")).await.unwrap();
    let out = run(from("127.0.0.1".into(), "disable", t.token.expose())).await;
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn a_configured_certificate_is_verified_with_the_configured_ca() {
    let (ca, cert, key) = test_pki();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (leaf, chain, key, ca_file) = (
        write("leaf.pem", &cert),
        write("chain.pem", &format!("{cert}{ca}")),
        write("key.pem", &key),
        write("ca.pem", &ca),
    );
    // `tls_ca` only with a configured certificate.
    let bad = "[gateway]\ntls_ca = \"/etc/ca.pem\"\n";
    assert!(jitgate_server::Settings::from_toml("t.toml", bad).is_err());

    // A leaf with `tls_ca`; a chain ending with the CA without it: clients trust the CA.
    for (cert_file, ca_setting) in [(leaf, Some(ca_file)), (chain, None)] {
        let (k, c) = (key.clone(), ca_setting.clone());
        let s = TestServer::spawn_with(Backend::Sqlite, true, move |st| {
            st.gateway_tls = Some((cert_file, k));
            st.gateway_tls_ca = c;
        })
        .await;
        let (s, _alice, _grant) = with_grant_on(s).await;
        s.cli_login("alice").await;
        let (dsn, password, v) = printed_dsn(&s).await;
        let root = v["sslrootcert"].as_str().unwrap();
        assert_eq!(pem_body(&std::fs::read_to_string(root).unwrap()), pem_body(&ca), "{ca_setting:?}");
        // The certificate names localhost only: verified by that name, refused by address.
        let by_name = dsn.replace("@127.0.0.1:", "@localhost:");
        let out = run(psql_dsn(&dsn, &password, "SELECT 1")).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not match host name"), "{out:?}");
        let out = run(psql_dsn(&by_name, &password, "SELECT 1")).await;
        assert!(out.status.success(), "{ca_setting:?}: {out:?}");
    }
}
