//! Verification: the hot path that answers "who is calling, and may they?" for every bearer
//! token, and the cache that makes it fast without ever serving a stale "yes".
//!
//! A cached entry holds what the store said about a token and its owner (and the `/v1/me`
//! body, serialised once). Time-dependent checks (pending, expiry) are made on every request.
//! Each entry records what it was built from (`Dep`); a committed change (`Change`, from the
//! one after-commit path) drops exactly the entries built from what it altered; a generation
//! counter stops a lookup that started before the change from inserting its stale result
//! afterwards. Changes made by another process (the operator CLI) arrive through the store's
//! change log (`poll_changes`) and are applied by the same function.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use ipnet::IpNet;
use latchkey_core::policy::SESSION_PREFIX;
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{OrgId, Refusal, Timestamp, TokenId, TokenSecret, TokenStatus};

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
use latchkey_store::{Change, Owner, TokenRecord, TokenUsage};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::error::{ServiceError, ServiceResult};
use crate::{Caller, Service};

/// Entries beyond this are not worth keeping: the cache is dropped and refilled.
const MAX_CACHED: usize = 1_000_000;
/// `last_used_at` is written when the address changes or at most once a minute per token.
const USAGE_GRANULARITY_SECS: i64 = 60;
/// Refused addresses remembered per cached token before the list starts over.
const MAX_NOTED_REFUSALS: usize = 32;

/// What the store said about a token, ready to answer requests.
#[derive(Debug)]
pub struct Verified {
    pub token_id: TokenId,
    pub token_type: String,
    pub owner: Owner,
    pub active_from: Timestamp,
    pub expires_at: Option<Timestamp>,
    revoked: bool,
    owner_enabled: bool,
    /// Addresses the token may be used from; empty means any.
    pub allowed_ips: Vec<IpNet>,
    /// The `/v1/me` answer, serialised once.
    pub me_body: Bytes,
    /// The same answer as forward auth's identity headers (SPEC 8).
    pub identity: crate::forward_auth::Identity,
    /// RFC 7662 fields (without `active`) for introspection, serialised (a JSON object): kept
    /// small because every cached token holds one.
    pub introspection: Bytes,
    /// A stored token (uses are recorded); `false` for JWT access tokens.
    stored: bool,
    ends_on_first_use: Option<TokenId>,
    first_use_seen: AtomicBool,
    last_use_at: AtomicI64,
    last_use_ip: AtomicU64,
    /// Refused addresses already written to the audit log (a few; see `note_refused_address`).
    refused_noted: Mutex<Vec<IpAddr>>,
    /// What the answer was built from (`VerifyCache::apply` drops it when one changes).
    deps: Vec<Dep>,
}

impl Verified {
    fn check(&self, now: Timestamp) -> Result<(), Refusal> {
        if !self.owner_enabled {
            return Err(Refusal::Disabled);
        }
        match TokenStatus::at(
            now,
            self.active_from,
            self.expires_at,
            self.revoked.then_some(now),
        ) {
            TokenStatus::Active => Ok(()),
            TokenStatus::Revoked => Err(Refusal::Revoked),
            TokenStatus::Expired => Err(Refusal::Expired),
            TokenStatus::Pending => Err(Refusal::Pending {
                active_from: self.active_from,
                now,
            }),
        }
    }

    /// Whether this use should be written (first use, new address, or a minute later), and
    /// whether its address differs from the last one (only then can it be news to the owner).
    fn should_record(&self, now: i64, ip_hash: u64) -> (bool, bool) {
        let last_at = self.last_use_at.load(Ordering::Relaxed);
        let last_ip = self.last_use_ip.load(Ordering::Relaxed);
        if last_ip == ip_hash && now - last_at < USAGE_GRANULARITY_SECS {
            return (false, false);
        }
        self.last_use_at.store(now, Ordering::Relaxed);
        self.last_use_ip.store(ip_hash, Ordering::Relaxed);
        (true, last_ip != ip_hash)
    }
}

fn ip_hash(ip: IpAddr) -> u64 {
    let mut h = DefaultHasher::new();
    ip.hash(&mut h);
    h.finish() | 1 // never 0, the "no address yet" value
}

/// A token owner as verification sees it.
#[derive(Debug)]
pub(crate) struct OwnerSnapshot {
    principal: serde_json::Value,
    accounts: Vec<serde_json::Value>,
    /// The organisations named in `accounts` (a change to one of them alters this answer).
    orgs: Vec<OrgId>,
    enabled: bool,
    /// An organisation's features (a type may need one).
    features: Vec<String>,
}

/// What a cached answer was built from: a change to any of these drops it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Dep {
    Token(TokenId),
    Owner(Owner),
    /// An organisation the answer names (the owner's accounts, an access token's client's).
    Org(OrgId),
    Client(String),
    /// A JWT access token (checked against the deny-list when it was cached).
    AccessToken,
}

/// The answers by token hash, and which answers each dependency's change must drop.
#[derive(Default)]
struct Entries {
    map: HashMap<[u8; 32], Arc<Verified>>,
    by_dep: HashMap<Dep, HashSet<[u8; 32]>>,
}

impl Entries {
    fn insert(&mut self, hash: [u8; 32], entry: Arc<Verified>) {
        // The entry it replaces is unindexed first: the two share most dependencies.
        if let Some(old) = self.map.remove(&hash) {
            self.unindex(&hash, &old);
        }
        for dep in &entry.deps {
            self.by_dep.entry(dep.clone()).or_default().insert(hash);
        }
        self.map.insert(hash, entry);
    }

    /// Drops every answer that depends on `dep` (of one token type only, if given).
    fn drop_dep(&mut self, dep: &Dep, of_type: Option<&str>) -> usize {
        let Some(hashes) = self.by_dep.get(dep) else {
            return 0;
        };
        let doomed: Vec<[u8; 32]> = hashes
            .iter()
            .filter(|h| of_type.is_none_or(|t| self.map.get(*h).is_some_and(|e| e.token_type == t)))
            .copied()
            .collect();
        for hash in &doomed {
            if let Some(entry) = self.map.remove(hash) {
                self.unindex(hash, &entry);
            }
        }
        if of_type.is_none() {
            self.by_dep.remove(dep);
        }
        doomed.len()
    }

    fn unindex(&mut self, hash: &[u8; 32], entry: &Verified) {
        for dep in &entry.deps {
            if let Some(set) = self.by_dep.get_mut(dep) {
                set.remove(hash);
                if set.is_empty() {
                    self.by_dep.remove(dep);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.by_dep.clear();
    }
}

/// Owner snapshots by owner, and which snapshots name each organisation.
#[derive(Default)]
struct Owners {
    map: HashMap<Owner, Arc<OwnerSnapshot>>,
    by_org: HashMap<OrgId, HashSet<Owner>>,
}

impl Owners {
    fn insert(&mut self, owner: Owner, snapshot: Arc<OwnerSnapshot>) {
        for org in &snapshot.orgs {
            self.by_org
                .entry(org.clone())
                .or_default()
                .insert(owner.clone());
        }
        self.map.insert(owner, snapshot);
    }

    fn remove(&mut self, owner: &Owner) {
        if let Some(snapshot) = self.map.remove(owner) {
            for org in &snapshot.orgs {
                if let Some(set) = self.by_org.get_mut(org) {
                    set.remove(owner);
                    if set.is_empty() {
                        self.by_org.remove(org);
                    }
                }
            }
        }
    }

    /// The owners whose snapshot names `org` (its members, and the organisation itself).
    fn naming(&self, org: &OrgId) -> Vec<Owner> {
        self.by_org
            .get(org)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn clear(&mut self) {
        self.map.clear();
        self.by_org.clear();
    }
}

/// The verification cache. Invalidation is targeted: a [`Change`] drops exactly the answers
/// built from what it altered (see [`VerifyCache::apply`]); a generation counter, moved by
/// every change, stops a lookup that read storage before the change from inserting afterwards.
#[derive(Default)]
pub(crate) struct VerifyCache {
    generation: AtomicU64,
    entries: RwLock<Entries>,
    /// Token owners (users, organisations) as verification sees them.
    owners: RwLock<Owners>,
    /// Authenticated OAuth clients by the SHA-256 of their secret.
    clients: RwLock<HashMap<[u8; 32], Arc<crate::oauth::token_endpoint::AuthenticatedClient>>>,
    /// Moves when the deny-list changed; the list is reloaded before the next access token is
    /// looked up (`Service::current_deny_list`).
    deny_version: AtomicU64,
    /// The last change (by sequence) of the store's change log this process has applied.
    change_seen: AtomicI64,
    /// Set while this process cannot hear other processes' changes (its notification channel
    /// is down): nothing is served from the cache or put in it, so no stale answer is given.
    blind: AtomicBool,
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| {
        lock.clear_poison();
        poisoned.into_inner()
    })
}

impl VerifyCache {
    /// Starts blind where other processes' changes are announced (see [`VerifyCache::blind`]):
    /// it sees once it listens.
    pub(crate) fn new(blind: bool) -> Self {
        Self {
            blind: AtomicBool::new(blind),
            ..Self::default()
        }
    }

    pub(crate) fn is_blind(&self) -> bool {
        self.blind.load(Ordering::Acquire)
    }

    /// Empties the cache and serves nothing from it until [`VerifyCache::see`].
    pub(crate) fn go_blind(&self) {
        self.blind.store(true, Ordering::Release);
        self.invalidate();
    }

    /// Serves from the cache again (the channel is back and the log caught up). The generation
    /// moves, so a lookup that read storage while blind does not insert what it read.
    pub(crate) fn see(&self) {
        let _entries = write(&self.entries);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.blind.store(false, Ordering::Release);
    }

    /// Whether an insert that began at `generation` may go in (checked under a write lock).
    fn accepts(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation && !self.is_blind()
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Arc<Verified>> {
        if self.is_blind() {
            return None;
        }
        self.entries.read().ok()?.map.get(hash).cloned()
    }

    fn insert_if_current(&self, generation: u64, hash: [u8; 32], entry: Arc<Verified>) {
        if let Ok(mut entries) = self.entries.write() {
            if !self.accepts(generation) {
                return;
            }
            if entries.map.len() >= MAX_CACHED {
                entries.clear();
            }
            entries.insert(hash, entry);
        }
    }

    fn get_owner(&self, owner: &Owner) -> Option<Arc<OwnerSnapshot>> {
        if self.is_blind() {
            return None;
        }
        self.owners.read().ok()?.map.get(owner).cloned()
    }

    fn insert_owner_if_current(&self, generation: u64, owner: Owner, snapshot: Arc<OwnerSnapshot>) {
        // Lock order: entries, then owners (as in `apply`).
        if let (Ok(_entries), Ok(mut owners)) = (self.entries.write(), self.owners.write()) {
            if !self.accepts(generation) {
                return;
            }
            if owners.map.len() >= MAX_CACHED {
                owners.clear();
            }
            owners.insert(owner, snapshot);
        }
    }

    pub(crate) fn note_change_seen(&self, seq: i64) {
        self.change_seen.fetch_max(seq, Ordering::AcqRel);
    }

    pub(crate) fn change_seen(&self) -> i64 {
        self.change_seen.load(Ordering::Acquire)
    }

    pub(crate) fn deny_version(&self) -> u64 {
        self.deny_version.load(Ordering::Acquire)
    }

    pub(crate) fn current_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get_client(
        &self,
        hash: &[u8; 32],
    ) -> Option<Arc<crate::oauth::token_endpoint::AuthenticatedClient>> {
        if self.is_blind() {
            return None;
        }
        self.clients.read().ok()?.get(hash).cloned()
    }

    pub(crate) fn insert_client_if_current(
        &self,
        generation: u64,
        hash: [u8; 32],
        client: Arc<crate::oauth::token_endpoint::AuthenticatedClient>,
    ) {
        // Lock order: entries, then clients (as in `apply`).
        if let (Ok(_entries), Ok(mut map)) = (self.entries.write(), self.clients.write()) {
            if !self.accepts(generation) {
                return;
            }
            if map.len() >= MAX_CACHED {
                map.clear();
            }
            map.insert(hash, client);
        }
    }

    /// Drops exactly what the changes can alter. Runs right after the commit that made them
    /// (this process) or when the change log shows them (another process), before the next
    /// request can read the cache, and never awaits.
    pub(crate) fn apply(&self, changes: &[Change]) {
        if changes
            .iter()
            .all(|c| matches!(c, Change::Outbox | Change::Keys))
        {
            return;
        }
        // Lock order: entries, then owners, then clients. The generation moves while the
        // entries lock is held, so no lookup that read storage before can insert afterwards.
        let mut entries = write(&self.entries);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut owners = write(&self.owners);
        let mut clients = write(&self.clients);
        for change in changes {
            match change {
                Change::Token(id) => {
                    entries.drop_dep(&Dep::Token(id.clone()), None);
                }
                Change::OwnerTokens(owner, of_type) => {
                    entries.drop_dep(&Dep::Owner(owner.clone()), of_type.as_deref());
                }
                Change::User(id) | Change::Membership(_, id) => {
                    let owner = Owner::User(id.clone());
                    entries.drop_dep(&Dep::Owner(owner.clone()), None);
                    owners.remove(&owner);
                }
                Change::Org(id) => {
                    let owner = Owner::Organisation(id.clone());
                    entries.drop_dep(&Dep::Owner(owner.clone()), None);
                    entries.drop_dep(&Dep::Org(id.clone()), None);
                    owners.remove(&owner);
                    // Its members' snapshots list it (name, switch): their tokens' answers too.
                    for member in owners.naming(id) {
                        entries.drop_dep(&Dep::Owner(member.clone()), None);
                        owners.remove(&member);
                    }
                    clients.retain(|_, c| &c.client.org_id != id);
                }
                Change::Client(id) => {
                    entries.drop_dep(&Dep::Client(id.clone()), None);
                    clients.retain(|_, c| &c.client.id != id);
                }
                Change::AccessTokens => {
                    self.deny_version.fetch_add(1, Ordering::AcqRel);
                    entries.drop_dep(&Dep::AccessToken, None);
                }
                Change::All => {
                    self.deny_version.fetch_add(1, Ordering::AcqRel);
                    entries.clear();
                    owners.clear();
                    clients.clear();
                }
                Change::Keys | Change::Outbox => {}
            }
        }
    }

    /// Drops every entry (a change log this process cannot follow).
    pub(crate) fn invalidate(&self) {
        self.apply(&[Change::All]);
    }
}

/// Uses waiting to be written, and first-use rotations waiting to end their old token.
#[derive(Default)]
pub(crate) struct UsageRecorder {
    /// The latest use of each token, for `last_used_at`/`last_used_ip`.
    pending: Mutex<HashMap<TokenId, TokenUsage>>,
    /// Every (token, address) pair used since the last flush, not only the latest: one use
    /// from a stolen token's new address must not hide behind the owner's traffic.
    addresses: Mutex<HashMap<(TokenId, String), Timestamp>>,
    first_use: Mutex<Vec<TokenId>>,
}

/// Pairs held for the next flush; beyond this a pair waits for its next recorded use.
const MAX_PENDING_ADDRESSES: usize = 100_000;

impl Service {
    /// Verifies a bearer token string from a request made from `ip`.
    #[tracing::instrument(level = "debug", skip_all, fields(token.id))]
    pub async fn verify_bearer(&self, text: &str, ip: IpAddr) -> ServiceResult<Arc<Verified>> {
        if let Err(e) = self.limits.check_token_ip(ip, self.now()) {
            self.metrics.rate_limited();
            return Err(e);
        }
        let result = self.verify_bearer_inner(text, ip).await;
        match &result {
            Ok(_) => self.metrics.verified(),
            Err(ServiceError::Refused(r)) => {
                self.metrics.refused(r);
                self.limits.bad_token(ip, self.now());
            }
            Err(_) => {}
        }
        result
    }

    async fn verify_bearer_inner(&self, text: &str, ip: IpAddr) -> ServiceResult<Arc<Verified>> {
        let entry = self.lookup_token(text).await?;
        tracing::Span::current().record("token.id", entry.token_id.as_str());
        let now = self.now();
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
        if let Some(entry) = self.cache.get(hash.as_bytes()) {
            return Ok(entry);
        }
        let generation = self.cache.generation.load(Ordering::Acquire);
        let entry = if is_jwt && is_access_token(text) {
            self.current_deny_list().await?;
            let claims = self
                .check_access_token(text, self.clock.now())
                .map_err(|_| ServiceError::Refused(Refusal::Malformed))?;
            self.load_access_token(claims).await?
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
            self.load_verified(token).await?
        };
        let entry = Arc::new(entry);
        self.cache
            .insert_if_current(generation, *hash.as_bytes(), entry.clone());
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

    /// An access token's answer: a client-credentials token acts as the client's organisation.
    async fn load_access_token(
        &self,
        claims: crate::oauth::access_tokens::AccessClaims,
    ) -> ServiceResult<Verified> {
        let malformed = || ServiceError::Refused(Refusal::Malformed);
        let jti: TokenId = claims.jti.parse().map_err(|_| malformed())?;
        let client = self.store.find_client(&claims.client_id).await?;
        // Deleted, or its tokens switched off by the kill switch after this one was issued.
        let client_live = client.as_ref().is_some_and(|c| {
            c.deleted_at.is_none()
                && c.tokens_valid_after
                    .is_none_or(|t| claims.iat > t.unix_timestamp())
        });
        let org_id = client
            .as_ref()
            .map(|c| c.org_id.clone())
            .ok_or_else(malformed)?;
        let org = self.store.find_org(&org_id).await?;
        let org_name = org.as_ref().map(|o| o.name.clone());
        let client_name = client.as_ref().map(|c| c.name.clone());
        // An authorization-code token acts as the user who consented, for that client; a
        // client-credentials token as the client's organisation.
        // The answer names the client's organisation and the user's accounts: a change to any
        // of them drops it.
        let mut deps = vec![
            Dep::AccessToken,
            Dep::Token(jti.clone()),
            Dep::Client(claims.client_id.clone()),
            Dep::Org(org_id.clone()),
        ];
        let (principal, accounts, owner, owner_enabled) =
            match claims.sub.parse::<latchkey_core::UserId>() {
                Ok(user_id) => {
                    let user = self.store.find_user(&user_id).await?;
                    let memberships = self.store.list_user_accounts(&user_id).await?;
                    deps.extend(memberships.iter().map(|a| Dep::Org(a.org_id.clone())));
                    let principal = json!({
                        "kind": "user",
                        "id": user_id,
                        "email": user.as_ref().map(|u| u.email.as_str()),
                        "client_id": claims.client_id,
                        "client_name": client_name,
                    });
                    let accounts: Vec<_> = memberships
                        .iter()
                        .filter(|a| a.api_tokens_enabled)
                        .map(|a| json!({ "id": a.org_id, "name": a.org_name, "role": a.role }))
                        .collect();
                    let enabled = user.is_some_and(|u| !u.disabled && u.api_tokens_enabled);
                    (principal, json!(accounts), Owner::User(user_id), enabled)
                }
                Err(_) => {
                    let principal = json!({
                        "kind": "client",
                        "id": claims.client_id,
                        "name": client_name,
                        "organisation": org_id,
                    });
                    let accounts =
                        json!([{ "id": org_id, "name": org_name, "role": "organisation" }]);
                    let enabled = org.as_ref().is_some_and(|o| o.api_tokens_enabled);
                    (
                        principal,
                        accounts,
                        Owner::Organisation(org_id.clone()),
                        enabled,
                    )
                }
            };
        let expires_at = Timestamp::from_unix_timestamp(claims.exp).map_err(|_| malformed())?;
        let issued_at = Timestamp::from_unix_timestamp(claims.iat).map_err(|_| malformed())?;
        let scopes = self.bounded_scopes(&claims.scope, org.as_ref());
        let body = json!({
            "principal": principal,
            "token": { "id": jti, "type": "access_token", "expires_at": expires_at.format(&Rfc3339).ok() },
            "accounts": accounts,
            "scopes": scopes,
        });
        let me_body =
            serde_json::to_vec(&body).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let identity = crate::forward_auth::Identity::from_answer(&body);
        let mut introspection = serde_json::Map::new();
        introspection.insert("scope".into(), json!(scopes.join(" ")));
        introspection.insert("client_id".into(), json!(claims.client_id));
        introspection.insert("token_type".into(), json!("Bearer"));
        introspection.insert("sub".into(), json!(claims.sub));
        introspection.insert("aud".into(), claims.aud.clone());
        introspection.insert("iss".into(), json!(claims.iss));
        introspection.insert("iat".into(), json!(claims.iat));
        introspection.insert("exp".into(), json!(claims.exp));
        introspection.insert("jti".into(), json!(claims.jti));
        introspection.insert("principal".into(), principal);
        introspection.insert("token".into(), body["token"].clone());
        introspection.insert("accounts".into(), accounts);
        Ok(Verified {
            revoked: self.is_denied(&claims.jti, claims.grant.as_deref()) || !client_live,
            owner_enabled,
            first_use_seen: AtomicBool::new(true),
            last_use_at: AtomicI64::new(0),
            last_use_ip: AtomicU64::new(0),
            refused_noted: Mutex::new(Vec::new()),
            me_body: Bytes::from(me_body),
            identity,
            introspection: Bytes::from(
                serde_json::to_vec(&serde_json::Value::Object(introspection))
                    .map_err(|e| ServiceError::Internal(e.to_string()))?,
            ),
            stored: false,
            allowed_ips: Vec::new(),
            ends_on_first_use: None,
            deps: {
                deps.push(Dep::Owner(owner.clone()));
                deps
            },
            token_id: jti,
            token_type: "access_token".to_owned(),
            owner,
            // Clock skew between servers: accept a token issued up to the leeway "early".
            active_from: issued_at
                - time::Duration::seconds(crate::oauth::access_tokens::LEEWAY_SECS),
            expires_at: Some(expires_at),
        })
    }

    /// The first refusal from an address is written to the owner's audit log (and, with
    /// notifications, mailed): once per address, not once per request. The "seen" mark, the
    /// event and the mail are one transaction, so a crash cannot keep the mark and lose the mail.
    async fn note_refused_address(&self, entry: &Verified, ip: IpAddr, now: Timestamp) {
        // Repeated refusals from one address (a misconfigured client, a scan) stop here, in
        // memory, without building the event or touching storage.
        match entry.refused_noted.lock() {
            Ok(noted) if noted.contains(&ip) => return,
            Ok(mut noted) => {
                if noted.len() >= MAX_NOTED_REFUSALS {
                    noted.clear();
                }
                noted.push(ip);
            }
            Err(_) => {}
        }
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
            self.forget_refusal(entry, ip);
            return;
        }
        match self
            .store
            .record_token_address(&entry.token_id, &format!("refused:{ip}"), now, &event)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not record a refused address");
                self.forget_refusal(entry, ip);
            }
        }
    }

    fn forget_refusal(&self, entry: &Verified, ip: IpAddr) {
        if let Ok(mut noted) = entry.refused_noted.lock() {
            noted.retain(|seen| *seen != ip);
        }
    }

    fn note_use(&self, entry: &Verified, now: Timestamp, ip: IpAddr) {
        if !entry.stored {
            return;
        }
        let (record, other_address) = entry.should_record(now.unix_timestamp(), ip_hash(ip));
        if record {
            let ip = ip.to_string();
            // The same address as last time is known already: the flush need not look it up.
            if other_address
                && let Ok(mut addresses) = self.usage.addresses.lock()
                && addresses.len() < MAX_PENDING_ADDRESSES
            {
                addresses
                    .entry((entry.token_id.clone(), ip.clone()))
                    .or_insert(now);
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
        if let Some(old) = &entry.ends_on_first_use
            && !entry.first_use_seen.swap(true, Ordering::AcqRel)
            && let Ok(mut list) = self.usage.first_use.lock()
        {
            list.push(old.clone());
        }
    }

    /// Reads the token's owner and what it reaches, and builds the cached answer.
    /// What a token's owner is right now, shared by all of its tokens in the cache (a user with
    /// many tokens costs one lookup, not one per token).
    async fn owner_snapshot(&self, owner: &Owner) -> ServiceResult<Arc<OwnerSnapshot>> {
        if let Some(found) = self.cache.get_owner(owner) {
            return Ok(found);
        }
        let generation = self.cache.current_generation();
        let snapshot = match owner {
            Owner::User(id) => {
                let user = self.store.find_user(id).await?;
                let accounts = self.store.list_user_accounts(id).await?;
                OwnerSnapshot {
                    enabled: user
                        .as_ref()
                        .is_some_and(|u| !u.disabled && u.api_tokens_enabled),
                    principal: json!({ "kind": "user", "id": id, "email": user.as_ref().map(|u| u.email.as_str()) }),
                    accounts: accounts
                        .iter()
                        .filter(|a| a.api_tokens_enabled)
                        .map(|a| json!({ "id": a.org_id, "name": a.org_name, "role": a.role }))
                        .collect(),
                    // Switched-off organisations too: switching one back on alters the answer.
                    orgs: accounts.iter().map(|a| a.org_id.clone()).collect(),
                    features: Vec::new(),
                }
            }
            Owner::Organisation(id) => {
                let org = self.store.find_org(id).await?;
                let name = org.as_ref().map(|o| o.name.clone());
                OwnerSnapshot {
                    enabled: org.as_ref().is_some_and(|o| o.api_tokens_enabled),
                    principal: json!({ "kind": "organisation", "id": id, "name": name }),
                    accounts: vec![json!({ "id": id, "name": name, "role": "organisation" })],
                    orgs: vec![id.clone()],
                    features: org.map(|o| o.features).unwrap_or_default(),
                }
            }
        };
        let snapshot = Arc::new(snapshot);
        self.cache
            .insert_owner_if_current(generation, owner.clone(), snapshot.clone());
        Ok(snapshot)
    }

    async fn load_verified(&self, token: TokenRecord) -> ServiceResult<Verified> {
        let policy = self.types.get(&token.token_type);
        let owner = self.owner_snapshot(&token.owner).await?;
        let feature_ok = match policy.and_then(|p| p.requires_feature.as_ref()) {
            Some(f) => owner.features.contains(f),
            None => true,
        };
        let owner_enabled = owner.enabled && feature_ok;
        let (principal, accounts) = (&owner.principal, &owner.accounts);
        let expires = token.expires_at.and_then(|t| t.format(&Rfc3339).ok());
        let body = json!({
            "principal": principal,
            "token": { "id": token.id, "type": token.token_type, "expires_at": expires },
            "accounts": accounts,
            "scopes": token.scopes,
        });
        let me_body =
            serde_json::to_vec(&body).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let identity = crate::forward_auth::Identity::from_answer(&body);
        let mut introspection = serde_json::Map::new();
        introspection.insert("scope".into(), json!(token.scopes.join(" ")));
        // RFC 7662 §2.2: the OAuth token type (RFC 6749 §7.1); Latchkey's type is in `token`.
        introspection.insert("token_type".into(), json!("Bearer"));
        introspection.insert("sub".into(), json!(token.owner.id()));
        introspection.insert("iat".into(), json!(token.created_at.unix_timestamp()));
        introspection.insert("nbf".into(), json!(token.active_from.unix_timestamp()));
        if let Some(exp) = token.expires_at {
            introspection.insert("exp".into(), json!(exp.unix_timestamp()));
        }
        introspection.insert("iss".into(), json!(self.settings.public_url));
        introspection.insert("jti".into(), json!(token.id));
        introspection.insert("principal".into(), body["principal"].clone());
        introspection.insert("token".into(), body["token"].clone());
        introspection.insert("accounts".into(), body["accounts"].clone());
        let last_ip = token
            .last_used_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map_or(0, ip_hash);
        Ok(Verified {
            owner_enabled: owner_enabled && policy.is_some(),
            revoked: token.revoked_at.is_some(),
            first_use_seen: AtomicBool::new(token.last_used_at.is_some()),
            last_use_at: AtomicI64::new(
                token
                    .last_used_at
                    .map_or(i64::MIN / 2, |t| t.unix_timestamp()),
            ),
            last_use_ip: AtomicU64::new(last_ip),
            refused_noted: Mutex::new(Vec::new()),
            me_body: Bytes::from(me_body),
            identity,
            introspection: Bytes::from(
                serde_json::to_vec(&serde_json::Value::Object(introspection))
                    .map_err(|e| ServiceError::Internal(e.to_string()))?,
            ),
            stored: true,
            // A stored allowlist that does not parse fails closed (an error), never open.
            allowed_ips: crate::tokens::parse_allowed_ips(&token.allowed_ips).map_err(|_| {
                ServiceError::Internal(format!(
                    "token {}: stored allowed_ips do not parse",
                    token.id
                ))
            })?,
            ends_on_first_use: token.ends_on_first_use,
            deps: [
                Dep::Token(token.id.clone()),
                Dep::Owner(token.owner.clone()),
            ]
            .into_iter()
            .chain(owner.orgs.iter().cloned().map(Dep::Org))
            .collect(),
            token_id: token.id,
            token_type: token.token_type,
            owner: token.owner,
            active_from: token.active_from,
            expires_at: token.expires_at,
        })
    }

    /// Fills the verification cache with the most recently used live tokens, so that a restart
    /// (a deploy) does not send the first request of every token to storage. Runs beside
    /// serving; a change made meanwhile invalidates as usual (the generation check).
    pub async fn warm_cache(&self, limit: u32) -> ServiceResult<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let generation = self.cache.current_generation();
        let tokens = self
            .store
            .list_live_tokens_with_hashes(self.now(), limit)
            .await?;
        let mut warmed = 0;
        for (hash, token) in tokens {
            let entry = Arc::new(self.load_verified(token).await?);
            self.cache.insert_if_current(generation, hash, entry);
            warmed += 1;
        }
        Ok(warmed)
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
            .map_err(ServiceError::from);
        if let Err(e) = written {
            tracing::warn!(error = %e, count = batch.len(), "could not record token usage; will retry");
            if let Ok(mut pending) = self.usage.pending.lock() {
                for u in batch {
                    pending.entry(u.token_id.clone()).or_insert(u);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use latchkey_core::UserId;

    use super::*;

    fn user(n: u8) -> UserId {
        format!("usr_{}", char::from(b'a' + n).to_string().repeat(22))
            .parse()
            .unwrap()
    }
    fn org(n: u8) -> OrgId {
        format!("org_{}", char::from(b'A' + n).to_string().repeat(22))
            .parse()
            .unwrap()
    }
    fn token(n: u8) -> TokenId {
        format!("tok_{}", char::from(b'0' + n).to_string().repeat(22))
            .parse()
            .unwrap()
    }

    /// A cached answer for token `n` of `owner`, of `token_type`, naming `orgs`.
    fn entry(n: u8, owner: Owner, token_type: &str, orgs: &[OrgId]) -> ([u8; 32], Arc<Verified>) {
        let at = Timestamp::from_unix_timestamp(1_700_000_000).unwrap();
        let deps = [Dep::Token(token(n)), Dep::Owner(owner.clone())]
            .into_iter()
            .chain(orgs.iter().cloned().map(Dep::Org))
            .collect();
        let verified = Verified {
            token_id: token(n),
            token_type: token_type.to_owned(),
            owner,
            active_from: at,
            expires_at: None,
            revoked: false,
            owner_enabled: true,
            allowed_ips: Vec::new(),
            me_body: Bytes::new(),
            identity: crate::forward_auth::Identity::default(),
            introspection: Bytes::new(),
            stored: true,
            ends_on_first_use: None,
            first_use_seen: AtomicBool::new(true),
            last_use_at: AtomicI64::new(0),
            last_use_ip: AtomicU64::new(0),
            refused_noted: Mutex::new(Vec::new()),
            deps,
        };
        ([n; 32], Arc::new(verified))
    }

    fn cached(cache: &VerifyCache) -> Vec<u8> {
        let entries = cache.entries.read().unwrap();
        // Every entry is indexed under each of its dependencies, and nothing else is indexed.
        for (hash, e) in &entries.map {
            for dep in &e.deps {
                assert!(
                    entries.by_dep.get(dep).is_some_and(|s| s.contains(hash)),
                    "{dep:?}"
                );
            }
        }
        for (dep, hashes) in &entries.by_dep {
            for hash in hashes {
                assert!(
                    entries.map.get(hash).is_some_and(|e| e.deps.contains(dep)),
                    "stale index {dep:?}"
                );
            }
        }
        let mut ids: Vec<u8> = entries.map.keys().map(|h| h[0]).collect();
        ids.sort_unstable();
        ids
    }

    fn fill(cache: &VerifyCache) {
        let g = cache.current_generation();
        let u0 = Owner::User(user(0));
        let u1 = Owner::User(user(1));
        let o0 = Owner::Organisation(org(0));
        for (n, owner, t, orgs) in [
            (1, u0.clone(), "personal", vec![org(0)]),
            (2, u0.clone(), "personal", vec![org(0)]),
            (3, u1.clone(), "personal", vec![org(1)]),
            (4, o0.clone(), "api", vec![org(0)]),
            (5, o0.clone(), "s2s", vec![org(0)]),
        ] {
            let (hash, e) = entry(n, owner, t, &orgs);
            cache.insert_if_current(g, hash, e);
        }
        for (owner, orgs) in [(u0, vec![org(0)]), (u1, vec![org(1)]), (o0, vec![org(0)])] {
            let snapshot = Arc::new(OwnerSnapshot {
                principal: serde_json::Value::Null,
                accounts: Vec::new(),
                orgs,
                enabled: true,
                features: Vec::new(),
            });
            cache.insert_owner_if_current(cache.current_generation(), owner, snapshot);
        }
    }

    #[test]
    fn each_change_drops_exactly_the_answers_built_from_what_it_altered() {
        let cases: Vec<(Change, Vec<u8>)> = vec![
            (Change::Token(token(2)), vec![1, 3, 4, 5]),
            (Change::User(user(0)), vec![3, 4, 5]),
            (Change::Membership(org(1), user(1)), vec![1, 2, 4, 5]),
            (
                Change::OwnerTokens(Owner::Organisation(org(0)), Some("api".into())),
                vec![1, 2, 3, 5],
            ),
            (
                Change::OwnerTokens(Owner::Organisation(org(0)), None),
                vec![1, 2, 3],
            ),
            // The organisation's own tokens and its members' (their accounts name it).
            (Change::Org(org(0)), vec![3]),
            (Change::Org(org(7)), vec![1, 2, 3, 4, 5]),
            (Change::Client("cli_x".into()), vec![1, 2, 3, 4, 5]),
            (Change::Keys, vec![1, 2, 3, 4, 5]),
            (Change::Outbox, vec![1, 2, 3, 4, 5]),
            (Change::All, vec![]),
        ];
        for (change, left) in cases {
            let cache = VerifyCache::default();
            fill(&cache);
            assert_eq!(cached(&cache), vec![1, 2, 3, 4, 5]);
            cache.apply(std::slice::from_ref(&change));
            assert_eq!(cached(&cache), left, "{change:?}");
        }
    }

    #[test]
    fn an_org_change_drops_its_members_snapshots_and_only_theirs() {
        let cache = VerifyCache::default();
        fill(&cache);
        cache.apply(&[Change::Org(org(0))]);
        assert!(cache.get_owner(&Owner::User(user(0))).is_none());
        assert!(cache.get_owner(&Owner::Organisation(org(0))).is_none());
        assert!(cache.get_owner(&Owner::User(user(1))).is_some());
    }

    #[test]
    fn a_replaced_entry_is_still_dropped_by_its_changes() {
        let cache = VerifyCache::default();
        fill(&cache);
        // The same token cached again (a warm-up after a request): one entry, indexed once.
        let (hash, e) = entry(2, Owner::User(user(0)), "personal", &[org(0)]);
        cache.insert_if_current(cache.current_generation(), hash, e);
        assert_eq!(cached(&cache), vec![1, 2, 3, 4, 5]);
        cache.apply(&[Change::Token(token(2))]);
        assert_eq!(cached(&cache), vec![1, 3, 4, 5]);
    }

    #[test]
    fn a_lookup_that_began_before_a_change_does_not_insert_after_it() {
        let cache = VerifyCache::default();
        let before = cache.current_generation();
        cache.apply(&[Change::User(user(5))]);
        let (hash, e) = entry(1, Owner::User(user(0)), "personal", &[]);
        cache.insert_if_current(before, hash, e);
        assert!(cache.get(&hash).is_none());
        // Neither does the deny-list stay as it was.
        assert_eq!(cache.deny_version(), 0);
        cache.apply(&[Change::AccessTokens]);
        assert_eq!(cache.deny_version(), 1);
    }
}
