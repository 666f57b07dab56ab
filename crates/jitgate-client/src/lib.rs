//! A typed client for jitgate's HTTP API (`/api/v1`), one method per endpoint, with the
//! request and answer types of `jitgate-api`. The CLI, the benchmarks and the integration
//! tests all call the server through it. Path parameters are percent-encoded as URL path
//! segments by `url`, so an id cannot reach another endpoint.

mod sign_in;

use jitgate_api::*;
use jitgate_core::audit::AuditEvent;
use jitgate_core::grant::Grant;
use jitgate_core::policy::Resource;
use jitgate_core::request::AccessRequest;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, with its code and message.
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    /// `reason` is the innermost cause only: reqwest's chain repeats the URL at each level.
    #[error("cannot reach the jitgate server at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("unexpected answer from the server ({status}): {body}")]
    Unexpected { status: u16, body: String },
}

/// The innermost error's text ("Connection refused (os error 111)"), or a word for a timeout.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".into();
    }
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// The session of a finished login; a login that waits for its second factor is an
/// `mfa_required` error.
pub fn session_of(outcome: LoginOutcome) -> Result<SessionToken> {
    match outcome {
        LoginOutcome::Authenticated {
            token,
            username,
            expires_at,
        } => Ok(SessionToken {
            token,
            username,
            expires_at,
        }),
        LoginOutcome::MfaRequired { methods, .. } => Err(ClientError::Api {
            status: 401,
            code: "mfa_required".into(),
            message: format!("this account needs a second factor ({})", methods.join(", ")),
        }),
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    /// `{base}/api/v1`, parsed once; why it could not be, for every call to report.
    api: std::result::Result<url::Url, String>,
    token: Option<String>,
    http: reqwest::Client,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ListParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let base = base.trim_end_matches('/').to_owned();
        Self {
            api: api_root(&base),
            base,
            token,
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client, also trusting the certificate(s) in `pem` as roots: for a server
    /// that serves HTTPS with a certificate of its own (`server.tls`, self-signed).
    pub fn trusting(mut self, pem: &[u8]) -> std::result::Result<Self, String> {
        let mut builder = reqwest::Client::builder().user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")));
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no certificate in it".into());
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
        self.http = builder.build().map_err(|e| e.to_string())?;
        Ok(self)
    }

    pub fn with_token(&self, token: impl AsRef<str>) -> Self {
        Self {
            token: Some(token.as_ref().to_owned()),
            ..self.clone()
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: Option<&dyn erased::Query>,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = self.endpoint(path)?;
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(q) = query {
            req = req.query(&q.pairs());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Transport {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        if status.is_success() {
            let text = if status == StatusCode::NO_CONTENT || text.is_empty() {
                "null"
            } else {
                &text
            };
            return serde_json::from_str(text).map_err(|_| ClientError::Unexpected {
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
            });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => Err(ClientError::Api {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
            }),
        }
    }

    /// `/api/v1/` and the path's segments, each percent-encoded as one segment (`/`, `?`, `#`
    /// and `%` in an id stay inside it). `.` and `..` mean "this" and "up" to every URL parser
    /// on the way, so no id may be one.
    fn endpoint(&self, path: &[&str]) -> Result<url::Url> {
        let bad = |reason: String| ClientError::Transport {
            url: self.base.clone(),
            reason,
        };
        if let Some(s) = path.iter().find(|s| s.is_empty() || **s == "." || **s == "..") {
            return Err(ClientError::Api {
                status: 400,
                code: "invalid_input".into(),
                message: format!("{s:?} cannot name anything"),
            });
        }
        let mut url = self.api.clone().map_err(bad)?;
        // `api_root` made sure a path can follow.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(path);
        }
        Ok(url)
    }

    fn json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
        serde_json::to_value(v).ok()
    }

    pub async fn bootstrap(&self, body: &BootstrapBody) -> Result<SessionToken> {
        self.call(Method::POST, &["bootstrap"], None, Self::json(body)).await
    }
    /// Logs in; a user with a second factor gets `MfaRequired` and a ticket, unless `mfa`
    /// carries the factor already.
    pub async fn login_outcome(&self, username: &str, password: &str, mfa: Option<MfaProof>) -> Result<LoginOutcome> {
        let body = LoginBody {
            username: username.to_owned(),
            password: password.into(),
            mfa,
        };
        self.call(Method::POST, &["login"], None, Self::json(&body)).await
    }
    /// A password-only login; a second factor being due is an `mfa_required` error.
    pub async fn login(&self, username: &str, password: &str) -> Result<SessionToken> {
        session_of(self.login_outcome(username, password, None).await?)
    }
    pub async fn login_with(&self, username: &str, password: &str, mfa: MfaProof) -> Result<SessionToken> {
        session_of(self.login_outcome(username, password, Some(mfa)).await?)
    }
    pub async fn login_mfa(&self, ticket: &str, mfa: MfaProof) -> Result<SessionToken> {
        let body = LoginMfaBody {
            ticket: ticket.into(),
            mfa,
        };
        self.call(Method::POST, &["login", "mfa"], None, Self::json(&body)).await
    }
    pub async fn login_webauthn(&self, ticket: &str) -> Result<WebauthnChallenge> {
        let body = TicketBody { ticket: ticket.into() };
        self.call(Method::POST, &["login", "webauthn"], None, Self::json(&body)).await
    }
    pub async fn mfa_status(&self) -> Result<MfaStatus> {
        self.call(Method::GET, &["mfa"], None, None).await
    }
    pub async fn mfa_verify(&self, proof: &MfaProof) -> Result<SteppedUp> {
        self.call(Method::POST, &["mfa", "verify"], None, Self::json(proof)).await
    }
    pub async fn totp_enrol(&self) -> Result<TotpEnrolment> {
        self.call(Method::POST, &["mfa", "totp"], None, None).await
    }
    pub async fn totp_confirm(&self, code: &str) -> Result<FactorAdded> {
        let body = CodeBody { code: code.into() };
        self.call(Method::POST, &["mfa", "totp", "confirm"], None, Self::json(&body)).await
    }
    pub async fn totp_remove(&self) -> Result<()> {
        self.call(Method::DELETE, &["mfa", "totp"], None, None).await
    }
    pub async fn new_recovery_codes(&self) -> Result<RecoveryCodes> {
        self.call(Method::POST, &["mfa", "recovery-codes"], None, None).await
    }
    pub async fn webauthn_challenge(&self) -> Result<WebauthnChallenge> {
        self.call(Method::POST, &["mfa", "webauthn", "challenge"], None, None).await
    }
    pub async fn passkey_start(&self, name: &str) -> Result<WebauthnChallenge> {
        let body = PasskeyStartBody { name: name.to_owned() };
        self.call(Method::POST, &["mfa", "webauthn", "register"], None, Self::json(&body))
            .await
    }
    pub async fn passkey_finish(&self, challenge_id: &str, credential: serde_json::Value) -> Result<FactorAdded> {
        let body = PasskeyFinishBody {
            challenge_id: challenge_id.to_owned(),
            credential,
        };
        self.call(Method::POST, &["mfa", "webauthn", "register", "finish"], None, Self::json(&body))
            .await
    }
    pub async fn passkey_remove(&self, id: &str) -> Result<()> {
        self.call(Method::DELETE, &["mfa", "webauthn", id], None, None).await
    }
    pub async fn acknowledge(&self, id: &str, comment: &str) -> Result<AccessRequest> {
        let body = AckBody {
            comment: comment.to_owned(),
        };
        self.call(Method::POST, &["requests", id, "ack"], None, Self::json(&body)).await
    }
    pub async fn notifications(&self) -> Result<Vec<NotificationView>> {
        self.call(Method::GET, &["notifications"], None, None).await
    }
    pub async fn explain(&self, body: &ExplainBody) -> Result<Explanation> {
        self.call(Method::POST, &["policy", "explain"], None, Self::json(body)).await
    }
    pub async fn reload(&self) -> Result<PolicyReport> {
        self.call(Method::POST, &["admin", "reload"], None, None).await
    }
    pub async fn connect(&self, body: &ConnectBody) -> Result<ConnectToken> {
        self.call(Method::POST, &["connect"], None, Self::json(body)).await
    }
    pub async fn db_sessions(&self, all: bool, live: bool) -> Result<Vec<GatewaySession>> {
        let q = [("all", all.to_string()), ("live", live.to_string())];
        self.call(Method::GET, &["sessions"], Some(&q), None).await
    }
    pub async fn kill_session(&self, id: &str) -> Result<()> {
        self.call(Method::POST, &["sessions", id, "kill"], None, None).await
    }
    pub async fn unlock_user(&self, name: &str) -> Result<()> {
        self.call(Method::POST, &["admin", "users", name, "unlock"], None, None).await
    }
    pub async fn logout(&self) -> Result<()> {
        self.call(Method::POST, &["logout"], None, None).await
    }
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.call(Method::GET, &["whoami"], None, None).await
    }
    pub async fn resources(&self) -> Result<Vec<ResourceView>> {
        self.call(Method::GET, &["resources"], None, None).await
    }
    pub async fn create_request(&self, body: &CreateRequestBody) -> Result<AccessRequest> {
        self.call(Method::POST, &["requests"], None, Self::json(body)).await
    }
    pub async fn requests(&self, params: &ListParams) -> Result<Vec<RequestView>> {
        self.call(Method::GET, &["requests"], Some(params), None).await
    }
    pub async fn request(&self, id: &str) -> Result<RequestDetail> {
        self.call(Method::GET, &["requests", id], None, None).await
    }
    pub async fn approve(&self, id: &str, comment: &str) -> Result<RequestDetail> {
        self.review(id, true, comment, None).await
    }
    pub async fn deny(&self, id: &str, comment: &str) -> Result<RequestDetail> {
        self.review(id, false, comment, None).await
    }
    /// Approves (`approve`) or denies, with a second factor when one is given.
    pub async fn review(&self, id: &str, approve: bool, comment: &str, mfa: Option<MfaProof>) -> Result<RequestDetail> {
        let verb = if approve { "approve" } else { "deny" };
        let body = ReviewBody {
            comment: comment.to_owned(),
            mfa,
        };
        self.call(Method::POST, &["requests", id, verb], None, Self::json(&body)).await
    }
    pub async fn cancel(&self, id: &str) -> Result<AccessRequest> {
        self.call(Method::POST, &["requests", id, "cancel"], None, None).await
    }
    pub async fn grants(&self, params: &ListParams) -> Result<Vec<Grant>> {
        self.call(Method::GET, &["grants"], Some(params), None).await
    }
    pub async fn grant(&self, id: &str) -> Result<Grant> {
        self.call(Method::GET, &["grants", id], None, None).await
    }
    pub async fn revoke(&self, id: &str, reason: &str) -> Result<Grant> {
        self.call(
            Method::POST,
            &["grants", id, "revoke"],
            None,
            Self::json(&RevokeBody { reason: reason.to_owned() }),
        )
        .await
    }
    pub async fn audit_events(&self, after: i64, limit: i64) -> Result<AuditPage> {
        let q = [("after", after), ("limit", limit)];
        self.call(Method::GET, &["audit", "events"], Some(&q), None).await
    }
    pub async fn audit_checkpoints(&self) -> Result<CheckpointList> {
        self.call(Method::GET, &["audit", "checkpoints"], None, None).await
    }
    pub async fn audit_verify(&self) -> Result<VerifyOutcome> {
        self.call(Method::GET, &["audit", "verify"], None, None).await
    }
    pub async fn audit_status(&self) -> Result<jitgate_api::AuditStatus> {
        self.call(Method::GET, &["audit", "status"], None, None).await
    }
    pub async fn audit_signed_head(&self) -> Result<jitgate_core::audit::SignedHead> {
        self.call(Method::GET, &["audit", "head"], None, None).await
    }
    pub async fn audit_key(&self) -> Result<AuditKey> {
        self.call(Method::GET, &["audit", "public-key"], None, None).await
    }
    /// Every event after `after`, page by page.
    pub async fn all_audit_events(&self, mut after: i64) -> Result<Vec<AuditEvent>> {
        let mut out = Vec::new();
        loop {
            let page = self.audit_events(after, 5000).await?;
            let Some(last) = page.events.last() else { return Ok(out) };
            after = last.seq;
            out.extend(page.events);
        }
    }
    pub async fn users(&self) -> Result<Vec<UserView>> {
        self.call(Method::GET, &["admin", "users"], None, None).await
    }
    pub async fn create_user(&self, body: &CreateUserBody) -> Result<UserView> {
        self.call(Method::POST, &["admin", "users"], None, Self::json(body)).await
    }
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<UserView> {
        let verb = if disabled { "disable" } else { "enable" };
        self.call(Method::POST, &["admin", "users", name, verb], None, None).await
    }
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        self.call(
            Method::POST,
            &["admin", "users", name, "password"],
            None,
            Self::json(&PasswordBody {
                password: password.into(),
                current_password: None,
                mfa: None,
            }),
        )
        .await
    }
    /// Changes one's own password: the current one, and a second factor where one is due.
    pub async fn change_password(&self, name: &str, current: &str, new: &str, mfa: Option<MfaProof>) -> Result<()> {
        self.call(
            Method::POST,
            &["admin", "users", name, "password"],
            None,
            Self::json(&PasswordBody {
                password: new.into(),
                current_password: Some(current.into()),
                mfa,
            }),
        )
        .await
    }
    pub async fn groups(&self) -> Result<Vec<GroupView>> {
        self.call(Method::GET, &["admin", "groups"], None, None).await
    }
    pub async fn set_member(&self, group: &str, user: &str, member: bool) -> Result<GroupView> {
        let method = if member { Method::PUT } else { Method::DELETE };
        self.call(method, &["admin", "groups", group, "members", user], None, None).await
    }
    pub async fn put_resource(&self, resource: &Resource) -> Result<ResourceView> {
        self.call(
            Method::PUT,
            &["admin", "resources", resource.name.as_str()],
            None,
            Self::json(resource),
        )
        .await
    }
    /// The upstream password of the resource's service login, or with `role` of that role's
    /// own login.
    pub async fn set_resource_credential(&self, name: &str, role: Option<&str>, password: &str) -> Result<()> {
        let q: Vec<(&str, String)> = role.map(|r| ("role", r.to_owned())).into_iter().collect();
        self.call(
            Method::PUT,
            &["admin", "resources", name, "credential"],
            Some(&q),
            Self::json(&CredentialBody { password: password.into() }),
        )
        .await
    }
    pub async fn clear_resource_credential(&self, name: &str, role: Option<&str>) -> Result<()> {
        let q: Vec<(&str, String)> = role.map(|r| ("role", r.to_owned())).into_iter().collect();
        self.call(Method::DELETE, &["admin", "resources", name, "credential"], Some(&q), None)
            .await
    }
    /// The notification channels and their messages (`status`: pending, sent, failed).
    pub async fn notifications_overview(
        &self,
        status: Option<&str>,
        channel: Option<&str>,
        limit: i64,
    ) -> Result<jitgate_api::NotificationsOverview> {
        let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        q.extend(status.map(|s| ("status", s.to_owned())));
        q.extend(channel.map(|c| ("channel", c.to_owned())));
        self.call(Method::GET, &["admin", "notifications"], Some(&q), None).await
    }
    pub async fn retry_notification(&self, id: &str) -> Result<()> {
        self.call(Method::POST, &["admin", "notifications", id, "retry"], None, None).await
    }
    pub async fn set_channel_secret(&self, channel: &str, secret: &str) -> Result<()> {
        let body = jitgate_api::ChannelSecretBody { secret: secret.into() };
        self.call(Method::PUT, &["admin", "channels", channel, "secret"], None, Self::json(&body))
            .await
    }
    pub async fn clear_channel_secret(&self, channel: &str) -> Result<()> {
        self.call(Method::DELETE, &["admin", "channels", channel, "secret"], None, None)
            .await
    }
    pub async fn set_user_email(&self, name: &str, email: Option<&str>) -> Result<()> {
        let body = jitgate_api::EmailBody {
            email: email.map(str::to_owned),
        };
        self.call(Method::PUT, &["admin", "users", name, "email"], None, Self::json(&body))
            .await
    }
    /// What each role's upstream login can really do.
    pub async fn check_resource(&self, name: &str) -> Result<jitgate_api::ResourceCheck> {
        self.call(Method::GET, &["admin", "resources", name, "check"], None, None).await
    }
    pub async fn delete_resource(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &["admin", "resources", name], None, None).await
    }

    /// A raw call for tests of malformed input: returns the status and the body text.
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Result<(u16, String)> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).header("content-type", content_type).body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Transport {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        Ok((status, text))
    }
}

/// The API's root under `base` (which may carry a path of its own, behind a reverse proxy).
fn api_root(base: &str) -> std::result::Result<url::Url, String> {
    let mut url = url::Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| "not a URL a path can follow".to_owned())?
        .pop_if_empty()
        .extend(["api", "v1"]);
    Ok(url)
}

mod erased {
    /// Query parameters as pairs, so `call` can take any of our query shapes.
    pub trait Query: Sync {
        fn pairs(&self) -> Vec<(String, String)>;
    }

    impl Query for super::ListParams {
        fn pairs(&self) -> Vec<(String, String)> {
            let mut v = Vec::new();
            let mut push = |k: &str, val: &Option<String>| {
                if let Some(x) = val {
                    v.push((k.to_owned(), x.clone()));
                }
            };
            push("scope", &self.scope);
            push("status", &self.status);
            push("resource", &self.resource);
            if let Some(l) = self.limit {
                v.push(("limit".into(), l.to_string()));
            }
            v
        }
    }

    impl<const N: usize> Query for [(&str, String); N] {
        fn pairs(&self) -> Vec<(String, String)> {
            self.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
        }
    }

    impl Query for Vec<(&str, String)> {
        fn pairs(&self) -> Vec<(String, String)> {
            self.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
        }
    }

    impl<const N: usize> Query for [(&str, i64); N] {
        fn pairs(&self) -> Vec<(String, String)> {
            self.iter().map(|(k, v)| ((*k).to_owned(), v.to_string())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_inside_their_segment() {
        let c = Client::new("http://127.0.0.1:8080/", None);
        let url = |path: &[&str]| c.endpoint(path).map(|u| u.to_string());
        assert_eq!(
            url(&["grants", "g_1", "revoke"]).unwrap(),
            "http://127.0.0.1:8080/api/v1/grants/g_1/revoke"
        );
        assert_eq!(
            url(&["requests", "a/../../admin?x=1#f", "cancel"]).unwrap(),
            "http://127.0.0.1:8080/api/v1/requests/a%2F..%2F..%2Fadmin%3Fx=1%23f/cancel"
        );
        assert_eq!(
            url(&["admin", "users", "50%"]).unwrap(),
            "http://127.0.0.1:8080/api/v1/admin/users/50%25"
        );
        for id in ["..", ".", ""] {
            let err = url(&["requests", id, "cancel"]).unwrap_err();
            assert_eq!(err.code(), Some("invalid_input"), "{id:?}");
        }
        // Behind a reverse proxy, under a path of its own.
        let behind = Client::new("https://example.org/jitgate", None);
        assert_eq!(
            behind.endpoint(&["whoami"]).unwrap().to_string(),
            "https://example.org/jitgate/api/v1/whoami"
        );
        assert!(matches!(
            Client::new("not a url", None).endpoint(&["whoami"]),
            Err(ClientError::Transport { .. })
        ));
    }
}
