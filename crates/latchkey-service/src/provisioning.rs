//! The platform's identity provider (SPEC 9): provisioning credentials, which SCIM clients
//! authenticate with, and the people they create, change and delete. Every change goes
//! through the same service functions as the CLI's and the API's (`users.rs`, `orgs.rs`).

use latchkey_core::{Email, Prefix, TokenSecret, UserId};
use latchkey_store::{ProvisioningCredential, User, UserChange};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::users::UserSpec;
use crate::{Caller, Service};

/// The prefix of provisioning secrets: recognisable by scanners like every Latchkey secret.
pub const PROVISIONING_PREFIX: &str = "lkscim";

/// A person as the identity provider describes them (SCIM's User, in Latchkey's terms).
#[derive(Debug, Clone)]
pub struct ProvisionedUser {
    pub email: String,
    pub external_id: Option<String>,
    /// The attributes kept for the provider only (JSON).
    pub profile: Option<String>,
    pub active: bool,
    pub password: Option<SecretString>,
}

fn unauthenticated() -> ServiceError {
    ServiceError::client(
        ErrorCode::Unauthenticated,
        "a valid provisioning credential is required (Authorization: Bearer)",
    )
}

impl Service {
    /// `latchkey provisioning create`: the secret is returned once and stored as its SHA-256.
    pub async fn create_provisioning_credential(
        &self,
        caller: &Caller,
        name: &str,
    ) -> ServiceResult<(ProvisioningCredential, TokenSecret)> {
        let name = latchkey_core::TokenName::parse(name)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let prefix = Prefix::parse(PROVISIONING_PREFIX)
            .map_err(|_| ServiceError::Internal("provisioning prefix".into()))?;
        let secret = TokenSecret::generate(&prefix, random_bytes()?);
        let credential = ProvisioningCredential {
            id: latchkey_core::ids::ProvisioningId::from_random(random_bytes()?).to_string(),
            name: name.as_str().to_owned(),
            created_at: self.now(),
            revoked_at: None,
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "provisioning.created",
                subject_kind: "provisioning",
                subject_id: &credential.id,
                user: None,
                org: None,
                outcome: "success",
                details: Some(json!({ "name": credential.name })),
            },
        )?;
        self.store
            .create_provisioning_credential(&credential, &secret.hash(), &event)
            .await?;
        Ok((credential, secret))
    }

    pub async fn list_provisioning_credentials(
        &self,
    ) -> ServiceResult<Vec<ProvisioningCredential>> {
        Ok(self.store.list_provisioning_credentials().await?)
    }

    /// Refused from the very next request (credentials are looked up on every request).
    pub async fn revoke_provisioning_credential(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "provisioning.revoked",
                subject_kind: "provisioning",
                subject_id: id,
                user: None,
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        if self
            .store
            .revoke_provisioning_credential(id, self.now(), &event)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::not_found("provisioning credential"))
        }
    }

    /// The caller a SCIM request acts as, from its bearer secret. Wrong secrets count against
    /// the caller's address like refused tokens (the same limiter as `/v1/me`).
    pub async fn authenticate_provisioning(
        &self,
        secret: &str,
        ip: std::net::IpAddr,
    ) -> ServiceResult<Caller> {
        let now = self.now();
        self.limits.check_token_ip(ip, now)?;
        let credential = match latchkey_core::token_string::ParsedToken::parse(secret) {
            Ok(parsed) if parsed.prefix() == PROVISIONING_PREFIX => {
                // Found by the SHA-256 of the secret: the database compares hashes, never
                // secrets.
                self.store
                    .find_provisioning_credential(&parsed.hash())
                    .await?
            }
            _ => None,
        };
        match credential {
            Some(credential) => Ok(Caller {
                actor: latchkey_store::Actor::Provisioning(credential.id),
                ip: Some(ip),
            }),
            None => {
                self.limits.bad_token(ip, now);
                Err(unauthenticated())
            }
        }
    }

    /// A live (not deleted) user by id.
    pub async fn find_live_user(&self, id: &str) -> ServiceResult<User> {
        let id: UserId = id.parse().map_err(|_| ServiceError::not_found("user"))?;
        match self.store.find_user(&id).await? {
            Some(user) if user.deleted_at.is_none() => Ok(user),
            _ => Err(ServiceError::not_found("user")),
        }
    }

    pub async fn find_user_by_external_id(&self, external_id: &str) -> ServiceResult<Option<User>> {
        Ok(self.store.find_user_by_external_id(external_id).await?)
    }

    /// A page of live users, oldest first, and how many there are.
    pub async fn list_users(&self, offset: u64, limit: u32) -> ServiceResult<(Vec<User>, u64)> {
        let total = self.store.count_users().await?;
        let users = self.store.list_users(offset, limit).await?;
        Ok((users, total))
    }

    /// SCIM's POST: a new person, without a password unless the provider sends one.
    pub async fn provision_user(
        &self,
        caller: &Caller,
        person: &ProvisionedUser,
    ) -> ServiceResult<User> {
        self.add_user(
            caller,
            UserSpec {
                email: &person.email,
                password: person.password.as_ref(),
                is_operator: false,
                external_id: person.external_id.clone(),
                profile: person.profile.clone(),
                disabled: !person.active,
            },
        )
        .await
    }

    /// SCIM's PUT and PATCH: the person as the provider now describes them. Deactivating
    /// ends every session and refuses every token of the user from the very next request.
    pub async fn reprovision_user(
        &self,
        caller: &Caller,
        user: &User,
        person: &ProvisionedUser,
    ) -> ServiceResult<User> {
        let email =
            Email::parse(&person.email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let password_hash = match &person.password {
            Some(password) => {
                crate::crypto::check_password_rules(password)?;
                Some(self.hasher.hash(password).await?)
            }
            None => None,
        };
        let change = UserChange {
            disabled: Some(!person.active),
            email: (email != user.email).then_some(email),
            external_id: Some(person.external_id.clone()),
            profile: Some(person.profile.clone()),
            password_hash,
            ..UserChange::default()
        };
        self.change_user(caller, user, change, "user.updated").await
    }

    /// SCIM's DELETE: the person is disabled, leaves every organisation, loses every session,
    /// and their email is freed for someone new; the row stays for the audit log.
    pub async fn delete_user(&self, caller: &Caller, user: &User) -> ServiceResult<()> {
        let freed = Email::parse(&format!(
            "{}@deleted.invalid",
            user.id.as_str().to_lowercase()
        ))
        .map_err(|e| ServiceError::Internal(format!("freed email: {e}")))?;
        let change = UserChange {
            disabled: Some(true),
            email: Some(freed),
            external_id: Some(None),
            deleted_at: Some(self.now()),
            ..UserChange::default()
        };
        self.change_user(caller, user, change, "user.deleted")
            .await
            .map(|_| ())
    }
}
