//! Sending one message to one destination of one channel. A failure is returned, never
//! retried here: the outbox decides when to try again.

use crate::channel::{Channel, ChannelKind, SmtpTls, SLACK_EMAIL_PREFIX};
use crate::notice::Notice;
use crate::signature::{self, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub use lettre::message::Mailbox;

/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an attempt failed, in words for `jitgate admin notifications` (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

impl SendError {
    fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// Sends messages; holds the HTTP client (its connections are reused).
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
}

impl Sender {
    pub fn new() -> Result<Self, SendError> {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            // A receiver that redirects would have the signed body and its headers sent
            // somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::new(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// Sends `notice` to `destination` of `channel` (see [`Channel::destinations`]), signed or
    /// authenticated with `secret`, at `now_unix_seconds`.
    pub async fn send(
        &self,
        channel: &Channel,
        secret: Option<&SecretString>,
        destination: &str,
        notice: &Notice,
        now_unix_seconds: i64,
    ) -> Result<(), SendError> {
        if channel.needs_secret() && secret.is_none() {
            return Err(SendError::new(format!(
                "channel {} has no secret: set it with `jitgate admin channel set-secret {}`",
                channel.name, channel.name
            )));
        }
        match &channel.kind {
            ChannelKind::Webhook { url } => {
                let body = serde_json::to_vec(notice).map_err(|e| SendError::new(e.to_string()))?;
                let key = secret.map(|s| s.expose_secret().as_bytes()).unwrap_or_default();
                let response = self
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, signature::sign(key, now_unix_seconds, &body))
                    .header(DELIVERY_HEADER, &notice.id)
                    .header(EVENT_HEADER, notice.event.as_str())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| SendError::new(format!("POST {}: {}", url_for_errors(url), plain(e))))?;
                ok_status(response).await
            }
            ChannelKind::Slack(slack) => {
                let mut message = crate::render::slack(notice);
                let token = secret.map(|s| s.expose_secret().to_owned()).unwrap_or_default();
                if slack.incoming_webhook {
                    let url = url::Url::parse(&token).map_err(|_| SendError::new("the channel's secret is not an incoming-webhook URL"))?;
                    let response = self
                        .http
                        .post(url.clone())
                        .json(&message)
                        .send()
                        .await
                        .map_err(|e| SendError::new(format!("POST to the incoming webhook: {}", plain(e))))?;
                    return ok_status(response).await;
                }
                let to = match destination.strip_prefix(SLACK_EMAIL_PREFIX) {
                    Some(email) => self.slack_user_by_email(&slack.api_url, &token, email).await?,
                    None => destination.to_owned(),
                };
                message["channel"] = serde_json::Value::String(to);
                let post = self.http.post(api(&slack.api_url, "chat.postMessage")).json(&message);
                self.slack_call(&token, "chat.postMessage", post).await.map(|_| ())
            }
            ChannelKind::Email(email) => send_email(email, secret, destination, notice).await,
        }
    }

    async fn slack_user_by_email(&self, api_url: &url::Url, token: &str, email: &str) -> Result<String, SendError> {
        let request = self.http.get(api(api_url, "users.lookupByEmail")).query(&[("email", email)]);
        let answer = self.slack_call(token, "users.lookupByEmail", request).await?;
        answer["user"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SendError::new("users.lookupByEmail answered without a user id"))
    }

    /// One Web API call: Slack answers 200 with `{"ok": false, "error": ...}` for most failures.
    async fn slack_call(&self, token: &str, method: &str, request: reqwest::RequestBuilder) -> Result<serde_json::Value, SendError> {
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| SendError::new(format!("Slack {method}: {}", plain(e))))?;
        let status = response.status();
        let body = read_at_most(response, MAX_API_ANSWER).await;
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| SendError::new(format!("Slack {method}: {status}, and the answer is not JSON")))?;
        if answer["ok"] == true {
            Ok(answer)
        } else {
            Err(SendError::new(format!(
                "Slack {method}: {}",
                answer["error"].as_str().unwrap_or("refused without a reason")
            )))
        }
    }
}

fn api(base: &url::Url, method: &str) -> String {
    format!("{}/{method}", base.as_str().trim_end_matches('/'))
}

/// A URL as errors show it: no user, password or query, which may hold a credential.
fn url_for_errors(u: &url::Url) -> String {
    format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + u.path()
}

/// An HTTP error without the URL reqwest puts in it (an incoming webhook's URL is a secret).
fn plain(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    }
}

/// The most of a Slack Web API answer read (its answers are a few hundred bytes).
const MAX_API_ANSWER: usize = 64 * 1024;
/// The most of a refusal's body read, for its first words in the error.
const MAX_ERROR_BODY: usize = 4 * 1024;

/// Up to `max` bytes of `response`'s body: a receiver cannot make the sender hold more, however
/// much it sends.
async fn read_at_most(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = max.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    body
}

async fn ok_status(response: reqwest::Response) -> Result<(), SendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = read_at_most(response, MAX_ERROR_BODY).await;
    let words: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Err(SendError::new(format!("the receiver answered {status}: {words}")))
}

async fn send_email(email: &crate::channel::Email, secret: Option<&SecretString>, to: &str, notice: &Notice) -> Result<(), SendError> {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let rendered = crate::render::email(notice);
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| SendError::new(format!("from address {}: {e}", email.from)))?;
    let to: Mailbox = to.parse().map_err(|e| SendError::new(format!("address {to}: {e}")))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        // The idempotency key, where mail readers look for duplicates.
        .message_id(Some(format!("<{}@jitgate>", notice.id)))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(rendered.text))
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(rendered.html)),
        )
        .map_err(|e| SendError::new(format!("cannot build the message: {e}")))?;
    let builder = match email.tls {
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host)),
    }
    .map_err(|e| SendError::new(format!("SMTP {}: {e}", email.host)))?;
    let mut builder = builder.port(email.port).timeout(Some(ATTEMPT_TIMEOUT));
    if let (Some(user), Some(password)) = (&email.username, secret) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| SendError::new(format!("SMTP {}:{}: {e}", email.host, email.port)))
}
