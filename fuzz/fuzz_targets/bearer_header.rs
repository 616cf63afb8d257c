//! The `Authorization` header as the API, the doors and the OAuth endpoints read it: Bearer
//! (RFC 6750) and Basic client credentials (RFC 6749 §2.3.1).
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use latchkey_http::fuzzing::{Basic, Bearer, basic_credentials, bearer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    if let Bearer::Token(token) = bearer(&headers) {
        assert!(!token.is_empty() && token.trim() == token, "{token:?}");
    }
    if let Basic::Credentials { client_id } = basic_credentials(&headers) {
        assert!(!client_id.is_empty());
    }
});
