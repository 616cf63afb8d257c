//! The one after-commit path (STYLE 13): what a committed write altered, applied in one place.
//!
//! The store names what each write altered as [`Change`] values in the write's own transaction
//! and calls the listener set here right after the commit; changes made by other processes
//! come through the change log (`Service::poll_changes`) into the same function. No service
//! method drops cache entries or wakes the outbox by hand.

use std::sync::Arc;

use latchkey_store::{Change, ChangeListener};
use tokio::sync::{Notify, watch};

use crate::verify::VerifyCache;

/// Applies committed changes: the verification cache drops exactly what they can alter, mails
/// written wake the outbox worker, and the invalidation streams are told.
pub(crate) fn apply(
    cache: &VerifyCache,
    outbox: &Notify,
    streams: &watch::Sender<u64>,
    changes: &[Change],
) {
    cache.apply(changes);
    if changes.contains(&Change::Outbox) {
        outbox.notify_one();
    }
    if changes.iter().any(Change::is_shared) {
        streams.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The listener the store calls after each commit of this process.
pub(crate) fn listener(
    cache: Arc<VerifyCache>,
    outbox: Arc<Notify>,
    streams: Arc<watch::Sender<u64>>,
) -> ChangeListener {
    Arc::new(move |changes: &[Change]| apply(&cache, &outbox, &streams, changes))
}
