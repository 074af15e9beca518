//! Who handles a message: the one list of handlers, chosen from the first word of the start line
//! before anything else is parsed (the proxy parses its messages itself).

use crate::proxy;

/// The handlers of the service, one per kind of message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// REGISTER: the registrar (`service/register.rs`).
    Registrar,
    /// Every response and the methods the proxy relays (INVITE, ACK, BYE, CANCEL, MESSAGE,
    /// UPDATE, INFO, REFER, PRACK; [`proxy::claims`]): the proxy, which answers by itself.
    /// Until its socket is attached such a request gets [`Handler::Unsupported`]'s 405.
    Proxy,
    /// OPTIONS: 200 with what this registrar allows (`service/options.rs`).
    Options,
    /// NOTIFY: 200 (`service/notify.rs`).
    Notify,
    /// Anything else. An unknown method is answered 501 by the parser (`message::parse`), as
    /// is a request it cannot read (400, 505, 513) when its headers can be; a known method
    /// nobody here serves (PUBLISH, SUBSCRIBE) gets 405 with `Allow`. Keepalives and garbage
    /// get nothing.
    Unsupported,
}

/// The handler of a message (a datagram, or one frame of a stream), from its first bytes.
/// Leading CRLFs are skipped as the parser skips them (RFC 3261 §7.5), so the method read here
/// is the one it reads; the proxy's claim is taken as [`proxy::claims`] makes it.
pub fn route(data: &[u8]) -> Handler {
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .map_or(&[][..], |i| &data[i..]);
    match start.split(|&b| b == b' ').next() {
        Some(b"REGISTER") => Handler::Registrar,
        Some(b"OPTIONS") => Handler::Options,
        Some(b"NOTIFY") => Handler::Notify,
        _ if proxy::claims(data) => Handler::Proxy,
        _ => Handler::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::{route, Handler};

    #[test]
    fn one_handler_per_start() {
        let table: &[(&[u8], Handler)] = &[
            (b"REGISTER sip:x SIP/2.0\r\n", Handler::Registrar),
            (b"\r\n\r\nREGISTER sip:x SIP/2.0\r\n", Handler::Registrar),
            (b"OPTIONS sip:x SIP/2.0\r\n", Handler::Options),
            (b"NOTIFY sip:x SIP/2.0\r\n", Handler::Notify),
            (b"SIP/2.0 200 OK\r\n", Handler::Proxy),
            (b"SIP/2.0 401 Unauthorized\r\n", Handler::Proxy),
            (b"INVITE sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"ACK sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"BYE sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"CANCEL sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"MESSAGE sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"UPDATE sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"INFO sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"REFER sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"PRACK sip:x SIP/2.0\r\n", Handler::Proxy),
            (b"PUBLISH sip:x SIP/2.0\r\n", Handler::Unsupported),
            (b"SUBSCRIBE sip:x SIP/2.0\r\n", Handler::Unsupported),
            (b"FOO sip:x SIP/2.0\r\n", Handler::Unsupported),
            // Methods are case-sensitive (RFC 3261 §7.1): the parser answers 501.
            (b"register sip:x SIP/2.0\r\n", Handler::Unsupported),
            (b"REGISTERED sip:x SIP/2.0\r\n", Handler::Unsupported),
            (b"REGISTER", Handler::Registrar),
            // As the proxy claims them: from the very first byte.
            (b"\r\nINVITE sip:x SIP/2.0\r\n", Handler::Unsupported),
            (b"\r\n\r\n", Handler::Unsupported),
            (b"", Handler::Unsupported),
            (b"\x00\x01garbage", Handler::Unsupported),
        ];
        for (data, handler) in table {
            assert_eq!(route(data), *handler, "{:?}", String::from_utf8_lossy(data));
        }
    }

    /// The route agrees with the method the parser reads.
    #[test]
    fn agrees_with_the_parser() {
        use crate::message::{parse, Method, Parsed};
        let request = |m: &str| {
            format!(
                "\r\n{m} sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 {m}\r\n\r\n"
            )
        };
        for (method, handler) in [
            (Method::Register, Handler::Registrar),
            (Method::Options, Handler::Options),
            (Method::Notify, Handler::Notify),
        ] {
            let text = request(method.as_str());
            let Ok(Parsed::Request(r)) = parse(text.as_bytes()) else {
                panic!("{text}");
            };
            assert_eq!((r.method, route(text.as_bytes())), (method, handler));
        }
    }
}
