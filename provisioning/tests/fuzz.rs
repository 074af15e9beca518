//! Fuzzing on the stable toolchain, in `cargo test`: a seeded mutation loop over what phones
//! send (Authorization headers, file names) and what an administrator writes (the manifest
//! file), checking that nothing panics and that what is accepted reads back. Deterministic:
//! the same seed gives the same inputs. `SWITCHBOARD_FUZZ_ITERATIONS` runs more.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard_provisioning::access::{self, Given, Verdict};
use switchboard_provisioning::inventory::file::Manifest;
use switchboard_provisioning::inventory::SiteLogin;
use switchboard_provisioning::mac::Mac;
use switchboard_provisioning::vendor::{Vendor, ALL};
use switchboard_registrar::auth::nonce::NonceKey;

const SEED: u64 = 0x0066_0066;

fn iterations() -> u64 {
    std::env::var("SWITCHBOARD_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

const TOKENS: &[&str] = &[
    "\"",
    ",",
    "=",
    ":",
    " ",
    "\t",
    "\r\n",
    "Digest ",
    "Basic ",
    "username=\"",
    "nonce=\"",
    "uri=\"/",
    "response=\"",
    "qop=auth",
    "nc=00000001",
    "algorithm=SHA-256",
    "%00",
    "\u{0}",
    "é",
    "cfg",
    ".cfg",
    ".xml",
    ".json",
    "000000000000",
    "ff",
    "--",
    "../",
    "\\",
    "kind: Site\n",
    "kind: SipDevice\n",
    "kind: Secret\n",
    "---\n",
    "{",
    "}",
    "[",
    "]",
    "- ",
    "metadata: {name: x}\n",
    "spec: {}\n",
    "  ",
    "\n",
];

fn mutate(rng: &mut StdRng, corpus: &[String]) -> String {
    let mut chars: Vec<char> = corpus[rng.random_range(0..corpus.len())].chars().collect();
    for _ in 0..rng.random_range(1..=5) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..5) {
            0 if at < chars.len() => {
                chars[at] = char::from_u32(rng.random_range(0..0x250)).unwrap_or('x')
            }
            1 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                chars.splice(at..at, t.chars());
            }
            2 if at < chars.len() => {
                let end = (at + rng.random_range(1..8)).min(chars.len());
                chars.drain(at..end);
            }
            3 => chars.truncate(at),
            _ => {
                let other: Vec<char> = corpus[rng.random_range(0..corpus.len())].chars().collect();
                let from = rng.random_range(0..=other.len());
                chars.splice(at..at, other[from..].iter().copied());
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn authorization_headers() {
    let key = NonceKey::new(b"fuzz");
    let nonce = key.issue(access::REALM, 1_000, [7; 8]);
    let corpus = vec![
        "Basic ZGVtbzpwcm92aXNpb24tZGVtbw==".to_string(),
        format!(
            "Digest username=\"demo\", realm=\"{}\", nonce=\"{nonce}\", uri=\"/provisioning/yealink/001565001001.cfg\", \
             response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"",
            access::REALM
        ),
    ];
    let logins = [SiteLogin {
        site: "demo".into(),
        username: "demo".into(),
        password: "provision-demo".into(),
    }];
    let mut rng = StdRng::seed_from_u64(SEED);
    for i in 0..iterations() {
        let header = mutate(&mut rng, &corpus);
        let Some(given) = Given::parse(&header) else {
            continue;
        };
        if let Given::Basic { user, password } = &given {
            use base64::Engine;
            let again =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            assert_eq!(
                Given::parse(&format!("Basic {again}")).as_ref(),
                Some(&given),
                "#{i} {header:?}"
            );
        }
        let verdict = access::check(
            &logins,
            &given,
            "/provisioning/yealink/001565001001.cfg",
            &key,
            1_001,
        );
        // Nothing but the exact Basic login is let in: the digest response is not computed.
        if verdict == Verdict::Admitted {
            assert!(
                matches!(&given, Given::Basic { user, password } if user == "demo" && password == "provision-demo"),
                "#{i} admitted {header:?}"
            );
        }
    }
}

#[test]
fn file_names() {
    let corpus: Vec<String> = ALL
        .iter()
        .map(|v| v.file_name(&Mac::parse("001565a1b2c3").unwrap()))
        .chain([
            "001565a1b2c3-switchboard.cfg".to_string(),
            "y000000000000.cfg".to_string(),
            "00:15:65:a1:b2:c3".to_string(),
        ])
        .collect();
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    for i in 0..iterations() {
        let file = mutate(&mut rng, &corpus);
        let _ = Mac::parse(&file);
        for v in ALL {
            if let Some((mac, part)) = v.file_of(&file) {
                // What is accepted is exactly the vendor's name for that MAC, in any case.
                assert_eq!(
                    v.file_name_of(&mac, part),
                    file.to_ascii_lowercase(),
                    "#{i} {v:?} {file:?}"
                );
                assert_eq!(mac.as_str().len(), 12);
            }
        }
        let _ = Vendor::from_name(&file);
    }
}

#[test]
fn manifests() {
    let demo = include_str!("../../examples/registrar/provisioning.yaml").to_string();
    assert!(Manifest::parse(&demo).is_ok());
    let corpus = vec![demo];
    let mut rng = StdRng::seed_from_u64(SEED + 2);
    for _ in 0..iterations() / 10 {
        let text = mutate(&mut rng, &corpus);
        // A clear error or resources; never a panic.
        if let Err(e) = Manifest::parse(&text) {
            assert!(!format!("{e:#}").is_empty());
        }
    }
}
