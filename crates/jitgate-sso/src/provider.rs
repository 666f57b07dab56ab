//! Talking to an OpenID Connect provider with the `openidconnect` crate: discovery (kept for an
//! hour, fetched again when a token names a key we do not have: key rotation), the
//! authorization URL with PKCE and a nonce, the code exchange, and the ID token's checks
//! (signature against the provider's published keys, issuer, audience, expiry, nonce). What
//! the checked claims mean for jitgate is [`crate::mapping`]'s.

use crate::mapping::{self, AuthContext, MappedGroups};
use crate::ProviderConfig;
use jitgate_core::names::Username;
use jitgate_core::Timestamp;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Discovery documents and key sets are fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// A token signed by a key we do not know makes us fetch the keys again, at most this often.
/// Such a token only ever comes from the provider's own token endpoint (for a code it issued),
/// so this bounds a misbehaving provider, not the public.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// One call to the provider, as a whole.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a sign-in failed: a short code for the audit log and the API, and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SsoError {
    pub code: &'static str,
    pub reason: String,
}

impl SsoError {
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// The provider could not be reached or answered nonsense: not the person's fault.
    pub fn is_provider_unavailable(&self) -> bool {
        self.code == "provider_unavailable"
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SsoError {
    SsoError::new("provider_unavailable", format!("{what}: {e}"))
}

/// What jitgate keeps between sending a person to the provider and their coming back: never
/// shown to anyone (the state is only the key it is kept under).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingSignIn {
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A sign-in to start: where to send the person, and what to keep.
pub struct SignInStart {
    pub url: url::Url,
    pub state: String,
    pub pending: PendingSignIn,
}

/// A checked sign-in and what it means for jitgate.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub subject: String,
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub groups: MappedGroups,
    /// The provider's own group names, as the claim gave them.
    pub their_groups: Vec<String>,
    pub context: AuthContext,
    /// The provider says a second factor was used (by the provider's `amr`/`acr` rules).
    pub second_factor: bool,
}

/// One check of a pasted ID token, as `jitgate admin oidc test` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// What a pasted ID token would do: each check, the claims, and what they map to.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub checks: Vec<Check>,
    pub claims: Value,
    pub username: Result<Username, String>,
    pub groups: MappedGroups,
    pub their_groups: Vec<String>,
    pub context: AuthContext,
    pub second_factor: bool,
}

/// What discovery says beyond OpenID Connect Core: the device authorization endpoint (RFC 8628),
/// where the provider has one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeviceEndpoint {
    device_authorization_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for DeviceEndpoint {}

type CoreProviderMetadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A device sign-in under way (RFC 8628): what the person is shown, and what jitgate keeps to
/// ask the provider whether it is done.
pub struct DeviceStart {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub interval: Duration,
    pub expires_in: Duration,
    /// The provider's answer, device code included: a secret, kept sealed.
    pub pending: CoreDeviceAuthorizationResponse,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// The relying party for every configured provider; holds their discovery documents.
pub struct RelyingParty {
    http: openidconnect::reqwest::Client,
    discovered: Mutex<HashMap<String, Discovered>>,
}

impl Default for RelyingParty {
    fn default() -> Self {
        Self::new()
    }
}

fn chrono_of(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.as_millis()).unwrap_or_default()
}

/// The payload of a compact JWS, as JSON, without checking anything: only for claims of a
/// token that `openidconnect` has checked, or to show an administrator what a refused one says.
fn payload_of(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn refused(e: &ClaimsVerificationError) -> SsoError {
    let code = match e {
        ClaimsVerificationError::Expired(_) => "token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "token_wrong_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "token_wrong_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "token_wrong_nonce",
        ClaimsVerificationError::SignatureVerification(_) => "token_bad_signature",
        _ => "token_invalid",
    };
    SsoError::new(code, format!("the provider's ID token was refused: {e}"))
}

impl RelyingParty {
    pub fn new() -> Self {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's answer send us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            discovered: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, name: &str, max_age: Duration) -> Option<CoreProviderMetadata> {
        let d = self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        d.get(name).filter(|c| c.fetched.elapsed() < max_age).map(|c| c.metadata.clone())
    }

    /// The provider's discovery document and keys: cached, or fetched when older than
    /// `max_age`.
    async fn metadata(&self, p: &ProviderConfig, max_age: Duration) -> Result<CoreProviderMetadata, SsoError> {
        if let Some(m) = self.cached(&p.name, max_age) {
            return Ok(m);
        }
        let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| unavailable("the issuer URL", e))?;
        let fetched = CoreProviderMetadata::discover_async(issuer, &self.http).await;
        let metadata = match fetched {
            Ok(m) => m,
            // A provider away for a moment: the document we had still serves.
            Err(e) => return self.cached(&p.name, Duration::MAX).ok_or_else(|| unavailable("discovery", e)),
        };
        let mut d = self.discovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        d.insert(
            p.name.clone(),
            Discovered {
                metadata: metadata.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(metadata)
    }

    fn client(
        &self,
        p: &ProviderConfig,
        metadata: CoreProviderMetadata,
        secret: Option<&SecretString>,
        redirect: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SsoError,
    > {
        let redirect = RedirectUrl::new(redirect.to_owned()).map_err(|e| SsoError::new("invalid_redirect", e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            secret.map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send a person to sign in, back to `redirect`. `reauthenticate`: ask the
    /// provider to sign them in again now (`prompt=login`, `max_age=0`), for a step-up.
    pub async fn start(&self, p: &ProviderConfig, redirect: &str, reauthenticate: bool) -> Result<SignInStart, SsoError> {
        let metadata = self.metadata(p, DISCOVERY_TTL).await?;
        let client = self.client(p, metadata, None, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut auth = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for s in p.scopes.iter().filter(|s| s.as_str() != "openid") {
            auth = auth.add_scope(Scope::new(s.clone()));
        }
        if reauthenticate {
            auth = auth.add_prompt(CoreAuthPrompt::Login).set_max_age(Duration::ZERO);
        }
        let (url, state, nonce) = auth.url();
        Ok(SignInStart {
            url,
            state: state.secret().clone(),
            pending: PendingSignIn {
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        })
    }

    /// Trades the code the provider sent back for an ID token, checks it (the nonce must be
    /// the one this sign-in started with) and reads what it means.
    pub async fn finish(
        &self,
        p: &ProviderConfig,
        secret: &SecretString,
        redirect: &str,
        code: &str,
        pending: &PendingSignIn,
        now: Timestamp,
    ) -> Result<SignIn, SsoError> {
        let metadata = self.metadata(p, DISCOVERY_TTL).await?;
        let client = self.client(p, metadata, Some(secret), redirect)?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| unavailable("the token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        let response = request.request_async(&self.http).await.map_err(|e| {
            SsoError::new(
                "code_refused",
                format!("the provider did not take the sign-in's code: {}", error_chain(&e)),
            )
        })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::new("token_invalid", "the provider sent no ID token"))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let checked = {
            let verifier = client.id_token_verifier().set_time_fn(move || chrono_of(now));
            id_token.claims(&verifier, &nonce).map(|_| ())
        };
        if let Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) = &checked {
            // A key we have not seen: the provider may have rotated its keys since discovery.
            let fresh = self.metadata(p, REFETCH_AT_MOST_EVERY).await?;
            let client = self.client(p, fresh, Some(secret), redirect)?;
            let verifier = client.id_token_verifier().set_time_fn(move || chrono_of(now));
            id_token.claims(&verifier, &nonce).map_err(|e| refused(&e))?;
        } else {
            checked.map_err(|e| refused(&e))?;
        }
        let claims =
            payload_of(&id_token.to_string()).ok_or_else(|| SsoError::new("token_invalid", "the ID token's claims do not parse"))?;
        judge(p, &claims)
    }

    /// Checks a pasted ID token as a sign-in would (but for the nonce, which only the sign-in
    /// that asked for the token knows) and says what its claims would map to, refused or not.
    pub async fn inspect(&self, p: &ProviderConfig, id_token: &str, now: Timestamp) -> Result<Inspection, SsoError> {
        let mut checks = Vec::new();
        let claims =
            payload_of(id_token.trim()).ok_or_else(|| SsoError::new("invalid_token", "that is not a JWT (three base64url parts)"))?;
        let metadata = self.metadata(p, DISCOVERY_TTL).await?;
        let client = self.client(p, metadata, None, "http://127.0.0.1/unused")?;
        match CoreIdToken::from_str(id_token.trim()) {
            Err(e) => checks.push(Check {
                check: "signature, issuer, audience, expiry".into(),
                ok: false,
                detail: format!("does not parse as an ID token: {e}"),
            }),
            Ok(token) => {
                let verifier = client.id_token_verifier().set_time_fn(move || chrono_of(now));
                let ignore_nonce = |_: Option<&Nonce>| -> Result<(), String> { Ok(()) };
                let outcome = token.claims(&verifier, ignore_nonce).map(|_| ());
                checks.push(Check {
                    check: "signature, issuer, audience, expiry".into(),
                    ok: outcome.is_ok(),
                    detail: outcome.map_or_else(|e| refused(&e).reason, |()| "all hold".into()),
                });
            }
        }
        checks.push(Check {
            check: "nonce".into(),
            ok: true,
            detail: "not checked here: only the sign-in that asked for the token knows it".into(),
        });
        let domain = mapping::domain_allowed(&claims, &p.allowed_domains);
        checks.push(Check {
            check: "allowed domains".into(),
            ok: domain.is_ok(),
            detail: domain.err().unwrap_or_else(|| "allowed".into()),
        });
        let their_groups = mapping::groups_claim(&claims, &p.groups_claim);
        let context = AuthContext::from_claims(&claims);
        Ok(Inspection {
            checks,
            username: mapping::username_from(&claims, &p.username_claim, &p.allowed_domains),
            groups: mapping::map_groups(&their_groups, &p.group_rules),
            second_factor: context.proves_second_factor(&p.factor_amr, &p.factor_acr),
            their_groups,
            context,
            claims,
        })
    }

    /// Starts a device sign-in at a provider that offers one.
    pub async fn device_start(&self, p: &ProviderConfig, secret: &SecretString) -> Result<DeviceStart, SsoError> {
        let metadata = self.metadata(p, DISCOVERY_TTL).await?;
        let endpoint = metadata
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                SsoError::new(
                    "no_device_flow",
                    format!(
                        "provider {} offers no device sign-in: use the browser (`jitgate login --sso`)",
                        p.name
                    ),
                )
            })?;
        let url = DeviceAuthorizationUrl::new(endpoint).map_err(|e| unavailable("the device endpoint", e))?;
        let client = self
            .client(p, metadata, Some(secret), "http://127.0.0.1/unused")?
            .set_device_authorization_url(url);
        let mut request = client.exchange_device_code();
        for s in p.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let details: CoreDeviceAuthorizationResponse = request
            .request_async(&self.http)
            .await
            .map_err(|e| unavailable("the device endpoint", error_chain(&e)))?;
        Ok(DeviceStart {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details.verification_uri_complete().map(|u| u.secret().clone()),
            interval: details.interval(),
            expires_in: details.expires_in(),
            pending: details,
        })
    }

    /// Asks the provider, for up to `wait`, whether the person finished the device sign-in:
    /// `None` while they have not. The ID token comes straight from the token endpoint for this
    /// client's device code (no nonce in RFC 8628); every other check holds.
    pub async fn device_poll(
        &self,
        p: &ProviderConfig,
        secret: &SecretString,
        pending: &CoreDeviceAuthorizationResponse,
        wait: Duration,
        now: Timestamp,
    ) -> Result<Option<SignIn>, SsoError> {
        use openidconnect::{DeviceCodeErrorResponseType, RequestTokenError};
        let metadata = self.metadata(p, DISCOVERY_TTL).await?;
        let client = self.client(p, metadata, Some(secret), "http://127.0.0.1/unused")?;
        let request = client
            .exchange_device_access_token(pending)
            .map_err(|e| unavailable("the token endpoint", e))?;
        // The library's clock only bounds its own polling (checked before each request, so a
        // token the provider has issued is never dropped half-way): the wall clock.
        let started = Instant::now();
        let answer = request.request_async(&self.http, tokio::time::sleep, Some(wait)).await;
        let response = match answer {
            Ok(r) => r,
            Err(RequestTokenError::ServerResponse(e)) => match e.error() {
                // Our own wait ran out (the library says "expired" for that too).
                DeviceCodeErrorResponseType::ExpiredToken if started.elapsed() >= wait => return Ok(None),
                DeviceCodeErrorResponseType::AuthorizationPending | DeviceCodeErrorResponseType::SlowDown => return Ok(None),
                DeviceCodeErrorResponseType::AccessDenied => {
                    return Err(SsoError::new("access_denied", "the sign-in was refused at the provider"))
                }
                _ => return Err(SsoError::new("device_expired", "the device sign-in ran out of time: start again")),
            },
            Err(e) => return Err(unavailable("the token endpoint", error_chain(&e))),
        };
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::new("token_invalid", "the provider sent no ID token"))?;
        let verifier = client.id_token_verifier().set_time_fn(move || chrono_of(now));
        let no_nonce = |_: Option<&Nonce>| -> Result<(), String> { Ok(()) };
        id_token.claims(&verifier, no_nonce).map_err(|e| refused(&e))?;
        let claims =
            payload_of(&id_token.to_string()).ok_or_else(|| SsoError::new("token_invalid", "the ID token's claims do not parse"))?;
        judge(p, &claims).map(Some)
    }
}

/// What checked claims mean for jitgate: refused when the e-mail domain is not allowed or the
/// user name claim makes no jitgate name.
pub fn judge(p: &ProviderConfig, claims: &Value) -> Result<SignIn, SsoError> {
    mapping::domain_allowed(claims, &p.allowed_domains).map_err(|r| SsoError::new("domain_not_allowed", r))?;
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SsoError::new("token_invalid", "the ID token has no subject"))?;
    let username =
        mapping::username_from(claims, &p.username_claim, &p.allowed_domains).map_err(|r| SsoError::new("invalid_username", r))?;
    let their_groups = mapping::groups_claim(claims, &p.groups_claim);
    let context = AuthContext::from_claims(claims);
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(SignIn {
        subject: subject.to_owned(),
        username,
        display_name: text("name").unwrap_or_default().chars().take(200).collect(),
        email: text("email"),
        groups: mapping::map_groups(&their_groups, &p.group_rules),
        second_factor: context.proves_second_factor(&p.factor_amr, &p.factor_acr),
        their_groups,
        context,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
