//! Abuse limits as pure state machines over an injected time (SECURITY.md, "Abuse limits").
//!
//! Written here rather than taken from a rate-limiting crate because two of them are not token
//! buckets (per-account exponential back-off; a block that lasts minutes after a burst of bad
//! tokens) and all of them must run on the service's `Clock`, so that tests move time by hand.
//!
//! Every table is bounded: at capacity, a new key pushes out the least recently used one, in
//! constant time ([`hashlink::LruCache`]); nothing ever walks the whole table on a request. A
//! flood of fresh keys can therefore push out an old entry, but only one that has not been touched
//! for longer than the flood took to fill the table; the capacity is sized so that this takes far
//! longer than any window.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

use hashlink::LruCache;

use crate::clock::Timestamp;
use crate::duration::PolicyDuration;

/// The key per-address limits count under: an IPv4 address as is (also when it arrives
/// IPv4-mapped), an IPv6 address by its /64, the smallest block a single subscriber is given
/// (RFC 6177), so that hopping through the 2^64 addresses of one's own network gains nothing.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// A map of at most `capacity` entries that forgets the least recently used one to make room.
#[derive(Debug)]
struct Table<K: Hash + Eq, V> {
    entries: LruCache<K, V>,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: LruCache::new(capacity.max(1)),
        }
    }

    fn peek(&self, key: &K) -> Option<&V> {
        self.entries.peek(key)
    }

    /// The entry of `key`, made with `new` if absent, and marked as just used.
    fn touch(&mut self, key: &K, new: impl FnOnce() -> V) -> &mut V {
        use hashlink::linked_hash_map::Entry;
        if !self.entries.contains_key(key) && self.entries.len() >= self.entries.capacity() {
            self.entries.remove_lru();
        }
        match self.entries.entry(key.clone()) {
            Entry::Occupied(mut entry) => {
                entry.to_back();
                entry.into_mut()
            }
            Entry::Vacant(entry) => entry.insert(new()),
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// At most `max` events per `window`; then blocked for `block` (or until the window ends, when
/// `block` is zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimit {
    pub max: u32,
    pub window: PolicyDuration,
    pub block: PolicyDuration,
}

#[derive(Debug, Clone, Copy)]
struct WindowState {
    started: Timestamp,
    count: u32,
    blocked_until: Option<Timestamp>,
}

impl WindowState {
    fn fresh(now: Timestamp) -> Self {
        Self {
            started: now,
            count: 0,
            blocked_until: None,
        }
    }
}

/// Counters per key (an IP address, a client id), in a table of at most `capacity` keys.
#[derive(Debug)]
pub struct WindowCounter<K: Hash + Eq> {
    limit: WindowLimit,
    state: Table<K, WindowState>,
}

impl<K: Hash + Eq + Clone> WindowCounter<K> {
    pub fn new(limit: WindowLimit, capacity: usize) -> Self {
        Self {
            limit,
            state: Table::new(capacity),
        }
    }

    /// Seconds to wait if `key` is blocked at `now`.
    pub fn blocked(&self, key: &K, now: Timestamp) -> Option<u64> {
        let s = self.state.peek(key)?;
        let until = s.blocked_until?;
        (until > now).then(|| secs_until(now, until))
    }

    /// Counts one event for `key`; returns the seconds to wait when it went over the limit.
    pub fn hit(&mut self, key: &K, now: Timestamp) -> Option<u64> {
        let limit = self.limit;
        let s = self.state.touch(key, || WindowState::fresh(now));
        if let Some(until) = s.blocked_until {
            if until > now {
                return Some(secs_until(now, until));
            }
            *s = WindowState::fresh(now);
        }
        if s.started + limit.window.to_time() <= now {
            *s = WindowState::fresh(now);
        }
        s.count = s.count.saturating_add(1);
        if s.count > limit.max {
            let until = if limit.block.is_zero() {
                s.started + limit.window.to_time()
            } else {
                now + limit.block.to_time()
            };
            s.blocked_until = Some(until);
            return Some(secs_until(now, until));
        }
        None
    }

    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.len() == 0
    }
}

fn secs_until(now: Timestamp, until: Timestamp) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

/// Per-account back-off after failed sign-ins: `free` failures per `window` cost nothing; after
/// them each attempt waits, twice as long after each further failure (1 s, 2 s, 4 s, …) up to
/// `max_delay`. Never a permanent lock; a success clears the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free: u32,
    pub window: PolicyDuration,
    pub max_delay: PolicyDuration,
}

#[derive(Debug, Clone, Copy)]
struct BackoffState {
    first_failure: Timestamp,
    failures: u32,
    /// Attempts reserved and not yet decided: they count against the allowance while their
    /// password is being hashed, so parallel guesses cannot all pass one check before any of
    /// them is counted.
    pending: u32,
    /// When the latest reservation was made: a reservation never settled (a bug, a lost task)
    /// must not hold the account shut for good.
    reserved_at: Timestamp,
    wait_until: Option<Timestamp>,
}

/// No password check takes this long: reservations older than this are forgotten.
const RESERVATION_TTL_SECS: u64 = 60;

impl BackoffState {
    fn fresh(now: Timestamp) -> Self {
        Self {
            first_failure: now,
            failures: 0,
            pending: 0,
            reserved_at: now,
            wait_until: None,
        }
    }
}

/// Why [`Backoff::reserve`] did not reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// The key must wait this many seconds.
    Wait(u64),
    /// What is left of the allowance is held by attempts still being checked: ask again once
    /// one of them is settled.
    Undecided,
}

/// Per-key back-off with reservations: [`Backoff::reserve`] before checking a password, then
/// exactly one of [`Backoff::failure`], [`Backoff::success`] or [`Backoff::release`].
#[derive(Debug)]
pub struct Backoff<K: Hash + Eq> {
    policy: BackoffPolicy,
    state: Table<K, BackoffState>,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub fn new(policy: BackoffPolicy, capacity: usize) -> Self {
        Self {
            policy,
            state: Table::new(capacity),
        }
    }

    /// Seconds to wait before `key` may try again.
    pub fn wait(&self, key: &K, now: Timestamp) -> Option<u64> {
        let until = self.state.peek(key)?.wait_until?;
        (until > now).then(|| secs_until(now, until))
    }

    /// Reserves one password check for `key`. The check and the count are one step: of any
    /// number of parallel attempts, no more are let through than the allowance left, and once
    /// it is spent only one at a time after each wait. An attempt beyond what is left while
    /// others are still being checked is [`NotYet::Undecided`]: their outcome decides whether
    /// it may go (a success clears the account) or must wait.
    pub fn reserve(&mut self, key: &K, now: Timestamp) -> Result<(), NotYet> {
        let policy = self.policy;
        let s = self.state.touch(key, || BackoffState::fresh(now));
        forget_if_quiet(s, policy, now);
        if s.pending > 0
            && s.reserved_at + PolicyDuration::from_secs(RESERVATION_TTL_SECS).to_time() <= now
        {
            s.pending = 0;
        }
        if let Some(until) = s.wait_until
            && until > now
        {
            return Err(NotYet::Wait(secs_until(now, until)));
        }
        let within_allowance = s.failures.saturating_add(s.pending) < policy.free;
        let probe_after_wait = s.failures >= policy.free && s.pending == 0;
        if !(within_allowance || probe_after_wait) {
            return Err(NotYet::Undecided);
        }
        s.pending = s.pending.saturating_add(1);
        s.reserved_at = now;
        Ok(())
    }

    /// A reserved attempt failed.
    pub fn failure(&mut self, key: &K, now: Timestamp) {
        let policy = self.policy;
        let s = self.state.touch(key, || BackoffState::fresh(now));
        s.pending = s.pending.saturating_sub(1);
        forget_if_quiet(s, policy, now);
        if s.failures == 0 {
            s.first_failure = now;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures >= policy.free {
            let exponent = (s.failures - policy.free).min(20);
            let delay = (1u64 << exponent).min(policy.max_delay.as_secs());
            s.wait_until = Some(now + PolicyDuration::from_secs(delay).to_time());
        }
    }

    /// A reserved attempt succeeded: the account starts afresh (attempts still in flight keep
    /// their reservations).
    pub fn success(&mut self, key: &K) {
        self.settle(key, |s| {
            s.failures = 0;
            s.wait_until = None;
        });
    }

    /// A reserved attempt ended before its password was checked (a storage error): it counts
    /// neither way.
    pub fn release(&mut self, key: &K) {
        self.settle(key, |_| {});
    }

    fn settle(&mut self, key: &K, change: impl FnOnce(&mut BackoffState)) {
        let Some(s) = self.state.entries.peek_mut(key) else {
            return;
        };
        s.pending = s.pending.saturating_sub(1);
        change(s);
        if s.pending == 0 && s.failures == 0 {
            self.state.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.len() == 0
    }
}

/// Failures are forgotten a whole `window` after the first one (while within the allowance)
/// or after the last wait ended (once waiting began).
fn forget_if_quiet(s: &mut BackoffState, policy: BackoffPolicy, now: Timestamp) {
    if s.failures == 0 {
        return;
    }
    let quiet_since = s.wait_until.unwrap_or(s.first_failure);
    if quiet_since + policy.window.to_time() <= now {
        *s = BackoffState {
            pending: s.pending,
            reserved_at: s.reserved_at,
            ..BackoffState::fresh(now)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-01-01 00:00:00 UTC);
    const CAPACITY: usize = 1_000;

    fn at(secs: i64) -> Timestamp {
        T0 + time::Duration::seconds(secs)
    }

    fn policy(free: u32) -> BackoffPolicy {
        BackoffPolicy {
            free,
            window: PolicyDuration::from_secs(900),
            max_delay: PolicyDuration::from_secs(900),
        }
    }

    #[test]
    fn window_blocks_after_max_then_releases() {
        let mut c = WindowCounter::new(
            WindowLimit {
                max: 3,
                window: PolicyDuration::from_secs(60),
                block: PolicyDuration::from_secs(300),
            },
            CAPACITY,
        );
        for _ in 0..3 {
            assert_eq!(c.hit(&"ip", at(0)), None);
        }
        assert_eq!(c.hit(&"ip", at(1)), Some(300));
        assert_eq!(c.blocked(&"ip", at(100)), Some(201));
        assert_eq!(c.hit(&"other", at(100)), None);
        assert_eq!(c.blocked(&"ip", at(301)), None);
        assert_eq!(c.hit(&"ip", at(301)), None);
    }

    #[test]
    fn window_without_block_waits_for_the_window() {
        let mut c = WindowCounter::new(
            WindowLimit {
                max: 1,
                window: PolicyDuration::from_secs(60),
                block: PolicyDuration::ZERO,
            },
            CAPACITY,
        );
        assert_eq!(c.hit(&1, at(0)), None);
        assert_eq!(c.hit(&1, at(10)), Some(50));
        assert_eq!(c.hit(&1, at(60)), None);
    }

    /// Reserve-then-decide, as the service does around a password check.
    fn attempt(b: &mut Backoff<&'static str>, now: Timestamp, ok: bool) -> Result<(), NotYet> {
        b.reserve(&"ada", now)?;
        if ok {
            b.success(&"ada");
        } else {
            b.failure(&"ada", now);
        }
        Ok(())
    }

    #[test]
    fn backoff_waits_after_the_free_failures_doubles_and_caps() {
        let mut b = Backoff::new(policy(5), CAPACITY);
        for i in 0..5 {
            assert_eq!(attempt(&mut b, at(i), false), Ok(()));
        }
        // The allowance is spent: the next attempt waits, whatever its password.
        assert_eq!(b.wait(&"ada", at(4)), Some(1));
        assert_eq!(attempt(&mut b, at(4), true), Err(NotYet::Wait(1)));
        assert_eq!(attempt(&mut b, at(5), false), Ok(()));
        assert_eq!(b.wait(&"ada", at(5)), Some(2));
        let mut now = 5;
        for _ in 0..20 {
            now += i64::try_from(b.wait(&"ada", at(now)).unwrap_or(0)).unwrap_or(0);
            assert_eq!(attempt(&mut b, at(now), false), Ok(()), "the wait was over");
        }
        assert_eq!(b.wait(&"ada", at(now)), Some(900));
        assert_eq!(attempt(&mut b, at(now + 900), true), Ok(()));
        assert_eq!(b.wait(&"ada", at(now + 900)), None);
        assert!(b.is_empty(), "a success forgets the account");
    }

    #[test]
    fn backoff_forgets_after_a_quiet_window() {
        let mut b = Backoff::new(
            BackoffPolicy {
                free: 2,
                window: PolicyDuration::from_secs(60),
                max_delay: PolicyDuration::from_secs(60),
            },
            CAPACITY,
        );
        attempt(&mut b, at(0), false).ok();
        attempt(&mut b, at(1), false).ok();
        assert_eq!(b.wait(&"x", at(1)), None);
        assert_eq!(b.wait(&"ada", at(1)), Some(1));
        // A whole window after the wait ended: a clean slate of two free failures.
        assert_eq!(attempt(&mut b, at(200), false), Ok(()));
        assert_eq!(b.wait(&"ada", at(200)), None);
    }

    #[test]
    fn parallel_reservations_get_no_more_checks_than_the_allowance() {
        let mut b = Backoff::new(policy(5), CAPACITY);
        // Twenty-four attempts arrive before any is decided.
        let granted = (0..24).filter(|_| b.reserve(&"ada", at(0)).is_ok()).count();
        assert_eq!(granted, 5);
        assert_eq!(b.reserve(&"ada", at(0)), Err(NotYet::Undecided));
        for _ in 0..5 {
            b.failure(&"ada", at(0));
        }
        assert_eq!(b.reserve(&"ada", at(0)), Err(NotYet::Wait(1)));
        // After the wait, one probe at a time.
        assert_eq!(b.reserve(&"ada", at(1)), Ok(()));
        assert_eq!(b.reserve(&"ada", at(1)), Err(NotYet::Undecided));
    }

    #[test]
    fn a_released_reservation_counts_neither_way_and_a_lost_one_expires() {
        let mut b = Backoff::new(policy(1), CAPACITY);
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        assert_eq!(b.reserve(&"ada", at(0)), Err(NotYet::Undecided));
        b.release(&"ada");
        assert!(b.is_empty());
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        // Never settled: after a minute it no longer holds the account.
        assert_eq!(b.reserve(&"ada", at(30)), Err(NotYet::Undecided));
        assert_eq!(b.reserve(&"ada", at(60)), Ok(()));
    }

    #[test]
    fn a_success_in_flight_keeps_the_other_reservations() {
        let mut b = Backoff::new(policy(2), CAPACITY);
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        b.success(&"ada");
        b.failure(&"ada", at(0));
        assert_eq!(b.wait(&"ada", at(0)), None);
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        b.failure(&"ada", at(0));
        assert_eq!(b.wait(&"ada", at(0)), Some(1));
    }

    #[test]
    fn an_attempt_beyond_the_allowance_waits_for_those_in_flight() {
        let mut b = Backoff::new(policy(2), CAPACITY);
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        assert_eq!(b.reserve(&"ada", at(0)), Err(NotYet::Undecided));
        // The right password among them: the account is clear, the next may go.
        b.success(&"ada");
        assert_eq!(b.reserve(&"ada", at(0)), Ok(()));
        // Two wrong ones: the allowance is spent, the next must wait.
        b.failure(&"ada", at(0));
        b.failure(&"ada", at(0));
        assert_eq!(b.reserve(&"ada", at(0)), Err(NotYet::Wait(1)));
    }

    #[test]
    fn tables_stay_within_their_capacity_and_forget_the_least_recently_used() {
        let limit = WindowLimit {
            max: 1,
            window: PolicyDuration::from_secs(60),
            block: PolicyDuration::from_secs(300),
        };
        let mut c = WindowCounter::new(limit, 3);
        let key = |k: &str| k.to_owned();
        c.hit(&key("old"), at(0));
        assert_eq!(c.hit(&key("old"), at(0)), Some(300));
        c.hit(&key("a"), at(1));
        c.hit(&key("b"), at(1));
        // "old" was used last: it stays when a fourth key comes, and "a" goes.
        assert_eq!(c.hit(&key("old"), at(2)), Some(298));
        c.hit(&key("c"), at(2));
        assert_eq!(c.blocked(&key("old"), at(2)), Some(298));
        assert_eq!(c.hit(&key("a"), at(2)), None, "a is forgotten");
        // A flood of fresh keys never grows the table.
        for i in 0..10_000 {
            c.hit(&i.to_string(), at(3));
        }
        assert_eq!(c.len(), 3);
        let mut b = Backoff::new(policy(5), 2);
        for key in ["x", "y", "z"] {
            b.failure(&key, at(0));
        }
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn a_lookup_does_not_change_what_is_forgotten() {
        let limit = WindowLimit {
            max: 0,
            window: PolicyDuration::from_secs(60),
            block: PolicyDuration::from_secs(300),
        };
        let mut c = WindowCounter::new(limit, 2);
        c.hit(&"a", at(0));
        c.hit(&"b", at(0));
        // Reading "a" (the verification path) does not keep it; "c" pushes it out.
        assert!(c.blocked(&"a", at(1)).is_some());
        c.hit(&"c", at(1));
        assert_eq!(c.blocked(&"a", at(1)), None);
        assert!(c.blocked(&"b", at(1)).is_some());
    }

    #[test]
    fn ipv6_addresses_are_keyed_on_their_64() {
        let key = |s: &str| address_key(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_eq!(
            key("2001:db8:1:2:aaaa::1"),
            "2001:db8:1:2::"
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::from([0; 4]))
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.7"), key("::ffff:203.0.113.7"));
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
    }
}
