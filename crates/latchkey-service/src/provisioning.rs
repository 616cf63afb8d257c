//! The platform's identity provider (SPEC 9): provisioning credentials, which SCIM clients
//! authenticate with, and the people and organisations they create, change and delete. Every
//! change goes through the same service functions as the CLI's and the API's (`users.rs`,
//! `orgs.rs`, `tokens.rs`).
//!
//! A provisioning credential reaches only what SCIM made (`provisioned`): never an operator,
//! nor anyone or any organisation the CLI, the API or the console made, which it can neither
//! see nor change (SECURITY.md: authority never grows sideways).

use latchkey_core::{Email, OrgName, Prefix, Role, TokenSecret, UserId};
use latchkey_store::{
    CredentialKind, Member, Org, OrgChange, PlatformCredential, User, UserChange,
};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::users::UserSpec;
use crate::{Caller, Service};

/// The prefix of provisioning secrets: recognisable by scanners like every Latchkey secret.
pub const PROVISIONING_PREFIX: &str = "lkscim";
/// The prefix of operator credentials (the back office's `/v1/admin`).
pub const OPERATOR_PREFIX: &str = "lkop";

fn prefix_of(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Provisioning => PROVISIONING_PREFIX,
        CredentialKind::Operator => OPERATOR_PREFIX,
    }
}

/// A person as the identity provider describes them (SCIM's User, in Latchkey's terms).
#[derive(Debug, Clone)]
pub struct ProvisionedUser {
    pub email: String,
    pub external_id: Option<String>,
    /// The attributes kept for the provider only (JSON).
    pub profile: Option<String>,
    /// `None`: not said (a PUT without it, a PATCH that removed it): left as it is.
    pub active: Option<bool>,
    pub password: Option<SecretString>,
}

/// The domain a deleted person's email is moved to: no one else may have an address there.
const DELETED_DOMAIN: &str = "@deleted.invalid";

fn check_not_reserved(email: &Email) -> ServiceResult<()> {
    if email
        .as_str()
        .to_ascii_lowercase()
        .ends_with(DELETED_DOMAIN)
    {
        return Err(ServiceError::invalid(
            "userName: addresses at deleted.invalid are reserved",
        ));
    }
    Ok(())
}

fn unauthenticated(kind: CredentialKind) -> ServiceError {
    ServiceError::client(
        ErrorCode::Unauthenticated,
        format!(
            "a valid {} credential is required (Authorization: Bearer {}_…)",
            kind.as_str(),
            prefix_of(kind)
        ),
    )
}

impl Service {
    /// `latchkey provisioning create` and `latchkey operator-key create`: the secret is
    /// returned once and stored as its SHA-256.
    pub async fn create_platform_credential(
        &self,
        caller: &Caller,
        kind: CredentialKind,
        name: &str,
    ) -> ServiceResult<(PlatformCredential, TokenSecret)> {
        let name = latchkey_core::TokenName::parse(name)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let prefix = Prefix::parse(prefix_of(kind))
            .map_err(|_| ServiceError::Internal("credential prefix".into()))?;
        let secret = TokenSecret::generate(&prefix, random_bytes()?);
        let credential = PlatformCredential {
            id: latchkey_core::ids::ProvisioningId::from_random(random_bytes()?).to_string(),
            kind,
            name: name.as_str().to_owned(),
            created_at: self.now(),
            revoked_at: None,
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "credential.created",
                subject_kind: kind.as_str(),
                subject_id: &credential.id,
                user: None,
                org: None,
                outcome: "success",
                details: Some(json!({ "name": credential.name })),
            },
        )?;
        self.store
            .create_platform_credential(&credential, &secret.hash(), &event)
            .await?;
        Ok((credential, secret))
    }

    /// The credentials of one kind (never their secrets).
    pub async fn list_platform_credentials(
        &self,
        kind: CredentialKind,
    ) -> ServiceResult<Vec<PlatformCredential>> {
        let mut all = self.store.list_platform_credentials().await?;
        all.retain(|c| c.kind == kind);
        Ok(all)
    }

    /// Refused from the very next request (credentials are looked up on every request).
    pub async fn revoke_platform_credential(
        &self,
        caller: &Caller,
        kind: CredentialKind,
        id: &str,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "credential.revoked",
                subject_kind: kind.as_str(),
                subject_id: id,
                user: None,
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        if self
            .store
            .revoke_platform_credential(id, kind, self.now(), &event)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::not_found(match kind {
                CredentialKind::Provisioning => "provisioning credential",
                CredentialKind::Operator => "operator credential",
            }))
        }
    }

    /// The caller a request of the platform's SCIM client or back office acts as, from its
    /// bearer secret, which must be a live credential of `kind` (an operator credential does
    /// not open SCIM, nor the other way round). Wrong secrets count against the caller's
    /// address like refused tokens (the same limiter as `/v1/me`).
    pub async fn authenticate_platform(
        &self,
        kind: CredentialKind,
        secret: &str,
        ip: std::net::IpAddr,
    ) -> ServiceResult<Caller> {
        let now = self.now();
        self.limits.check_token_ip(ip, now)?;
        let credential = match latchkey_core::token_string::ParsedToken::parse(secret) {
            Ok(parsed) if parsed.prefix() == prefix_of(kind) => {
                // Found by the SHA-256 of the secret: the database compares hashes, never
                // secrets.
                self.store
                    .find_platform_credential(&parsed.hash())
                    .await?
                    .filter(|c| c.kind == kind)
            }
            _ => None,
        };
        match credential {
            Some(credential) => Ok(Caller {
                actor: latchkey_store::Actor::Credential(kind, credential.id),
                ip: Some(ip),
                reauth_at: None,
            }),
            None => {
                self.limits.bad_token(ip, now);
                Err(unauthenticated(kind))
            }
        }
    }

    /// A live person SCIM made, by id; anyone else is not found.
    pub async fn find_provisioned_user(&self, id: &str) -> ServiceResult<User> {
        let Ok(id) = id.parse::<UserId>() else {
            return Err(ServiceError::not_found("user"));
        };
        match self.store.find_user(&id).await? {
            Some(user) if user.deleted_at.is_none() && user.provisioned => Ok(user),
            _ => Err(ServiceError::not_found("user")),
        }
    }

    /// A live person SCIM made, by email (what a provider asks before creating someone).
    pub async fn find_provisioned_user_by_email(&self, email: &str) -> ServiceResult<Option<User>> {
        let Ok(email) = Email::parse(email) else {
            return Ok(None);
        };
        Ok(self
            .store
            .find_user_by_email(&email)
            .await?
            .filter(|u| u.deleted_at.is_none() && u.provisioned))
    }

    pub async fn find_user_by_external_id(&self, external_id: &str) -> ServiceResult<Option<User>> {
        Ok(self
            .store
            .find_user_by_external_id(external_id)
            .await?
            .filter(|u| u.provisioned))
    }

    /// A page of the live people SCIM made, oldest first.
    pub async fn list_provisioned_users(
        &self,
        offset: u64,
        limit: u32,
    ) -> ServiceResult<Vec<User>> {
        Ok(self.store.list_provisioned_users(offset, limit).await?)
    }

    /// How many live people SCIM made.
    pub async fn count_provisioned_users(&self) -> ServiceResult<u64> {
        Ok(self.store.count_provisioned_users().await?)
    }

    /// SCIM's POST: a new person, without a password unless the provider sends one. Someone
    /// already here with that email (made by the CLI or the console, or by SCIM) is a conflict:
    /// SCIM never takes an existing account over.
    pub async fn provision_user(
        &self,
        caller: &Caller,
        person: &ProvisionedUser,
    ) -> ServiceResult<User> {
        let email =
            Email::parse(&person.email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        check_not_reserved(&email)?;
        self.add_user(
            caller,
            UserSpec {
                email: &person.email,
                password: person.password.as_ref(),
                is_operator: false,
                external_id: person.external_id.clone(),
                profile: person.profile.clone(),
                disabled: person.active == Some(false),
                provisioned: true,
            },
        )
        .await
    }

    /// SCIM's PUT and PATCH: the person as the provider now describes them, applied to the
    /// version of the record it was read at (a concurrent change makes this `precondition_failed`,
    /// not a lost update). Deactivating ends every session and refuses every token of the user
    /// from the very next request. Nothing is written when nothing changed (providers re-send
    /// whole records on every sync).
    pub async fn reprovision_user(
        &self,
        caller: &Caller,
        user: &User,
        person: &ProvisionedUser,
    ) -> ServiceResult<User> {
        let email =
            Email::parse(&person.email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        if email != user.email {
            check_not_reserved(&email)?;
        }
        let password_hash = match &person.password {
            // The same password again (password sync re-sends it) changes nothing and must
            // not end the person's sessions.
            Some(password)
                if !self
                    .hasher
                    .verify(password, Some(&user.password_hash))
                    .await? =>
            {
                crate::crypto::check_password_rules(password)?;
                Some(self.hasher.hash(password).await?)
            }
            _ => None,
        };
        let disabled = person.active.map(|active| !active);
        let change = UserChange {
            disabled: disabled.filter(|d| *d != user.disabled),
            email: (email != user.email).then_some(email),
            external_id: (person.external_id != user.external_id)
                .then(|| person.external_id.clone()),
            profile: (person.profile != user.profile).then(|| person.profile.clone()),
            password_hash,
            expected_version: Some(user.version),
            ..UserChange::default()
        };
        let unchanged = change.disabled.is_none()
            && change.email.is_none()
            && change.external_id.is_none()
            && change.profile.is_none()
            && change.password_hash.is_none();
        if unchanged {
            return Ok(user.clone());
        }
        self.change_user(caller, user, change, "user.updated").await
    }

    /// SCIM's DELETE: every token of the person is revoked, they leave every organisation
    /// (each with its `member.removed` event, as `latchkey org remove-member`; an organisation
    /// may be left without an admin, as an operator may), then they are disabled, lose every
    /// session, and their email is freed for someone new; the row stays for the audit log.
    pub async fn delete_user(&self, caller: &Caller, user: &User) -> ServiceResult<()> {
        self.revoke_all_tokens(caller, &latchkey_store::Owner::User(user.id.clone()), None)
            .await?;
        for account in self.store.list_user_accounts(&user.id).await? {
            if let Some(org) = self.store.find_org(&account.org_id).await? {
                self.delete_member(caller, &org, &user.id, false).await?;
            }
        }
        let freed = Email::parse(&format!(
            "{}{DELETED_DOMAIN}",
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

/// An organisation as the identity provider describes it (SCIM's Group, in Latchkey's terms):
/// its name, the provider's id for it, and everyone in it with their role.
#[derive(Debug, Clone)]
pub struct ProvisionedGroup {
    pub name: String,
    pub external_id: Option<String>,
    pub members: Vec<(UserId, Role)>,
}

impl Service {
    /// A live organisation SCIM made, by id; any other is not found.
    pub async fn find_provisioned_org(&self, id: &str) -> ServiceResult<Org> {
        let Ok(id) = id.parse::<latchkey_core::OrgId>() else {
            return Err(ServiceError::not_found("organisation"));
        };
        match self.store.find_org(&id).await? {
            Some(org) if org.deleted_at.is_none() && org.provisioned => Ok(org),
            _ => Err(ServiceError::not_found("organisation")),
        }
    }

    pub async fn find_org_by_external_id(&self, external_id: &str) -> ServiceResult<Option<Org>> {
        Ok(self
            .store
            .find_org_by_external_id(external_id)
            .await?
            .filter(|o| o.provisioned))
    }

    /// The live organisations SCIM made.
    pub async fn list_provisioned_orgs(&self) -> ServiceResult<Vec<Org>> {
        let mut orgs = self.store.list_orgs().await?;
        orgs.retain(|o| o.provisioned);
        Ok(orgs)
    }

    /// Everyone in an organisation, with their role (no admin check: the operator's view).
    pub async fn org_members(&self, org: &Org) -> ServiceResult<Vec<Member>> {
        Ok(self.store.list_org_members(&org.id).await?)
    }

    /// SCIM's POST /Groups: a new organisation (with its `Default` token, as any), then its
    /// members, each through the same function as `latchkey org add-member`.
    pub async fn provision_group(
        &self,
        caller: &Caller,
        group: &ProvisionedGroup,
    ) -> ServiceResult<Org> {
        self.check_members(&group.members).await?;
        let org = self
            .add_org(caller, &group.name, &[], group.external_id.clone(), true)
            .await?;
        self.sync_members(caller, &org, &group.members).await?;
        Ok(org)
    }

    /// SCIM's PUT and PATCH on a Group: the name, the external id and the members as the
    /// provider now describes them. Someone who leaves loses the organisation on their next
    /// request; an organisation may be left without an admin (as an operator may).
    pub async fn reprovision_group(
        &self,
        caller: &Caller,
        org: &Org,
        group: &ProvisionedGroup,
    ) -> ServiceResult<Org> {
        self.check_members(&group.members).await?;
        let name = OrgName::parse(&group.name).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let org = if name.as_str() != org.name || group.external_id != org.external_id {
            let change = OrgChange {
                name: (name.as_str() != org.name).then(|| name.as_str().to_owned()),
                external_id: Some(group.external_id.clone()),
                ..OrgChange::default()
            };
            self.change_org(caller, org, change, "org.updated").await?
        } else {
            org.clone()
        };
        self.sync_members(caller, &org, &group.members).await?;
        Ok(org)
    }

    /// SCIM's DELETE /Groups: the organisation is switched off (its tokens refused at once, as
    /// by the kill switch) and emptied; the record stays for the audit log.
    pub async fn delete_group(&self, caller: &Caller, org: &Org) -> ServiceResult<()> {
        let change = OrgChange {
            api_tokens_enabled: Some(false),
            external_id: Some(None),
            deleted_at: Some(self.now()),
            ..OrgChange::default()
        };
        self.change_org(caller, org, change, "org.deleted")
            .await
            .map(|_| ())
    }

    /// Every member must be a live person SCIM made.
    async fn check_members(&self, members: &[(UserId, Role)]) -> ServiceResult<()> {
        for (user, _) in members {
            match self.find_provisioned_user(user.as_str()).await {
                Ok(_) => {}
                Err(ServiceError::Client { .. }) => {
                    return Err(ServiceError::invalid(format!(
                        "members: no such user {}",
                        user.as_str()
                    )));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Makes the organisation's members `wanted`: each one who leaves, joins or changes role is
    /// one change with its own audit event, through the functions the API and the CLI use.
    async fn sync_members(
        &self,
        caller: &Caller,
        org: &Org,
        wanted: &[(UserId, Role)],
    ) -> ServiceResult<()> {
        let current = self.store.list_org_members(&org.id).await?;
        for member in &current {
            if !wanted.iter().any(|(u, _)| *u == member.user_id) {
                self.delete_member(caller, org, &member.user_id, false)
                    .await?;
            }
        }
        for (user, role) in wanted {
            let unchanged = current
                .iter()
                .any(|m| m.user_id == *user && m.role == *role);
            if !unchanged {
                self.change_role(caller, org, user, *role, false).await?;
            }
        }
        Ok(())
    }
}
