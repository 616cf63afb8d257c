//! Opaque ids with a kind prefix (`usr_…`, `org_…`, `tok_…`, `ses_…`, `evt_…`).
//!
//! The random part is 16 bytes from the caller's CSPRNG, written in 22 base62 characters, so ids
//! cannot be guessed or enumerated. Parsing checks the prefix, so an org id can never be passed
//! where a token id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::base62;

const RANDOM_LEN: usize = 22;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

fn parse_id(text: &str, prefix: &'static str, kind: &'static str) -> Result<(), IdError> {
    let rest = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or(IdError { kind })?;
    if rest.len() == RANDOM_LEN && base62::is_base62(rest) {
        Ok(())
    } else {
        Err(IdError { kind })
    }
}

fn random_id(prefix: &str, random: [u8; 16]) -> String {
    let body = base62::encode_bytes(&random, RANDOM_LEN).unwrap_or_default();
    format!("{prefix}_{body}")
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $kind:literal) => {
        #[doc = concat!("The id of a ", $kind, " (`", $prefix, "_…`).")]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id from 16 random bytes drawn by the caller.
            pub fn from_random(random: [u8; 16]) -> Self {
                Self(random_id($prefix, random))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_id(s, $prefix, $kind).map(|()| Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(UserId, "usr", "user");
prefixed_id!(OrgId, "org", "organisation");
prefixed_id!(TokenId, "tok", "token");
prefixed_id!(SessionId, "ses", "session");
prefixed_id!(EventId, "evt", "event");
prefixed_id!(ClientId, "cli", "OAuth client");
prefixed_id!(SecretId, "sec", "client secret");
prefixed_id!(MailId, "mail", "mail");
prefixed_id!(InstanceId, "ins", "serving instance");
prefixed_id!(ProvisioningId, "prov", "provisioning credential");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_are_checked() {
        let id = TokenId::from_random([7; 16]);
        assert!(id.as_str().starts_with("tok_"));
        assert_eq!(id.as_str().len(), 4 + RANDOM_LEN);
        assert!(id.as_str().parse::<OrgId>().is_err());
        assert_eq!(id.as_str().parse::<TokenId>(), Ok(id.clone()));
        assert!("tok_short".parse::<TokenId>().is_err());
        assert!("tok_!!!!!!!!!!!!!!!!!!!!!!".parse::<TokenId>().is_err());
    }

    proptest! {
        #[test]
        fn round_trip(random in proptest::array::uniform16(any::<u8>())) {
            let id = UserId::from_random(random);
            prop_assert_eq!(id.to_string().parse::<UserId>(), Ok(id));
        }

        #[test]
        fn parse_never_panics(text in ".{0,40}") {
            let _ = text.parse::<OrgId>();
        }
    }
}
