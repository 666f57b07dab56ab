//! Single sign-on on a machine without a browser: the device authorization grant (RFC 8628),
//! where the provider offers it. The CLI shows a code to type at the provider from any other
//! device and polls; jitgate asks the provider and opens the session when the person is done.

use super::sso::refused;
use super::*;
use crate::error::ServiceError;
use jitgate_api::{SsoDeviceOutcome, SsoDeviceStarted};
use jitgate_auth::new_token;
use jitgate_sso::PendingDevice;
use secrecy::ExposeSecret;
use std::time::Duration;

/// How long one poll waits for the person before answering "pending".
const POLL_WAIT: Duration = Duration::from_secs(20);

impl Sso<'_> {
    pub async fn device_start(&self, provider: &str) -> Result<SsoDeviceStarted, ServiceError> {
        let p = self.provider(provider)?;
        let secret = self.client_secret(&p.name).await?;
        let start = self.oidc.device_start(p, &secret).await.map_err(refused)?;
        let device_id = new_token("jgd");
        self.keep(device_id.expose_secret(), &p.name, &start.pending, start.expires_in)
            .await?;
        Ok(SsoDeviceStarted {
            device_id: device_id.expose_secret().into(),
            user_code: start.user_code,
            verification_uri: start.verification_uri,
            verification_uri_complete: start.verification_uri_complete,
            expires_at: self.now().saturating_add(start.expires_in),
        })
    }

    /// Whether the person finished at the provider (waiting up to 20 s for them): a session
    /// when they have. One poller at a time: the sign-in is taken while it is asked about.
    pub async fn device_poll(&self, device_id: &str) -> Result<SsoDeviceOutcome, ServiceError> {
        let (record, pending): (_, PendingDevice) = self.take(device_id).await?;
        let p = self.provider(&record.provider)?;
        let secret = self.client_secret(&p.name).await?;
        let outcome = self
            .oidc
            .device_poll(p, &secret, &pending, POLL_WAIT, self.now())
            .await
            .map_err(refused);
        let outcome = match outcome {
            Ok(Some(signed_in)) => self.sign_in(p, signed_in, "device").await.map(SsoDeviceOutcome::SignedIn),
            Ok(None) => {
                let left = self.now().until(record.expires_at);
                self.keep(device_id, &p.name, &pending, left).await?;
                Ok(SsoDeviceOutcome::Pending)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            self.audit_refusal(&p.name, "(sso)", e).await;
        }
        outcome
    }
}
