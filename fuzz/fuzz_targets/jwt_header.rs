//! A bearer credential shaped like a JWT: its header (`alg`, `typ`, `kid`, and the `jku`,
//! `x5u` and `jwk` that are refused) read before any key is chosen.
#![no_main]

use latchkey_service::keys::{KeyRing, looks_like_jwt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = looks_like_jwt(text);
    // No key is ours here: whatever the header says, nothing is accepted.
    let ring = KeyRing::default();
    assert!(
        ring.verify::<serde_json::Value>(text, &["at+jwt", "jwt"])
            .is_err()
    );
});
