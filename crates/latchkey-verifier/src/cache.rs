//! The answers Latchkey gave, by the SHA-256 of the token, and what each was built from, so an
//! invalidation drops exactly the answers it can alter. Plain data and rules, no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;

use crate::Identity;

/// What an answer depends on; an invalidation names one or more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Dep {
    Token(String),
    /// Its principal (a user, an organisation or a client).
    Principal(String),
    /// An organisation it reaches.
    Account(String),
    Client(String),
    /// Any JWT: the deny-list moved.
    Jwt,
}

struct Entry {
    identity: Identity,
    deps: Vec<Dep>,
}

#[derive(Default)]
struct State {
    map: HashMap<[u8; 32], Entry>,
    index: HashMap<Dep, HashSet<[u8; 32]>>,
}

impl State {
    fn remove(&mut self, hash: &[u8; 32]) {
        if let Some(entry) = self.map.remove(hash) {
            for dep in entry.deps {
                if let Some(set) = self.index.get_mut(&dep) {
                    set.remove(hash);
                    if set.is_empty() {
                        self.index.remove(&dep);
                    }
                }
            }
        }
    }

    fn drop_dep(&mut self, dep: &Dep) {
        for hash in self.index.remove(dep).unwrap_or_default() {
            self.remove(&hash);
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.index.clear();
    }
}

pub(crate) struct Cache {
    state: RwLock<State>,
    /// Moves with every invalidation and every change of `seeing`, under the write lock: an
    /// answer asked for before it is not inserted after it.
    generation: AtomicU64,
    /// The stream is connected: only then is anything served from the cache or put in it.
    seeing: AtomicBool,
    max: usize,
}

/// What an invalidation event asks of the cache.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Drop(Vec<Dep>),
    Keys,
    Nothing,
    Everything,
}

/// The stream's `data` of a `change` event, as the dependencies it drops (the server's
/// `invalidations::change_json`). An event this version does not know drops everything.
pub(crate) fn effect_of(change: &Value) -> Effect {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let drop = |deps: Vec<Option<Dep>>| match deps.into_iter().collect::<Option<Vec<Dep>>>() {
        Some(deps) => Effect::Drop(deps),
        None => Effect::Everything,
    };
    match change["kind"].as_str() {
        Some("token") => drop(vec![text(&change["token"]).map(Dep::Token)]),
        // Every type of the owner: a superset of `type`, which answers do not record.
        Some("owner_tokens") => drop(vec![text(&change["owner"]["id"]).map(Dep::Principal)]),
        Some("user") => drop(vec![text(&change["user"]).map(Dep::Principal)]),
        Some("membership") => drop(vec![text(&change["user"]).map(Dep::Principal)]),
        Some("organisation") => {
            let org = text(&change["organisation"]);
            drop(vec![org.clone().map(Dep::Principal), org.map(Dep::Account)])
        }
        Some("client") => drop(vec![text(&change["client"]).map(Dep::Client)]),
        Some("access_tokens") => Effect::Drop(vec![Dep::Jwt]),
        Some("keys") => Effect::Keys,
        Some("outbox") => Effect::Nothing,
        _ => Effect::Everything,
    }
}

fn deps_of(identity: &Identity, jwt: bool) -> Vec<Dep> {
    let mut deps = vec![
        Dep::Token(identity.token_id.clone()),
        Dep::Principal(identity.principal.clone()),
    ];
    deps.extend(
        identity
            .accounts
            .iter()
            .map(|(org, _)| Dep::Account(org.clone())),
    );
    if let Some(client) = &identity.client_id {
        deps.push(Dep::Client(client.clone()));
    }
    if jwt {
        deps.push(Dep::Jwt);
    }
    deps
}

fn write(lock: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(|poisoned| {
        lock.clear_poison();
        poisoned.into_inner()
    })
}

impl Cache {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: RwLock::default(),
            generation: AtomicU64::new(0),
            seeing: AtomicBool::new(false),
            max: max.max(1),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn is_seeing(&self) -> bool {
        self.seeing.load(Ordering::Acquire)
    }

    pub(crate) fn len(&self) -> usize {
        self.state.read().map_or(0, |s| s.map.len())
    }

    /// The cached answer for `hash`, if the stream is connected and it has not expired.
    pub(crate) fn get(&self, hash: &[u8; 32], now: i64) -> Option<Identity> {
        if !self.is_seeing() {
            return None;
        }
        let state = self.state.read().ok()?;
        let entry = state.map.get(hash)?;
        if entry.identity.expires_at.is_some_and(|exp| exp <= now) {
            return None;
        }
        Some(entry.identity.clone())
    }

    pub(crate) fn insert_if_current(
        &self,
        generation: u64,
        hash: [u8; 32],
        identity: Identity,
        jwt: bool,
    ) {
        let mut state = write(&self.state);
        if self.generation() != generation || !self.is_seeing() {
            return;
        }
        if state.map.len() >= self.max {
            state.clear();
        }
        state.remove(&hash);
        let deps = deps_of(&identity, jwt);
        for dep in &deps {
            state.index.entry(dep.clone()).or_default().insert(hash);
        }
        state.map.insert(hash, Entry { identity, deps });
    }

    /// Applies one invalidation; says whether the signing keys must be fetched again.
    pub(crate) fn apply(&self, effect: &Effect) -> bool {
        match effect {
            Effect::Nothing => false,
            Effect::Keys => true,
            Effect::Drop(deps) => {
                let mut state = write(&self.state);
                self.generation.fetch_add(1, Ordering::AcqRel);
                for dep in deps {
                    state.drop_dep(dep);
                }
                false
            }
            Effect::Everything => {
                self.clear();
                true
            }
        }
    }

    pub(crate) fn clear(&self) {
        let mut state = write(&self.state);
        self.generation.fetch_add(1, Ordering::AcqRel);
        state.clear();
    }

    /// The stream is connected (`true`: the cache serves from now on) or lost (`false`: it is
    /// emptied and serves nothing until it is back).
    pub(crate) fn set_seeing(&self, seeing: bool) {
        let mut state = write(&self.state);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if !seeing {
            state.clear();
        }
        self.seeing.store(seeing, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn identity(token: &str, principal: &str, orgs: &[&str], client: Option<&str>) -> Identity {
        Identity {
            principal: principal.into(),
            kind: "user".into(),
            token_id: token.into(),
            accounts: orgs
                .iter()
                .map(|o| ((*o).into(), "member".into()))
                .collect(),
            scopes: vec![],
            client_id: client.map(Into::into),
            expires_at: None,
        }
    }

    /// Five answers: a's token of usr_a in org_x; b's of usr_b in org_y; org_x's own; an access
    /// token of cli_c for org_x; usr_c's with no organisation.
    fn filled() -> Cache {
        let cache = Cache::new(100);
        cache.set_seeing(true);
        let g = cache.generation();
        cache.insert_if_current(
            g,
            [1; 32],
            identity("tok_a", "usr_a", &["org_x"], None),
            false,
        );
        cache.insert_if_current(
            g,
            [2; 32],
            identity("tok_b", "usr_b", &["org_y"], None),
            false,
        );
        cache.insert_if_current(
            g,
            [3; 32],
            identity("tok_o", "org_x", &["org_x"], None),
            false,
        );
        cache.insert_if_current(
            g,
            [4; 32],
            identity("jti_1", "cli_c", &["org_x"], Some("cli_c")),
            true,
        );
        cache.insert_if_current(g, [5; 32], identity("tok_c", "usr_c", &[], None), false);
        cache
    }

    fn present(cache: &Cache) -> Vec<u8> {
        (1..=5u8)
            .filter(|n| cache.get(&[*n; 32], 0).is_some())
            .collect()
    }

    #[test]
    fn each_invalidation_drops_exactly_what_it_can_alter() {
        let cases = [
            (json!({"kind": "token", "token": "tok_b"}), vec![1, 3, 4, 5]),
            (
                json!({"kind": "owner_tokens", "owner": {"kind": "user", "id": "usr_a"}, "type": null}),
                vec![2, 3, 4, 5],
            ),
            (json!({"kind": "user", "user": "usr_c"}), vec![1, 2, 3, 4]),
            (
                json!({"kind": "membership", "organisation": "org_y", "user": "usr_b"}),
                vec![1, 3, 4, 5],
            ),
            (
                json!({"kind": "organisation", "organisation": "org_x"}),
                vec![2, 5],
            ),
            (
                json!({"kind": "client", "client": "cli_c"}),
                vec![1, 2, 3, 5],
            ),
            (json!({"kind": "access_tokens"}), vec![1, 2, 3, 5]),
            (json!({"kind": "outbox"}), vec![1, 2, 3, 4, 5]),
            (json!({"kind": "keys"}), vec![1, 2, 3, 4, 5]),
            (json!({"kind": "all"}), vec![]),
            (json!({"kind": "something new"}), vec![]),
            (json!({"kind": "token"}), vec![]),
        ];
        for (event, left) in cases {
            let cache = filled();
            cache.apply(&effect_of(&event));
            assert_eq!(present(&cache), left, "{event}");
        }
    }

    #[test]
    fn nothing_is_served_or_kept_while_the_stream_is_down() {
        let cache = filled();
        cache.set_seeing(false);
        assert_eq!(present(&cache), Vec::<u8>::new());
        let g = cache.generation();
        cache.insert_if_current(g, [9; 32], identity("tok_z", "usr_z", &[], None), false);
        cache.set_seeing(true);
        assert!(cache.get(&[9; 32], 0).is_none(), "inserted while blind");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_answer_asked_for_before_an_invalidation_is_not_kept() {
        let cache = filled();
        let before = cache.generation();
        cache.apply(&effect_of(&json!({"kind": "user", "user": "usr_z"})));
        cache.insert_if_current(
            before,
            [9; 32],
            identity("tok_z", "usr_z", &[], None),
            false,
        );
        assert!(cache.get(&[9; 32], 0).is_none());
    }

    #[test]
    fn an_expired_answer_is_not_served() {
        let cache = Cache::new(10);
        cache.set_seeing(true);
        let mut id = identity("tok_e", "usr_e", &[], None);
        id.expires_at = Some(100);
        cache.insert_if_current(cache.generation(), [7; 32], id, false);
        assert!(cache.get(&[7; 32], 99).is_some());
        assert!(cache.get(&[7; 32], 100).is_none());
    }

    #[test]
    fn a_full_cache_starts_afresh_and_a_replaced_answer_is_still_indexed() {
        let cache = Cache::new(2);
        cache.set_seeing(true);
        let g = cache.generation();
        cache.insert_if_current(g, [1; 32], identity("tok_1", "usr_1", &[], None), false);
        cache.insert_if_current(
            g,
            [1; 32],
            identity("tok_1", "usr_1", &["org_q"], None),
            false,
        );
        cache.insert_if_current(g, [2; 32], identity("tok_2", "usr_2", &[], None), false);
        assert_eq!(cache.len(), 2);
        cache.apply(&effect_of(
            &json!({"kind": "organisation", "organisation": "org_q"}),
        ));
        assert!(cache.get(&[1; 32], 0).is_none());
        cache.insert_if_current(
            cache.generation(),
            [3; 32],
            identity("tok_3", "usr_3", &[], None),
            false,
        );
        cache.insert_if_current(
            cache.generation(),
            [4; 32],
            identity("tok_4", "usr_4", &[], None),
            false,
        );
        assert!(cache.len() <= 2);
    }
}
