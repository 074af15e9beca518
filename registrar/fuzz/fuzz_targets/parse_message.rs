//! Fuzzes the SIP message parser and the header readers the registrar runs on what it accepts:
//! no input may panic. `cargo +nightly fuzz run parse_message` (from registrar/).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_registrar::message::headers::{parse_contacts, parse_expires, NameAddr, SipUri, Via};
use switchboard_registrar::message::{parse, Parsed};
use switchboard_registrar::transport::framing::next_frame;

fuzz_target!(|data: &[u8]| {
    let _ = next_frame(data, 64 * 1024);
    if let Ok(Parsed::Request(r)) = parse(data) {
        let _ = r.cseq();
        for h in &r.headers {
            let _ = Via::parse_first(&h.value);
            let _ = parse_contacts(&h.value);
            let _ = parse_expires(&h.value);
            if let Some(na) = NameAddr::parse(&h.value) {
                let _ = SipUri::parse(&na.uri);
            }
        }
    }
});
