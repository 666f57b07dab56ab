//! Logging in to the upstream PostgreSQL as the resource's service role: trust, cleartext,
//! md5 and SCRAM-SHA-256, with `postgres-protocol` doing the client side of each (its SCRAM
//! client in particular).

use crate::protocol::message_end;
use crate::transport::{Transport, UpstreamTls};
use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// A host name or address, or a Unix socket directory (starting with `/`).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<SecretString>,
    /// `SET ROLE` to this after login.
    pub set_role: Option<String>,
    pub application_name: String,
    pub tls: UpstreamTls,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Connect(String),
    #[error("upstream connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream refused: {0}")]
    Refused(String),
    #[error("the upstream asks for a password and none is configured")]
    NoPassword,
    #[error("the upstream asks for an authentication jitgate does not speak: {0}")]
    Unsupported(String),
}

/// A logged-in upstream connection and what it said after login (parameter statuses, ready
/// for query), to pass on to the client.
pub struct Upstream {
    pub stream: Transport,
    pub greeting: BytesMut,
    /// The upstream's own cancel key.
    pub key: Option<(i32, i32)>,
}

fn error_text(fields: &mut ErrorFields<'_>) -> String {
    use fallible_iterator::FallibleIterator;
    let mut out = String::new();
    while let Ok(Some(f)) = fields.next() {
        if f.type_() == b'M' {
            out = String::from_utf8_lossy(f.value_bytes()).into_owned();
        }
    }
    out
}

struct Conn {
    stream: Transport,
    buf: BytesMut,
}

impl Conn {
    /// The next whole message, raw.
    async fn next(&mut self) -> Result<BytesMut, UpstreamError> {
        loop {
            match message_end(&self.buf, crate::protocol::MAX_MESSAGE) {
                Ok(Some(end)) => return Ok(self.buf.split_to(end)),
                Ok(None) => {}
                Err(e) => return Err(UpstreamError::Unsupported(e.to_string())),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn send(&mut self, b: &BytesMut) -> Result<(), UpstreamError> {
        self.stream.write_all(b).await?;
        Ok(())
    }
}

fn parse(raw: &BytesMut) -> Result<Message, UpstreamError> {
    let mut copy = raw.clone();
    Message::parse(&mut copy)?.ok_or_else(|| UpstreamError::Unsupported("a partial message".into()))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub async fn connect(t: &UpstreamTarget) -> Result<Upstream, UpstreamError> {
    let stream = crate::transport::open(&t.host, t.port, &t.tls)
        .await
        .map_err(UpstreamError::Connect)?;
    let mut c = Conn {
        stream,
        buf: BytesMut::with_capacity(8192),
    };
    let mut out = BytesMut::new();
    frontend::startup_message(
        [
            ("user", t.user.as_str()),
            ("database", t.database.as_str()),
            ("application_name", t.application_name.as_str()),
        ],
        &mut out,
    )?;
    c.send(&out).await?;
    let password = || {
        t.password
            .as_ref()
            .map(|p| p.expose_secret().as_bytes().to_vec())
            .ok_or(UpstreamError::NoPassword)
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let raw = c.next().await?;
        out.clear();
        match parse(&raw)? {
            Message::AuthenticationOk => break,
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(&password()?, &mut out)?;
                c.send(&out).await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(t.user.as_bytes(), &password()?, body.salt());
                frontend::password_message(hash.as_bytes(), &mut out)?;
                c.send(&out).await?;
            }
            Message::AuthenticationSasl(body) => {
                use fallible_iterator::FallibleIterator;
                let mechanisms: Vec<String> = body.mechanisms().map(|m| Ok(m.to_owned())).collect()?;
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(UpstreamError::Unsupported(mechanisms.join(", ")));
                }
                let s = ScramSha256::new(&password()?, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                c.send(&out).await?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Unsupported("SASL continue out of turn".into()))?;
                s.update(body.data())?;
                frontend::sasl_response(s.message(), &mut out)?;
                c.send(&out).await?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| UpstreamError::Unsupported("SASL final out of turn".into()))?;
                s.finish(body.data())?;
            }
            Message::ErrorResponse(body) => return Err(UpstreamError::Refused(error_text(&mut body.fields()))),
            _ => return Err(UpstreamError::Unsupported(format!("message '{}' during login", raw[0] as char))),
        }
    }
    // After login: parameter statuses, the cancel key, notices, then ready for query.
    let mut greeting = BytesMut::new();
    let mut key = None;
    loop {
        let raw = c.next().await?;
        match parse(&raw)? {
            Message::BackendKeyData(k) => key = Some((k.process_id(), k.secret_key())),
            Message::ErrorResponse(body) => return Err(UpstreamError::Refused(error_text(&mut body.fields()))),
            Message::ReadyForQuery(_) => {
                if t.set_role.is_none() {
                    greeting.extend_from_slice(&raw);
                }
                break;
            }
            _ => greeting.extend_from_slice(&raw),
        }
    }
    if let Some(role) = &t.set_role {
        out.clear();
        frontend::query(&format!("SET ROLE {}", quote_ident(role)), &mut out)?;
        c.send(&out).await?;
        loop {
            let raw = c.next().await?;
            match parse(&raw)? {
                Message::ErrorResponse(body) => return Err(UpstreamError::Refused(error_text(&mut body.fields()))),
                Message::ReadyForQuery(_) => {
                    greeting.extend_from_slice(&raw);
                    break;
                }
                // The ParameterStatus for `role` goes to the client; CommandComplete does not.
                Message::ParameterStatus(_) => greeting.extend_from_slice(&raw),
                _ => {}
            }
        }
    }
    if !c.buf.is_empty() {
        // Nothing may follow ReadyForQuery before the client speaks.
        return Err(UpstreamError::Unsupported(format!(
            "{} unexpected bytes after login",
            c.buf.remaining()
        )));
    }
    Ok(Upstream {
        stream: c.stream,
        greeting,
        key,
    })
}

/// Runs `statements` one by one as simple queries on a fresh login to `t`, stopping at the
/// first error: what the ephemeral-role provisioner uses.
pub async fn execute(t: &UpstreamTarget, statements: &[String]) -> Result<(), UpstreamError> {
    let up = connect(t).await?;
    let mut c = Conn {
        stream: up.stream,
        buf: BytesMut::with_capacity(4096),
    };
    for sql in statements {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        c.send(&out).await?;
        let mut failed = None;
        loop {
            let raw = c.next().await?;
            match parse(&raw)? {
                Message::ErrorResponse(body) => failed = Some(error_text(&mut body.fields())),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        if let Some(e) = failed {
            return Err(UpstreamError::Refused(format!("{e} (in: {sql})")));
        }
    }
    let mut out = BytesMut::new();
    frontend::terminate(&mut out);
    let _ = c.send(&out).await;
    Ok(())
}

/// A string literal for SQL text, with quotes doubled (standard_conforming_strings is on in
/// every supported PostgreSQL).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn quote_identifier(name: &str) -> String {
    quote_ident(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(super::quote_ident("read_only"), "\"read_only\"");
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
