//! People and groups, administered: accounts, passwords, membership, unlocking.

use super::attempts::factor_key;
use super::identity::password_error;
use super::*;
use crate::core::{Caller, GrantEventKind};
use crate::error::{ErrorKind, ServiceError};
use jitgate_api::{CreateUserBody, GroupView, PasswordBody, SecretText, UserView};
use jitgate_auth::check_password_rules;
use jitgate_core::actions;
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::{GroupName, Username};
use jitgate_store::{GrantFilter, Source, UserRecord};
use secrecy::SecretString;
use serde_json::json;

impl Users<'_> {
    pub async fn create(&self, caller: &Caller, body: CreateUserBody) -> Result<UserView, ServiceError> {
        self.require_admin(caller, "create_user").await?;
        if body.admin {
            // A new administrator is a way to every account: a stolen session alone must not
            // make one when its owner has a factor to prove.
            self.mfa()
                .prove_factor_if_enrolled(caller, None, actions::USER_CREATE_ADMIN)
                .await?;
        }
        let hash = match body.password {
            Some(p) => {
                let p = SecretString::from(p.0);
                check_password_rules(&p).map_err(password_error)?;
                Some(self.hash_new_password(p).await?)
            }
            None => None,
        };
        let now = self.now();
        let user = UserRecord {
            name: body.username,
            display_name: body.display_name,
            password_hash: hash,
            is_admin: body.admin,
            disabled: false,
            created_at: now,
        };
        let mut tx = self.begin().await?;
        tx.insert_user(&user).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::USER_CREATE,
                user.name.as_str(),
                Outcome::Success,
                json!({"admin": user.is_admin}),
            ),
            now,
        )
        .await?;
        self.commit(tx).await?;
        self.view(user).await
    }

    async fn view(&self, u: UserRecord) -> Result<UserView, ServiceError> {
        let groups = self.store.user_groups(&u.name).await?.into_iter().collect();
        Ok(UserView {
            has_password: u.password_hash.is_some(),
            username: u.name,
            display_name: u.display_name,
            is_admin: u.is_admin,
            disabled: u.disabled,
            groups,
            created_at: u.created_at,
        })
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<UserView>, ServiceError> {
        self.require_admin(caller, "list_users").await?;
        let mut out = Vec::new();
        for u in self.store.users().await? {
            out.push(self.view(u).await?);
        }
        Ok(out)
    }

    /// Disabling a person ends their sessions and revokes their live grants at once.
    pub async fn set_disabled(&self, caller: &Caller, name: &Username, disabled: bool) -> Result<UserView, ServiceError> {
        self.require_admin(caller, "set_user_disabled").await?;
        if disabled && name == &caller.user.name {
            return Err(ServiceError::bad_request(
                "cannot_disable_self",
                "you cannot disable your own account",
            ));
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut user = tx.user(name).await?.ok_or_else(|| ServiceError::not_found("user"))?;
        user.disabled = disabled;
        tx.update_user(&user).await?;
        let action = if disabled { actions::USER_DISABLE } else { actions::USER_ENABLE };
        tx.append_audit(
            NewEvent::new(caller.name(), action, name.as_str(), Outcome::Success, json!({})),
            now,
        )
        .await?;
        let mut revoked = Vec::new();
        if disabled {
            tx.delete_sessions_of(name).await?;
            // As their sessions: for good, not back when they are enabled again.
            tx.revoke_api_tokens_of(name, now).await?;
            let live = self
                .store
                .grants(&GrantFilter {
                    user: Some(name.clone()),
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            for g in live.into_iter().filter(|g| g.status.is_live()) {
                let Some(mut g) = tx.grant(&g.id).await? else { continue };
                // A grant that ended meanwhile is left as it is.
                if g.revoke(Some(caller.user.name.clone()), "user disabled", now).is_err() {
                    continue;
                }
                tx.update_grant(&g).await?;
                tx.append_audit(
                    NewEvent::new(
                        caller.name(),
                        actions::GRANT_REVOKE,
                        g.id.as_str(),
                        Outcome::Success,
                        json!({"reason": "user disabled", "user": name}),
                    ),
                    now,
                )
                .await?;
                // The grant's sessions end on every instance, as for any revocation.
                tx.send_session_kill(&crate::live_sessions::grant_ended(&g.id, crate::live_sessions::GRANT_REVOKED))
                    .await?;
                revoked.push(g);
            }
        }
        self.commit(tx).await?;
        for g in &revoked {
            self.publish(GrantEventKind::Revoked, g);
        }
        self.view(user).await
    }

    /// Sets a password. An administrator setting someone else's needs nothing more. Changing
    /// one's own needs the current password and, where a second factor is enrolled, a proof of
    /// it (given here, or proved by the session within `mfa.freshness`): a stolen session
    /// alone must not become the account. Every other session of the person ends.
    pub async fn set_password(&self, caller: &Caller, name: &Username, body: PasswordBody) -> Result<(), ServiceError> {
        let own = name == &caller.user.name;
        if !caller.user.is_admin && !own {
            return Err(self
                .forbid(caller, "set_password", "only an administrator may set another person's password")
                .await);
        }
        let password = SecretString::from(body.password.0);
        check_password_rules(&password).map_err(password_error)?;
        let mut method = None;
        if !own {
            // Resetting someone else's password hands over their account: the same fresh
            // factor as for one's own, for an administrator who has one.
            method = self
                .mfa()
                .prove_factor_if_enrolled(caller, body.mfa.as_ref(), actions::PASSWORD_RESET)
                .await?;
        }
        if own {
            self.prove_current_password(caller, body.current_password).await?;
            method = self
                .mfa()
                .prove_factor_if_enrolled(caller, body.mfa.as_ref(), actions::PASSWORD_CHANGE)
                .await?;
        }
        let hash = self.hash_new_password(password).await?;
        let mut tx = self.begin().await?;
        let mut user = tx.user(name).await?.ok_or_else(|| ServiceError::not_found("user"))?;
        user.password_hash = Some(hash);
        tx.update_user(&user).await?;
        let ended = if own {
            tx.delete_other_sessions_of(name, &caller.session.token_hash).await?
        } else {
            tx.delete_sessions_of(name).await?
        };
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::USER_PASSWORD,
                name.as_str(),
                Outcome::Success,
                json!({"own": own, "sessions_ended": ended, "mfa": method}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Checks the password a person gives to change their own, under the same attempt limit
    /// and hashing bound as a login (a wrong one counts as a failed login).
    async fn prove_current_password(&self, caller: &Caller, current: Option<SecretText>) -> Result<(), ServiceError> {
        let Some(current) = current else {
            self.mfa()
                .audit_step_up_refusal(caller, actions::PASSWORD_CHANGE, caller.name(), "current_password_required")
                .await;
            return Err(ServiceError::bad_request(
                "current_password_required",
                "changing your own password needs your current password (`jitgate password` asks for it)",
            ));
        };
        let hashing = self.limits.hashing.admit()?;
        let user = caller.user.name.as_str();
        let charged = self.attempts().charge(user, actions::PASSWORD_CHANGE).await?;
        let stored = self.store.user(&caller.user.name).await?.and_then(|u| u.password_hash);
        let given = SecretString::from(current.0);
        let ok = hashing.verify(stored, given).await?;
        if ok {
            return self.attempts().refund(user, &charged).await;
        }
        let event = NewEvent::new(
            user,
            actions::PASSWORD_CHANGE,
            user,
            Outcome::Failure,
            json!({"reason": "wrong current password"}),
        );
        self.attempts().record_charged_failure(user, event, &charged).await;
        Err(ServiceError::new(
            ErrorKind::Unauthenticated,
            "invalid_credentials",
            "the current password is wrong",
        ))
    }

    /// Argon2 for a new password, under the same bound as logins and off the async workers.
    pub(crate) async fn hash_new_password(&self, password: SecretString) -> Result<String, ServiceError> {
        self.limits.hashing.admit()?.hash(password).await
    }

    pub async fn groups(&self, caller: &Caller) -> Result<Vec<GroupView>, ServiceError> {
        self.require_admin(caller, "list_groups").await?;
        Ok(self
            .store
            .groups()
            .await?
            .into_iter()
            .map(|(name, members)| GroupView { name, members })
            .collect())
    }

    pub async fn set_membership(
        &self,
        caller: &Caller,
        group: &GroupName,
        user: &Username,
        member: bool,
    ) -> Result<GroupView, ServiceError> {
        self.require_admin(caller, "set_membership").await?;
        let mut tx = self.begin().await?;
        if member && tx.user(user).await?.is_none() {
            return Err(ServiceError::not_found("user"));
        }
        let changed = tx.set_member(group, user, member, Source::Api).await?;
        if !member && !changed {
            return Err(ServiceError::not_found("membership"));
        }
        let action = if member {
            actions::GROUP_MEMBER_ADD
        } else {
            actions::GROUP_MEMBER_REMOVE
        };
        tx.append_audit(
            NewEvent::new(caller.name(), action, group.as_str(), Outcome::Success, json!({"user": user})),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        let members = self.store.groups().await?.remove(group).unwrap_or_default();
        Ok(GroupView {
            name: group.clone(),
            members,
        })
    }

    pub async fn unlock(&self, caller: &Caller, name: &Username) -> Result<(), ServiceError> {
        self.require_admin(caller, "unlock_user").await?;
        let mut tx = self.begin().await?;
        let was_limited = tx.clear_attempts(name.as_str()).await? | tx.clear_attempts(&factor_key(name)).await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::AUTH_UNLOCK,
                name.as_str(),
                Outcome::Success,
                json!({"was_limited": was_limited}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
