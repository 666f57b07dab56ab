//! Who the caller is: first start, login with its second step, sessions, and the config file's users and groups.

use super::mfa::{Factor, CEREMONY_TTL};
use super::*;
use crate::core::Caller;
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{BootstrapBody, LoginBody, LoginMfaBody, LoginOutcome, SecretText, SessionToken, WebauthnChallenge, WhoAmI};
use jitgate_auth::{check_password_rules, new_token, secrets_equal, token_hash};
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::factor::Ceremony;
use jitgate_core::names::Username;
use jitgate_store::{ChallengeRecord, SessionRecord, Source, UserRecord, WriteTx};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::Duration;

const SETUP_TOKEN_KEY: &str = "setup_token_hash";

/// A session is touched in the store at most this often, so that reads stay reads.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

fn invalid_credentials() -> ServiceError {
    ServiceError::new(ErrorKind::Unauthenticated, "invalid_credentials", "user name or password is wrong")
}

fn password_disabled() -> ServiceError {
    ServiceError::new(
        ErrorKind::Forbidden,
        "password_disabled",
        "passwords are off here (auth.password = false): sign in through your identity provider (`jitgate login --sso`)",
    )
}

pub(crate) fn password_error(e: jitgate_auth::AuthError) -> ServiceError {
    ServiceError::bad_request("weak_password", e.to_string())
}

impl Identity<'_> {
    /// On a store with no users, makes a new one-time setup token and returns it; the old one,
    /// if any, stops working.
    pub async fn prepare_bootstrap(&self) -> Result<Option<SecretString>, ServiceError> {
        let mut tx = self.begin().await?;
        if tx.count_users().await? > 0 {
            return Ok(None);
        }
        let token = new_token("jgsetup");
        tx.set_meta(SETUP_TOKEN_KEY, &token_hash(token.expose_secret())).await?;
        tx.append_audit(
            NewEvent::new("system", actions::AUTH_SETUP_TOKEN, "bootstrap", Outcome::Success, json!({})),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Some(token))
    }

    pub async fn bootstrap(&self, body: BootstrapBody) -> Result<SessionToken, ServiceError> {
        let password = SecretString::from(body.password.0);
        check_password_rules(&password).map_err(password_error)?;
        if !self.settings.sign_in.password_allowed(&body.username) {
            return Err(ServiceError::bad_request(
                "password_disabled",
                "with auth.password = false the first administrator must be one of auth.break_glass",
            ));
        }
        let stored = self.store.meta(SETUP_TOKEN_KEY).await?;
        let offered = token_hash(body.setup_token.expose());
        let valid = stored.as_deref().is_some_and(|s| secrets_equal(s.as_bytes(), offered.as_bytes()));
        if !valid {
            self.audit_alone(NewEvent::new(
                body.username.as_str(),
                actions::AUTH_BOOTSTRAP,
                "bootstrap",
                Outcome::Failure,
                json!({"reason": "bad setup token"}),
            ))
            .await;
            return Err(ServiceError::new(
                ErrorKind::Unauthenticated,
                "invalid_setup_token",
                "the setup token is wrong or was already used",
            ));
        }
        let hash = self.users().hash_new_password(password).await?;
        let now = self.now();
        let mut tx = self.begin().await?;
        if tx.count_users().await? > 0 {
            return Err(ServiceError::conflict(
                "already_bootstrapped",
                "the first administrator exists already",
            ));
        }
        let user = UserRecord {
            name: body.username.clone(),
            display_name: String::new(),
            password_hash: Some(hash),
            is_admin: true,
            disabled: false,
            created_at: now,
        };
        tx.insert_user(&user).await?;
        tx.delete_meta(SETUP_TOKEN_KEY).await?;
        tx.append_audit(
            NewEvent::new(
                user.name.as_str(),
                actions::AUTH_BOOTSTRAP,
                user.name.as_str(),
                Outcome::Success,
                json!({"admin": true}),
            ),
            now,
        )
        .await?;
        let token = self.open_session(&mut *tx, &user.name, None).await?;
        self.commit(tx).await?;
        Ok(token)
    }

    async fn open_session(&self, tx: &mut dyn WriteTx, user: &Username, mfa: Option<Factor>) -> Result<SessionToken, ServiceError> {
        let details = json!({"method": "password", "mfa": mfa.map(Factor::as_str)});
        self.open_session_with(tx, user, mfa.map(|f| (f, self.now())), details).await
    }

    /// A new session for `user`, fresh from a second factor proved at the given time (if any),
    /// and its `auth.login` event with `details`.
    pub(crate) async fn open_session_with(
        &self,
        tx: &mut dyn WriteTx,
        user: &Username,
        mfa: Option<(Factor, jitgate_core::Timestamp)>,
        details: serde_json::Value,
    ) -> Result<SessionToken, ServiceError> {
        let now = self.now();
        let token = new_token("jgs");
        let expires_at = now.saturating_add(self.settings.session_max);
        tx.insert_session(&SessionRecord {
            token_hash: token_hash(token.expose_secret()),
            user: user.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at,
            mfa_at: mfa.map(|(_, at)| at.min(now)),
            mfa_method: mfa.map(|(f, _)| f),
        })
        .await?;
        tx.clear_attempts(user.as_str()).await?;
        tx.clear_attempts(&super::attempts::factor_key(user)).await?;
        tx.append_audit(
            NewEvent::new(user.as_str(), actions::AUTH_LOGIN, user.as_str(), Outcome::Success, details),
            now,
        )
        .await?;
        Ok(SessionToken {
            token: token.expose_secret().into(),
            username: user.clone(),
            expires_at,
        })
    }

    /// Password first; then, for a user with a second factor, either the factor given in the
    /// same call or a ticket to finish with. Failures count towards the account's attempt
    /// limit whether or not the account exists.
    pub async fn login(&self, body: LoginBody) -> Result<LoginOutcome, ServiceError> {
        // A place to hash first: a login refused for load has done and counted nothing.
        let hashing = self.limits.hashing.admit()?;
        let name = Username::parse(&body.username).ok();
        if let Some(n) = name.as_ref().filter(|n| !self.settings.sign_in.password_allowed(n)) {
            // Decided by the config alone (not whether the account exists): nothing to hash.
            self.attempts()
                .audit_failure_alone(NewEvent::new(
                    n.as_str(),
                    actions::AUTH_LOGIN,
                    n.as_str(),
                    Outcome::Failure,
                    json!({"method": "password", "code": "password_disabled"}),
                ))
                .await;
            return Err(password_disabled());
        }
        let charged = match &name {
            Some(n) => Some(self.attempts().charge(n.as_str(), actions::AUTH_LOGIN).await?),
            None => None,
        };
        let user = match &name {
            Some(n) => self.store.user(n).await?,
            None => None,
        };
        // Always one Argon2 verification, against a dummy hash when there is no usable user,
        // so neither timing nor message tells whether the name exists.
        let stored = user.as_ref().filter(|u| !u.disabled).and_then(|u| u.password_hash.clone());
        let password = SecretString::from(body.password.0);
        // Argon2 takes tens of milliseconds of CPU: on a hashing thread, off the async workers.
        let password_ok = hashing.verify(stored, password).await?;
        let actor = name.as_ref().map_or("(invalid name)", Username::as_str).to_owned();
        let Some(user) = user.filter(|u| password_ok && !u.disabled) else {
            let event = NewEvent::new(
                actor.clone(),
                actions::AUTH_LOGIN,
                actor.clone(),
                Outcome::Failure,
                json!({"method": "password"}),
            );
            match (&name, &charged) {
                (Some(n), Some(charged)) => self.attempts().record_charged_failure(n.as_str(), event, charged).await,
                _ => self.attempts().audit_failure_alone(event).await,
            }
            return Err(invalid_credentials());
        };
        let methods = self.mfa().factors_of(&user.name).await?;
        if !methods.is_empty() {
            // The password was right: take back its charge, but leave the count of earlier
            // failures, which knowing the password must not wipe while a factor is due.
            if let Some(charged) = &charged {
                self.attempts().refund(user.name.as_str(), charged).await?;
            }
        }
        let mfa = match (&body.mfa, methods.is_empty()) {
            (_, true) => None,
            (Some(proof), false) => Some(self.mfa().verify_factor(&user.name, proof, "login", None).await?),
            (None, false) => return self.login_ticket(&user.name, methods).await,
        };
        let mut tx = self.begin().await?;
        let token = self.open_session(&mut *tx, &user.name, mfa).await?;
        self.commit(tx).await?;
        Ok(token.into())
    }

    /// The password was right and a second factor is due: a short-lived ticket stands for
    /// the first half of the login.
    async fn login_ticket(&self, user: &Username, methods: Vec<&'static str>) -> Result<LoginOutcome, ServiceError> {
        let now = self.now();
        let ticket = new_token("jgt");
        let expires_at = now.saturating_add(CEREMONY_TTL);
        let mut tx = self.begin().await?;
        tx.insert_challenge(
            &ChallengeRecord {
                id: token_hash(ticket.expose_secret()),
                user: user.clone(),
                purpose: Ceremony::Login,
                state: "{}".into(),
                expires_at,
            },
            now,
        )
        .await?;
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::AUTH_LOGIN,
                user.as_str(),
                Outcome::Success,
                json!({"method": "password", "next": "mfa"}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(LoginOutcome::MfaRequired {
            ticket: ticket.expose_secret().into(),
            methods: methods.into_iter().map(str::to_owned).collect(),
            expires_at,
        })
    }

    async fn ticket_user(&self, ticket: &SecretText) -> Result<(String, UserRecord), ServiceError> {
        let id = token_hash(ticket.expose());
        let now = self.now();
        let challenge = self
            .store
            .challenge(&id)
            .await?
            .filter(|c| c.purpose == Ceremony::Login && c.expires_at > now);
        let user = match challenge {
            Some(c) => self.store.user(&c.user).await?.filter(|u| !u.disabled),
            None => None,
        };
        user.map(|u| (id, u)).ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Unauthenticated,
                "invalid_ticket",
                "the login ticket is unknown, used or expired: log in again",
            )
        })
    }

    /// Finishes a login with its second factor.
    pub async fn login_mfa(&self, body: LoginMfaBody) -> Result<SessionToken, ServiceError> {
        let (ticket_id, user) = self.ticket_user(&body.ticket).await?;
        let factor = self.mfa().verify_factor(&user.name, &body.mfa, "login", None).await?;
        let mut tx = self.begin().await?;
        if tx.take_challenge(&ticket_id).await?.is_none() {
            return Err(ServiceError::new(
                ErrorKind::Unauthenticated,
                "invalid_ticket",
                "the login ticket was used already: log in again",
            ));
        }
        let token = self.open_session(&mut *tx, &user.name, Some(factor)).await?;
        self.commit(tx).await?;
        Ok(token)
    }

    /// A WebAuthn challenge for the user behind a login ticket.
    pub async fn login_webauthn_challenge(&self, ticket: &SecretText) -> Result<WebauthnChallenge, ServiceError> {
        let (_, user) = self.ticket_user(ticket).await?;
        self.mfa().webauthn_challenge(&user.name).await
    }

    /// Turns a bearer token into the person behind it, or refuses; the use keeps the session
    /// from going idle.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ServiceError> {
        self.authenticate_as(token, true).await
    }

    /// The same without counting as a use: for what a page does by itself (following changes
    /// live, refreshing what it shows), which must not keep an unattended session alive.
    pub async fn authenticate_quietly(&self, token: &str) -> Result<Caller, ServiceError> {
        self.authenticate_as(token, false).await
    }

    async fn authenticate_as(&self, token: &str, in_use: bool) -> Result<Caller, ServiceError> {
        let hash = token_hash(token);
        let Some((session, user)) = self.store.session_user(&hash).await? else {
            return Err(ServiceError::unauthenticated());
        };
        let now = self.now();
        let idle_deadline = session.last_seen_at.saturating_add(self.settings.session_idle);
        if now >= session.expires_at || now >= idle_deadline || user.disabled {
            return Err(ServiceError::unauthenticated());
        }
        if in_use && session.last_seen_at.until(now) >= TOUCH_EVERY {
            let mut tx = self.begin().await?;
            tx.touch_session(&hash, now).await?;
            self.commit(tx).await?;
        }
        let groups = self.store.user_groups(&user.name).await?;
        Ok(Caller {
            user,
            groups,
            session,
            token_scopes: None,
        })
    }

    pub async fn logout(&self, caller: &Caller) -> Result<(), ServiceError> {
        let mut tx = self.begin().await?;
        tx.delete_session(&caller.session.token_hash).await?;
        tx.append_audit(
            NewEvent::new(caller.name(), actions::AUTH_LOGOUT, caller.name(), Outcome::Success, json!({})),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    pub fn whoami(&self, caller: &Caller) -> WhoAmI {
        let idle_deadline = self.now().saturating_add(self.settings.session_idle);
        WhoAmI {
            username: caller.user.name.clone(),
            display_name: caller.user.display_name.clone(),
            is_admin: caller.user.is_admin,
            groups: caller.groups.iter().cloned().collect(),
            session_expires_at: idle_deadline.min(caller.session.expires_at),
        }
    }

    /// Makes the store match the config file's groups and resources; what the API added stays.
    pub async fn apply_config(&self, file: Option<&str>) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.clear_source(Source::Config).await?;
        for (group, members) in &self.settings.groups {
            tx.ensure_group(group, Source::Config).await?;
            for m in members {
                tx.set_member(group, m, true, Source::Config).await?;
            }
        }
        let wanted: Vec<_> = self.settings.resources.iter().map(|r| r.name.clone()).collect();
        for old in tx.resources_from(Source::Config).await? {
            if !wanted.contains(&old) {
                tx.delete_resource(&old).await?;
            }
        }
        for r in &self.settings.resources {
            tx.put_resource(r, Source::Config, now).await?;
        }
        let details = json!({"file": file, "groups": self.settings.groups.len(), "resources": wanted});
        tx.append_audit(
            NewEvent::new(
                "system",
                actions::CONFIG_APPLY,
                file.unwrap_or("(defaults)"),
                Outcome::Success,
                details,
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
