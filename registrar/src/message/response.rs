//! Responses built from a request (RFC 3261 §8.2.6.2): the Via headers (the top one with
//! `received`/`rport` filled in), From, To with a tag, Call-ID and CSeq copied; then the
//! handler's headers; then Server and Content-Length.

use super::headers::{split_list, NameAddrRef};
use super::parse::{Header, HeaderName};
use super::scan::Scan;
use std::borrow::Cow;
use std::fmt::Write as _;

/// A response under construction. Its header values borrow from the request they answer
/// where they are copied unchanged (Via, From, Call-ID, CSeq), so building one allocates for
/// what is new only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Cow<'static, str>,
    /// Headers in order, the copied ones first.
    pub headers: Vec<(Cow<'static, str>, Cow<'a, str>)>,
}

/// The default reason phrase of the codes this registrar sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        481 => "Call/Transaction Does Not Exist",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

impl<'a> Response<'a> {
    /// A response to the request whose headers are given; `top_via` replaces the first via-parm
    /// (with `received`/`rport` set by the transport).
    pub fn to_request(
        request_headers: &'a [Header<'_>],
        status: u16,
        reason: impl Into<Cow<'static, str>>,
        top_via: Option<&'a str>,
    ) -> Response<'a> {
        let mut headers: Vec<(Cow<'static, str>, Cow<'a, str>)> = Vec::with_capacity(12);
        let mut vias = request_headers.iter().filter(|h| h.name == HeaderName::Via);
        if let Some(first) = vias.next() {
            headers.push(("Via".into(), top_via_value(&first.value, top_via)));
        }
        for h in vias {
            headers.push(("Via".into(), Cow::Borrowed(h.value.as_ref())));
        }
        let get = |n: HeaderName| {
            request_headers
                .iter()
                .find(|h| h.name == n)
                .map(|h| h.value.as_ref())
        };
        if let Some(from) = get(HeaderName::From) {
            headers.push(("From".into(), Cow::Borrowed(from)));
        }
        if let Some(to) = get(HeaderName::To) {
            // A To with no `;` has no parameter, so no tag (a REGISTER's, as a rule): it
            // is not parsed only to find that out.
            let has_tag = |to: &str| NameAddrRef::parse(to).is_some_and(|na| na.tag().is_some());
            let tagged = if status > 100 && !(to.has_byte(b';') && has_tag(to)) {
                let mut t = String::with_capacity(to.len() + 24);
                t.push_str(to);
                t.push_str(";tag=");
                push_to_tag(&mut t, get(HeaderName::CallId), get(HeaderName::From));
                Cow::Owned(t)
            } else {
                Cow::Borrowed(to)
            };
            headers.push(("To".into(), tagged));
        }
        if let Some(call_id) = get(HeaderName::CallId) {
            headers.push(("Call-ID".into(), Cow::Borrowed(call_id)));
        }
        if let Some(cseq) = get(HeaderName::CSeq) {
            headers.push(("CSeq".into(), Cow::Borrowed(cseq)));
        }
        Response {
            status,
            reason: reason.into(),
            headers,
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<Cow<'a, str>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header in place.
    pub fn push(&mut self, name: &'static str, value: impl Into<Cow<'a, str>>) {
        self.headers.push((name.into(), value.into()));
    }

    /// The first value of a header (for tests and logs).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The wire form, with `Server` and `Content-Length: 0` appended, in one buffer of its
    /// exact length (a response the transaction cache keeps holds no spare capacity).
    pub fn encode(&self, server: &str) -> Vec<u8> {
        const END: &str = "Content-Length: 0\r\n\r\n";
        let mut status = itoa::Buffer::new();
        let status = status.format(self.status);
        let server_line = if server.is_empty() {
            0
        } else {
            server.len() + 10
        };
        let len = 8
            + status.len()
            + 1
            + self.reason.len()
            + 2
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + server_line
            + END.len();
        let mut s = String::with_capacity(len);
        s.push_str("SIP/2.0 ");
        s.push_str(status);
        s.push(' ');
        s.push_str(&self.reason);
        s.push_str("\r\n");
        for (n, v) in &self.headers {
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        if !server.is_empty() {
            s.push_str("Server: ");
            s.push_str(server);
            s.push_str("\r\n");
        }
        s.push_str(END);
        debug_assert_eq!(s.len(), len);
        s.into_bytes()
    }
}

/// The top Via of a response: the request's first via-parm replaced by `top` (with `received`
/// and `rport`), the rest of that header line kept.
fn top_via_value<'a>(value: &'a str, top: Option<&'a str>) -> Cow<'a, str> {
    let Some(top) = top else {
        return Cow::Borrowed(value);
    };
    if !value.has_byte(b',') {
        return Cow::Borrowed(top);
    }
    let mut parts = split_list(value);
    if !parts.is_empty() {
        parts[0] = top;
    }
    Cow::Owned(parts.join(", "))
}

/// An RFC 1123 date (`Sat, 13 Nov 2010 23:29:00 GMT`) for the `Date` header (RFC 3261 §20.17).
pub fn http_date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Written by hand: one per 200 OK, and `format!` cost more than the rest of the date.
    let mut out = String::with_capacity(29);
    out.push_str(WEEKDAYS[days.rem_euclid(7) as usize]);
    out.push_str(", ");
    push_two_digits(&mut out, day as u64);
    out.push(' ');
    out.push_str(MONTHS[(month - 1) as usize]);
    out.push(' ');
    if (0..10_000).contains(&year) {
        push_two_digits(&mut out, (year / 100) as u64);
        push_two_digits(&mut out, (year % 100) as u64);
    } else {
        let _ = write!(out, "{year}");
    }
    for (i, n) in [rem / 3600, rem % 3600 / 60, rem % 60]
        .into_iter()
        .enumerate()
    {
        out.push(if i == 0 { ' ' } else { ':' });
        push_two_digits(&mut out, n);
    }
    out.push_str(" GMT");
    out
}

/// `n` (below 100) as two decimal digits.
fn push_two_digits(out: &mut String, n: u64) {
    out.push(char::from(b'0' + (n / 10 % 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// A q-value in thousandths as written in a Contact (`0.5`, `1`).
pub fn format_q(thousandths: u16) -> String {
    if thousandths >= 1000 {
        return "1".into();
    }
    let s = format!("0.{thousandths:03}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Appends a To-tag that is the same for every retransmission of a request (derived from
/// Call-ID and From's tag), so a response rebuilt after the cache forgot it, or by another
/// replica, still matches. xxh3, not SipHash: this runs for every response.
fn push_to_tag(out: &mut String, call_id: Option<&str>, from: Option<&str>) {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    let tag = from.and_then(NameAddrRef::parse).and_then(|n| n.tag());
    // One-shot hashes, chained through the seed (the streaming hasher's set-up cost more than
    // hashing); which parts are present seeds the first, so (None, "x") and ("x", None) differ.
    let present = u64::from(call_id.is_some()) | u64::from(tag.is_some()) << 1;
    let h = xxh3_64_with_seed(call_id.unwrap_or("").as_bytes(), present);
    let h = xxh3_64_with_seed(tag.unwrap_or("").as_bytes(), h);
    let mut hex = [0u8; 16];
    hex::encode_to_slice(h.to_be_bytes(), &mut hex).expect("16 hex digits");
    out.push_str("sb");
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse, Parsed};

    #[test]
    fn copies_dialog_headers_and_tags_to() {
        let Parsed::Request(r) = parse(
            b"REGISTER sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP p.test\r\n\
            Via: SIP/2.0/UDP q.test\r\nFrom: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: abc\r\n\
            CSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap() else {
            panic!()
        };
        let resp = Response::to_request(
            &r.headers,
            200,
            "OK",
            Some("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060;received=192.0.2.1"),
        )
        .with("Expires", "60");
        let text = String::from_utf8(resp.encode("switchboard")).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060;received=192.0.2.1, SIP/2.0/UDP p.test\r\nVia: SIP/2.0/UDP q.test\r\n"
        ));
        assert!(text.contains("To: <sip:a@a.test>;tag=sb"));
        assert!(text.contains("CSeq: 7 REGISTER\r\n"));
        assert!(text.contains("Server: switchboard\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        // The same request gives the same tag.
        let again = Response::to_request(&r.headers, 200, "OK", None);
        assert_eq!(again.header("To"), resp.header("To"));
    }

    #[test]
    fn dates_and_q() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_289_690_940);
        assert_eq!(http_date(t), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(
            http_date(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_202_307);
        assert_eq!(http_date(t), "Wed, 02 Dec 2026 09:05:07 GMT");
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(1000), "1");
        assert_eq!(format_q(5), "0.005");
        assert_eq!(format_q(0), "0");
    }

    #[test]
    fn to_tags_follow_call_id_and_from_tag() {
        let tag = |c: Option<&str>, f: Option<&str>| {
            let mut s = String::new();
            push_to_tag(&mut s, c, f);
            s
        };
        let a = tag(Some("c1"), Some("<sip:a@a.test>;tag=1"));
        assert_eq!(a, tag(Some("c1"), Some("<sip:a@a.test>;tag=1")));
        assert_eq!(a.len(), 18);
        assert_ne!(a, tag(Some("c2"), Some("<sip:a@a.test>;tag=1")));
        assert_ne!(a, tag(Some("c1"), Some("<sip:a@a.test>;tag=2")));
        assert_ne!(
            tag(None, Some("<sip:a@a.test>;tag=x")),
            tag(Some("x"), None)
        );
    }

    #[test]
    fn existing_to_tag_is_kept() {
        let headers = vec![Header {
            name: HeaderName::To,
            value: "<sip:a@a.test>;tag=xyz".into(),
        }];
        let r = Response::to_request(&headers, 200, "OK", None);
        assert_eq!(r.header("To"), Some("<sip:a@a.test>;tag=xyz"));
    }

    /// A `tag` inside the URI (or any `;` parameter but `tag`) is not the To's tag: one is
    /// added, as to a To without parameters.
    #[test]
    fn a_to_without_a_tag_parameter_gets_one() {
        for to in [
            "<sip:a@a.test>",
            "sip:a@a.test",
            "<sip:a@a.test;tag=uri>",
            "<sip:a@a.test>;x=1",
        ] {
            let headers = vec![Header {
                name: HeaderName::To,
                value: to.into(),
            }];
            let r = Response::to_request(&headers, 200, "OK", None);
            let got = r.header("To").unwrap();
            assert!(got.starts_with(&format!("{to};tag=")), "{to} -> {got}");
            let provisional = Response::to_request(&headers, 100, "Trying", None);
            assert_eq!(provisional.header("To"), Some(to));
        }
    }
}
