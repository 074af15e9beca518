//! Fuzzing on the stable toolchain, in `cargo test`: a seeded mutation loop over a corpus (RFC
//! 4475's torture messages and a few messages of each kind the registrar meets) drives every
//! entry point of `switchboard_registrar::fuzz` — the registrar's parser, stream framing,
//! digest headers both ways, the proxy's parser, the outbound registrations' response parser
//! and state machine, the NOTIFYs of their subscriptions, and the whole service. Deterministic: the same seed and iteration count
//! give the same inputs, so a failure names what reproduces it.
//!
//! `SWITCHBOARD_FUZZ_ITERATIONS` (per target) and `SWITCHBOARD_FUZZ_SEED` make a longer or
//! different run, e.g. `SWITCHBOARD_FUZZ_ITERATIONS=200000 cargo test --release -p
//! switchboard-registrar --test fuzz -- --nocapture`. For coverage-guided fuzzing, the same
//! entry points are cargo-fuzz targets in `registrar/fuzz/` (nightly).

mod common;

use common::torture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use switchboard_registrar::fuzz;

const SEED: u64 = 0x4475_5e1f;
/// Iterations per target by default: a few seconds each in a debug build on two cores.
const ITERATIONS: u64 = 30_000;
/// The service runs a whole request per input: fewer.
const PIPELINE_ITERATIONS: u64 = 8_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Messages of each kind besides the torture ones: a REGISTER with digest, an INVITE with SDP,
/// responses as trunks send them (challenges, a 200 with Contacts), pipelined stream bytes,
/// digest header values.
fn extra_corpus() -> Vec<Vec<u8>> {
    let texts = [
        "REGISTER sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@switchboard.local>;tag=a\r\nTo: <sip:1001@switchboard.local>\r\n\
         Call-ID: reg-1\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@127.0.0.1:40000>;expires=600;q=0.5\r\n\
         Authorization: Digest username=\"1001\", realm=\"switchboard.local\", nonce=\"AAAAAGWHq4sAAAAAAAAAAA-y4Vtq0c9mQ7GE0S31nRE\", \
         uri=\"sip:switchboard.local\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n\
         Content-Length: 0\r\n\r\n",
        "INVITE sip:1002@switchboard.local SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK-2;rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@switchboard.local>;tag=a\r\nTo: <sip:1002@switchboard.local>\r\n\
         Call-ID: inv-1\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:40000;transport=tcp>\r\n\
         Route: <sip:127.0.0.1:5060;lr>\r\nProxy-Authorization: Digest username=\"1001\", realm=\"switchboard.local\", \
         nonce=\"n\", uri=\"sip:1002@switchboard.local\", response=\"r\"\r\nContent-Type: application/sdp\r\n\
         Content-Length: 24\r\n\r\nv=0\r\no=- 1 1 IN IP4 x\r\n",
        "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-3;rport=40000\r\n\
         From: <sip:trunk@a.test>;tag=f\r\nTo: <sip:trunk@a.test>;tag=t\r\nCall-ID: uac-1\r\nCSeq: 1 REGISTER\r\n\
         WWW-Authenticate: Digest realm=\"a.test\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256, opaque=\"o\"\r\n\
         WWW-Authenticate: Digest realm=\"a.test\", nonce=\"abc\", qop=\"auth,auth-int\", algorithm=MD5\r\n\
         Content-Length: 0\r\n\r\n",
        "SIP/2.0 200 OK\r\nv: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bK-4\r\nf: <sip:trunk@a.test>;tag=f\r\n\
         t: <sip:trunk@a.test>;tag=t\r\ni: uac-1\r\nCSeq: 2 REGISTER\r\n\
         m: <sip:trunk@127.0.0.1:5060>;expires=1800, <sip:other@192.0.2.1>;expires=60\r\n\
         Expires: 3600\r\nMin-Expires: 60\r\nRetry-After: 30 (later)\r\nl: 0\r\n\r\n",
        "SIP/2.0 423 Interval Too Brief\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-5\r\nCSeq: 3 REGISTER\r\nMin-Expires: 600\r\n\r\n",
        "\r\n\r\nOPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc\r\n\r\nOPTIONS sip:b SIP/2.0\r\nl: 0\r\n\r\n",
        "Digest username=\"1001\", realm=\"switchboard.local\", nonce=\"n\", uri=\"sip:x\", response=\"r\", qop=auth, nc=00000001, cnonce=\"c\"",
        "Digest realm=\"a.test\", nonce=\"abc\", qop=\"auth\", algorithm=MD5-sess, stale=TRUE",
        "NOTIFY sip:trunk@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-6\r\n\
         From: <sip:trunk@a.test>;tag=n\r\nTo: <sip:trunk@a.test>;tag=f\r\nCall-ID: sub-1\r\nCSeq: 1 NOTIFY\r\n\
         Event: presence\r\nSubscription-State: active;expires=600\r\nContent-Type: application/pidf+xml\r\n\
         Content-Length: 273\r\n\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" \
         entity=\"sip:trunk@a.test\"><tuple id=\"t\"><status><basic>open</basic></status><note>x</note></tuple>\
         <person><rpid:activities><rpid:on-the-phone/></rpid:activities></person></presence>",
        "NOTIFY sip:trunk@127.0.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-7\r\n\
         From: <sip:trunk@a.test>;tag=n\r\nTo: <sip:trunk@a.test>;tag=f\r\nCall-ID: sub-2\r\nCSeq: 2 NOTIFY\r\n\
         Event: dialog;id=1\r\nSubscription-State: terminated;reason=timeout;retry-after=5\r\n\
         Content-Type: application/dialog-info+xml\r\nContent-Length: 190\r\n\r\n\
         <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"3\" state=\"partial\" entity=\"sip:trunk@a.test\">\
         <dialog id=\"d\" direction=\"recipient\"><state>early</state></dialog></dialog-info>",
    ];
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

fn corpus() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = torture::all().into_iter().map(|(_, m)| m).collect();
    all.extend(extra_corpus());
    all
}

/// Tokens that make parsers take other paths.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\r\n ",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b" ",
    b"\t",
    b"=",
    b"@",
    b"/",
    b"?",
    b"[",
    b"]",
    b"%00",
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"SIP/2.0",
    b"SIP/2.0 ",
    b"Via: SIP/2.0/UDP ",
    b"z9hG4bK",
    b";rport",
    b";tag=",
    b"Content-Length: ",
    b"l: ",
    b"999999999999999999999",
    b"-1",
    b"0",
    b"4294967296",
    b"Digest ",
    b"nonce=\"",
    b"Contact: *",
    b"sip:",
    b"sips:",
    b"tel:",
    b"Expires: ",
    b"CSeq: 1 ",
    b"REGISTER",
    b"INVITE",
];

/// One mutation of a corpus entry: a few edits among bit flips, byte writes, insertions of
/// bytes or tokens, deletions, duplications, splices from another entry and truncation.
fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut m = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=6) {
        let len = m.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..=len)
        };
        match rng.random_range(0..8) {
            0 if at < len => m[at] ^= 1 << rng.random_range(0..8),
            1 if at < len => m[at] = rng.random(),
            2 => m.insert(at, rng.random()),
            3 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                m.splice(at..at, t.iter().copied());
            }
            4 if at < len => {
                let end = (at + rng.random_range(1..=16)).min(len);
                m.drain(at..end);
            }
            5 if at < len => {
                let end = (at + rng.random_range(1..=32)).min(len);
                let chunk = m[at..end].to_vec();
                m.splice(at..at, chunk);
            }
            6 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let end = (from + rng.random_range(1..=64)).min(other.len());
                    m.splice(at..at, other[from..end].iter().copied());
                }
            }
            _ => m.truncate(at),
        }
    }
    m
}

/// Runs `target` on the corpus as is, then on `iterations` mutations; on a panic, fails naming
/// the seed, the iteration and the input. Fails too when fewer than `min_accepted` of the
/// inputs were accepted: the checks behind acceptance would not have been exercised.
fn run(name: &str, iterations: u64, min_accepted: f64, mut target: impl FnMut(&[u8]) -> bool) {
    let seed = env_or("SWITCHBOARD_FUZZ_SEED", SEED);
    let iterations = env_or("SWITCHBOARD_FUZZ_ITERATIONS", iterations);
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(seed ^ name.len() as u64);
    let started = Instant::now();
    let inputs = corpus.iter().cloned().map(|c| (None, c));
    let mutated = (0..iterations).map(|i| (Some(i), mutate(&mut rng, &corpus)));
    let mut accepted = 0u64;
    for (iteration, input) in inputs.chain(mutated) {
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "{name}: {why}\nseed {seed:#x}, iteration {iteration:?}, input ({} bytes): {:?}",
                    input.len(),
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    let total = corpus.len() as u64 + iterations;
    let share = accepted as f64 / total as f64;
    println!(
        "{name}: {} corpus inputs and {iterations} mutations in {:?}, {:.1} % accepted (seed {seed:#x})",
        corpus.len(),
        started.elapsed(),
        share * 100.0
    );
    assert!(
        share >= min_accepted,
        "{name}: only {accepted} of {total} inputs accepted"
    );
}

#[test]
fn registrar_parser() {
    run("message", ITERATIONS, 0.02, fuzz::message);
}

#[test]
fn stream_framing() {
    run("framing", ITERATIONS, 0.05, fuzz::framing);
}

#[test]
fn digest_headers() {
    run("digest", ITERATIONS, 0.02, fuzz::digest);
}

#[test]
fn proxy_parser() {
    run("proxy", ITERATIONS, 0.05, fuzz::proxy);
}

#[test]
fn outbound_registration_responses() {
    run("uac", ITERATIONS, 0.01, fuzz::uac);
}

#[test]
fn subscription_notifies() {
    // Two of the corpus messages are NOTIFYs; the rest rarely mutate into one.
    run("notify", ITERATIONS, 0.002, fuzz::notify);
}

#[test]
fn whole_service() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pipeline = rt.block_on(fuzz::Pipeline::new()).unwrap();
    run("pipeline", PIPELINE_ITERATIONS, 0.2, |data| {
        rt.block_on(pipeline.handle(data))
    });
}
