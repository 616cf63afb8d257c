//! The abuse limits of SECURITY.md, kept in memory per instance and timed by the service clock.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use latchkey_core::limits::{Backoff, BackoffPolicy, WindowCounter, WindowLimit};
use latchkey_core::{PolicyDuration, Timestamp};

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
        }
    }
}

pub(crate) struct Limiters {
    login_ip: Mutex<WindowCounter<IpAddr>>,
    login_account: Mutex<Backoff<String>>,
    bad_tokens: Mutex<WindowCounter<IpAddr>>,
    leaks: Mutex<WindowCounter<IpAddr>>,
    client_auth: Mutex<WindowCounter<String>>,
    /// Skips the lock on the verification path while no address has ever been refused.
    any_bad_token: AtomicBool,
}

fn limited(retry_after_secs: u64) -> ServiceError {
    ServiceError::RateLimited { retry_after_secs }
}

impl Limiters {
    pub(crate) fn new(s: LimitSettings) -> Self {
        Self {
            login_ip: Mutex::new(WindowCounter::new(s.login_per_ip)),
            login_account: Mutex::new(Backoff::new(s.login_failures)),
            bad_tokens: Mutex::new(WindowCounter::new(s.invalid_tokens_per_ip)),
            leaks: Mutex::new(WindowCounter::new(s.leak_reports_per_ip)),
            client_auth: Mutex::new(WindowCounter::new(s.client_auth_failures)),
            any_bad_token: AtomicBool::new(false),
        }
    }

    /// Counts a sign-in attempt; refuses it while the address or the account must wait.
    pub(crate) fn login_attempt(
        &self,
        ip: Option<IpAddr>,
        account: &str,
        now: Timestamp,
    ) -> ServiceResult<()> {
        if let (Some(ip), Ok(mut c)) = (ip, self.login_ip.lock())
            && let Some(wait) = c.hit(&ip, now)
        {
            return Err(limited(wait));
        }
        if let Ok(b) = self.login_account.lock()
            && let Some(wait) = b.wait(&account.to_owned(), now)
        {
            return Err(limited(wait));
        }
        Ok(())
    }

    /// A password prompt inside a session (create, revoke, reveal): the account's back-off
    /// applies as at sign-in, so a stolen session cannot guess the password at will. Not the
    /// per-address count: a person making tokens is not a sign-in flood.
    pub(crate) fn reauth_attempt(&self, account: &str, now: Timestamp) -> ServiceResult<()> {
        if let Ok(b) = self.login_account.lock()
            && let Some(wait) = b.wait(&account.to_owned(), now)
        {
            return Err(limited(wait));
        }
        Ok(())
    }

    pub(crate) fn login_result(&self, account: &str, ok: bool, now: Timestamp) {
        if let Ok(mut b) = self.login_account.lock() {
            if ok {
                b.success(&account.to_owned());
            } else {
                b.failure(&account.to_owned(), now);
            }
        }
    }

    /// Refuses an address that sent too many bad tokens lately.
    pub(crate) fn check_token_ip(&self, ip: IpAddr, now: Timestamp) -> ServiceResult<()> {
        if !self.any_bad_token.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.bad_tokens.lock() {
            Ok(c) => c
                .blocked(&ip, now)
                .map_or(Ok(()), |wait| Err(limited(wait))),
            Err(_) => Ok(()),
        }
    }

    pub(crate) fn bad_token(&self, ip: IpAddr, now: Timestamp) {
        self.any_bad_token.store(true, Ordering::Relaxed);
        if let Ok(mut c) = self.bad_tokens.lock() {
            let _ = c.hit(&ip, now);
        }
    }

    pub(crate) fn leak_report(&self, ip: IpAddr, now: Timestamp) -> ServiceResult<()> {
        match self.leaks.lock() {
            Ok(mut c) => c.hit(&ip, now).map_or(Ok(()), |wait| Err(limited(wait))),
            Err(_) => Ok(()),
        }
    }

    /// Counts a failed client authentication; the wait, once over the limit. A correct secret
    /// is never refused (at 256 bits the back-off is not what stops guessing; it stops floods),
    /// so a flood of bad guesses cannot lock a client out.
    pub(crate) fn client_auth_failure(&self, client_id: &str, now: Timestamp) -> Option<u64> {
        self.client_auth
            .lock()
            .ok()
            .and_then(|mut c| c.hit(&client_id.to_owned(), now))
    }
}
