//! A token's address allowlist as the API and the console take it (`"10.0.0.0/8"`,
//! `"2001:db8::/32"`, bare addresses).
#![no_main]

use latchkey_service::tokens::parse_allowed_ips;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list: Vec<String> = text.split('\n').map(str::to_owned).collect();
    if let Ok(nets) = parse_allowed_ips(&list) {
        assert!(nets.len() <= list.len());
    }
});
