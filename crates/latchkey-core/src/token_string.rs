//! The token-string codec of SPEC 2.2: `<prefix>_<random><check>`.
//!
//! `random` is 32 CSPRNG bytes in base62 (43 characters), `check` the CRC32 (IEEE) of
//! `<prefix>_<random>` in base62 (6 characters). A string that fails this shape or checksum is
//! refused here, before any storage access; a string that passes is looked up only by its
//! SHA-256 ([`TokenHash`]), never by prefix or plaintext.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::base62;

const RANDOM_CHARS: usize = 43;
const CHECK_CHARS: usize = 6;
const BODY_CHARS: usize = RANDOM_CHARS + CHECK_CHARS;
/// 2^256 - 1 in 43 base62 characters: the largest random part.
const MAX_RANDOM: &str = "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1";
/// Longest prefix accepted; also bounds the work done on hostile input.
const MAX_PREFIX: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MalformedToken {
    #[error("the token has no prefix")]
    NoPrefix,
    #[error("the token has the wrong length")]
    WrongLength,
    #[error("the token contains characters outside base62")]
    NotBase62,
    #[error("the token's checksum does not match")]
    BadChecksum,
}

/// A token prefix: 2 to 16 lower-case ASCII letters or digits, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(pub(crate) String);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a prefix is 2 to 16 lower-case letters or digits, starting with a letter")]
pub struct PrefixError;

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, PrefixError> {
        let ok = (2..=MAX_PREFIX).contains(&text.len())
            && text.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(PrefixError)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a token string: the only form in which a token is stored or looked up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Constant-time comparison, for the rare place a hash is compared outside an index.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A token string in clear. Shown once to its creator; never logged (its `Debug` is redacted
/// and it has no `Display`).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(redacted)")
    }
}

impl TokenSecret {
    /// Builds a new token string from 32 random bytes the caller drew from the OS CSPRNG.
    pub fn generate(prefix: &Prefix, random: [u8; 32]) -> Self {
        let random = base62::encode_bytes(&random, RANDOM_CHARS).unwrap_or_default();
        let head = format!("{}_{random}", prefix.as_str());
        let check =
            base62::encode_u32(crc32fast::hash(head.as_bytes()), CHECK_CHARS).unwrap_or_default();
        Self(head + &check)
    }
    /// A signed JWT issued by Latchkey for a `format = "jwt"` type: it is its own secret, and it
    /// is stored and looked up by its SHA-256 like an opaque token.
    pub fn from_signed_jwt(jwt: String) -> Self {
        Self(jwt)
    }
    /// The secret read back from its sealed form (reveal).
    pub fn from_revealed(text: String) -> Self {
        Self(text)
    }
    /// The SHA-256 of any presented string (a JWT, whose signature was checked first).
    pub fn hash_of(text: &str) -> TokenHash {
        TokenHash::of(text)
    }
    /// The clear text, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
    /// `lkp_…Ab3d`: enough to recognise a token in a list, useless to an attacker. It starts
    /// as the secret does, so that a person can match the two: `eyJ…khTQ` for a JWT.
    pub fn hint(&self) -> String {
        let head = if self.0.starts_with("eyJ") {
            "eyJ"
        } else {
            self.0.split('_').next().unwrap_or_default()
        };
        let tail = self
            .0
            .get(self.0.len().saturating_sub(4)..)
            .unwrap_or_default();
        if head == "eyJ" {
            format!("eyJ…{tail}")
        } else {
            format!("{head}_…{tail}")
        }
    }
}

/// A string that has the shape and checksum of a Latchkey token.
#[derive(Debug)]
pub struct ParsedToken {
    prefix_len: usize,
    secret: TokenSecret,
}

impl ParsedToken {
    /// Checks shape and checksum without touching storage.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        let (prefix, body) = text.split_once('_').ok_or(MalformedToken::NoPrefix)?;
        if prefix.is_empty() || prefix.len() > MAX_PREFIX {
            return Err(MalformedToken::NoPrefix);
        }
        if body.len() != BODY_CHARS {
            return Err(MalformedToken::WrongLength);
        }
        if !base62::is_base62(body) {
            return Err(MalformedToken::NotBase62);
        }
        let (random, check) = body.split_at(RANDOM_CHARS);
        // A base62 number of this width can exceed 2^256 (or 2^32): such strings are not ours.
        // At a fixed width the alphabet's ASCII order is the numeric order, so a comparison with
        // the largest encoding decides it without decoding (this runs on every request).
        if random > MAX_RANDOM {
            return Err(MalformedToken::NotBase62);
        }
        let check = base62::decode_u32(check).ok_or(MalformedToken::BadChecksum)?;
        let head_len = prefix.len() + 1 + RANDOM_CHARS;
        let head = text.get(..head_len).ok_or(MalformedToken::WrongLength)?;
        let expected = crc32fast::hash(head.as_bytes());
        if !bool::from(expected.to_be_bytes().ct_eq(&check.to_be_bytes())) {
            return Err(MalformedToken::BadChecksum);
        }
        Ok(Self {
            prefix_len: prefix.len(),
            secret: TokenSecret(text.to_owned()),
        })
    }
    pub fn prefix(&self) -> &str {
        self.secret.0.get(..self.prefix_len).unwrap_or_default()
    }
    pub fn hash(&self) -> TokenHash {
        self.secret.hash()
    }
    pub fn secret(&self) -> &TokenSecret {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    fn prefix(p: &str) -> Prefix {
        Prefix::parse(p).unwrap_or_else(|_| panic!("bad test prefix {p}"))
    }

    #[test]
    fn generated_tokens_have_the_spec_shape() {
        let t = TokenSecret::generate(&prefix("lkp"), [0xAB; 32]);
        let s = t.expose();
        assert_eq!(s.len(), 3 + 1 + 43 + 6);
        assert!(s.starts_with("lkp_"));
        let head = &s[..4 + 43];
        let check = &s[4 + 43..];
        let crc = crc32fast::hash(head.as_bytes());
        assert_eq!(base62::encode_u32(crc, 6).as_deref(), Some(check));
    }

    #[test]
    fn the_largest_random_part_is_the_encoding_of_2_pow_256_minus_1() {
        assert_eq!(
            base62::encode_bytes(&[0xff; 32], 43).as_deref(),
            Some(MAX_RANDOM)
        );
    }

    #[test]
    fn zero_bytes_are_left_padded() {
        let t = TokenSecret::generate(&prefix("lka"), [0; 32]);
        assert!(t.expose().starts_with(&format!("lka_{}", "0".repeat(43))));
        assert!(ParsedToken::parse(t.expose()).is_ok());
    }

    #[test]
    fn hint_shows_prefix_and_last_four() {
        let t = TokenSecret::generate(&prefix("lkp"), [1; 32]);
        let s = t.expose();
        assert_eq!(t.hint(), format!("lkp_…{}", &s[s.len() - 4..]));
        // A JWT's hint starts as the JWT does.
        let jwt = TokenSecret::from_signed_jwt("eyJhbGciOiJFUzI1NiJ9.e30.sig-khTQ".to_owned());
        assert_eq!(jwt.hint(), "eyJ…khTQ");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = TokenSecret::generate(&prefix("lkp"), [9; 32]);
        assert!(!format!("{t:?}").contains(t.expose()));
        let parsed = ParsedToken::parse(t.expose());
        assert!(!format!("{parsed:?}").contains(&t.expose()[4..]));
    }

    #[rstest]
    #[case("", MalformedToken::NoPrefix)]
    #[case("nounderscore", MalformedToken::NoPrefix)]
    #[case("_abc", MalformedToken::NoPrefix)]
    #[case("lkp_short", MalformedToken::WrongLength)]
    #[case(
        "lkp_0000000000000000000000000000000000000000000-00000",
        MalformedToken::NotBase62
    )]
    #[case(
        "lkp_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz000000",
        MalformedToken::NotBase62
    )]
    #[case(
        "lkp_0000000000000000000000000000000000000000000000000",
        MalformedToken::BadChecksum
    )]
    fn malformed(#[case] text: &str, #[case] err: MalformedToken) {
        assert_eq!(ParsedToken::parse(text).map(|_| ()), Err(err));
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let t = TokenSecret::generate(&prefix("lks"), [42; 32]);
        let mut bytes = t.expose().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(
            ParsedToken::parse(&changed).map(|_| ()),
            Err(MalformedToken::BadChecksum)
        );
    }

    proptest! {
        #[test]
        fn round_trip(random in proptest::array::uniform32(any::<u8>()), p in "[a-z][a-z0-9]{1,15}") {
            let t = TokenSecret::generate(&prefix(&p), random);
            let parsed = ParsedToken::parse(t.expose());
            prop_assert!(parsed.is_ok());
            let parsed = parsed.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(parsed.prefix(), p.as_str());
            prop_assert!(parsed.hash().ct_eq(&t.hash()));
        }

        #[test]
        fn parse_never_panics(text in ".{0,80}") {
            let _ = ParsedToken::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_misses(random in proptest::array::uniform32(any::<u8>()), pos in 0usize..53, c in any::<char>()) {
            let t = TokenSecret::generate(&prefix("lkp"), random);
            let mut chars: Vec<char> = t.expose().chars().collect();
            if pos < chars.len() { chars[pos] = c; }
            let text: String = chars.into_iter().collect();
            let _ = ParsedToken::parse(&text);
        }
    }
}
