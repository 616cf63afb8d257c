//! An ID token's claims from the single-sign-on provider (after its signature, so a provider
//! that misbehaves, not anyone), checked against one sign-in.
#![no_main]

use latchkey_core::Timestamp;
use latchkey_core::oidc::{Expected, IdTokenClaims, check_id_token, email_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(claims) = serde_json::from_slice::<IdTokenClaims>(data) else {
        return;
    };
    let now = Timestamp::from_unix_timestamp(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let expected = Expected {
        issuer: "https://idp.example",
        client_id: "latchkey",
        nonce: "n",
        now,
        authenticated_since: Some(now),
    };
    let _ = check_id_token(&claims, &expected);
    let _ = email_of(&claims, "email");
    let _ = email_of(&claims, "upn");
});
