//! Counters for `GET /metrics` (Prometheus text). Cheap atomics on the hot paths; never a
//! secret, a token id or an address in a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use latchkey_core::Refusal;

#[derive(Default)]
pub struct Metrics {
    verified: Striped,
    refused: [AtomicU64; 7],
    rate_limited: AtomicU64,
    access_tokens_issued: AtomicU64,
    oauth_errors: AtomicU64,
    logins: AtomicU64,
    login_failures: AtomicU64,
    mails_sent: AtomicU64,
    mails_failed: AtomicU64,
    /// 1 while the change channel is listened to (PostgreSQL), else 0.
    change_feed_up: AtomicU64,
    change_feed_lost: AtomicU64,
    /// Tokens loaded into the verification cache by the start-up warm-up so far.
    cache_warmed: AtomicU64,
    /// 1 while the start-up warm-up runs.
    cache_warming: AtomicU64,
}

/// The verification cache's size when the metrics are read.
pub struct CacheSize {
    pub answers: usize,
    pub owners: usize,
}

/// A counter that every core bumps on every request: one cache line per slot, and each thread
/// keeps to its slot, so two cores counting at once do not pass one line back and forth.
#[derive(Default)]
struct Striped([Padded; 8]);

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Striped {
    fn add_one(&self) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static SLOT: usize = usize::try_from(NEXT.fetch_add(1, Ordering::Relaxed) % 8).unwrap_or(0);
        }
        let slot = SLOT.with(|s| *s);
        if let Some(p) = self.0.get(slot) {
            p.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

const REASONS: [&str; 7] = [
    "malformed",
    "unknown",
    "revoked",
    "expired",
    "pending",
    "disabled",
    "ip_not_allowed",
];

fn reason_index(r: &Refusal) -> usize {
    match r {
        Refusal::Malformed => 0,
        Refusal::Unknown => 1,
        Refusal::Revoked => 2,
        Refusal::Expired => 3,
        Refusal::Pending { .. } => 4,
        Refusal::Disabled => 5,
        Refusal::IpNotAllowed => 6,
    }
}

impl Metrics {
    pub(crate) fn verified(&self) {
        self.verified.add_one();
    }
    pub(crate) fn refused(&self, r: &Refusal) {
        if let Some(c) = self.refused.get(reason_index(r)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub fn access_token_issued(&self) {
        self.access_tokens_issued.fetch_add(1, Ordering::Relaxed);
    }
    pub fn oauth_error(&self) {
        self.oauth_errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn login(&self, ok: bool) {
        if ok {
            self.logins.fetch_add(1, Ordering::Relaxed);
        } else {
            self.login_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The change channel came up (`true`) or was lost.
    pub(crate) fn change_feed(&self, up: bool) {
        self.change_feed_up.store(u64::from(up), Ordering::Relaxed);
        if !up {
            self.change_feed_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn warming(&self, running: bool) {
        self.cache_warming
            .store(u64::from(running), Ordering::Relaxed);
    }
    pub(crate) fn warmed(&self, tokens: usize) {
        self.cache_warmed
            .fetch_add(u64::try_from(tokens).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    pub(crate) fn mail_sent(&self) {
        self.mails_sent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn mail_failed(&self) {
        self.mails_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, cache: &CacheSize) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP latchkey_verifications_total Bearer tokens verified, by result."
        );
        let _ = writeln!(out, "# TYPE latchkey_verifications_total counter");
        let _ = writeln!(
            out,
            "latchkey_verifications_total{{result=\"accepted\"}} {}",
            self.verified.sum()
        );
        for (reason, counter) in REASONS.iter().zip(self.refused.iter()) {
            let _ = writeln!(
                out,
                "latchkey_verifications_total{{result=\"refused\",reason=\"{reason}\"}} {}",
                get(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP latchkey_rate_limited_total Requests answered 429."
        );
        let _ = writeln!(out, "# TYPE latchkey_rate_limited_total counter");
        let _ = writeln!(
            out,
            "latchkey_rate_limited_total {}",
            get(&self.rate_limited)
        );
        let _ = writeln!(
            out,
            "# HELP latchkey_oauth_access_tokens_issued_total Access tokens issued by /oauth2/token."
        );
        let _ = writeln!(
            out,
            "# TYPE latchkey_oauth_access_tokens_issued_total counter"
        );
        let _ = writeln!(
            out,
            "latchkey_oauth_access_tokens_issued_total {}",
            get(&self.access_tokens_issued)
        );
        let _ = writeln!(
            out,
            "# HELP latchkey_oauth_errors_total OAuth endpoint answers with an RFC 6749 error."
        );
        let _ = writeln!(out, "# TYPE latchkey_oauth_errors_total counter");
        let _ = writeln!(
            out,
            "latchkey_oauth_errors_total {}",
            get(&self.oauth_errors)
        );
        let _ = writeln!(out, "# HELP latchkey_logins_total Sign-ins, by result.");
        let _ = writeln!(out, "# TYPE latchkey_logins_total counter");
        let _ = writeln!(
            out,
            "latchkey_logins_total{{result=\"success\"}} {}",
            get(&self.logins)
        );
        let _ = writeln!(
            out,
            "latchkey_logins_total{{result=\"failure\"}} {}",
            get(&self.login_failures)
        );
        let _ = writeln!(
            out,
            "# HELP latchkey_mails_total Notification mails handed over (SMTP or file), by result."
        );
        let _ = writeln!(out, "# TYPE latchkey_mails_total counter");
        let _ = writeln!(
            out,
            "latchkey_mails_total{{result=\"sent\"}} {}",
            get(&self.mails_sent)
        );
        let _ = writeln!(
            out,
            "latchkey_mails_total{{result=\"failed\"}} {}",
            get(&self.mails_failed)
        );
        let _ = writeln!(
            out,
            "# HELP latchkey_change_feed_up 1 while other instances' changes are heard (PostgreSQL LISTEN); while 0 the verification cache is off."
        );
        let _ = writeln!(out, "# TYPE latchkey_change_feed_up gauge");
        let _ = writeln!(out, "latchkey_change_feed_up {}", get(&self.change_feed_up));
        let _ = writeln!(
            out,
            "# HELP latchkey_change_feed_lost_total Times the change channel was lost (the cache was dropped)."
        );
        let _ = writeln!(out, "# TYPE latchkey_change_feed_lost_total counter");
        let _ = writeln!(
            out,
            "latchkey_change_feed_lost_total {}",
            get(&self.change_feed_lost)
        );
        let gauges = [
            (
                "latchkey_verify_cache_answers",
                "Token answers in the verification cache.",
                cache.answers as u64,
            ),
            (
                "latchkey_verify_cache_owners",
                "Token owners' snapshots in the verification cache.",
                cache.owners as u64,
            ),
            (
                "latchkey_verify_cache_warming",
                "1 while the start-up warm-up loads live tokens into the cache.",
                get(&self.cache_warming),
            ),
            (
                "latchkey_verify_cache_warmed_tokens",
                "Tokens the start-up warm-up has loaded.",
                get(&self.cache_warmed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}
