//! Organisation tokens (SPEC 2.1–2.4): admins only; members and partners get `403`, outsiders
//! `404`. The life cycle itself is the shared one of `tokens.rs`.

use latchkey_core::policy::OwnerKind;
use latchkey_core::{Grace, TokenName, TokenSecret};
use latchkey_store::{Org, Owner, TokenRecord, User};
use secrecy::SecretString;

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::tokens::{Created, CreatedToken, NewTokenRequest, parse_allowed_ips};
use crate::{Caller, Service};

/// What an admin asks for when creating an organisation token.
#[derive(Debug)]
pub struct CreateOrgToken {
    pub name: String,
    pub token_type: String,
    pub expires_in_days: Option<u32>,
    pub allowed_ips: Option<Vec<String>>,
}

fn owner(org: &Org) -> Owner {
    Owner::Organisation(org.id.clone())
}

impl Service {
    /// Checks that the organisation may have tokens of this type now.
    fn check_org_type(&self, org: &Org, token_type: &str) -> ServiceResult<()> {
        let policy = self.policy(token_type)?;
        if policy.owner != OwnerKind::Organisation {
            return Err(ServiceError::invalid(format!(
                "token type {token_type:?} belongs to users, not organisations"
            )));
        }
        if let Some(feature) = &policy.requires_feature
            && !org.features.contains(feature)
        {
            return Err(ServiceError::client(
                ErrorCode::FeatureNotEnabled,
                format!("token type {token_type:?} needs the organisation feature {feature:?}"),
            ));
        }
        if !org.api_tokens_enabled {
            return Err(ServiceError::client(
                ErrorCode::TokensDisabled,
                "API tokens are switched off for this organisation",
            ));
        }
        Ok(())
    }

    pub async fn create_org_token(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        req: CreateOrgToken,
        idempotency_key: Option<String>,
    ) -> ServiceResult<Created> {
        let org = self.require_admin(&admin.id, org_id).await?;
        let name =
            TokenName::parse(&req.name).map_err(|e| ServiceError::invalid(format!("name: {e}")))?;
        let allowed_ips = parse_allowed_ips(req.allowed_ips.as_deref().unwrap_or_default())?;
        self.check_org_type(&org, &req.token_type)?;
        let request = NewTokenRequest {
            policy: self.policy(&req.token_type)?,
            owner: owner(&org),
            name,
            expires_in_days: req.expires_in_days,
            allowed_ips,
            idempotency_key,
            skip_activation_delay: false,
        };
        self.create_token(caller, request).await
    }

    pub async fn list_org_tokens(
        &self,
        admin: &User,
        org_id: &str,
    ) -> ServiceResult<Vec<TokenRecord>> {
        let org = self.require_admin(&admin.id, org_id).await?;
        self.list_owner_tokens(owner(&org)).await
    }

    pub async fn org_token(
        &self,
        admin: &User,
        org_id: &str,
        id: &str,
    ) -> ServiceResult<(Org, TokenRecord)> {
        let org = self.require_admin(&admin.id, org_id).await?;
        let token = self.owned_token(&owner(&org), id).await?;
        Ok((org, token))
    }

    pub async fn update_org_token(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        id: &str,
        name: Option<&str>,
        allowed_ips: Option<&[String]>,
    ) -> ServiceResult<TokenRecord> {
        let (_, token) = self.org_token(admin, org_id, id).await?;
        self.update_token(caller, &token, name, allowed_ips).await?;
        Ok(self.org_token(admin, org_id, id).await?.1)
    }

    pub async fn rotate_org_token(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        id: &str,
        grace: Grace,
    ) -> ServiceResult<CreatedToken> {
        let (org, token) = self.org_token(admin, org_id, id).await?;
        self.check_org_type(&org, &token.token_type)?;
        self.rotate_token(caller, &token, grace).await
    }

    pub async fn reveal_org_token(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        id: &str,
        password: &SecretString,
    ) -> ServiceResult<TokenSecret> {
        let (_, token) = self.org_token(admin, org_id, id).await?;
        self.reveal_token(caller, admin, &token, password).await
    }

    /// `DELETE …/tokens/{id}`: revokes at once; the record stays for audit.
    pub async fn delete_org_token(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        id: &str,
    ) -> ServiceResult<TokenRecord> {
        let (_, token) = self.org_token(admin, org_id, id).await?;
        self.revoke_token(caller, &token, "deleted").await?;
        Ok(self.org_token(admin, org_id, id).await?.1)
    }

    /// `POST …/tokens/revoke-all {type?}`: the organisation's kill switch.
    pub async fn revoke_all_org_tokens(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        token_type: Option<&str>,
    ) -> ServiceResult<crate::tokens::KillSwitch> {
        let org = self.require_admin(&admin.id, org_id).await?;
        self.revoke_all_tokens(caller, &owner(&org), token_type)
            .await
    }
}
