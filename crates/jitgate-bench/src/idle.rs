//! `jitgate-bench idle`: gateway memory per idle connection. A `jitgate serve` process (the
//! release binary) holds N client sessions open through its gateway; its resident memory is
//! read before and after. The upstream here is a stand-in that answers the login and then
//! idles: 5,000 real PostgreSQL backends do not fit this machine, and the upstream's memory is
//! not what is measured.

use anyhow::{bail, Context, Result};
use jitgate_api::ConnectBody;
use jitgate_client::Client;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Answers a startup packet with AuthenticationOk, BackendKeyData and ReadyForQuery, then
/// holds the connection until the other side closes it.
async fn stand_in_upstream(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(len) = s.read_u32().await else { return };
            let mut rest = vec![0u8; (len as usize).saturating_sub(4)];
            if s.read_exact(&mut rest).await.is_err() {
                return;
            }
            let mut hello = msg(b'R', &0i32.to_be_bytes());
            hello.extend(msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
            hello.extend(msg(b'Z', b"I"));
            if s.write_all(&hello).await.is_err() {
                return;
            }
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A client's connection to the gateway: plain TCP, or TLS after SSLRequest.
type Conn = jitgate_proxy::transport::Transport;

async fn connect(gateway: u16, tls: bool) -> Result<Conn> {
    let mut tcp = TcpStream::connect(("127.0.0.1", gateway)).await?;
    if !tls {
        return Ok(Conn::Tcp(tcp));
    }
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    if tcp.read_u8().await? != b'S' {
        bail!("the gateway declined TLS");
    }
    // The gateway's certificate is self-signed; what is measured here is memory, not trust.
    let config = jitgate_proxy::transport::client_config(&jitgate_proxy::transport::UpstreamTls::Require);
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Conn::Tls(Box::new(stream)))
}

/// One client session through the gateway, logged in and left idle.
async fn open(gateway: u16, token: &str, tls: bool) -> Result<Conn> {
    let mut s = connect(gateway, tls).await?;
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(b"user\0alice\0database\0idle\0\0");
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(startup);
    s.write_all(&packet).await?;
    let mut pw = token.as_bytes().to_vec();
    pw.push(0);
    let mut asked = [0u8; 9];
    s.read_exact(&mut asked).await?;
    if asked[0] != b'R' {
        bail!("the gateway answered {:?}", asked[0] as char);
    }
    s.write_all(&msg(b'p', &pw)).await?;
    // Read until ReadyForQuery.
    loop {
        let kind = s.read_u8().await?;
        let len = s.read_u32().await? as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).await?;
        match kind {
            b'Z' => return Ok(s),
            b'E' => bail!("refused: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
}

/// Starts `jitgate serve --config CONFIG` and reads its one-time setup token from standard
/// error (the rest of which is drained). Returns the process, its pid and the token.
pub async fn spawn_server(jitgate: &str, config: &std::path::Path) -> Result<(tokio::process::Child, u32, String)> {
    let mut server = tokio::process::Command::new(jitgate)
        .args(["serve", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("start jitgate serve")?;
    let pid = server.id().context("server pid")?;
    let mut stderr = tokio::io::BufReader::new(server.stderr.take().context("stderr")?);
    let token = {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let mut next_is_token = false;
        loop {
            line.clear();
            if stderr.read_line(&mut line).await? == 0 {
                bail!("the server ended before printing its setup token");
            }
            if next_is_token {
                break line.trim().to_owned();
            }
            next_is_token = line.contains("one-time setup token");
        }
    };
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink).await;
    });
    Ok((server, pid, token))
}

pub async fn idle(jitgate: &str, connections: usize, tls: bool) -> Result<()> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_port = upstream.local_addr()?.port();
    tokio::spawn(stand_in_upstream(upstream));
    let dir = tempfile::tempdir()?;
    let (http, gateway) = (free_port()?, free_port()?);
    let config = dir.path().join("jitgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp = \"127.0.0.1:{http}\"\ndata_dir = \"{}\"\n[gateway]\nlisten = \"127.0.0.1:{gateway}\"\n\
             # Thousands of connections from one address on purpose: no rate per address.\nconnections_per_minute = 0\nmax_unauthenticated = 10000\nmax_unauthenticated_per_address = 10000\n\
             [groups]\nengineers = [\"alice\"]\ndb-owners = [\"bob\"]\n[[resources]]\nname = \"idle\"\n\
             [resources.postgres]\nport = {upstream_port}\ndatabase = \"x\"\nuser = \"x\"\nrecord_statements = false\n\
             [resources.roles.read]\nrequesters = [\"engineers\"]\nstages = [{{ groups = [\"db-owners\"] }}]\nmfa = []\n\
             # The stand-in upstream answers no query, so the privilege check is off.\nallow_privileged_login = true\n",
            dir.path().join("data").display()
        ),
    )?;
    let (mut server, pid, token) = spawn_server(jitgate, &config).await?;
    let anon = Client::new(&format!("http://127.0.0.1:{http}"), None);
    crate::bootstrap_with_users(&anon, token).await?;
    let pw = crate::PASSWORD;
    let alice = anon.with_token(&anon.login("alice", pw).await?.token);
    let bob = anon.with_token(&anon.login("bob", pw).await?.token);
    let mut body = crate::request_body("idle");
    body.duration = Some("1h".into());
    let r = alice.create_request(&body).await?;
    bob.approve(&r.id, "").await?;
    let token = alice
        .connect(&ConnectBody {
            resource: "idle".into(),
            role: None,
            mfa: None,
            uses: Some(u32::try_from(connections)?),
        })
        .await?;
    // Warm the server up with one session, then measure from there.
    let warm = open(gateway, token.token.expose(), tls).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut held = vec![warm];
    // The first fifth is measured apart: it fills memory the allocator kept from the logins
    // (Argon2 takes 19 MiB each), so the slope over the rest is the honest figure.
    let first = (connections / 5).max(1);
    let mut at_first = None;
    while held.len() < connections {
        let batch = (connections - held.len()).min(100);
        let opened = futures_join(gateway, token.token.expose(), batch, tls).await?;
        held.extend(opened);
        if at_first.is_none() && held.len() >= first {
            tokio::time::sleep(Duration::from_millis(500)).await;
            at_first = Some((held.len(), rss_kib(pid)?));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let (n1, rss1) = at_first.unwrap_or((1, before));
    let slope = (after.saturating_sub(rss1)) as f64 / (connections - n1).max(1) as f64;
    let overall = (after.saturating_sub(before)) as f64 / (connections - 1) as f64;
    println!(
        "idle connections={connections} tls={tls} server_rss_kib: before={before} at_{n1}={rss1} at_{connections}={after} \
         per_connection_kib: overall={overall:.1} from_{n1}_on={slope:.1}"
    );
    drop(held);
    server.kill().await?;
    Ok(())
}

async fn futures_join(gateway: u16, token: &str, n: usize, tls: bool) -> Result<Vec<Conn>> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move { open(gateway, &token, tls).await }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}
