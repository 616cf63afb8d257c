//! The abuse limits of SECURITY.md, kept in memory per instance and timed by the service clock.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use latchkey_core::limits::{
    Backoff, BackoffPolicy, NotYet, WindowCounter, WindowLimit, address_key,
};
use latchkey_core::{PolicyDuration, Timestamp};

use tokio::sync::Notify;

use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Sign-in attempts per address.
    pub login_per_ip: WindowLimit,
    /// Back-off per account after failed sign-ins.
    pub login_failures: BackoffPolicy,
    /// Refused bearer tokens per address, then a block.
    pub invalid_tokens_per_ip: WindowLimit,
    /// Leak reports per address.
    pub leak_reports_per_ip: WindowLimit,
    /// Failed client authentications per client at the OAuth endpoints.
    pub client_auth_failures: WindowLimit,
    /// Password reset mails asked for, per address and per account.
    pub password_resets: WindowLimit,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            login_per_ip: WindowLimit {
                max: 30,
                window: PolicyDuration::from_secs(60),
                block: PolicyDuration::ZERO,
            },
            login_failures: BackoffPolicy {
                free: 5,
                window: PolicyDuration::from_secs(900),
                max_delay: PolicyDuration::from_secs(900),
            },
            invalid_tokens_per_ip: WindowLimit {
                max: 60,
                window: PolicyDuration::from_secs(60),
                block: PolicyDuration::from_secs(300),
            },
            leak_reports_per_ip: WindowLimit {
                max: 60,
                window: PolicyDuration::from_secs(3_600),
                block: PolicyDuration::ZERO,
            },
            client_auth_failures: WindowLimit {
                max: 10,
                window: PolicyDuration::from_secs(60),
                block: PolicyDuration::from_secs(60),
            },
            password_resets: WindowLimit {
                max: 5,
                window: PolicyDuration::from_secs(3_600),
                block: PolicyDuration::ZERO,
            },
        }
    }
}

/// Keys one limiter table holds at most, over all its shards (a few MB each).
const TABLE_CAPACITY: usize = 100_000;
/// Independent locks per limiter, so that a flood on one key never holds up the others, and
/// the bad-token check on the verification path waits on one small shard at most.
const SHARDS: usize = 16;

/// A limiter table split over [`SHARDS`] mutexes by the hash of the key.
struct Sharded<T> {
    shards: Box<[Mutex<T>]>,
    hasher: RandomState,
}

impl<T> Sharded<T> {
    fn new(make: impl Fn(usize) -> T) -> Self {
        let per_shard = TABLE_CAPACITY.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(make(per_shard))).collect(),
            hasher: RandomState::new(),
        }
    }

    fn with<K: Hash + ?Sized, R>(&self, key: &K, f: impl FnOnce(&mut T) -> R) -> R {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let shard = &self.shards[index.min(self.shards.len() - 1)];
        // The state is a few counters, consistent after any panic: keep limiting rather than
        // fail open.
        let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

pub(crate) struct Limiters {
    login_ip: Sharded<WindowCounter<IpAddr>>,
    login_account: Sharded<Backoff<String>>,
    /// Woken whenever a password check is settled: attempts queued behind checks in flight
    /// (`NotYet::Undecided`) look again.
    settled: Notify,
    bad_tokens: Sharded<WindowCounter<IpAddr>>,
    leaks: Sharded<WindowCounter<IpAddr>>,
    client_auth: Sharded<WindowCounter<String>>,
    resets_ip: Sharded<WindowCounter<IpAddr>>,
    resets_account: Sharded<WindowCounter<String>>,
    /// Skips the lock on the verification path while no address has ever been refused.
    any_bad_token: AtomicBool,
}

fn limited(retry_after_secs: u64) -> ServiceError {
    ServiceError::RateLimited { retry_after_secs }
}

/// A password check reserved against an account's back-off. Settle it with
/// [`PasswordAttempt::finish`] once the password is checked; dropped unsettled (an error or a
/// cancelled request before the check), it is released and counts neither way.
pub(crate) struct PasswordAttempt<'a> {
    limiters: &'a Limiters,
    account: String,
    settled: bool,
}

impl PasswordAttempt<'_> {
    pub(crate) fn finish(mut self, ok: bool, now: Timestamp) {
        self.settled = true;
        self.limiters.login_account.with(&self.account, |b| {
            if ok {
                b.success(&self.account);
            } else {
                b.failure(&self.account, now);
            }
        });
        self.limiters.settled.notify_waiters();
    }
}

impl Drop for PasswordAttempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.limiters
                .login_account
                .with(&self.account, |b| b.release(&self.account));
            self.limiters.settled.notify_waiters();
        }
    }
}

/// How long an attempt queues behind checks in flight before it is refused: far longer than a
/// hash takes, so only a reservation that was never settled runs into it.
const QUEUE_FOR: Duration = Duration::from_secs(10);
/// A wake-up can slip between the look and the wait; this bounds what that costs.
const LOOK_AGAIN_EVERY: Duration = Duration::from_millis(250);

impl Limiters {
    pub(crate) fn new(s: LimitSettings) -> Self {
        Self {
            login_ip: Sharded::new(|n| WindowCounter::new(s.login_per_ip, n)),
            login_account: Sharded::new(|n| Backoff::new(s.login_failures, n)),
            bad_tokens: Sharded::new(|n| WindowCounter::new(s.invalid_tokens_per_ip, n)),
            leaks: Sharded::new(|n| WindowCounter::new(s.leak_reports_per_ip, n)),
            client_auth: Sharded::new(|n| WindowCounter::new(s.client_auth_failures, n)),
            resets_ip: Sharded::new(|n| WindowCounter::new(s.password_resets, n)),
            resets_account: Sharded::new(|n| WindowCounter::new(s.password_resets, n)),
            settled: Notify::new(),
            any_bad_token: AtomicBool::new(false),
        }
    }

    /// Counts a sign-in attempt against the address and reserves a password check against the
    /// account, before any hashing; refuses it while either must wait.
    pub(crate) async fn login_attempt(
        &self,
        ip: Option<IpAddr>,
        account: &str,
        now: impl Fn() -> Timestamp,
    ) -> ServiceResult<PasswordAttempt<'_>> {
        if let Some(ip) = ip {
            let ip = address_key(ip);
            if let Some(wait) = self.login_ip.with(&ip, |c| c.hit(&ip, now())) {
                return Err(limited(wait));
            }
        }
        self.reauth_attempt(account, now).await
    }

    /// A password prompt inside a session (create, revoke, reveal): the account's back-off
    /// applies as at sign-in, so a stolen session cannot guess the password at will. Not the
    /// per-address count: a person making tokens is not a sign-in flood.
    ///
    /// An attempt beyond the allowance left while others are being checked queues until one
    /// settles, then looks again: parallel wrong guesses get exactly the allowance and then
    /// `429`, while parallel right passwords all go through (each success clears the account).
    pub(crate) async fn reauth_attempt(
        &self,
        account: &str,
        now: impl Fn() -> Timestamp,
    ) -> ServiceResult<PasswordAttempt<'_>> {
        let account = account.to_owned();
        let deadline = tokio::time::Instant::now() + QUEUE_FOR;
        loop {
            // Registered before the look, so that a settlement between the two is not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self
                .login_account
                .with(&account, |b| b.reserve(&account, now()))
            {
                Ok(()) => {
                    return Ok(PasswordAttempt {
                        limiters: self,
                        account,
                        settled: false,
                    });
                }
                Err(NotYet::Wait(secs)) => return Err(limited(secs)),
                Err(NotYet::Undecided) if tokio::time::Instant::now() >= deadline => {
                    return Err(limited(1));
                }
                Err(NotYet::Undecided) => {
                    let _ = tokio::time::timeout(LOOK_AGAIN_EVERY, settled).await;
                }
            }
        }
    }

    /// Refuses an address that sent too many bad tokens lately.
    pub(crate) fn check_token_ip(&self, ip: IpAddr, now: Timestamp) -> ServiceResult<()> {
        if !self.any_bad_token.load(Ordering::Relaxed) {
            return Ok(());
        }
        let ip = address_key(ip);
        self.bad_tokens
            .with(&ip, |c| c.blocked(&ip, now))
            .map_or(Ok(()), |wait| Err(limited(wait)))
    }

    pub(crate) fn bad_token(&self, ip: IpAddr, now: Timestamp) {
        self.any_bad_token.store(true, Ordering::Relaxed);
        let ip = address_key(ip);
        let _ = self.bad_tokens.with(&ip, |c| c.hit(&ip, now));
    }

    /// A password reset mail asked for: limited per address and per account (whether the
    /// account exists or not, so the limit tells nothing about it).
    pub(crate) fn password_reset(
        &self,
        ip: IpAddr,
        account: Option<&str>,
        now: Timestamp,
    ) -> ServiceResult<()> {
        let ip = address_key(ip);
        if let Some(wait) = self.resets_ip.with(&ip, |c| c.hit(&ip, now)) {
            return Err(limited(wait));
        }
        let Some(account) = account else {
            return Ok(());
        };
        let account = account.to_owned();
        self.resets_account
            .with(&account, |c| c.hit(&account, now))
            .map_or(Ok(()), |wait| Err(limited(wait)))
    }

    pub(crate) fn leak_report(&self, ip: IpAddr, now: Timestamp) -> ServiceResult<()> {
        let ip = address_key(ip);
        self.leaks
            .with(&ip, |c| c.hit(&ip, now))
            .map_or(Ok(()), |wait| Err(limited(wait)))
    }

    /// Counts a failed client authentication; the wait, once over the limit. A correct secret
    /// is never refused (at 256 bits the back-off is not what stops guessing; it stops floods),
    /// so a flood of bad guesses cannot lock a client out.
    pub(crate) fn client_auth_failure(&self, client_id: &str, now: Timestamp) -> Option<u64> {
        let client_id = client_id.to_owned();
        self.client_auth
            .with(&client_id, |c| c.hit(&client_id, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: Timestamp = datetime!(2026-01-01 00:00:00 UTC);

    fn now() -> Timestamp {
        NOW
    }

    #[tokio::test]
    async fn an_unsettled_attempt_is_released_and_a_settled_one_counts() {
        let limits = Limiters::new(LimitSettings::default());
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(limits.reauth_attempt("ada", now).await);
        }
        assert!(held.iter().all(Result::is_ok));
        // A sixth queues behind the five in flight; dropping them (no check made) lets it go.
        let sixth = limits.reauth_attempt("ada", now);
        tokio::pin!(sixth);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), sixth.as_mut())
                .await
                .is_err(),
            "queued while five are undecided"
        );
        drop(held);
        let sixth = sixth.await;
        assert!(sixth.is_ok(), "released by the drops");
        if let Ok(attempt) = sixth {
            attempt.finish(false, NOW);
        }
        for _ in 0..4 {
            if let Ok(attempt) = limits.reauth_attempt("ada", now).await {
                attempt.finish(false, NOW);
            }
        }
        assert!(matches!(
            limits.reauth_attempt("ada", now).await,
            Err(ServiceError::RateLimited {
                retry_after_secs: 1
            })
        ));
    }

    #[tokio::test]
    async fn one_ipv6_network_shares_one_sign_in_count() {
        let limits = Limiters::new(LimitSettings::default());
        let mut refused = 0;
        for i in 0..40u16 {
            let ip = IpAddr::from([0x2001, 0xdb8, 7, 7, i, 1, 2, 3]);
            let attempt = limits.login_attempt(Some(ip), &format!("u{i}"), now).await;
            refused += usize::from(attempt.is_err());
        }
        assert_eq!(refused, 10, "30 a minute for the whole /64");
        let other = IpAddr::from([0x2001, 0xdb8, 7, 8, 0, 0, 0, 1]);
        assert!(limits.login_attempt(Some(other), "x", now).await.is_ok());
    }
}
