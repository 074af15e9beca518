//! `received` and `rport` (RFC 3261 §18.2.1, RFC 3581): what the server writes into the top Via
//! of a response, and where a response over UDP goes, given the packet's source address.

use crate::message::address::ip_text;
use crate::message::headers::ViaRef;
use std::net::{IpAddr, SocketAddr};
use switchboard_crds::common::Transport;

/// The source address with IPv4-mapped IPv6 turned back into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The top Via of the response, with `received`/`rport` set, and where to send the response:
/// - `received=<source ip>` when the sent-by host is not the source IP, or when `rport` was asked;
/// - `rport=<source port>` when the client asked with a bare `rport`;
/// - the response goes to the source IP, at the source port when `rport` was asked, else at the
///   sent-by port (or the transport's default port).
///
/// For TCP/TLS the response goes back over the connection whatever the target says.
pub fn fix_top_via(via: &ViaRef, source: SocketAddr, transport: Transport) -> (String, SocketAddr) {
    let source = canonical(source);
    let rport = via.has_rport();
    let same_ip = via
        .host
        .parse::<IpAddr>()
        .map(|ip| ip == source.ip())
        .unwrap_or(false);
    let received = (!same_ip || rport).then(|| ip_text(source.ip()));
    let mut digits = itoa::Buffer::new();
    let (rport, target) = if rport {
        (Some(digits.format(source.port())), source)
    } else {
        let port = via.port.unwrap_or(transport.default_port());
        (None, SocketAddr::new(source.ip(), port))
    };
    (via.written_back(received.as_deref(), rport), target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top Via written back for a request with top Via `via` from `source` over UDP.
    fn fixed(via: &str, source: &str) -> (String, SocketAddr) {
        let via = ViaRef::parse_first(via).unwrap();
        fix_top_via(&via, source.parse().unwrap(), Transport::Udp)
    }

    #[test]
    fn same_host_no_rport_changes_nothing() {
        let (v, t) = fixed(
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1",
            "192.0.2.1:5070",
        );
        assert_eq!(v, "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1");
        assert_eq!(t, "192.0.2.1:5070".parse().unwrap());
    }

    #[test]
    fn nat_without_rport_gets_received_and_sent_by_port() {
        // RFC 3261 §18.2.1 example.
        let (v, t) = fixed(
            "SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bK1",
            "192.0.2.4:9999",
        );
        assert_eq!(
            v,
            "SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bK1;received=192.0.2.4"
        );
        assert_eq!(t, "192.0.2.4:5060".parse().unwrap());
        let via = ViaRef::parse_first("SIP/2.0/TLS host;branch=z9hG4bK1").unwrap();
        let (_, t) = fix_top_via(&via, "192.0.2.4:9999".parse().unwrap(), Transport::Tls);
        assert_eq!(t.port(), 5061);
    }

    #[test]
    fn rport_sends_back_to_the_source_port() {
        // RFC 3581 §4 example.
        let (v, t) = fixed(
            "SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff",
            "192.0.2.1:9988",
        );
        assert_eq!(
            v,
            "SIP/2.0/UDP 10.1.1.1:4540;rport=9988;branch=z9hG4bKkjshdyff;received=192.0.2.1"
        );
        assert_eq!(t, "192.0.2.1:9988".parse().unwrap());
        // rport asked from a client that is not behind NAT: received is still added.
        let (v, _) = fixed("SIP/2.0/UDP 192.0.2.1:9988;rport", "192.0.2.1:9988");
        assert_eq!(
            v,
            "SIP/2.0/UDP 192.0.2.1:9988;rport=9988;received=192.0.2.1"
        );
    }

    /// A `received` (and `rport`) already there is replaced where it stands; the other
    /// parameters, the transport and the host are written back as the client wrote them.
    #[test]
    fn present_parameters_are_replaced_in_place() {
        let (v, _) = fixed(
            "SIP/2.0/udp Phone.Example:5062 ; Received=1.2.3.4 ;RPort;x-Flag; branch = z9hG4bKq",
            "192.0.2.7:7000",
        );
        assert_eq!(
            v,
            "SIP/2.0/udp Phone.Example:5062;received=192.0.2.7;rport=7000;x-Flag; branch = z9hG4bKq"
        );
        // In the other order, and a received given with no rport asked.
        let (v, _) = fixed(
            "SIP/2.0/UDP a.test;rport;x;received=9.9.9.9",
            "192.0.2.7:7000",
        );
        assert_eq!(v, "SIP/2.0/UDP a.test;rport=7000;x;received=192.0.2.7");
        let (v, _) = fixed("SIP/2.0/UDP a.test;received=9.9.9.9;x", "192.0.2.7:7000");
        assert_eq!(v, "SIP/2.0/UDP a.test;received=192.0.2.7;x");
    }

    #[test]
    fn ipv6_and_mapped_sources() {
        let (v, t) = fixed("SIP/2.0/UDP [2001:db8::9]:5060;rport", "[2001:db8::1]:6000");
        assert_eq!(
            v,
            "SIP/2.0/UDP [2001:db8::9]:5060;rport=6000;received=2001:db8::1"
        );
        assert_eq!(t, "[2001:db8::1]:6000".parse().unwrap());
        let (v, t) = fixed("SIP/2.0/UDP 192.0.2.1:5060", "[::ffff:192.0.2.1]:5060");
        assert_eq!(v, "SIP/2.0/UDP 192.0.2.1:5060");
        assert_eq!(t, "192.0.2.1:5060".parse().unwrap());
    }
}
