//! Recording uses off the request path: a request notes its use in memory; the flush writes
//! the uses in one transaction a second, ends the old tokens of first-use rotations, and looks
//! up only the addresses a token had not been used from before (new-address alerts).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use latchkey_core::{Timestamp, TokenId};
use latchkey_store::TokenUsage;
use serde_json::json;

use super::answer::{USAGE_GRANULARITY_SECS, Verified, ip_hash};
use crate::error::ServiceResult;
use crate::{Caller, Service};

/// Pairs held for the next flush; beyond this a pair waits for its next recorded use.
const MAX_PENDING_ADDRESSES: usize = 100_000;
/// Refused (token, address) pairs remembered before the memory starts over.
const MAX_NOTED_REFUSALS: usize = 10_000;

/// Uses waiting to be written, and first-use rotations waiting to end their old token.
#[derive(Default)]
pub(crate) struct UsageRecorder {
    /// The latest use of each token, for `last_used_at`/`last_used_ip`.
    pending: Mutex<HashMap<TokenId, TokenUsage>>,
    /// Every (token, address) pair used since the last flush, not only the latest: one use
    /// from a stolen token's new address must not hide behind the owner's traffic.
    addresses: Mutex<HashMap<(TokenId, String), Timestamp>>,
    first_use: Mutex<Vec<TokenId>>,
    /// Refusals by allowlist already written to the audit log (see `note_refused_address`).
    refusals_noted: Mutex<HashSet<(TokenId, IpAddr)>>,
    /// The latest use of each client secret, by its id.
    secrets: Mutex<HashMap<String, Timestamp>>,
}

/// A client secret's use, as the token endpoint's cached authentication carries it: noted at
/// most once in ten minutes, like a token's (the console shows it to the minute it matters:
/// which secret is still in use before one is removed).
#[derive(Debug)]
pub struct SecretUse {
    id: String,
    last_at: AtomicI64,
}

impl SecretUse {
    pub(crate) fn new(id: String, last: Option<Timestamp>) -> Self {
        Self {
            id,
            last_at: AtomicI64::new(last.map_or(i64::MIN / 2, |t| t.unix_timestamp())),
        }
    }
}

/// The `token_addresses` row that says a refusal from `ip` was audited once for its token. It
/// shares the table of the addresses a token was used from, so that the mark, the event and
/// its mail are one transaction; the prefix keeps it apart from any address.
fn refusal_mark(ip: IpAddr) -> String {
    format!("refused:{ip}")
}

impl Service {
    /// Notes that a client authenticated with `secret` (nothing for a public client).
    pub(crate) fn note_secret_use(&self, secret: Option<&SecretUse>, now: Timestamp) {
        let Some(secret) = secret else {
            return;
        };
        let at = now.unix_timestamp();
        let last = secret.last_at.load(Ordering::Relaxed);
        if at - last < USAGE_GRANULARITY_SECS
            || secret
                .last_at
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(mut pending) = self.usage.secrets.lock() {
            pending.insert(secret.id.clone(), now);
        }
    }

    pub(super) fn note_use(&self, entry: &Verified, now: Timestamp, ip: IpAddr) {
        let Some(uses) = entry.uses() else {
            return;
        };
        let (record, other_address) = uses.should_record(now.unix_timestamp(), ip_hash(ip));
        if record {
            let ip = ip.to_string();
            // The same address as last time is known already: the flush need not look it up.
            if other_address {
                let queued = match self.usage.addresses.lock() {
                    Ok(mut addresses) if addresses.len() < MAX_PENDING_ADDRESSES => {
                        addresses
                            .entry((entry.token_id.clone(), ip.clone()))
                            .or_insert(now);
                        true
                    }
                    _ => false,
                };
                // Not queued (too many at once): the address must not pass for known, or its
                // next use would not be queued either and a new address would go unreported.
                if !queued {
                    uses.forget_address();
                }
            }
            if let Ok(mut pending) = self.usage.pending.lock() {
                pending.insert(
                    entry.token_id.clone(),
                    TokenUsage {
                        token_id: entry.token_id.clone(),
                        at: now,
                        ip,
                    },
                );
            }
        }
        if let Some(old) = &uses.ends_on_first_use
            && uses.first_use()
            && let Ok(mut list) = self.usage.first_use.lock()
        {
            list.push(TokenId::clone(old));
        }
    }

    /// The first refusal from an address is written to the owner's audit log (and, with
    /// notifications, mailed): once per address, not once per request. The "seen" mark, the
    /// event and the mail are one transaction, so a crash cannot keep the mark and lose the mail.
    pub(super) async fn note_refused_address(&self, entry: &Verified, ip: IpAddr, now: Timestamp) {
        // Repeated refusals from one address (a misconfigured client, a scan) stop here, in
        // memory, without building the event or touching storage.
        let key = (entry.token_id.clone(), ip);
        match self.usage.refusals_noted.lock() {
            Ok(noted) if noted.contains(&key) => return,
            Ok(mut noted) => {
                if noted.len() >= MAX_NOTED_REFUSALS {
                    noted.clear();
                }
                noted.insert(key.clone());
            }
            Err(_) => {}
        }
        let forget = || {
            if let Ok(mut noted) = self.usage.refusals_noted.lock() {
                noted.remove(&key);
            }
        };
        let event = self.event(
            &Caller::anonymous(Some(ip)),
            crate::events::EventSpec {
                action: "token.ip_refused",
                subject_kind: "token",
                subject_id: entry.token_id.as_str(),
                user: crate::tokens::owner_user(&entry.owner),
                org: crate::tokens::owner_org(&entry.owner),
                outcome: "ip_not_allowed",
                details: Some(json!({ "ip": ip.to_string() })),
            },
        );
        let Ok(mut event) = event else {
            return;
        };
        if let Err(e) = self
            .attach_ip_refused_mail(&mut event, &entry.token_id, &ip.to_string())
            .await
        {
            // Without its mail the event is not written either: the next refusal tries again.
            tracing::warn!(error = %e, "could not address the refused-address mail");
            forget();
            return;
        }
        if let Err(e) = self
            .store
            .record_token_address(&entry.token_id, &refusal_mark(ip), now, &event)
            .await
        {
            tracing::warn!(error = %e, "could not record a refused address");
            forget();
        }
    }

    /// Writes the uses noted since the last flush, in one transaction, and ends the old tokens
    /// of first-use rotations whose new token has now been used.
    pub async fn flush_usage(&self) {
        let batch: Vec<TokenUsage> = match self.usage.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(_, u)| u).collect(),
            Err(_) => Vec::new(),
        };
        let addresses: Vec<TokenUsage> = match self.usage.addresses.lock() {
            Ok(mut addresses) => addresses
                .drain()
                .map(|((token_id, ip), at)| TokenUsage { token_id, at, ip })
                .collect(),
            Err(_) => Vec::new(),
        };
        // New addresses are noted before the uses are written; what fails or is left over waits
        // for the next flush (noting an address twice is harmless: it is recorded once).
        let requeue = |uses: Vec<TokenUsage>| {
            if let Ok(mut pending) = self.usage.addresses.lock() {
                for u in uses {
                    pending.entry((u.token_id, u.ip)).or_insert(u.at);
                }
            }
        };
        match self.note_new_addresses(&addresses).await {
            Ok(later) => requeue(later),
            Err(e) => {
                tracing::warn!(error = %e, count = addresses.len(), "could not note new addresses; will retry");
                requeue(addresses);
            }
        }
        let written = self
            .store
            .record_token_usage(&batch)
            .await
            .map_err(crate::ServiceError::from);
        if let Err(e) = written {
            tracing::warn!(error = %e, count = batch.len(), "could not record token usage; will retry");
            if let Ok(mut pending) = self.usage.pending.lock() {
                for u in batch {
                    pending.entry(u.token_id.clone()).or_insert(u);
                }
            }
        }
        let secrets: Vec<(String, Timestamp)> = match self.usage.secrets.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => Vec::new(),
        };
        if let Err(e) = self.store.record_client_secret_usage(&secrets).await {
            tracing::warn!(error = %e, count = secrets.len(), "could not record client secret usage; will retry");
            if let Ok(mut pending) = self.usage.secrets.lock() {
                for (id, at) in secrets {
                    pending.entry(id).or_insert(at);
                }
            }
        }
        let ended: Vec<TokenId> = match self.usage.first_use.lock() {
            Ok(mut list) => std::mem::take(&mut *list),
            Err(_) => Vec::new(),
        };
        for old in ended {
            if let Err(e) = self.end_rotated_token(&old).await {
                tracing::warn!(error = %e, token.id = %old, "could not end a rotated token; will retry");
                if let Ok(mut list) = self.usage.first_use.lock() {
                    list.push(old);
                }
            }
        }
    }

    async fn end_rotated_token(&self, old: &TokenId) -> ServiceResult<()> {
        if let Some(token) = self.store.find_token(old).await?
            && token.revoked_at.is_none()
        {
            self.revoke_token(&Caller::operator(), &token, "rotation_first_use")
                .await?;
        }
        Ok(())
    }
}
