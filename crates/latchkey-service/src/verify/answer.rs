//! The answer about a token: who it acts as, what it reaches, and the one body every door
//! serves from (`/v1/me`; introspection and forward auth's identity are derived from it).
//!
//! A cached answer must stay small (a million of them fit in well under a gigabyte): the
//! `/v1/me` body, serialised once, is kept; introspection's body and the identity headers are
//! built from it the first time a token is presented there.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ipnet::IpNet;
use latchkey_core::policy::TokenTypePolicy;
use latchkey_core::{OrgId, Refusal, Timestamp, TokenId, TokenStatus};
use latchkey_store::{Owner, TokenRecord};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use super::cache::Dep;
use crate::Service;
use crate::error::{ServiceError, ServiceResult};
use crate::forward_auth::Identity;
use crate::oauth::access_tokens::AccessClaims;

/// `last_used_at` is written when the address changes, else at most once in ten minutes per
/// token (GitLab's granularity): at a minute, 80,000 tokens in steady use cost 1,300 row
/// writes a second, a fifth of the server's CPU (docs/BENCHMARKS.md).
pub(super) const USAGE_GRANULARITY_SECS: i64 = 600;

/// What the store said about a token, ready to answer requests.
#[derive(Debug)]
pub struct Verified {
    pub token_id: TokenId,
    /// Shared by every answer of the type (`VerifyCache::type_name`).
    pub token_type: Arc<str>,
    pub owner: Owner,
    pub active_from: Timestamp,
    pub expires_at: Option<Timestamp>,
    revoked: bool,
    owner_enabled: bool,
    /// Addresses the token may be used from; empty means any.
    pub allowed_ips: Box<[IpNet]>,
    /// The `/v1/me` answer, serialised once.
    me_body: Bytes,
    /// What an RFC 7662 answer adds to the `/v1/me` body.
    claims: Claims,
    /// Built from `me_body` and `claims` the first time the token is presented at
    /// introspection or forward auth (most tokens never are: one pointer until then).
    derived: OnceLock<Box<Derived>>,
    source: Source,
}

/// The answers of the other doors, derived from the `/v1/me` body.
#[derive(Debug, Default)]
struct Derived {
    introspection: OnceLock<Bytes>,
    identity: OnceLock<Identity>,
}

/// Where an answer came from.
#[derive(Debug)]
enum Source {
    /// A token in storage, answered with its owner's snapshot; its uses are recorded.
    Stored {
        owner: Arc<OwnerSnapshot>,
        uses: Uses,
    },
    /// A JWT access token (nothing stored, nothing recorded), and what else its answer names:
    /// a change to any of these drops it.
    AccessToken { deps: Box<[Dep]> },
}

/// The introspection fields that are not in the `/v1/me` body.
#[derive(Debug)]
enum Claims {
    Stored { created_at: i64 },
    AccessToken(Box<Map<String, Value>>),
}

/// A stored token's recent uses, to write `last_used_at` without writing every request.
#[derive(Debug)]
pub(super) struct Uses {
    first_use_seen: AtomicBool,
    last_use_at: AtomicI64,
    last_use_ip: AtomicU64,
    /// The old token of a rotation that ends when this one is first used (boxed: almost every
    /// answer has none, and a million answers each pay for the field).
    pub(super) ends_on_first_use: Option<Box<TokenId>>,
}

impl Uses {
    /// Whether this use should be written (first use, new address, or ten minutes later), and
    /// whether its address differs from the last one (only then can it be news to the owner).
    pub(super) fn should_record(&self, now: i64, ip_hash: u64) -> (bool, bool) {
        let last_at = self.last_use_at.load(Ordering::Relaxed);
        let last_ip = self.last_use_ip.load(Ordering::Relaxed);
        if last_ip == ip_hash && now - last_at < USAGE_GRANULARITY_SECS {
            return (false, false);
        }
        self.last_use_at.store(now, Ordering::Relaxed);
        self.last_use_ip.store(ip_hash, Ordering::Relaxed);
        (true, last_ip != ip_hash)
    }

    /// Makes the next use count as one from another address (its address could not be noted).
    pub(super) fn forget_address(&self) {
        self.last_use_ip.store(0, Ordering::Relaxed);
    }

    /// True the first time it is called for a token never used before.
    pub(super) fn first_use(&self) -> bool {
        !self.first_use_seen.swap(true, Ordering::AcqRel)
    }
}

pub(super) fn ip_hash(ip: IpAddr) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    ip.hash(&mut h);
    h.finish() | 1 // never 0, the "no address yet" value
}

impl Verified {
    pub(super) fn check(&self, now: Timestamp) -> Result<(), Refusal> {
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

    /// The `/v1/me` body.
    pub fn me_body(&self) -> Bytes {
        self.me_body.clone()
    }

    /// The RFC 7662 answer for this token while it is active.
    pub fn introspection(&self, issuer: &str) -> Bytes {
        self.derived()
            .introspection
            .get_or_init(|| self.build_introspection(issuer))
            .clone()
    }

    /// Who the token is, as forward auth's identity headers (SPEC 8).
    pub fn identity(&self) -> &Identity {
        self.derived()
            .identity
            .get_or_init(|| Identity::from_answer(&self.me_value()))
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(Box::default)
    }

    fn me_value(&self) -> Value {
        // The body was serialised from these values a moment or an hour ago: it parses.
        serde_json::from_slice(&self.me_body).unwrap_or_default()
    }

    fn build_introspection(&self, issuer: &str) -> Bytes {
        let body = self.me_value();
        let mut fields = Map::new();
        fields.insert("active".into(), Value::Bool(true));
        let scopes: Vec<&str> = body["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        fields.insert("scope".into(), json!(scopes.join(" ")));
        // RFC 7662 §2.2: the OAuth token type (RFC 6749 §7.1); Latchkey's type is in `token`.
        fields.insert("token_type".into(), json!("Bearer"));
        match &self.claims {
            Claims::Stored { created_at } => {
                fields.insert("sub".into(), json!(self.owner.id()));
                fields.insert("iat".into(), json!(created_at));
                fields.insert("nbf".into(), json!(self.active_from.unix_timestamp()));
                if let Some(exp) = self.expires_at {
                    fields.insert("exp".into(), json!(exp.unix_timestamp()));
                }
                fields.insert("iss".into(), json!(issuer));
                fields.insert("jti".into(), json!(self.token_id));
            }
            Claims::AccessToken(claims) => {
                fields.extend(claims.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        if let Value::Object(body) = body {
            for key in ["principal", "token", "accounts"] {
                if let Some(v) = body.get(key) {
                    fields.insert(key.into(), v.clone());
                }
            }
        }
        serde_json::to_vec(&fields)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(br#"{"active":false}"#))
    }

    /// A stored token's uses (`None` for JWT access tokens, which are not stored).
    pub(super) fn uses(&self) -> Option<&Uses> {
        match &self.source {
            Source::Stored { uses, .. } => Some(uses),
            Source::AccessToken { .. } => None,
        }
    }

    pub(super) fn owner_snapshot(&self) -> Option<&Arc<OwnerSnapshot>> {
        match &self.source {
            Source::Stored { owner, .. } => Some(owner),
            Source::AccessToken { .. } => None,
        }
    }

    /// What the answer names beyond its token and its owner (see [`Dep`]).
    pub(super) fn deps(&self) -> &[Dep] {
        match &self.source {
            Source::Stored { .. } => &[],
            Source::AccessToken { deps } => deps,
        }
    }

    #[cfg(test)]
    pub(super) fn for_tests(
        token_id: TokenId,
        token_type: &str,
        owner: Owner,
        at: Timestamp,
        snapshot: Arc<OwnerSnapshot>,
        deps: Vec<Dep>,
    ) -> Self {
        let source = if deps.is_empty() {
            Source::Stored {
                owner: snapshot,
                uses: Uses {
                    first_use_seen: AtomicBool::new(true),
                    last_use_at: AtomicI64::new(0),
                    last_use_ip: AtomicU64::new(0),
                    ends_on_first_use: None,
                },
            }
        } else {
            Source::AccessToken { deps: deps.into() }
        };
        Self {
            token_id,
            token_type: Arc::from(token_type),
            owner,
            active_from: at,
            expires_at: None,
            revoked: false,
            owner_enabled: true,
            allowed_ips: Box::default(),
            me_body: Bytes::new(),
            claims: Claims::Stored { created_at: 0 },
            derived: OnceLock::new(),
            source,
        }
    }
}

/// A token owner as verification sees it, shared by all of its tokens in the cache (a user
/// with many tokens costs one lookup, not one per token).
#[derive(Debug)]
pub(crate) struct OwnerSnapshot {
    principal: Value,
    /// The organisations the owner's tokens act in (switched-off ones left out).
    accounts: Vec<Value>,
    /// Every organisation the snapshot names, switched-off ones too (switching one back on
    /// alters the answer).
    pub(super) orgs: Vec<OrgId>,
    enabled: bool,
    /// An organisation's features (a type may need one).
    features: Vec<String>,
}

impl OwnerSnapshot {
    /// Whether a token of `policy` owned by this owner may be used at all: the owner enabled,
    /// the type known and its required feature on. The one rule behind every "what does this
    /// token reach" answer (verification, and the token views of the API and the console).
    fn admits(&self, policy: Option<&TokenTypePolicy>) -> bool {
        let feature_ok = policy
            .and_then(|p| p.requires_feature.as_ref())
            .is_none_or(|f| self.features.contains(f));
        self.enabled && policy.is_some() && feature_ok
    }

    #[cfg(test)]
    pub(super) fn for_tests(orgs: Vec<OrgId>) -> Self {
        Self {
            principal: Value::Null,
            accounts: Vec::new(),
            orgs,
            enabled: true,
            features: Vec::new(),
        }
    }
}

/// The `/v1/me` body (SPEC 2): the fields in the order a reader expects them sorted.
#[derive(Serialize)]
struct MeBody<'a> {
    accounts: &'a [Value],
    principal: &'a Value,
    scopes: &'a [String],
    token: TokenPart<'a>,
}

#[derive(Serialize)]
struct TokenPart<'a> {
    expires_at: Option<String>,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn me_body(
    principal: &Value,
    accounts: &[Value],
    scopes: &[String],
    token: TokenPart<'_>,
) -> ServiceResult<Bytes> {
    let body = MeBody {
        accounts,
        principal,
        scopes,
        token,
    };
    // Kept for as long as the token is cached: no spare capacity.
    serde_json::to_vec(&body)
        .map(|v| Bytes::from(v.into_boxed_slice()))
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

fn account(id: &OrgId, name: Option<&str>, role: impl Serialize) -> Value {
    json!({ "id": id, "name": name, "role": role })
}

impl Service {
    /// What a token's owner is right now, from the cache or from storage.
    pub(crate) async fn owner_snapshot(&self, owner: &Owner) -> ServiceResult<Arc<OwnerSnapshot>> {
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
                        .map(|a| account(&a.org_id, Some(&a.org_name), a.role))
                        .collect(),
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
                    accounts: vec![account(id, name.as_deref(), "organisation")],
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

    /// The organisations a stored token reaches now, as `/v1/me` lists them: none unless it
    /// is live and its owner and type admit it. For the token views of the API and console.
    pub async fn token_accounts(&self, token: &TokenRecord) -> ServiceResult<Vec<Value>> {
        if !token.status(self.now()).is_live() {
            return Ok(Vec::new());
        }
        let owner = self.owner_snapshot(&token.owner).await?;
        Ok(if owner.admits(self.types.get(&token.token_type)) {
            owner.accounts.clone()
        } else {
            Vec::new()
        })
    }

    /// The answer for a stored token.
    pub(super) async fn stored_answer(&self, token: TokenRecord) -> ServiceResult<Verified> {
        let owner = self.owner_snapshot(&token.owner).await?;
        let owner_enabled = owner.admits(self.types.get(&token.token_type));
        let me_body = me_body(
            &owner.principal,
            &owner.accounts,
            &token.scopes,
            TokenPart {
                expires_at: token.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
                id: token.id.as_str(),
                kind: &token.token_type,
            },
        )?;
        let last_ip = token
            .last_used_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map_or(0, ip_hash);
        // A stored allowlist that does not parse fails closed (an error), never open.
        let allowed_ips = crate::tokens::parse_allowed_ips(&token.allowed_ips).map_err(|_| {
            ServiceError::Internal(format!(
                "token {}: stored allowed_ips do not parse",
                token.id
            ))
        })?;
        Ok(Verified {
            owner_enabled,
            revoked: token.revoked_at.is_some(),
            allowed_ips: allowed_ips.into(),
            me_body,
            claims: Claims::Stored {
                created_at: token.created_at.unix_timestamp(),
            },
            derived: OnceLock::new(),
            source: Source::Stored {
                owner,
                uses: Uses {
                    first_use_seen: AtomicBool::new(token.last_used_at.is_some()),
                    last_use_at: AtomicI64::new(
                        token
                            .last_used_at
                            .map_or(i64::MIN / 2, |t| t.unix_timestamp()),
                    ),
                    last_use_ip: AtomicU64::new(last_ip),
                    ends_on_first_use: token.ends_on_first_use.map(Box::new),
                },
            },
            token_id: token.id,
            token_type: self.cache.type_name(&token.token_type),
            owner: token.owner,
            active_from: token.active_from,
            expires_at: token.expires_at,
        })
    }

    /// An access token's answer: an authorization-code token acts as the user who consented,
    /// for that client; a client-credentials token as the client's organisation.
    pub(super) async fn access_token_answer(
        &self,
        claims: AccessClaims,
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
        // The answer names the client's organisation and the user's accounts: a change to any
        // of them drops it.
        let mut deps = vec![
            Dep::AccessToken,
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
                    let accounts: Vec<Value> = memberships
                        .iter()
                        .filter(|a| a.api_tokens_enabled)
                        .map(|a| account(&a.org_id, Some(&a.org_name), a.role))
                        .collect();
                    let enabled = user.is_some_and(|u| !u.disabled && u.api_tokens_enabled);
                    (principal, accounts, Owner::User(user_id), enabled)
                }
                Err(_) => {
                    let principal = json!({
                        "kind": "client",
                        "id": claims.client_id,
                        "name": client_name,
                        "organisation": org_id,
                    });
                    let accounts = vec![account(&org_id, org_name.as_deref(), "organisation")];
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
        let me_body = me_body(
            &principal,
            &accounts,
            &scopes,
            TokenPart {
                expires_at: expires_at.format(&Rfc3339).ok(),
                id: jti.as_str(),
                kind: "access_token",
            },
        )?;
        let mut extra = Map::new();
        extra.insert("client_id".into(), json!(claims.client_id));
        extra.insert("sub".into(), json!(claims.sub));
        extra.insert("aud".into(), claims.aud.clone());
        extra.insert("iss".into(), json!(claims.iss));
        extra.insert("iat".into(), json!(claims.iat));
        extra.insert("exp".into(), json!(claims.exp));
        extra.insert("jti".into(), json!(claims.jti));
        Ok(Verified {
            revoked: self.is_denied(&claims.jti, claims.grant.as_deref()) || !client_live,
            owner_enabled,
            me_body,
            claims: Claims::AccessToken(Box::new(extra)),
            derived: OnceLock::new(),
            source: Source::AccessToken { deps: deps.into() },
            allowed_ips: Box::default(),
            token_id: jti,
            token_type: self.cache.type_name("access_token"),
            owner,
            // Clock skew between servers: accept a token issued up to the leeway "early".
            active_from: issued_at
                - time::Duration::seconds(crate::oauth::access_tokens::LEEWAY_SECS),
            expires_at: Some(expires_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses() -> Uses {
        Uses {
            first_use_seen: AtomicBool::new(false),
            last_use_at: AtomicI64::new(0),
            last_use_ip: AtomicU64::new(0),
            ends_on_first_use: None,
        }
    }

    #[test]
    fn a_use_is_written_first_then_on_a_new_address_or_after_the_granularity() {
        let u = uses();
        let home = ip_hash(IpAddr::from([10, 0, 0, 1]));
        let away = ip_hash(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(u.should_record(1_000, home), (true, true), "first use");
        assert_eq!(u.should_record(1_001, home), (false, false));
        assert_eq!(
            u.should_record(1_000 + USAGE_GRANULARITY_SECS - 1, home),
            (false, false),
            "within the granularity"
        );
        assert_eq!(
            u.should_record(1_002, away),
            (true, true),
            "another address"
        );
        assert_eq!(u.should_record(1_003, home), (true, true), "and back");
        assert_eq!(
            u.should_record(1_003 + USAGE_GRANULARITY_SECS, home),
            (true, false),
            "the same address, later"
        );
        u.forget_address();
        assert_eq!(
            u.should_record(1_004 + USAGE_GRANULARITY_SECS, home),
            (true, true),
            "an address that could not be noted is noted again"
        );
    }
}
