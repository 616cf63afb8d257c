//! `grant_type=refresh_token` (RFC 6749 §6): refresh tokens rotate on every use; a replayed one
//! revokes its whole family (the grant), access tokens included.

use std::collections::BTreeMap;

use latchkey_core::oauth::{OAuthErrorCode, parse_scope_list};
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{Prefix, TokenSecret};
use latchkey_store::{Consumed, NewRefreshToken, OAuthClient};

use crate::Service;
use crate::crypto::random_bytes;
use crate::error::{ServiceError, ServiceResult};
use crate::oauth::access_tokens::IssuedAccessToken;
use crate::oauth::{OAuthResult, oauth_err};

pub const REFRESH_TOKEN_PREFIX: &str = "lkrt";

impl Service {
    pub(crate) fn mint_refresh_token(
        &self,
        client: &OAuthClient,
        grant_id: &str,
    ) -> ServiceResult<(NewRefreshToken, TokenSecret)> {
        let prefix = Prefix::parse(REFRESH_TOKEN_PREFIX)
            .map_err(|_| ServiceError::Internal("refresh prefix".into()))?;
        let secret = TokenSecret::generate(&prefix, random_bytes()?);
        let now = self.now();
        let record = NewRefreshToken {
            token_hash: secret.hash(),
            grant_id: grant_id.to_owned(),
            client_id: client.id.clone(),
            created_at: now,
            expires_at: now + self.settings.refresh_token_ttl.to_time(),
        };
        Ok((record, secret))
    }

    pub(crate) async fn grant_refresh_token(
        &self,
        client: &OAuthClient,
        features: &[String],
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<IssuedAccessToken> {
        let invalid = || {
            oauth_err(
                OAuthErrorCode::InvalidGrant,
                "the refresh token is invalid, expired, revoked or used",
            )
        };
        let text = form.get("refresh_token").ok_or_else(|| {
            oauth_err(OAuthErrorCode::InvalidRequest, "refresh_token is required")
        })?;
        let hash = match ParsedToken::parse(text) {
            Ok(p) if p.prefix() == REFRESH_TOKEN_PREFIX => p.hash(),
            _ => return Err(invalid()),
        };
        // Every check first, on the stored token (SPEC 3 "A refused request consumes nothing");
        // only a request that will be answered 200 rotates it.
        let Some(stored) = self.store.find_refresh_token(&hash).await? else {
            return Err(invalid());
        };
        // Another client's token: refused without touching it, so that a client (a public one
        // needs only a client_id) can neither spend nor, by replaying, revoke another's grant.
        if stored.client_id != client.id {
            return Err(invalid());
        }
        if stored.used_at.is_some() {
            self.revoke_grant(&stored.grant_id, "refresh_token_reuse")
                .await?;
            return Err(invalid());
        }
        if stored.grant_revoked || stored.expires_at <= self.now() {
            return Err(invalid());
        }
        let grant = self
            .store
            .find_grant(&stored.grant_id)
            .await?
            .ok_or_else(invalid)?;
        if grant.revoked_at.is_some() || grant.client_id != client.id {
            return Err(invalid());
        }
        let scopes = match form.get("scope") {
            Some(text) => {
                let asked = parse_scope_list(text)
                    .map_err(|e| oauth_err(OAuthErrorCode::InvalidScope, e))?;
                if asked.iter().any(|s| !grant.scopes.contains(s)) {
                    return Err(oauth_err(
                        OAuthErrorCode::InvalidScope,
                        "a refresh may not widen the scope",
                    ));
                }
                asked
            }
            None => grant.scopes.clone(),
        };
        let sub = grant
            .user_id
            .as_ref()
            .map_or(client.id.clone(), ToString::to_string);
        let user_ok = match &grant.user_id {
            Some(id) => self
                .store
                .find_user(id)
                .await?
                .is_some_and(|u| !u.disabled && u.api_tokens_enabled),
            None => true,
        };
        if !user_ok {
            return Err(invalid());
        }
        let scopes = self.org_bounded(&scopes, features);
        let mut issued = self.issue_access_token(client, &sub, Some(&grant.id), scopes)?;
        let (next, next_secret) = self.mint_refresh_token(client, &grant.id)?;
        match self
            .store
            .rotate_refresh_token(&hash, self.now(), &next)
            .await?
        {
            Consumed::Fresh(_) => {}
            // Lost a race with another request for the same token: that is a replay.
            Consumed::Reused { grant_id } => {
                self.revoke_grant(&grant_id, "refresh_token_reuse").await?;
                return Err(invalid());
            }
            Consumed::Invalid => return Err(invalid()),
        }
        issued.refresh_token = Some(next_secret.expose().to_owned());
        Ok(issued)
    }
}
