//! Verifying Latchkey tokens inside a resource server (SPEC 8): "who is calling, and may they?"
//! without a network round trip per request.
//!
//! - An opaque token (`lkp_…`, `lks_…`) is asked of Latchkey once, by RFC 7662 introspection
//!   with a client that has the `introspect` permission; the answer is kept in a local cache.
//! - A JWT (an OAuth access token, or an organisation token in JWT format) is checked offline
//!   first against Latchkey's JWKS (signature, issuer, audience, expiry; the JWKS is fetched
//!   again on an unknown `kid`), so a forged or expired one never leaves the process; whether it
//!   was revoked since (the deny-list) is asked once like an opaque token and cached the same way.
//! - The cache is kept exact by `GET /v1/invalidations`, Latchkey's stream of every change as it
//!   commits: each change drops exactly the answers it can alter (a token, an owner's tokens, an
//!   organisation and its members', a client's, every access token's on a deny-list change).
//! - When the stream is down (not yet connected, cut, silent past its heartbeats) nothing is
//!   served from the cache and every request asks Latchkey: fail closed, never a stale yes. The
//!   metrics say so ([`Metrics::stream_up`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use latchkey_verifier::{Config, Verifier};
//! let verifier = Verifier::new(Config::new("https://auth.example.com", "cli_…", "secret"))?;
//! verifier.start(); // follows the invalidation stream in the background
//! let identity = verifier.verify("lkp_…").await?;
//! println!("{} ({})", identity.principal, identity.kind);
//! # Ok(()) }
//! ```
//!
//! [`VerifyLayer`] does the same for every request of an axum (or any tower) server and puts the
//! [`Identity`] in the request's extensions.

mod cache;
mod jwks;
mod layer;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use layer::{VerifyLayer, VerifyService};

/// Who is calling: what Latchkey's introspection said about the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `usr_…`, `org_…` or `cli_…`.
    pub principal: String,
    /// `user`, `organisation` or `client`.
    pub kind: String,
    /// The token's id (`tok_…`), or an access token's `jti`.
    pub token_id: String,
    /// The organisations the token reaches now, with the role there (`organisation` when the
    /// token acts as the organisation itself).
    pub accounts: Vec<(String, String)>,
    pub scopes: Vec<String>,
    /// The OAuth client an access token was issued to.
    pub client_id: Option<String>,
    /// Unix seconds; `None` for a token that does not expire.
    pub expires_at: Option<i64>,
}

impl Identity {
    /// From an active RFC 7662 answer of Latchkey (its `principal`, `token` and `accounts`
    /// members, and the standard `scope`, `client_id`, `exp`).
    fn from_introspection(body: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let principal = body["principal"]["id"]
            .as_str()
            .or_else(|| body["sub"].as_str())
            .unwrap_or_default()
            .to_owned();
        let token_id = body["token"]["id"]
            .as_str()
            .or_else(|| body["jti"].as_str())
            .unwrap_or_default()
            .to_owned();
        Self {
            principal,
            kind: text(&body["principal"]["kind"]),
            token_id,
            accounts: body["accounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (text(&a["id"]), text(&a["role"])))
                .collect(),
            scopes: body["scope"]
                .as_str()
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: body["client_id"].as_str().map(str::to_owned),
            expires_at: body["exp"].as_i64(),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The role the token has in organisation `org`, if it reaches it.
    pub fn role_in(&self, org: &str) -> Option<&str> {
        self.accounts
            .iter()
            .find(|(id, _)| id == org)
            .map(|(_, role)| role.as_str())
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token was presented")]
    Missing,
    /// Not a token Latchkey could have made, or a JWT whose signature, issuer, audience or
    /// expiry is wrong: found without asking Latchkey.
    #[error("the token is malformed or its signature is invalid")]
    Malformed,
    /// Latchkey says it is not active: unknown, revoked, expired, not yet active, or its owner
    /// is switched off.
    #[error("the token is not active")]
    Inactive,
    /// Latchkey could not be asked (and the cache could not answer): the caller should answer
    /// 503, never let the request through.
    #[error("Latchkey could not be reached: {0}")]
    Unavailable(String),
}

/// Where Latchkey is and the client the verifier authenticates as.
#[derive(Debug, Clone)]
pub struct Config {
    /// Latchkey's base URL, like `https://auth.example.com`.
    pub url: String,
    /// The issuer of its JWTs (its `public_url`); by default `url`.
    pub issuer: Option<String>,
    /// A client with the `introspect` permission (`latchkey client create --introspect`).
    pub client_id: String,
    pub client_secret: String,
    /// How long one request to Latchkey may take.
    pub request_timeout: Duration,
    /// The most answers kept; beyond it the cache starts afresh.
    pub max_cached: usize,
}

impl Config {
    pub fn new(url: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            issuer: None,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            request_timeout: Duration::from_secs(5),
            max_cached: 100_000,
        }
    }

    fn issuer(&self) -> &str {
        self.issuer.as_deref().unwrap_or(&self.url)
    }
}

/// The verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the verifier: {0}")]
pub struct BuildError(String);

/// What the verifier has done, for the resource server's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Whether the invalidation stream is connected: while false, nothing is served from the
    /// cache and every request asks Latchkey.
    pub stream_up: bool,
    /// Times the stream was lost (the cache was dropped each time).
    pub stream_drops: u64,
    /// Verifications answered from the cache.
    pub cache_hits: u64,
    /// Verifications that asked Latchkey.
    pub latchkey_requests: u64,
    /// Tokens refused (malformed or inactive).
    pub refused: u64,
    /// Invalidations applied from the stream.
    pub invalidations: u64,
    /// Answers in the cache now.
    pub cached: usize,
}

/// Verifies tokens; cheap to clone (one shared cache and connection pool).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    cache: cache::Cache,
    jwks: jwks::Jwks,
    counters: Counters,
    started: AtomicBool,
}

#[derive(Default)]
struct Counters {
    stream_drops: AtomicU64,
    cache_hits: AtomicU64,
    latchkey_requests: AtomicU64,
    refused: AtomicU64,
    invalidations: AtomicU64,
}

fn now_secs() -> i64 {
    #[expect(
        clippy::disallowed_methods,
        reason = "the verifier runs in the resource server, on its clock"
    )]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A compact JWS: three base64url parts, the first a JSON object.
fn looks_like_jwt(text: &str) -> bool {
    text.starts_with("eyJ")
        && text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Verifier {
    pub fn new(config: Config) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cache: cache::Cache::new(config.max_cached),
                jwks: jwks::Jwks::default(),
                config,
                http,
                counters: Counters::default(),
                started: AtomicBool::new(false),
            }),
        })
    }

    /// Follows the invalidation stream in the background (on the current tokio runtime), for
    /// as long as the verifier lives; until it connects, every request asks Latchkey. Calling it
    /// again does nothing.
    pub fn start(&self) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(stream::follow(Arc::downgrade(&self.inner)));
    }

    /// Who `token` is (a bearer token's text), from the cache or from Latchkey.
    pub async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let result = self.verify_inner(token.trim()).await;
        if matches!(result, Err(Refusal::Malformed | Refusal::Inactive)) {
            self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<Identity, Refusal> {
        let inner = &self.inner;
        if token.is_empty() {
            return Err(Refusal::Missing);
        }
        if token.len() > 8192 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Refusal::Malformed);
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(identity) = inner.cache.get(&hash, now) {
            inner.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(identity);
        }
        let jwt = looks_like_jwt(token);
        if jwt {
            inner.jwks.check(inner, token).await?;
        }
        // Taken before asking: an invalidation that arrives meanwhile keeps the answer out.
        let generation = inner.cache.generation();
        inner
            .counters
            .latchkey_requests
            .fetch_add(1, Ordering::Relaxed);
        let answer = inner.introspect(token).await?;
        if answer["active"] != Value::Bool(true) {
            return Err(Refusal::Inactive);
        }
        let identity = Identity::from_introspection(&answer);
        if identity.expires_at.is_some_and(|exp| exp <= now) {
            return Err(Refusal::Inactive);
        }
        inner
            .cache
            .insert_if_current(generation, hash, identity.clone(), jwt);
        Ok(identity)
    }

    pub fn metrics(&self) -> Metrics {
        let c = &self.inner.counters;
        Metrics {
            stream_up: self.inner.cache.is_seeing(),
            stream_drops: c.stream_drops.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            latchkey_requests: c.latchkey_requests.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            cached: self.inner.cache.len(),
        }
    }
}

impl Inner {
    /// RFC 7662 introspection of `token`, authenticated as the configured client.
    async fn introspect(&self, token: &str) -> Result<Value, Refusal> {
        let res = self
            .http
            .post(format!("{}/oauth2/introspect", self.config.url))
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| Refusal::Unavailable(e.without_url().to_string()))?;
        let status = res.status();
        if !status.is_success() {
            return Err(Refusal::Unavailable(format!(
                "introspection answered {status}"
            )));
        }
        res.json::<Value>()
            .await
            .map_err(|e| Refusal::Unavailable(e.without_url().to_string()))
    }
}
