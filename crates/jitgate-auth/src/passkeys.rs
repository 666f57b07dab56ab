//! WebAuthn passkeys and security keys through webauthn-rs. Ceremony state is handed back as
//! JSON for the caller to keep in the store (single use, short-lived), so that the instance
//! that finishes a ceremony need not be the one that started it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use url::Url;
use uuid::Uuid;
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential};
use webauthn_rs::{Webauthn, WebauthnBuilder};

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("WebAuthn relying party: {0}")]
    Setup(String),
    #[error("the credential is not valid JSON for this ceremony: {0}")]
    Malformed(String),
    #[error("the authenticator's answer was refused: {0}")]
    Refused(String),
    #[error("stored WebAuthn data is damaged: {0}")]
    Corrupt(String),
}

/// A registered credential as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    /// base64url of the credential id: unique across all users.
    pub credential_id: String,
    /// webauthn-rs's `Passkey` as JSON: public key, counter, flags (nothing secret).
    pub passkey_json: String,
}

/// What a finished authentication tells: which credential, and its new stored form when its
/// counter or flags moved.
#[derive(Debug, Clone)]
pub struct Asserted {
    pub credential_id: String,
    pub updated_passkey_json: Option<String>,
}

pub struct RelyingParty {
    webauthn: Webauthn,
    origin: Url,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty").field("origin", &self.origin.as_str()).finish()
    }
}

/// A stable WebAuthn user handle per account name: the name is the account's identity here.
fn user_handle(username: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6a69_7467_6174_652d_7573_6572_2d69_6400);
    Uuid::new_v5(&NAMESPACE, username.as_bytes())
}

fn credential_id_text(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

impl RelyingParty {
    pub fn new(rp_id: &str, origin: &str) -> Result<Self, PasskeyError> {
        let origin = Url::parse(origin).map_err(|e| PasskeyError::Setup(format!("origin '{origin}': {e}")))?;
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name("jitgate").build())
            .map_err(|e| PasskeyError::Setup(format!("rp_id '{rp_id}' with origin '{origin}': {e}")))?;
        Ok(Self { webauthn, origin })
    }

    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// Starts a registration; the user's existing credentials are excluded so one
    /// authenticator is not registered twice. Returns (options for the client, state to keep).
    pub fn start_registration(
        &self,
        username: &str,
        display_name: &str,
        existing: &[StoredPasskey],
    ) -> Result<(Value, String), PasskeyError> {
        let exclude = existing
            .iter()
            .map(|p| parse_passkey(&p.passkey_json).map(|k| k.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let display = if display_name.is_empty() { username } else { display_name };
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_handle(username), username, display, Some(exclude))
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok((to_value(&options)?, to_json(&state)?))
    }

    pub fn finish_registration(&self, credential: &Value, state_json: &str) -> Result<StoredPasskey, PasskeyError> {
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential.clone()).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let state: PasskeyRegistration = serde_json::from_str(state_json).map_err(|e| PasskeyError::Corrupt(e.to_string()))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok(StoredPasskey {
            credential_id: credential_id_text(passkey.cred_id().as_ref()),
            passkey_json: to_json(&passkey)?,
        })
    }

    pub fn start_authentication(&self, credentials: &[StoredPasskey]) -> Result<(Value, String), PasskeyError> {
        let keys = credentials
            .iter()
            .map(|p| parse_passkey(&p.passkey_json))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        Ok((to_value(&options)?, to_json(&state)?))
    }

    /// Checks an assertion against the kept state (challenge, allowed credentials) and the
    /// stored credentials; the signature counter must move forward where the authenticator has
    /// one.
    pub fn finish_authentication(
        &self,
        assertion: &Value,
        state_json: &str,
        credentials: &[StoredPasskey],
    ) -> Result<Asserted, PasskeyError> {
        let assertion: PublicKeyCredential =
            serde_json::from_value(assertion.clone()).map_err(|e| PasskeyError::Malformed(e.to_string()))?;
        let state: PasskeyAuthentication = serde_json::from_str(state_json).map_err(|e| PasskeyError::Corrupt(e.to_string()))?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&assertion, &state)
            .map_err(|e| PasskeyError::Refused(e.to_string()))?;
        let credential_id = credential_id_text(result.cred_id().as_ref());
        let stored = credentials
            .iter()
            .find(|c| c.credential_id == credential_id)
            .ok_or_else(|| PasskeyError::Refused("the credential is not registered to this user".into()))?;
        let mut passkey = parse_passkey(&stored.passkey_json)?;
        let updated_passkey_json = match passkey.update_credential(&result) {
            Some(true) => Some(to_json(&passkey)?),
            _ => None,
        };
        Ok(Asserted {
            credential_id,
            updated_passkey_json,
        })
    }
}

fn parse_passkey(json: &str) -> Result<Passkey, PasskeyError> {
    serde_json::from_str(json).map_err(|e| PasskeyError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(v).map_err(|e| PasskeyError::Corrupt(e.to_string()))
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, PasskeyError> {
    serde_json::to_value(v).map_err(|e| PasskeyError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_are_stable_and_distinct() {
        assert_eq!(user_handle("alice"), user_handle("alice"));
        assert_ne!(user_handle("alice"), user_handle("bob"));
    }

    #[test]
    fn a_bad_origin_is_refused_at_setup() {
        assert!(RelyingParty::new("localhost", "not a url").is_err());
        assert!(RelyingParty::new("example.com", "https://other.org").is_err());
        assert!(RelyingParty::new("localhost", "http://localhost:8080").is_ok());
    }
}
