//! `GET /oauth2/authorize` and the consent decision (RFC 6749 §4.1, RFC 7636).
//!
//! Until the client and redirect URI are known to be right, errors are shown on an error page
//! and never redirected (§4.1.2.1: no open redirector); after that, they go back to the client
//! as `error=…&state=…`.

use latchkey_core::oauth::{
    GrantType, OAuthErrorCode, error_description_text, is_code_verifier, parse_scope_list,
    redirect_with,
};
use latchkey_core::{Prefix, TokenSecret};
use latchkey_store::{Account, NewAuthCode, OAuthClient, OAuthGrant, User};
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

pub const AUTH_CODE_PREFIX: &str = "lkac";

/// The query of an authorization request, as received.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A request that passed every check: what the consent page shows and the approval binds.
#[derive(Debug, Clone)]
pub struct ValidAuthorize {
    pub client: OAuthClient,
    pub redirect_uri: String,
    /// Whether the request named it: if not, the token request may leave it out too.
    pub redirect_uri_given: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    /// The S256 challenge; empty for a confidential client that sent none.
    pub code_challenge: String,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum AuthorizeRejection {
    /// Shown on our error page; never redirected (unknown client, unregistered redirect URI).
    ErrorPage(String),
    /// Sent back to the client's redirect URI.
    Redirect(String),
}

impl Service {
    pub async fn check_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> ServiceResult<Result<ValidAuthorize, AuthorizeRejection>> {
        let page = |m: &str| Ok(Err(AuthorizeRejection::ErrorPage(m.to_owned())));
        let Some(client_id) = &p.client_id else {
            return page("The request names no client (client_id is missing).");
        };
        let client = match self.store.find_client(client_id).await? {
            Some(c) if c.deleted_at.is_none() => c,
            _ => return page("This application is not registered."),
        };
        // RFC 6749 §3.1.2.3: with exactly one registered URI the parameter may be left out.
        let redirect_uri = match (&p.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), registered) if registered.contains(uri) => uri,
            (Some(_), _) => {
                return page("The redirect URI is not registered for this application.");
            }
            (None, [only]) => only,
            (None, _) => return page("The request has no redirect_uri."),
        };
        let back = |code: OAuthErrorCode, description: &str| {
            let description = error_description_text(description);
            let mut params = vec![
                ("error", code.as_str()),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &p.state {
                params.push(("state", state.as_str()));
            }
            Ok(Err(AuthorizeRejection::Redirect(redirect_with(
                redirect_uri,
                &params,
            ))))
        };
        if p.response_type.as_deref() != Some("code") {
            return back(
                OAuthErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            );
        }
        if !client
            .grant_types
            .iter()
            .any(|g| g == GrantType::AuthorizationCode.as_str())
        {
            return back(
                OAuthErrorCode::UnauthorizedClient,
                "this client may not use the authorization code grant",
            );
        }
        // The client's scopes as its organisation may still give them (SPEC 3): a feature
        // taken away is not offered on the consent page either.
        let features = self
            .store
            .find_org(&client.org_id)
            .await?
            .map(|o| o.features)
            .unwrap_or_default();
        let allowed = self.org_bounded(&client.scopes, &features);
        let scopes = match &p.scope {
            Some(text) => match parse_scope_list(text) {
                Ok(list) if list.iter().all(|s| allowed.contains(s)) => list,
                _ => {
                    return back(
                        OAuthErrorCode::InvalidScope,
                        "the requested scope is not allowed for this client",
                    );
                }
            },
            None => allowed,
        };
        let code_challenge = match (&p.code_challenge, p.code_challenge_method.as_deref()) {
            (Some(c), Some("S256")) if is_code_verifier(c) => c.clone(),
            (Some(_), Some("S256")) => {
                return back(
                    OAuthErrorCode::InvalidRequest,
                    "code_challenge is malformed",
                );
            }
            (Some(_), _) => {
                return back(
                    OAuthErrorCode::InvalidRequest,
                    "code_challenge_method must be S256",
                );
            }
            (None, Some(_)) => {
                return back(
                    OAuthErrorCode::InvalidRequest,
                    "code_challenge_method without code_challenge",
                );
            }
            (None, None) if !client.is_confidential => {
                return back(
                    OAuthErrorCode::InvalidRequest,
                    "PKCE (code_challenge with S256) is required for this client",
                );
            }
            (None, None) => String::new(),
        };
        let redirect_uri_given = p.redirect_uri.is_some();
        Ok(Ok(ValidAuthorize {
            redirect_uri: redirect_uri.clone(),
            redirect_uri_given,
            client,
            scopes,
            state: p.state.clone(),
            code_challenge,
        }))
    }

    /// The organisations the user's consent would let the client reach.
    pub async fn consent_accounts(&self, user: &User) -> ServiceResult<Vec<Account>> {
        Ok(self
            .store
            .list_user_accounts(&user.id)
            .await?
            .into_iter()
            .filter(|a| a.api_tokens_enabled)
            .collect())
    }

    /// Approve: a grant and a single-use code (≥ 256 bits, `code_ttl`), bound to the client,
    /// redirect URI, challenge, user and scopes. Returns where to send the browser.
    pub async fn approve_authorize(
        &self,
        caller: &Caller,
        user: &User,
        v: &ValidAuthorize,
    ) -> ServiceResult<String> {
        let now = self.now();
        let prefix = Prefix::parse(AUTH_CODE_PREFIX)
            .map_err(|_| ServiceError::Internal("code prefix".into()))?;
        let code = TokenSecret::generate(&prefix, random_bytes()?);
        let grant = OAuthGrant {
            id: format!(
                "grt_{}",
                latchkey_core::base62::encode_bytes(&random_bytes::<16>()?, 22).unwrap_or_default()
            ),
            client_id: v.client.id.clone(),
            user_id: Some(user.id.clone()),
            scopes: v.scopes.clone(),
            created_at: now,
            revoked_at: None,
        };
        let record = NewAuthCode {
            code_hash: code.hash(),
            grant_id: grant.id.clone(),
            client_id: v.client.id.clone(),
            user_id: user.id.clone(),
            // Empty when the request left it out (RFC 6749 §4.1.3: then the token request
            // need not send it).
            redirect_uri: if v.redirect_uri_given {
                v.redirect_uri.clone()
            } else {
                String::new()
            },
            code_challenge: v.code_challenge.clone(),
            scopes: v.scopes.clone(),
            created_at: now,
            expires_at: now + self.settings.code_ttl.to_time(),
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "oauth.consent_given",
                subject_kind: "client",
                subject_id: &v.client.id,
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: Some(
                    json!({ "grant": grant.id, "scopes": v.scopes, "client_name": v.client.name }),
                ),
            },
        )?;
        self.store
            .create_grant_with_code(&grant, &record, &event)
            .await?;
        let mut params = vec![("code", code.expose())];
        if let Some(state) = &v.state {
            params.push(("state", state.as_str()));
        }
        Ok(redirect_with(&v.redirect_uri, &params))
    }

    /// Deny: back to the client with `error=access_denied`.
    pub fn deny_authorize(&self, v: &ValidAuthorize) -> String {
        let mut params = vec![
            ("error", "access_denied"),
            ("error_description", "the user denied the request"),
        ];
        if let Some(state) = &v.state {
            params.push(("state", state.as_str()));
        }
        redirect_with(&v.redirect_uri, &params)
    }

    /// Revokes a grant (code or refresh-token replay): its refresh tokens and access tokens
    /// are refused from now on.
    pub(crate) async fn revoke_grant(&self, grant_id: &str, reason: &str) -> ServiceResult<()> {
        self.revoke_grant_as(&Caller::operator(), None, grant_id, reason)
            .await
    }

    /// [`Service::revoke_grant`] on behalf of `caller`; `user`, the person who consented,
    /// sees it in their own log.
    pub(crate) async fn revoke_grant_as(
        &self,
        caller: &Caller,
        user: Option<&latchkey_core::UserId>,
        grant_id: &str,
        reason: &str,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "oauth.grant_revoked",
                subject_kind: "grant",
                subject_id: grant_id,
                user,
                org: None,
                outcome: "success",
                details: Some(json!({ "reason": reason })),
            },
        )?;
        self.store
            .revoke_grant(grant_id, self.now(), &event)
            .await?;
        Ok(())
    }
}
