//! Single sign-on, administered: what an ID token maps to, and providers' client secrets.

use super::sso::client_secret_key;
use super::*;
use crate::core::Caller;
use crate::error::ServiceError;
use jitgate_api::{OidcCheckView, OidcGroupView, OidcTestView};
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use secrecy::{ExposeSecret, SecretString};

impl Sso<'_> {
    /// `jitgate admin oidc test`: what a pasted ID token says and maps to.
    pub async fn test_token(&self, caller: &Caller, provider: &str, id_token: &str) -> Result<OidcTestView, ServiceError> {
        self.require_admin(caller, "oidc_test").await?;
        let p = self.provider(provider)?;
        let seen = self
            .oidc
            .inspect(p, id_token, self.now())
            .await
            .map_err(|e| ServiceError::bad_request(e.code, e.reason))?;
        Ok(OidcTestView {
            provider: p.name.clone(),
            checks: seen
                .checks
                .into_iter()
                .map(|c| OidcCheckView {
                    check: c.check,
                    ok: c.ok,
                    detail: c.detail,
                })
                .collect(),
            username: seen.username.as_ref().map(|u| u.as_str().to_owned()).ok(),
            username_problem: seen.username.err(),
            their_groups: seen.their_groups,
            groups: seen
                .groups
                .groups
                .iter()
                .map(|(g, (theirs, rule))| OidcGroupView {
                    group: g.as_str().to_owned(),
                    from: theirs.clone(),
                    rule: rule.clone(),
                })
                .collect(),
            unmapped: seen.groups.unmapped,
            refused: seen.groups.refused.into_iter().map(|(g, why)| format!("{g}: {why}")).collect(),
            amr: seen.context.amr,
            acr: seen.context.acr,
            second_factor: seen.second_factor,
            claims: seen.claims,
        })
    }

    /// Stores (or with `None` removes) a provider's client secret, sealed.
    pub async fn set_client_secret(&self, caller: &Caller, provider: &str, secret: Option<&SecretString>) -> Result<(), ServiceError> {
        self.require_admin(caller, "set_oidc_secret").await?;
        let p = self.provider(provider)?;
        let key = client_secret_key(&p.name);
        if let Some(text) = secret.map(ExposeSecret::expose_secret) {
            if text.is_empty() || text.len() > 4096 || text.contains(['\0', '\n']) {
                return Err(ServiceError::bad_request(
                    "invalid_secret",
                    "a client secret is 1 to 4096 characters on one line",
                ));
            }
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let details = self
            .put_stored_secret(&mut *tx, caller, &key, &key, secret, "client secret")
            .await?;
        tx.append_audit(
            NewEvent::new(caller.name(), actions::OIDC_SECRET, &p.name, Outcome::Success, details),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
