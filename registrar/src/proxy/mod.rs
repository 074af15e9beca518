//! The stateful proxy (RFC 3261 §16) over the transaction machines of
//! [`crate::transaction::machine`].
//!
//! The proxy is split in two: a sans-IO core that takes every decision, and a driver that does
//! the I/O and the lookups around it (as [`crate::transaction::machine`] and
//! [`crate::uac::machine`] do for their layers).
//!
//! - [`core`]: decisions only, no socket, task, lock or clock: `Core` holds every transaction
//!   and call and is fed inputs (a request with where to answer it, a response, the time for
//!   due timers, the branches of a call the driver routed, the answer to a trunk's challenge);
//!   it leaves actions in an outbox (send, wake the timer task, log a call, count a drop, answer
//!   a challenge). Table tests in `core/tests.rs` drive it with a fake clock. Its files, under
//!   `core/`:
//!   - `server.rs`: server transactions, a request arriving (ACK, retransmission, CANCEL,
//!     Max-Forwards, Proxy-Require), the responses sent through them.
//!   - `client.rs`: client transactions (one per branch and per CANCEL), the responses they
//!     receive, the ACK for a non-2xx.
//!   - `calls.rs`: a call (a forked INVITE or MESSAGE) and its branches, the response choice
//!     of §16.7, the call log.
//!   - `cancel.rs`: CANCEL from the caller, CANCEL of a branch, the ring timeout.
//!   - `timers.rs`: the deadlines (transaction timers and ring timeouts), kept in `wheel.rs`.
//! - `driver.rs`: [`Proxy`], the async side: the UDP socket, the flows, the location store,
//!   digest checks, DNS and trunk connections, the timer task, metrics. It does the async work
//!   of a message first, then locks the core for one input, releases it, and carries out the
//!   actions (never awaiting or sending with the core locked). Its files add to `impl Inner`:
//!   - `request.rs`: a request arriving: handed to the core, then loose routing, requests
//!     inside a dialog.
//!   - `initial.rs`: an initial INVITE or MESSAGE: who is calling, routing, the targets.
//!   - `routes.rs`: our Record-Route and its token, Route popping, the next hop, the
//!     stateless ACK relay.
//!   - `auth.rs`: a device's digest (407), a trunk's challenge answered.
//!   - `trunk.rs`: TCP/TLS connections the proxy opens to trunks, calls from an upstream.
//!   - `notify.rs`: the check-sync `NOTIFY` that makes a phone fetch its configuration again.
//! - [`flows`]: the open TCP/TLS connections by peer, so the proxy can send into them.
//!
//! The message relayed is [`crate::message::Msg`] (headers kept verbatim, body untouched).
//!
//! What arrives here: every response, and INVITE, ACK, BYE, CANCEL, MESSAGE, UPDATE, INFO,
//! REFER and PRACK (see [`claims`]); REGISTER, OPTIONS, NOTIFY and unknown methods stay with
//! the registrar. Over UDP, TCP and TLS: a
//! request or response that came in on a connection is answered into it, and a binding
//! registered over TCP/TLS is rung through its connection while it is open on this replica. A
//! trunk on TCP/TLS is reached through a connection the proxy opens (or reuses) itself.

mod auth;
mod core;
mod driver;
pub mod flows;
mod initial;
mod notify;
mod request;
mod routes;
mod trunk;

pub use self::core::{Hop, ProxySettings};
use crate::message::owned as sip;
pub use driver::{Outbound, Proxy, StreamReader};
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
