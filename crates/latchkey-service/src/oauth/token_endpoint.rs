//! `POST /oauth2/token`, `/oauth2/introspect` and `/oauth2/revoke`: client authentication
//! (exactly one method: HTTP Basic or form fields), then the grant or the query.

use std::collections::BTreeMap;
use std::sync::Arc;

use latchkey_core::Timestamp;
use latchkey_core::oauth::{GrantType, OAuthErrorCode, parse_form};
use latchkey_core::token_string::ParsedToken;
use latchkey_store::OAuthClient;
use serde_json::json;

use crate::Service;
use crate::oauth::access_tokens::IssuedAccessToken;
use crate::oauth::clients::CLIENT_SECRET_PREFIX;
use crate::oauth::{OAuthFailure, OAuthResult, oauth_err};

/// Credentials from an `Authorization: Basic` header, already decoded (RFC 6749 §2.3.1).
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    pub client_id: String,
    pub client_secret: String,
}

/// A client that proved who it is, with what the token endpoint needs to know about its
/// organisation (cached with it; any change to either drops the cache).
#[derive(Debug)]
pub struct AuthenticatedClient {
    pub client: OAuthClient,
    pub org_enabled: bool,
    /// The organisation's features: they bound the scopes a token is issued with (SPEC 3).
    pub org_features: Vec<String>,
    /// The secret it authenticated with (none for a public client), whose last use is
    /// recorded.
    pub secret: Option<crate::verify::SecretUse>,
}

fn invalid_client() -> OAuthFailure {
    // Unknown client and wrong secret answer identically (SECURITY.md).
    oauth_err(
        OAuthErrorCode::InvalidClient,
        "client authentication failed",
    )
}

impl Service {
    /// Authenticates the client of a request: exactly one method, and the same answer for an
    /// unknown client and a wrong secret. A public client identifies itself with `client_id`.
    pub(crate) async fn authenticate_client(
        &self,
        basic: Option<&BasicCredentials>,
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<Arc<AuthenticatedClient>> {
        let form_id = form.get("client_id");
        let form_secret = form.get("client_secret");
        let (client_id, secret) = match (basic, form_secret) {
            (Some(_), Some(_)) => {
                return Err(oauth_err(
                    OAuthErrorCode::InvalidRequest,
                    "use exactly one client authentication method (Basic or form fields)",
                ));
            }
            (Some(b), None) => {
                if form_id.is_some_and(|id| id != &b.client_id) {
                    return Err(oauth_err(
                        OAuthErrorCode::InvalidRequest,
                        "client_id differs from the Basic credentials",
                    ));
                }
                // SPEC 3: a public client may identify itself by Basic with an empty password
                // (requests-oauthlib's default); a confidential client's empty password then
                // finds no public client and fails like any wrong secret.
                let secret = Some(b.client_secret.as_str()).filter(|s| !s.is_empty());
                (b.client_id.as_str(), secret)
            }
            (None, Some(secret)) => {
                let id = form_id.ok_or_else(|| {
                    oauth_err(
                        OAuthErrorCode::InvalidRequest,
                        "client_secret without client_id",
                    )
                })?;
                (id.as_str(), Some(secret.as_str()))
            }
            (None, None) => match form_id {
                Some(id) => (id.as_str(), None),
                None => {
                    return Err(oauth_err(
                        OAuthErrorCode::InvalidClient,
                        "client authentication is required",
                    ));
                }
            },
        };
        let now = self.now();
        let Some(secret) = secret else {
            // A public client: known, live, and without secrets.
            let client = self
                .store
                .find_client(client_id)
                .await?
                .filter(|c| c.deleted_at.is_none() && !c.is_confidential);
            let client = client.ok_or_else(invalid_client)?;
            let org = self.store.find_org(&client.org_id).await?;
            return Ok(Arc::new(AuthenticatedClient {
                client,
                org_enabled: org.as_ref().is_some_and(|o| o.api_tokens_enabled),
                org_features: org.map(|o| o.features).unwrap_or_default(),
                secret: None,
            }));
        };
        let hash = match ParsedToken::parse(secret) {
            Ok(parsed) if parsed.prefix() == CLIENT_SECRET_PREFIX => parsed.hash(),
            _ => return Err(self.client_auth_failed(client_id, now)),
        };
        if let Some(found) = self.cache.get_client(hash.as_bytes()) {
            if found.client.id == client_id {
                self.note_secret_use(found.secret.as_ref(), now);
                return Ok(found);
            }
            return Err(self.client_auth_failed(client_id, now));
        }
        let generation = self.cache.current_generation();
        let record = match self.store.find_client_secret(&hash).await? {
            Some(record) if record.client_id == client_id => record,
            _ => return Err(self.client_auth_failed(client_id, now)),
        };
        let client = match self.store.find_client(&record.client_id).await? {
            Some(c) if c.deleted_at.is_none() => c,
            _ => return Err(self.client_auth_failed(client_id, now)),
        };
        let org = self.store.find_org(&client.org_id).await?;
        let found = Arc::new(AuthenticatedClient {
            client,
            org_enabled: org.as_ref().is_some_and(|o| o.api_tokens_enabled),
            org_features: org.map(|o| o.features).unwrap_or_default(),
            secret: Some(crate::verify::SecretUse::new(
                record.id,
                record.last_used_at,
            )),
        });
        self.note_secret_use(found.secret.as_ref(), now);
        self.cache
            .insert_client_if_current(generation, *hash.as_bytes(), found.clone());
        Ok(found)
    }

    /// Counts a failed authentication; past the limit, the client's failures wait.
    fn client_auth_failed(&self, client_id: &str, now: Timestamp) -> OAuthFailure {
        match self.limits.client_auth_failure(client_id, now) {
            Some(wait) => OAuthFailure::SlowDown {
                retry_after_secs: wait,
            },
            None => invalid_client(),
        }
    }

    /// `POST /oauth2/token` with the raw form body.
    pub async fn token(
        &self,
        basic: Option<&BasicCredentials>,
        body: &[u8],
    ) -> OAuthResult<IssuedAccessToken> {
        let form = parse_form(body)?;
        let grant = form
            .get("grant_type")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "grant_type is required"))?;
        let grant = GrantType::parse(grant).ok_or_else(|| {
            oauth_err(
                OAuthErrorCode::UnsupportedGrantType,
                format!("the grant type '{grant}' is not supported"),
            )
        })?;
        let client = self.authenticate_client(basic, &form).await?;
        if !client
            .client
            .grant_types
            .iter()
            .any(|g| g == grant.as_str())
        {
            return Err(oauth_err(
                OAuthErrorCode::UnauthorizedClient,
                format!("this client may not use {}", grant.as_str()),
            ));
        }
        if !client.org_enabled {
            return Err(oauth_err(
                OAuthErrorCode::UnauthorizedClient,
                "API access is switched off for the client's organisation",
            ));
        }
        let features = client.org_features.as_slice();
        match grant {
            GrantType::ClientCredentials => {
                self.grant_client_credentials(&client.client, features, &form)
            }
            GrantType::AuthorizationCode => {
                self.grant_authorization_code(&client.client, features, &form)
                    .await
            }
            GrantType::RefreshToken => {
                self.grant_refresh_token(&client.client, features, &form)
                    .await
            }
        }
    }

    /// A confidential client with the `introspect` permission (an operator grants it): the
    /// callers of introspection and of `/v1/invalidations`.
    pub async fn authenticate_introspector(
        &self,
        basic: Option<&BasicCredentials>,
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<Arc<AuthenticatedClient>> {
        let client = self.authenticate_client(basic, form).await?;
        if !client.client.can_introspect || !client.client.is_confidential {
            return Err(oauth_err(
                OAuthErrorCode::InvalidClient,
                "this client is not allowed to introspect tokens",
            ));
        }
        Ok(client)
    }

    /// `POST /oauth2/introspect` (RFC 7662): for clients with the `introspect` permission. The
    /// answer is JSON, serialised (a cached token's is built once).
    pub async fn introspect(
        &self,
        basic: Option<&BasicCredentials>,
        body: &[u8],
    ) -> OAuthResult<bytes::Bytes> {
        let form = parse_form(body)?;
        self.authenticate_introspector(basic, &form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "token is required"))?;
        Ok(match self.introspect_token(token).await? {
            Some(entry) => entry.introspection(&self.settings.public_url),
            None => bytes::Bytes::from_static(br#"{"active":false}"#),
        })
    }

    /// `POST /oauth2/revoke` (RFC 7009): an access token of this client goes on the deny-list
    /// until it expires. Unknown or foreign tokens answer the same `200` (§2.2).
    pub async fn revoke_oauth_token(
        &self,
        basic: Option<&BasicCredentials>,
        body: &[u8],
    ) -> OAuthResult<()> {
        let form = parse_form(body)?;
        let client = self.authenticate_client(basic, &form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| oauth_err(OAuthErrorCode::InvalidRequest, "token is required"))?;
        // A refresh token (RFC 7009 §2.1): revoking it ends its grant, and with it every access
        // token the grant produced.
        if let Ok(parsed) = latchkey_core::token_string::ParsedToken::parse(token) {
            if parsed.prefix() == super::grant_types::refresh_token::REFRESH_TOKEN_PREFIX
                && let Some(grant_id) = self.store.find_refresh_grant(&parsed.hash()).await?
            {
                let grant = self.store.find_grant(&grant_id).await?;
                if grant.is_some_and(|g| g.client_id == client.client.id) {
                    self.revoke_grant(&grant_id, "refresh_token_revoked")
                        .await?;
                }
            }
            return Ok(());
        }
        let Ok(claims) = self.check_access_token(token, self.clock.now()) else {
            return Ok(());
        };
        if claims.client_id != client.client.id {
            return Ok(());
        }
        let expires_at = Timestamp::from_unix_timestamp(claims.exp).unwrap_or_else(|_| self.now());
        let event = self.event(
            &crate::Caller::anonymous(None),
            crate::events::EventSpec {
                action: "access_token.revoked",
                subject_kind: "client",
                subject_id: &client.client.id,
                user: None,
                org: Some(&client.client.org_id),
                outcome: "success",
                details: Some(json!({ "jti": claims.jti })),
            },
        )?;
        self.store
            .revoke_access_token(&claims.jti, expires_at, Some(&event))
            .await?;
        Ok(())
    }
}
