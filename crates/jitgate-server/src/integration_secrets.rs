//! Secrets the server keeps for what it talks to (notification channels' keys and tokens,
//! sign-in providers' client secrets): sealed with the server's key ring in the store
//! (`channel_secrets`, keyed by name), each sealed to a context of its own so that a sealed
//! value opens only as the secret it was stored as.

use crate::core::{Caller, Core};
use crate::error::ServiceError;
use jitgate_store::{ChannelSecretRecord, WriteTx};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

impl Core {
    /// The secret stored under `key`, unsealed; `None` when none was set.
    pub(crate) async fn stored_secret(&self, key: &str, context: &str) -> Result<Option<SecretString>, ServiceError> {
        let Some(record) = self.store.channel_secret(key).await? else {
            return Ok(None);
        };
        let sealed = jitgate_auth::secret_box::Sealed {
            key_version: record.key_version,
            data: record.sealed,
        };
        let plain = self
            .secrets
            .open(&sealed, context)
            .map_err(|e| ServiceError::internal(format!("cannot unseal the secret {key}: {e}")))?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| ServiceError::internal(format!("the secret {key} is not text")))?;
        Ok(Some(SecretString::from(text)))
    }

    /// Stores `secret` under `key` sealed to `context`, or with `None` removes it (`missing`
    /// names what is not there to remove). The details for the change's audit event.
    pub(crate) async fn put_stored_secret(
        &self,
        tx: &mut dyn WriteTx,
        caller: &Caller,
        key: &str,
        context: &str,
        secret: Option<&SecretString>,
        missing: &str,
    ) -> Result<serde_json::Value, ServiceError> {
        match secret {
            Some(s) => {
                let sealed = self.secrets.seal(s.expose_secret().as_bytes(), context);
                tx.put_channel_secret(&ChannelSecretRecord {
                    channel: key.to_owned(),
                    key_version: sealed.key_version,
                    sealed: sealed.data,
                    updated_at: self.now(),
                    updated_by: caller.user.name.clone(),
                })
                .await?;
                Ok(json!({"stored": true, "key_version": sealed.key_version}))
            }
            None if tx.delete_channel_secret(key).await? => Ok(json!({"stored": false})),
            None => Err(ServiceError::not_found(missing)),
        }
    }
}
