//! JWT access tokens (RFC 9068): issued by the token endpoint, verified by `/v1/me` and
//! introspection. They are not stored; a revoked one is kept on a deny-list until it expires.

use std::collections::HashSet;
use std::sync::RwLock;

use latchkey_core::oauth::{OrgScope, org_scope};
use latchkey_core::{Timestamp, TokenId};
use latchkey_store::{OAuthClient, Org};
use serde::Deserialize;
use serde_json::Value;

use crate::crypto::random_bytes;
use crate::error::{ServiceError, ServiceResult};
use crate::{Service, keys::JwtRejection};

/// RFC 9068 §4 "MUST" check the time claims; allow this much clock skew.
pub const LEEWAY_SECS: i64 = 30;
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Revoked access tokens (by `jti`) and revoked grants (by id), mirrored from storage.
#[derive(Default)]
pub struct DenyList {
    jtis: RwLock<HashSet<String>>,
    grants: RwLock<HashSet<String>>,
    /// The cache's deny version this list was loaded for (`Service::current_deny_list`).
    version: std::sync::atomic::AtomicU64,
}

impl DenyList {
    pub(crate) fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }
    pub(crate) fn set_version(&self, version: u64) {
        self.version
            .store(version, std::sync::atomic::Ordering::Release);
    }
    pub fn contains(&self, jti: &str) -> bool {
        self.jtis
            .read()
            .map(|set| set.contains(jti))
            .unwrap_or(true)
    }
    pub fn contains_grant(&self, grant: &str) -> bool {
        self.grants
            .read()
            .map(|set| set.contains(grant))
            .unwrap_or(true)
    }
    fn replace(&self, jtis: Vec<String>, grants: Vec<String>) {
        if let Ok(mut set) = self.jtis.write() {
            *set = jtis.into_iter().collect();
        }
        if let Ok(mut set) = self.grants.write() {
            *set = grants.into_iter().collect();
        }
    }
}

/// The claims Latchkey puts in (and reads from) an access token.
#[derive(Debug, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Value,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub org_id: Option<String>,
    /// The consent an authorization-code token came from.
    #[serde(default)]
    pub grant: Option<String>,
}

/// The claims an access token is signed with (RFC 9068 §2.2), in the order of their names.
#[derive(serde::Serialize)]
struct IssuedClaims<'a> {
    aud: &'a str,
    client_id: &'a str,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: Option<&'a str>,
    iat: i64,
    iss: &'a str,
    jti: &'a str,
    org_id: &'a str,
    scope: &'a str,
    sub: &'a str,
}

/// An access token just signed.
pub struct IssuedAccessToken {
    pub jwt: String,
    pub expires_in: u64,
    pub scope: Vec<String>,
    /// With the authorization-code and refresh-token grants, when the client may refresh.
    pub refresh_token: Option<String>,
}

impl Service {
    /// Signs an access token for `client` (client credentials: it acts as its organisation).
    pub(crate) fn issue_client_access_token(
        &self,
        client: &OAuthClient,
        scope: Vec<String>,
    ) -> ServiceResult<IssuedAccessToken> {
        self.issue_access_token(client, &client.id, None, scope)
    }

    /// Signs an access token: `sub` is the client (client credentials) or the user who
    /// consented (authorization code), whose ids can never collide (`cli_…`, `usr_…`).
    pub(crate) fn issue_access_token(
        &self,
        client: &OAuthClient,
        sub: &str,
        grant: Option<&str>,
        scope: Vec<String>,
    ) -> ServiceResult<IssuedAccessToken> {
        let now = self.clock.now();
        let key = self
            .keys
            .current(self.settings.signing_alg, now)
            .ok_or_else(|| ServiceError::Internal("no signing key can sign now".into()))?;
        let ttl = self.settings.access_token_ttl.as_secs();
        let iat = now.unix_timestamp();
        let jti = TokenId::from_random(random_bytes()?);
        let scope_text = scope.join(" ");
        let claims = IssuedClaims {
            aud: &self.settings.public_url,
            client_id: &client.id,
            exp: iat + i64::try_from(ttl).unwrap_or(900),
            grant,
            iat,
            iss: &self.settings.public_url,
            jti: jti.as_str(),
            org_id: client.org_id.as_str(),
            scope: &scope_text,
            sub,
        };
        let jwt = key.sign_jwt(ACCESS_TOKEN_TYP, &claims)?;
        Ok(IssuedAccessToken {
            jwt,
            expires_in: ttl,
            scope,
            refresh_token: None,
        })
    }

    /// Checks an access token's signature and claims (RFC 9068 §4) against our keys and clock.
    pub(crate) fn check_access_token(
        &self,
        jwt: &str,
        now: Timestamp,
    ) -> Result<AccessClaims, JwtRejection> {
        let (claims, _kid) = self
            .keys
            .verify::<AccessClaims>(jwt, &[ACCESS_TOKEN_TYP, "application/at+jwt"])?;
        let aud_ok = match &claims.aud {
            Value::String(a) => a == &self.settings.public_url,
            Value::Array(list) => list
                .iter()
                .any(|a| a.as_str() == Some(self.settings.public_url.as_str())),
            _ => false,
        };
        let now = now.unix_timestamp();
        if claims.iss != self.settings.public_url || !aud_ok || claims.iat > now + LEEWAY_SECS {
            return Err(JwtRejection::Invalid);
        }
        Ok(claims)
    }

    /// Reloads the deny-list from storage.
    pub(crate) async fn load_deny_list(&self) -> ServiceResult<()> {
        let now = self.now();
        let jtis = self.store.list_revoked_access_tokens(now).await?;
        // A grant revoked longer ago than an access token lives cannot deny anything any more.
        let since =
            now - self.settings.access_token_ttl.to_time() - time::Duration::seconds(LEEWAY_SECS);
        let grants = self.store.list_revoked_grants(since).await?;
        self.deny_list.replace(jtis, grants);
        Ok(())
    }

    /// Those of `scopes` the organisation (with these features) may still give: what a token
    /// is issued with, so that a feature removed after a client was made is obeyed.
    pub(crate) fn org_bounded(&self, scopes: &[String], features: &[String]) -> Vec<String> {
        scopes
            .iter()
            .filter(|s| org_scope(&self.types, features, s) == OrgScope::Allowed)
            .cloned()
            .collect()
    }

    /// The scopes an access token carries now: those of its claim that its organisation may
    /// still give (SPEC 3). A feature removed after issue takes its scopes away on the next
    /// request, because an organisation change empties the verification cache.
    pub(crate) fn bounded_scopes(&self, scope: &str, org: Option<&Org>) -> Vec<String> {
        let features = org.map(|o| o.features.as_slice()).unwrap_or_default();
        let claimed: Vec<String> = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        self.org_bounded(&claimed, features)
    }

    pub(crate) fn is_denied(&self, jti: &str, grant: Option<&str>) -> bool {
        self.deny_list.contains(jti) || grant.is_some_and(|g| self.deny_list.contains_grant(g))
    }
}
