//! The parts of an audit event that only a backend can know, built once for both.
//!
//! The kill switch learns which tokens it revoked inside its transaction, so the event's
//! details are completed there; this module owns their JSON so that both backends write the
//! same text, escaped by serde_json rather than by hand. Must not decide anything: the
//! backends pass what they did.

use latchkey_core::TokenId;
use serde::Serialize;

use crate::{StoreError, StoreResult};

/// The details of a `tokens.revoked_all` event. Field order is the order in the stored text.
#[derive(Serialize)]
struct OwnerRevocation<'a> {
    count: usize,
    tokens: Vec<&'a str>,
    #[serde(rename = "type")]
    token_type: Option<&'a str>,
    oauth_grants: u64,
}

/// `{"count":…,"tokens":[…],"type":…,"oauth_grants":…}` for the tokens (of one type, if
/// given) and the OAuth grants a kill switch revoked.
pub(crate) fn owner_revocation_details(
    tokens: &[TokenId],
    token_type: Option<&str>,
    oauth_grants: u64,
) -> StoreResult<String> {
    serde_json::to_string(&OwnerRevocation {
        count: tokens.len(),
        tokens: tokens.iter().map(TokenId::as_str).collect(),
        token_type,
        oauth_grants,
    })
    .map_err(|e| StoreError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_one_written_before() {
        assert_eq!(
            owner_revocation_details(&[], None, 0).unwrap(),
            r#"{"count":0,"tokens":[],"type":null,"oauth_grants":0}"#
        );
        let (a, b) = (TokenId::from_random([1; 16]), TokenId::from_random([2; 16]));
        assert_eq!(
            owner_revocation_details(&[a.clone(), b.clone()], Some("personal"), 3).unwrap(),
            format!(r#"{{"count":2,"tokens":["{a}","{b}"],"type":"personal","oauth_grants":3}}"#)
        );
    }

    #[test]
    fn a_type_is_quoted_and_escaped() {
        let details = owner_revocation_details(&[], Some("odd\"type"), 2).unwrap();
        assert_eq!(
            details,
            r#"{"count":0,"tokens":[],"type":"odd\"type","oauth_grants":2}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&details).unwrap();
        assert_eq!(parsed["type"], "odd\"type");
    }
}
