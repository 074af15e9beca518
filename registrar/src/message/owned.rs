//! The owned message: a start line, headers in order (canonical name, value untouched) and an
//! opaque body. The proxy relays what it does not understand, so this keeps every header and
//! only reads and rewrites the few it owns (Via, Route, Record-Route, Max-Forwards, the
//! Request-URI, From display, P-Asserted-Identity, Content-Length); the UAC builds its requests
//! with it and reads its responses into it. SDP is never looked at.

use super::scan::{head_end, Scan};
use crate::message::headers::{list_elements, split_list, NameAddr, SipUri, ViaRef};
use crate::message::MAX_MESSAGE_SIZE;
use bytes::Bytes;
use std::borrow::Cow;

/// Request or response line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// Method token.
        method: String,
        /// Request-URI.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Start line.
    pub start: Start,
    /// Headers: canonical long name (compact forms expanded), value.
    pub headers: Vec<(Name, String)>,
    /// Body, as received.
    pub body: Bytes,
}

/// A header's name: a name this module knows borrowed from its tables, any other owned, so
/// that the usual headers of a message cost no allocation for their names.
pub type Name = Cow<'static, str>;

/// Header names written in their usual case, whatever case they arrive in.
const CANONICAL: [&str; 16] = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Supported",
    "CSeq",
    "Route",
    "Record-Route",
    "Max-Forwards",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "WWW-Authenticate",
    "Authorization",
];

/// Other names phones and servers commonly send, kept as written: borrowed when they arrive
/// in this case, copied otherwise.
const COMMON: [&str; 12] = [
    "Expires",
    "User-Agent",
    "Server",
    "Allow",
    "Accept",
    "Subject",
    "Event",
    "Require",
    "Proxy-Require",
    "Session-Expires",
    "Min-SE",
    "P-Asserted-Identity",
];

fn canonical(name: &str) -> Name {
    let name = crate::message::headers::long_name(name);
    // Most arrive in their usual case already: a length and memcmp each, not a fold.
    if let Some(c) = CANONICAL.iter().chain(&COMMON).find(|c| **c == name) {
        return Cow::Borrowed(c);
    }
    match CANONICAL.iter().find(|c| c.eq_ignore_ascii_case(name)) {
        Some(c) => Cow::Borrowed(c),
        None => Cow::Owned(name.to_string()),
    }
}

/// The lines of a message head, split at CRLF only (a bare CR or LF stays in its line).
fn crlf_lines(head: &str) -> impl Iterator<Item = &str> {
    let bytes = head.as_bytes();
    let mut from = 0;
    // Each CRLF found by its LF: memchr builds no searcher per message, as memmem does.
    let ends = memchr::memchr_iter(b'\n', bytes)
        .filter(move |&i| i > 0 && bytes[i - 1] == b'\r')
        .map(|i| i - 1)
        .chain([head.len()]);
    ends.map(move |end| {
        let line = &head[from..end];
        from = end + 2;
        line
    })
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// How many digits `n` has in decimal.
fn decimal_len(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Whether these bytes are a response (start with the SIP version).
pub fn is_response(data: &[u8]) -> bool {
    data.starts_with(b"SIP/2.0 ")
}

/// The method token of a request, without parsing the rest.
pub fn method_token(data: &[u8]) -> Option<&[u8]> {
    let end = data.iter().take(20).position(|&b| b == b' ')?;
    Some(&data[..end])
}

impl Msg {
    /// Parses one message; `None` for anything that is not a well-formed SIP message.
    pub fn parse(data: &[u8]) -> Option<Msg> {
        if data.len() > MAX_MESSAGE_SIZE {
            return None;
        }
        let start = data.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let data = &data[start..];
        let head_end = head_end(data)?;
        let head = std::str::from_utf8(&data[..head_end]).ok()?;
        let rest = &data[head_end + 4..];
        // Borrowed lines; only a folded one is copied to be joined.
        let mut lines: Vec<Cow<str>> = Vec::with_capacity(24);
        for line in crlf_lines(head) {
            if line.starts_with(' ') || line.starts_with('\t') {
                let last = lines.last_mut()?.to_mut();
                last.push(' ');
                last.push_str(line.sip_trim());
            } else {
                lines.push(Cow::Borrowed(line));
            }
        }
        let mut it = lines.into_iter();
        let first = it.next()?;
        let start = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_byte(b' ').unwrap_or((rest, ""));
            let status: u16 = code.parse().ok()?;
            if !(100..700).contains(&status) {
                return None;
            }
            Start::Response {
                status,
                reason: reason.to_string(),
            }
        } else {
            let mut p = first.split_each(b' ');
            let (Some(method), Some(uri), Some(version), None) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                return None;
            };
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return None;
            }
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            Start::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            }
        };
        let mut headers = Vec::with_capacity(16);
        for line in it {
            let (name, value) = line.split_byte(b':')?;
            headers.push((canonical(name.sip_trim()), value.sip_trim().to_string()));
        }
        let mut msg = Msg {
            start,
            headers,
            body: Bytes::new(),
        };
        let len = match msg.header("Content-Length") {
            Some(v) => v.sip_trim().parse::<usize>().ok()?,
            None => rest.len(),
        };
        if len > rest.len() {
            return None;
        }
        msg.body = Bytes::copy_from_slice(&rest[..len]);
        Some(msg)
    }

    /// Writes the message, with Content-Length set to the body's length, into one buffer of
    /// the exact size (so that `Bytes` takes it over without an allocation of its own).
    pub fn encode(&self) -> Bytes {
        let status = match &self.start {
            Start::Request { method, uri } => method.len() + uri.len() + 11,
            Start::Response { status, reason } => {
                decimal_len(usize::from(*status)) + reason.len() + 11
            }
        };
        let headers: usize = self
            .headers
            .iter()
            .filter(|(n, _)| n != "Content-Length")
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let body = self.body.len();
        let length = "Content-Length: ".len() + decimal_len(body) + 4;
        let size = status + headers + length + body;
        let mut out = Vec::with_capacity(size);
        match &self.start {
            Start::Request { method, uri } => {
                out.extend_from_slice(method.as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri.as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            Start::Response { status, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                push_decimal(&mut out, usize::from(*status));
                out.push(b' ');
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for (n, v) in &self.headers {
            if n == "Content-Length" {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut out, body);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        debug_assert_eq!(out.len(), size);
        Bytes::from(out)
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The status of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            Start::Response { status, .. } => Some(*status),
            Start::Request { .. } => None,
        }
    }

    /// The Request-URI.
    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            Start::Request { uri, .. } => Some(uri),
            Start::Response { .. } => None,
        }
    }

    /// Sets the Request-URI.
    pub fn set_uri(&mut self, new: String) {
        if let Start::Request { uri, .. } = &mut self.start {
            *uri = new;
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every element of a header, list values split at top-level commas.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v).into_iter().map(str::to_string))
            .collect()
    }

    /// The first element of a header (`header_list(name).first()`), borrowed.
    pub fn first_element<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_raw(name).flat_map(list_elements).next()
    }

    /// Every value of a header as written (one per header line, commas untouched: for
    /// headers such as WWW-Authenticate whose values contain commas).
    pub fn headers_raw<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Removes every header of this name.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces every header of this name with one value (appended where the first was).
    pub fn set(&mut self, name: &'static str, value: String) {
        match self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.headers[i].1 = value;
                let mut k = 0;
                self.headers.retain(|(n, _)| {
                    k += 1;
                    k - 1 == i || !n.eq_ignore_ascii_case(name)
                });
            }
            None => self.headers.push((Cow::Borrowed(name), value)),
        }
    }

    /// Puts a header in front of the others of its name (or at the top of the headers).
    pub fn push_front(&mut self, name: &'static str, value: String) {
        let i = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap_or(0);
        self.headers.insert(i, (Cow::Borrowed(name), value));
    }

    /// Removes and returns the first element of a (possibly comma-joined) header.
    pub fn pop_first(&mut self, name: &str) -> Option<String> {
        let i = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        let (first, second) = {
            let value = &self.headers[i].1;
            let mut parts = list_elements(value);
            let first = parts.next()?.to_string();
            let at = parts
                .next()
                .map(|s| s.as_ptr() as usize - value.as_ptr() as usize);
            (first, at)
        };
        // The elements after it stay as written, cut off in place.
        match second {
            Some(at) => drop(self.headers[i].1.drain(..at)),
            None => drop(self.headers.remove(i)),
        }
        Some(first)
    }

    /// The top Via, read in place.
    pub fn top_via(&self) -> Option<ViaRef<'_>> {
        ViaRef::parse_first(self.header("Via")?)
    }

    /// Replaces the top via-parm with `via` (a via-parm's text).
    pub fn set_top_via(&mut self, via: &str) {
        let Some(i) = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("Via"))
        else {
            return;
        };
        // The first element replaced; no element at all (a blank line) leaves it empty.
        let value = {
            let mut parts = list_elements(&self.headers[i].1);
            match parts.next() {
                None => String::new(),
                Some(_) => {
                    let mut value = via.to_string();
                    for p in parts {
                        value.push_str(", ");
                        value.push_str(p);
                    }
                    value
                }
            }
        };
        self.headers[i].1 = value;
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        crate::message::headers::parse_cseq(self.header("CSeq")?)
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<String> {
        NameAddr::parse(self.header("To")?)?
            .tag()
            .map(str::to_string)
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<String> {
        NameAddr::parse(self.header("From")?)?
            .tag()
            .map(str::to_string)
    }

    /// The Request-URI parsed.
    pub fn request_uri(&self) -> Option<SipUri> {
        SipUri::parse(self.uri()?)
    }
}

/// A response to a request: Via, From, To (with `to_tag` added when it has none), Call-ID and
/// CSeq copied (RFC 3261 §8.2.6.2).
pub fn response_to(req: &Msg, status: u16, reason: &str, to_tag: Option<&str>) -> Msg {
    let mut headers = Vec::with_capacity(8);
    for (n, v) in &req.headers {
        match n.as_ref() {
            "Via" | "From" | "Call-ID" | "CSeq" => headers.push((n.clone(), v.clone())),
            "To" => {
                let mut v = v.clone();
                if let Some(tag) = to_tag {
                    if NameAddr::parse(&v).is_some_and(|a| a.tag().is_none()) {
                        v.push_str(";tag=");
                        v.push_str(tag);
                    }
                }
                headers.push((n.clone(), v));
            }
            "Record-Route" if (200..300).contains(&status) => headers.push((n.clone(), v.clone())),
            _ => {}
        }
    }
    Msg {
        start: Start::Response {
            status,
            reason: reason.to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::{addr_uri, via_target};

    const INVITE: &str = "INVITE sip:1002@switchboard.local SIP/2.0\r\n\
        v: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n\
        f: <sip:1001@switchboard.local>;tag=a\r\nt: <sip:1002@switchboard.local>\r\n\
        i: c1\r\nCSeq: 1 INVITE\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:10.9.9.9;lr>\r\n\
        Subject: folded\r\n  line\r\nc: application/sdp\r\nl: 4\r\n\r\nv=0\r\nextra";

    #[test]
    fn parses_compact_folded_and_cuts_the_body() {
        let m = Msg::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.header("Subject"), Some("folded line"));
        assert_eq!(m.header("content-type"), Some("application/sdp"));
        assert_eq!(&m.body[..], b"v=0\r");
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.from_tag().as_deref(), Some("a"));
    }

    #[test]
    fn pops_and_pushes_list_elements() {
        let mut m = Msg::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(
            addr_uri(&m.pop_first("Route").unwrap()),
            "sip:127.0.0.1:5060;lr"
        );
        assert_eq!(m.header_list("Route"), vec!["<sip:10.9.9.9;lr>"]);
        m.push_front("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx".into());
        assert_eq!(m.header_list("Via").len(), 3);
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKx"));
        m.pop_first("Via");
        m.pop_first("Via");
        assert_eq!(m.top_via().unwrap().host, "10.0.0.1");
        let again = Msg::parse(&m.encode()).unwrap();
        assert_eq!(again.body, m.body);
        assert_eq!(again.header("Content-Length"), Some("4"));
        // The elements after the first stay as written.
        m.set("Route", "<sip:a;lr>, \"x,y\" <sip:b;lr> ,<sip:c;lr>".into());
        assert_eq!(m.pop_first("Route").as_deref(), Some("<sip:a;lr>"));
        assert_eq!(m.header("Route"), Some("\"x,y\" <sip:b;lr> ,<sip:c;lr>"));
        assert_eq!(m.pop_first("Route").as_deref(), Some("\"x,y\" <sip:b;lr>"));
        assert_eq!(m.pop_first("Route").as_deref(), Some("<sip:c;lr>"));
        assert_eq!(m.header("Route"), None);
    }

    #[test]
    fn first_element_is_the_first_of_the_header_list() {
        let m = Msg::parse(
            b"BYE sip:x SIP/2.0\r\nRoute: ,  \r\nRoute: \"a,b\" <sip:r1;lr>, <sip:r2>\r\n\
              Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
        )
        .unwrap();
        for name in ["Route", "Via", "Contact"] {
            let list = m.header_list(name);
            assert_eq!(m.first_element(name), list.first().map(String::as_str));
        }
        assert_eq!(m.first_element("Route"), Some("\"a,b\" <sip:r1;lr>"));
    }

    #[test]
    fn response_copies_and_tags() {
        let m = Msg::parse(INVITE.as_bytes()).unwrap();
        let r = response_to(&m, 486, "Busy Here", Some("x"));
        let text = String::from_utf8(r.encode().to_vec()).unwrap();
        assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
        assert!(text.contains("To: <sip:1002@switchboard.local>;tag=x"));
        assert!(!text.contains("Route"));
        let via = m.top_via().unwrap();
        assert_eq!(via_target(&via), Some("127.0.0.1:5071".parse().unwrap()));
    }

    #[test]
    fn lines_split_at_crlf_only() {
        let lines: Vec<&str> = crlf_lines("a\nb\r\n\rc\r\n").collect();
        assert_eq!(lines, ["a\nb", "\rc", ""]);
        let m = Msg::parse(b"SIP/2.0 200 OK\r\nXy: a\nb\r\nVIA: v\r\n\r\n").unwrap();
        assert_eq!(m.headers[0], ("Xy".into(), "a\nb".to_string()));
        assert_eq!(m.headers[1].0, "Via");
    }

    #[test]
    fn known_names_are_not_copied_and_others_keep_their_case() {
        let m = Msg::parse(b"SIP/2.0 200 OK\r\nv: a\r\nSubject: s\r\nsubject: t\r\nX-A: b\r\n\r\n")
            .unwrap();
        let names: Vec<(&str, bool)> = m
            .headers
            .iter()
            .map(|(n, _)| (n.as_ref(), matches!(n, Cow::Borrowed(_))))
            .collect();
        assert_eq!(
            names,
            [
                ("Via", true),
                ("Subject", true),
                ("subject", false),
                ("X-A", false)
            ]
        );
    }

    #[test]
    fn garbage_is_refused() {
        for g in [
            &b"hello"[..],
            b"SIP/2.0 999 x\r\n\r\n",
            b"INVITE x\r\n\r\n",
            b"",
        ] {
            assert!(Msg::parse(g).is_none());
        }
    }
}
