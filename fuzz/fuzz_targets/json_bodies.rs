//! JSON bodies whose structure Latchkey interprets itself: SCIM PATCH operations (RFC 7644
//! §3.5.2), applied to a resource.
#![no_main]

use latchkey_core::scim::{apply_patch, parse_patch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(ops) = parse_patch(&body) {
        let mut resource = serde_json::json!({
            "userName": "ada@example.com",
            "active": true,
            "emails": [{"value": "ada@example.com", "primary": true}],
            "members": [{"value": "usr_1"}],
        });
        let _ = apply_patch(&mut resource, &ops);
    }
});
