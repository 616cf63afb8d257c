//! Token types and their policies (SPEC 2.1): the built-in table, overrides and new types from
//! configuration, and the pure rules that follow from a policy (expiry, grace, limits).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::{Timestamp, to_second};
use crate::duration::PolicyDuration;
use crate::token_string::Prefix;

/// The prefix of session tokens: reserved, no token type may use it.
pub const SESSION_PREFIX: &str = "lkses";
/// The longest grace period a rotation may ask for (SPEC 2.3).
pub const MAX_GRACE: PolicyDuration = PolicyDuration::from_days(7);
/// Upper bound for `expires_in_days` on types without a lifetime (ten years).
pub const MAX_EXPIRES_IN_DAYS: u32 = 3_650;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    User,
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Opaque,
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reveal {
    Once,
    Reauth,
}

/// Either a duration or `"none"` (no expiry), as written in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Option<PolicyDuration>);

impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "none" {
            return Ok(Self(None));
        }
        let duration: PolicyDuration = text.parse().map_err(serde::de::Error::custom)?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a lifetime of 0s would make every token expired: write \"none\" for no expiry",
            ));
        }
        Ok(Self(Some(duration)))
    }
}

/// One token type, fully resolved: every field has a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTypePolicy {
    pub name: String,
    pub owner: OwnerKind,
    pub format: Format,
    pub max_active: u32,
    pub activation_delay: PolicyDuration,
    pub lifetime: Option<PolicyDuration>,
    pub reveal: Reveal,
    pub requires_feature: Option<String>,
    pub scopes: Vec<String>,
    pub rotation_reminder: PolicyDuration,
    pub prefix: Prefix,
}

/// A type's fields as written under `[token_types.NAME]`; absent fields keep the built-in value
/// (or are required, for a new type: `owner` and `prefix`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTypeConfig {
    pub owner: Option<OwnerKind>,
    pub format: Option<Format>,
    pub max_active: Option<u32>,
    pub activation_delay: Option<PolicyDuration>,
    pub lifetime: Option<Lifetime>,
    pub reveal: Option<Reveal>,
    pub requires_feature: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub rotation_reminder: Option<PolicyDuration>,
    pub prefix: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("token type {0:?}: a type name is 1 to 32 lower-case letters, digits, '-' or '_'")]
    BadTypeName(String),
    #[error("token type {0:?} is new: it needs `owner` and `prefix`")]
    MissingField(String),
    #[error("token type {0:?}: {1}")]
    Invalid(String, String),
    #[error("token types {0:?} and {1:?} share the prefix {2:?}")]
    DuplicatePrefix(String, String, String),
}

/// A type with the organisation defaults of SPEC 2.1 (changed below for `personal`).
fn builtin(name: &str, owner: OwnerKind, format: Format, prefix: &str) -> TokenTypePolicy {
    TokenTypePolicy {
        name: name.to_owned(),
        owner,
        format,
        max_active: if owner == OwnerKind::User { 1 } else { 2 },
        activation_delay: PolicyDuration::from_secs(1_800),
        lifetime: None,
        reveal: Reveal::Reauth,
        requires_feature: None,
        scopes: vec!["api".to_owned()],
        rotation_reminder: PolicyDuration::from_days(180),
        prefix: Prefix(prefix.to_owned()),
    }
}

/// The table of SPEC 2.1.
pub fn builtin_types() -> Vec<TokenTypePolicy> {
    use Format::{Jwt, Opaque};
    use OwnerKind::{Organisation, User};
    let personal = TokenTypePolicy {
        activation_delay: PolicyDuration::ZERO,
        lifetime: Some(PolicyDuration::from_days(180)),
        reveal: Reveal::Once,
        ..builtin("personal", User, Opaque, "lkp")
    };
    let links = TokenTypePolicy {
        requires_feature: Some("links".to_owned()),
        scopes: vec!["links".to_owned()],
        ..builtin("links", Organisation, Opaque, "lkl")
    };
    vec![
        personal,
        builtin("api", Organisation, Jwt, "lka"),
        builtin("s2s", Organisation, Opaque, "lks"),
        links,
    ]
}

impl TokenTypePolicy {
    fn apply(&mut self, c: &TokenTypeConfig) -> Result<(), PolicyError> {
        let invalid = |msg: &str| PolicyError::Invalid(self.name.clone(), msg.to_owned());
        if let Some(owner) = c.owner {
            self.owner = owner;
        }
        if let Some(format) = c.format {
            self.format = format;
        }
        if let Some(max) = c.max_active {
            if max == 0 {
                return Err(invalid("max_active must be at least 1"));
            }
            self.max_active = max;
        }
        if let Some(delay) = c.activation_delay {
            self.activation_delay = delay;
        }
        if let Some(lifetime) = c.lifetime {
            self.lifetime = lifetime.0;
        }
        if let Some(reveal) = c.reveal {
            self.reveal = reveal;
        }
        if let Some(feature) = &c.requires_feature {
            let feature = feature.trim();
            self.requires_feature = if feature.is_empty() || feature == "none" {
                None
            } else {
                Some(parse_feature(feature).map_err(|e| invalid(&e))?)
            };
        }
        if let Some(scopes) = &c.scopes {
            self.scopes = scopes.clone();
        }
        if let Some(reminder) = c.rotation_reminder {
            self.rotation_reminder = reminder;
        }
        if let Some(prefix) = &c.prefix {
            self.prefix = Prefix::parse(prefix).map_err(|e| invalid(&e.to_string()))?;
        }
        if self.prefix.as_str() == SESSION_PREFIX {
            return Err(invalid("the prefix lkses is reserved for sessions"));
        }
        if self.owner == OwnerKind::User && self.format == Format::Jwt {
            return Err(invalid("tokens owned by a user are opaque"));
        }
        Ok(())
    }

    /// The expiry of a token created at `created_at`, given what the creator asked for: never
    /// later than the type's lifetime allows.
    pub fn expiry(
        &self,
        created_at: Timestamp,
        expires_in_days: Option<u32>,
    ) -> Result<Option<Timestamp>, ExpiryError> {
        let created_at = to_second(created_at);
        match (expires_in_days, self.lifetime) {
            (Some(0), _) => Err(ExpiryError::NotPositive),
            (Some(days), Some(lifetime)) => {
                let asked = PolicyDuration::from_days(u64::from(days));
                if asked > lifetime {
                    Err(ExpiryError::BeyondLifetime(lifetime))
                } else {
                    Ok(Some(created_at + asked.to_time()))
                }
            }
            (Some(days), None) => {
                if days > MAX_EXPIRES_IN_DAYS {
                    Err(ExpiryError::TooFar)
                } else {
                    Ok(Some(
                        created_at + PolicyDuration::from_days(u64::from(days)).to_time(),
                    ))
                }
            }
            (None, Some(lifetime)) => Ok(Some(created_at + lifetime.to_time())),
            (None, None) => Ok(None),
        }
    }

    /// When a token created at `created_at` starts to work.
    pub fn active_from(&self, created_at: Timestamp) -> Timestamp {
        to_second(created_at) + self.activation_delay.to_time()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExpiryError {
    #[error("expires_in_days must be at least 1")]
    NotPositive,
    #[error("expires_in_days may not exceed this type's lifetime of {0}")]
    BeyondLifetime(PolicyDuration),
    #[error("expires_in_days may not exceed 3650")]
    TooFar,
}

fn parse_feature(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("a feature name is 1 to 64 lower-case letters, digits, '-' or '_'".to_owned())
    }
}

/// A feature name (plan option such as `links`), checked.
pub fn feature_name(text: &str) -> Result<String, String> {
    parse_feature(text.trim())
}

fn valid_type_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Every token type this deployment knows, by name and by prefix.
#[derive(Debug, Clone)]
pub struct TokenTypes {
    by_name: BTreeMap<String, TokenTypePolicy>,
}

impl TokenTypes {
    /// The built-in types with the configured overrides and additions applied.
    pub fn from_config(config: &BTreeMap<String, TokenTypeConfig>) -> Result<Self, PolicyError> {
        let mut by_name: BTreeMap<String, TokenTypePolicy> = builtin_types()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        for (name, c) in config {
            if !valid_type_name(name) {
                return Err(PolicyError::BadTypeName(name.clone()));
            }
            let mut policy = match by_name.get(name) {
                Some(existing) => existing.clone(),
                None => {
                    let (Some(owner), Some(prefix)) = (c.owner, &c.prefix) else {
                        return Err(PolicyError::MissingField(name.clone()));
                    };
                    let prefix = Prefix::parse(prefix)
                        .map_err(|e| PolicyError::Invalid(name.clone(), e.to_string()))?;
                    // A new type starts from the most conservative settings: no delay,
                    // no expiry, shown once; the configuration says the rest.
                    TokenTypePolicy {
                        activation_delay: PolicyDuration::ZERO,
                        reveal: Reveal::Once,
                        prefix,
                        ..builtin(name, owner, Format::Opaque, "xx")
                    }
                }
            };
            policy.apply(c)?;
            by_name.insert(name.clone(), policy);
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for policy in by_name.values() {
            if let Some(other) = seen.insert(policy.prefix.as_str(), policy.name.as_str()) {
                return Err(PolicyError::DuplicatePrefix(
                    other.to_owned(),
                    policy.name.clone(),
                    policy.prefix.to_string(),
                ));
            }
        }
        Ok(Self { by_name })
    }

    pub fn defaults() -> Self {
        Self {
            by_name: builtin_types()
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&TokenTypePolicy> {
        self.by_name.get(name)
    }

    pub fn by_prefix(&self, prefix: &str) -> Option<&TokenTypePolicy> {
        self.by_name.values().find(|t| t.prefix.as_str() == prefix)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TokenTypePolicy> {
        self.by_name.values()
    }

    /// The type a user gets when they do not name one.
    pub fn default_personal(&self) -> Option<&TokenTypePolicy> {
        self.get("personal")
            .filter(|t| t.owner == OwnerKind::User)
            .or_else(|| self.iter().find(|t| t.owner == OwnerKind::User))
    }
}

/// How long the old token of a rotation keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// A fixed period, at most [`MAX_GRACE`].
    For(PolicyDuration),
    /// Until the new token is first used, capped at [`MAX_GRACE`].
    FirstUse,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("grace is a duration of at most 7d (like 0s, 1h, 7d) or \"first_use\"")]
pub struct GraceError;

impl Default for Grace {
    fn default() -> Self {
        Self::For(PolicyDuration::ZERO)
    }
}

impl FromStr for Grace {
    type Err = GraceError;
    fn from_str(s: &str) -> Result<Self, GraceError> {
        if s == "first_use" {
            return Ok(Self::FirstUse);
        }
        let d: PolicyDuration = s.parse().map_err(|_| GraceError)?;
        if d > MAX_GRACE {
            return Err(GraceError);
        }
        Ok(Self::For(d))
    }
}

impl<'de> Deserialize<'de> for Grace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Grace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::For(d) => write!(f, "{d}"),
            Self::FirstUse => f.write_str("first_use"),
        }
    }
}

impl Grace {
    /// When the old token of a rotation done at `now` stops working.
    pub fn old_token_expiry(self, now: Timestamp) -> Timestamp {
        let now = to_second(now);
        match self {
            Self::For(d) => now + d.to_time(),
            Self::FirstUse => now + MAX_GRACE.to_time(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use time::macros::datetime;

    fn types(toml_like: &[(&str, TokenTypeConfig)]) -> Result<TokenTypes, PolicyError> {
        let map = toml_like
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        TokenTypes::from_config(&map)
    }

    #[test]
    fn builtins_match_the_spec_table() {
        let t = TokenTypes::defaults();
        let personal = t.get("personal").cloned();
        assert_eq!(personal.as_ref().map(|p| p.owner), Some(OwnerKind::User));
        assert_eq!(personal.as_ref().map(|p| p.max_active), Some(1));
        assert_eq!(
            personal.as_ref().and_then(|p| p.lifetime),
            Some(PolicyDuration::from_days(180))
        );
        assert_eq!(personal.as_ref().map(|p| p.reveal), Some(Reveal::Once));
        let api = t.get("api").cloned();
        assert_eq!(api.as_ref().map(|p| p.format), Some(Format::Jwt));
        assert_eq!(api.as_ref().map(|p| p.max_active), Some(2));
        assert_eq!(
            api.as_ref().map(|p| p.activation_delay.as_secs()),
            Some(1_800)
        );
        assert_eq!(api.as_ref().map(|p| p.lifetime), Some(None));
        assert_eq!(
            t.get("links").and_then(|p| p.requires_feature.clone()),
            Some("links".to_owned())
        );
        for (name, prefix) in [
            ("personal", "lkp"),
            ("api", "lka"),
            ("s2s", "lks"),
            ("links", "lkl"),
        ] {
            assert_eq!(t.get(name).map(|p| p.prefix.as_str()), Some(prefix));
            assert_eq!(t.by_prefix(prefix).map(|p| p.name.as_str()), Some(name));
        }
    }

    #[test]
    fn overrides_apply_and_new_types_need_owner_and_prefix() {
        let t = types(&[(
            "api",
            TokenTypeConfig {
                activation_delay: Some(PolicyDuration::from_secs(2)),
                max_active: Some(5),
                ..Default::default()
            },
        )]);
        let api = t.ok().and_then(|t| t.get("api").cloned());
        assert_eq!(api.as_ref().map(|p| p.activation_delay.as_secs()), Some(2));
        assert_eq!(api.as_ref().map(|p| p.max_active), Some(5));

        assert_eq!(
            types(&[("ci", TokenTypeConfig::default())]).map(|_| ()),
            Err(PolicyError::MissingField("ci".into()))
        );
        let ci = types(&[(
            "ci",
            TokenTypeConfig {
                owner: Some(OwnerKind::User),
                prefix: Some("lkci".into()),
                max_active: Some(3),
                ..Default::default()
            },
        )]);
        assert_eq!(
            ci.ok()
                .and_then(|t| t.by_prefix("lkci").map(|p| p.max_active)),
            Some(3)
        );
    }

    #[rstest]
    #[case(TokenTypeConfig { prefix: Some("lka".into()), ..Default::default() })]
    #[case(TokenTypeConfig { prefix: Some("lkses".into()), ..Default::default() })]
    #[case(TokenTypeConfig { prefix: Some("Bad".into()), ..Default::default() })]
    #[case(TokenTypeConfig { max_active: Some(0), ..Default::default() })]
    #[case(TokenTypeConfig { format: Some(Format::Jwt), ..Default::default() })]
    fn invalid_personal_overrides(#[case] c: TokenTypeConfig) {
        assert!(types(&[("personal", c)]).is_err());
    }

    #[test]
    fn bad_type_names_are_refused() {
        assert!(matches!(
            types(&[("Bad Name", TokenTypeConfig::default())]),
            Err(PolicyError::BadTypeName(_))
        ));
    }

    #[test]
    fn expiry_never_exceeds_the_lifetime() {
        let t = TokenTypes::defaults();
        let personal = t.get("personal").cloned().unwrap_or_else(|| unreachable!());
        let now = datetime!(2026-01-01 00:00:00.7 UTC);
        assert_eq!(
            personal.expiry(now, None),
            Ok(Some(datetime!(2026-06-30 00:00:00 UTC)))
        );
        assert_eq!(
            personal.expiry(now, Some(30)),
            Ok(Some(datetime!(2026-01-31 00:00:00 UTC)))
        );
        assert_eq!(
            personal.expiry(now, Some(181)),
            Err(ExpiryError::BeyondLifetime(PolicyDuration::from_days(180)))
        );
        assert_eq!(personal.expiry(now, Some(0)), Err(ExpiryError::NotPositive));
        let s2s = t.get("s2s").cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(s2s.expiry(now, None), Ok(None));
        assert_eq!(s2s.expiry(now, Some(3_651)), Err(ExpiryError::TooFar));
        assert_eq!(s2s.active_from(now), datetime!(2026-01-01 00:30:00 UTC));
    }

    #[rstest]
    #[case("0s", Ok(Grace::For(PolicyDuration::ZERO)))]
    #[case("7d", Ok(Grace::For(PolicyDuration::from_days(7))))]
    #[case("first_use", Ok(Grace::FirstUse))]
    #[case("8d", Err(GraceError))]
    #[case("soon", Err(GraceError))]
    fn grace(#[case] text: &str, #[case] expected: Result<Grace, GraceError>) {
        assert_eq!(text.parse::<Grace>(), expected);
    }

    #[test]
    fn first_use_grace_is_capped_at_seven_days() {
        let now = datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(
            Grace::FirstUse.old_token_expiry(now),
            datetime!(2026-01-08 00:00:00 UTC)
        );
    }
}
