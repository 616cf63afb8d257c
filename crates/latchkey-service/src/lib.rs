//! Latchkey's use cases, called alike by the HTTP API, the console and the operator CLI, so that
//! every path applies the same checks and writes the same audit events.
//!
//! Owns authorisation (who may do what), the token life cycle, sessions, and the verification
//! cache. Must not know about HTTP or the command line: inputs are typed values, outputs are
//! records and [`ServiceError`]s.

pub mod account;
mod after_commit;
pub mod crypto;
pub mod error;
mod events;
pub mod follow;
pub mod forward_auth;
pub mod instances;
pub mod invalidations;
pub mod keys;
pub mod limits;
pub mod mails;
pub mod master_key;
pub mod metrics;
pub mod notifications;
pub mod oauth;
pub mod org_tokens;
pub mod orgs;
pub mod outbound;
pub mod outbox;
pub mod provisioning;
pub mod sessions;
mod signing_keys;
pub mod sso;
pub mod tokens;
pub mod users;
pub mod verify;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{Clock, PolicyDuration, Timestamp, TokenTypes, UserId};
use latchkey_store::{Actor, Store};

pub use error::{ErrorCode, ServiceError, ServiceResult};
pub use verify::Verified;

/// Settings the service needs, passed by value from the binary's configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub public_url: String,
    pub session_ttl: PolicyDuration,
    /// A session unused this long ends, however long it had left.
    pub session_idle_timeout: PolicyDuration,
    /// How many Argon2 hashes may run at once (defaults to the number of cores).
    pub password_hash_concurrency: usize,
    pub limits: limits::LimitSettings,
    /// The algorithm new signing keys use.
    pub signing_alg: keys::SigningAlg,
    /// How long a new key is published before it signs (`latchkey keys rotate`).
    pub key_publish_ahead: PolicyDuration,
    /// The longest-lived JWT signed without a stored token (OAuth access tokens): a retired key
    /// stays published this long.
    pub access_token_ttl: PolicyDuration,
    /// Lifetime of an authorization code (60 s).
    pub code_ttl: PolicyDuration,
    /// Lifetime of a refresh token (30 days).
    pub refresh_token_ttl: PolicyDuration,
    /// Where notifications go (SPEC 6).
    pub mail: outbox::MailSettings,
    /// Single sign-on with the platform's OpenID provider (SPEC 9), when configured.
    pub sso: Option<sso::SsoSettings>,
    /// Latchkey's own requests to other servers.
    pub outbound: outbound::OutboundSettings,
}

/// Who is asking, and from where: recorded in audit events.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub ip: Option<IpAddr>,
    /// When the session behind this request last confirmed who it is at the single-sign-on
    /// provider (the gate of sensitive actions for people without a password).
    pub reauth_at: Option<Timestamp>,
}

impl Caller {
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            ip: None,
            reauth_at: None,
        }
    }
    pub fn anonymous(ip: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::Anonymous,
            ip,
            reauth_at: None,
        }
    }
    pub fn user(id: UserId, ip: Option<IpAddr>) -> Self {
        Self {
            actor: Actor::User(id),
            ip,
            reauth_at: None,
        }
    }
    pub fn user_id(&self) -> Option<&UserId> {
        match &self.actor {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }
}

/// The system clock, for production.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place that reads the real clock"
        )]
        time::OffsetDateTime::now_utc()
    }
}

/// Changes kept in the store's log: far more than any process falls behind between two polls
/// (a quarter of a second); one that falls further behind drops its whole cache.
const CHANGES_KEPT: u32 = 10_000;

pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    types: TokenTypes,
    settings: ServiceSettings,
    hasher: crypto::PasswordHasher,
    cache: Arc<verify::VerifyCache>,
    usage: verify::UsageRecorder,
    limits: limits::Limiters,
    master_key: master_key::MasterKey,
    keys: keys::KeyRing,
    deny_list: oauth::access_tokens::DenyList,
    metrics: metrics::Metrics,
    outbox: outbox::Outbox,
    /// Moved after every commit and every change read from the log (`invalidations.rs`).
    change_signal: Arc<tokio::sync::watch::Sender<u64>>,
    /// This process as a registered serving instance (`instances.rs`); unset in the CLI.
    instance: std::sync::OnceLock<latchkey_core::InstanceId>,
    /// The single-sign-on provider, when configured.
    sso: Option<sso::Sso>,
}

impl Service {
    /// A service over `store`. Call [`Service::init`] before serving.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        types: TokenTypes,
        settings: ServiceSettings,
        master_key: master_key::MasterKey,
    ) -> ServiceResult<Self> {
        let hasher = crypto::PasswordHasher::new(settings.password_hash_concurrency)?;
        let limiters = limits::Limiters::new(settings.limits);
        let outbox = outbox::Outbox::new(&settings.mail)?;
        let cache = Arc::new(verify::VerifyCache::new(store.feeds_changes()));
        let change_signal = Arc::new(tokio::sync::watch::Sender::new(0));
        let sso = match settings.sso.clone() {
            Some(sso) => Some(sso::Sso::new(
                sso,
                outbound::Outbound::new(settings.outbound)?,
            )),
            None => None,
        };
        store.set_change_listener(after_commit::listener(
            cache.clone(),
            outbox.waker(),
            change_signal.clone(),
        ));
        Ok(Self {
            store,
            clock,
            types,
            settings,
            hasher,
            cache,
            usage: verify::UsageRecorder::default(),
            limits: limiters,
            master_key,
            keys: keys::KeyRing::default(),
            deny_list: oauth::access_tokens::DenyList::default(),
            metrics: metrics::Metrics::default(),
            outbox,
            change_signal,
            instance: std::sync::OnceLock::new(),
            sso,
        })
    }

    /// Loads the signing keys, creating the first one on first start.
    pub async fn init(&self) -> ServiceResult<()> {
        self.load_signing_keys().await?;
        self.load_deny_list().await?;
        self.ensure_signing_key().await?;
        // The change log as of now: the first poll must not replay what came before.
        self.cache
            .note_change_seen(self.store.latest_change().await?);
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn types(&self) -> &TokenTypes {
        &self.types
    }
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }
    /// `GET /metrics`: the counters and the verification cache's size.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.cache.size())
    }
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }
    pub fn now(&self) -> Timestamp {
        latchkey_core::clock::to_second(self.clock.now())
    }

    /// Storage reachable.
    pub async fn ready(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }

    /// Runs the background work until `shutdown` resolves: writes token usage in batches and
    /// drops the verification cache when another process changed the database. Flushes once
    /// more on the way out so that no recorded use is lost on a graceful stop.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        let follow = tokio::spawn(self.clone().follow_changes(shutdown.clone()));
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    self.flush_usage().await;
                    self.heartbeat().await;
                }
                _ = poll.tick() => self.poll_changes().await,
                _ = prune.tick() => {
                    if let Err(e) = self.store.prune_changes(CHANGES_KEPT).await {
                        tracing::warn!(error = %e, "could not prune the change log");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = follow.await;
        self.flush_usage().await;
    }
}
