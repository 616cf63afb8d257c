//! Organisations and memberships.

use latchkey_core::policy::feature_name;
use latchkey_core::{OrgId, OrgName, Role, UserId};
use latchkey_store::{Account, Member, NewOrg, Org, OrgChange};
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

fn features(list: &[String]) -> ServiceResult<Vec<String>> {
    list.iter()
        .map(|f| feature_name(f).map_err(ServiceError::invalid))
        .collect()
}

/// The store's uniqueness conflict on an organisation (its external id).
fn org_taken_or_other(e: latchkey_store::StoreError) -> ServiceError {
    match e {
        latchkey_store::StoreError::Conflict(_) => ServiceError::client(
            crate::error::ErrorCode::Conflict,
            "an organisation with this external id already exists",
        ),
        other => other.into(),
    }
}

impl Service {
    pub async fn create_org(
        &self,
        caller: &Caller,
        name: &str,
        feature_list: &[String],
    ) -> ServiceResult<Org> {
        self.add_org(caller, name, feature_list, None, false).await
    }

    /// The one way an organisation is created (the CLI, the API, SCIM).
    pub(crate) async fn add_org(
        &self,
        caller: &Caller,
        name: &str,
        feature_list: &[String],
        external_id: Option<String>,
        provisioned: bool,
    ) -> ServiceResult<Org> {
        let name = OrgName::parse(name).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let features = features(feature_list)?;
        let id = OrgId::from_random(random_bytes()?);
        let event = self.event(
            caller,
            EventSpec {
                action: "org.created",
                subject_kind: "organisation",
                subject_id: id.as_str(),
                user: None,
                org: Some(&id),
                outcome: "success",
                details: Some(json!({
                    "name": name.as_str(), "features": features, "external_id": external_id,
                })),
            },
        )?;
        // The store keeps the list as given; an organisation's features are a set, read back
        // in order, so the new one is answered the way every later read will answer it.
        let mut unique = features;
        unique.sort();
        unique.dedup();
        let org = NewOrg {
            id,
            name: name.as_str().to_owned(),
            features: unique,
            created_at: self.now(),
            external_id,
            provisioned,
        };
        // SPEC 2.1: a new organisation gets an active `api` token named "Default".
        let first = match self
            .types
            .get("api")
            .filter(|p| p.owner == latchkey_core::policy::OwnerKind::Organisation)
        {
            Some(policy)
                if policy
                    .requires_feature
                    .as_ref()
                    .is_none_or(|f| org.features.contains(f)) =>
            {
                let request = crate::tokens::NewTokenRequest {
                    policy,
                    owner: latchkey_store::Owner::Organisation(org.id.clone()),
                    name: latchkey_core::TokenName::parse("Default")
                        .map_err(|e| ServiceError::Internal(e.to_string()))?,
                    expires_in_days: None,
                    allowed_ips: Vec::new(),
                    idempotency_key: None,
                    skip_activation_delay: true,
                };
                let (token, _secret, token_event) = self.prepare_token(caller, &request)?;
                Some((token, token_event))
            }
            _ => None,
        };
        self.store
            .create_org(&org, &event, first.as_ref().map(|(t, e)| (t, e)))
            .await
            .map_err(org_taken_or_other)
    }

    pub async fn find_org(&self, id: &str) -> ServiceResult<Org> {
        let id: OrgId = id
            .parse()
            .map_err(|_| ServiceError::not_found("organisation"))?;
        self.store
            .find_org(&id)
            .await?
            .ok_or_else(|| ServiceError::not_found("organisation"))
    }

    pub async fn update_org(
        &self,
        caller: &Caller,
        id: &str,
        add: &[String],
        remove: &[String],
        api_tokens_enabled: Option<bool>,
    ) -> ServiceResult<Org> {
        let org = self.find_org(id).await?;
        let change = OrgChange {
            add_features: features(add)?,
            remove_features: features(remove)?,
            api_tokens_enabled,
            ..OrgChange::default()
        };
        self.change_org(caller, &org, change, "org.updated").await
    }

    /// The one way an organisation's record changes (`action` names it in the audit log); the
    /// after-commit path then drops every cached answer that depended on it.
    pub(crate) async fn change_org(
        &self,
        caller: &Caller,
        org: &Org,
        change: OrgChange,
        action: &str,
    ) -> ServiceResult<Org> {
        let event = self.event(
            caller,
            EventSpec {
                action,
                subject_kind: "organisation",
                subject_id: org.id.as_str(),
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({
                    "add_features": change.add_features,
                    "remove_features": change.remove_features,
                    "api_tokens_enabled": change.api_tokens_enabled,
                    "name": change.name,
                    "external_id": change.external_id,
                    "deleted": change.deleted_at.is_some(),
                })),
            },
        )?;
        self.store
            .update_org(&org.id, &change, &event)
            .await
            .map_err(org_taken_or_other)
    }

    /// Adds a member or changes their role. The change is seen by the very next request of any
    /// of the user's tokens.
    pub async fn set_member(
        &self,
        caller: &Caller,
        org_id: &str,
        email: &str,
        role: Role,
    ) -> ServiceResult<()> {
        let org = self.find_org(org_id).await?;
        let user = self.find_user_by_email(email).await?;
        // An operator may leave an organisation without an admin (to hand it over).
        self.change_role(caller, &org, &user.id, role, false)
            .await
            .map(|_| ())
    }

    pub async fn remove_member(
        &self,
        caller: &Caller,
        org_id: &str,
        email: &str,
    ) -> ServiceResult<()> {
        let user = self.find_user_by_email(email).await?;
        self.remove_person(caller, org_id, &user.id).await
    }

    /// [`Service::remove_member`] for a person already found (by id).
    pub async fn remove_person(
        &self,
        caller: &Caller,
        org_id: &str,
        user: &UserId,
    ) -> ServiceResult<()> {
        let org = self.find_org(org_id).await?;
        self.delete_member(caller, &org, user, false).await
    }

    pub(crate) async fn delete_member(
        &self,
        caller: &Caller,
        org: &Org,
        user: &UserId,
        keep_an_admin: bool,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "member.removed",
                subject_kind: "user",
                subject_id: user.as_str(),
                user: Some(user),
                org: Some(&org.id),
                outcome: "success",
                details: None,
            },
        )?;
        if !self
            .store
            .delete_membership(&org.id, user, keep_an_admin, &event)
            .await?
        {
            return Err(ServiceError::not_found("membership"));
        }
        Ok(())
    }

    /// The organisations a user belongs to, with their role.
    pub async fn list_accounts(&self, user: &UserId) -> ServiceResult<Vec<Account>> {
        Ok(self.store.list_user_accounts(user).await?)
    }

    /// The organisation, if `user` is one of its admins: members and partners get `403`,
    /// outsiders `404` (an outsider must not learn that the organisation exists).
    pub async fn require_admin(&self, user: &UserId, org_id: &str) -> ServiceResult<Org> {
        let id: OrgId = org_id
            .parse()
            .map_err(|_| ServiceError::not_found("organisation"))?;
        let accounts = self.store.list_user_accounts(user).await?;
        match accounts.iter().find(|a| a.org_id == id) {
            None => Err(ServiceError::not_found("organisation")),
            Some(a) if !a.role.is_admin() => Err(ServiceError::forbidden(
                "only an admin of this organisation may do this",
            )),
            Some(_) => self
                .store
                .find_org(&id)
                .await?
                .ok_or_else(|| ServiceError::not_found("organisation")),
        }
    }

    pub async fn list_members(&self, user: &UserId, org_id: &str) -> ServiceResult<Vec<Member>> {
        let org = self.require_admin(user, org_id).await?;
        Ok(self.store.list_org_members(&org.id).await?)
    }

    pub async fn list_orgs(&self) -> ServiceResult<Vec<Org>> {
        Ok(self.store.list_orgs().await?)
    }
}

impl Service {
    /// An admin adds someone (by email) to their organisation, or changes their role.
    pub async fn add_member_as_admin(
        &self,
        caller: &Caller,
        admin: &UserId,
        org_id: &str,
        email: &str,
        role: Role,
    ) -> ServiceResult<Member> {
        let org = self.require_admin(admin, org_id).await?;
        let user = self.find_user_by_email(email).await?;
        // Adding someone already in the organisation changes their role: the same guard as
        // PATCH, or the last admin could be demoted through POST.
        self.change_role(caller, &org, &user.id, role, true).await
    }

    /// An admin changes a member's role. An organisation always keeps at least one admin.
    pub async fn update_member_as_admin(
        &self,
        caller: &Caller,
        admin: &UserId,
        org_id: &str,
        user_id: &str,
        role: Role,
    ) -> ServiceResult<Member> {
        let org = self.require_admin(admin, org_id).await?;
        let member = self.member(&org, user_id).await?;
        self.change_role(caller, &org, &member.user_id, role, true)
            .await
    }

    /// An admin removes a member (themselves included, unless they are the last admin).
    pub async fn remove_member_as_admin(
        &self,
        caller: &Caller,
        admin: &UserId,
        org_id: &str,
        user_id: &str,
    ) -> ServiceResult<()> {
        let org = self.require_admin(admin, org_id).await?;
        let member = self.member(&org, user_id).await?;
        self.delete_member(caller, &org, &member.user_id, true)
            .await
    }

    async fn member(&self, org: &Org, user_id: &str) -> ServiceResult<Member> {
        let members = self.store.list_org_members(&org.id).await?;
        members
            .into_iter()
            .find(|m| m.user_id.as_str() == user_id)
            .ok_or_else(|| ServiceError::not_found("member"))
    }

    pub(crate) async fn change_role(
        &self,
        caller: &Caller,
        org: &Org,
        user: &UserId,
        role: Role,
        keep_an_admin: bool,
    ) -> ServiceResult<Member> {
        let event = self.event(
            caller,
            EventSpec {
                action: "member.set",
                subject_kind: "user",
                subject_id: user.as_str(),
                user: Some(user),
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({ "role": role })),
            },
        )?;
        self.store
            .upsert_membership(&org.id, user, role, self.now(), keep_an_admin, &event)
            .await?;
        self.member(org, user.as_str()).await
    }
}
