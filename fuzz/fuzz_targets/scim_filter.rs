//! SCIM filters and attribute paths (RFC 7644 §3.4.2.2, §3.5.2) from a provisioning client's
//! query string or PATCH.
#![no_main]

use latchkey_core::scim::{AttrPath, parse_filter, parse_patch_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_filter(text);
    let _ = parse_patch_path(text);
    let _ = AttrPath::parse(text);
});
