//! The verification cache: answers by token hash, and the index that tells which answers a
//! committed change must drop.
//!
//! Reads are the hot path of every request: the answers live in shards, each behind its own
//! lock, keyed by the token's SHA-256 (already uniform: it is used as the map's hash as it is),
//! so two cores verifying at once rarely touch the same lock. What each answer was built from is
//! indexed apart, behind one lock that only cache misses and changes take.
//!
//! Invalidation is targeted: a [`Change`] drops exactly the answers built from what it altered
//! (see [`VerifyCache::apply`]); a generation counter, moved by every change, stops a lookup that
//! read storage before the change from inserting its stale result afterwards.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use latchkey_core::{OrgId, TokenId};
use latchkey_store::{Change, Owner};

use super::answer::{OwnerSnapshot, Verified};
use crate::oauth::token_endpoint::AuthenticatedClient;

/// Answers kept at most (a shard that reaches its share is emptied and refills).
pub(crate) const MAX_CACHED: usize = 2_000_000;
const SHARDS: usize = 64;
const SHARD_MAX: usize = MAX_CACHED / SHARDS;

/// A token's SHA-256: the cache's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    fn shard(&self) -> usize {
        usize::from(self.0[31]) % SHARDS
    }
}

impl Hash for TokenHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // A SHA-256 is already uniform, and only tokens found in storage are inserted, so no
        // caller can choose keys that collide: eight of its bytes are the hash.
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// The hasher for [`TokenHash`] keys: takes the word it is given.
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `TokenHash`; any other key still hashes deterministically.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }
}

type ByHash<V> = HashMap<TokenHash, V, BuildHasherDefault<WordHasher>>;
type HashSetOf = HashSet<TokenHash, BuildHasherDefault<WordHasher>>;

/// A token id's 64-bit digest (SipHash with fixed keys: ids are random, made by this server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct IdDigest(u64);

impl IdDigest {
    fn of(id: &TokenId) -> Self {
        use std::hash::DefaultHasher;
        let mut h = DefaultHasher::new();
        id.as_str().hash(&mut h);
        Self(h.finish())
    }
}

/// What an answer was built from, beyond its token and its owner: a change to one drops it.
/// Stored tokens need none (the organisations an owner's answer names are known from the
/// owner's snapshot); an access token's answer names its client, the client's organisation and
/// the deny-list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Dep {
    Org(OrgId),
    Client(String),
    /// A JWT access token (checked against the deny-list when it was cached).
    AccessToken,
}

/// Which answers each change must drop, and the owner snapshots.
#[derive(Default)]
struct Index {
    /// By a 64-bit digest of the token id, not the id itself (a million ids would cost 80 MB
    /// more). Each digest leads to at most one cached answer: an answer whose id shares the
    /// digest of another's (one in 2^64) drops that one on its way in, so a change to either
    /// id drops at least the answer it must (a cache may always drop more).
    by_token: HashMap<IdDigest, TokenHash, BuildHasherDefault<WordHasher>>,
    by_owner: HashMap<Owner, HashSetOf>,
    by_dep: HashMap<Dep, HashSetOf>,
    /// Token owners (users, organisations) as verification sees them. An answer is cached only
    /// while its owner's snapshot is, so the owners whose snapshot names an organisation lead
    /// to every answer that names it.
    owners: HashMap<Owner, Arc<OwnerSnapshot>>,
    /// The owners whose snapshot names each organisation (its members, and itself).
    owners_naming: HashMap<OrgId, HashSet<Owner>>,
}

impl Index {
    fn add(&mut self, hash: TokenHash, entry: &Verified) {
        self.by_token.insert(IdDigest::of(&entry.token_id), hash);
        self.by_owner
            .entry(entry.owner.clone())
            .or_default()
            .insert(hash);
        for dep in entry.deps() {
            self.by_dep.entry(dep.clone()).or_default().insert(hash);
        }
    }

    fn remove(&mut self, hash: &TokenHash, entry: &Verified) {
        let digest = IdDigest::of(&entry.token_id);
        if self.by_token.get(&digest) == Some(hash) {
            self.by_token.remove(&digest);
        }
        if let Some(set) = self.by_owner.get_mut(&entry.owner) {
            set.remove(hash);
            if set.is_empty() {
                self.by_owner.remove(&entry.owner);
            }
        }
        for dep in entry.deps() {
            if let Some(set) = self.by_dep.get_mut(dep) {
                set.remove(hash);
                if set.is_empty() {
                    self.by_dep.remove(dep);
                }
            }
        }
    }

    fn add_owner(&mut self, owner: &Owner, snapshot: &Arc<OwnerSnapshot>) {
        if self.owners.contains_key(owner) {
            return;
        }
        for org in &snapshot.orgs {
            self.owners_naming
                .entry(org.clone())
                .or_default()
                .insert(owner.clone());
        }
        self.owners.insert(owner.clone(), snapshot.clone());
    }

    fn remove_owner(&mut self, owner: &Owner) {
        if let Some(snapshot) = self.owners.remove(owner) {
            for org in &snapshot.orgs {
                if let Some(set) = self.owners_naming.get_mut(org) {
                    set.remove(owner);
                    if set.is_empty() {
                        self.owners_naming.remove(org);
                    }
                }
            }
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The verification cache (see the module's documentation).
pub(crate) struct VerifyCache {
    generation: AtomicU64,
    shards: Vec<RwLock<ByHash<Arc<Verified>>>>,
    /// Taken before any shard's write lock, never while one is held.
    index: RwLock<Index>,
    /// Authenticated OAuth clients by the SHA-256 of their secret.
    clients: RwLock<HashMap<[u8; 32], Arc<AuthenticatedClient>>>,
    /// Moves when the deny-list changed; the list is reloaded before the next access token is
    /// looked up (`Service::current_deny_list`).
    deny_version: AtomicU64,
    /// The last change (by sequence) of the store's change log this process has applied.
    change_seen: AtomicI64,
    /// Set while this process cannot hear other processes' changes (its notification channel
    /// is down): nothing is served from the cache or put in it, so no stale answer is given.
    blind: AtomicBool,
    /// Token type names, one copy each for every answer (there are a handful of types and a
    /// million answers).
    type_names: RwLock<HashMap<String, Arc<str>>>,
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self::new(false)
    }
}

/// The answers an index entry leads to, copied out (they are dropped while the index changes).
fn members<K: Hash + Eq>(map: &HashMap<K, HashSetOf>, key: &K) -> Vec<TokenHash> {
    map.get(key)
        .map(|set| set.iter().copied().collect())
        .unwrap_or_default()
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| {
        lock.clear_poison();
        poisoned.into_inner()
    })
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl VerifyCache {
    /// Starts blind where other processes' changes are announced (see [`VerifyCache::blind`]):
    /// it sees once it listens.
    pub(crate) fn new(blind: bool) -> Self {
        Self {
            generation: AtomicU64::new(0),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            index: RwLock::default(),
            clients: RwLock::default(),
            deny_version: AtomicU64::new(0),
            change_seen: AtomicI64::new(0),
            blind: AtomicBool::new(blind),
            type_names: RwLock::default(),
        }
    }

    /// The shared copy of a token type's name.
    pub(crate) fn type_name(&self, name: &str) -> Arc<str> {
        if let Some(shared) = read(&self.type_names).get(name) {
            return shared.clone();
        }
        write(&self.type_names)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::from(name))
            .clone()
    }

    fn shard(&self, hash: &TokenHash) -> &RwLock<ByHash<Arc<Verified>>> {
        &self.shards[hash.shard()]
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
        let _index = write(&self.index);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.blind.store(false, Ordering::Release);
    }

    /// Whether an insert that began at `generation` may go in (checked under the index lock).
    fn accepts(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation && !self.is_blind()
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<Verified>> {
        if self.is_blind() {
            return None;
        }
        read(self.shard(hash)).get(hash).cloned()
    }

    /// Caches `entry` (and its owner's snapshot, which it was built from) unless a change came
    /// since `generation` was read; says whether it did.
    pub(crate) fn insert_if_current(
        &self,
        generation: u64,
        hash: TokenHash,
        entry: Arc<Verified>,
    ) -> bool {
        let mut index = write(&self.index);
        if !self.accepts(generation) {
            return false;
        }
        if index.owners.len() >= MAX_CACHED {
            self.clear(&mut index);
        }
        let mut shard = write(self.shard(&hash));
        if shard.len() >= SHARD_MAX {
            for (h, e) in shard.drain() {
                index.remove(&h, &e);
            }
        }
        if let Some(old) = shard.remove(&hash) {
            index.remove(&hash, &old);
        }
        // Two ids can never share a hash, but a token id seen under another hash (a stale
        // index), or another id with the same digest, loses its old answer first.
        if let Some(other) = index.by_token.get(&IdDigest::of(&entry.token_id)).copied() {
            self.drop_hash(&mut index, &mut shard, &other, hash.shard());
        }
        if let Some(snapshot) = entry.owner_snapshot() {
            index.add_owner(&entry.owner, snapshot);
        }
        index.add(hash, &entry);
        shard.insert(hash, entry);
        true
    }

    /// Drops one answer; `locked` is the shard whose guard the caller holds.
    fn drop_hash(
        &self,
        index: &mut Index,
        locked_shard: &mut ByHash<Arc<Verified>>,
        hash: &TokenHash,
        locked: usize,
    ) {
        let removed = if hash.shard() == locked {
            locked_shard.remove(hash)
        } else {
            write(self.shard(hash)).remove(hash)
        };
        if let Some(entry) = removed {
            index.remove(hash, &entry);
        }
    }

    pub(crate) fn get_owner(&self, owner: &Owner) -> Option<Arc<OwnerSnapshot>> {
        if self.is_blind() {
            return None;
        }
        read(&self.index).owners.get(owner).cloned()
    }

    pub(crate) fn insert_owner_if_current(
        &self,
        generation: u64,
        owner: Owner,
        snapshot: Arc<OwnerSnapshot>,
    ) {
        let mut index = write(&self.index);
        if !self.accepts(generation) {
            return;
        }
        if index.owners.len() >= MAX_CACHED {
            self.clear(&mut index);
        }
        index.add_owner(&owner, &snapshot);
    }

    /// How many answers and owner snapshots are cached (for `/metrics`).
    pub(crate) fn size(&self) -> crate::metrics::CacheSize {
        crate::metrics::CacheSize {
            answers: self.shards.iter().map(|s| read(s).len()).sum(),
            owners: read(&self.index).owners.len(),
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

    pub(crate) fn get_client(&self, hash: &[u8; 32]) -> Option<Arc<AuthenticatedClient>> {
        if self.is_blind() {
            return None;
        }
        read(&self.clients).get(hash).cloned()
    }

    pub(crate) fn insert_client_if_current(
        &self,
        generation: u64,
        hash: [u8; 32],
        client: Arc<AuthenticatedClient>,
    ) {
        // Lock order: index, then clients (as in `apply`).
        let _index = write(&self.index);
        if !self.accepts(generation) {
            return;
        }
        let mut map = write(&self.clients);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(hash, client);
    }

    /// Drops every answer in `hashes` (of one token type only, if given).
    fn drop_all(&self, index: &mut Index, hashes: Vec<TokenHash>, of_type: Option<&str>) {
        for hash in hashes {
            let mut shard = write(self.shard(&hash));
            if of_type.is_some_and(|t| shard.get(&hash).is_some_and(|e| &*e.token_type != t)) {
                continue;
            }
            if let Some(entry) = shard.remove(&hash) {
                index.remove(&hash, &entry);
            }
        }
    }

    fn drop_owner(&self, index: &mut Index, owner: &Owner, of_type: Option<&str>) {
        let hashes = members(&index.by_owner, owner);
        self.drop_all(index, hashes, of_type);
        if of_type.is_none() {
            index.remove_owner(owner);
        }
    }

    fn drop_dep(&self, index: &mut Index, dep: &Dep) {
        let hashes = members(&index.by_dep, dep);
        self.drop_all(index, hashes, None);
    }

    fn clear(&self, index: &mut Index) {
        for shard in &self.shards {
            write(shard).clear();
        }
        index.clear();
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
        // Lock order: index, then a shard at a time, then clients. The generation moves while
        // the index lock is held, so no lookup that read storage before can insert afterwards.
        let mut index = write(&self.index);
        self.generation.fetch_add(1, Ordering::AcqRel);
        for change in changes {
            match change {
                Change::Token(id) => {
                    if let Some(hash) = index.by_token.get(&IdDigest::of(id)).copied() {
                        self.drop_all(&mut index, vec![hash], None);
                    }
                }
                Change::OwnerTokens(owner, of_type) => {
                    self.drop_owner(&mut index, owner, of_type.as_deref());
                }
                Change::User(id) | Change::Membership(_, id) => {
                    self.drop_owner(&mut index, &Owner::User(id.clone()), None);
                }
                Change::Org(id) => {
                    // Its own tokens, its members' (their snapshots name it: its name, its
                    // switch), and the access tokens of its clients.
                    let naming: Vec<Owner> = index
                        .owners_naming
                        .get(id)
                        .map(|set| set.iter().cloned().collect())
                        .unwrap_or_default();
                    self.drop_owner(&mut index, &Owner::Organisation(id.clone()), None);
                    for owner in naming {
                        self.drop_owner(&mut index, &owner, None);
                    }
                    self.drop_dep(&mut index, &Dep::Org(id.clone()));
                    write(&self.clients).retain(|_, c| &c.client.org_id != id);
                }
                Change::Client(id) => {
                    self.drop_dep(&mut index, &Dep::Client(id.clone()));
                    write(&self.clients).retain(|_, c| &c.client.id != id);
                }
                Change::AccessTokens => {
                    self.deny_version.fetch_add(1, Ordering::AcqRel);
                    self.drop_dep(&mut index, &Dep::AccessToken);
                }
                Change::All => {
                    self.deny_version.fetch_add(1, Ordering::AcqRel);
                    self.clear(&mut index);
                    write(&self.clients).clear();
                }
                Change::Keys | Change::Outbox => {}
            }
        }
    }

    /// Drops every entry (a change log this process cannot follow).
    pub(crate) fn invalidate(&self) {
        self.apply(&[Change::All]);
    }

    #[cfg(test)]
    fn cached(&self) -> Vec<u8> {
        let index = read(&self.index);
        let mut ids = Vec::new();
        for shard in &self.shards {
            for (hash, e) in read(shard).iter() {
                // Every answer is indexed under its token, its owner and its dependencies, and
                // its owner's snapshot is cached.
                assert_eq!(index.by_token.get(&IdDigest::of(&e.token_id)), Some(hash));
                assert!(
                    index
                        .by_owner
                        .get(&e.owner)
                        .is_some_and(|s| s.contains(hash))
                );
                for dep in e.deps() {
                    assert!(index.by_dep.get(dep).is_some_and(|s| s.contains(hash)));
                }
                if e.owner_snapshot().is_some() {
                    assert!(index.owners.contains_key(&e.owner), "{:?}", e.owner);
                }
                ids.push(hash.0[0]);
            }
        }
        let indexed: usize = index.by_owner.values().map(HashSet::len).sum();
        assert_eq!(indexed, ids.len(), "stale owner index");
        assert_eq!(index.by_token.len(), ids.len(), "stale token index");
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use latchkey_core::{Timestamp, UserId};

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

    fn snapshot(orgs: &[OrgId]) -> Arc<OwnerSnapshot> {
        Arc::new(OwnerSnapshot::for_tests(orgs.to_vec()))
    }

    /// A cached answer for token `n` of `owner`, of `token_type`, naming `orgs`.
    fn entry(n: u8, owner: Owner, token_type: &str, orgs: &[OrgId]) -> (TokenHash, Arc<Verified>) {
        let at = Timestamp::from_unix_timestamp(1_700_000_000).unwrap();
        let verified =
            Verified::for_tests(token(n), token_type, owner, at, snapshot(orgs), Vec::new());
        (TokenHash([n; 32]), Arc::new(verified))
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
            assert_eq!(cache.cached(), vec![1, 2, 3, 4, 5]);
            cache.apply(std::slice::from_ref(&change));
            assert_eq!(cache.cached(), left, "{change:?}");
        }
    }

    #[test]
    fn an_access_token_answer_is_dropped_by_its_client_its_org_and_the_deny_list() {
        for change in [
            Change::Client("cli_x".into()),
            Change::Org(org(3)),
            Change::AccessTokens,
        ] {
            let cache = VerifyCache::default();
            fill(&cache);
            let at = Timestamp::from_unix_timestamp(1_700_000_000).unwrap();
            let deps = vec![
                Dep::AccessToken,
                Dep::Client("cli_x".into()),
                Dep::Org(org(3)),
            ];
            let verified = Verified::for_tests(
                token(6),
                "access_token",
                Owner::Organisation(org(3)),
                at,
                snapshot(&[org(3)]),
                deps,
            );
            cache.insert_if_current(
                cache.current_generation(),
                TokenHash([6; 32]),
                Arc::new(verified),
            );
            assert_eq!(cache.cached(), vec![1, 2, 3, 4, 5, 6]);
            cache.apply(std::slice::from_ref(&change));
            assert_eq!(cache.cached(), vec![1, 2, 3, 4, 5], "{change:?}");
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
        assert_eq!(cache.cached(), vec![1, 2, 3, 4, 5]);
        cache.apply(&[Change::Token(token(2))]);
        assert_eq!(cache.cached(), vec![1, 3, 4, 5]);
    }

    #[test]
    fn a_lookup_that_began_before_a_change_does_not_insert_after_it() {
        let cache = VerifyCache::default();
        let before = cache.current_generation();
        cache.apply(&[Change::User(user(5))]);
        let (hash, e) = entry(1, Owner::User(user(0)), "personal", &[]);
        assert!(
            !cache.insert_if_current(before, hash, e),
            "said it was refused"
        );
        assert!(cache.get(&hash).is_none());
        // Neither does the deny-list stay as it was.
        assert_eq!(cache.deny_version(), 0);
        cache.apply(&[Change::AccessTokens]);
        assert_eq!(cache.deny_version(), 1);
    }

    #[test]
    fn a_blind_cache_serves_and_keeps_nothing() {
        let cache = VerifyCache::new(true);
        let (hash, e) = entry(1, Owner::User(user(0)), "personal", &[]);
        assert!(!cache.insert_if_current(cache.current_generation(), hash, e.clone()));
        assert!(cache.get(&hash).is_none());
        cache.see();
        assert!(cache.insert_if_current(cache.current_generation(), hash, e));
        assert!(cache.get(&hash).is_some());
        cache.go_blind();
        assert!(cache.get(&hash).is_none());
        assert_eq!(cache.cached(), Vec::<u8>::new());
    }
}
