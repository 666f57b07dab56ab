//! Single sign-on: sending a person to their identity provider and taking them back. The
//! provider's checked ID token ([`jitgate_sso`]) becomes a jitgate user (created or linked at
//! the first sign-in), their sign-in groups (by the provider's mapping rules, audited with what
//! changed) and, when its `amr`/`acr` show a second factor, a session fresh from the time the
//! person authenticated at the provider.
//!
//! Three ways back from the provider, all through one redirect URL (`{public_url}sso/callback`):
//! - **web**: the browser that started the sign-in (a cookie whose hash the half-done sign-in
//!   holds, so nobody can land someone else's sign-in in a victim's browser) gets a session;
//! - **cli**: `jitgate login --sso` waits on a loopback port; the browser is sent there with a
//!   one-time hand-off code that only the CLI, holding the verifier whose hash it sent first,
//!   can trade for a session ([`Sso::hand_off`]); the session token never passes the browser;
//! - **step-up**: a signed-in person signs in again at the provider (`prompt=login`,
//!   `max_age=0`), which makes their session fresh if it shows a second factor.

use super::*;
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{SessionToken, SsoProviderView};
use jitgate_auth::{new_token, secrets_equal, token_hash};
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::factor::Factor;
use jitgate_core::names::Username;
use jitgate_core::Timestamp;
use jitgate_sso::{PendingSignIn, ProviderConfig, Provisioning, SignIn, SsoError};
use jitgate_store::{Source, SsoIdentityRecord, SsoSignInRecord, UserRecord};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// How long a person has at the provider before the sign-in must start again.
const SIGN_IN_TTL: Duration = Duration::from_secs(600);
/// How long the CLI has to trade its hand-off code.
const HAND_OFF_TTL: Duration = Duration::from_secs(120);

/// Where a sign-in goes when the person comes back from the provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Return {
    /// To the pages, in the browser that holds the cookie whose SHA-256 this is.
    Web { next: String, browser: String },
    /// To the CLI's loopback address; the CLI proves it is the one that asked with the verifier
    /// whose SHA-256 (base64url) is `challenge`.
    Cli { redirect: String, challenge: String },
    /// A step-up for the session whose token hash this is, in the browser that holds the
    /// cookie.
    StepUp { session: String, next: String, browser: String },
}

#[derive(Serialize, Deserialize)]
struct HalfDone {
    pending: PendingSignIn,
    back: Return,
}

#[derive(Serialize, Deserialize)]
struct HandOff {
    user: Username,
    provider: String,
    mfa_at: Option<i64>,
    challenge: String,
}

/// What the callback does next.
pub enum Finished {
    /// Set this session's cookie and go to `next`.
    Web { session: SessionToken, next: String },
    /// Send the browser to the CLI's loopback address (with the hand-off code in it).
    Cli { redirect: String },
    /// The session is fresh again: go to `next`.
    SteppedUp { next: String },
}

fn sealed_context(id: &str) -> String {
    format!("sso-sign-in:{id}")
}

/// The secret store's key for a provider's client secret (kept with the channels' secrets,
/// sealed to this name so it cannot be moved to another).
pub fn client_secret_key(provider: &str) -> String {
    format!("oidc:{provider}")
}

pub(super) fn refused(e: SsoError) -> ServiceError {
    if e.is_provider_unavailable() {
        ServiceError::new(ErrorKind::Upstream, "provider_unavailable", e.reason)
    } else if matches!(e.code, "domain_not_allowed" | "invalid_username") {
        // The provider vouched for the person; jitgate's config does not let them in.
        ServiceError::new(ErrorKind::Forbidden, e.code, e.reason)
    } else {
        ServiceError::new(ErrorKind::Unauthenticated, e.code, e.reason)
    }
}

fn expired_sign_in() -> ServiceError {
    ServiceError::new(
        ErrorKind::Unauthenticated,
        "sign_in_expired",
        "this sign-in is unknown, used or expired: start again",
    )
}

/// `http://127.0.0.1:PORT/...`, `http://[::1]:PORT/...` or `http://localhost:PORT/...` with a
/// port: where a CLI on this person's machine listens (RFC 8252's loopback redirect). Nothing
/// else, so a hand-off code is never sent off the machine.
fn loopback_redirect(text: &str) -> Result<String, ServiceError> {
    let bad = || {
        ServiceError::bad_request(
            "invalid_redirect",
            "the CLI's redirect must be http://127.0.0.1:PORT/... (a loopback address with a port)",
        )
    };
    let u = url::Url::parse(text).map_err(|_| bad())?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if u.scheme() != "http" || !loopback || u.port().is_none() || u.query().is_some() || u.fragment().is_some() || !u.username().is_empty()
    {
        return Err(bad());
    }
    Ok(u.to_string())
}

impl Sso<'_> {
    /// The providers people may sign in with, for the sign-in page and the CLI.
    pub fn providers(&self) -> Vec<SsoProviderView> {
        self.settings
            .sign_in
            .providers
            .iter()
            .map(|p| SsoProviderView {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
            })
            .collect()
    }

    /// The configured providers `user` has signed in with: where they can prove themselves
    /// again.
    pub async fn linked_providers(&self, user: &Username) -> Result<Vec<SsoProviderView>, ServiceError> {
        if self.settings.sign_in.providers.is_empty() {
            return Ok(Vec::new());
        }
        let linked = self.store.sso_identities_of(user).await?;
        Ok(self
            .providers()
            .into_iter()
            .filter(|p| linked.iter().any(|l| l.provider == p.name))
            .collect())
    }

    pub(super) fn provider(&self, name: &str) -> Result<&ProviderConfig, ServiceError> {
        self.settings
            .sign_in
            .provider(name)
            .ok_or_else(|| ServiceError::not_found("sign-in provider"))
    }

    /// The one redirect URL to register at every provider.
    pub fn redirect_url(&self) -> String {
        format!("{}sso/callback", self.public_url())
    }

    pub(super) async fn client_secret(&self, provider: &str) -> Result<SecretString, ServiceError> {
        let key = client_secret_key(provider);
        self.stored_secret(&key, &key).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Unprocessable,
                "provider_not_ready",
                format!(
                    "provider {provider} has no client secret: an administrator sets it with `jitgate admin oidc set-secret {provider}`"
                ),
            )
        })
    }

    /// Starts a sign-in at `provider`: the URL to send the person to.
    pub async fn start(&self, provider: &str, back: Return) -> Result<String, ServiceError> {
        let p = self.provider(provider)?;
        let back = match back {
            Return::Cli { redirect, challenge } => {
                if challenge.len() < 43 || challenge.len() > 128 {
                    return Err(ServiceError::bad_request(
                        "invalid_challenge",
                        "the challenge is the SHA-256 of the verifier, base64url",
                    ));
                }
                Return::Cli {
                    redirect: loopback_redirect(&redirect)?,
                    challenge,
                }
            }
            other => other,
        };
        let step_up = matches!(back, Return::StepUp { .. });
        let start = self.oidc.start(p, &self.redirect_url(), step_up).await.map_err(refused)?;
        let half = HalfDone {
            pending: start.pending,
            back,
        };
        self.keep(&start.state, &p.name, &half, SIGN_IN_TTL).await?;
        Ok(start.url.to_string())
    }

    /// Keeps `value` sealed under the hash of `secret` (a state or hand-off code) for `ttl`.
    pub(super) async fn keep(&self, secret: &str, provider: &str, value: &impl Serialize, ttl: Duration) -> Result<(), ServiceError> {
        let id = token_hash(secret);
        let plain = serde_json::to_vec(value).map_err(|e| ServiceError::internal(e.to_string()))?;
        let sealed = self.secrets.seal(&plain, &sealed_context(&id));
        let now = self.now();
        let record = SsoSignInRecord {
            id,
            provider: provider.to_owned(),
            key_version: sealed.key_version,
            sealed: sealed.data,
            expires_at: now.saturating_add(ttl),
        };
        Ok(self.store.put_sso_sign_in(&record, now).await?)
    }

    /// Takes back what [`Self::keep`] kept under `secret`: once, and only before it expires.
    pub(super) async fn take<T: serde::de::DeserializeOwned>(&self, secret: &str) -> Result<(SsoSignInRecord, T), ServiceError> {
        let id = token_hash(secret);
        let record = self.store.take_sso_sign_in(&id, self.now()).await?.ok_or_else(expired_sign_in)?;
        let sealed = jitgate_auth::secret_box::Sealed {
            key_version: record.key_version,
            data: record.sealed.clone(),
        };
        let plain = self.secrets.open(&sealed, &sealed_context(&id)).map_err(|_| expired_sign_in())?;
        let value = serde_json::from_slice(&plain).map_err(|_| expired_sign_in())?;
        Ok((record, value))
    }

    pub(super) async fn audit_refusal(&self, provider: &str, who: &str, e: &ServiceError) {
        self.audit_alone(NewEvent::new(
            who,
            actions::AUTH_SSO,
            provider,
            Outcome::Failure,
            json!({"provider": provider, "code": e.code, "reason": e.message}),
        ))
        .await;
    }

    /// The person is back from the provider with `code` for the sign-in `state`. `browser`: the
    /// sign-in cookie the browser sent, if any.
    pub async fn finish(&self, state: &str, code: &str, browser: Option<&str>) -> Result<Finished, ServiceError> {
        let (record, half): (_, HalfDone) = self.take(state).await?;
        let provider = record.provider.clone();
        let outcome = self.finish_taken(&record, half, code, browser).await;
        if let Err(e) = &outcome {
            self.audit_refusal(&provider, "(sso)", e).await;
        }
        outcome
    }

    async fn finish_taken(
        &self,
        record: &SsoSignInRecord,
        half: HalfDone,
        code: &str,
        browser: Option<&str>,
    ) -> Result<Finished, ServiceError> {
        let same_browser = |expected: &str| {
            let offered = token_hash(browser.unwrap_or_default());
            if browser.is_some() && secrets_equal(offered.as_bytes(), expected.as_bytes()) {
                Ok(())
            } else {
                Err(ServiceError::new(
                    ErrorKind::Unauthenticated,
                    "wrong_browser",
                    "this sign-in was started in another browser: start it again here",
                ))
            }
        };
        match &half.back {
            Return::Web { browser, .. } | Return::StepUp { browser, .. } => same_browser(browser)?,
            Return::Cli { .. } => {}
        }
        let p = self.provider(&record.provider)?;
        let secret = self.client_secret(&p.name).await?;
        let now = self.now();
        let signed_in = self
            .oidc
            .finish(p, &secret, &self.redirect_url(), code, &half.pending, now)
            .await
            .map_err(refused)?;
        match half.back {
            Return::Web { next, .. } => {
                let session = self.sign_in(p, signed_in, "web").await?;
                Ok(Finished::Web { session, next })
            }
            Return::Cli { redirect, challenge } => {
                let (user, mfa_at) = self.admit(p, &signed_in).await?;
                let code = new_token("jgh");
                let hand_off = HandOff {
                    user,
                    provider: p.name.clone(),
                    mfa_at: mfa_at.map(Timestamp::as_millis),
                    challenge,
                };
                self.keep(code.expose_secret(), &p.name, &hand_off, HAND_OFF_TTL).await?;
                let mut url = url::Url::parse(&redirect).map_err(|e| ServiceError::internal(e.to_string()))?;
                url.query_pairs_mut().append_pair("code", code.expose_secret());
                Ok(Finished::Cli { redirect: url.to_string() })
            }
            Return::StepUp { session, next, .. } => {
                self.step_up(p, &signed_in, &session).await?;
                Ok(Finished::SteppedUp { next })
            }
        }
    }

    /// The CLI trades its hand-off code and verifier for a session.
    pub async fn hand_off(&self, code: &str, verifier: &str) -> Result<SessionToken, ServiceError> {
        let (_, h): (_, HandOff) = self.take(code).await?;
        use base64::Engine;
        use sha2::Digest;
        let offered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        if !secrets_equal(offered.as_bytes(), h.challenge.as_bytes()) {
            let e = ServiceError::new(
                ErrorKind::Unauthenticated,
                "wrong_verifier",
                "the verifier does not match this sign-in",
            );
            self.audit_refusal(&h.provider, h.user.as_str(), &e).await;
            return Err(e);
        }
        let mut tx = self.begin().await?;
        if tx.user(&h.user).await?.is_none_or(|u| u.disabled) {
            return Err(ServiceError::unauthenticated());
        }
        let mfa = h.mfa_at.map(|at| (Factor::Sso, Timestamp::from_millis(at)));
        let details = json!({"method": "sso", "provider": h.provider, "client": "cli", "mfa": mfa.map(|_| "sso")});
        let session = self.identity().open_session_with(&mut *tx, &h.user, mfa, details).await?;
        self.commit(tx).await?;
        Ok(session)
    }

    /// Signs the person in: their user (found, linked or made), groups and a session.
    pub(super) async fn sign_in(&self, p: &ProviderConfig, s: SignIn, client: &str) -> Result<SessionToken, ServiceError> {
        let (user, mfa_at) = self.admit(p, &s).await?;
        let mut tx = self.begin().await?;
        let mfa = mfa_at.map(|at| (Factor::Sso, at));
        let details = json!({"method": "sso", "provider": p.name, "client": client, "mfa": mfa.map(|_| "sso"), "amr": s.context.amr, "acr": s.context.acr});
        let session = self.identity().open_session_with(&mut *tx, &user, mfa, details).await?;
        self.commit(tx).await?;
        Ok(session)
    }

    /// When the sign-in counts as a second factor: from the time the person authenticated at
    /// the provider (`auth_time`); without it, not at all (an old provider session must not
    /// look fresh).
    fn second_factor_at(s: &SignIn) -> Option<Timestamp> {
        s.second_factor
            .then_some(s.context.auth_time)
            .flatten()
            .map(|secs| Timestamp::from_millis(secs.saturating_mul(1000)))
    }

    /// The jitgate user this sign-in is: the one the identity is linked to, or (first sign-in)
    /// the user of that name, linked now, or a new one. Their sign-in groups are made to match
    /// the provider's, by its rules. Returns the user and when a second factor was proved.
    async fn admit(&self, p: &ProviderConfig, s: &SignIn) -> Result<(Username, Option<Timestamp>), ServiceError> {
        let now = self.now();
        let refuse = |code: &'static str, message: String| ServiceError::new(ErrorKind::Forbidden, code, message);
        let mut tx = self.begin().await?;
        let user = match tx.sso_identity(&p.name, &s.subject).await? {
            Some(linked) => {
                tx.touch_sso_identity(&p.name, &s.subject, now).await?;
                linked.user
            }
            None => {
                let name = s.username.clone();
                if self.settings.sign_in.break_glass.contains(&name) {
                    return Err(refuse(
                        "break_glass_account",
                        format!("{name} is a break-glass account: it signs in with its password only, never through a provider"),
                    ));
                }
                if tx.sso_identity_of(&p.name, &name).await?.is_some() {
                    return Err(refuse(
                        "name_taken",
                        format!(
                            "the jitgate user {name} belongs to another {} identity; an administrator must sort this out",
                            p.name
                        ),
                    ));
                }
                let existing = tx.user(&name).await?;
                if let Some(local) = &existing {
                    // An account with credentials of its own is its holder's: a provider that
                    // names it (a chosen or recycled user name) must not take it over.
                    let has_factor = !self.mfa().factors_of(&local.name).await?.is_empty();
                    if local.password_hash.is_some() || has_factor {
                        return Err(refuse(
                            "link_refused",
                            format!(
                                "{name} is a jitgate account with its own password or second factor: a sign-in through {} links only to accounts made for it (created without a password); ask an administrator",
                                p.name
                            ),
                        ));
                    }
                }
                if existing.is_none() {
                    if p.provisioning == Provisioning::Existing {
                        return Err(refuse(
                            "not_provisioned",
                            format!(
                                "there is no jitgate user {name}, and provider {} only signs in people created first",
                                p.name
                            ),
                        ));
                    }
                    tx.insert_user(&UserRecord {
                        name: name.clone(),
                        display_name: s.display_name.clone(),
                        password_hash: None,
                        is_admin: false,
                        disabled: false,
                        created_at: now,
                    })
                    .await?;
                    tx.append_audit(
                        NewEvent::new(
                            "system",
                            actions::USER_CREATE,
                            name.as_str(),
                            Outcome::Success,
                            json!({"by": "sso", "provider": p.name}),
                        ),
                        now,
                    )
                    .await?;
                }
                tx.link_sso_identity(&SsoIdentityRecord {
                    provider: p.name.clone(),
                    subject: s.subject.clone(),
                    user: name.clone(),
                    linked_at: now,
                    last_sign_in_at: now,
                })
                .await?;
                tx.append_audit(
                    NewEvent::new(
                        name.as_str(),
                        actions::AUTH_SSO_LINK,
                        name.as_str(),
                        Outcome::Success,
                        json!({"provider": p.name, "subject": s.subject, "new_user": existing.is_none()}),
                    ),
                    now,
                )
                .await?;
                name
            }
        };
        if tx.user(&user).await?.is_none_or(|u| u.disabled) {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "user_disabled",
                format!("the jitgate user {user} is disabled"),
            ));
        }
        let had = tx.sso_groups_of(&user).await?;
        let wanted = s.groups.names();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for g in wanted.difference(&had) {
            if tx.set_member(g, &user, true, Source::Sso).await? {
                added.push(g.as_str().to_owned());
            }
        }
        for g in had.difference(&wanted) {
            if tx.remove_member_from(g, &user, Source::Sso).await? {
                removed.push(g.as_str().to_owned());
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            let because: serde_json::Map<String, serde_json::Value> = s
                .groups
                .groups
                .iter()
                .filter(|(g, _)| added.iter().any(|a| a == g.as_str()))
                .map(|(g, (theirs, rule))| (g.as_str().to_owned(), json!({"from": theirs, "rule": rule})))
                .collect();
            tx.append_audit(
                NewEvent::new(
                    user.as_str(),
                    actions::AUTH_SSO_GROUPS,
                    user.as_str(),
                    Outcome::Success,
                    json!({"provider": p.name, "added": added, "removed": removed, "because": because}),
                ),
                now,
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok((user, Self::second_factor_at(s)))
    }

    /// A signed-in person signed in again at the provider: their session is fresh if it was
    /// the same identity, with a second factor, just now.
    async fn step_up(&self, p: &ProviderConfig, s: &SignIn, session: &str) -> Result<(), ServiceError> {
        let now = self.now();
        let Some(current) = self.store.session(session).await? else {
            return Err(ServiceError::unauthenticated());
        };
        let mut tx = self.begin().await?;
        let linked = tx.sso_identity(&p.name, &s.subject).await?;
        if linked.as_ref().map(|l| &l.user) != Some(&current.user) {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "other_identity",
                format!("that was not {}'s identity at {}", current.user, p.name),
            ));
        }
        let fresh = Self::second_factor_at(s).filter(|at| jitgate_core::policy::mfa_is_fresh(Some(*at), now, self.settings.mfa_freshness));
        let Some(at) = fresh else {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "no_second_factor",
                format!(
                    "{} did not say a second factor was used just now (amr {:?}, acr {:?})",
                    p.name, s.context.amr, s.context.acr
                ),
            ));
        };
        tx.set_session_mfa(session, at, Factor::Sso).await?;
        tx.append_audit(
            NewEvent::new(
                current.user.as_str(),
                actions::AUTH_SSO_STEP_UP,
                current.user.as_str(),
                Outcome::Success,
                json!({"provider": p.name, "amr": s.context.amr, "acr": s.context.acr}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
