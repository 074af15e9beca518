//! How to reach a phone from this replica, given the replica that holds its flow. Pure.

use std::net::SocketAddr;
use switchboard_crds::common::Transport;

/// The way to a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Its flow is here: UDP from our socket, TCP/TLS through our connection.
    Local,
    /// Its flow is held by a live sibling at this address: the request goes through it.
    Through(SocketAddr),
    /// Its replica is gone, but it registered over UDP: send from here, to its address.
    Direct,
    /// Its replica is gone with its TCP/TLS connection: unreachable until it re-registers.
    Stale,
}

/// What `peer` (the holder's address and liveness, `None` when it is not a member) means for a
/// binding over `transport` held by `holder`, seen from replica `me`.
pub fn reach(
    holder: &str,
    transport: Transport,
    me: &str,
    peer: Option<(SocketAddr, bool)>,
) -> Reach {
    if holder == me {
        return Reach::Local;
    }
    match peer {
        Some((addr, true)) => Reach::Through(addr),
        _ if transport == Transport::Udp => Reach::Direct,
        _ => Reach::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_by_holder_and_transport() {
        let b: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        assert_eq!(reach("a", Transport::Tcp, "a", None), Reach::Local);
        assert_eq!(
            reach("b", Transport::Udp, "a", Some((b, true))),
            Reach::Through(b)
        );
        assert_eq!(
            reach("b", Transport::Tls, "a", Some((b, true))),
            Reach::Through(b)
        );
        assert_eq!(
            reach("b", Transport::Udp, "a", Some((b, false))),
            Reach::Direct
        );
        assert_eq!(reach("gone", Transport::Udp, "a", None), Reach::Direct);
        assert_eq!(
            reach("b", Transport::Tcp, "a", Some((b, false))),
            Reach::Stale
        );
        assert_eq!(reach("gone", Transport::Tls, "a", None), Reach::Stale);
    }
}
