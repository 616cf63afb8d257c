//! Abuse limits as pure state machines over an injected time (SECURITY.md, "Abuse limits").
//!
//! Written here rather than taken from a rate-limiting crate because two of them are not token
//! buckets (per-account exponential back-off; a block that lasts minutes after a burst of bad
//! tokens) and all of them must run on the service's `Clock`, so that tests move time by hand.

use std::collections::HashMap;
use std::hash::Hash;

use crate::clock::Timestamp;
use crate::duration::PolicyDuration;

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

/// Counters per key (an IP address, a client id). Entries that can no longer matter are swept
/// when the table grows, so a flood of distinct keys cannot grow it without bound.
#[derive(Debug)]
pub struct WindowCounter<K> {
    limit: WindowLimit,
    state: HashMap<K, WindowState>,
}

const SWEEP_AT: usize = 100_000;

impl<K: Hash + Eq + Clone> WindowCounter<K> {
    pub fn new(limit: WindowLimit) -> Self {
        Self {
            limit,
            state: HashMap::new(),
        }
    }

    /// Seconds to wait if `key` is blocked at `now`.
    pub fn blocked(&self, key: &K, now: Timestamp) -> Option<u64> {
        let s = self.state.get(key)?;
        let until = s.blocked_until?;
        (until > now).then(|| secs_until(now, until))
    }

    /// Counts one event for `key`; returns the seconds to wait when it went over the limit.
    pub fn hit(&mut self, key: &K, now: Timestamp) -> Option<u64> {
        if self.state.len() >= SWEEP_AT {
            let window = self.limit.window.to_time();
            self.state.retain(|_, s| {
                s.started + window > now || s.blocked_until.is_some_and(|b| b > now)
            });
        }
        let limit = self.limit;
        let s = self.state.entry(key.clone()).or_insert(WindowState {
            started: now,
            count: 0,
            blocked_until: None,
        });
        if let Some(until) = s.blocked_until {
            if until > now {
                return Some(secs_until(now, until));
            }
            *s = WindowState {
                started: now,
                count: 0,
                blocked_until: None,
            };
        }
        if s.started + limit.window.to_time() <= now {
            *s = WindowState {
                started: now,
                count: 0,
                blocked_until: None,
            };
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

    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }
}

fn secs_until(now: Timestamp, until: Timestamp) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

/// Per-account back-off after failed sign-ins: `free` failures per `window` cost nothing; each
/// further failure doubles the wait (1 s, 2 s, 4 s, …) up to `max_delay`. Never a permanent lock;
/// a success clears the account.
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
    wait_until: Option<Timestamp>,
}

#[derive(Debug)]
pub struct Backoff<K> {
    policy: BackoffPolicy,
    state: HashMap<K, BackoffState>,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            state: HashMap::new(),
        }
    }

    /// Seconds to wait before `key` may try again.
    pub fn wait(&self, key: &K, now: Timestamp) -> Option<u64> {
        let until = self.state.get(key)?.wait_until?;
        (until > now).then(|| secs_until(now, until))
    }

    pub fn failure(&mut self, key: &K, now: Timestamp) {
        if self.state.len() >= SWEEP_AT {
            let keep = self.policy.window.to_time() + self.policy.max_delay.to_time();
            self.state.retain(|_, s| s.first_failure + keep > now);
        }
        let policy = self.policy;
        let s = self.state.entry(key.clone()).or_insert(BackoffState {
            first_failure: now,
            failures: 0,
            wait_until: None,
        });
        let quiet_since = s.wait_until.unwrap_or(s.first_failure);
        if s.failures <= policy.free && s.first_failure + policy.window.to_time() <= now
            || s.failures > policy.free && quiet_since + policy.window.to_time() <= now
        {
            *s = BackoffState {
                first_failure: now,
                failures: 0,
                wait_until: None,
            };
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures > policy.free {
            let exponent = (s.failures - policy.free - 1).min(20);
            let delay = (1u64 << exponent).min(policy.max_delay.as_secs());
            s.wait_until = Some(now + PolicyDuration::from_secs(delay).to_time());
        }
    }

    pub fn success(&mut self, key: &K) {
        self.state.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-01-01 00:00:00 UTC);

    fn at(secs: i64) -> Timestamp {
        T0 + time::Duration::seconds(secs)
    }

    #[test]
    fn window_blocks_after_max_then_releases() {
        let mut c = WindowCounter::new(WindowLimit {
            max: 3,
            window: PolicyDuration::from_secs(60),
            block: PolicyDuration::from_secs(300),
        });
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
        let mut c = WindowCounter::new(WindowLimit {
            max: 1,
            window: PolicyDuration::from_secs(60),
            block: PolicyDuration::ZERO,
        });
        assert_eq!(c.hit(&1, at(0)), None);
        assert_eq!(c.hit(&1, at(10)), Some(50));
        assert_eq!(c.hit(&1, at(60)), None);
    }

    #[test]
    fn backoff_doubles_after_the_free_failures_and_caps() {
        let mut b = Backoff::new(BackoffPolicy {
            free: 5,
            window: PolicyDuration::from_secs(900),
            max_delay: PolicyDuration::from_secs(900),
        });
        for i in 0..5 {
            b.failure(&"ada", at(i));
            assert_eq!(b.wait(&"ada", at(i)), None);
        }
        b.failure(&"ada", at(10));
        assert_eq!(b.wait(&"ada", at(10)), Some(1));
        b.failure(&"ada", at(11));
        assert_eq!(b.wait(&"ada", at(11)), Some(2));
        for i in 0..20 {
            b.failure(&"ada", at(20 + i));
        }
        assert_eq!(b.wait(&"ada", at(39)), Some(900));
        b.success(&"ada");
        assert_eq!(b.wait(&"ada", at(41)), None);
    }

    #[test]
    fn backoff_forgets_after_a_quiet_window() {
        let mut b = Backoff::new(BackoffPolicy {
            free: 1,
            window: PolicyDuration::from_secs(60),
            max_delay: PolicyDuration::from_secs(60),
        });
        b.failure(&"x", at(0));
        b.failure(&"x", at(1));
        assert_eq!(b.wait(&"x", at(1)), Some(1));
        b.failure(&"x", at(200));
        assert_eq!(b.wait(&"x", at(200)), None);
    }
}
