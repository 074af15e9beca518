//! `received` and `rport` (RFC 3261 §18.2.1, RFC 3581): what the server writes into the top Via
//! of a response, and where a response over UDP goes, given the packet's source address.

use crate::message::address::ip_text;
use crate::message::headers::Via;
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

/// Sets `received`/`rport` on the top Via and says where to send the response:
/// - `received=<source ip>` when the sent-by host is not the source IP, or when `rport` was asked;
/// - `rport=<source port>` when the client asked with a bare `rport`;
/// - the response goes to the source IP, at the source port when `rport` was asked, else at the
///   sent-by port (or the transport's default port).
///
/// For TCP/TLS the response goes back over the connection whatever the target says.
pub fn fix_top_via(mut via: Via, source: SocketAddr, transport: Transport) -> (Via, SocketAddr) {
    let source = canonical(source);
    let rport = via.param("rport").is_some();
    let same_ip = via
        .host
        .parse::<IpAddr>()
        .map(|ip| ip == source.ip())
        .unwrap_or(false);
    if !same_ip || rport {
        via.set_param("received", Some(ip_text(source.ip())));
    }
    let target = if rport {
        via.set_param(
            "rport",
            Some(itoa::Buffer::new().format(source.port()).to_owned()),
        );
        source
    } else {
        SocketAddr::new(source.ip(), via.port.unwrap_or(transport.default_port()))
    };
    (via, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &str) -> Via {
        Via::parse_first(s).unwrap()
    }

    #[test]
    fn same_host_no_rport_changes_nothing() {
        let (v, t) = fix_top_via(
            via("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1"),
            "192.0.2.1:5070".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(
            v.to_header_value(),
            "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1"
        );
        assert_eq!(t, "192.0.2.1:5070".parse().unwrap());
    }

    #[test]
    fn nat_without_rport_gets_received_and_sent_by_port() {
        // RFC 3261 §18.2.1 example.
        let (v, t) = fix_top_via(
            via("SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bK1"),
            "192.0.2.4:9999".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(v.param("received"), Some(Some("192.0.2.4")));
        assert_eq!(t, "192.0.2.4:5060".parse().unwrap());
        let (_, t) = fix_top_via(
            via("SIP/2.0/TLS host;branch=z9hG4bK1"),
            "192.0.2.4:9999".parse().unwrap(),
            Transport::Tls,
        );
        assert_eq!(t.port(), 5061);
    }

    #[test]
    fn rport_sends_back_to_the_source_port() {
        // RFC 3581 §4 example.
        let (v, t) = fix_top_via(
            via("SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff"),
            "192.0.2.1:9988".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(
            v.to_header_value(),
            "SIP/2.0/UDP 10.1.1.1:4540;rport=9988;branch=z9hG4bKkjshdyff;received=192.0.2.1"
        );
        assert_eq!(t, "192.0.2.1:9988".parse().unwrap());
        // rport asked from a client that is not behind NAT: received is still added.
        let (v, _) = fix_top_via(
            via("SIP/2.0/UDP 192.0.2.1:9988;rport"),
            "192.0.2.1:9988".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(v.param("received"), Some(Some("192.0.2.1")));
    }

    #[test]
    fn ipv6_and_mapped_sources() {
        let (v, t) = fix_top_via(
            via("SIP/2.0/UDP [2001:db8::9]:5060;rport"),
            "[2001:db8::1]:6000".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(v.param("received"), Some(Some("2001:db8::1")));
        assert_eq!(t, "[2001:db8::1]:6000".parse().unwrap());
        let (v, t) = fix_top_via(
            via("SIP/2.0/UDP 192.0.2.1:5060"),
            "[::ffff:192.0.2.1]:5060".parse().unwrap(),
            Transport::Udp,
        );
        assert_eq!(v.param("received"), None);
        assert_eq!(t, "192.0.2.1:5060".parse().unwrap());
    }
}
