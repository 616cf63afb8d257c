//! `GET /v1/invalidations` (SPEC 8): every committed change, as it commits, for resource
//! servers that cache verifications (the `latchkey-verifier` crate). The events are the change
//! log's own values (`latchkey_store::Change`), numbered by the log's sequence, so a stream
//! resumes with `Last-Event-ID` on this instance or any other sharing the database.

use latchkey_store::{Change, Owner};
use serde_json::{Value, json};

use crate::Service;
use crate::error::ServiceResult;

/// What a stream sends next.
#[derive(Debug)]
pub enum Next {
    /// Changes after the caller's position, oldest first, with their sequence numbers.
    Changes(Vec<(i64, Value)>),
    /// The position is no longer in the log (pruned, or from another database): the caller
    /// must drop everything it cached; the stream goes on from `latest`.
    Reset { latest: i64 },
}

/// A change as the stream says it: a small JSON object naming what moved. Never a secret or
/// a hash.
pub fn change_json(change: &Change) -> Value {
    let owner = |o: &Owner| json!({ "kind": o.kind(), "id": o.id() });
    match change {
        Change::Token(id) => json!({ "kind": "token", "token": id }),
        Change::OwnerTokens(o, t) => {
            json!({ "kind": "owner_tokens", "owner": owner(o), "type": t })
        }
        Change::User(id) => json!({ "kind": "user", "user": id }),
        Change::Org(id) => json!({ "kind": "organisation", "organisation": id }),
        Change::Membership(org, user) => {
            json!({ "kind": "membership", "organisation": org, "user": user })
        }
        Change::Client(id) => json!({ "kind": "client", "client": id }),
        Change::AccessTokens => json!({ "kind": "access_tokens" }),
        Change::Keys => json!({ "kind": "keys" }),
        Change::Outbox => json!({ "kind": "outbox" }),
        Change::All => json!({ "kind": "all" }),
    }
}

const BATCH: u32 = 500;

impl Service {
    /// The log's head: where a new stream starts.
    pub async fn latest_change(&self) -> ServiceResult<i64> {
        Ok(self.store.latest_change().await?)
    }

    /// The changes after `seq` (at most a batch), or a reset when `seq` is out of the log.
    pub async fn changes_after(&self, seq: i64) -> ServiceResult<Next> {
        let latest = self.store.latest_change().await?;
        if seq > latest {
            return Ok(Next::Reset { latest });
        }
        let list = self.store.list_changes_since(seq, BATCH).await?;
        if list.first().is_some_and(|(first, _)| *first > seq + 1) {
            return Ok(Next::Reset { latest });
        }
        Ok(Next::Changes(
            list.into_iter()
                .filter(|(_, c)| c.is_shared())
                .map(|(n, c)| (n, change_json(&c)))
                .collect(),
        ))
    }

    /// Moves whenever a change may have been committed (here, or seen in the log from another
    /// process): streams wait on it instead of polling.
    pub fn change_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.change_signal.subscribe()
    }
}
