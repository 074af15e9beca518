//! Entry points for fuzzing every parser that sees network bytes: the registrar's messages,
//! stream framing, digest headers both ways, the proxy's messages, the outbound registrations'
//! responses, the NOTIFYs of their subscriptions (PIDF, dialog-info), and the whole
//! [`Service::handle`] pipeline. Each takes arbitrary bytes, must not
//! panic, and checks what must hold of what it accepts (a response built from an accepted
//! request is valid SIP; a message the proxy accepts re-encodes to one that parses the same;
//! a digest answer the client computes is one the server reads).
//!
//! Each returns whether the input was accepted (parsed, framed, answered), so a run can tell
//! how much of it reached the checks.
//!
//! Run by the mutation test `tests/fuzz.rs` (part of `cargo test`, stable, seeded, bounded)
//! and by the cargo-fuzz targets in `fuzz/` (nightly, coverage-guided, unbounded).

use crate::auth::client::{authorization, Challenge, ClientCredentials};
use crate::auth::digest::Credentials;
use crate::auth::nonce::NonceKey;
use crate::config::ConfigHandle;
use crate::location::MemoryStore;
use crate::message::framing::{next_frame, Frame};
use crate::message::headers::via_target;
use crate::message::headers::{parse_contacts_all, parse_expires, NameAddr, SipUri, ViaRef};
use crate::message::owned::response_to;
use crate::message::{check, parse, HeaderName, Parsed, Response, MAX_MESSAGE_SIZE};
use crate::message::{Msg, Start};
use crate::metrics::Metrics;
use crate::service::{Service, ServiceSettings};
use crate::uac::machine::{Input, Machine, Timing};
use crate::uac::presence::{parse_body, Body, DialogBook, Package, SubState};
use crate::uac::sip::{parse_response, Method, ResponseExt};
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_crds::common::Transport;

/// The registrar's parser and header readers; a response to what it accepts (or to what it
/// can answer) is valid SIP.
pub fn message(data: &[u8]) -> bool {
    match parse(data) {
        Ok(Parsed::Request(r)) => {
            let _ = r.cseq();
            for h in &r.headers {
                let _ = ViaRef::parse_first(&h.value);
                let _ = parse_expires(&h.value);
                if let Some(na) = NameAddr::parse(&h.value) {
                    let _ = SipUri::parse(&na.uri);
                }
            }
            let _ = parse_contacts_all(r.headers_named(&HeaderName::Contact));
            let _ = SipUri::parse(r.uri);
            let resp = Response::to_request(&r.headers, 200, "OK", None).encode("fuzz");
            let msg = Msg::parse(&resp).expect("a response to an accepted request parses");
            assert_eq!(msg.status(), Some(200));
            let fields = msg.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str()));
            if let Err(f) = check::headers(fields) {
                panic!("a response to an accepted request is malformed: {f:?}");
            }
            true
        }
        Ok(_) => false,
        Err(e) => {
            if let Some(headers) = &e.salvage {
                let resp = Response::to_request(headers, e.status, "Bad", None).encode("fuzz");
                let msg = Msg::parse(&resp).expect("an error response parses");
                assert_eq!(msg.status(), Some(e.status));
            }
            false
        }
    }
}

/// Stream framing: a message cut from the front of a buffer is cut the same from exactly its
/// bytes, and no prefix of it is one.
pub fn framing(data: &[u8]) -> bool {
    match next_frame(data, MAX_MESSAGE_SIZE) {
        Frame::Message { len } => {
            assert!(len <= data.len());
            assert_eq!(
                next_frame(&data[..len], MAX_MESSAGE_SIZE),
                Frame::Message { len }
            );
            for k in [len / 2, len.saturating_sub(1)] {
                assert_eq!(
                    next_frame(&data[..k], MAX_MESSAGE_SIZE),
                    Frame::Incomplete,
                    "a prefix of {k} of a {len}-byte message"
                );
            }
            true
        }
        Frame::KeepAlive { consumed, .. } => {
            assert!(consumed <= data.len());
            false
        }
        Frame::Incomplete | Frame::Error(_) => false,
    }
}

/// Digest headers both ways: `Authorization` as the registrar reads it, `WWW-Authenticate` as
/// the outbound registrations read it; an answer computed for a challenge reads back. The
/// input is tried whole and, when it is a message, header line by header line.
pub fn digest(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let values = text
        .split("\r\n")
        .filter_map(|line| line.split_once(':').map(|(_, v)| v.trim()));
    let mut accepted = false;
    for value in std::iter::once(text.as_ref()).chain(values) {
        accepted |= digest_value(value);
    }
    accepted
}

fn digest_value(text: &str) -> bool {
    let credentials = Credentials::parse(text);
    if let Some(c) = &credentials {
        let _ = c.algorithm();
    }
    let _ = NonceKey::new(b"fuzz").check(text.trim(), "realm", 1_000_000, 300);
    let Ok(challenge) = Challenge::parse(text) else {
        return credentials.is_some();
    };
    let creds = ClientCredentials {
        username: "alice",
        password: "secret",
    };
    let value = authorization(&challenge, &creds, "REGISTER", "sip:a.test", 1, "c0ffee");
    let read = Credentials::parse(&value)
        .unwrap_or_else(|| panic!("our answer {value:?} to {text:?} does not parse"));
    assert_eq!(read.username, "alice");
    assert_eq!(read.realm, challenge.realm);
    assert_eq!(read.nonce, challenge.nonce);
    true
}

/// The proxy's parser: what it accepts re-encodes to bytes that parse to the same message,
/// and a forwardable message stays forwardable once re-encoded.
pub fn proxy(data: &[u8]) -> bool {
    let Some(mut msg) = Msg::parse(data) else {
        return false;
    };
    let encoded = msg.encode();
    let again = Msg::parse(&encoded).expect("a re-encoded message parses");
    assert_eq!(again.encode(), encoded, "encoding is stable");
    let forwardable = check::headers(msg.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str())));
    if forwardable.is_ok() {
        let fields = again.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str()));
        assert_eq!(check::headers(fields), Ok(()), "re-encoding broke a header");
    }
    let _ = (msg.cseq(), msg.to_tag(), msg.from_tag(), msg.request_uri());
    if let Some(via) = msg.top_via() {
        let _ = via_target(&via);
    }
    let _ = msg.header_list("Route");
    let _ = msg.pop_first("Route");
    if let Start::Request { .. } = msg.start {
        let resp = response_to(&msg, 400, "Bad Request", Some("t")).encode();
        assert!(
            Msg::parse(&resp).is_some(),
            "a response to a request parses"
        );
    }
    true
}

/// The outbound registrations' response parser and state machine: any response is read, and
/// its challenge, if any, answered.
pub fn uac(data: &[u8]) -> bool {
    let Ok(resp) = parse_response(&String::from_utf8_lossy(data)) else {
        return false;
    };
    let _ = resp.status_text();
    let reply = resp.reply(Method::Register, Some("sip:trunk@127.0.0.1:5060"));
    if let Some(Ok(challenge)) = &reply.challenge {
        let creds = ClientCredentials {
            username: "trunk",
            password: "secret",
        };
        let _ = authorization(challenge, &creds, "REGISTER", "sip:a.test", 2, "c0ffee");
    }
    let mut machine = Machine::new(600, Some("a.test".into()), Timing::default(), 1);
    let _ = machine.handle(Input::Start);
    let _ = machine.handle(Input::Reply(reply));
    true
}

/// A NOTIFY of a presence or dialog subscription: its `Event`, `Subscription-State` and body
/// read as the UAC reads them (the bytes are also tried as a bare body of each package); a
/// dialog-info body's entity is what the lamp is then reported for. Accepted: a request
/// naming a package, whose body reached the parser.
pub fn notify(data: &[u8]) -> bool {
    for package in Package::ALL {
        if let Ok(Body::Dialog(info)) = parse_body(package, Some(package.accept()), data) {
            let entity = info.entity.clone();
            assert_eq!(DialogBook::default().apply(info).entity, entity);
        }
    }
    let Ok(Parsed::Request(req)) = parse(data) else {
        return false;
    };
    let other = |n: &str| req.header(&HeaderName::Other(n));
    if let Some(state) = other("Subscription-State") {
        let _ = SubState::parse(state);
    }
    let Some(package) = other("Event").and_then(Package::from_event) else {
        return false;
    };
    let _ = parse_body(package, other("Content-Type"), req.body);
    true
}

/// The whole service on the embedded config, with the proxy attached to a loopback socket:
/// whatever arrives over UDP or TCP, what it answers is a SIP response.
pub struct Pipeline {
    service: Service,
}

impl Pipeline {
    /// A service on the embedded demo config and an in-memory store. Needs a tokio runtime.
    pub async fn new() -> std::io::Result<Pipeline> {
        let config = Arc::new(ConfigHandle::new());
        config.replace(crate::config::embedded());
        let service = Service::new(
            ServiceSettings::default(),
            config,
            Arc::new(MemoryStore::new()),
            Arc::new(Metrics::new()),
        );
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        service.proxy().attach_udp(Arc::new(socket), local);
        Ok(Pipeline { service })
    }

    /// Hands `data` in as if from 127.0.0.1 over UDP, then over TCP; whether it was answered.
    pub async fn handle(&self, data: &[u8]) -> bool {
        let source: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let mut answered = false;
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Some(out) = self.service.handle(data, source, transport).await {
                answered = true;
                let msg = Msg::parse(&out.data).unwrap_or_else(|| {
                    panic!(
                        "answered with something that is not SIP: {:?}",
                        String::from_utf8_lossy(&out.data)
                    )
                });
                assert!(matches!(msg.start, Start::Response { .. }));
            }
        }
        answered
    }
}
