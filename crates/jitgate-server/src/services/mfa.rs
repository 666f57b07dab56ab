//! Second factors: enrolment (TOTP, passkeys, recovery codes), verification, and step-up bound to an action.
//!
//! Every check that consumes something (a TOTP step, a recovery code, a WebAuthn challenge)
//! does so in the same transaction as its audit event and the attempt count, so a code is
//! accepted once even when several instances share the store.

use super::attempts::factor_key;
use super::*;
use crate::core::{new_id, Caller};
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{MfaProof, MfaStatus, PasskeyView, SteppedUp, WebauthnChallenge};
use jitgate_auth::passkeys::StoredPasskey;
use jitgate_auth::recovery::recovery_code_hash;
use jitgate_auth::secret_box::Sealed;
use jitgate_auth::totp;
use jitgate_auth::totp::{TotpAlgorithm, TotpCheck, TotpParams};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::factor::Ceremony;
pub use jitgate_core::factor::Factor;
use jitgate_core::names::Username;
use jitgate_core::policy::mfa_is_fresh;
use jitgate_core::{actions, Timestamp};
use jitgate_store::{ChallengeRecord, PasskeyRecord, TotpRecord, WriteTx};
use serde_json::json;
use std::time::Duration;

/// How long a login ticket or a WebAuthn challenge may wait for its answer.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);

pub(crate) fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(ErrorKind::Internal, "internal", e.to_string())
}

/// An action as people say it, for messages.
fn described(action: &str) -> &str {
    match action {
        actions::REQUEST_CREATE => "requesting this role",
        actions::REVIEW_APPROVE => "approving this request",
        actions::REVIEW_DENY => "denying this request",
        actions::PASSWORD_CHANGE => "changing your password",
        actions::PASSWORD_RESET => "setting someone else's password",
        actions::USER_CREATE_ADMIN => "creating an administrator",
        other => other,
    }
}

pub(crate) fn mfa_required(action: &str) -> ServiceError {
    ServiceError::new(
        ErrorKind::Unauthenticated,
        "mfa_required",
        format!(
            "{} needs a fresh second factor: give a code (--otp) or a passkey assertion, or step up with `jitgate mfa verify`",
            described(action)
        ),
    )
}

fn enrolment_required(action: &str) -> ServiceError {
    ServiceError::new(
        ErrorKind::Forbidden,
        "mfa_enrollment_required",
        format!(
            "{} needs a second factor and you have none: enrol one with `jitgate mfa totp enroll`",
            described(action)
        ),
    )
}

/// Why a proof was refused, before it becomes an answer.
struct Refusal {
    code: &'static str,
    message: String,
    replay: bool,
}

impl Refusal {
    fn wrong(message: impl Into<String>) -> Self {
        Self {
            code: "invalid_mfa",
            message: message.into(),
            replay: false,
        }
    }
}

pub(crate) fn passkey_view(p: &PasskeyRecord) -> PasskeyView {
    PasskeyView {
        id: p.credential_id.clone(),
        name: p.name.clone(),
        created_at: p.created_at,
        last_used_at: p.last_used_at,
    }
}

pub(crate) fn stored(p: &PasskeyRecord) -> StoredPasskey {
    StoredPasskey {
        credential_id: p.credential_id.clone(),
        passkey_json: p.passkey_json.clone(),
    }
}

pub(crate) fn unix_secs(t: Timestamp) -> u64 {
    u64::try_from(t.as_millis().div_euclid(1000)).unwrap_or(0)
}

pub(crate) fn totp_params(r: &TotpRecord) -> Result<TotpParams, ServiceError> {
    Ok(TotpParams {
        algorithm: TotpAlgorithm::parse(&r.algorithm).ok_or_else(|| internal(format!("stored TOTP algorithm '{}'", r.algorithm)))?,
        digits: u8::try_from(r.digits).map_err(internal)?,
        period_secs: u64::from(r.period_secs),
    })
}

fn replayed() -> Refusal {
    Refusal {
        code: "mfa_replayed",
        message: "this code was used already: wait for the next one".into(),
        replay: true,
    }
}

impl Mfa<'_> {
    /// The factors `user` can prove with, as method names.
    pub async fn factors_of(&self, user: &Username) -> Result<Vec<&'static str>, ServiceError> {
        let mut methods = Vec::new();
        if self.store.totp(user).await?.is_some_and(|t| t.confirmed_at.is_some()) {
            methods.push(Factor::Totp.as_str());
        }
        if !self.store.passkeys(user).await?.is_empty() {
            methods.push(Factor::Webauthn.as_str());
        }
        if !methods.is_empty() && self.store.recovery_codes_left(user).await? > 0 {
            methods.push(Factor::RecoveryCode.as_str());
        }
        Ok(methods)
    }

    fn is_fresh(&self, caller: &Caller) -> bool {
        mfa_is_fresh(caller.session.mfa_at, self.now(), self.settings.mfa_freshness)
    }

    pub async fn mfa_status(&self, caller: &Caller) -> Result<MfaStatus, ServiceError> {
        let user = &caller.user.name;
        let totp = self.store.totp(user).await?;
        let passkeys = self.store.passkeys(user).await?;
        Ok(MfaStatus {
            totp: totp.as_ref().is_some_and(|t| t.confirmed_at.is_some()),
            totp_pending: totp.as_ref().is_some_and(|t| t.confirmed_at.is_none()),
            passkeys: passkeys.iter().map(passkey_view).collect(),
            recovery_codes_left: self.store.recovery_codes_left(user).await?,
            fresh_until: self
                .is_fresh(caller)
                .then(|| caller.session.mfa_at.map(|at| at.saturating_add(self.settings.mfa_freshness)))
                .flatten(),
            required: self.settings.mfa_required,
        })
    }

    /// Checks `proof` for the caller and makes their session fresh; the method that counted.
    async fn prove_with_session(&self, caller: &Caller, proof: &MfaProof, action: &str) -> Result<Factor, ServiceError> {
        let factor = self
            .verify_factor(&caller.user.name, proof, action, Some(&caller.session.token_hash))
            .await?;
        Ok(factor)
    }

    /// For a person with a second factor: the proof given (checked, and the session made
    /// fresh), else a session fresh within `mfa.freshness`, else `mfa_required`. For a person
    /// without one: nothing. Returns the method that counted.
    pub(crate) async fn prove_factor_if_enrolled(
        &self,
        caller: &Caller,
        proof: Option<&MfaProof>,
        action: &str,
    ) -> Result<Option<Factor>, ServiceError> {
        if let Some(proof) = proof {
            return self.prove_with_session(caller, proof, action).await.map(Some);
        }
        if self.factors_of(&caller.user.name).await?.is_empty() {
            return Ok(None);
        }
        if self.is_fresh(caller) {
            return Ok(caller.session.mfa_method);
        }
        let err = mfa_required(action);
        self.audit_step_up_refusal(caller, action, "-", err.code).await;
        Err(err)
    }

    /// For changes to a user's factors: a user who has a factor must have proved one lately,
    /// so a stolen session alone cannot swap the factors.
    pub(crate) async fn require_fresh_if_enrolled(&self, caller: &Caller, what: &str) -> Result<(), ServiceError> {
        self.prove_factor_if_enrolled(caller, None, what).await.map(|_| ())
    }

    pub(crate) async fn audit_step_up_refusal(&self, caller: &Caller, action: &str, target: &str, code: &str) {
        self.audit_alone(NewEvent::new(
            caller.name(),
            actions::MFA_STEP_UP,
            target,
            Outcome::Denied,
            json!({"action": action, "code": code}),
        ))
        .await;
    }

    /// Checks one proof for `user`. Whatever it consumes (TOTP step, recovery code, WebAuthn
    /// challenge) is consumed in the same change as the outcome's audit event and attempt
    /// count; on success the attempt count is reset and, when `session` is given, that session
    /// becomes fresh.
    pub async fn verify_factor(
        &self,
        user: &Username,
        proof: &MfaProof,
        purpose: &str,
        session: Option<&str>,
    ) -> Result<Factor, ServiceError> {
        let given = usize::from(proof.otp.is_some()) + usize::from(proof.recovery_code.is_some()) + usize::from(proof.webauthn.is_some());
        if given != 1 {
            return Err(ServiceError::bad_request(
                "invalid_mfa_proof",
                "give exactly one of otp, recovery_code or webauthn",
            ));
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let attempts = match self.attempts().gate_in(&mut *tx, &factor_key(user)).await? {
            Ok(state) => state,
            Err(refusal) => {
                drop(tx);
                return Err(self.attempts().refuse(&factor_key(user), actions::MFA_VERIFY, refusal).await);
            }
        };
        let (method, outcome) = if let Some(code) = &proof.otp {
            (Factor::Totp, self.check_totp(&mut *tx, user, code.expose(), now).await?)
        } else if let Some(code) = &proof.recovery_code {
            let ok = tx.use_recovery_code(user, &recovery_code_hash(code.expose()), now).await?;
            let outcome = if ok {
                Ok(())
            } else {
                Err(Refusal::wrong("that recovery code is not valid or was used already"))
            };
            (Factor::RecoveryCode, outcome)
        } else if let Some(assertion) = &proof.webauthn {
            (
                Factor::Webauthn,
                self.check_assertion(&mut *tx, user, &assertion.challenge_id, &assertion.credential, now)
                    .await?,
            )
        } else {
            unreachable!("exactly one proof was counted above")
        };
        match outcome {
            Ok(()) => {
                tx.clear_attempts(&factor_key(user)).await?;
                if let Some(token_hash) = session {
                    tx.set_session_mfa(token_hash, now, method).await?;
                }
                let mut details = json!({"method": method.as_str(), "purpose": purpose});
                if method == Factor::RecoveryCode {
                    details["codes_left"] = json!(tx.recovery_codes_left(user).await?);
                }
                tx.append_audit(
                    NewEvent::new(user.as_str(), actions::MFA_VERIFY, user.as_str(), Outcome::Success, details),
                    now,
                )
                .await?;
                self.commit(tx).await?;
                Ok(method)
            }
            Err(refusal) => {
                tx.append_audit(
                    NewEvent::new(
                        user.as_str(),
                        actions::MFA_VERIFY,
                        user.as_str(),
                        Outcome::Failure,
                        json!({"method": method.as_str(), "purpose": purpose, "reason": refusal.message}),
                    ),
                    now,
                )
                .await?;
                if refusal.replay {
                    tx.append_audit(
                        NewEvent::new(
                            user.as_str(),
                            actions::MFA_REPLAY,
                            user.as_str(),
                            Outcome::Denied,
                            json!({"method": method.as_str(), "purpose": purpose}),
                        ),
                        now,
                    )
                    .await?;
                }
                self.attempts().count_failure(&mut *tx, &factor_key(user), &attempts).await?;
                self.commit(tx).await?;
                Err(ServiceError::new(ErrorKind::Unauthenticated, refusal.code, refusal.message))
            }
        }
    }

    async fn check_totp(
        &self,
        tx: &mut dyn WriteTx,
        user: &Username,
        code: &str,
        now: Timestamp,
    ) -> Result<Result<(), Refusal>, ServiceError> {
        let Some(record) = tx.totp(user).await?.filter(|t| t.confirmed_at.is_some()) else {
            return Ok(Err(Refusal::wrong("no TOTP factor is enrolled for this account")));
        };
        let seed = self.open_seed(&record)?;
        let last = record.last_step.and_then(|s| u64::try_from(s).ok());
        let checked = totp::check(&seed, totp_params(&record)?, code, unix_secs(now), last).map_err(internal)?;
        Ok(match checked {
            TotpCheck::Accepted { step } => {
                let step = i64::try_from(step).map_err(internal)?;
                if tx.use_totp_step(user, step, None).await? {
                    Ok(())
                } else {
                    Err(replayed())
                }
            }
            TotpCheck::Replayed { .. } => Err(replayed()),
            TotpCheck::Wrong => Err(Refusal::wrong("the code is wrong or too old; check the device's clock")),
        })
    }

    pub(crate) fn open_seed(&self, record: &TotpRecord) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        let sealed = Sealed {
            key_version: record.key_version,
            data: record.sealed_seed.clone(),
        };
        self.secrets
            .open(&sealed, record.user.as_str())
            .map_err(|e| internal(format!("cannot open the TOTP seed: {e}")))
    }

    async fn check_assertion(
        &self,
        tx: &mut dyn WriteTx,
        user: &Username,
        challenge_id: &str,
        credential: &serde_json::Value,
        now: Timestamp,
    ) -> Result<Result<(), Refusal>, ServiceError> {
        let challenge = tx.take_challenge(challenge_id).await?;
        let Some(challenge) = challenge.filter(|c| c.purpose == Ceremony::Webauthn && &c.user == user && c.expires_at > now) else {
            return Ok(Err(Refusal::wrong(
                "the WebAuthn challenge is unknown, used or expired; ask for a new one",
            )));
        };
        let keys: Vec<StoredPasskey> = tx.passkeys(user).await?.iter().map(stored).collect();
        Ok(
            match self.relying_party.finish_authentication(credential, &challenge.state, &keys) {
                Ok(asserted) => {
                    tx.update_passkey(&asserted.credential_id, asserted.updated_passkey_json.as_deref(), now)
                        .await?;
                    Ok(())
                }
                Err(e) => Err(Refusal::wrong(e.to_string())),
            },
        )
    }

    /// Starts a WebAuthn authentication for `user`'s passkeys.
    pub async fn webauthn_challenge(&self, user: &Username) -> Result<WebauthnChallenge, ServiceError> {
        let keys: Vec<StoredPasskey> = self.store.passkeys(user).await?.iter().map(stored).collect();
        if keys.is_empty() {
            return Err(ServiceError::conflict("no_passkey", "no passkey or security key is registered"));
        }
        let (options, state) = self
            .relying_party
            .start_authentication(&keys)
            .map_err(|e| ServiceError::bad_request("webauthn", e.to_string()))?;
        self.keep_challenge(user, Ceremony::Webauthn, state, options).await
    }

    pub(crate) async fn keep_challenge(
        &self,
        user: &Username,
        purpose: Ceremony,
        state: String,
        options: serde_json::Value,
    ) -> Result<WebauthnChallenge, ServiceError> {
        let now = self.now();
        let expires_at = now.saturating_add(CEREMONY_TTL);
        let challenge_id = new_id("wac");
        let mut tx = self.begin().await?;
        tx.insert_challenge(
            &ChallengeRecord {
                id: challenge_id.clone(),
                user: user.clone(),
                purpose,
                state,
                expires_at,
            },
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(WebauthnChallenge {
            challenge_id,
            options,
            expires_at,
        })
    }

    /// The second factor an action needs. `needed`: the role asks for one for this action.
    /// A proof given with the action is checked (and makes the session fresh); otherwise a
    /// fresh session serves. Returns the method to record with the action, if any.
    pub async fn step_up(
        &self,
        caller: &Caller,
        needed: bool,
        proof: Option<&MfaProof>,
        action: &str,
        target: &str,
    ) -> Result<Option<Factor>, ServiceError> {
        if let Some(proof) = proof {
            return self.prove_with_session(caller, proof, action).await.map(Some);
        }
        if !needed && !self.settings.mfa_required {
            return Ok(None);
        }
        let enrolled = !self.factors_of(&caller.user.name).await?.is_empty();
        if self.settings.mfa_required && !enrolled {
            let err = enrolment_required(action);
            self.audit_step_up_refusal(caller, action, target, err.code).await;
            return Err(err);
        }
        if !needed {
            return Ok(None);
        }
        if self.is_fresh(caller) {
            return Ok(caller.session.mfa_method);
        }
        let err = if enrolled {
            mfa_required(action)
        } else {
            enrolment_required(action)
        };
        self.audit_step_up_refusal(caller, action, target, err.code).await;
        Err(err)
    }

    pub async fn step_up_now(&self, caller: &Caller, proof: &MfaProof) -> Result<SteppedUp, ServiceError> {
        let factor = self
            .verify_factor(&caller.user.name, proof, "step_up", Some(&caller.session.token_hash))
            .await?;
        Ok(SteppedUp {
            method: factor.as_str().to_owned(),
            fresh_until: self.now().saturating_add(self.settings.mfa_freshness),
        })
    }
}
