//! RFC 4475's torture messages against a running registrar, over UDP as the RFC's messages
//! ostensibly arrive: every valid one handled (answered as its content calls for, INVITEs to a
//! registered phone forwarded to it), every invalid one answered 400 (505 for the version, 501
//! for an unknown method, 416 for an unknown scheme, 420 for unknown extensions) and never
//! forwarded, responses that match no transaction dropped; then stream framing errors over TCP.
//!
//! The registrar serves `example.com` (the RFC's domain) and trusts the sending address as a
//! peer, so an INVITE to `sip:user@example.com` needs no digest: it is forwarded to the phone
//! registered as `user` unless it is malformed.

mod common;

use common::torture::{self, Callee, Peer};
use common::{metric_sum, status_of, wait_until, Options, Registrar};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Where the torture messages come from (trusted as a peer by the config).
const PEER_IP: &str = "127.0.44.75";
const PASSWORD: &str = "torture-password";

fn config() -> String {
    let (md5, sha256) = switchboard_crds::config::ha1("user", "example.com", PASSWORD);
    format!(
        r#"format: 1
hash: ""
domains:
  - domain: example.com
    site: default/torture
    extensions: "1000-1999"
    trustedPeers: ["127.0.44.0/24"]
    registration:
      minExpires: 60
      maxExpires: 3600
      defaultExpires: 600
      maxContacts: 3
      transports: [UDP, TCP]
      digestAlgorithms: [MD5]
    devices:
      - id: default/user
        sipUser: user
        ha1Md5: {md5}
        ha1Sha256: {sha256}
        assignment: Site
        extension: "1000"
"#
    )
}

/// What the registrar must do with a message.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Answer with this status (after any provisional), the request not forwarded.
    Status(u16),
    /// Forward it to the phone, which answers 486, relayed back.
    Forwarded,
    /// A response matching no transaction: dropped, nothing sent.
    Dropped,
}

use Expect::*;

/// Every message of RFC 4475 and the answer it calls for here (the RFC's section in the
/// comment). "Handled" for a valid request means what its content asks: 401 for a REGISTER
/// without credentials, 200 for OPTIONS, 404 for an INVITE to nobody, 501 for an unknown method.
const CASES: &[(&str, Expect)] = &[
    // 3.1.1 valid messages
    ("wsinv", Status(404)), // 3.1.1.1: whitespace everywhere, to an unknown user
    ("intmeth", Status(501)), // 3.1.1.2
    ("esc01", Status(404)), // 3.1.1.3
    ("escnull", Status(401)), // 3.1.1.4
    ("esc02", Status(501)), // 3.1.1.5: RE%47IST%45R is not REGISTER
    ("lwsdisp", Status(200)), // 3.1.1.6
    ("longreq", Forwarded), // 3.1.1.7
    ("dblreq", Status(401)), // 3.1.1.8: the trailing INVITE is noise
    ("semiuri", Status(200)), // 3.1.1.9
    ("transports", Status(200)), // 3.1.1.10
    ("mpart01", Status(404)), // 3.1.1.11: MESSAGE with a binary body
    ("unreason", Dropped),  // 3.1.1.12
    ("noreason", Dropped),  // 3.1.1.13
    // 3.1.2 invalid messages
    ("badinv01", Status(400)),   // 3.1.2.1
    ("clerr", Status(400)),      // 3.1.2.2
    ("ncl", Status(400)),        // 3.1.2.3
    ("scalar02", Status(400)),   // 3.1.2.4
    ("scalarlg", Dropped),       // 3.1.2.5
    ("quotbal", Status(400)),    // 3.1.2.6
    ("ltgtruri", Status(400)),   // 3.1.2.7
    ("lwsruri", Status(400)),    // 3.1.2.8
    ("lwsstart", Status(400)),   // 3.1.2.9
    ("trws", Status(400)),       // 3.1.2.10
    ("escruri", Status(400)),    // 3.1.2.11
    ("baddate", Status(400)),    // 3.1.2.12
    ("regbadct", Status(400)),   // 3.1.2.13
    ("badaspec", Status(400)),   // 3.1.2.14
    ("baddn", Status(400)),      // 3.1.2.15
    ("badvers", Status(505)),    // 3.1.2.16
    ("mismatch01", Status(400)), // 3.1.2.17
    ("mismatch02", Status(501)), // 3.1.2.18
    ("bigcode", Dropped),        // 3.1.2.19
    // 3.2 transaction layer
    ("badbranch", Status(200)), // 3.2.1: falls back to RFC 2543 matching
    // 3.3 application layer
    ("insuf", Status(400)), // 3.3.1: no Call-ID, From, To; Via and CSeq suffice to answer
    ("unkscm", Status(416)), // 3.3.2
    ("novelsc", Status(416)), // 3.3.3
    ("unksm2", Status(400)), // 3.3.4: a registrar needs a SIP To
    ("bext01", Status(420)), // 3.3.5
    ("invut", Forwarded),   // 3.3.6: the content type is the phone's business
    ("regaut01", Status(401)), // 3.3.7
    ("multi01", Status(400)), // 3.3.8
    ("mcl01", Status(400)), // 3.3.9
    ("bcast", Dropped),     // 3.3.10
    ("zeromf", Status(200)), // 3.3.11: OPTIONS answered here, not forwarded
    ("cparam01", Status(401)), // 3.3.12
    ("cparam02", Status(401)), // 3.3.13
    ("regescrt", Status(401)), // 3.3.14
    ("sdp01", Forwarded),   // 3.3.15: Accept is the phone's business
    // 3.4 backward compatibility
    ("inv2543", Status(404)), // 3.4.1
];

fn registrar() -> (Registrar, SocketAddr) {
    let text = config();
    let r = Registrar::start(
        "rfc4475",
        Options {
            config: Some(&text),
            ..Default::default()
        },
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", r.sip_port).parse().unwrap();
    (r, addr)
}

fn dropped_total(r: &Registrar) -> f64 {
    let (_, body) = r.get("/metrics").expect("HTTP reachable");
    metric_sum(&body, "sip_messages_dropped_total")
}

#[test]
fn every_torture_message_is_handled_or_refused_and_none_malformed_is_forwarded() {
    let corpus = torture::all();
    let names: Vec<&str> = corpus.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = CASES.iter().map(|(n, _)| *n).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(names, sorted, "every corpus message has an expectation");

    let (r, addr) = registrar();
    let callee = Callee::start(addr, "example.com", "user", PASSWORD);
    let peer = Peer::bind(PEER_IP);
    let mut failures = Vec::new();
    let mut forwarded = Vec::new();
    for (name, expect) in CASES {
        let msg = torture::load(name);
        let want = match expect {
            Status(code) => *code,
            Forwarded => {
                forwarded.push(torture::header(&msg, "Call-ID", "i").unwrap());
                486
            }
            Dropped => {
                let before = dropped_total(&r);
                peer.send(addr, &msg);
                wait_until(&format!("{name} to be dropped"), || {
                    (dropped_total(&r) > before).then_some(())
                });
                continue;
            }
        };
        let resp = peer.request(addr, &msg, Duration::from_secs(5));
        if resp.as_deref().map(status_of) != Some(want) {
            failures.push(format!("{name}: want {want}, got {resp:?}"));
        } else if want == 420 {
            let unsupported =
                common::header_values(resp.as_deref().unwrap(), "Unsupported").join(",");
            assert_eq!(
                unsupported,
                "nothingSupportsThis, nothingSupportsThisEither, \
                 noProxiesSupportThis, norDoAnyProxiesSupportThis",
                "{name}"
            );
        }
    }
    assert!(failures.is_empty(), "{}\n{}", failures.join("\n"), r.logs());
    // Exactly the valid INVITEs to `user` reached the phone (retransmissions aside).
    let mut reached = callee.invites();
    reached.sort();
    reached.dedup();
    forwarded.sort();
    assert_eq!(reached, forwarded, "{}", r.logs());
    // Nothing else came back: no answer to dblreq's trailing INVITE, nothing for a response.
    while let Some(extra) = peer.recv(Duration::from_millis(100)) {
        let call_id = common::header_values(&extra, "Call-ID").join("");
        assert!(
            !call_id.contains("dblreq.0ha0isnda977644900765"),
            "the noise after dblreq's REGISTER was answered: {extra}"
        );
    }
    assert!(matches!(r.get("/healthz"), Some((200, _))));
}

/// RFC 4475 §3.1.1.1 rewritten to the registered phone: the whitespace around the Via's
/// slashes, folded lines, unknown headers and compact forms reach it, re-encoded but with the
/// unknown header's value unchanged.
#[test]
fn the_tortuous_invite_is_forwarded_with_its_unknown_headers_unchanged() {
    let (r, addr) = registrar();
    let callee = Callee::start(addr, "example.com", "user", PASSWORD);
    let peer = Peer::bind("127.0.44.76");
    let wsinv = String::from_utf8(torture::load("wsinv")).unwrap().replacen(
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "INVITE sip:user@example.com;unknownparam SIP/2.0",
        1,
    );
    let resp = peer.request(addr, wsinv.as_bytes(), Duration::from_secs(5));
    assert_eq!(resp.as_deref().map(status_of), Some(486), "{}", r.logs());
    assert_eq!(
        callee.invites(),
        vec!["wsinv.ndaksdj@192.0.2.1".to_string()]
    );
}

/// Over TCP a framing error cannot be recovered from: a negative Content-Length (§3.1.2.3) or
/// two that differ (§3.3.9) close the connection.
#[test]
fn stream_framing_errors_close_the_connection() {
    let (r, _) = registrar();
    for name in ["ncl", "mcl01"] {
        let mut s = TcpStream::connect(("127.0.0.1", r.sip_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&torture::load(name)).unwrap();
        let mut buf = [0u8; 4096];
        let mut read = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) => panic!("{name}: the connection stayed open ({e}), read {read} bytes"),
            }
        }
    }
}
