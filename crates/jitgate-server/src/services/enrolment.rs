//! Enrolling and removing second factors: TOTP (with its first recovery codes), new recovery codes, passkeys.

use super::attempts::factor_key;
use super::mfa::{internal, passkey_view, stored, totp_params, unix_secs, Factor};
use super::*;
use crate::core::Caller;
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{FactorAdded, PasskeyFinishBody, RecoveryCodes, SecretText, TotpEnrolment, WebauthnChallenge};
use jitgate_auth::passkeys::StoredPasskey;
use jitgate_auth::recovery::{new_recovery_codes, recovery_code_hash};
use jitgate_auth::totp;
use jitgate_auth::totp::{TotpCheck, TotpParams};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::factor::Ceremony;
use jitgate_core::names::Username;
use jitgate_core::{actions, Timestamp};
use jitgate_store::{PasskeyRecord, TotpRecord, WriteTx};
use serde_json::json;

impl Enrolment<'_> {
    pub async fn totp_start(&self, caller: &Caller) -> Result<TotpEnrolment, ServiceError> {
        let user = &caller.user.name;
        if self.store.totp(user).await?.is_some_and(|t| t.confirmed_at.is_some()) {
            return Err(ServiceError::conflict(
                "totp_already_enrolled",
                "a TOTP factor is enrolled already; remove it first",
            ));
        }
        self.mfa().require_fresh_if_enrolled(caller, "enrolling a TOTP factor").await?;
        let params = TotpParams::default();
        let seed = totp::new_seed();
        let material = totp::enrolment(&seed, params, &self.settings.mfa_issuer, user.as_str()).map_err(internal)?;
        let sealed = self.secrets.seal(&seed, user.as_str());
        let now = self.now();
        let mut tx = self.begin().await?;
        tx.put_totp(&TotpRecord {
            user: user.clone(),
            key_version: sealed.key_version,
            sealed_seed: sealed.data,
            algorithm: params.algorithm.as_str().to_owned(),
            digits: u32::from(params.digits),
            period_secs: u32::try_from(params.period_secs).map_err(internal)?,
            confirmed_at: None,
            last_step: None,
            created_at: now,
        })
        .await?;
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::MFA_TOTP_ENROL_START,
                user.as_str(),
                Outcome::Success,
                json!({}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(TotpEnrolment {
            secret: material.secret_base32.into(),
            otpauth_uri: material.otpauth_uri.into(),
            qr_svg: material.qr_svg,
            algorithm: params.algorithm.as_str().to_owned(),
            digits: u32::from(params.digits),
            period_secs: u32::try_from(params.period_secs).map_err(internal)?,
        })
    }

    /// Activates a waiting TOTP enrolment with its first valid code.
    pub async fn totp_confirm(&self, caller: &Caller, code: &SecretText) -> Result<FactorAdded, ServiceError> {
        let user = &caller.user.name;
        let now = self.now();
        let mut tx = self.begin().await?;
        let attempts = match self.attempts().gate_in(&mut *tx, &factor_key(user)).await? {
            Ok(state) => state,
            Err(refusal) => {
                drop(tx);
                return Err(self.attempts().refuse(&factor_key(user), actions::MFA_TOTP_ENROL, refusal).await);
            }
        };
        let Some(record) = tx.totp(user).await?.filter(|t| t.confirmed_at.is_none()) else {
            return Err(ServiceError::conflict(
                "no_pending_enrolment",
                "no TOTP enrolment is waiting for a code: start one with `jitgate mfa totp enroll`",
            ));
        };
        let seed = self.mfa().open_seed(&record)?;
        let checked = totp::check(&seed, totp_params(&record)?, code.expose(), unix_secs(now), None).map_err(internal)?;
        let TotpCheck::Accepted { step } = checked else {
            tx.append_audit(
                NewEvent::new(
                    user.as_str(),
                    actions::MFA_TOTP_ENROL,
                    user.as_str(),
                    Outcome::Failure,
                    json!({"reason": "wrong code"}),
                ),
                now,
            )
            .await?;
            self.attempts().count_failure(&mut *tx, &factor_key(user), &attempts).await?;
            self.commit(tx).await?;
            return Err(ServiceError::new(
                ErrorKind::Unauthenticated,
                "invalid_mfa",
                "the code does not match; check the device's clock and enter the current code",
            ));
        };
        tx.use_totp_step(user, i64::try_from(step).map_err(internal)?, Some(now)).await?;
        let recovery_codes = self.first_recovery_codes(&mut *tx, user, now).await?;
        tx.set_session_mfa(&caller.session.token_hash, now, Factor::Totp).await?;
        tx.clear_attempts(&factor_key(user)).await?;
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::MFA_TOTP_ENROL,
                user.as_str(),
                Outcome::Success,
                json!({"algorithm": record.algorithm, "digits": record.digits, "period_secs": record.period_secs}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(FactorAdded {
            method: Factor::Totp.as_str().into(),
            recovery_codes,
            passkey: None,
        })
    }

    /// Recovery codes come with the first factor; later factors leave the set alone.
    async fn first_recovery_codes(
        &self,
        tx: &mut dyn WriteTx,
        user: &Username,
        now: Timestamp,
    ) -> Result<Option<Vec<SecretText>>, ServiceError> {
        if tx.recovery_codes_left(user).await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.replace_recovery_codes(tx, user, now).await?))
    }

    async fn replace_recovery_codes(&self, tx: &mut dyn WriteTx, user: &Username, now: Timestamp) -> Result<Vec<SecretText>, ServiceError> {
        let codes = new_recovery_codes();
        let hashes: Vec<String> = codes.iter().map(|c| recovery_code_hash(c)).collect();
        tx.replace_recovery_codes(user, &hashes, now).await?;
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::MFA_RECOVERY_GENERATE,
                user.as_str(),
                Outcome::Success,
                json!({"count": hashes.len()}),
            ),
            now,
        )
        .await?;
        Ok(codes.iter().map(|c| SecretText(c.to_string())).collect())
    }

    pub async fn totp_remove(&self, caller: &Caller) -> Result<(), ServiceError> {
        self.mfa().require_fresh_if_enrolled(caller, "removing the TOTP factor").await?;
        let user = &caller.user.name;
        let mut tx = self.begin().await?;
        if !tx.delete_totp(user).await? {
            return Err(ServiceError::not_found("TOTP factor"));
        }
        tx.append_audit(
            NewEvent::new(user.as_str(), actions::MFA_TOTP_REMOVE, user.as_str(), Outcome::Success, json!({})),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    pub async fn recovery_codes(&self, caller: &Caller) -> Result<RecoveryCodes, ServiceError> {
        let user = &caller.user.name;
        if self.mfa().factors_of(user).await?.is_empty() {
            return Err(ServiceError::conflict(
                "no_factor",
                "recovery codes back up a second factor: enrol one first",
            ));
        }
        self.mfa().require_fresh_if_enrolled(caller, "making new recovery codes").await?;
        let mut tx = self.begin().await?;
        let codes = self.replace_recovery_codes(&mut *tx, user, self.now()).await?;
        self.commit(tx).await?;
        Ok(RecoveryCodes { codes })
    }

    pub async fn passkey_start(&self, caller: &Caller, name: &str) -> Result<WebauthnChallenge, ServiceError> {
        // The rule the API document states (its pattern): a label a person can read back.
        let count = name.chars().count();
        let edges_ok = !name.starts_with(char::is_whitespace) && !name.ends_with(char::is_whitespace);
        if !(1..=64).contains(&count) || !edges_ok || name.chars().any(char::is_control) {
            return Err(ServiceError::bad_request(
                "invalid_name",
                "a passkey name needs 1 to 64 characters, no control characters and no space at either end",
            ));
        }
        self.mfa().require_fresh_if_enrolled(caller, "registering a passkey").await?;
        let user = &caller.user.name;
        let existing: Vec<StoredPasskey> = self.store.passkeys(user).await?.iter().map(stored).collect();
        let (options, state) = self
            .relying_party
            .start_registration(user.as_str(), &caller.user.display_name, &existing)
            .map_err(|e| ServiceError::bad_request("webauthn", e.to_string()))?;
        let state = json!({"name": name, "state": state}).to_string();
        self.mfa().keep_challenge(user, Ceremony::WebauthnRegister, state, options).await
    }

    pub async fn passkey_finish(&self, caller: &Caller, body: &PasskeyFinishBody) -> Result<FactorAdded, ServiceError> {
        let user = &caller.user.name;
        let now = self.now();
        let mut tx = self.begin().await?;
        let challenge = tx
            .take_challenge(&body.challenge_id)
            .await?
            .filter(|c| c.purpose == Ceremony::WebauthnRegister && &c.user == user && c.expires_at > now);
        let Some(challenge) = challenge else {
            return Err(ServiceError::bad_request(
                "invalid_challenge",
                "the registration challenge is unknown, used or expired; start again",
            ));
        };
        let kept: serde_json::Value = serde_json::from_str(&challenge.state).map_err(internal)?;
        let name = kept["name"].as_str().unwrap_or("passkey").to_owned();
        let state = kept["state"].as_str().unwrap_or_default();
        let registered = match self.relying_party.finish_registration(&body.credential, state) {
            Ok(r) => r,
            Err(e) => {
                tx.append_audit(
                    NewEvent::new(
                        user.as_str(),
                        actions::MFA_WEBAUTHN_REGISTER,
                        user.as_str(),
                        Outcome::Failure,
                        json!({"reason": e.to_string()}),
                    ),
                    now,
                )
                .await?;
                self.commit(tx).await?;
                return Err(ServiceError::bad_request("webauthn_refused", e.to_string()));
            }
        };
        let record = PasskeyRecord {
            credential_id: registered.credential_id,
            user: user.clone(),
            name,
            passkey_json: registered.passkey_json,
            created_at: now,
            last_used_at: None,
        };
        match tx.insert_passkey(&record).await {
            Err(jitgate_store::StoreError::Conflict(_)) => {
                return Err(ServiceError::conflict(
                    "credential_in_use",
                    "this authenticator's credential is registered already",
                ));
            }
            other => other?,
        }
        let recovery_codes = self.first_recovery_codes(&mut *tx, user, now).await?;
        tx.set_session_mfa(&caller.session.token_hash, now, Factor::Webauthn).await?;
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::MFA_WEBAUTHN_REGISTER,
                user.as_str(),
                Outcome::Success,
                json!({"credential": record.credential_id, "name": record.name}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(FactorAdded {
            method: Factor::Webauthn.as_str().into(),
            recovery_codes,
            passkey: Some(passkey_view(&record)),
        })
    }

    pub async fn passkey_remove(&self, caller: &Caller, credential_id: &str) -> Result<(), ServiceError> {
        self.mfa().require_fresh_if_enrolled(caller, "removing a passkey").await?;
        let user = &caller.user.name;
        let mut tx = self.begin().await?;
        if !tx.delete_passkey(user, credential_id).await? {
            return Err(ServiceError::not_found("passkey"));
        }
        tx.append_audit(
            NewEvent::new(
                user.as_str(),
                actions::MFA_WEBAUTHN_REMOVE,
                user.as_str(),
                Outcome::Success,
                json!({"credential": credential_id}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
