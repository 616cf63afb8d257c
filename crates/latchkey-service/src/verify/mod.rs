//! Verification: the hot path that answers "who is calling, and may they?" for every bearer
//! token, and the cache that makes it fast without ever serving a stale "yes".
//!
//! - `cache`: cached answers by token hash, and the index that lets a committed change drop
//!   exactly the answers built from what it altered;
//! - `answer`: what a token's answer is (its owner's snapshot, the `/v1/me` body every door
//!   serves from);
//! - `usage`: uses recorded off the request path.
//!
//! Time-dependent checks (pending, expiry) and the allowlist are made on every request, against
//! the cached answer. Changes made by another process (the operator CLI, other instances)
//! arrive through the store's change log or its notifications and are applied by the same
//! function as this process's own (`follow.rs`, `after_commit.rs`).

mod answer;
mod cache;
mod usage;

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_core::policy::SESSION_PREFIX;
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{Refusal, TokenSecret};

pub use answer::Verified;
use cache::TokenHash;
pub(crate) use cache::VerifyCache;
pub(crate) use usage::UsageRecorder;

use crate::Service;
use crate::error::{ServiceError, ServiceResult};
use crate::keys::looks_like_jwt;

/// Tokens read from storage at a time when the cache is warmed.
const WARM_PAGE: usize = 2_000;
/// Times a page is read again because a change came while it was built.
const WARM_RETRIES: u32 = 3;

/// A warm-up page as read: the cache generation before the read, and the page.
type PageRead = (u64, ServiceResult<latchkey_store::LiveTokens>);

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

    /// Fills the verification cache with live tokens (up to `limit`), so that a restart (a
    /// deploy, a new instance) does not send the first request of every token to storage. Runs
    /// beside serving, a page at a time; a page read before a change is not inserted after it
    /// (the generation check) but read again.
    pub async fn warm_cache(&self, limit: u32) -> ServiceResult<usize> {
        self.metrics.warming(true);
        let result = self.warm_pages(limit).await;
        self.metrics.warming(false);
        result
    }

    async fn warm_pages(&self, limit: u32) -> ServiceResult<usize> {
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(cache::MAX_CACHED / 2);
        let mut warmed = 0;
        let mut after: Option<String> = None;
        let mut retries = 0;
        // The next page is read while this one is turned into answers: storage (its own
        // thread) and the answers (a runtime thread) work at once, which halves the warm-up.
        let mut prefetched: Option<tokio::task::JoinHandle<PageRead>> = None;
        while warmed < limit {
            // Blind (another instance's changes cannot be heard), nothing may go in: reading
            // on would only cost the database; the first requests fill the cache later.
            if self.cache.is_blind() {
                break;
            }
            let want = (limit - warmed).min(WARM_PAGE);
            let (generation, page) = match prefetched.take() {
                Some(read) => read
                    .await
                    .map_err(|e| ServiceError::Internal(format!("warm-up read: {e}")))?,
                None => self.read_warm_page(after.clone(), want).await,
            };
            let page = page?;
            let Some(next) = page.next else {
                break;
            };
            let ahead = (limit - warmed)
                .saturating_sub(page.tokens.len())
                .min(WARM_PAGE);
            if ahead > 0 {
                prefetched = Some(tokio::spawn(self.read_warm_page(Some(next.clone()), ahead)));
            }
            let mut entries = Vec::with_capacity(page.tokens.len());
            for (hash, token) in page.tokens {
                entries.push((TokenHash(hash), Arc::new(self.stored_answer(token).await?)));
            }
            if self.cache.current_generation() != generation && retries < WARM_RETRIES {
                retries += 1;
                // A change came meanwhile: this page again, and the page after it too.
                if let Some(read) = prefetched.take() {
                    read.abort();
                }
                continue;
            }
            // After a few tries (constant changes) the page is left to the first requests:
            // only what went in is counted.
            retries = 0;
            let mut inserted = 0;
            for (hash, entry) in entries {
                if self.cache.insert_if_current(generation, hash, entry) {
                    inserted += 1;
                }
            }
            warmed += inserted;
            self.metrics.warmed(inserted);
            after = Some(next);
        }
        if let Some(read) = prefetched {
            read.abort();
        }
        Ok(warmed)
    }

    /// One page of the warm-up with the cache generation from before it was read (what the
    /// answers built from it are inserted under). A future owning what it needs, so that it
    /// can run as a task of its own.
    fn read_warm_page(
        &self,
        after: Option<String>,
        want: usize,
    ) -> impl std::future::Future<Output = PageRead> + Send + 'static {
        let store = self.store.clone();
        let generation = self.cache.current_generation();
        let now = self.now();
        let want = u32::try_from(want).unwrap_or(0);
        async move {
            let page = store
                .list_live_tokens_with_hashes(now, after.as_deref(), want)
                .await
                .map_err(ServiceError::from);
            (generation, page)
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
