//! Single sign-on as an OpenID Connect relying party: what an ID token must say before a
//! person is let in (OpenID Connect Core 1.0, §3.1.3.7), and who it names. Pure: the signature
//! is checked by the caller, against the provider's keys, before these rules run.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::Timestamp;

/// How far apart the provider's clock and ours may be.
pub const CLOCK_LEEWAY_SECS: i64 = 60;

/// `aud` is one string or a list (Core §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Self::One(a) => a == client_id,
            Self::Many(list) => list.iter().any(|a| a == client_id),
        }
    }
    fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(list) => list.len(),
        }
    }
}

/// The claims of an ID token that decide whether it is accepted; every other claim stays in
/// `other` (the address may be in a claim the operator names).
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    #[serde(default)]
    pub azp: Option<String>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub auth_time: Option<i64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// What this sign-in expects of the token.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent with this browser's authorization request.
    pub nonce: &'a str,
    pub now: Timestamp,
    /// A re-authentication: the person must have signed in at the provider at this moment or
    /// later, within the clock leeway (the request asked `max_age=0`).
    pub authenticated_since: Option<Timestamp>,
}

/// Why an ID token is refused. The words go to logs and the audit log, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token's issuer is not the configured provider")]
    Issuer,
    #[error("the ID token is not for this client")]
    Audience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future")]
    NotYetValid,
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the ID token has no subject")]
    Subject,
    #[error("the ID token does not say when the person signed in (auth_time)")]
    NoAuthTime,
    #[error("the person did not sign in again at the provider (auth_time is too old)")]
    StaleAuthTime,
}

/// Checks an ID token whose signature is good against what this sign-in expects.
pub fn check_id_token(claims: &IdTokenClaims, expected: &Expected<'_>) -> Result<(), IdTokenError> {
    // Google documents both forms of its issuer in ID tokens.
    let google_alias =
        expected.issuer == "https://accounts.google.com" && claims.iss == "accounts.google.com";
    if claims.iss != expected.issuer && !google_alias {
        return Err(IdTokenError::Issuer);
    }
    if !claims.aud.contains(expected.client_id) {
        return Err(IdTokenError::Audience);
    }
    // Several audiences: the authorized party must be us (Core §3.1.3.7, 4-5).
    if (claims.aud.len() > 1 || claims.azp.is_some())
        && claims.azp.as_deref() != Some(expected.client_id)
    {
        return Err(IdTokenError::Audience);
    }
    let now = expected.now.unix_timestamp();
    if claims.exp + CLOCK_LEEWAY_SECS <= now {
        return Err(IdTokenError::Expired);
    }
    if claims.iat - CLOCK_LEEWAY_SECS > now {
        return Err(IdTokenError::NotYetValid);
    }
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_ok {
        return Err(IdTokenError::Nonce);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(IdTokenError::Subject);
    }
    if let Some(since) = expected.authenticated_since {
        let auth_time = claims.auth_time.ok_or(IdTokenError::NoAuthTime)?;
        if auth_time + CLOCK_LEEWAY_SECS < since.unix_timestamp() {
            return Err(IdTokenError::StaleAuthTime);
        }
    }
    Ok(())
}

/// The person's address as the provider states it: the named claim, and whether the provider
/// says it verified it (`email_verified`, a boolean, or the string `"true"` some send).
/// `email_verified` speaks of `email` only: an address in another claim (`upn`,
/// `preferred_username`) is never taken as verified.
pub fn email_of(claims: &IdTokenClaims, claim: &str) -> Option<(String, bool)> {
    let email = claims.other.get(claim)?.as_str()?.trim().to_owned();
    let verified = claim == "email"
        && match claims.other.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
    Some((email, verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> IdTokenClaims {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("claims: {e}"))
    }

    fn base() -> serde_json::Value {
        json!({
            "iss": "https://idp.example", "sub": "u1", "aud": "latchkey",
            "exp": 2_000, "iat": 1_000, "nonce": "n-1", "auth_time": 990,
            "email": "ada@example.test", "email_verified": true,
        })
    }

    fn expected(now: i64) -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "latchkey",
            nonce: "n-1",
            now: Timestamp::from_unix_timestamp(now).unwrap_or(Timestamp::UNIX_EPOCH),
            authenticated_since: None,
        }
    }

    fn with(field: &str, value: serde_json::Value) -> IdTokenClaims {
        let mut v = base();
        v[field] = value;
        claims(v)
    }

    #[test]
    fn a_good_token_passes() {
        assert_eq!(check_id_token(&claims(base()), &expected(1_010)), Ok(()));
    }

    #[test]
    fn each_rule_refuses_on_its_own() {
        let e = expected(1_010);
        let cases = [
            (
                with("iss", json!("https://other.example")),
                IdTokenError::Issuer,
            ),
            (with("aud", json!("someone-else")), IdTokenError::Audience),
            (
                with("aud", json!(["latchkey", "other"])),
                IdTokenError::Audience,
            ),
            (with("azp", json!("other")), IdTokenError::Audience),
            (with("exp", json!(900)), IdTokenError::Expired),
            (with("iat", json!(1_200)), IdTokenError::NotYetValid),
            (with("nonce", json!("n-2")), IdTokenError::Nonce),
            (with("nonce", json!(null)), IdTokenError::Nonce),
            (with("sub", json!("")), IdTokenError::Subject),
        ];
        for (c, err) in cases {
            assert_eq!(check_id_token(&c, &e), Err(err.clone()), "{err}");
        }
    }

    #[test]
    fn google_is_known_by_both_its_issuer_forms() {
        let mut e = expected(1_010);
        e.issuer = "https://accounts.google.com";
        assert_eq!(
            check_id_token(&with("iss", json!("accounts.google.com")), &e),
            Ok(())
        );
        assert_eq!(
            check_id_token(&with("iss", json!("https://accounts.google.com")), &e),
            Ok(())
        );
        assert_eq!(
            check_id_token(&with("iss", json!("accounts.google.com")), &expected(1_010)),
            Err(IdTokenError::Issuer)
        );
    }

    #[test]
    fn several_audiences_need_us_as_the_authorized_party() {
        let c = with("aud", json!(["latchkey", "other"]));
        let mut c2 = c.clone();
        c2.azp = Some("latchkey".into());
        assert_eq!(
            check_id_token(&c, &expected(1_010)),
            Err(IdTokenError::Audience)
        );
        assert_eq!(check_id_token(&c2, &expected(1_010)), Ok(()));
    }

    #[test]
    fn the_clock_leeway_is_a_minute_each_way() {
        assert_eq!(check_id_token(&claims(base()), &expected(2_059)), Ok(()));
        assert_eq!(
            check_id_token(&claims(base()), &expected(2_060)),
            Err(IdTokenError::Expired)
        );
        assert_eq!(
            check_id_token(&with("iat", json!(1_050)), &expected(1_000)),
            Ok(())
        );
    }

    #[test]
    fn a_reauthentication_needs_a_fresh_auth_time() {
        let mut e = expected(1_500);
        e.authenticated_since = Timestamp::from_unix_timestamp(1_000).ok();
        assert_eq!(
            check_id_token(&claims(base()), &e),
            Ok(()),
            "990 is within a minute"
        );
        e.authenticated_since = Timestamp::from_unix_timestamp(1_400).ok();
        assert_eq!(
            check_id_token(&claims(base()), &e),
            Err(IdTokenError::StaleAuthTime)
        );
        assert_eq!(
            check_id_token(&with("auth_time", json!(null)), &e),
            Err(IdTokenError::NoAuthTime)
        );
    }

    #[test]
    fn the_address_and_whether_it_was_verified() {
        assert_eq!(
            email_of(&claims(base()), "email"),
            Some(("ada@example.test".into(), true))
        );
        assert_eq!(
            email_of(&with("email_verified", json!("true")), "email"),
            Some(("ada@example.test".into(), true))
        );
        assert_eq!(
            email_of(&with("email_verified", json!(null)), "email"),
            Some(("ada@example.test".into(), false))
        );
        assert_eq!(email_of(&claims(base()), "upn"), None);
        let mut v = base();
        v["preferred_username"] = json!("victim@example.test");
        assert_eq!(
            email_of(&claims(v), "preferred_username"),
            Some(("victim@example.test".into(), false)),
            "email_verified is about `email` only"
        );
    }
}
