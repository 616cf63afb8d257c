//! Names and addresses people type: each has one constructor that says precisely what is wrong.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a name must not be empty")]
    Empty,
    #[error("a name is at most 200 characters")]
    TooLong,
    #[error("a name must contain only printable characters")]
    NotPrintable,
    #[error("not a valid email address")]
    InvalidEmail,
}

const MAX_NAME_CHARS: usize = 200;

fn check_printable(text: &str) -> Result<String, NameError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::NotPrintable);
    }
    Ok(trimmed.to_owned())
}

macro_rules! name_type {
    ($name:ident, $doc:literal, $check:path) => {
        #[doc = $doc]
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, NameError> {
                $check(text).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
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
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    TokenName,
    "A token's name: 1 to 200 printable characters, trimmed.",
    check_printable
);
name_type!(
    OrgName,
    "An organisation's name: 1 to 200 printable characters, trimmed.",
    check_printable
);
name_type!(
    Email,
    "An email address, trimmed and lower-cased; the check is deliberately loose (one `@`, a dot in the domain).",
    check_email
);

fn check_email(text: &str) -> Result<String, NameError> {
    let text = text.trim().to_lowercase();
    if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NameError::InvalidEmail);
    }
    match text.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(text)
        }
        _ => Err(NameError::InvalidEmail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("CI deploy", Ok("CI deploy"))]
    #[case("  padded  ", Ok("padded"))]
    #[case("", Err(NameError::Empty))]
    #[case("   ", Err(NameError::Empty))]
    #[case("tab\tinside", Err(NameError::NotPrintable))]
    #[case("nul\0", Err(NameError::NotPrintable))]
    fn token_names(#[case] text: &str, #[case] expected: Result<&str, NameError>) {
        assert_eq!(
            TokenName::parse(text).map(|n| n.as_str().to_owned()),
            expected.map(str::to_owned)
        );
    }

    #[test]
    fn token_name_length_counts_characters() {
        assert!(TokenName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(TokenName::parse(&"é".repeat(201)), Err(NameError::TooLong));
    }

    #[rstest]
    #[case("Ada@Example.com", true)]
    #[case("a@b.co", true)]
    #[case("no-at.example.com", false)]
    #[case("a@@b.com", false)]
    #[case("a@nodot", false)]
    #[case("a b@c.com", false)]
    #[case("@c.com", false)]
    fn emails(#[case] text: &str, #[case] ok: bool) {
        assert_eq!(Email::parse(text).is_ok(), ok);
    }

    #[test]
    fn emails_are_lower_cased() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").map(|e| e.as_str().to_owned()),
            Ok("ada@example.com".to_owned())
        );
    }
}
