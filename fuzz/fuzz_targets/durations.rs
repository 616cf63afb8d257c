//! Durations and the other small values of the API and the configuration: `"90d"`, a rotation
//! grace (`"1h"`, `"first_use"`), a role.
#![no_main]

use latchkey_core::policy::Grace;
use latchkey_core::{PolicyDuration, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = text.parse::<PolicyDuration>() {
        // What parses prints as something that parses to the same length.
        let again: PolicyDuration = d.to_string().parse().expect("a printed duration parses");
        assert_eq!(again.as_secs(), d.as_secs(), "{text:?}");
    }
    let _ = text.parse::<Grace>();
    let _ = text.parse::<Role>();
});
