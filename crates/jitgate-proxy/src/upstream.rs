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
    /// Whether the login may be privileged (see [`PRIVILEGE_QUERY`]); when false, such a login
    /// is refused with [`UpstreamError::Privileged`] before the client can speak.
    pub allow_privileged: bool,
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
    #[error("the upstream login {login} is privileged ({what}); sessions are refused unless the role sets allow_privileged_login = true. Give the role a login that holds only its privileges (see `jitgate admin resource check`)")]
    Privileged { login: String, what: String },
}

/// A logged-in upstream connection and what it said after login (parameter statuses, ready
/// for query), to pass on to the client.
pub struct Upstream {
    pub stream: Transport,
    pub greeting: BytesMut,
    /// The upstream's own cancel key.
    pub key: Option<(i32, i32)>,
    /// The session's `client_encoding` at the start, as the upstream reported it.
    pub client_encoding: String,
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
    let mut superuser = false;
    let mut client_encoding = "UTF8".to_owned();
    loop {
        let raw = c.next().await?;
        match parse(&raw)? {
            Message::BackendKeyData(k) => key = Some((k.process_id(), k.secret_key())),
            Message::ErrorResponse(body) => return Err(UpstreamError::Refused(error_text(&mut body.fields()))),
            Message::ReadyForQuery(_) => {
                greeting.extend_from_slice(&raw);
                break;
            }
            Message::ParameterStatus(p) => {
                match (p.name(), p.value()) {
                    (Ok("is_superuser"), Ok("on")) => superuser = true,
                    (Ok("client_encoding"), Ok(v)) => v.clone_into(&mut client_encoding),
                    _ => {}
                }
                greeting.extend_from_slice(&raw);
            }
            _ => greeting.extend_from_slice(&raw),
        }
    }
    if !t.allow_privileged {
        // The server's own word first (free), then what the login can reach through its
        // memberships (one round trip, before the client may speak).
        if superuser {
            return Err(UpstreamError::Privileged {
                login: t.user.clone(),
                what: "superuser".into(),
            });
        }
        let what = login_profile(&mut c).await?.privileges();
        if !what.is_empty() {
            return Err(UpstreamError::Privileged {
                login: t.user.clone(),
                what: what.join(", "),
            });
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
        client_encoding,
    })
}

/// Every role a login is or can become (itself and its memberships, direct or not), with the
/// attributes that make a session more than its grant: what the privilege check reads.
/// `pg_has_role(..., 'MEMBER')` counts a membership whatever its INHERIT or SET options, so
/// it errs towards refusing.
/// It asks about `session_user`, the login itself: `current_user` can already be another role
/// (a role-level default `role` setting the login may have set on itself).
pub const PRIVILEGE_QUERY: &str = "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolbypassrls, r.rolreplication, \
     r.rolcreatedb, r.rolname = session_user FROM pg_catalog.pg_roles r \
     WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') ORDER BY r.rolname = session_user DESC, r.rolname";

/// Predefined roles whose members reach the server's files or programs: a way out of any grant.
const ESCAPE_ROLES: [&str; 3] = ["pg_execute_server_program", "pg_write_server_files", "pg_read_server_files"];

/// A role a login is or can become, with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAttributes {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub bypassrls: bool,
    pub replication: bool,
    pub createdb: bool,
}

/// What an upstream login can really do: its own attributes and those of every role it is a
/// member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginProfile {
    pub login: Option<RoleAttributes>,
    pub member_of: Vec<RoleAttributes>,
}

impl LoginProfile {
    /// The privileges that make this login refused for sessions, in words; empty when none.
    pub fn privileges(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.login.iter().chain(self.member_of.iter()) {
            let own = self.login.as_ref().is_some_and(|l| l.name == r.name);
            let via = if own {
                String::new()
            } else {
                format!(" through membership in {}", r.name)
            };
            for (has, what) in [
                (r.superuser, "superuser"),
                (r.createrole, "CREATEROLE"),
                (r.bypassrls, "BYPASSRLS"),
                (r.replication, "REPLICATION"),
            ] {
                if has {
                    out.push(format!("{what}{via}"));
                }
            }
            if ESCAPE_ROLES.contains(&r.name.as_str()) {
                out.push(format!("member of {}", r.name));
            }
        }
        out
    }
}

async fn login_profile(c: &mut Conn) -> Result<LoginProfile, UpstreamError> {
    Ok(profile_from_rows(c.query(PRIVILEGE_QUERY).await?))
}

/// Rows of [`PRIVILEGE_QUERY`]'s shape: name, five attributes, and whether it is the login.
fn profile_from_rows(rows: Vec<Vec<Option<String>>>) -> LoginProfile {
    let mut profile = LoginProfile {
        login: None,
        member_of: Vec::new(),
    };
    for row in rows {
        let flag = |i: usize| row.get(i).and_then(|v| v.as_deref()) == Some("t");
        let attrs = RoleAttributes {
            name: row.first().cloned().flatten().unwrap_or_default(),
            superuser: flag(1),
            createrole: flag(2),
            bypassrls: flag(3),
            replication: flag(4),
            createdb: flag(5),
        };
        if flag(6) {
            profile.login = Some(attrs);
        } else {
            profile.member_of.push(attrs);
        }
    }
    profile
}

/// Logs in as `t` (privileged or not) and reads what the login can do.
pub async fn inspect(t: &UpstreamTarget) -> Result<LoginProfile, UpstreamError> {
    let mut c = login_as(t).await?;
    let profile = login_profile(&mut c).await;
    c.terminate().await;
    profile
}

/// What a role made a member of `roles` could do (an ephemeral grant's role), read through
/// the service login `t`.
pub async fn inspect_members_of(t: &UpstreamTarget, roles: &[String]) -> Result<LoginProfile, UpstreamError> {
    if roles.is_empty() {
        return Ok(profile_from_rows(Vec::new()));
    }
    let list = roles.iter().map(|r| quote_literal(r)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolbypassrls, r.rolreplication, r.rolcreatedb, false \
         FROM pg_catalog.pg_roles r WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles m WHERE m.rolname IN ({list}) \
         AND pg_catalog.pg_has_role(m.oid, r.oid, 'MEMBER')) ORDER BY r.rolname"
    );
    Ok(profile_from_rows(query_all(t, &[sql]).await?))
}

/// A login for jitgate's own statements (provisioning, checks): privileged or not.
async fn login_as(t: &UpstreamTarget) -> Result<Conn, UpstreamError> {
    let mut t = t.clone();
    t.allow_privileged = true;
    let up = connect(&t).await?;
    Ok(Conn {
        stream: up.stream,
        buf: BytesMut::with_capacity(4096),
    })
}

impl Conn {
    /// Runs one simple query and returns its rows as text (NULL as `None`).
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
        use fallible_iterator::FallibleIterator;
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send(&out).await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            let raw = self.next().await?;
            match parse(&raw)? {
                Message::DataRow(body) => {
                    let buf = body.buffer();
                    let row = body
                        .ranges()
                        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
                        .collect()?;
                    rows.push(row);
                }
                Message::ErrorResponse(body) => failed = Some(error_text(&mut body.fields())),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(e) => Err(UpstreamError::Refused(format!("{e} (in: {})", without_literals(sql)))),
            None => Ok(rows),
        }
    }

    async fn terminate(&mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.send(&out).await;
    }
}

/// Runs `statements` one by one as simple queries on a fresh login to `t`, stopping at the
/// first error: what the ephemeral-role provisioner uses (its login is privileged by design).
pub async fn execute(t: &UpstreamTarget, statements: &[String]) -> Result<(), UpstreamError> {
    query_all(t, statements).await.map(|_| ())
}

/// Like [`execute`], returning the rows of the last statement.
pub async fn query_all(t: &UpstreamTarget, statements: &[String]) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    let mut c = login_as(t).await?;
    let mut rows = Vec::new();
    for sql in statements {
        rows = c.query(sql).await?;
    }
    c.terminate().await;
    Ok(rows)
}

/// A string literal for SQL text, with quotes doubled (standard_conforming_strings is on in
/// every supported PostgreSQL).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `sql` with the text of each string literal left out: errors name the statement that failed,
/// and literals are where a statement carries a secret (an ephemeral role's password), which
/// must not reach a log or the audit record. Literals are as [`quote_literal`] writes them.
fn without_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_literal = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_literal, c) {
            (false, '\'') => {
                in_literal = true;
                out.push_str("'…");
            }
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (true, '\'') => {
                in_literal = false;
                out.push('\'');
            }
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
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

    #[test]
    fn an_error_names_its_statement_without_the_literals_in_it() {
        let sql = format!(
            "CREATE ROLE \"jit_a\" LOGIN PASSWORD {} VALID UNTIL {}",
            super::quote_literal("jitpw_s'ecret''x"),
            super::quote_literal("2026-01-01")
        );
        assert_eq!(
            super::without_literals(&sql),
            "CREATE ROLE \"jit_a\" LOGIN PASSWORD '…' VALID UNTIL '…'"
        );
        assert_eq!(super::without_literals("DROP OWNED BY \"x\""), "DROP OWNED BY \"x\"");
    }
}
