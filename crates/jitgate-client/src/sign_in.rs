//! Single sign-on, API tokens, and the administration of sign-in providers.

use super::{Client, Result};
use jitgate_api::SessionToken;
use reqwest::Method;

impl Client {
    pub async fn create_token(&self, body: &jitgate_api::CreateTokenBody) -> Result<jitgate_api::NewApiToken> {
        self.call(Method::POST, &["tokens"], None, Self::json(body)).await
    }
    pub async fn tokens(&self, all: bool) -> Result<Vec<jitgate_api::ApiTokenView>> {
        let q = [("all", all.to_string())];
        self.call(Method::GET, &["tokens"], Some(&q), None).await
    }
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.call(Method::DELETE, &["tokens", id], None, None).await
    }
    pub async fn sso_providers(&self) -> Result<Vec<jitgate_api::SsoProviderView>> {
        self.call(Method::GET, &["sso", "providers"], None, None).await
    }
    pub async fn sso_start(&self, body: &jitgate_api::SsoStartBody) -> Result<jitgate_api::SsoStarted> {
        self.call(Method::POST, &["sso", "start"], None, Self::json(body)).await
    }
    pub async fn sso_hand_off(&self, code: &str, verifier: &str) -> Result<SessionToken> {
        let body = jitgate_api::SsoHandOffBody {
            code: code.into(),
            verifier: verifier.into(),
        };
        self.call(Method::POST, &["sso", "hand-off"], None, Self::json(&body)).await
    }
    pub async fn sso_device_start(&self, provider: &str) -> Result<jitgate_api::SsoDeviceStarted> {
        let body = jitgate_api::SsoDeviceBody { provider: provider.into() };
        self.call(Method::POST, &["sso", "device"], None, Self::json(&body)).await
    }
    pub async fn sso_device_poll(&self, device_id: &str) -> Result<jitgate_api::SsoDeviceOutcome> {
        let body = jitgate_api::SsoDevicePollBody {
            device_id: device_id.into(),
        };
        self.call(Method::POST, &["sso", "device", "poll"], None, Self::json(&body)).await
    }
    pub async fn oidc_test(&self, provider: &str, id_token: &str) -> Result<jitgate_api::OidcTestView> {
        let body = jitgate_api::OidcTestBody { id_token: id_token.into() };
        self.call(Method::POST, &["admin", "oidc", provider, "test"], None, Self::json(&body))
            .await
    }
    pub async fn set_oidc_secret(&self, provider: &str, secret: &str) -> Result<()> {
        let body = jitgate_api::ChannelSecretBody { secret: secret.into() };
        self.call(Method::PUT, &["admin", "oidc", provider, "secret"], None, Self::json(&body))
            .await
    }
}
