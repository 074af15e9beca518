//! `cargo +nightly fuzz run notify` (from registrar/): coverage-guided fuzzing of
//! `switchboard_registrar::fuzz::notify`, the entry point the stable mutation test
//! (`tests/fuzz.rs`, in `cargo test`) drives too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard_registrar::fuzz::notify(data);
});
