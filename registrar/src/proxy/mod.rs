//! The stateful proxy (RFC 3261 §16) over the transaction machines of
//! [`crate::transaction::machine`].
//!
//! - [`flows`]: the open TCP/TLS connections by peer, so the proxy can send into them.
//! - [`core`]: the proxy core's state (one mutex over every transaction and call) and the
//!   dispatch of a message; the files below each add their part of `impl Inner`:
//!   - `timers.rs`: the deadline heap and its task (transaction timers, ring timeouts).
//!   - `server.rs`: server transactions, the responses sent through them.
//!   - `client.rs`: client transactions (one per branch), the responses they receive.
//!   - `calls.rs`: a call (a forked INVITE or MESSAGE) and its branches, the response choice
//!     of §16.7, the call log.
//!   - `cancel.rs`: CANCEL from the caller, CANCEL of a branch, the ring timeout.
//!   - `request.rs`: a request arriving: ACK, retransmissions, Max-Forwards, loose routing,
//!     requests inside a dialog.
//!   - `initial.rs`: an initial INVITE or MESSAGE: who is calling, routing, the targets.
//!   - `routes.rs`: our Record-Route and its token, Route popping, the next hop, the
//!     stateless ACK relay.
//!   - `auth.rs`: a device's digest (407), a trunk's challenge answered.
//!   - `trunk.rs`: TCP/TLS connections the proxy opens to trunks, calls from an upstream.
//!   - `notify.rs`: the check-sync `NOTIFY` that makes a phone fetch its configuration again.
//!
//! What arrives here: every response, and INVITE, ACK, BYE, CANCEL, MESSAGE, UPDATE, INFO,
//! REFER and PRACK (see [`claims`]); REGISTER, OPTIONS, NOTIFY and unknown methods stay with
//! the registrar. Over UDP, TCP and TLS: a
//! request or response that came in on a connection is answered into it, and a binding
//! registered over TCP/TLS is rung through its connection while it is open on this replica. A
//! trunk on TCP/TLS is reached through a connection the proxy opens (or reuses) itself.

mod auth;
mod calls;
mod cancel;
mod client;
pub mod core;
pub mod flows;
mod initial;
mod notify;
mod request;
mod routes;
mod server;
mod timers;
mod trunk;

pub use self::core::{Hop, Outbound, Proxy, ProxySettings, StreamReader};
use crate::message::owned as sip;
pub use flows::{FlowGuard, Flows};

/// Whether the proxy takes this message (a response, or a request of a method the proxy
/// relays). Cheap: looks at the first bytes only.
pub fn claims(data: &[u8]) -> bool {
    if sip::is_response(data) {
        return true;
    }
    matches!(
        sip::method_token(data),
        Some(
            b"INVITE"
                | b"ACK"
                | b"BYE"
                | b"CANCEL"
                | b"MESSAGE"
                | b"UPDATE"
                | b"INFO"
                | b"REFER"
                | b"PRACK"
        )
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn claims_calls_and_responses_only() {
        assert!(super::claims(b"INVITE sip:x SIP/2.0\r\n"));
        assert!(super::claims(b"BYE sip:x SIP/2.0\r\n"));
        assert!(super::claims(b"SIP/2.0 200 OK\r\n"));
        assert!(!super::claims(b"REGISTER sip:x SIP/2.0\r\n"));
        assert!(!super::claims(b"OPTIONS sip:x SIP/2.0\r\n"));
        assert!(!super::claims(b"\r\n\r\n"));
        assert!(
            !super::claims(b"FOO sip:x SIP/2.0\r\n"),
            "501 from the registrar"
        );
    }
}
