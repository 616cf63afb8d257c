//! Following what other processes commit (SPEC 7): the change log, read by sequence number,
//! and on PostgreSQL its notifications, which announce each change as it commits. Both end in
//! the one after-commit path (`after_commit::apply`), like this process's own changes.
//!
//! Where changes are announced, the verification cache serves nothing until the channel is
//! listening and the log is caught up, and drops everything the moment the channel is lost:
//! an instance that cannot hear the others gives no answer from memory, so never a stale yes.
//! The log is still polled every quarter of a second as a second line (and on SQLite, where a
//! CLI beside the server shares the file, it is the only one, with the control socket).

use std::sync::Arc;
use std::time::Duration;

use latchkey_store::Change;
use tokio::sync::watch;

use crate::Service;

/// The longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Service {
    /// Applies what other processes committed (the store's change log) exactly like this
    /// process's own changes. A log that cannot be read, or that was pruned past what this
    /// process saw, drops everything: with no way to know, the safe answer is to forget.
    pub async fn poll_changes(&self) {
        const BATCH: u32 = 1_000;
        let seen = self.cache.change_seen();
        let (changes, last) = match self.store.list_changes_since(seen, BATCH).await {
            Ok(list) if list.is_empty() => return,
            Ok(list) => {
                let first = list.first().map_or(seen, |(seq, _)| *seq);
                let last = list.last().map_or(seen, |(seq, _)| *seq);
                let behind = first > seen + 1 || list.len() == BATCH as usize;
                let changes: Vec<Change> = if behind {
                    vec![Change::All]
                } else {
                    list.into_iter().map(|(_, c)| c).collect()
                };
                (changes, last)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the change log; the cache is dropped");
                self.cache.invalidate();
                return;
            }
        };
        self.apply_followed(&changes, last).await;
    }

    /// Applies changes announced on the channel: those that follow on from what this process
    /// has applied go straight in; a gap (or anything unplaceable) is read from the log.
    async fn apply_announced(&self, announced: Vec<(i64, Change)>) {
        let mut seen = self.cache.change_seen();
        let mut changes = Vec::new();
        for (seq, change) in announced {
            if seq <= seen {
                continue;
            }
            if seq != seen + 1 {
                if !changes.is_empty() {
                    self.apply_followed(&changes, seen).await;
                }
                self.poll_changes().await;
                return;
            }
            changes.push(change);
            seen = seq;
        }
        if !changes.is_empty() {
            self.apply_followed(&changes, seen).await;
        }
    }

    async fn apply_followed(&self, changes: &[Change], last: i64) {
        crate::after_commit::apply(
            &self.cache,
            &self.outbox.waker(),
            &self.change_signal,
            changes,
        );
        self.cache.note_change_seen(last);
        // Said at once, not at the next beat: a kill switch elsewhere is waiting for it.
        self.heartbeat().await;
        if changes
            .iter()
            .any(|c| matches!(c, Change::Keys | Change::All))
            && let Err(e) = self.load_signing_keys().await
        {
            tracing::warn!(error = %e, "could not reload the signing keys");
        }
    }

    /// Waits (at most `within`) until the verification cache serves: at once where changes
    /// are not announced, once listening where they are.
    pub async fn cache_on(&self, within: Duration) {
        let started = tokio::time::Instant::now();
        while self.cache.is_blind() && started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens to the store's change channel until `shutdown`, where the backend has one: the
    /// cache is trusted only while listening (see the module's comment). Returns at once on a
    /// backend without a channel.
    pub async fn follow_changes(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.store.feeds_changes() {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let subscribed = tokio::select! {
                s = self.store.subscribe_changes() => s,
                _ = shutdown.changed() => return,
            };
            let mut feed = match subscribed {
                Ok(Some(feed)) => feed,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for changes; the cache stays off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            // Listening: whatever commits from now on is announced; what came before, while
            // deaf, is in the log. Caught up, the cache may serve again.
            self.poll_changes().await;
            if let Err(e) = self.load_signing_keys().await {
                tracing::warn!(error = %e, "could not reload the signing keys");
            }
            if self.cache.is_blind() {
                self.cache.see();
                tracing::info!("listening for changes; the verification cache is on");
            }
            self.metrics.change_feed(true);
            let lost = loop {
                let next = tokio::select! {
                    n = feed.next() => n,
                    _ = shutdown.changed() => return,
                };
                match next {
                    Ok(announced) => self.apply_announced(announced).await,
                    Err(e) => break e,
                }
            };
            self.cache.go_blind();
            self.metrics.change_feed(false);
            tracing::warn!(error = %lost, "lost the change channel; the verification cache is off until it is back");
        }
    }
}
