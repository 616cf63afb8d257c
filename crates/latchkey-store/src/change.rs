//! What a committed write altered, as a value: the one after-commit path (STYLE 13).
//!
//! Each write that can alter an answer Latchkey gives (a cached verification, a client's
//! authentication, the deny-list, the keys) names what it altered with one or more [`Change`]s,
//! in its own transaction: the SQLite backend writes them to the `changes` table, from which
//! other processes (the operator CLI's server, later other instances) read them, and hands them
//! to the store's listener right after the commit. The service's one listener applies them: it
//! drops exactly the cached answers a change can alter and wakes the outbox. `/v1/invalidations`
//! (the resource-server kit) will carry the same values.
//!
//! A change says what data moved, not what the cache does about it: the mapping lives in one
//! place in the service (`verify.rs`).

use std::fmt;
use std::str::FromStr;

use latchkey_core::{OrgId, TokenId, UserId};

use crate::Owner;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// One token's record: revoked, rotated, its expiry or allowlist changed, cancelled.
    Token(TokenId),
    /// Every token of an owner, or of one type of it (the kill switch).
    OwnerTokens(Owner, Option<String>),
    /// A user's record: disabled, tokens switched, operator flag.
    User(UserId),
    /// An organisation's record: name, switches, features.
    Org(OrgId),
    /// A user joined, left or changed role in an organisation.
    Membership(OrgId, UserId),
    /// An OAuth client's record or its secrets.
    Client(String),
    /// JWT access tokens were denied (RFC 7009 revocation, a grant revoked).
    AccessTokens,
    /// The signing keys changed.
    Keys,
    /// Mails were written to the outbox.
    Outbox,
    /// Anything: drop everything (a gap in what was seen).
    All,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(id) => write!(f, "token:{id}"),
            Self::OwnerTokens(owner, None) => {
                write!(f, "owner_tokens:{}:{}", owner.kind(), owner.id())
            }
            Self::OwnerTokens(owner, Some(t)) => {
                write!(f, "owner_tokens:{}:{}:{t}", owner.kind(), owner.id())
            }
            Self::User(id) => write!(f, "user:{id}"),
            Self::Org(id) => write!(f, "org:{id}"),
            Self::Membership(org, user) => write!(f, "membership:{org}:{user}"),
            Self::Client(id) => write!(f, "client:{id}"),
            Self::AccessTokens => f.write_str("access_tokens"),
            Self::Keys => f.write_str("keys"),
            Self::Outbox => f.write_str("outbox"),
            Self::All => f.write_str("all"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a change: {0}")]
pub struct BadChange(String);

impl FromStr for Change {
    type Err = BadChange;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadChange(text.chars().take(80).collect());
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        Ok(match kind {
            "token" => Self::Token(parse_id(rest, &bad)?),
            "owner_tokens" => {
                let mut parts = rest.splitn(3, ':');
                let owner = match (parts.next(), parts.next()) {
                    (Some("user"), Some(u)) => Owner::User(parse_id(u, &bad)?),
                    (Some("organisation"), Some(o)) => Owner::Organisation(parse_id(o, &bad)?),
                    _ => return Err(bad()),
                };
                Self::OwnerTokens(owner, parts.next().map(str::to_owned))
            }
            "user" => Self::User(parse_id(rest, &bad)?),
            "org" => Self::Org(parse_id(rest, &bad)?),
            "membership" => {
                let (org, user) = rest.split_once(':').ok_or_else(bad)?;
                Self::Membership(parse_id(org, &bad)?, parse_id(user, &bad)?)
            }
            "client" if !rest.is_empty() => Self::Client(rest.to_owned()),
            "access_tokens" if rest.is_empty() => Self::AccessTokens,
            "keys" if rest.is_empty() => Self::Keys,
            "outbox" if rest.is_empty() => Self::Outbox,
            "all" if rest.is_empty() => Self::All,
            _ => return Err(bad()),
        })
    }
}

fn parse_id<T: FromStr>(text: &str, bad: &impl Fn() -> BadChange) -> Result<T, BadChange> {
    text.parse().map_err(|_| bad())
}

impl Change {
    /// Whether other processes need it (all but the outbox wake, which each process's worker
    /// also finds by its own poll).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Outbox)
    }
}

/// Called right after a commit with what it altered (never before, never for a rollback).
pub type ChangeListener = std::sync::Arc<dyn Fn(&[Change]) + Send + Sync>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn org() -> OrgId {
        format!("org_{}", "A".repeat(22)).parse().unwrap()
    }
    fn user() -> UserId {
        format!("usr_{}", "b".repeat(22)).parse().unwrap()
    }
    fn token() -> TokenId {
        format!("tok_{}", "0".repeat(22)).parse().unwrap()
    }

    #[test]
    fn every_change_round_trips_through_its_text() {
        let all = [
            Change::Token(token()),
            Change::OwnerTokens(Owner::User(user()), None),
            Change::OwnerTokens(Owner::Organisation(org()), Some("api".into())),
            Change::OwnerTokens(Owner::Organisation(org()), Some("odd:name".into())),
            Change::User(user()),
            Change::Org(org()),
            Change::Membership(org(), user()),
            Change::Client("cli_abc".into()),
            Change::AccessTokens,
            Change::Keys,
            Change::Outbox,
            Change::All,
        ];
        for change in all {
            let text = change.to_string();
            assert_eq!(text.parse::<Change>().unwrap(), change, "{text}");
        }
    }

    #[test]
    fn malformed_changes_are_refused() {
        for text in [
            "",
            "token:",
            "token:nope",
            "owner_tokens:robot:x",
            "membership:x",
            "keys:1",
            "client:",
            "what",
        ] {
            assert!(text.parse::<Change>().is_err(), "{text:?}");
        }
    }
}
