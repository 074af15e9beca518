//! `NOTIFY` with `Event: check-sync`, out of any dialog: tells a phone to fetch its
//! configuration again (Polycom, Yealink, Grandstream, Cisco and Linphone's remote
//! provisioning understand it), sent when a device's credentials rotate so that nobody has to
//! touch the phone. Sent once, without a client transaction: the phone's answer is dropped
//! with the other responses to requests we did not keep, and a lost one leaves the phone to
//! its next periodic check.

use super::core::{new_branch, new_tag, Hop};
use super::driver::Inner;
use crate::cluster::reach::Reach;
use crate::location::Binding;
use bytes::Bytes;
use std::net::SocketAddr;
use switchboard_crds::common::Transport;

impl Inner {
    /// See [`Proxy::check_sync`](super::Proxy::check_sync); the UDP socket is attached.
    pub(super) fn check_sync(&self, aor: &str, b: &Binding) -> bool {
        let reachable = match self.cluster.reach(&b.replica, b.transport) {
            Reach::Local if b.transport != Transport::Udp => {
                self.flows.transport_of(b.source) == Some(b.transport)
            }
            Reach::Local | Reach::Direct => true,
            Reach::Through(_) => b.transport == Transport::Udp,
            Reach::Stale => false,
        };
        if !reachable {
            tracing::debug!(contact = %b.contact, "check-sync: no way to the phone's flow from here");
            return false;
        }
        let hop = Hop {
            addr: b.source,
            transport: b.transport,
        };
        let via = self.via(&new_branch(), b.transport);
        let call_id = format!("{}-cs@{}", new_tag(), self.local().ip());
        let msg = request(&b.contact, aor, &via, &call_id, &new_tag(), self.local());
        self.send(Bytes::from(msg), hop);
        true
    }
}

/// The request: Request-URI the binding's contact, From and To the device's address of record.
pub(super) fn request(
    contact: &str,
    aor: &str,
    via: &str,
    call_id: &str,
    tag: &str,
    local: SocketAddr,
) -> String {
    format!(
        "NOTIFY {contact} SIP/2.0\r\n\
         Via: {via}\r\n\
         Max-Forwards: 70\r\n\
         From: <{aor}>;tag={tag}\r\n\
         To: <{aor}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 NOTIFY\r\n\
         Contact: <sip:{local}>\r\n\
         Event: check-sync\r\n\
         Subscription-State: terminated\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{check, parse, HeaderName, Parsed};

    #[test]
    fn the_request_passes_the_header_rules_a_phone_would_apply() {
        let local: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sb1;rport";
        let text = request(
            "sip:1001@192.0.2.9:5062;transport=udp",
            "sip:1001@switchboard.local",
            via,
            "c1@192.0.2.1",
            "t1",
            local,
        );
        let Ok(Parsed::Request(req)) = parse(text.as_bytes()) else {
            panic!("parses: {text}")
        };
        assert_eq!(req.uri, "sip:1001@192.0.2.9:5062;transport=udp");
        let event = HeaderName::Other("Event");
        assert_eq!(req.header(&event), Some("check-sync"));
        assert_eq!(
            req.header(&HeaderName::To),
            Some("<sip:1001@switchboard.local>")
        );
        let fields = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_ref()));
        assert!(check::headers(fields).is_ok());
    }
}
