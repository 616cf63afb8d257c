//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5): a code, once, by the
//! client it was issued to, with the same redirect URI and the PKCE verifier. A replayed code
//! revokes everything its grant produced.

use std::collections::BTreeMap;

use latchkey_core::oauth::{GrantType, OAuthErrorCode, pkce_matches};
use latchkey_core::token_string::ParsedToken;
use latchkey_store::{Consumed, OAuthClient};

use crate::Service;
use crate::oauth::access_tokens::IssuedAccessToken;
use crate::oauth::authorize::AUTH_CODE_PREFIX;
use crate::oauth::{OAuthResult, oauth_err};

impl Service {
    pub(crate) async fn grant_authorization_code(
        &self,
        client: &OAuthClient,
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<IssuedAccessToken> {
        let invalid = |d: &str| oauth_err(OAuthErrorCode::InvalidGrant, d);
        let code = form
            .get("code")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "code is required"))?;
        let redirect_uri = form
            .get("redirect_uri")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "redirect_uri is required"))?;
        let hash = match ParsedToken::parse(code) {
            Ok(p) if p.prefix() == AUTH_CODE_PREFIX => p.hash(),
            _ => return Err(invalid("the code is invalid, expired or used")),
        };
        let code = match self.store.consume_auth_code(&hash, self.now()).await? {
            Consumed::Fresh(code) => code,
            Consumed::Reused { grant_id } => {
                self.revoke_grant(&grant_id, "authorization_code_reuse")
                    .await?;
                return Err(invalid("the code is invalid, expired or used"));
            }
            Consumed::Invalid => return Err(invalid("the code is invalid, expired or used")),
        };
        if code.client_id != client.id {
            return Err(invalid("the code was issued to another client"));
        }
        if &code.redirect_uri != redirect_uri {
            return Err(invalid(
                "redirect_uri differs from the authorization request",
            ));
        }
        match (code.code_challenge.is_empty(), form.get("code_verifier")) {
            (false, Some(verifier)) if pkce_matches(verifier, &code.code_challenge) => {}
            (false, _) => return Err(invalid("the PKCE code_verifier does not match")),
            (true, Some(_)) => {
                return Err(invalid(
                    "a code_verifier was sent but the authorization request had no challenge",
                ));
            }
            (true, None) => {}
        }
        let user = self.store.find_user(&code.user_id).await?;
        if !user.is_some_and(|u| !u.disabled && u.api_tokens_enabled) {
            return Err(invalid("the user who consented can no longer grant access"));
        }
        let mut issued = self.issue_access_token(
            client,
            code.user_id.as_str(),
            Some(&code.grant_id),
            code.scopes.clone(),
        )?;
        if client
            .grant_types
            .iter()
            .any(|g| g == GrantType::RefreshToken.as_str())
        {
            issued.refresh_token = Some(self.new_refresh_token(client, &code.grant_id).await?);
        }
        Ok(issued)
    }
}
