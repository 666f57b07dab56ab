//! Resources: what can be requested, their upstream passwords, and the check that the gateway can reach them.

use super::*;
use crate::core::Caller;
use crate::error::ServiceError;
use crate::upstream::{credential_owner, login_check, Login, MAX_PASSWORD};
use jitgate_api::{ResourceCheck, ResourceView, RoleCheck};
use jitgate_core::audit::{NewEvent, Outcome};
use jitgate_core::names::{ResourceName, RoleName};
use jitgate_core::policy::{AccessMode, Resource};
use jitgate_core::{actions, DomainError};
use jitgate_store::{ResourceCredentialRecord, Source};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

impl Resources<'_> {
    /// A resource by name; unknown names and names that do not parse are the same refusal.
    pub async fn named(&self, name: &str) -> Result<Resource, ServiceError> {
        let unknown = || ServiceError::from(DomainError::UnknownResource(name.to_owned()));
        let parsed = ResourceName::parse(name).map_err(|_| unknown())?;
        self.store.resource(&parsed).await?.ok_or_else(unknown)
    }

    /// The members of each of `groups`: the catalogue names the people who may approve a role
    /// (its stages' groups) to those who may ask for it, so nobody has to guess whom to call.
    pub async fn members_of(
        &self,
        groups: &std::collections::BTreeSet<jitgate_core::names::GroupName>,
    ) -> Result<std::collections::BTreeMap<jitgate_core::names::GroupName, Vec<jitgate_core::names::Username>>, ServiceError> {
        let mut all = self.store.groups().await?;
        all.retain(|g, _| groups.contains(g));
        Ok(all)
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<ResourceView>, ServiceError> {
        let resources = self.store.resources().await?;
        let from_config = |r: &Resource| self.settings.resources.iter().any(|c| c.name == r.name);
        let mut out = Vec::with_capacity(resources.len());
        for resource in resources {
            let upstream_credential = match &resource.postgres {
                Some(target) if caller.user.is_admin => {
                    let sealed = self.store.resource_credential(&resource.name, None).await?.is_some();
                    Some(crate::upstream::credential_source(target, sealed).to_owned())
                }
                _ => None,
            };
            out.push(ResourceView {
                managed_by: if from_config(&resource) { "config" } else { "api" }.into(),
                resource,
                upstream_credential,
            });
        }
        Ok(out)
    }

    pub async fn put(&self, caller: &Caller, resource: Resource) -> Result<ResourceView, ServiceError> {
        self.require_admin(caller, "put_resource").await?;
        if let Some(problem) = resource.problems().into_iter().next() {
            return Err(ServiceError::bad_request("invalid_resource", problem));
        }
        let mut tx = self.begin().await?;
        if tx.resources_from(Source::Config).await?.contains(&resource.name) {
            return Err(ServiceError::conflict(
                "managed_by_config",
                format!("resource '{}' is declared in the config file; change it there", resource.name),
            ));
        }
        tx.put_resource(&resource, Source::Api, self.now()).await?;
        let details = serde_json::to_value(&resource).unwrap_or_default();
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::RESOURCE_PUT,
                resource.name.as_str(),
                Outcome::Success,
                details,
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(ResourceView {
            resource,
            managed_by: "api".into(),
            upstream_credential: None,
        })
    }

    pub async fn delete(&self, caller: &Caller, name: &ResourceName) -> Result<(), ServiceError> {
        self.require_admin(caller, "delete_resource").await?;
        let mut tx = self.begin().await?;
        if tx.resources_from(Source::Config).await?.contains(name) {
            return Err(ServiceError::conflict(
                "managed_by_config",
                format!("resource '{name}' is declared in the config file; remove it there"),
            ));
        }
        if !tx.delete_resource(name).await? {
            return Err(ServiceError::not_found("resource"));
        }
        // Its sealed upstream password goes with it: a new resource of the same name must not
        // inherit a login it was never given.
        tx.delete_resource_credentials(name).await?;
        tx.append_audit(
            NewEvent::new(caller.name(), actions::RESOURCE_DELETE, name.as_str(), Outcome::Success, json!({})),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// A role's login must be its own for a password of its own: a role without `login` uses
    /// the service login, whose password is set without a role.
    fn credential_role(resource: &Resource, role: Option<&str>) -> Result<Option<RoleName>, ServiceError> {
        let Some(role) = role else { return Ok(None) };
        let name: RoleName = role.parse().map_err(|_| ServiceError::not_found("role"))?;
        let policy = resource.roles.get(&name).ok_or_else(|| ServiceError::not_found("role"))?;
        if policy.login.is_none() {
            return Err(ServiceError::bad_request(
                "no_role_login",
                format!(
                    "role '{name}' of '{}' has no upstream login of its own (login = \"...\"); its sessions use the service login, whose password is set without --role",
                    resource.name
                ),
            ));
        }
        Ok(Some(name))
    }

    pub async fn set_credential(
        &self,
        caller: &Caller,
        name: &ResourceName,
        role: Option<&str>,
        password: &SecretString,
    ) -> Result<(), ServiceError> {
        self.require_admin(caller, "set_resource_credential").await?;
        let text = password.expose_secret();
        if text.is_empty() || text.chars().count() > MAX_PASSWORD || text.contains('\0') {
            return Err(ServiceError::bad_request(
                "invalid_password",
                format!("the upstream password must be 1 to {MAX_PASSWORD} characters without NUL"),
            ));
        }
        let resource = self
            .store
            .resource(name)
            .await?
            .ok_or_else(|| ServiceError::not_found("resource"))?;
        if resource.postgres.is_none() {
            return Err(ServiceError::conflict(
                "no_upstream",
                format!("resource '{name}' has no postgres target to log in to"),
            ));
        }
        let role = Self::credential_role(&resource, role)?;
        let sealed = self.secrets.seal(text.as_bytes(), &credential_owner(name, role.as_ref()));
        let mut tx = self.begin().await?;
        tx.put_resource_credential(&ResourceCredentialRecord {
            resource: name.clone(),
            role: role.clone(),
            key_version: sealed.key_version,
            sealed_password: sealed.data,
            updated_at: self.now(),
            updated_by: caller.user.name.clone(),
        })
        .await?;
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::RESOURCE_CREDENTIAL_SET,
                name.as_str(),
                Outcome::Success,
                json!({"key_version": sealed.key_version, "role": role}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    pub async fn clear_credential(&self, caller: &Caller, name: &ResourceName, role: Option<&str>) -> Result<(), ServiceError> {
        self.require_admin(caller, "clear_resource_credential").await?;
        let role = match role {
            None => None,
            Some(r) => {
                let resource = self
                    .store
                    .resource(name)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("resource"))?;
                Self::credential_role(&resource, Some(r))?
            }
        };
        let mut tx = self.begin().await?;
        if !tx.delete_resource_credential(name, role.as_ref()).await? {
            return Err(ServiceError::not_found("stored credential"));
        }
        tx.append_audit(
            NewEvent::new(
                caller.name(),
                actions::RESOURCE_CREDENTIAL_CLEAR,
                name.as_str(),
                Outcome::Success,
                json!({"role": role}),
            ),
            self.now(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// What each role of a resource gives a session upstream, read from the upstream itself.
    pub async fn check(&self, caller: &Caller, name: &ResourceName) -> Result<ResourceCheck, ServiceError> {
        self.require_admin(caller, "check_resource").await?;
        let resource = self
            .store
            .resource(name)
            .await?
            .ok_or_else(|| ServiceError::not_found("resource"))?;
        let Some(pg) = resource.postgres.as_ref() else {
            return Err(ServiceError::conflict(
                "no_upstream",
                format!("resource '{name}' has no postgres target to check"),
            ));
        };
        let service = match self.upstream_target(&resource, Login::Service, "jitgate-check").await {
            Ok(t) => jitgate_proxy::upstream::inspect(&t).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let service = login_check(pg.user.clone(), service);
        let mut roles = Vec::new();
        for (role, policy) in &resource.roles {
            let (access, login) = match policy.access {
                AccessMode::Proxy => {
                    let t = self.upstream_target(&resource, Login::Role(role), "jitgate-check").await;
                    let profile = match t {
                        Ok(t) => jitgate_proxy::upstream::inspect(&t).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    (
                        "proxy",
                        login_check(policy.login.clone().unwrap_or_else(|| pg.user.clone()), profile),
                    )
                }
                AccessMode::Ephemeral => {
                    let t = self.upstream_target(&resource, Login::Service, "jitgate-check").await;
                    let profile = match t {
                        Ok(t) => jitgate_proxy::upstream::inspect_members_of(&t, &policy.db_roles)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    let name = format!("jit_<user>_<grant> (member of {})", policy.db_roles.join(", "));
                    ("ephemeral", login_check(name, profile))
                }
            };
            let sessions_allowed = login.reachable && (login.privileges.is_empty() || policy.allow_privileged_login);
            roles.push(RoleCheck {
                role: role.to_string(),
                access: access.to_owned(),
                login,
                allow_privileged_login: policy.allow_privileged_login,
                sessions_allowed,
            });
        }
        Ok(ResourceCheck {
            resource: name.to_string(),
            service,
            roles,
        })
    }
}
