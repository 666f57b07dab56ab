//! API tokens for automation: made from a signed-in session (with a fresh second factor when
//! the person has one), scoped, expiring, revocable, kept only as a hash. A call made with one
//! is its owner's, narrowed to what the token's scopes allow ([`required_scope`]).

use super::*;
use crate::core::Caller;
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{ApiTokenView, CreateTokenBody, NewApiToken, TokenScope};
use jitgate_auth::{new_token, token_hash};
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_store::{ApiTokenRecord, SessionRecord};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// What an API token starts with: how the API tells it from a session token.
pub const TOKEN_PREFIX: &str = "jgapi_";
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// A token's use is written down at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The scope a call needs, by method and path under `/api/v1`; `None`: no token may make it
/// (second factors, tokens, passwords, new users, logging out, and anything not listed).
pub fn required_scope(method: &axum::http::Method, path: &str) -> Option<TokenScope> {
    use axum::http::Method;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // A password set by a token would be a way from the token to an interactive session: not
    // set directly, nor with a new user.
    let makes_credentials = parts.last() == Some(&"password") || (method == Method::POST && parts == ["admin", "users"]);
    let never = matches!(parts.first(), Some(&"mfa" | &"tokens" | &"logout")) || makes_credentials;
    if never {
        return None;
    }
    match (method, parts.as_slice()) {
        (_, ["admin", ..]) | (&Method::POST, ["sessions", _, "kill"]) => Some(TokenScope::Admin),
        (&Method::GET | &Method::HEAD, _) | (&Method::POST, ["policy", "explain"]) => Some(TokenScope::Read),
        (&Method::POST, ["requests"] | ["requests", _, "cancel"] | ["grants", _, "revoke"]) => Some(TokenScope::Request),
        (&Method::POST, ["requests", _, "approve" | "deny" | "ack"]) => Some(TokenScope::Review),
        (&Method::POST, ["connect"]) => Some(TokenScope::Connect),
        _ => None,
    }
}

fn view(t: &ApiTokenRecord) -> ApiTokenView {
    ApiTokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        username: t.user.clone(),
        scopes: t.scopes.iter().filter_map(|s| TokenScope::parse(s)).collect(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    }
}

impl Tokens<'_> {
    /// Makes a token for the caller: shown this once.
    pub async fn create(&self, caller: &Caller, body: CreateTokenBody) -> Result<NewApiToken, ServiceError> {
        if caller.token_scopes.is_some() {
            return Err(ServiceError::forbidden("a token cannot make tokens: sign in"));
        }
        let name = body.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ServiceError::bad_request(
                "invalid_name",
                "a token's name is 1 to 64 characters on one line",
            ));
        }
        let scopes: BTreeSet<TokenScope> = body.scopes.iter().copied().collect();
        if scopes.is_empty() {
            return Err(ServiceError::bad_request(
                "invalid_scopes",
                "name at least one scope: read, request, review, connect or admin",
            ));
        }
        if scopes.contains(&TokenScope::Admin) && !caller.user.is_admin {
            return Err(self
                .forbid(
                    caller,
                    "token_admin_scope",
                    "only an administrator's token may have the admin scope",
                )
                .await);
        }
        let lifetime = match body.expires_in.as_deref() {
            Some(text) => jitgate_core::time::parse_duration(text).map_err(|e| ServiceError::bad_request("invalid_duration", e))?,
            None => DEFAULT_LIFETIME.min(self.settings.sign_in.api_token_max),
        };
        let max = self.settings.sign_in.api_token_max;
        if lifetime < Duration::from_secs(60) || lifetime > max {
            return Err(ServiceError::bad_request(
                "invalid_duration",
                format!(
                    "a token lives 1m to {} (auth.api_token_max)",
                    jitgate_core::time::format_duration(max)
                ),
            ));
        }
        // A lasting credential: a stolen session alone must not be able to make one.
        self.mfa().require_fresh_if_enrolled(caller, "making an API token").await?;
        let now = self.now();
        let token = new_token(TOKEN_PREFIX.trim_end_matches('_'));
        let record = ApiTokenRecord {
            id: format!("tok_{}", &token_hash(token.expose_secret())[..16]),
            token_hash: token_hash(token.expose_secret()),
            user: caller.user.name.clone(),
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: now,
            expires_at: now.saturating_add(lifetime),
            last_used_at: None,
            revoked_at: None,
        };
        let mut tx = self.begin().await?;
        tx.insert_api_token(&record).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::TOKEN_CREATE,
                &record.id,
                Outcome::Success,
                json!({"name": record.name, "scopes": record.scopes, "expires_at": record.expires_at}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(NewApiToken {
            token: token.expose_secret().into(),
            details: view(&record),
        })
    }

    /// The caller's tokens; an administrator's with `all`, everyone's.
    pub async fn list(&self, caller: &Caller, all: bool) -> Result<Vec<ApiTokenView>, ServiceError> {
        if all {
            self.require_admin(caller, "list_all_tokens").await?;
        }
        let owner = (!all).then_some(&caller.user.name);
        Ok(self.store.api_tokens(owner).await?.iter().map(view).collect())
    }

    /// Revokes a token of the caller's (or, for an administrator, anyone's).
    pub async fn revoke(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let token = tx
            .api_token(id)
            .await?
            .filter(|t| t.user == caller.user.name || caller.user.is_admin);
        let Some(token) = token else {
            return Err(ServiceError::not_found("token"));
        };
        if !tx.revoke_api_token(id, now).await? {
            return Err(ServiceError::conflict("already_revoked", "that token was revoked already"));
        }
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::TOKEN_REVOKE,
                id,
                Outcome::Success,
                json!({"owner": token.user, "name": token.name}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// The person behind an API token, narrowed to its scopes; refused when the token is
    /// unknown, revoked, expired or its owner disabled, or when it does not have `needed`.
    pub async fn authenticate(&self, token: &str, needed: Option<TokenScope>) -> Result<Caller, ServiceError> {
        let hash = token_hash(token);
        let now = self.now();
        let found = self.store.api_token_user(&hash).await?;
        let Some((record, user)) = found.filter(|(t, u)| t.revoked_at.is_none() && now < t.expires_at && !u.disabled) else {
            return Err(ServiceError::unauthenticated());
        };
        if record.last_used_at.is_none_or(|at| at.until(now) >= TOUCH_EVERY) {
            self.store.touch_api_token(&record.id, now).await?;
        }
        let scopes: BTreeSet<TokenScope> = record.scopes.iter().filter_map(|s| TokenScope::parse(s)).collect();
        let caller = Caller {
            groups: self.store.user_groups(&user.name).await?,
            session: SessionRecord {
                token_hash: hash,
                user: user.name.clone(),
                created_at: record.created_at,
                last_seen_at: now,
                expires_at: record.expires_at,
                mfa_at: None,
                mfa_method: None,
            },
            user,
            token_scopes: Some(scopes),
        };
        let allowed = needed.is_some_and(|n| caller.token_scopes.as_ref().is_some_and(|s| s.contains(&n)));
        if !allowed {
            let what = needed.map_or_else(
                || "no token may do this: sign in".to_owned(),
                |n| format!("this token lacks the {} scope", n.as_str()),
            );
            self.audit_alone(NewEvent::new(
                caller.name(),
                format!("{}token_scope", actions::API_REFUSED_PREFIX),
                &record.id,
                Outcome::Denied,
                json!({"code": "token_scope", "message": what, "needed": needed.map(TokenScope::as_str)}),
            ))
            .await;
            return Err(ServiceError::new(ErrorKind::Forbidden, "token_scope", what));
        }
        Ok(caller)
    }
}
