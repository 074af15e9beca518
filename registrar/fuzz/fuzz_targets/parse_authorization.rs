//! Fuzzes the digest `Authorization` header parser. `cargo +nightly fuzz run parse_authorization`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_registrar::auth::digest::Credentials;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(c) = Credentials::parse(s) {
            let _ = c.algorithm();
        }
    }
});
