//! The cache filled with the live tokens when a process starts, so that a restart (a deploy, a
//! new instance) does not send the first request of every token to storage.

use std::sync::Arc;

use super::cache::{self, TokenHash};
use crate::Service;
use crate::error::{ServiceError, ServiceResult};

/// Tokens read from storage at a time.
const PAGE: usize = 2_000;
/// Times a page is read again because a change came while it was built.
const RETRIES: u32 = 3;

/// A page as read: the cache generation before the read, and the page.
type PageRead = (u64, ServiceResult<latchkey_store::LiveTokens>);

impl Service {
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
            let want = (limit - warmed).min(PAGE);
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
            let ahead = (limit - warmed).saturating_sub(page.tokens.len()).min(PAGE);
            if ahead > 0 {
                prefetched = Some(tokio::spawn(self.read_warm_page(Some(next.clone()), ahead)));
            }
            let mut entries = Vec::with_capacity(page.tokens.len());
            for (hash, token) in page.tokens {
                entries.push((TokenHash(hash), Arc::new(self.stored_answer(token).await?)));
            }
            if self.cache.current_generation() != generation && retries < RETRIES {
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
}
