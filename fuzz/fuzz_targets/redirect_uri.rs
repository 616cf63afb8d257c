//! Redirect URIs an organisation admin registers for an OAuth client, and the answers built on
//! them (RFC 6749 §3.1.2, §4.1.2).
#![no_main]

use latchkey_core::oauth::{check_redirect_uri, redirect_with, web_origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_redirect_uri(text).is_ok() {
        let back = redirect_with(text, &[("code", "c0de"), ("state", "a b&c")]);
        assert!(
            back.starts_with(text.split('#').next().unwrap_or(text)),
            "{back}"
        );
        assert!(!back.contains('#') || text.contains('#'));
    }
    let _ = web_origin(text);
});
