//! CPU cost of one REGISTER-with-digest round trip inside the registrar, without sockets: the
//! exchange `bench/register/run.sh` drives with sipp (REGISTER → 401 → REGISTER with
//! Authorization → 200), fed straight to `Service::handle` for USERS devices (10 000 by
//! default, MD5 as sipp answers it), ROUNDS times over. Only the two `handle` calls are timed;
//! the client's side (building the requests, computing the digest) is not. Also times the
//! pieces: parsing the authenticated REGISTER (and, within it, the header checks) and reading
//! its Authorization header, and answering the last round's authenticated REGISTERs again (as
//! retransmissions).
//!
//!   cargo bench -p switchboard-registrar --bench register
//!   USERS=1000 ROUNDS=5 cargo bench -p switchboard-registrar --bench register

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_crds::common::{DigestAlgorithm, Transport};
use switchboard_crds::config::{ha1, DeviceConfig, DomainConfig, RegistrarConfig};
use switchboard_registrar::auth::digest::{expected_response, Algorithm, Credentials};
use switchboard_registrar::config::ConfigHandle;
use switchboard_registrar::location::MemoryStore;
use switchboard_registrar::message::{check, parse, HeaderName, Parsed};
use switchboard_registrar::metrics::Metrics;
use switchboard_registrar::service::{Service, ServiceSettings};

/// The registrar binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REALM: &str = "bench.test";

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> String {
    format!("user{i:05}")
}

fn config(users: usize) -> RegistrarConfig {
    let mut domain = DomainConfig {
        domain: REALM.into(),
        site: "bench/bench".into(),
        ..Default::default()
    };
    domain.registration.max_expires = 3600;
    domain.registration.transports = vec![Transport::Udp];
    domain.registration.digest_algorithms = vec![DigestAlgorithm::Md5];
    domain.devices = (0..users)
        .map(|i| {
            let (ha1_md5, ha1_sha256) = ha1(&user(i), REALM, &format!("pw-{i}"));
            DeviceConfig {
                id: format!("bench/{}", user(i)),
                sip_user: user(i),
                ha1_md5,
                ha1_sha256,
                ..Default::default()
            }
        })
        .collect();
    RegistrarConfig {
        domains: vec![domain],
        ..Default::default()
    }
    .seal()
}

/// What sipp sends (register_auth.xml), `auth` being the Authorization line or empty.
fn register(u: &str, call: u64, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:25100;branch=z9hG4bK-{call}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{u}@{REALM}>;tag=4242SIPpTag00{call}\r\n\
         To: <sip:{u}@{REALM}>\r\n\
         Call-ID: {call}-4242@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{u}@127.0.0.1:25100;transport=UDP>\r\n\
         {auth}Expires: 3600\r\n\
         User-Agent: sipp-bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn authorization(u: &str, i: usize, nonce: &str) -> String {
    let (h, _) = ha1(u, REALM, &format!("pw-{i}"));
    let uri = format!("sip:{REALM}");
    let r = expected_response(
        Algorithm::Md5,
        &h,
        "REGISTER",
        &uri,
        nonce,
        Some("00000001"),
        Some("6b8b4567"),
        Some("auth"),
    );
    format!(
        "Authorization: Digest username=\"{u}\",realm=\"{REALM}\",cnonce=\"6b8b4567\",nc=00000001,\
         qop=auth,uri=\"{uri}\",nonce=\"{nonce}\",response=\"{r}\",algorithm=MD5\r\n"
    )
}

fn nonce_of(response: &str) -> &str {
    response
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a challenge")
}

fn main() {
    let users: usize = env("USERS", 10_000);
    let rounds: usize = env("ROUNDS", 5);
    let handle = Arc::new(ConfigHandle::new());
    handle.replace(config(users));
    let service = Service::new(
        ServiceSettings::default(),
        handle,
        Arc::new(MemoryStore::new()),
        Arc::new(Metrics::new()),
    );
    let source: SocketAddr = "127.0.0.1:25100".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut call = 0u64;
    let mut last_seconds = Vec::new();
    let (mut best_challenge, mut best_register) = (f64::MAX, f64::MAX);
    let per = |d: Duration| d.as_nanos() as f64 / users as f64 / 1000.0;
    for round in 0..rounds {
        // Round 0 registers every device for the first time; later rounds refresh. The two
        // halves are timed as batches (the client's work in between is not timed).
        let firsts: Vec<String> = (0..users)
            .map(|i| register(&user(i), call + 1 + i as u64, 1, ""))
            .collect();
        let t = Instant::now();
        let challenges: Vec<_> = firsts
            .iter()
            .map(|m| rt.block_on(service.handle(m.as_bytes(), source, Transport::Udp)))
            .collect();
        let challenge_t = t.elapsed();
        let seconds: Vec<String> = challenges
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let r = String::from_utf8(r.expect("an answer").data.to_vec()).unwrap();
                assert!(r.starts_with("SIP/2.0 401"), "{r}");
                let u = user(i);
                register(
                    &u,
                    call + 1 + i as u64,
                    2,
                    &authorization(&u, i, nonce_of(&r)),
                )
            })
            .collect();
        call += users as u64;
        let t = Instant::now();
        let oks: Vec<_> = seconds
            .iter()
            .map(|m| rt.block_on(service.handle(m.as_bytes(), source, Transport::Udp)))
            .collect();
        let register_t = t.elapsed();
        for r in oks {
            let r = r.expect("an answer");
            assert!(r.data.starts_with(b"SIP/2.0 200"), "{:?}", r.data);
        }
        last_seconds = seconds;
        println!(
            "round {round} ({}): {:.2} us per registration = {:.2} (REGISTER -> 401) + {:.2} (REGISTER with digest -> 200)",
            if round == 0 { "new bindings" } else { "refreshes" },
            per(challenge_t + register_t),
            per(challenge_t),
            per(register_t)
        );
        if round > 0 {
            best_challenge = best_challenge.min(per(challenge_t));
            best_register = best_register.min(per(register_t));
        }
    }
    if rounds > 1 {
        println!(
            "best refresh round: {:.2} us per registration ({:.2} + {:.2}; the least disturbed round on a busy machine)",
            best_challenge + best_register,
            best_challenge,
            best_register
        );
    }

    // The last round's authenticated REGISTERs again, as when their 200s were lost: each is
    // answered from the transaction cache (a REGISTER's 200 built again from the bindings).
    let t = Instant::now();
    for m in &last_seconds {
        let r = rt.block_on(service.handle(m.as_bytes(), source, Transport::Udp));
        assert!(r.expect("an answer").data.starts_with(b"SIP/2.0 200"));
    }
    println!(
        "retransmitted REGISTER with digest -> 200 again: {:.2} us",
        per(t.elapsed())
    );

    // The pieces, on the last authenticated REGISTER.
    let last_authorized = last_seconds.last().cloned().unwrap_or_default();
    let n: usize = env("MICRO", 200_000);
    let t = Instant::now();
    for _ in 0..n {
        black_box(parse(black_box(last_authorized.as_bytes())).is_ok());
    }
    println!(
        "parse (authenticated REGISTER, {} bytes): {:.2} us",
        last_authorized.len(),
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    let Ok(Parsed::Request(req)) = parse(last_authorized.as_bytes()) else {
        panic!("parses")
    };
    let t = Instant::now();
    for _ in 0..n {
        let fields = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref()));
        black_box(check::headers(black_box(fields)).is_ok());
    }
    println!(
        "of which the header checks: {:.2} us",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
    let value = req.header(&HeaderName::Authorization).unwrap().to_string();
    let t = Instant::now();
    for _ in 0..n {
        black_box(Credentials::parse(black_box(&value)));
    }
    println!(
        "Authorization header: {:.2} us",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
    );
}
