//! Which peers are alive, from when each last answered a probe. Pure: the prober feeds it
//! answers and asks it at a given instant.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A peer as the tracker knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its SIP UDP address.
    pub addr: SocketAddr,
    /// When it last answered, if ever.
    pub last_answer: Option<Instant>,
}

/// The peers and their last answers.
#[derive(Clone, Debug)]
pub struct Liveness {
    peers: BTreeMap<String, Peer>,
    /// A peer silent for longer than this is dead.
    dead_after: Duration,
}

impl Liveness {
    /// No peers; a peer is dead once silent for `dead_after`.
    pub fn new(dead_after: Duration) -> Liveness {
        Liveness {
            peers: BTreeMap::new(),
            dead_after,
        }
    }

    /// Replaces the member list (from the static list or the EndpointSlices), keeping what is
    /// known of the peers that stay at the same address.
    pub fn set_members(&mut self, members: &[(String, SocketAddr)]) {
        let mut next = BTreeMap::new();
        for (name, addr) in members {
            let last_answer = self
                .peers
                .get(name)
                .filter(|p| p.addr == *addr)
                .and_then(|p| p.last_answer);
            next.insert(
                name.clone(),
                Peer {
                    addr: *addr,
                    last_answer,
                },
            );
        }
        self.peers = next;
    }

    /// Records an answer from `addr` at `at`; false when no member has that address.
    pub fn answered(&mut self, addr: SocketAddr, at: Instant) -> bool {
        let mut found = false;
        for p in self.peers.values_mut().filter(|p| p.addr == addr) {
            p.last_answer = Some(at);
            found = true;
        }
        found
    }

    /// Whether `name` is a member that answered within `dead_after` of `now`.
    pub fn is_live(&self, name: &str, now: Instant) -> bool {
        self.peers.get(name).is_some_and(|p| self.live_peer(p, now))
    }

    fn live_peer(&self, p: &Peer, now: Instant) -> bool {
        p.last_answer
            .is_some_and(|t| now.saturating_duration_since(t) <= self.dead_after)
    }

    /// The member named `name`.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.get(name)
    }

    /// The members, with whether each is live at `now`.
    pub fn members(&self, now: Instant) -> Vec<(String, SocketAddr, bool)> {
        self.peers
            .iter()
            .map(|(n, p)| (n.clone(), p.addr, self.live_peer(p, now)))
            .collect()
    }

    /// The members' addresses.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.peers.values().map(|p| p.addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_lives_while_it_answers() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:5060".parse().unwrap();
        let mut l = Liveness::new(Duration::from_millis(1500));
        l.set_members(&[("r2".into(), a), ("r3".into(), b)]);
        assert!(!l.is_live("r2", t0), "never answered: not live");
        assert!(l.answered(a, t0));
        assert!(!l.answered("127.0.0.9:5060".parse().unwrap(), t0));
        assert!(l.is_live("r2", t0 + Duration::from_millis(1500)));
        assert!(!l.is_live("r2", t0 + Duration::from_millis(1501)));
        assert!(!l.is_live("r3", t0));
        assert!(!l.is_live("nobody", t0));
        assert_eq!(
            l.members(t0),
            vec![("r2".into(), a, true), ("r3".into(), b, false)]
        );
        // A new member list keeps what is known of a peer at the same address, and forgets a
        // peer that moved.
        l.set_members(&[("r2".into(), a), ("r3".into(), a)]);
        assert!(l.is_live("r2", t0));
        assert!(!l.is_live("r3", t0));
    }
}
