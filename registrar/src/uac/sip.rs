//! The SIP a UAC needs: REGISTER/SUBSCRIBE requests built as text, and responses parsed into
//! the few fields the state machine reads. The header values are read with `crate::message`'s
//! lexer (list splitting, compact names, Via, name-addr parameters), as the registrar reads them;
//! TCP/TLS flows are cut with `crate::message::framing`.

use super::machine::Reply;
use super::presence::Package;
use crate::auth::client::Challenge;
use crate::message::headers::{parse_cseq, split_list, NameAddrRef, Via};
use crate::message::parse::split_headers;
use crate::message::HeaderName;
use std::fmt::Write as _;

/// The method of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// REGISTER (RFC 3261 §10).
    Register,
    /// SUBSCRIBE to an event package (RFC 6665): `presence` (RFC 3856) or `dialog` (RFC 4235).
    Subscribe(Package),
}

impl Method {
    /// The method token.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Register => "REGISTER",
            Method::Subscribe(_) => "SUBSCRIBE",
        }
    }
}

/// Everything needed to write one request.
#[derive(Debug, Clone)]
pub struct RequestSpec<'a> {
    /// REGISTER or SUBSCRIBE.
    pub method: Method,
    /// Request-URI (`sip:domain` for REGISTER; for SUBSCRIBE the AOR, then the notifier's
    /// Contact once the dialog exists).
    pub uri: &'a str,
    /// `SIP/2.0/UDP` etc. token: `UDP`, `TCP`, `TLS`.
    pub via_transport: &'a str,
    /// `host:port` for the Via sent-by.
    pub via_sent_by: &'a str,
    /// Via branch (starts with `z9hG4bK`).
    pub branch: &'a str,
    /// The AOR (From and To).
    pub aor: &'a str,
    /// From tag.
    pub from_tag: &'a str,
    /// To tag, in-dialog (a SUBSCRIBE refresh).
    pub to_tag: Option<&'a str>,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Contact URI (without angle brackets).
    pub contact: &'a str,
    /// REGISTER: another replica's Contact to remove in the same request (`expires=0`), when
    /// this replica takes the registration over, so the upstream never holds both.
    pub retire: Option<&'a str>,
    /// Expires value.
    pub expires: u32,
    /// Route header value (`<sip:proxy;lr>`), for an outbound proxy.
    pub route: Option<&'a str>,
    /// `(header name, value)` for Authorization or Proxy-Authorization.
    pub auth: Option<(&'a str, &'a str)>,
    /// User-Agent.
    pub user_agent: &'a str,
}

/// Writes the request.
pub fn build_request(r: &RequestSpec<'_>) -> String {
    let mut s = String::with_capacity(640);
    let m = r.method.as_str();
    let _ = write!(s, "{m} {} SIP/2.0\r\n", r.uri);
    let _ = write!(
        s,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        r.via_transport, r.via_sent_by, r.branch
    );
    s.push_str("Max-Forwards: 70\r\n");
    if let Some(route) = r.route {
        let _ = write!(s, "Route: {route}\r\n");
    }
    let _ = write!(s, "From: <{}>;tag={}\r\n", r.aor, r.from_tag);
    match r.to_tag {
        Some(t) => {
            let _ = write!(s, "To: <{}>;tag={t}\r\n", r.aor);
        }
        None => {
            let _ = write!(s, "To: <{}>\r\n", r.aor);
        }
    }
    let _ = write!(s, "Call-ID: {}\r\n", r.call_id);
    let _ = write!(s, "CSeq: {} {m}\r\n", r.cseq);
    match r.method {
        Method::Register => {
            if let Some(old) = r.retire.filter(|old| *old != r.contact) {
                let _ = write!(s, "Contact: <{old}>;expires=0\r\n");
            }
            let _ = write!(s, "Contact: <{}>;expires={}\r\n", r.contact, r.expires);
        }
        Method::Subscribe(package) => {
            let _ = write!(s, "Contact: <{}>\r\n", r.contact);
            let _ = write!(
                s,
                "Event: {}\r\nAccept: {}\r\n",
                package.event(),
                package.accept()
            );
        }
    }
    let _ = write!(s, "Expires: {}\r\n", r.expires);
    if let Some((name, value)) = r.auth {
        let _ = write!(s, "{name}: {value}\r\n");
    }
    s.push_str("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY\r\n");
    let _ = write!(s, "User-Agent: {}\r\n", r.user_agent);
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A parsed response, with only what a UAC reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: String,
    /// Branch of the top Via.
    pub branch: String,
    /// Tag of the To header.
    pub to_tag: Option<String>,
    /// `WWW-Authenticate` values.
    pub www_authenticate: Vec<String>,
    /// `Proxy-Authenticate` values.
    pub proxy_authenticate: Vec<String>,
    /// Contact entries (one per binding, split on commas).
    pub contacts: Vec<String>,
    /// `Expires`.
    pub expires: Option<u32>,
    /// `Min-Expires`.
    pub min_expires: Option<u32>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u32>,
}

/// A message that is not a response this client can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a SIP response (a request, or garbage).
    #[error("not a SIP response")]
    NotResponse,
    /// Malformed status line or header.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Parses a response (headers only; a body is ignored).
pub fn parse_response(msg: &str) -> Result<Response, ParseError> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    let (status, lines) = head.split_once("\r\n").unwrap_or((head, ""));
    let rest = status
        .strip_prefix("SIP/2.0 ")
        .ok_or(ParseError::NotResponse)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code
        .parse()
        .map_err(|_| ParseError::Malformed("status line"))?;
    if !(100..700).contains(&code) {
        return Err(ParseError::Malformed("status code"));
    }
    let mut r = Response {
        code,
        reason: reason.trim().to_string(),
        ..Default::default()
    };
    let fields = split_headers(lines.as_bytes()).map_err(ParseError::Malformed)?;
    let mut seen_via = false;
    for h in &fields {
        let value = h.value.as_str();
        match &h.name {
            HeaderName::Via if !seen_via => {
                seen_via = true;
                // An unreadable top Via leaves the branch empty: no transaction matches it.
                r.branch = Via::parse_first(value)
                    .and_then(|via| via.branch().map(str::to_string))
                    .unwrap_or_default();
            }
            HeaderName::CallId => r.call_id = value.to_string(),
            HeaderName::CSeq => {
                let (n, method) = parse_cseq(value).ok_or(ParseError::Malformed("CSeq"))?;
                (r.cseq, r.cseq_method) = (n, method.to_string());
            }
            HeaderName::To => {
                r.to_tag = NameAddrRef::parse(value).and_then(|to| to.tag().map(str::to_string))
            }
            HeaderName::Contact => r
                .contacts
                .extend(split_list(value).into_iter().map(str::to_string)),
            HeaderName::Expires => r.expires = value.parse().ok(),
            HeaderName::Other(name) => read_other(&mut r, name, value),
            _ => {}
        }
    }
    Ok(r)
}

/// The headers [`HeaderName`] has no variant for.
fn read_other(r: &mut Response, name: &str, value: &str) {
    match name.to_ascii_lowercase().as_str() {
        "www-authenticate" => r.www_authenticate.push(value.to_string()),
        "proxy-authenticate" => r.proxy_authenticate.push(value.to_string()),
        "min-expires" => r.min_expires = value.parse().ok(),
        "retry-after" => {
            r.retry_after = value
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|v| v.parse().ok())
        }
        _ => {}
    }
}

impl Response {
    /// The expiry the registrar granted to `contact`: its `expires` parameter in the 200's
    /// Contact list, else the `Expires` header.
    pub fn granted_expires(&self, contact: &str) -> Option<u32> {
        let ours = self
            .contacts
            .iter()
            .filter_map(|c| NameAddrRef::parse(c))
            .find(|c| same_uri(c.uri, contact))
            .and_then(|c| c.param("expires").flatten())
            .and_then(|v| v.parse().ok());
        ours.or(self.expires)
    }

    /// What the state machine reads of this final response to a `method` request whose Contact
    /// was `contact`: the challenge of a 401/407 (the strongest one offered), the expiry granted.
    pub fn reply(&self, method: Method, contact: Option<&str>) -> Reply {
        let offered = match self.code {
            401 => Some(&self.www_authenticate),
            407 => Some(&self.proxy_authenticate),
            _ => None,
        };
        let challenge = offered.map(|values| {
            Challenge::pick(values.iter().map(String::as_str)).map_err(|e| e.to_string())
        });
        let granted = match method {
            Method::Register => contact.and_then(|c| self.granted_expires(c)),
            Method::Subscribe(_) => self.expires,
        };
        Reply {
            code: self.code,
            status_text: self.status_text(),
            challenge,
            granted,
            min_expires: self.min_expires,
            retry_after: self.retry_after,
        }
    }

    /// The URI of the first Contact: a notifier's remote target (RFC 6665 §4.1.2.1).
    pub fn remote_target(&self) -> Option<&str> {
        let first = self.contacts.first()?;
        NameAddrRef::parse(first).map(|c| c.uri)
    }

    /// `"403 Forbidden"`.
    pub fn status_text(&self) -> String {
        if self.reason.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, self.reason)
        }
    }
}

/// Compares Contact URIs loosely: scheme, user and host:port, case-insensitive host, ignoring
/// parameters (registrars add some, e.g. `;ob`, or reorder them).
fn same_uri(a: &str, b: &str) -> bool {
    fn core(u: &str) -> String {
        u.split(';').next().unwrap_or(u).trim().to_ascii_lowercase()
    }
    core(a) == core(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000;received=127.0.0.1\r\n\
        From: <sip:trunk@example.test>;tag=f1\r\n\
        To: <sip:trunk@example.test>;tag=srv\r\n\
        Call-ID: cid-1\r\n\
        CSeq: 2 REGISTER\r\n\
        Contact: <sip:other@10.0.0.1:5060>;expires=50, <sip:trunk@127.0.0.1:5060;transport=tcp>;expires=1800;received=\"sip:127.0.0.1:40000\"\r\n\
        Server: kamailio\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_200_and_finds_our_contact() {
        let r = parse_response(OK).unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(r.status_text(), "200 OK");
        assert_eq!(r.call_id, "cid-1");
        assert_eq!((r.cseq, r.cseq_method.as_str()), (2, "REGISTER"));
        assert_eq!(r.branch, "z9hG4bKabc");
        assert_eq!(r.to_tag.as_deref(), Some("srv"));
        assert_eq!(r.contacts.len(), 2);
        assert_eq!(
            r.granted_expires("sip:trunk@127.0.0.1:5060;transport=tcp"),
            Some(1800)
        );
        assert_eq!(r.granted_expires("sip:nobody@127.0.0.1:5060"), None);
    }

    #[test]
    fn parses_challenges_and_423() {
        let c = "SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\ni: x\r\nCSeq: 1 REGISTER\r\n\
            WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\n\
            WWW-Authenticate: Digest realm=\"r\", nonce=\"m\", algorithm=SHA-256\r\nl: 0\r\n\r\n";
        let r = parse_response(c).unwrap();
        assert_eq!(r.www_authenticate.len(), 2);
        let t = "SIP/2.0 423 Interval Too Brief\r\nCSeq: 3 REGISTER\r\nMin-Expires: 600\r\n\r\n";
        assert_eq!(parse_response(t).unwrap().min_expires, Some(600));
        assert_eq!(
            parse_response("REGISTER sip:x SIP/2.0\r\n\r\n"),
            Err(ParseError::NotResponse)
        );
    }

    #[test]
    fn reads_headers_with_the_message_lexer() {
        // Spaces around the Via's `/` and `;` (RFC 4475 §3.1.1.1), a quoted comma in a
        // display name, a compact Contact, a Contact that is no name-addr.
        let r = parse_response(
            "SIP/2.0 200 OK\r\nVia: SIP / 2.0 / TCP h:5060 ; branch = z9hG4bK7\r\n\
             t: \"a, b\" <sip:b@x>;tag=t1\r\nCSeq: 1 SUBSCRIBE\r\n\
             m: \"n, m\" <sip:n@10.0.0.2;transport=tcp>;expires=90, <sip:o@x\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.branch, "z9hG4bK7");
        assert_eq!(r.to_tag.as_deref(), Some("t1"));
        assert_eq!(r.contacts.len(), 2);
        assert_eq!(r.remote_target(), Some("sip:n@10.0.0.2;transport=tcp"));
        assert_eq!(r.granted_expires("sip:n@10.0.0.2"), Some(90));
        assert_eq!(r.granted_expires("sip:o@x"), None);
        let bad_via = parse_response("SIP/2.0 200 OK\r\nVia: garbage;branch=z9hG4bK1\r\n\r\n");
        assert_eq!(bad_via.unwrap().branch, "");
        // Header lines as the registrar cuts them: `name: value` with a token name, a CSeq
        // with its method.
        for bad in ["No colon here", "Bad Name: x", "CSeq: 1"] {
            let text = format!("SIP/2.0 200 OK\r\n{bad}\r\n\r\n");
            assert!(
                matches!(parse_response(&text), Err(ParseError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn request_text() {
        let s = build_request(&RequestSpec {
            method: Method::Register,
            uri: "sip:example.test",
            via_transport: "UDP",
            via_sent_by: "127.0.0.1:40000",
            branch: "z9hG4bKx",
            aor: "sip:trunk@example.test",
            from_tag: "ft",
            to_tag: None,
            call_id: "cid",
            cseq: 7,
            contact: "sip:trunk@127.0.0.1:5060",
            retire: None,
            expires: 0,
            route: Some("<sip:proxy.test:5070;lr>"),
            auth: Some(("Authorization", "Digest x")),
            user_agent: "switchboard",
        });
        assert!(s.starts_with("REGISTER sip:example.test SIP/2.0\r\n"));
        assert!(s.contains("Contact: <sip:trunk@127.0.0.1:5060>;expires=0\r\n"));
        assert!(s.contains("Expires: 0\r\n"));
        assert!(s.contains("Route: <sip:proxy.test:5070;lr>\r\n"));
        assert!(s.contains("CSeq: 7 REGISTER\r\n"));
        assert!(s.ends_with("Content-Length: 0\r\n\r\n"));
        let r = parse_response(&format!(
            "SIP/2.0 200 OK\r\n{}",
            s.split_once("\r\n").unwrap().1
        ))
        .unwrap();
        assert_eq!(r.branch, "z9hG4bKx");
    }
}
