//! How an AOR's bindings are written in Redis: a JSON array of [`Stored`], times in unix
//! milliseconds. Every replica of a cluster reads what the others wrote, including replicas of
//! the previous version during a rolling upgrade, so this format changes only with a migration.

use crate::location::Binding;
use crate::message::address::socket_addr_text;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;

/// A binding as stored in Redis, as read ([`encode`] writes the same fields in this order;
/// [`Binding`]'s own `Serialize` is the `/debug` view). Its text borrows from the value read
/// when nothing is escaped.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    contact: Cow<'a, str>,
    q: Option<u16>,
    /// Unix milliseconds.
    expires_at: u64,
    /// Unix milliseconds.
    registered_at: u64,
    /// Unix milliseconds.
    updated_at: u64,
    #[serde(borrow)]
    call_id: Cow<'a, str>,
    cseq: u32,
    source: SocketAddr,
    transport: Transport,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    replica: Cow<'a, str>,
}

/// Unix milliseconds of `t` (0 before the epoch).
pub(super) fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl From<Stored<'_>> for Binding {
    fn from(s: Stored<'_>) -> Binding {
        Binding {
            contact: s.contact.into_owned(),
            q: s.q,
            expires_at: from_millis(s.expires_at),
            registered_at: from_millis(s.registered_at),
            updated_at: from_millis(s.updated_at),
            call_id: s.call_id.into_owned(),
            cseq: s.cseq,
            source: s.source,
            transport: s.transport,
            user_agent: s.user_agent.map(Cow::into_owned),
            replica: s.replica.into_owned(),
        }
    }
}

/// The stored value of a non-empty set of bindings: a JSON array of [`Stored`] objects, the
/// fields in their order, as serde writes them (`writes_what_serde_wrote` and
/// `reads_the_format_of_earlier_versions` hold the two to the same bytes).
///
/// Written by hand because it is written on every refresh: serde's writer escaped each key
/// and each string byte by byte through a table, and an encoding took 5 300 instructions per
/// refresh, this one 2 200 (callgrind, `bench/scale`): a key is a constant and a string that
/// needs no escape (all of them, in practice) is copied whole.
pub(super) fn encode(bindings: &[Binding]) -> Vec<u8> {
    let text: usize = bindings
        .iter()
        .map(|b| b.contact.len() + b.call_id.len() + b.replica.len())
        .sum();
    let mut out = Vec::with_capacity(text + bindings.len() * 256);
    out.push(b'[');
    for (i, b) in bindings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_binding(&mut out, b);
    }
    out.push(b']');
    out
}

/// One binding as a [`Stored`] object.
fn push_binding(out: &mut Vec<u8>, b: &Binding) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"contact\":");
    push_string(out, &b.contact);
    out.extend_from_slice(b",\"q\":");
    match b.q {
        Some(q) => out.extend_from_slice(digits.format(q).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    for (key, at) in [
        (&b",\"expires_at\":"[..], b.expires_at),
        (b",\"registered_at\":", b.registered_at),
        (b",\"updated_at\":", b.updated_at),
    ] {
        out.extend_from_slice(key);
        out.extend_from_slice(digits.format(to_millis(at)).as_bytes());
    }
    out.extend_from_slice(b",\"call_id\":");
    push_string(out, &b.call_id);
    out.extend_from_slice(b",\"cseq\":");
    out.extend_from_slice(digits.format(b.cseq).as_bytes());
    out.extend_from_slice(b",\"source\":");
    push_string(out, &socket_addr_text(b.source));
    out.extend_from_slice(b",\"transport\":");
    serde_json::to_writer(&mut *out, &b.transport).expect("a transport serializes");
    out.extend_from_slice(b",\"user_agent\":");
    match &b.user_agent {
        Some(ua) => push_string(out, ua),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"replica\":");
    push_string(out, &b.replica);
    out.push(b'}');
}

/// `s` as a JSON string: copied whole between quotes when nothing in it is escaped (JSON
/// escapes only `"`, `\` and control characters), else written by serde. The check looks at
/// every byte without stopping early, which the compiler turns into a vector loop.
fn push_string(out: &mut Vec<u8>, s: &str) {
    let escaped = s.bytes().fold(false, |any, c| {
        any | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !escaped {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serializes");
    }
}

/// Decodes a stored value. A value that does not parse (written by an incompatible version)
/// reads as no bindings, so the next REGISTER replaces it instead of failing forever.
pub(super) fn decode(key: &str, raw: &[u8]) -> Vec<Binding> {
    match serde_json::from_slice::<Vec<Stored>>(raw) {
        Ok(stored) => stored.into_iter().map(Binding::from).collect(),
        Err(e) => {
            tracing::warn!(key, error = %e, "unreadable bindings in redis, treated as none");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(now: SystemTime) -> Binding {
        Binding {
            contact: "sip:alice@192.0.2.1:5062;transport=tcp".into(),
            q: Some(500),
            expires_at: now + Duration::from_millis(3_600_123),
            registered_at: now,
            updated_at: now + Duration::from_millis(7),
            call_id: "abc@host".into(),
            cseq: 42,
            source: "192.0.2.1:5062".parse().unwrap(),
            transport: Transport::Tcp,
            user_agent: Some("phone/1.0".into()),
            replica: "registrar-0".into(),
        }
    }

    #[test]
    fn stored_round_trips_with_millisecond_times() {
        let now = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let b = binding(now);
        let raw = encode(std::slice::from_ref(&b));
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("\"expires_at\":1764003600246"), "{text}");
        assert!(text.contains("\"registered_at\":1764000000123"), "{text}");
        assert!(text.contains("\"transport\":\"TCP\""), "{text}");
        assert_eq!(decode("k", &raw), vec![b]);
    }

    /// The exact value earlier versions wrote still reads (rolling upgrades mix versions).
    #[test]
    fn reads_the_format_of_earlier_versions() {
        let raw = br#"[{"contact":"sip:a@192.0.2.1","q":null,"expires_at":1764003600000,"registered_at":1764000000000,"updated_at":1764000000000,"call_id":"c","cseq":1,"source":"192.0.2.1:5060","transport":"UDP","user_agent":null,"replica":"r1"}]"#;
        let back = decode("k", raw);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].contact, "sip:a@192.0.2.1");
        assert_eq!(back[0].transport, Transport::Udp);
        assert_eq!(encode(&back), raw.to_vec());
    }

    /// Text with escapes is not borrowed from the value read, but reads back the same.
    #[test]
    fn escaped_text_round_trips() {
        let mut b = binding(UNIX_EPOCH + Duration::from_millis(1_764_000_000_000));
        b.user_agent = Some("say \"hi\" \\ é\u{1}".into());
        b.source = "[2001:db8::1]:5060".parse().unwrap();
        let raw = encode(std::slice::from_ref(&b));
        assert!(String::from_utf8_lossy(&raw).contains(r#""source":"[2001:db8::1]:5060""#));
        assert_eq!(decode("k", &raw), vec![b]);
    }

    /// Every field filled, text that needs escapes, two bindings: the bytes serde wrote for
    /// them (before `encode` was written by hand).
    #[test]
    fn writes_what_serde_wrote() {
        let now = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let mut b = binding(now);
        b.user_agent = Some("say \"hi\" \\ \u{e9}\u{1}\t".into());
        b.source = "[2001:db8::1]:5060".parse().unwrap();
        b.transport = Transport::Wss;
        let mut c = binding(now);
        c.q = None;
        c.user_agent = None;
        let expected = concat!(
            r#"[{"contact":"sip:alice@192.0.2.1:5062;transport=tcp","q":500,"#,
            r#""expires_at":1764003600246,"registered_at":1764000000123,"#,
            r#""updated_at":1764000000130,"call_id":"abc@host","cseq":42,"#,
            r#""source":"[2001:db8::1]:5060","transport":"WSS","#,
            "\"user_agent\":\"say \\\"hi\\\" \\\\ \u{e9}\\u0001\\t\",",
            r#""replica":"registrar-0"},"#,
            r#"{"contact":"sip:alice@192.0.2.1:5062;transport=tcp","q":null,"#,
            r#""expires_at":1764003600246,"registered_at":1764000000123,"#,
            r#""updated_at":1764000000130,"call_id":"abc@host","cseq":42,"#,
            r#""source":"192.0.2.1:5062","transport":"TCP","user_agent":null,"#,
            r#""replica":"registrar-0"}]"#
        );
        let raw = encode(&[b.clone(), c.clone()]);
        assert_eq!(String::from_utf8(raw.clone()).unwrap(), expected);
        assert_eq!(decode("k", &raw), vec![b, c]);
    }

    #[test]
    fn sub_millisecond_precision_is_dropped() {
        let now = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let back = decode("k", &encode(&[binding(now)]));
        assert_eq!(
            back[0].registered_at,
            UNIX_EPOCH + Duration::from_millis(1_764_000_000_123)
        );
        assert_eq!(to_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn unreadable_value_reads_as_no_bindings() {
        assert!(decode("k", b"not json").is_empty());
    }
}
