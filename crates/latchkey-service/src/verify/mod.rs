//! Verification: the hot path that answers "who is calling, and may they?" for every bearer
//! token, and the cache that makes it fast without ever serving a stale "yes".
//!
//! - `cache`: cached answers by token hash, and the index that lets a committed change drop
//!   exactly the answers built from what it altered;
//! - `answer`: what a token's answer is (its owner's snapshot, the `/v1/me` body every door
//!   serves from);
//! - `usage`: uses recorded off the request path;
//! - `warm`: the cache filled with the live tokens at start.
//!
//! Time-dependent checks (pending, expiry) and the allowlist are made on every request, against
//! the cached answer. Changes made by another process (the operator CLI, other instances)
//! arrive through the store's change log or its notifications and are applied by the same
//! function as this process's own (`follow.rs`, `after_commit.rs`).

mod answer;
mod cache;
mod usage;
mod warm;

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_core::policy::SESSION_PREFIX;
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{Refusal, TokenSecret};

pub use answer::Verified;
use cache::TokenHash;
pub(crate) use cache::VerifyCache;
pub use usage::SecretUse;
pub(crate) use usage::UsageRecorder;

use crate::Service;
use crate::error::{ServiceError, ServiceResult};
use crate::keys::looks_like_jwt;

/// True when a JWT's header says `typ: at+jwt` (RFC 9068), without checking anything else.
fn is_access_token(jwt: &str) -> bool {
    jsonwebtoken::decode_header(jwt)
        .ok()
        .and_then(|h| h.typ)
        .is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        })
}

impl Service {
    /// Verifies a bearer token string from a request made from `ip`.
    pub async fn verify_bearer(&self, text: &str, ip: IpAddr) -> ServiceResult<Arc<Verified>> {
        let now = self.now();
        if let Err(e) = self.limits.check_token_ip(ip, now) {
            self.metrics.rate_limited();
            return Err(e);
        }
        let result = match self.lookup_token(text).await {
            Ok(entry) => self.admit(entry, ip, now).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.metrics.verified(),
            Err(ServiceError::Refused(r)) => {
                self.metrics.refused(r);
                self.limits.bad_token(ip, now);
            }
            Err(_) => {}
        }
        result
    }

    /// The checks a cached answer cannot hold: the clock and the caller's address.
    async fn admit(
        &self,
        entry: Arc<Verified>,
        ip: IpAddr,
        now: latchkey_core::Timestamp,
    ) -> ServiceResult<Arc<Verified>> {
        entry.check(now).map_err(ServiceError::Refused)?;
        if !entry.allowed_ips.is_empty() && !entry.allowed_ips.iter().any(|net| net.contains(&ip)) {
            self.note_refused_address(&entry, ip, now).await;
            return Err(ServiceError::Refused(Refusal::IpNotAllowed));
        }
        self.note_use(&entry, now, ip);
        Ok(entry)
    }

    /// What a presented string is, from the cache or from storage: not yet checked against the
    /// clock or the caller's address.
    pub(crate) async fn lookup_token(&self, text: &str) -> ServiceResult<Arc<Verified>> {
        // The string's own proof first (checksum, or signature on a cache miss): a malformed or
        // forged token never reaches storage.
        let is_jwt = looks_like_jwt(text);
        let hash = if is_jwt {
            TokenSecret::hash_of(text)
        } else {
            let parsed =
                ParsedToken::parse(text).map_err(|_| ServiceError::Refused(Refusal::Malformed))?;
            if parsed.prefix() == SESSION_PREFIX || self.types.by_prefix(parsed.prefix()).is_none()
            {
                return Err(ServiceError::Refused(Refusal::Unknown));
            }
            parsed.hash()
        };
        let key = TokenHash(*hash.as_bytes());
        if let Some(entry) = self.cache.get(&key) {
            return Ok(entry);
        }
        let generation = self.cache.current_generation();
        let entry = if is_jwt && is_access_token(text) {
            self.current_deny_list().await?;
            let claims = self
                .check_access_token(text, self.clock.now())
                .map_err(|_| ServiceError::Refused(Refusal::Malformed))?;
            self.access_token_answer(claims).await?
        } else {
            if is_jwt {
                let (claims, _kid) = self
                    .keys
                    .verify::<serde_json::Value>(text, &["JWT"])
                    .map_err(|_| ServiceError::Refused(Refusal::Malformed))?;
                if claims["iss"].as_str() != Some(self.settings.public_url.as_str()) {
                    return Err(ServiceError::Refused(Refusal::Malformed));
                }
            }
            let token = self
                .store
                .find_token_by_hash(&hash)
                .await?
                .ok_or(ServiceError::Refused(Refusal::Unknown))?;
            self.stored_answer(token).await?
        };
        let entry = Arc::new(entry);
        self.cache.insert_if_current(generation, key, entry.clone());
        Ok(entry)
    }

    /// RFC 7662: the fields of an active token, or `None` when it would be refused now.
    pub(crate) async fn introspect_token(
        &self,
        text: &str,
    ) -> ServiceResult<Option<Arc<Verified>>> {
        match self.lookup_token(text).await {
            Ok(entry) if entry.check(self.now()).is_ok() => Ok(Some(entry)),
            Ok(_) | Err(ServiceError::Refused(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The deny-list as of the latest change: reloaded first when a change moved it.
    pub(crate) async fn current_deny_list(&self) -> ServiceResult<()> {
        let wanted = self.cache.deny_version();
        // Blind, the version cannot be trusted: every lookup reads the list.
        if self.deny_list.version() != wanted || self.cache.is_blind() {
            self.load_deny_list().await?;
            self.deny_list.set_version(wanted);
        }
        Ok(())
    }
}
