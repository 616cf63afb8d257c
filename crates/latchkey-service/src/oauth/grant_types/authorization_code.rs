//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5): a code, once, by the
//! client it was issued to, with the same redirect URI and the PKCE verifier. A replayed code
//! revokes everything its grant produced.
//!
//! Every check is made on the stored code before it is consumed (SPEC 3 "A refused request
//! consumes nothing"): a wrong verifier, redirect URI or client leaves the code to the request
//! that will succeed. Consuming the code and storing its refresh token are one transaction.

use std::collections::BTreeMap;

use latchkey_core::oauth::{GrantType, OAuthErrorCode, pkce_matches};
use latchkey_core::token_string::ParsedToken;
use latchkey_store::{Consumed, OAuthClient};

use crate::Service;
use crate::oauth::access_tokens::IssuedAccessToken;
use crate::oauth::authorize::AUTH_CODE_PREFIX;
use crate::oauth::{OAuthResult, oauth_err};

const UNUSABLE: &str = "the code is invalid, expired or used";

impl Service {
    pub(crate) async fn grant_authorization_code(
        &self,
        client: &OAuthClient,
        features: &[String],
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<IssuedAccessToken> {
        let invalid = |d: &str| oauth_err(OAuthErrorCode::InvalidGrant, d);
        let code = form
            .get("code")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "code is required"))?;
        let hash = match ParsedToken::parse(code) {
            Ok(p) if p.prefix() == AUTH_CODE_PREFIX => p.hash(),
            _ => return Err(invalid(UNUSABLE)),
        };
        let Some(stored) = self.store.find_auth_code(&hash).await? else {
            return Err(invalid(UNUSABLE));
        };
        // Another client's code: refused without touching it, so that a client that learnt a
        // code cannot spend (or, by replaying it, revoke) the rightful client's grant.
        if stored.code.client_id != client.id {
            return Err(invalid(UNUSABLE));
        }
        if stored.used_at.is_some() {
            self.revoke_grant(&stored.code.grant_id, "authorization_code_reuse")
                .await?;
            return Err(invalid(UNUSABLE));
        }
        let code = stored.code;
        if code.expires_at <= self.now() {
            return Err(invalid(UNUSABLE));
        }
        // RFC 6749 §4.1.3: required when the authorization request had one (then stored), and
        // when sent without one it must be the client's only URI, where the code was sent.
        let redirect_ok = match (code.redirect_uri.as_str(), form.get("redirect_uri")) {
            ("", None) => true,
            ("", Some(sent)) => client.redirect_uris.as_slice() == std::slice::from_ref(sent),
            (_, None) => {
                return Err(oauth_err(
                    OAuthErrorCode::InvalidRequest,
                    "redirect_uri is required",
                ));
            }
            (stored, Some(sent)) => stored == sent,
        };
        if !redirect_ok {
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
        let scopes = self.org_bounded(&code.scopes, features);
        let mut issued =
            self.issue_access_token(client, code.user_id.as_str(), Some(&code.grant_id), scopes)?;
        let refresh = if client
            .grant_types
            .iter()
            .any(|g| g == GrantType::RefreshToken.as_str())
        {
            Some(self.mint_refresh_token(client, &code.grant_id)?)
        } else {
            None
        };
        match self
            .store
            .consume_auth_code(&hash, self.now(), refresh.as_ref().map(|(r, _)| r))
            .await?
        {
            Consumed::Fresh(_) => {}
            // Lost a race with another request for the same code: that is a replay.
            Consumed::Reused { grant_id } => {
                self.revoke_grant(&grant_id, "authorization_code_reuse")
                    .await?;
                return Err(invalid(UNUSABLE));
            }
            Consumed::Invalid => return Err(invalid(UNUSABLE)),
        }
        issued.refresh_token = refresh.map(|(_, secret)| secret.expose().to_owned());
        Ok(issued)
    }
}
