//! The body of `POST /oauth2/token`, `/oauth2/introspect` and `/oauth2/revoke`
//! (`application/x-www-form-urlencoded`), and the values read from it.
#![no_main]

use latchkey_core::oauth::{
    GrantType, decode_form_value, is_code_verifier, parse_form, parse_scope_list,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = parse_form(data) {
        for (key, value) in &form {
            assert!(!value.is_empty(), "{key}: empty values count as absent");
        }
        if let Some(grant) = form.get("grant_type") {
            let _ = GrantType::parse(grant);
        }
        if let Some(scope) = form.get("scope") {
            if let Ok(scopes) = parse_scope_list(scope) {
                assert!(scopes.iter().all(|s| !s.is_empty()));
            }
        }
        if let Some(verifier) = form.get("code_verifier") {
            if is_code_verifier(verifier) {
                let _ = latchkey_core::oauth::pkce_s256(verifier);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_form_value(text);
    }
});
