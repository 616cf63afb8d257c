//! Token strings as a bearer credential or a leak report carries them (`<prefix>_<base62>`
//! with its CRC32), and the session prefix check.
#![no_main]

use latchkey_core::Prefix;
use latchkey_core::token_string::ParsedToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = ParsedToken::parse(text) {
        // What parses has a prefix that parses again, and one hash however it is asked.
        assert!(Prefix::parse(parsed.prefix()).is_ok(), "{text:?}");
        assert_eq!(parsed.hash(), latchkey_core::TokenSecret::hash_of(text));
    }
    let _ = Prefix::parse(text);
    let _ = latchkey_service::sessions::looks_like_session(text);
    let _ = latchkey_service::keys::looks_like_jwt(text);
});
