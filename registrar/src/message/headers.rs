//! Parsers for header values: Via, name-addr (From/To/Contact), Contact lists, CSeq, Expires
//! and q-values. Each takes the untyped text and returns `None` when it cannot be read.

use super::scan::{is_host_byte, token_len, Scan};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use switchboard_crds::common::Transport;

/// Splits a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    list_elements(value).collect()
}

/// The elements of a comma-separated header value, trimmed, empty ones skipped: what
/// [`split_list`] collects, for a reader that wants the first or goes through them once.
pub fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    list_items(value)
        .map(<str>::sip_trim)
        .filter(|s| !s.is_empty())
}

/// The elements of a comma-separated header value, untrimmed and empty ones included: commas
/// inside quotes (with `\` escapes) and angle brackets do not separate.
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    let (mut depth, mut quoted) = (0u32, false);
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        match next_comma(value.as_bytes(), from, &mut depth, &mut quoted) {
            Some(comma) => {
                start = Some(comma + 1);
                Some(&value[from..comma])
            }
            None => {
                start = None;
                Some(&value[from..])
            }
        }
    })
}

/// The next separating comma at or after `i`, jumping with `memchr` from one delimiter to the
/// next (`"`, `\` inside quotes; `<`, `>`, `"` inside brackets; `,`, `<`, `"` outside): a
/// relayed request's Via and Record-Route lists are long, and a state machine stepping every
/// byte was the proxy's largest single cost. Delimiters are ASCII, which no byte of a
/// multi-byte character is.
fn next_comma(b: &[u8], mut i: usize, depth: &mut u32, quoted: &mut bool) -> Option<usize> {
    while i < b.len() {
        let rest = &b[i..];
        if *quoted {
            let j = i + memchr::memchr2(b'"', b'\\', rest)?;
            // An escape skips the next byte, whatever it is.
            i = if b[j] == b'\\' { j + 2 } else { j + 1 };
            *quoted = b[j] == b'\\';
        } else if *depth > 0 {
            let j = i + memchr::memchr3(b'<', b'>', b'"', rest)?;
            match b[j] {
                b'<' => *depth += 1,
                b'>' => *depth -= 1,
                _ => *quoted = true,
            }
            i = j + 1;
        } else {
            let j = i + memchr::memchr3(b',', b'<', b'"', rest)?;
            match b[j] {
                b',' => return Some(j),
                b'<' => *depth += 1,
                _ => *quoted = true,
            }
            i = j + 1;
        }
    }
    None
}

/// `name[=value]` parameters after `;`, in order; names lower-cased.
pub fn parse_params(s: &str) -> Vec<(String, Option<String>)> {
    params_ref(s)
        .map(|(n, v)| (n.to_ascii_lowercase(), v.map(str::to_string)))
        .collect()
}

/// The `name[=value]` parameters of `s` (the text after a `;`), borrowed, in order: name and
/// value trimmed, the value's quotes removed, empty parameters skipped.
fn params_ref(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    param_spans(s).map(|(_, name, value)| (name, value))
}

/// [`params_ref`] with where each parameter stands in `s` (its text between the `;`s).
fn param_spans(s: &str) -> impl Iterator<Item = (Range<usize>, &str, Option<&str>)> {
    let mut start = 0;
    s.split_each(b';')
        .map(move |p| {
            let at = start..start + p.len();
            start = at.end + 1;
            match p.sip_trim().split_byte(b'=') {
                Some((n, v)) => (at, n.sip_trim(), Some(v.sip_trim().trim_matches('"'))),
                None => (at, p.sip_trim(), None),
            }
        })
        .filter(|(_, name, value)| !name.is_empty() || value.is_some())
}

/// The first parameter of `params` named `name` (any case): `Some(None)` for a flag.
fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    params_ref(params).find_map(|(n, v)| n.eq_ignore_ascii_case(name).then_some(v))
}

fn param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_deref())
}

/// The long form of a header name given in compact form (RFC 3261 §7.3.3 and the letters
/// later extensions registered); any other name as given.
pub fn long_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

/// A `name-addr` or `addr-spec` with its header parameters (RFC 3261 §20.10, §25.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted, if any.
    pub display: Option<String>,
    /// The URI inside `<>`, or the bare addr-spec.
    pub uri: String,
    /// Header parameters (after `>`, or after the addr-spec's first `;`).
    pub params: Vec<(String, Option<String>)>,
}

/// A [`NameAddr`] read in place: the parts borrow from the header value, parameters stay text
/// and are looked up on demand. Same rules as [`NameAddr::parse`], no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    /// Display name as written (quotes removed), if any.
    pub display: Option<&'a str>,
    /// The URI inside `<>`, or the bare addr-spec.
    pub uri: &'a str,
    /// The header parameters' text (after `>`, or after the addr-spec's first `;`).
    pub params: &'a str,
}

impl<'a> NameAddrRef<'a> {
    /// Reads one name-addr / addr-spec.
    pub fn parse(s: &'a str) -> Option<NameAddrRef<'a>> {
        let s = s.sip_trim();
        if s.is_empty() {
            return None;
        }
        let mut display = None;
        let mut rest = s;
        if let Some(after) = rest.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end?;
            display = Some(&after[..end]);
            rest = after[end + 1..].sip_trim_start();
            if !rest.starts_with('<') {
                return None;
            }
        }
        if let Some(lt) = rest.find_byte(b'<') {
            let before = rest[..lt].sip_trim();
            if display.is_none() && !before.is_empty() {
                display = Some(before);
            }
            let gt = rest[lt..].find_byte(b'>')? + lt;
            let uri = rest[lt + 1..gt].sip_trim();
            if uri.is_empty() || uri.has_byte(b'<') {
                return None;
            }
            Some(NameAddrRef {
                display,
                uri,
                params: &rest[gt + 1..],
            })
        } else {
            if rest.has_byte(b'>') || rest.has_byte(b' ') {
                return None;
            }
            let (uri, params) = rest.split_byte(b';').unwrap_or((rest, ""));
            if uri.is_empty() {
                return None;
            }
            Some(NameAddrRef {
                display,
                uri,
                params,
            })
        }
    }

    /// A header parameter (name case-insensitive, the first of that name): `Some(None)` for a
    /// flag, `Some(Some(v))` for a value (trimmed, quotes removed), as [`NameAddr::param`].
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

impl NameAddr {
    /// Parses one name-addr / addr-spec.
    pub fn parse(s: &str) -> Option<NameAddr> {
        let r = NameAddrRef::parse(s)?;
        Some(NameAddr {
            display: r.display.map(str::to_string),
            uri: r.uri.to_string(),
            params: parse_params(r.params),
        })
    }

    /// A header parameter: `Some(None)` for a flag, `Some(Some(v))` for a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }
}

/// The parts of a `sip:`/`sips:` URI the registrar needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: String,
    /// User part, if any.
    pub user: Option<String>,
    /// Host, lower-cased; IPv6 without brackets.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters.
    pub params: Vec<(String, Option<String>)>,
}

impl SipUri {
    /// Parses `sip:user:pw@host:port;params?headers`.
    pub fn parse(s: &str) -> Option<SipUri> {
        let parts = SipUriParts::split(s)?;
        let (host, port) = parts.host_port()?;
        Some(SipUri {
            scheme: parts.scheme.to_ascii_lowercase(),
            user: parts.user().map(str::to_string),
            host: host.into_owned(),
            port,
            params: parts.params.map(parse_params).unwrap_or_default(),
        })
    }

    /// Whether [`SipUri::parse`] would read `s`, without building the parts.
    pub fn is_valid(s: &str) -> bool {
        SipUriRef::parse(s).is_some()
    }

    /// The `transport` parameter.
    pub fn transport(&self) -> Option<Transport> {
        param(&self.params, "transport")
            .flatten()
            .and_then(Transport::from_sip_param)
    }
}

/// The text parts of a `sip:`/`sips:` URI, borrowed (RFC 3261 §19.1.1): the userinfo ends at
/// the `@` (which can appear nowhere else unescaped), so a user part may hold `;`, `?`, `,` and
/// `/`; the host part ends at the first `;` (parameters) or `?` (headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUriParts<'a> {
    /// `sip` or `sips`, as written.
    pub scheme: &'a str,
    /// `user[:password]`, if there is an `@`.
    pub userinfo: Option<&'a str>,
    /// `host[:port]`, not yet checked.
    pub hostport: &'a str,
    /// The parameters after the first `;` of the host part, if any.
    pub params: Option<&'a str>,
    /// The headers after `?`, if any.
    pub headers: Option<&'a str>,
}

impl<'a> SipUriParts<'a> {
    /// Cuts a `sip:`/`sips:` URI into its parts; `None` for another scheme.
    pub fn split(s: &'a str) -> Option<SipUriParts<'a>> {
        let (scheme, rest) = s.sip_trim().split_byte(b':')?;
        if !is_sip_scheme(scheme) {
            return None;
        }
        let (userinfo, hostpart) = match rest.find_byte(b'@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        // One scan to the first `;` or `?`: every URI of a message is cut here, some twice.
        let cut = hostpart.bytes().position(|b| b == b';' || b == b'?');
        let (hostport, params, headers) = match cut {
            None => (hostpart, None, None),
            Some(i) if hostpart.as_bytes()[i] == b'?' => {
                (&hostpart[..i], None, Some(&hostpart[i + 1..]))
            }
            Some(i) => match hostpart[i + 1..].split_byte(b'?') {
                Some((p, h)) => (&hostpart[..i], Some(p), Some(h)),
                None => (&hostpart[..i], Some(&hostpart[i + 1..]), None),
            },
        };
        Some(SipUriParts {
            scheme,
            userinfo,
            hostport,
            params,
            headers,
        })
    }

    /// The user part (without any `:password`), unless empty.
    pub fn user(&self) -> Option<&'a str> {
        self.userinfo
            .map(|u| u.split_each(b':').next().unwrap_or(""))
            .filter(|u| !u.is_empty())
    }

    /// The host, lower-cased (borrowed when it is already), and the port; `None` when the host
    /// part does not read.
    pub fn host_port(&self) -> Option<(Cow<'a, str>, Option<u16>)> {
        let (host, port) = host_port(self.hostport)?;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        Some((host, port))
    }
}

/// A `sip:`/`sips:` URI read in place by [`SipUri::parse`]'s rules, nothing copied: the
/// proxy reads its own Routes this way on every request of a dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUriRef<'a> {
    /// The host as written; IPv6 without brackets.
    pub host: &'a str,
    /// The port, if given.
    pub port: Option<u16>,
    params: Option<&'a str>,
}

impl<'a> SipUriRef<'a> {
    /// Reads `sip:user:pw@host:port;params?headers`; `None` where [`SipUri::parse`] gives none.
    pub fn parse(s: &'a str) -> Option<SipUriRef<'a>> {
        let parts = SipUriParts::split(s)?;
        let (host, port) = host_port(parts.hostport)?;
        Some(SipUriRef {
            host,
            port,
            params: parts.params,
        })
    }

    /// A URI parameter (name in any case, the first of that name): `Some(None)` for a flag,
    /// `Some(Some(v))` for a value (trimmed, quotes removed), as [`SipUri`] keeps them.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params?, name)
    }

    /// The address the URI names (`host:port`, an IP literal only: no DNS here).
    pub fn target(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port.unwrap_or(5060)))
    }
}

/// Whether a URI scheme is `sip` or `sips` (any case).
pub fn is_sip_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
}

/// Splits `host[:port]` / `[v6][:port]`, lower-casing the host. `None` if malformed.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    host_port(s).map(|(h, p)| (h.to_ascii_lowercase(), p))
}

/// [`split_host_port`] without copying: the host as written.
fn host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.sip_trim();
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find_byte(b']')?;
        let host = &rest[..end];
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    let (host, port) = match s.rsplit_byte(b':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (s, None),
    };
    if host.is_empty() || !host.bytes().all(is_host_byte) {
        return None;
    }
    Some((host, port))
}

/// A via-parm read in place, copying nothing unless its sent-by holds LWS (rare): the one Via
/// reader. The service and the proxy read every message's top Via this way: its branch and
/// where its `rport` and `received` stand are found in the one pass over the parameters, and
/// the response's Via is the text as written with those two spliced in
/// ([`Self::written_back`]). An owned Via cost a dozen allocations per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViaRef<'a> {
    /// `UDP`, `TCP`, `TLS`, … as written.
    pub transport: &'a str,
    /// sent-by host as written (IPv6 without brackets).
    pub host: Cow<'a, str>,
    /// sent-by port.
    pub port: Option<u16>,
    /// The parameters after the sent-by's `;`, as written.
    pub params: &'a str,
    /// The first `branch` parameter (`Some(None)`: a flag).
    branch: Option<Option<&'a str>>,
    /// Where the first `rport` and the first `received` parameter stand in `params`.
    rport: Option<Range<usize>>,
    received: Option<Range<usize>>,
}

impl<'a> ViaRef<'a> {
    /// The first via-parm of a Via header value.
    pub fn parse_first(value: &'a str) -> Option<ViaRef<'a>> {
        ViaRef::parse_parm(list_elements(value).next()?)
    }

    /// One via-parm, as leniently as a response can still be routed by it: whitespace around
    /// `/` and `:` (RFC 3261's SLASH and COLON allow it, RFC 4475 §3.1.1.1), any protocol
    /// version (so a 505 can still be sent back), empty parameters skipped. The strict grammar
    /// is [`super::check`]'s.
    pub fn parse_parm(parm: &'a str) -> Option<ViaRef<'a>> {
        let (name, rest) = parm.split_byte(b'/')?;
        let (version, rest) = rest.split_byte(b'/')?;
        if !name.sip_trim().eq_ignore_ascii_case("SIP") || version.sip_trim().is_empty() {
            return None;
        }
        let rest = rest.sip_trim_start();
        let (transport, rest) = rest.split_at(token_len(rest));
        // The transport and the sent-by are separated by LWS.
        if transport.is_empty() || !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let rest = rest.sip_trim();
        let (sent_by, params) = rest.split_byte(b';').unwrap_or((rest, ""));
        // LWS inside sent-by (RFC 4475 §3.1.1.1) is rare: looked for by byte first.
        let spaced = sent_by
            .bytes()
            .any(|b| b.is_ascii_whitespace() || !b.is_ascii())
            && sent_by.contains(char::is_whitespace);
        let (host, port) = if spaced {
            let joined: String = sent_by.split_whitespace().collect();
            let (host, port) = host_port(&joined)?;
            (Cow::Owned(host.to_string()), port)
        } else {
            let (host, port) = host_port(sent_by)?;
            (Cow::Borrowed(host), port)
        };
        let mut via = ViaRef {
            transport,
            host,
            port,
            params,
            branch: None,
            rport: None,
            received: None,
        };
        via.find_own_params();
        Some(via)
    }

    /// Finds `branch`, `rport` and `received` (the first of each) in one pass.
    fn find_own_params(&mut self) {
        for (at, name, value) in param_spans(self.params) {
            if name.eq_ignore_ascii_case("branch") {
                self.branch.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("rport") {
                self.rport.get_or_insert(at);
            } else if name.eq_ignore_ascii_case("received") {
                self.received.get_or_insert(at);
            }
        }
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch.flatten()
    }

    /// A parameter (name in any case, the first of that name): `Some(None)` for a flag,
    /// `Some(Some(v))` for a value (trimmed, quotes removed), as [`SipUriRef::param`].
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// Whether the client asked for `rport` (RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.rport.is_some()
    }

    /// The via-parm written back with `received` and `rport` given values, each in place of the
    /// first parameter of its name, else appended: the top Via of a response. The rest is as
    /// the client wrote it (RFC 3261 §8.2.6.2: the response's Via is the request's).
    pub fn written_back(&self, received: Option<&str>, rport: Option<&str>) -> String {
        let mut s = String::with_capacity(
            12 + self.transport.len() + self.host.len() + self.params.len() + 48,
        );
        s.push_str("SIP/2.0/");
        s.push_str(self.transport);
        s.push(' ');
        if self.host.has_byte(b':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(itoa::Buffer::new().format(p));
        }
        // The values given, in the order their parameters stand (appended ones last).
        let mut edits = [
            ("received", received, self.received.clone()),
            ("rport", rport, self.rport.clone()),
        ];
        edits.sort_by_key(|(_, _, at)| at.as_ref().map_or(usize::MAX, |r| r.start));
        let mut copied = 0;
        if !self.params.is_empty() {
            s.push(';');
        }
        for (name, value, at) in edits {
            let Some(value) = value else { continue };
            match at {
                Some(at) => {
                    s.push_str(&self.params[copied..at.start]);
                    copied = at.end;
                    s.push_str(name);
                    s.push('=');
                    s.push_str(value);
                }
                None => {
                    s.push_str(&self.params[copied..]);
                    copied = self.params.len();
                    push_param(&mut s, name, Some(value));
                }
            }
        }
        s.push_str(&self.params[copied..]);
        s
    }
}

/// Appends `;name[=value]`.
fn push_param(s: &mut String, name: &str, value: Option<&str>) {
    s.push(';');
    s.push_str(name);
    if let Some(v) = value {
        s.push('=');
        s.push_str(v);
    }
}

/// Parses `CSeq: 123 METHOD`.
pub fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let mut it = value.split_ascii_whitespace();
    let n = it.next()?.parse::<u32>().ok()?;
    let m = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some((n, m))
}

/// Parses a delta-seconds Expires value; values above 2³²−1 are taken as 2³²−1 (RFC 3261
/// §20.19 / §10.2.1.1 leaves big values to the registrar, which clamps them anyway).
pub fn parse_expires(value: &str) -> Option<u32> {
    let v = value.sip_trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32),
    )
}

/// Parses a q-value (`0`…`1` with up to three decimals) into thousandths.
pub fn parse_q(value: &str) -> Option<u16> {
    let v = value.sip_trim();
    let (int, frac) = match v.split_byte(b'.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut scale = 100;
    for b in frac.bytes() {
        thousandths += (b - b'0') as u16 * scale;
        scale /= 10;
    }
    (thousandths <= 1000).then_some(thousandths)
}

/// One contact of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactSpec {
    /// The contact URI.
    pub uri: String,
    /// q-value in thousandths.
    pub q: Option<u16>,
    /// The `expires` parameter.
    pub expires: Option<u32>,
}

/// A REGISTER's Contact headers taken together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact header: a query for the current bindings.
    None,
    /// `Contact: *`.
    Star,
    /// One or more contacts.
    List(Vec<ContactSpec>),
}

/// Why a Contact header was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// Not a name-addr.
    #[error("Bad Contact")]
    Syntax,
    /// `*` together with other contacts.
    #[error("Contact * Must Be Alone")]
    StarWithOthers,
    /// A q-value out of range.
    #[error("Bad q-value")]
    BadQ,
    /// An expires parameter that is not delta-seconds.
    #[error("Bad expires Parameter")]
    BadExpires,
}

/// Reads all Contact header values of a request.
pub fn parse_contacts_all<'a>(
    values: impl Iterator<Item = &'a str>,
) -> Result<Contacts, ContactError> {
    let mut star = false;
    let mut list = Vec::new();
    for v in values {
        match parse_contacts(v)? {
            Contacts::None => {}
            Contacts::Star => {
                if star {
                    return Err(ContactError::StarWithOthers);
                }
                star = true
            }
            Contacts::List(mut l) => list.append(&mut l),
        }
        if list.len() > 64 {
            return Err(ContactError::Syntax);
        }
    }
    match (star, list.is_empty()) {
        (true, true) => Ok(Contacts::Star),
        (true, false) => Err(ContactError::StarWithOthers),
        (false, true) => Ok(Contacts::None),
        (false, false) => Ok(Contacts::List(list)),
    }
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
}

/// Reads one Contact header value.
pub fn parse_contacts(value: &str) -> Result<Contacts, ContactError> {
    let items = split_list(value);
    if items.is_empty() {
        return Ok(Contacts::None);
    }
    if items.contains(&"*") {
        return if items.len() == 1 {
            Ok(Contacts::Star)
        } else {
            Err(ContactError::StarWithOthers)
        };
    }
    let mut list = Vec::with_capacity(items.len());
    for item in items {
        let na = NameAddrRef::parse(item).ok_or(ContactError::Syntax)?;
        // Any absolute URI may be a contact; sip/sips ones must also read as such.
        let scheme_ok = match na.uri.split_byte(b':') {
            Some((scheme, _)) if is_sip_scheme(scheme) => SipUri::is_valid(na.uri),
            Some((scheme, rest)) => is_scheme(scheme) && !rest.is_empty(),
            None => false,
        };
        if !scheme_ok {
            return Err(ContactError::Syntax);
        }
        let q = match na.param("q") {
            None => None,
            Some(Some(v)) => Some(parse_q(v).ok_or(ContactError::BadQ)?),
            Some(None) => return Err(ContactError::BadQ),
        };
        let expires = match na.param("expires") {
            None => None,
            Some(Some(v)) => Some(parse_expires(v).ok_or(ContactError::BadExpires)?),
            Some(None) => return Err(ContactError::BadExpires),
        };
        list.push(ContactSpec {
            uri: na.uri.to_string(),
            q,
            expires,
        });
    }
    Ok(Contacts::List(list))
}

/// Where a response to this Via goes: `received`/`rport` when present, else sent-by. Never a
/// broadcast, multicast or unspecified address (RFC 4475 §3.3.10: a response must not be
/// relayed to one).
pub fn via_target(via: &ViaRef<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = match via.param("received").flatten() {
        Some(r) => r.parse().ok()?,
        None => via
            .host
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .ok()?,
    };
    let port = via
        .param("rport")
        .flatten()
        .and_then(|p| p.parse().ok())
        .or(via.port)
        .unwrap_or(5060);
    let unroutable = ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if unroutable {
        return None;
    }
    Some(SocketAddr::new(ip, port))
}

/// The URI inside a name-addr or a bare URI (`<sip:a@b;lr>` → `sip:a@b;lr`).
pub fn addr_uri(value: &str) -> &str {
    NameAddrRef::parse(value).map_or(value.sip_trim(), |n| n.uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte reading `list_items` jumps through: the reference it is tested against.
    fn list_items_stepwise(value: &str) -> Vec<&str> {
        let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
        let mut out = Vec::new();
        let mut from = 0;
        for (i, c) in value.bytes().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b'<' if !quoted => depth += 1,
                b'>' if !quoted => depth = depth.saturating_sub(1),
                b',' if !quoted && depth == 0 => {
                    out.push(&value[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
        out.push(&value[from..]);
        out
    }

    #[test]
    fn list_items_cut_where_a_byte_by_byte_reading_does() {
        let mut samples: Vec<String> = [
            "",
            ",",
            "a, b,,c,",
            "\"a,b\" <sip:x;p=\",\">, <sip:y>",
            "<sip:a,b> , \"q\\\",r\", s",
            "\"unterminated, x",
            "\"esc at end\\",
            "<<a,b>,c>,d",
            ">, >a,b",
            "<\"x>,\">, y",
            "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2 , SIP/2.0/TCP [::1]:5060",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every string of up to five bytes over the delimiters and a letter.
        let alphabet = [",", "\"", "<", ">", "\\", "a"];
        let mut level = vec![String::new()];
        for _ in 0..5 {
            level = level
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            samples.extend(level.iter().cloned());
        }
        for s in &samples {
            assert_eq!(
                list_items(s).collect::<Vec<_>>(),
                list_items_stepwise(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn sip_uris_are_cut_at_the_first_semicolon_or_question_mark_after_the_user() {
        let cut = |s| {
            let p = SipUriParts::split(s).unwrap();
            (p.userinfo, p.hostport, p.params, p.headers)
        };
        assert_eq!(cut("sip:a.test"), (None, "a.test", None, None));
        assert_eq!(
            cut("sip:u;x=1?y@h.test:5060;lr;t=u?h=v?w"),
            (
                Some("u;x=1?y"),
                "h.test:5060",
                Some("lr;t=u"),
                Some("h=v?w")
            )
        );
        assert_eq!(
            cut("sips:h.test?a=b;c"),
            (None, "h.test", None, Some("a=b;c"))
        );
        assert_eq!(cut("sip:h.test;p"), (None, "h.test", Some("p"), None));
        assert!(SipUriParts::split("tel:+1;x").is_none());
    }

    #[test]
    fn uri_parts_user_and_host() {
        let p = SipUriParts::split("sip:Alice:secret@Example.COM:5070;transport=tcp").unwrap();
        assert_eq!(p.user(), Some("Alice"));
        assert_eq!(p.host_port(), Some(("example.com".into(), Some(5070))));
        let p = SipUriParts::split("sips:bob@h.test").unwrap();
        assert!(matches!(
            p.host_port(),
            Some((Cow::Borrowed("h.test"), None))
        ));
        let p = SipUriParts::split("sip::pw@h.test").unwrap();
        assert_eq!(p.user(), None, "an empty user is none");
        assert_eq!(
            SipUriParts::split("sip:a@h:port").unwrap().host_port(),
            None
        );
    }

    #[test]
    fn via_with_ipv6_and_params() {
        let v = ViaRef::parse_first(
            "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;rport, SIP/2.0/UDP b",
        )
        .unwrap();
        assert_eq!((v.transport, v.host.as_ref()), ("TCP", "2001:db8::1"));
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.param("rport"), Some(None));
        let r = ViaRef::parse_first("SIP/2.0/tcp [2001:DB8::1]:5070 ;Branch=z9hG4bKx;rport, b")
            .unwrap();
        assert_eq!((r.transport, r.port), ("tcp", Some(5070)));
        assert_eq!(
            (r.host.as_ref(), r.branch()),
            ("2001:DB8::1", Some("z9hG4bKx"))
        );
        assert_eq!(r.param("RPORT"), Some(None), "names in any case");
        assert_eq!(
            r.written_back(None, None),
            "SIP/2.0/tcp [2001:DB8::1]:5070;Branch=z9hG4bKx;rport"
        );
        assert!(ViaRef::parse_first("SIP/2.0/UDP").is_none());
        assert!(ViaRef::parse_first("HTTP/1.1 host").is_none());
        assert!(ViaRef::parse_first("SIP/2.0/UDP host:notaport").is_none());
    }

    #[test]
    fn name_addr_forms() {
        let n =
            NameAddr::parse("\"Alice, A\" <sip:alice@a.test;transport=tcp>;tag=88;q=0.5").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice, A"));
        assert_eq!(n.uri, "sip:alice@a.test;transport=tcp");
        assert_eq!(n.tag(), Some("88"));
        let n = NameAddr::parse("sip:alice@a.test;expires=60").unwrap();
        assert_eq!(n.uri, "sip:alice@a.test");
        assert_eq!(n.param("expires"), Some(Some("60")));
        let n = NameAddr::parse("Alice <sip:alice@a.test>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice"));
        assert!(NameAddr::parse("<sip:a").is_none());
        assert!(NameAddr::parse("\"open <sip:a>").is_none());
        // The borrowing reader agrees with the owning one.
        for v in [
            "\"Alice, A\" <sip:alice@a.test;transport=tcp>;TAG=88;q=0.5;lr",
            "sip:alice@a.test;expires=60;tag=\"x\"",
            "Alice <sip:alice@a.test>",
            "<sip:a",
            "<sip:a@b>; tag = 7 ;;",
        ] {
            let (r, o) = (NameAddrRef::parse(v), NameAddr::parse(v));
            assert_eq!(r.is_some(), o.is_some(), "{v}");
            let (Some(r), Some(o)) = (r, o) else { continue };
            assert_eq!(
                (r.display, r.uri),
                (o.display.as_deref(), o.uri.as_str()),
                "{v}"
            );
            for name in ["tag", "q", "lr", "expires", "none"] {
                assert_eq!(r.param(name), o.param(name), "{v} {name}");
            }
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u = SipUri::parse("sip:1001@Switchboard.Local:5080;transport=TCP").unwrap();
        assert_eq!(u.user.as_deref(), Some("1001"));
        assert_eq!(u.host, "switchboard.local");
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.transport(), Some(Transport::Tcp));
        let u = SipUri::parse("sips:[::1]:5061").unwrap();
        assert_eq!(u.host, "::1");
        assert!(SipUri::parse("tel:+123").is_none());
        assert!(SipUri::parse("sip:").is_none());
        for s in [
            "sip:1001@Switchboard.Local:5080;transport=TCP",
            "sips:[::1]:5061",
            "sip:a;x=y@h.test?z=1",
            "SIP:h",
            "tel:+123",
            "sip:",
            "sip:h:99999",
            "sip:[::1",
            "sip:a@h b",
        ] {
            assert_eq!(SipUri::is_valid(s), SipUri::parse(s).is_some(), "{s}");
        }
    }

    #[test]
    fn contact_lists() {
        assert_eq!(parse_contacts("*"), Ok(Contacts::Star));
        assert_eq!(
            parse_contacts("*, <sip:a@b>"),
            Err(ContactError::StarWithOthers)
        );
        let Contacts::List(l) =
            parse_contacts("<sip:a@1.2.3.4>;q=0.7;expires=60, \"B\" <sip:b@5.6.7.8>").unwrap()
        else {
            panic!()
        };
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].q, Some(700));
        assert_eq!(l[0].expires, Some(60));
        assert_eq!(l[1].uri, "sip:b@5.6.7.8");
        assert_eq!(parse_contacts("<sip:a@b>;q=2"), Err(ContactError::BadQ));
        assert_eq!(
            parse_contacts("<sip:a@b>;expires=x"),
            Err(ContactError::BadExpires)
        );
        assert_eq!(
            parse_contacts_all(["<sip:a@b>", "*"].into_iter()),
            Err(ContactError::StarWithOthers)
        );
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.0001"), None);
        assert_eq!(parse_q("-0"), None);
    }

    #[test]
    fn expires_and_cseq() {
        assert_eq!(parse_expires("3600"), Some(3600));
        assert_eq!(parse_expires("99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_expires("-1"), None);
        assert_eq!(parse_expires(""), None);
        assert_eq!(parse_cseq("12 REGISTER"), Some((12, "REGISTER")));
        assert_eq!(parse_cseq("REGISTER"), None);
        assert_eq!(parse_cseq("1 REGISTER extra"), None);
    }

    #[test]
    fn responses_never_go_to_broadcast_or_multicast() {
        for host in ["255.255.255.255", "224.0.0.1", "0.0.0.0", "[ff02::1]"] {
            let value = format!("SIP/2.0/UDP {host};branch=z9hG4bK1");
            let via = ViaRef::parse_first(&value).unwrap();
            assert_eq!(via_target(&via), None, "{host}");
        }
        let via = ViaRef::parse_first("SIP/2.0/UDP 192.0.2.1;received=255.255.255.255").unwrap();
        assert_eq!(via_target(&via), None);
    }
}
