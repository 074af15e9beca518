//! What the header fields of a message must satisfy before the registrar acts on it or the
//! proxy forwards it (RFC 3261 §7.3, §20, §25; RFC 4475's invalid messages): the fields a
//! transaction rests on present and single (From, To, Call-ID, CSeq), single-instance fields
//! not repeated (Max-Forwards, Content-Length, Content-Type, Expires), and the grammar of the
//! fields the registrar or proxy reads or relays as addresses (From, To, Contact, Route,
//! Record-Route, Via, CSeq, Call-ID, Date, option tags).
//!
//! Unknown header fields are not looked at: a proxy relays them as they are (RFC 4475
//! §3.1.1.1's `UnknownHeaderWithUnusualValue`). Pure and allocation-free; the proxy's parser
//! ([`super::owned`]) feeds it `(name, value)` pairs, names in any case or compact form
//! ([`headers`]), the registrar's ([`super::parse`]) its headers with the names it resolved
//! ([`parsed`]), so a name is classified once.

use super::headers::{is_sip_scheme, list_items, long_name, SipUri, SipUriParts};
use super::parse::{valid_hostport, Header, HeaderName};
use super::scan::{is_host_byte, is_token, is_token_byte, is_uri_byte, token_len, Scan};

/// Why a message was refused: the status and reason phrase to answer a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// 400, or 420 for [`unsupported`].
    pub status: u16,
    /// The reason phrase (names the field).
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Fault {
    Fault {
        status: 400,
        reason,
    }
}

/// Option tags this registrar and proxy implement, for `Require` and `Proxy-Require`
/// (RFC 3261 §8.2.2.3, §16.3 step 4): none.
pub const SUPPORTED: &[&str] = &[];

/// The fields this module reads, resolved once per header line. The first nine may appear
/// once at most (their count is kept by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Expires,
    Date,
    Via,
    Contact,
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Supported,
    Other,
}

/// Fields that may appear once at most.
const SINGLE: usize = 9;

impl Kind {
    /// By name, any case, compact forms included; compared by length first.
    fn of(name: &str) -> Kind {
        let name = long_name(name);
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        match name.len() {
            2 if is("To") => Kind::To,
            3 if is("Via") => Kind::Via,
            4 if is("From") => Kind::From,
            4 if is("CSeq") => Kind::CSeq,
            4 if is("Date") => Kind::Date,
            5 if is("Route") => Kind::Route,
            7 if is("Call-ID") => Kind::CallId,
            7 if is("Contact") => Kind::Contact,
            7 if is("Expires") => Kind::Expires,
            7 if is("Require") => Kind::Require,
            9 if is("Supported") => Kind::Supported,
            12 if is("Max-Forwards") => Kind::MaxForwards,
            12 if is("Content-Type") => Kind::ContentType,
            12 if is("Record-Route") => Kind::RecordRoute,
            13 if is("Proxy-Require") => Kind::ProxyRequire,
            14 if is("Content-Length") => Kind::ContentLength,
            _ => Kind::Other,
        }
    }

    /// By the parser's name: its known names map here directly.
    fn named(name: &HeaderName<'_>) -> Kind {
        match name {
            HeaderName::Via => Kind::Via,
            HeaderName::From => Kind::From,
            HeaderName::To => Kind::To,
            HeaderName::CallId => Kind::CallId,
            HeaderName::CSeq => Kind::CSeq,
            HeaderName::Contact => Kind::Contact,
            HeaderName::Expires => Kind::Expires,
            HeaderName::ContentLength => Kind::ContentLength,
            HeaderName::Authorization | HeaderName::UserAgent => Kind::Other,
            HeaderName::Other(n) => Kind::of(n),
        }
    }

    /// The reason phrase of a field that does not read.
    fn bad(self) -> &'static str {
        match self {
            Kind::From => "Bad From",
            Kind::To => "Bad To",
            Kind::CallId => "Bad Call-ID",
            Kind::CSeq => "Bad CSeq",
            Kind::MaxForwards => "Bad Max-Forwards",
            Kind::ContentLength => "Bad Content-Length",
            Kind::Expires => "Bad Expires",
            Kind::Date => "Bad Date",
            Kind::Via => "Bad Via",
            Kind::Contact => "Bad Contact",
            _ => "Bad Header",
        }
    }

    /// The reason phrase of a single field given twice.
    fn duplicate(self) -> &'static str {
        match self {
            Kind::From => "Duplicate From",
            Kind::To => "Duplicate To",
            Kind::CallId => "Duplicate Call-ID",
            Kind::CSeq => "Duplicate CSeq",
            Kind::MaxForwards => "Duplicate Max-Forwards",
            Kind::ContentLength => "Duplicate Content-Length",
            Kind::ContentType => "Duplicate Content-Type",
            Kind::Expires => "Duplicate Expires",
            _ => "Duplicate Date",
        }
    }
}

/// Checks a message's header fields (request or response), in order as received.
pub fn headers<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), Fault> {
    classified(fields.into_iter().map(|(name, value)| {
        if is_token(name) {
            Ok((Kind::of(name), value))
        } else {
            Err(bad("Bad Header Name"))
        }
    }))
}

/// [`headers`] for the registrar's parser ([`super::parse`]), whose names are tokens already
/// resolved: only the names it does not know ([`HeaderName::Other`]) are resolved again.
pub fn parsed(headers: &[Header<'_>]) -> Result<(), Fault> {
    classified(
        headers
            .iter()
            .map(|h| Ok((Kind::named(&h.name), h.value.as_ref()))),
    )
}

/// The rules over fields whose kind is known (or whose name was refused), in order.
fn classified<'a>(
    fields: impl IntoIterator<Item = Result<(Kind, &'a str), Fault>>,
) -> Result<(), Fault> {
    let mut counts = [0u8; SINGLE];
    let mut vias = 0usize;
    for item in fields {
        let (kind, value) = item?;
        if let Some(n) = counts.get_mut(kind as usize) {
            *n = n.saturating_add(1);
            if *n > 1 {
                return Err(bad(kind.duplicate()));
            }
        }
        if !field(kind, value) {
            return Err(bad(kind.bad()));
        }
        vias += usize::from(kind == Kind::Via);
    }
    if vias == 0 {
        return Err(bad("Missing Via"));
    }
    let missing = [
        (Kind::From, "Missing From"),
        (Kind::To, "Missing To"),
        (Kind::CallId, "Missing Call-ID"),
        (Kind::CSeq, "Missing CSeq"),
    ];
    match missing.iter().find(|(k, _)| counts[*k as usize] == 0) {
        Some((_, reason)) => Err(bad(reason)),
        None => Ok(()),
    }
}

/// Whether one field reads, by its kind.
fn field(kind: Kind, value: &str) -> bool {
    match kind {
        Kind::From | Kind::To => name_addr(value, false),
        Kind::Contact => value.sip_trim() == "*" || list(value, |v| name_addr(v, false)),
        Kind::Route | Kind::RecordRoute => list(value, |v| name_addr(v, true)),
        Kind::Via => list(value, via_parm),
        Kind::CSeq => cseq(value),
        Kind::CallId => call_id(value),
        Kind::MaxForwards | Kind::ContentLength | Kind::Expires => digits(value),
        Kind::Date => date(value),
        Kind::Require | Kind::ProxyRequire => {
            value.split_each(b',').all(|t| is_token(t.sip_trim()))
        }
        // May be empty (RFC 3261 §20.37).
        Kind::Supported => {
            value.sip_trim().is_empty() || value.split_each(b',').all(|t| is_token(t.sip_trim()))
        }
        Kind::ContentType | Kind::Other => true,
    }
}

/// Whether a Request-URI can be used: an absolute URI (`scheme:rest`); for `sip:`/`sips:` also
/// a readable host and port, and no headers (RFC 3261 §19.1.1: not allowed in a Request-URI;
/// RFC 4475 §3.1.2.11, and §3.1.2.7's `<>` around it).
pub fn request_uri(uri: &str) -> Result<(), Fault> {
    let Some((scheme, rest)) = uri.split_byte(b':') else {
        return Err(bad("Bad Request-URI"));
    };
    let mut b = scheme.bytes();
    if !matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        || !b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.')
        || rest.is_empty()
        || rest
            .bytes()
            .any(|c| c.is_ascii_control() || b"<>\"".contains(&c))
    {
        return Err(bad("Bad Request-URI"));
    }
    let Some(parts) = SipUriParts::split(uri) else {
        return Ok(()); // another scheme: whether it is served is the handler's question (416)
    };
    if parts.headers.is_some() {
        return Err(bad("Headers Not Allowed In Request-URI"));
    }
    if !valid_hostport(parts.hostport) {
        return Err(bad("Bad Request-URI"));
    }
    Ok(())
}

/// The option tags of the `names` fields (`Require`, `Proxy-Require`) that are not
/// [`SUPPORTED`], in order, each once: a 420's `Unsupported`.
pub fn unsupported<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    names: &[&str],
) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for (name, value) in fields {
        let name = long_name(name);
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        for tag in value
            .split_each(b',')
            .map(<str>::sip_trim)
            .filter(|t| !t.is_empty())
        {
            let known = SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag));
            if !known && !out.iter().any(|o| o.eq_ignore_ascii_case(tag)) {
                out.push(tag);
            }
        }
    }
    out
}

fn digits(s: &str) -> bool {
    let s = s.sip_trim();
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether every element of a comma-separated list (commas inside quotes and angle brackets
/// do not count) satisfies `item`; an empty element (`a,,b`, a trailing comma) does not.
fn list(value: &str, item: impl Fn(&str) -> bool) -> bool {
    if !value.has_byte(b',') {
        return item(value.sip_trim()); // the usual single element, without the scan
    }
    list_items(value).all(|v| item(v.sip_trim()))
}

/// The length of a quoted string's content, `s` starting after the opening quote: the
/// index of the closing quote. Quoted pairs (`\` and any character) are skipped.
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(i);
        } else if c == '\r' || c == '\n' {
            return None;
        }
    }
    None
}

/// A word of an unquoted display name: a token, or UTF-8 beyond ASCII (which RFC 3261 allows
/// only quoted, but phones send; separators such as `,` are what break a parser).
fn display_word(w: &str) -> bool {
    !w.is_empty() && w.bytes().all(|b| is_token_byte(b) || !b.is_ascii())
}

/// `name-addr` (`[display] <uri> params`) or, unless `brackets` is required, `addr-spec`
/// (`uri params`, the URI without `,` `?` `;`), with strict header parameters.
fn name_addr(value: &str, brackets: bool) -> bool {
    let v = value.sip_trim();
    let (uri, after) = if let Some(rest) = v.strip_prefix('"') {
        let Some(end) = quoted_end(rest) else {
            return false;
        };
        let Some(rest) = rest[end + 1..].sip_trim_start().strip_prefix('<') else {
            return false;
        };
        let Some(gt) = rest.find_byte(b'>') else {
            return false;
        };
        (&rest[..gt], &rest[gt + 1..])
    } else if let Some(lt) = v.find_byte(b'<') {
        if !v[..lt].split_whitespace().all(display_word) {
            return false;
        }
        let rest = &v[lt + 1..];
        let Some(gt) = rest.find_byte(b'>') else {
            return false;
        };
        (&rest[..gt], &rest[gt + 1..])
    } else {
        if brackets {
            return false;
        }
        let (uri, after) = v.split_at(v.find_byte(b';').unwrap_or(v.len()));
        let uri = uri.trim_end();
        if uri.contains(['?', ',', '>', '"']) {
            return false;
        }
        (uri, after)
    };
    absolute_uri(uri) && params(after)
}

/// An absolute URI with no whitespace, controls, quotes or angle brackets; a `sip:`/`sips:`
/// one must also have a readable host and port.
fn absolute_uri(uri: &str) -> bool {
    plain_sip_uri(uri) || any_absolute_uri(uri)
}

/// The usual `sip:user@host[:port][;params]` (ASCII, a host name or IPv4 address) read
/// quickly: `true` only where [`any_absolute_uri`] says so too (a test holds them to it), `false`
/// for anything else, which that reads. Each name-addr of every message is checked, and the
/// general reading (the URI cut and scanned four times) was about 800 instructions of it.
fn plain_sip_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("sip:") else {
        return false;
    };
    // Tight passes (ASCII a word at a time, a table lookup per byte, memchr) beat one loop
    // doing all three.
    if !rest.is_ascii() || !rest.bytes().all(is_uri_byte) {
        return false;
    }
    let host = &rest[rest.find_byte(b'@').map_or(0, |i| i + 1)..];
    let n = host
        .bytes()
        .position(|c| !is_host_byte(c))
        .unwrap_or(host.len());
    let mut after = &host[n..];
    if let Some(port) = after.strip_prefix(':') {
        let digits = port
            .bytes()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(port.len());
        if !(1..=5).contains(&digits) || port[..digits].parse::<u16>().is_err() {
            return false;
        }
        after = &port[digits..];
    }
    n > 0 && (after.is_empty() || after.starts_with(';'))
}

/// [`absolute_uri`] by the general rules.
fn any_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_byte(b':') else {
        return false;
    };
    let mut b = scheme.bytes();
    let scheme_ok = matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.');
    if !scheme_ok || rest.is_empty() || !rest.bytes().all(is_uri_byte) {
        return false;
    }
    if is_sip_scheme(scheme) {
        return SipUri::is_valid(uri);
    }
    true
}

/// Header (or Via) parameters: `*( SEMI token [ EQUAL ( token / host / quoted-string ) ] )`
/// with optional whitespace around `;` and `=`; empty parameters (`;;`) are errors.
fn params(s: &str) -> bool {
    let mut s = s.sip_trim();
    while !s.is_empty() {
        let Some(rest) = s.strip_prefix(';') else {
            return false;
        };
        let rest = rest.sip_trim_start();
        let n = token_len(rest);
        if n == 0 {
            return false;
        }
        let rest = rest[n..].sip_trim_start();
        s = match rest.strip_prefix('=') {
            None => rest,
            Some(v) => {
                let v = v.sip_trim_start();
                let end = if let Some(q) = v.strip_prefix('"') {
                    match quoted_end(q) {
                        Some(e) => e + 2,
                        None => return false,
                    }
                } else if v.starts_with('[') {
                    match v.find_byte(b']') {
                        Some(e) => e + 1,
                        None => return false,
                    }
                } else {
                    // token / host (an IPv6 `received` may come without brackets)
                    v.bytes()
                        .position(|b| !(is_token_byte(b) || b == b':'))
                        .unwrap_or(v.len())
                };
                if end == 0 {
                    return false;
                }
                v[end..].sip_trim_start()
            }
        };
    }
    true
}

/// `SIP SLASH 2.0 SLASH transport LWS sent-by *( SEMI via-params )`.
fn via_parm(parm: &str) -> bool {
    let Some((name, rest)) = parm.split_byte(b'/') else {
        return false;
    };
    let Some((version, rest)) = rest.split_byte(b'/') else {
        return false;
    };
    if !name.sip_trim().eq_ignore_ascii_case("SIP") || version.sip_trim() != "2.0" {
        return false;
    }
    let rest = rest.sip_trim_start();
    let n = token_len(rest);
    let after = &rest[n..];
    if n == 0 || !after.starts_with(char::is_whitespace) {
        return false;
    }
    let after = after.sip_trim_start();
    let (sent_by, rest) = after.split_at(after.find_byte(b';').unwrap_or(after.len()));
    let sent_by = sent_by.trim_end();
    // LWS inside (`host : port`), or anything beyond ASCII, takes the exact reading.
    let plain = sent_by.bytes().all(|b| b.is_ascii_graphic());
    let readable = if !plain && sent_by.contains(char::is_whitespace) {
        valid_hostport(&sent_by.split_whitespace().collect::<String>())
    } else {
        valid_hostport(sent_by)
    };
    readable && params(rest)
}

/// `1*DIGIT LWS Method`, the number a 32-bit unsigned integer.
fn cseq(value: &str) -> bool {
    let mut it = value.split_whitespace();
    let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    n.bytes().all(|b| b.is_ascii_digit()) && n.parse::<u32>().is_ok() && is_token(m)
}

/// `word [ "@" word ]`, read liberally: any visible characters but the comma that would make
/// it a list (Call-IDs with `=`, outside RFC 3261's `word`, are seen from real devices).
fn call_id(value: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'@')
    };
    let v = value.sip_trim();
    match v.split_byte(b'@') {
        Some((a, b)) => word(a) && word(b),
        None => word(v),
    }
}

/// `rfc1123-date`: `Sun, 06 Nov 1994 08:49:37 GMT` (GMT is the only zone RFC 3261 allows).
fn date(value: &str) -> bool {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [wkday, day, month, year, time, zone] = parts.as_slice() else {
        return false;
    };
    let num = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    wkday.strip_suffix(',').is_some_and(|w| w.len() == 3)
        && num(day, 2)
        && month.len() == 3
        && num(year, 4)
        && time.len() == 8
        && time
            .split_each(b':')
            .all(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
        && *zone == "GMT"
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: [(&str, &str); 6] = [
        ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport"),
        ("From", "\"Alice\" <sip:alice@a.test>;tag=1"),
        ("To", "<sip:bob@a.test>"),
        ("Call-ID", "abc@192.0.2.1"),
        ("CSeq", "1 INVITE"),
        ("Max-Forwards", "70"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = OK.to_vec();
        for (n, val) in extra {
            match v.iter_mut().find(|(k, _)| k == n) {
                Some(slot) => slot.1 = val,
                None => v.push((n, val)),
            }
        }
        v
    }

    fn reason(fields: Vec<(&str, &str)>) -> Option<&'static str> {
        headers(fields).err().map(|f| f.reason)
    }

    #[test]
    fn the_usual_sip_uri_is_read_as_the_general_rules_read_it() {
        let usual = [
            "sip:alice@a.test",
            "sip:1000@127.0.0.1:5060;transport=UDP",
            "sip:127.0.0.1:5060;lr;sbp=abc",
            "sip:host_name.example-1.com:65535",
            "sip:a;x=1@b",
        ];
        for u in usual {
            assert!(plain_sip_uri(u) && any_absolute_uri(u), "{u}");
        }
        // Every one-byte change, insertion and deletion of them: the shortcut never accepts
        // what the general rules refuse.
        let bytes = b":@;?[]<>\" +/%.-_09aZ\xc3";
        for u in usual {
            for i in 0..=u.len() {
                let mut variants =
                    vec![[&u.as_bytes()[..i], &u.as_bytes()[(i + 1).min(u.len())..]].concat()];
                for &c in bytes {
                    let (head, tail) = u.as_bytes().split_at(i);
                    variants.push([head, &[c], tail].concat());
                    variants.push([head, &[c], tail.get(1..).unwrap_or_default()].concat());
                }
                for v in variants.iter().filter_map(|v| std::str::from_utf8(v).ok()) {
                    assert!(!plain_sip_uri(v) || any_absolute_uri(v), "{v}");
                }
            }
        }
        // Not the usual form: left to the general rules, which may accept or refuse.
        let other = [
            ("SIP:alice@a.test", true),
            ("sips:alice@a.test", true),
            ("sip:alice@[2001:db8::1]:5060", true),
            ("sip:a@b:+5060", true),
            ("sip:a@b:000005060", true),
            ("sip:a@b?subject=x", true),
            ("sip:a@b:65536", false),
            ("sip:a@b:99999999999", false),
            ("sip:a@b:", false),
            ("sip:", false),
            ("sip:a@", false),
            ("sip:a@b c", false),
            ("sip:a@b/c", false),
            ("sip:é@b", true),
            ("sip:a@b;é", true),
            ("tel:+15551234", true),
        ];
        for (u, ok) in other {
            assert!(!plain_sip_uri(u), "{u}");
            assert_eq!(absolute_uri(u), ok, "{u}");
        }
    }

    #[test]
    fn a_plain_request_passes() {
        assert_eq!(headers(OK), Ok(()));
    }

    #[test]
    fn rfc4475_valid_forms_pass() {
        for (n, v) in [
            // §3.1.1.1 wsinv, after unfolding.
            ("To", "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n"),
            (
                "From",
                "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8",
            ),
            ("Via", "SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw"),
            (
                "v",
                "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
            ),
            (
                "m",
                "\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33",
            ),
            ("Route", "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"),
            ("CSeq", "0009 INVITE"),
            ("Max-Forwards", "0068"),
            // §3.1.1.2 intmeth.
            (
                "From",
                "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.",
            ),
            (
                "To",
                "\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
            ),
            ("Call-ID", "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"),
            // §3.1.1.6 lwsdisp, §3.3.4 unksm2, §3.3.14 regescrt.
            ("From", "caller<sip:caller@example.com>;tag=323"),
            ("To", "isbn:2983792873"),
            ("From", "<http://www.example.com>;tag=3234233"),
            ("Contact", "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"),
            ("Contact", "<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>"),
            ("Contact", "*"),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Call-ID", "YWJjZGVmZ2g=@192.0.2.1"),
            ("Supported", ""),
            ("Via", "SIP/2.0/UDP [2001:db8::1]:5060;received=2001:db8::9;rport=5"),
        ] {
            assert_eq!(headers(with(&[(n, v)])), Ok(()), "{n}: {v}");
        }
    }

    #[test]
    fn rfc4475_invalid_forms_are_400() {
        for (n, v, why) in [
            ("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,", "Bad Via"), // badinv01
            (
                "Contact",
                "\"Joe\" <sip:joe@example.org>;;;;",
                "Bad Contact",
            ),
            ("To", "\"Mr. J. User <sip:j.user@example.com>", "Bad To"), // quotbal
            (
                "To",
                "\"Watson, Thomas\" < sip:t.watson@example.org >",
                "Bad To",
            ), // badaspec
            (
                "From",
                "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
                "Bad From",
            ), // baddn
            ("CSeq", "36893488147419103232 REGISTER", "Bad CSeq"),      // scalar02
            ("Date", "Fri, 01 Jan 2010 16:00:00 EST", "Bad Date"),      // baddate
            (
                "Contact",
                "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                "Bad Contact",
            ), // regbadct
            ("Content-Length", "-999", "Bad Content-Length"),           // ncl
            (
                "Via",
                "SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
                "Bad Via",
            ),
            ("Route", "sip:no-brackets.example.com;lr", "Bad Header"),
            ("Call-ID", "a b", "Bad Call-ID"),
            ("Call-ID", "a,b@c", "Bad Call-ID"),
            ("Call-ID", "a@b@c", "Bad Call-ID"),
            ("To", "<sip:a@b.test>, <sip:c@d.test>", "Bad To"),
        ] {
            assert_eq!(reason(with(&[(n, v)])), Some(why), "{n}: {v}");
        }
    }

    #[test]
    fn single_fields_once_and_mandatory_ones_present() {
        // multi01, mcl01: repeated single-instance fields.
        let mut twice = OK.to_vec();
        twice.push(("t", "<sip:other@example.net>"));
        assert_eq!(reason(twice), Some("Duplicate To"));
        let mut two_lengths = OK.to_vec();
        two_lengths.extend([("Content-Length", "13"), ("l", "5")]);
        assert_eq!(reason(two_lengths), Some("Duplicate Content-Length"));
        let mut two_ids = OK.to_vec();
        two_ids.push(("i", "other"));
        assert_eq!(reason(two_ids), Some("Duplicate Call-ID"));
        // insuf: no Call-ID, From, To.
        let insuf: Vec<_> = OK
            .iter()
            .copied()
            .filter(|(n, _)| !matches!(*n, "From" | "To" | "Call-ID"))
            .collect();
        assert_eq!(reason(insuf), Some("Missing From"));
        let no_via: Vec<_> = OK.iter().copied().filter(|(n, _)| *n != "Via").collect();
        assert_eq!(reason(no_via), Some("Missing Via"));
        assert_eq!(reason(with(&[("Bad Name", "x")])), Some("Bad Header Name"));
    }

    #[test]
    fn unknown_option_tags_are_listed_once() {
        // bext01.
        let fields = [
            ("Require", "nothingSupportsThis, nothingSupportsThisEither"),
            (
                "Proxy-Require",
                "noProxiesSupportThis, norDoAnyProxiesSupportThis",
            ),
            ("Require", "nothingSupportsThis"),
            ("Supported", "path"),
        ];
        assert_eq!(
            unsupported(fields, &["Require", "Proxy-Require"]),
            vec![
                "nothingSupportsThis",
                "nothingSupportsThisEither",
                "noProxiesSupportThis",
                "norDoAnyProxiesSupportThis"
            ]
        );
        assert_eq!(
            unsupported(fields, &["Proxy-Require"]),
            vec!["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
        );
        assert!(unsupported(OK, &["Require", "Proxy-Require"]).is_empty());
    }
}
