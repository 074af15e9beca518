//! What a WebSocket opening handshake must carry to be SIP (RFC 7118 §4.1): the `sip`
//! subprotocol offered, and, when an allow-list is set, an Origin on it. Pure: the transport
//! hands in the request's headers and answers with what this decides.

/// The subprotocol SIP over WebSocket negotiates (RFC 7118 §4.1).
pub const SUBPROTOCOL: &str = "sip";

/// Which handshakes are accepted.
#[derive(Clone, Debug, Default)]
pub struct WebSocketPolicy {
    /// Origins (`https://phone.example.com`) whose pages may connect; empty: any. A handshake
    /// without Origin (not from a browser: a desk softphone, a test tool) is not a page's, so
    /// the list does not apply to it.
    pub allowed_origins: Vec<String>,
}

/// Why a handshake is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `Sec-WebSocket-Protocol` does not offer `sip`.
    NoSipSubprotocol,
    /// The page's Origin is not on the allow-list.
    OriginNotAllowed(String),
}

impl Refusal {
    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NoSipSubprotocol => 400,
            Refusal::OriginNotAllowed(_) => 403,
        }
    }

    /// The body answered: what is wrong and what to do.
    pub fn explain(&self) -> String {
        match self {
            Refusal::NoSipSubprotocol => {
                "this is a SIP server: offer the WebSocket subprotocol \"sip\" (RFC 7118)".into()
            }
            Refusal::OriginNotAllowed(o) => {
                format!("origin {o} may not connect: add it to the registrar's --ws-allowed-origin")
            }
        }
    }
}

/// Checks a handshake: `protocols` are the values of its `Sec-WebSocket-Protocol` headers
/// (each a comma-separated list), `origin` its Origin.
pub fn check<'a>(
    protocols: impl IntoIterator<Item = &'a str>,
    origin: Option<&str>,
    policy: &WebSocketPolicy,
) -> Result<(), Refusal> {
    let offers_sip = protocols
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        return Err(Refusal::NoSipSubprotocol);
    }
    match origin {
        Some(o)
            if !policy.allowed_origins.is_empty()
                && !policy
                    .allowed_origins
                    .iter()
                    .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o.trim())) =>
        {
            Err(Refusal::OriginNotAllowed(o.trim().to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowing(origins: &[&str]) -> WebSocketPolicy {
        WebSocketPolicy {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_sip_subprotocol_must_be_offered() {
        let any = WebSocketPolicy::default();
        assert_eq!(check(["sip"], None, &any), Ok(()));
        assert_eq!(check(["chat, SIP"], None, &any), Ok(()));
        assert_eq!(check(["chat", " sip "], None, &any), Ok(()));
        assert_eq!(check([], None, &any), Err(Refusal::NoSipSubprotocol));
        assert_eq!(
            check(["sips, chat"], None, &any),
            Err(Refusal::NoSipSubprotocol)
        );
        assert_eq!(Refusal::NoSipSubprotocol.status(), 400);
    }

    #[test]
    fn an_allow_list_admits_only_its_origins() {
        let any = WebSocketPolicy::default();
        assert_eq!(check(["sip"], Some("https://evil.test"), &any), Ok(()));
        let list = allowing(&["https://phone.example.com/", "http://localhost:8080"]);
        assert_eq!(
            check(["sip"], Some("https://PHONE.example.com"), &list),
            Ok(())
        );
        assert_eq!(check(["sip"], Some("http://localhost:8080"), &list), Ok(()));
        let refused = check(["sip"], Some("https://evil.test"), &list).unwrap_err();
        assert_eq!(
            refused,
            Refusal::OriginNotAllowed("https://evil.test".into())
        );
        assert_eq!(refused.status(), 403);
        assert!(refused.explain().contains("--ws-allowed-origin"));
        // Not a browser: no Origin, nothing to check it against.
        assert_eq!(check(["sip"], None, &list), Ok(()));
    }
}
