//! Bytes → [`Request`], with the checks RFC 3261 §18.3 asks of a message-oriented transport
//! (Content-Length) and a lenient fallback that recovers enough of a broken request to answer it
//! with a 400.
//!
//! The head is split into header lines here, in one pass, and a [`Request`] borrows its
//! Request-URI, header names and values and body from the datagram: nothing is copied but a
//! folded or non-UTF-8 value. The values are read later by the small parsers of
//! [`super::headers`], which is all a registrar needs. (rsip's tokenizer did the same job with
//! several allocations per header and was the largest single cost of a REGISTER; a `String`
//! per value was still about a tenth of its instructions.)
//!
//! Nothing here panics on any input: the unit tests feed it a corpus of malformed messages and
//! the fuzz target `parse_message` calls [`parse`] directly.

use super::owned::Name;
use super::scan::{head_end, is_host_byte, is_token, Scan};
use super::MAX_MESSAGE_SIZE;
use std::borrow::Cow;
use std::fmt;

/// A request method this build knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3261 §10.
    Register,
    /// RFC 3261 §11.
    Options,
    /// RFC 3261 §13.
    Invite,
    /// RFC 3261 §17.1.1.3.
    Ack,
    /// RFC 3261 §15.
    Bye,
    /// RFC 3261 §9.
    Cancel,
    /// RFC 6086.
    Info,
    /// RFC 3428.
    Message,
    /// RFC 6665.
    Notify,
    /// RFC 3262.
    Prack,
    /// RFC 3903.
    Publish,
    /// RFC 3515.
    Refer,
    /// RFC 6665.
    Subscribe,
    /// RFC 3311.
    Update,
}

impl Method {
    /// The method token, as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Info => "INFO",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
        }
    }

    /// Parses a method token; methods are case-sensitive (RFC 3261 §7.1).
    pub fn from_token(token: &str) -> Option<Method> {
        Some(match token {
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "INFO" => Method::Info,
            "MESSAGE" => Method::Message,
            "NOTIFY" => Method::Notify,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            "REFER" => Method::Refer,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            _ => return None,
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The headers the registrar reads, by canonical name; compact forms (RFC 3261 §7.3.3) map to
/// the same variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderName<'a> {
    /// `Via` / `v`.
    Via,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Call-ID` / `i`.
    CallId,
    /// `CSeq`.
    CSeq,
    /// `Contact` / `m`.
    Contact,
    /// `Expires`.
    Expires,
    /// `Authorization`.
    Authorization,
    /// `User-Agent`.
    UserAgent,
    /// `Content-Length` / `l`.
    ContentLength,
    /// Any other header, with its name as received (looked up case-sensitively).
    Other(&'a str),
}

impl<'a> HeaderName<'a> {
    /// Maps a header name (any case, compact or long) to a variant.
    pub fn from_name(name: &'a str) -> HeaderName<'a> {
        let n = name.sip_trim();
        let eq = |s: &str| n.eq_ignore_ascii_case(s);
        // By length first: one comparison at most for the usual names.
        let known = match n.len() {
            1 => match n.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Some(HeaderName::Via),
                b'f' => Some(HeaderName::From),
                b't' => Some(HeaderName::To),
                b'i' => Some(HeaderName::CallId),
                b'm' => Some(HeaderName::Contact),
                b'l' => Some(HeaderName::ContentLength),
                _ => None,
            },
            2 if eq("To") => Some(HeaderName::To),
            3 if eq("Via") => Some(HeaderName::Via),
            4 if eq("From") => Some(HeaderName::From),
            4 if eq("CSeq") => Some(HeaderName::CSeq),
            7 if eq("Call-ID") => Some(HeaderName::CallId),
            7 if eq("Contact") => Some(HeaderName::Contact),
            7 if eq("Expires") => Some(HeaderName::Expires),
            10 if eq("User-Agent") => Some(HeaderName::UserAgent),
            13 if eq("Authorization") => Some(HeaderName::Authorization),
            14 if eq("Content-Length") => Some(HeaderName::ContentLength),
            _ => None,
        };
        known.unwrap_or(HeaderName::Other(n))
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &'a str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::Expires => "Expires",
            HeaderName::Authorization => "Authorization",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::Other(n) => n,
        }
    }
}

/// One header line (a header with a comma-separated list stays one entry), borrowed from the
/// message unless it had to be rewritten (folded lines, bytes that are not UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Its name.
    pub name: HeaderName<'a>,
    /// Its value, trimmed.
    pub value: Cow<'a, str>,
}

impl Header<'_> {
    /// A copy that owns its value, for a header a response copies (RFC 3261 §8.2.6.2): those
    /// have known names. `None` for any other header.
    pub fn to_owned_copied(&self) -> Option<Header<'static>> {
        let name = match self.name {
            HeaderName::Via => HeaderName::Via,
            HeaderName::From => HeaderName::From,
            HeaderName::To => HeaderName::To,
            HeaderName::CallId => HeaderName::CallId,
            HeaderName::CSeq => HeaderName::CSeq,
            _ => return None,
        };
        Some(Header {
            name,
            value: Cow::Owned(self.value.clone().into_owned()),
        })
    }
}

/// A parsed request, borrowed from the bytes it was read from: method, Request-URI text,
/// headers in order, body cut to Content-Length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The Request-URI as written.
    pub uri: &'a str,
    /// Headers in the order received.
    pub headers: Vec<Header<'a>>,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The first value of a header.
    pub fn header(&self, name: &HeaderName<'_>) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == *name)
            .map(|h| h.value.as_ref())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'s>(
        &'s self,
        name: &'s HeaderName<'_>,
    ) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| h.value.as_ref())
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header(&HeaderName::CallId)
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        super::headers::parse_cseq(self.header(&HeaderName::CSeq)?)
    }
}

/// What came in.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A request.
    Request(Request<'a>),
    /// A response (a registrar that sends no requests has no use for one; it is dropped).
    Response,
    /// Only CRLFs: a keepalive (RFC 5626 §3.5.1).
    KeepAlive,
}

/// Why a message could not be used, and whether it can still be answered.
#[derive(Debug)]
pub struct ParseError {
    /// Human-readable reason, for logs and the 400's reason phrase.
    pub reason: String,
    /// Status to answer with when the message is answerable: 400, 501, 505 or 513.
    pub status: u16,
    /// The headers a response copies, recovered, when answerable (Via and CSeq at least).
    pub salvage: Option<Vec<Header<'static>>>,
}

impl ParseError {
    fn new(status: u16, reason: impl Into<String>, salvage: Option<Vec<Header<'static>>>) -> Self {
        ParseError {
            reason: reason.into(),
            status,
            salvage,
        }
    }
}

impl ParseError {
    /// An error to answer with `status`, the headers a response copies taken from `fields`
    /// (name and value, as the proxy's parser keeps them), if a response can be built.
    pub fn answer(status: u16, reason: &str, fields: &[(Name, String)]) -> ParseError {
        let headers: Vec<Header<'_>> = fields
            .iter()
            .map(|(n, v)| Header {
                name: HeaderName::from_name(n),
                value: Cow::Borrowed(v.as_str()),
            })
            .collect();
        ParseError::new(status, reason, answerable(&headers))
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

/// The first CRLF.
fn find_crlf(hay: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\r', hay).find(|&i| hay.get(i + 1) == Some(&b'\n'))
}

/// Parses one message (a whole datagram, or one frame cut from a stream).
pub fn parse(data: &[u8]) -> Result<Parsed<'_>, ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored; a message of only CRLFs is a
    // keepalive.
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let data = &data[start..];
    if data.is_empty() {
        return Ok(Parsed::KeepAlive);
    }
    if data.starts_with(b"SIP/2.0 ") {
        return Ok(Parsed::Response);
    }
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(
            513,
            "Message Too Large",
            salvage(&data[..MAX_MESSAGE_SIZE]),
        ));
    }
    let Some(head_end) = head_end(data) else {
        return Err(ParseError::new(400, "Truncated Message", salvage(data)));
    };
    let head = &data[..head_end];
    let body = &data[head_end + 4..];

    let (method, uri, line_end) = request_line(head, data)?;
    let headers = match split_headers(&head[line_end..]) {
        Ok(h) => h,
        Err(reason) => return Err(ParseError::new(400, reason, salvage(data))),
    };
    if let Err(fault) = super::check::parsed(&headers) {
        return Err(ParseError::new(
            fault.status,
            fault.reason,
            answerable(&headers),
        ));
    }
    let mut request = Request {
        method,
        uri,
        headers,
        body: &[],
    };
    request.body = body_of(&request, body)?;
    Ok(Parsed::Request(request))
}

/// The request line: exactly `Method SP Request-URI SP SIP-Version` (RFC 4475 §3.1.2.9,
/// §3.1.2.10), read apart from the headers so an unknown method or version can be told from
/// garbage. Its method, its Request-URI and where the line ends in `head`; errors salvage what
/// they can of `data`.
fn request_line<'a>(head: &'a [u8], data: &[u8]) -> Result<(Method, &'a str, usize), ParseError> {
    let line_end = find_crlf(head).unwrap_or(head.len());
    let bad_line = || ParseError::new(400, "Bad Request Line", salvage(data));
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Err(bad_line());
    };
    let mut parts = line.split_each(b' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_line());
    };
    if uri.is_empty() || !is_token(method) {
        return Err(bad_line());
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(if is_sip_version(version) {
            ParseError::new(505, "Version Not Supported", salvage(data))
        } else {
            bad_line()
        });
    }
    let Some(method) = Method::from_token(method) else {
        return Err(ParseError::new(501, "Not Implemented", salvage(data)));
    };
    if let Err(fault) = super::check::request_uri(uri) {
        return Err(ParseError::new(fault.status, fault.reason, salvage(data)));
    }
    Ok((method, uri, line_end))
}

/// The body: Content-Length bytes of what follows the head (RFC 3261 §18.3); extra bytes are
/// dropped, missing bytes make the request an error.
fn body_of<'a>(request: &Request<'_>, body: &'a [u8]) -> Result<&'a [u8], ParseError> {
    let Some(length) = request.header(&HeaderName::ContentLength) else {
        return Ok(body);
    };
    let refuse = |reason| ParseError::new(400, reason, answerable(&request.headers));
    match length.sip_trim().parse::<usize>() {
        Ok(n) if n <= body.len() => Ok(&body[..n]),
        Ok(_) => Err(refuse("Content-Length Exceeds Body")),
        Err(_) => Err(refuse("Bad Content-Length")),
    }
}

/// `SIP/` 1*DIGIT `.` 1*DIGIT, any version (RFC 3261 §7.1).
fn is_sip_version(v: &str) -> bool {
    let Some(num) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &v[4..])
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    num.split_byte(b'.')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

/// `host[:port]` or `[v6][:port]`, without allocating (the rules of
/// [`super::headers::split_host_port`]).
pub(crate) fn valid_hostport(s: &str) -> bool {
    let port_ok = |p: &str| p.parse::<u16>().is_ok();
    if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find_byte(b']') else {
            return false;
        };
        if rest[..end].parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        let after = &rest[end + 1..];
        return after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
    }
    let host = match s.rsplit_byte(b':') {
        Some((h, p)) if port_ok(p) => h,
        Some(_) => return false,
        None => s,
    };
    !host.is_empty() && host.bytes().all(is_host_byte)
}

/// Most headers a request may carry; more is refused (the datagram limit bounds it anyway).
const MAX_HEADERS: usize = 256;

/// Splits the header lines (starting with the CRLF that ends the request line) into headers:
/// `name: value`, value trimmed, continuation lines (RFC 3261 §7.3.1) folded into one space,
/// bytes that are not UTF-8 replaced. Names and values borrow from `lines` but for a folded
/// value or one that was not UTF-8. The error is a reason phrase.
pub(crate) fn split_headers(lines: &[u8]) -> Result<Vec<Header<'_>>, &'static str> {
    let head = Head {
        bytes: lines,
        text: std::str::from_utf8(lines).ok(),
    };
    let mut headers: Vec<Header<'_>> = Vec::with_capacity(16);
    let mut at = 0;
    while at < lines.len() {
        // Lines end in CRLF; the head was cut before the final CRLF CRLF.
        let end = find_crlf(&lines[at..]).map_or(lines.len(), |i| at + i);
        let (start, line) = (at, &lines[at..end]);
        at = end + 2;
        match line.first() {
            None => continue, // the CRLF that ends the request line
            Some(b' ' | b'\t') => {
                let last = headers.last_mut().ok_or("Bad Header Line")?;
                fold(&mut last.value, &head.text(start..end));
                continue;
            }
            Some(_) => {}
        }
        let colon = start + memchr::memchr(b':', line).ok_or("Bad Header Line")?;
        let name_end = lines[start..colon]
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(start, |i| start + i + 1);
        let name = head
            .name(start..name_end)
            .filter(|n| is_token(n))
            .ok_or("Bad Header Name")?;
        if headers.len() == MAX_HEADERS {
            return Err("Too Many Headers");
        }
        headers.push(Header {
            name: HeaderName::from_name(name),
            value: trimmed(head.text(colon + 1..end)),
        });
    }
    Ok(headers)
}

/// The header lines, and their text when they are all UTF-8 (the rule: values then borrow
/// from it without a second check; otherwise each value is read lossily).
struct Head<'a> {
    bytes: &'a [u8],
    text: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// The text of a range that starts and ends at ASCII bytes.
    fn text(&self, range: std::ops::Range<usize>) -> Cow<'a, str> {
        match self.text {
            Some(t) => Cow::Borrowed(&t[range]),
            None => String::from_utf8_lossy(&self.bytes[range]),
        }
    }

    /// A header name: UTF-8 (a token is ASCII) or nothing.
    fn name(&self, range: std::ops::Range<usize>) -> Option<&'a str> {
        match self.text {
            Some(t) => Some(&t[range]),
            None => std::str::from_utf8(&self.bytes[range]).ok(),
        }
    }
}

/// A value trimmed (RFC 3261 §7.3.1: the whitespace around it is not part of it).
fn trimmed(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(v) => Cow::Borrowed(v.sip_trim()),
        Cow::Owned(v) => Cow::Owned(v.sip_trim().to_string()),
    }
}

/// Appends a continuation line to a value, one space between.
fn fold(value: &mut Cow<'_, str>, line: &str) {
    let more = line.sip_trim();
    if more.is_empty() {
        return;
    }
    let v = value.to_mut();
    if !v.is_empty() {
        v.push(' ');
    }
    v.push_str(more);
}

/// Recovers header lines from a message that could not be parsed (continuation lines folded,
/// lines that are not `name: value` skipped), if a response can be routed and matched with
/// them: a readable top Via and CSeq. From, To and Call-ID are copied when present (RFC 4475
/// §3.3.1's request lacks all three and is still answered).
pub(crate) fn salvage(data: &[u8]) -> Option<Vec<Header<'static>>> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    lines.next()?; // the start line
    let mut headers: Vec<Header<'static>> = Vec::new();
    let mut last_kept = false;
    for line in lines.take(MAX_HEADERS) {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut().filter(|_| last_kept) {
                fold(&mut last.value, line);
            }
            continue;
        }
        let Some((name, value)) = line.split_byte(b':') else {
            last_kept = false;
            continue;
        };
        let header = Header {
            name: HeaderName::from_name(name),
            value: Cow::Borrowed(value.sip_trim()),
        }
        .to_owned_copied();
        last_kept = header.is_some();
        headers.extend(header);
    }
    answerable(&headers)
}

/// The headers a response copies, owned, if a response can be built from them: the top Via
/// reads and there is a CSeq to copy (its number may be out of range: RFC 4475 §3.1.2.4 is
/// answered for that error).
fn answerable(headers: &[Header<'_>]) -> Option<Vec<Header<'static>>> {
    let cseq_ok = headers
        .iter()
        .any(|h| h.name == HeaderName::CSeq && !h.value.is_empty());
    let via_ok = headers
        .iter()
        .find(|h| h.name == HeaderName::Via)
        .and_then(|h| super::headers::ViaRef::parse_first(&h.value))
        .is_some();
    (cseq_ok && via_ok).then(|| headers.iter().filter_map(Header::to_owned_copied).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:switchboard.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
        Max-Forwards: 70\r\n\
        To: <sip:1001@switchboard.local>\r\n\
        From: <sip:1001@switchboard.local>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
        CSeq: 314159 REGISTER\r\n\
        Contact: <sip:1001@10.0.0.1:5060>\r\n\
        Expires: 600\r\n\
        Content-Length: 0\r\n\r\n";

    fn req(s: &str) -> Request<'_> {
        match parse(s.as_bytes()).unwrap() {
            Parsed::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn parses_a_register() {
        let r = req(REGISTER);
        assert_eq!(r.method, Method::Register);
        assert_eq!(r.uri, "sip:switchboard.local");
        assert_eq!(r.call_id(), Some("a84b4c76e66710@pc33.atlanta.com"));
        assert_eq!(r.cseq(), Some((314159, "REGISTER")));
        assert_eq!(r.header(&HeaderName::Expires), Some("600"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn compact_forms_map_to_long_names() {
        let r = req(
            "REGISTER sip:a.test SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            f: <sip:a@a.test>;tag=1\r\nt: <sip:a@a.test>\r\ni: abc\r\nCSeq: 1 REGISTER\r\n\
            m: <sip:a@1.2.3.4>\r\nl: 0\r\n\r\n",
        );
        assert!(r.header(&HeaderName::Via).is_some());
        assert_eq!(r.call_id(), Some("abc"));
        assert_eq!(r.header(&HeaderName::Contact), Some("<sip:a@1.2.3.4>"));
    }

    #[test]
    fn folded_headers_are_unfolded() {
        let r = req("OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: abc\r\nCSeq: 1\r\n  OPTIONS\r\n\r\n");
        assert_eq!(r.cseq(), Some((1, "OPTIONS")));
    }

    #[test]
    fn header_lines_are_checked() {
        let with = |extra: &str| REGISTER.replace("Max-Forwards: 70\r\n", extra);
        // Space before the colon, odd case, empty value: fine.
        let m = with("max-forwards : 70\r\nX-Empty:\r\nUSER-AGENT:phone\r\n");
        let r = req(&m);
        assert_eq!(r.header(&HeaderName::Other("max-forwards")), Some("70"));
        assert_eq!(r.header(&HeaderName::Other("X-Empty")), Some(""));
        assert_eq!(r.header(&HeaderName::UserAgent), Some("phone"));
        // No colon, or a name that is not a token: 400, answerable.
        for bad in ["Max-Forwards 70\r\n", "Max Forwards: 70\r\n", ": 70\r\n"] {
            let e = parse(with(bad).as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
            assert!(e.salvage.is_some(), "{bad:?}");
        }
        // Bytes that are not UTF-8 are replaced, not refused.
        let m = with("X-Bin: a?b\r\n")
            .replace("a?b", "a\u{1}b")
            .into_bytes();
        let m: Vec<u8> = m
            .into_iter()
            .map(|b| if b == 1 { 0xff } else { b })
            .collect();
        let Parsed::Request(r) = parse(&m).unwrap() else {
            panic!()
        };
        assert_eq!(r.header(&HeaderName::Other("X-Bin")), Some("a\u{fffd}b"));
    }

    #[test]
    fn request_uris_are_checked() {
        for ok in [
            "sip:a.test",
            "sips:1001@[::1]:5061;transport=tls",
            "tel:+123",
            // RFC 4475 §3.1.2.2 intmeth, §3.1.1.9 semiuri: `;`, `?`, `,` in the user part.
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
            "sip:user;par=u%40example.net@example.com",
        ] {
            assert_eq!(super::super::check::request_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "<sip:x>",
            "sip:",
            "sip:[::1",
            "sip:x:99999999",
            "sip:a b",
            "1sip:x",
            "nocolon",
            "sip:a@b.test?x=y",
        ] {
            assert!(super::super::check::request_uri(bad).is_err(), "{bad}");
        }
        let e = parse(
            REGISTER
                .replace("sip:switchboard.local SIP", "sip:[::1 SIP")
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!((e.status, e.salvage.is_some()), (400, true));
    }

    #[test]
    fn start_line_errors_are_answerable() {
        let status = |m: String| {
            let e = parse(m.as_bytes()).unwrap_err();
            assert!(e.salvage.is_some(), "{m}");
            (e.status, e.reason)
        };
        let line = |l: &str| REGISTER.replace("REGISTER sip:switchboard.local SIP/2.0", l);
        // RFC 4475 §3.1.2.16 badvers, §3.1.2.9 lwsstart, §3.1.2.10 trws, §3.1.2.8 lwsruri,
        // §3.1.2.11 escruri.
        assert_eq!(
            status(line("REGISTER sip:switchboard.local SIP/7.0")),
            (505, "Version Not Supported".into())
        );
        for bad in [
            "REGISTER  sip:switchboard.local  SIP/2.0",
            "REGISTER sip:switchboard.local SIP/2.0  ",
            "REGISTER sip:switchboard.local; lr SIP/2.0",
            "REGISTER sip:switchboard.local HTTP/1.1",
        ] {
            assert_eq!(status(line(bad)).0, 400, "{bad}");
        }
        assert_eq!(
            status(line("REGISTER sip:a.test?Route=%3Csip:b.test%3E SIP/2.0")),
            (400, "Headers Not Allowed In Request-URI".into())
        );
        // The version is case-insensitive.
        assert!(parse(line("REGISTER sip:switchboard.local sip/2.0").as_bytes()).is_ok());
    }

    #[test]
    fn header_errors_are_400_with_the_headers() {
        let e = parse(
            REGISTER
                .replace(
                    "Expires: 600",
                    "Expires: 600\r\nt: <sip:other@switchboard.local>",
                )
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!((e.status, e.reason.as_str()), (400, "Duplicate To"));
        assert!(e.salvage.is_some());
        // RFC 4475 §3.3.1 insuf: no From, To or Call-ID, still answerable by Via and CSeq.
        let insuf = REGISTER
            .split("\r\n")
            .filter(|l| {
                !l.starts_with("To:") && !l.starts_with("From:") && !l.starts_with("Call-ID:")
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        let e = parse(insuf.as_bytes()).unwrap_err();
        assert_eq!((e.status, e.reason.as_str()), (400, "Missing From"));
        assert!(e.salvage.is_some());
    }

    #[test]
    fn whitespace_in_via_is_read() {
        // RFC 4475 §3.1.1.1 wsinv: SWS around the slashes, the Via folded.
        let m = REGISTER.replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport",
            "Via  : SIP  /   2.0\r\n /UDP\r\n    10.0.0.1 : 5060;branch=z9hG4bK776asdhds",
        );
        let r = req(&m);
        let via = super::super::headers::ViaRef::parse_first(r.header(&HeaderName::Via).unwrap())
            .unwrap();
        assert_eq!((via.transport, via.host.as_ref()), ("UDP", "10.0.0.1"));
        assert_eq!(
            (via.port, via.branch()),
            (Some(5060), Some("z9hG4bK776asdhds"))
        );
    }

    #[test]
    fn body_is_cut_to_content_length() {
        let r = req(
            "OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 3\r\n\r\nabcdef",
        );
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn short_body_is_answerable_400() {
        let e = parse(
            b"OPTIONS sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 30\r\n\r\nabc",
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.salvage.is_some());
    }

    #[test]
    fn unknown_method_is_501_with_headers() {
        let e = parse(
            b"FOO sip:a.test SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n\
            From: <sip:a@a.test>;tag=1\r\nTo: <sip:a@a.test>\r\nCall-ID: abc\r\nCSeq: 1 FOO\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e.status, 501);
        assert!(e.salvage.is_some());
    }

    #[test]
    fn keepalives_and_responses() {
        assert!(matches!(parse(b"\r\n\r\n"), Ok(Parsed::KeepAlive)));
        assert!(matches!(parse(b""), Ok(Parsed::KeepAlive)));
        assert!(matches!(
            parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n\r\n"),
            Ok(Parsed::Response)
        ));
    }

    /// A corpus of broken messages: every one must return (Ok or Err), never panic, and the
    /// answerable ones must carry the headers a 400 needs.
    #[test]
    fn malformed_corpus_never_panics() {
        let mut corpus: Vec<Vec<u8>> = vec![
            b"REGISTER".to_vec(),
            b"REGISTER sip:x SIP/2.0".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER  SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/3.0\r\n\r\n".to_vec(),
            b"register sip:x SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nVia\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\n: empty name\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nCSeq: \r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nCSeq: x REGISTER\r\n\r\n".to_vec(),
            b"REGISTER sip:x SIP/2.0\r\nVia: \xff\xfe\r\n\r\n".to_vec(),
            b"\xff\xfe\xfd\r\n\r\n".to_vec(),
            b"\r\n\r\n\r\nREGISTER sip:x SIP/2.0\r\n\r\n".to_vec(),
            b"SIP/2.0".to_vec(),
            b"SIP/2.0 abc\r\n\r\n".to_vec(),
            b"INVITE sip:\xc3\x28 SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER sip:[::1 SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER sip:x:99999999 SIP/2.0\r\n\r\n".to_vec(),
            b"REGISTER <sip:x> SIP/2.0\r\n\r\n".to_vec(),
            b"\0\0\0\0".to_vec(),
            vec![0xff; 70_000],
            REGISTER
                .replace("CSeq: 314159 REGISTER\r\n", "")
                .into_bytes(),
            REGISTER.replace("Call-ID", "X-Call-ID").into_bytes(),
            REGISTER
                .replace("Content-Length: 0", "Content-Length: abc")
                .into_bytes(),
            REGISTER
                .replace("Content-Length: 0", "Content-Length: 10")
                .into_bytes(),
            REGISTER
                .replace("Via: SIP/2.0/UDP 10.0.0.1:5060", "Via: garbage")
                .into_bytes(),
            REGISTER
                .replace("Contact: <sip:1001@10.0.0.1:5060>", "Contact: <<<>>>;;;=\"")
                .into_bytes(),
            REGISTER
                .replace(
                    "To: <sip:1001@switchboard.local>",
                    "To: \"unterminated <sip:",
                )
                .into_bytes(),
            REGISTER
                .replace("Expires: 600", "Expires: 99999999999999999999")
                .into_bytes(),
        ];
        // Every prefix of a good message (truncation at any byte).
        for i in 0..REGISTER.len() {
            corpus.push(REGISTER.as_bytes()[..i].to_vec());
        }
        // A huge header, and very many headers.
        corpus.push(
            REGISTER
                .replace("Expires: 600", &format!("X-Big: {}", "a".repeat(60_000)))
                .into_bytes(),
        );
        corpus.push(
            REGISTER
                .replace("Expires: 600", &"X-A: b\r\n".repeat(5000))
                .into_bytes(),
        );
        // Pseudo-random byte flips of a good message.
        let mut seed: u32 = 12345;
        for _ in 0..2000 {
            let mut m = REGISTER.as_bytes().to_vec();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let pos = (seed as usize >> 8) % m.len();
                m[pos] = (seed >> 3) as u8;
            }
            corpus.push(m);
        }
        for m in &corpus {
            match parse(m) {
                Ok(_) => {}
                Err(e) => {
                    assert!(matches!(e.status, 400 | 501 | 505 | 513));
                    if let Some(h) = &e.salvage {
                        assert!(h.iter().any(|h| h.name == HeaderName::Via));
                        assert!(h.iter().any(|h| h.name == HeaderName::CSeq));
                    }
                }
            }
            // The header readers must not panic on whatever was accepted either.
            if let Ok(Parsed::Request(r)) = parse(m) {
                let _ = r.cseq();
                for h in &r.headers {
                    let _ = super::super::headers::ViaRef::parse_first(&h.value);
                    let _ = super::super::headers::parse_contacts(&h.value);
                    let _ = super::super::headers::NameAddr::parse(&h.value);
                    let _ = super::super::headers::parse_expires(&h.value);
                }
            }
        }
    }

    #[test]
    fn missing_cseq_is_not_answerable() {
        let m = REGISTER
            .replace("CSeq: 314159 REGISTER\r\n", "")
            .replace("Content-Length: 0", "Content-Length: 99");
        let e = parse(m.as_bytes()).unwrap_err();
        assert!(e.salvage.is_none(), "no CSeq, nothing to answer with");
        let m = REGISTER.replace("Content-Length: 0", "Content-Length: 99");
        assert!(parse(m.as_bytes()).unwrap_err().salvage.is_some());
    }
}
