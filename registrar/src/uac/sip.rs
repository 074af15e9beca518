//! The SIP a UAC needs, over the one owned message type ([`Msg`]): REGISTER/SUBSCRIBE requests
//! built as a `Msg` (written by its `encode`), and responses parsed by `Msg::parse` with the
//! reading the state machine needs on top (the branch matched on, the challenge, the expiry
//! granted, a notifier's remote target). Header values are read with `crate::message`'s lexer
//! (list splitting, compact names, Via, name-addr parameters), as the registrar and the proxy
//! read them; TCP/TLS flows are cut with `crate::message::framing`. A NOTIFY or OPTIONS from
//! the upstream is a request, read by the registrar's parser (`crate::message::parse`) so a
//! malformed one can be answered 400.

use super::machine::Reply;
use super::presence::Package;
use crate::auth::client::Challenge;
use crate::message::headers::NameAddrRef;
use crate::message::owned::{is_response, Name};
use crate::message::parse::split_headers;
use crate::message::{Msg, Start};
use bytes::Bytes;

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
    pub auth: Option<(&'static str, &'a str)>,
    /// User-Agent.
    pub user_agent: &'a str,
}

/// Writes the request.
pub fn build_request(r: &RequestSpec<'_>) -> Msg {
    let m = r.method.as_str();
    let mut headers: Vec<(Name, String)> = Vec::with_capacity(14);
    let mut add = |name: &'static str, value: String| headers.push((name.into(), value));
    add(
        "Via",
        format!(
            "SIP/2.0/{} {};branch={};rport",
            r.via_transport, r.via_sent_by, r.branch
        ),
    );
    add("Max-Forwards", "70".into());
    if let Some(route) = r.route {
        add("Route", route.into());
    }
    add("From", format!("<{}>;tag={}", r.aor, r.from_tag));
    add(
        "To",
        match r.to_tag {
            Some(t) => format!("<{}>;tag={t}", r.aor),
            None => format!("<{}>", r.aor),
        },
    );
    add("Call-ID", r.call_id.into());
    add("CSeq", format!("{} {m}", r.cseq));
    match r.method {
        Method::Register => {
            if let Some(old) = r.retire.filter(|old| *old != r.contact) {
                add("Contact", format!("<{old}>;expires=0"));
            }
            add("Contact", format!("<{}>;expires={}", r.contact, r.expires));
        }
        Method::Subscribe(package) => {
            add("Contact", format!("<{}>", r.contact));
            add("Event", package.event().into());
            add("Accept", package.accept().into());
        }
    }
    add("Expires", r.expires.to_string());
    if let Some((name, value)) = r.auth {
        add(name, value.into());
    }
    add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY".into());
    add("User-Agent", r.user_agent.into());
    Msg {
        start: Start::Request {
            method: m.into(),
            uri: r.uri.into(),
        },
        headers,
        body: Bytes::new(),
    }
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

/// Parses a response. Beyond what `Msg::parse` refuses, the header lines must be as the
/// registrar cuts them (`token: value`, at most 256, no continuation before the first) and a
/// CSeq must carry its method: such a response is dropped rather than half read.
pub fn parse_response(text: &str) -> Result<Msg, ParseError> {
    if !is_response(text.as_bytes()) {
        return Err(ParseError::NotResponse);
    }
    let msg = Msg::parse(text.as_bytes()).ok_or(ParseError::Malformed("message"))?;
    let head = text.split("\r\n\r\n").next().unwrap_or(text);
    let lines = head.split_once("\r\n").map_or("", |(_, lines)| lines);
    split_headers(lines.as_bytes()).map_err(ParseError::Malformed)?;
    if msg.header("CSeq").is_some() && msg.cseq().is_none() {
        return Err(ParseError::Malformed("CSeq"));
    }
    Ok(msg)
}

/// What a UAC reads of a response, over the owned message.
pub trait ResponseExt {
    /// The status code.
    fn code(&self) -> u16;
    /// The branch of the top Via; empty when the top Via is no via-parm (no transaction
    /// matches it).
    fn branch(&self) -> String;
    /// The expiry the registrar granted to `contact`: its `expires` parameter in the 200's
    /// Contact list, else the `Expires` header.
    fn granted_expires(&self, contact: &str) -> Option<u32>;
    /// What the state machine reads of this final response to a `method` request whose
    /// Contact was `contact`: the challenge of a 401/407 (the strongest one offered), the
    /// expiry granted.
    fn reply(&self, method: Method, contact: Option<&str>) -> Reply;
    /// The URI of the first Contact: a notifier's remote target (RFC 6665 §4.1.2.1).
    fn remote_target(&self) -> Option<String>;
    /// `"403 Forbidden"`.
    fn status_text(&self) -> String;
}

/// A header whose value is a number of seconds.
fn seconds(msg: &Msg, name: &str) -> Option<u32> {
    msg.header(name)?.parse().ok()
}

impl ResponseExt for Msg {
    fn code(&self) -> u16 {
        self.status().unwrap_or(0)
    }

    fn branch(&self) -> String {
        self.top_via()
            .and_then(|via| via.branch().map(str::to_string))
            .unwrap_or_default()
    }

    fn granted_expires(&self, contact: &str) -> Option<u32> {
        let ours = self
            .header_list("Contact")
            .iter()
            .filter_map(|c| NameAddrRef::parse(c))
            .find(|c| same_uri(c.uri, contact))
            .and_then(|c| c.param("expires").flatten())
            .and_then(|v| v.parse().ok());
        ours.or(seconds(self, "Expires"))
    }

    fn reply(&self, method: Method, contact: Option<&str>) -> Reply {
        let code = self.code();
        let offered = match code {
            401 => Some("WWW-Authenticate"),
            407 => Some("Proxy-Authenticate"),
            _ => None,
        };
        let challenge =
            offered.map(|name| Challenge::pick(self.headers_raw(name)).map_err(|e| e.to_string()));
        let granted = match method {
            Method::Register => contact.and_then(|c| self.granted_expires(c)),
            Method::Subscribe(_) => seconds(self, "Expires"),
        };
        let retry_after = self.header("Retry-After").and_then(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|v| v.parse().ok())
        });
        Reply {
            code,
            status_text: self.status_text(),
            challenge,
            granted,
            min_expires: seconds(self, "Min-Expires"),
            retry_after,
        }
    }

    fn remote_target(&self) -> Option<String> {
        let contacts = self.header_list("Contact");
        NameAddrRef::parse(contacts.first()?).map(|c| c.uri.to_string())
    }

    fn status_text(&self) -> String {
        match &self.start {
            Start::Response { status, reason } if !reason.trim().is_empty() => {
                format!("{status} {}", reason.trim())
            }
            _ => self.code().to_string(),
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
        assert_eq!(r.code(), 200);
        assert_eq!(r.status_text(), "200 OK");
        assert_eq!(r.call_id(), Some("cid-1"));
        assert_eq!(r.cseq(), Some((2, "REGISTER")));
        assert_eq!(r.branch(), "z9hG4bKabc");
        assert_eq!(r.to_tag().as_deref(), Some("srv"));
        assert_eq!(r.header_list("Contact").len(), 2);
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
        assert_eq!(r.headers_raw("WWW-Authenticate").count(), 2);
        let t = "SIP/2.0 423 Interval Too Brief\r\nCSeq: 3 REGISTER\r\nMin-Expires: 600\r\n\r\n";
        assert_eq!(
            parse_response(t)
                .unwrap()
                .reply(Method::Register, None)
                .min_expires,
            Some(600)
        );
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
        assert_eq!(r.branch(), "z9hG4bK7");
        assert_eq!(r.to_tag().as_deref(), Some("t1"));
        assert_eq!(r.header_list("Contact").len(), 2);
        assert_eq!(
            r.remote_target().as_deref(),
            Some("sip:n@10.0.0.2;transport=tcp")
        );
        assert_eq!(r.granted_expires("sip:n@10.0.0.2"), Some(90));
        assert_eq!(r.granted_expires("sip:o@x"), None);
        let bad_via = parse_response("SIP/2.0 200 OK\r\nVia: garbage;branch=z9hG4bK1\r\n\r\n");
        assert_eq!(bad_via.unwrap().branch(), "");
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
    fn drops_what_msg_parse_refuses() {
        // Where `Msg::parse` is stricter than the UAC's former reader: no empty line ending
        // the head, a Content-Length that is no number or exceeds the body received.
        let ok = "SIP/2.0 200 OK\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n";
        for bad in [
            ok.to_string(),
            format!("{ok}Content-Length: x\r\n\r\n"),
            format!("{ok}Content-Length: 5\r\n\r\nab"),
        ] {
            assert_eq!(
                parse_response(&bad),
                Err(ParseError::Malformed("message")),
                "{bad:?}"
            );
        }
        let r = parse_response(&format!("{ok}Content-Length: 2\r\n\r\nab")).unwrap();
        assert_eq!((r.code(), r.call_id()), (200, Some("c")));
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
        })
        .encode();
        let s = String::from_utf8(s.to_vec()).unwrap();
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
        assert_eq!(r.branch(), "z9hG4bKx");
    }
}
