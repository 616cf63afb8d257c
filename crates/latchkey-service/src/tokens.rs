//! The token life cycle (SPEC 2.3): create within the type's limits, list, rename, rotate with a
//! grace period, reveal, revoke. Personal tokens here; the same internals serve every owner.

use latchkey_core::policy::{OwnerKind, Reveal};
use latchkey_core::{
    Grace, Timestamp, TokenId, TokenName, TokenSecret, TokenStatus, TokenTypePolicy,
};
use latchkey_store::{NewToken, Owner, TokenFilter, TokenRecord, User};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// A token just made: the record and, this once, its secret.
#[derive(Debug)]
pub struct CreatedToken {
    pub record: TokenRecord,
    pub secret: TokenSecret,
}

/// What a user asks for when creating a personal token.
#[derive(Debug)]
pub struct CreatePersonalToken {
    pub name: String,
    pub token_type: Option<String>,
    pub expires_in_days: Option<u32>,
    pub password: SecretString,
}

fn owner_user(owner: &Owner) -> Option<&latchkey_core::UserId> {
    match owner {
        Owner::User(id) => Some(id),
        Owner::Organisation(_) => None,
    }
}

fn owner_org(owner: &Owner) -> Option<&latchkey_core::OrgId> {
    match owner {
        Owner::Organisation(id) => Some(id),
        Owner::User(_) => None,
    }
}

impl Service {
    fn policy(&self, name: &str) -> ServiceResult<&TokenTypePolicy> {
        self.types
            .get(name)
            .ok_or_else(|| ServiceError::invalid(format!("unknown token type {name:?}")))
    }

    /// A fresh token of `policy` for `owner`, not yet stored.
    fn mint(
        &self,
        policy: &TokenTypePolicy,
        owner: Owner,
        name: &TokenName,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> ServiceResult<(NewToken, TokenSecret)> {
        let secret = TokenSecret::generate(&policy.prefix, random_bytes()?);
        let token = NewToken {
            id: TokenId::from_random(random_bytes()?),
            token_hash: secret.hash(),
            token_type: policy.name.clone(),
            owner,
            name: name.as_str().to_owned(),
            hint: secret.hint(),
            scopes: policy.scopes.clone(),
            created_at: now,
            active_from: policy.active_from(now),
            expires_at,
            rotated_from: None,
            ends_on_first_use: None,
        };
        Ok((token, secret))
    }

    pub async fn create_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        req: CreatePersonalToken,
    ) -> ServiceResult<CreatedToken> {
        let name =
            TokenName::parse(&req.name).map_err(|e| ServiceError::invalid(format!("name: {e}")))?;
        let policy = match &req.token_type {
            Some(t) => self.policy(t)?,
            None => self
                .types
                .default_personal()
                .ok_or_else(|| ServiceError::invalid("no token type for users is configured"))?,
        };
        if policy.owner != OwnerKind::User {
            return Err(ServiceError::invalid(format!(
                "token type {:?} belongs to organisations, not users",
                policy.name
            )));
        }
        let now = self.now();
        let expires_at = policy
            .expiry(now, req.expires_in_days)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        self.check_password(caller, user, &req.password, "token.create")
            .await?;
        if !user.api_tokens_enabled {
            return Err(ServiceError::client(
                ErrorCode::TokensDisabled,
                "API tokens are switched off for this account",
            ));
        }
        let (token, secret) =
            self.mint(policy, Owner::User(user.id.clone()), &name, expires_at, now)?;
        let event = self.event(
            caller,
            EventSpec {
                action: "token.created",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: Some(
                    json!({ "name": name.as_str(), "type": policy.name, "hint": token.hint }),
                ),
            },
        )?;
        let record = self
            .store
            .create_token_within_limit(&token, policy.max_active, now, &event)
            .await?;
        Ok(CreatedToken { record, secret })
    }

    pub async fn list_personal_tokens(&self, user: &User) -> ServiceResult<Vec<TokenRecord>> {
        let filter = TokenFilter {
            owner: Some(Owner::User(user.id.clone())),
            token_type: None,
            limit: 1_000,
        };
        Ok(self.store.list_tokens(&filter).await?)
    }

    /// One of the user's own tokens; anyone else's answers `404`.
    pub async fn personal_token(&self, user: &User, id: &str) -> ServiceResult<TokenRecord> {
        let id: TokenId = id.parse().map_err(|_| ServiceError::not_found("token"))?;
        match self.store.find_token(&id).await? {
            Some(t) if owner_user(&t.owner) == Some(&user.id) => Ok(t),
            _ => Err(ServiceError::not_found("token")),
        }
    }

    pub async fn rename_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        name: &str,
    ) -> ServiceResult<TokenRecord> {
        let name =
            TokenName::parse(name).map_err(|e| ServiceError::invalid(format!("name: {e}")))?;
        let token = self.personal_token(user, id).await?;
        self.rename_token(caller, &token, &name).await?;
        self.personal_token(user, id).await
    }

    pub async fn rotate_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        grace: Grace,
    ) -> ServiceResult<CreatedToken> {
        let token = self.personal_token(user, id).await?;
        if !user.api_tokens_enabled {
            return Err(ServiceError::client(
                ErrorCode::TokensDisabled,
                "API tokens are switched off for this account",
            ));
        }
        self.rotate_token(caller, &token, grace).await
    }

    pub async fn revoke_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        password: &SecretString,
    ) -> ServiceResult<TokenRecord> {
        let token = self.personal_token(user, id).await?;
        self.check_password(caller, user, password, "token.revoke")
            .await?;
        self.revoke_token(caller, &token, "owner").await?;
        self.personal_token(user, id).await
    }

    /// Personal types show their secret once: revealing answers `409 not_revealable`.
    pub async fn reveal_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        password: &SecretString,
    ) -> ServiceResult<TokenSecret> {
        let token = self.personal_token(user, id).await?;
        let policy = self.policy(&token.token_type)?;
        if policy.reveal == Reveal::Once {
            return Err(ServiceError::client(
                ErrorCode::NotRevealable,
                "this token type shows its secret only once, at creation: rotate the token to get a new one",
            ));
        }
        self.check_password(caller, user, password, "token.reveal")
            .await?;
        // Configuration refuses `reveal = "reauth"` for user-owned types until the encrypted
        // secret store lands (the organisation-token issue), so this cannot be reached.
        Err(ServiceError::client(
            ErrorCode::NotRevealable,
            "this token's secret is not stored",
        ))
    }

    pub(crate) async fn rename_token(
        &self,
        caller: &Caller,
        token: &TokenRecord,
        name: &TokenName,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "token.renamed",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(json!({ "from": token.name, "to": name.as_str() })),
            },
        )?;
        Ok(self
            .store
            .rename_token(&token.id, name.as_str(), &event)
            .await?)
    }

    /// A new token of the same type and name; the old one keeps working for the grace period
    /// (and at least until the new one becomes active, so an activation delay never leaves the
    /// owner without a working token). Allowed at `max_active`.
    pub(crate) async fn rotate_token(
        &self,
        caller: &Caller,
        old: &TokenRecord,
        grace: Grace,
    ) -> ServiceResult<CreatedToken> {
        let now = self.now();
        if !old.status(now).is_live() {
            return Err(ServiceError::client(
                ErrorCode::TokenNotLive,
                "only a pending or active token can be rotated",
            ));
        }
        let policy = self.policy(&old.token_type)?;
        let name =
            TokenName::parse(&old.name).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let expires_at = policy
            .expiry(now, None)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (mut token, secret) = self.mint(policy, old.owner.clone(), &name, expires_at, now)?;
        token.rotated_from = Some(old.id.clone());
        if grace == Grace::FirstUse {
            token.ends_on_first_use = Some(old.id.clone());
        }
        let old_expires_at = grace.old_token_expiry(now).max(token.active_from);
        let event = self.event(caller, EventSpec {
            action: "token.rotated",
            subject_kind: "token",
            subject_id: old.id.as_str(),
            user: owner_user(&old.owner),
            org: owner_org(&old.owner),
            outcome: "success",
            details: Some(json!({ "new_token": token.id, "grace": grace.to_string(), "hint": token.hint })),
        })?;
        let record = self
            .store
            .rotate_token(&old.id, old_expires_at, &token, &event)
            .await?;
        self.cache.invalidate();
        Ok(CreatedToken { record, secret })
    }

    /// Revokes at once: the very next request with the token is refused.
    pub(crate) async fn revoke_token(
        &self,
        caller: &Caller,
        token: &TokenRecord,
        reason: &str,
    ) -> ServiceResult<bool> {
        let event = self.event(
            caller,
            EventSpec {
                action: "token.revoked",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(
                    json!({ "name": token.name, "type": token.token_type, "reason": reason }),
                ),
            },
        )?;
        let revoked = self
            .store
            .revoke_token(&token.id, self.now(), &event)
            .await?;
        self.cache.invalidate();
        Ok(revoked)
    }

    /// Operator: every token, or one owner's.
    pub async fn list_tokens(
        &self,
        owner: Option<Owner>,
        token_type: Option<String>,
        limit: u32,
    ) -> ServiceResult<Vec<TokenRecord>> {
        Ok(self
            .store
            .list_tokens(&TokenFilter {
                owner,
                token_type,
                limit,
            })
            .await?)
    }

    /// Operator: revoke any token by id.
    pub async fn revoke_token_by_id(&self, caller: &Caller, id: &str) -> ServiceResult<bool> {
        let id: TokenId = id.parse().map_err(|_| ServiceError::not_found("token"))?;
        let token = self
            .store
            .find_token(&id)
            .await?
            .ok_or_else(|| ServiceError::not_found("token"))?;
        self.revoke_token(caller, &token, "operator").await
    }

    pub fn status_of(&self, token: &TokenRecord) -> TokenStatus {
        token.status(self.now())
    }
}

impl Service {
    /// Benchmark seeding: `count` tokens of a user-owned type for `user`, inserted in large
    /// transactions without limit checks or events. Not reachable from the API.
    pub async fn seed_tokens_for_benchmark(
        &self,
        user: &User,
        token_type: &str,
        count: usize,
    ) -> ServiceResult<Vec<TokenSecret>> {
        let policy = self.policy(token_type)?.clone();
        let name =
            TokenName::parse("benchmark").map_err(|e| ServiceError::Internal(e.to_string()))?;
        let now = self.now();
        let mut secrets = Vec::with_capacity(count);
        let mut batch = Vec::with_capacity(5_000);
        for i in 0..count {
            let (mut token, secret) = self.mint(
                &policy,
                Owner::User(user.id.clone()),
                &name,
                policy.expiry(now, None).ok().flatten(),
                now,
            )?;
            token.active_from = now;
            batch.push(token);
            secrets.push(secret);
            if batch.len() == 5_000 || i + 1 == count {
                self.store.insert_tokens_unchecked(&batch).await?;
                batch.clear();
            }
        }
        Ok(secrets)
    }
}
