//! The replicas of one registrar installation: who they are, which are alive, who owns what,
//! and how to reach a phone whose flow another replica holds.
//!
//! - Membership comes from a static list (`--peer NAME=IP:PORT`, standalone) or, in a cluster,
//!   from the ready endpoints of the registrar Service's EndpointSlices ([`endpoints`]).
//! - Liveness is one mechanism for both: every replica sends each member a SIP OPTIONS twice a
//!   second over UDP ([`probe`]) and a member silent for [`DEAD_AFTER`] is dead
//!   ([`liveness`]). Readiness in Kubernetes lags by the probe period and the endpoints
//!   controller; the OPTIONS see a killed replica within 1.5 s.
//! - Ownership of outbound registrations: rendezvous hashing over the live replicas
//!   ([`rendezvous`]), so every replica agrees without talking and only a dead replica's keys
//!   move.
//! - Reaching a phone ([`reach`]): through the live replica holding its flow, or, when that
//!   replica is gone, directly over UDP; a TCP/TLS binding of a gone replica is stale until
//!   the phone re-registers.
//!
//! One replica alone (no members) owns everything and reaches every binding locally.

pub mod endpoints;
pub mod liveness;
pub mod probe;
pub mod reach;
pub mod rendezvous;

use liveness::Liveness;
use parking_lot::RwLock;
use reach::Reach;
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;
use tokio::sync::watch;

/// How often each member is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// A member silent this long is dead (three probes unanswered).
pub const DEAD_AFTER: Duration = Duration::from_millis(1500);

/// One member as `/debug/cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Replica name.
    pub name: String,
    /// SIP UDP address.
    pub address: SocketAddr,
    /// Whether it answers.
    pub live: bool,
}

struct Inner {
    me: String,
    liveness: RwLock<Liveness>,
    live: RwLock<BTreeSet<String>>,
    settled: AtomicBool,
    /// Whether the member list names this replica too (EndpointSlices do, the static list
    /// need not), and so whether this replica may own anything only while it is listed.
    listed_only: AtomicBool,
    /// Listed (always true for a static list).
    listed: AtomicBool,
    changes: watch::Sender<u64>,
}

/// The cluster as this replica sees it; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.inner.me)
            .field("live", &*self.inner.live.read())
            .finish()
    }
}

impl Cluster {
    /// This replica, `me`, with no members yet. Until [`Cluster::settle`] it owns nothing: a
    /// replica joining must learn who is alive before it takes any registration.
    pub fn new(me: impl Into<String>) -> Cluster {
        let me = me.into();
        Cluster {
            inner: Arc::new(Inner {
                live: RwLock::new(BTreeSet::from([me.clone()])),
                me,
                liveness: RwLock::new(Liveness::new(DEAD_AFTER)),
                settled: AtomicBool::new(false),
                listed_only: AtomicBool::new(false),
                listed: AtomicBool::new(true),
                changes: watch::channel(0).0,
            }),
        }
    }

    /// A replica with no siblings: settled at once, owns everything.
    pub fn alone(me: impl Into<String>) -> Cluster {
        let c = Cluster::new(me);
        c.settle();
        c
    }

    /// This replica's name.
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// Says the first round of probes is over: ownership is decided from here on.
    pub fn settle(&self) {
        if !self.inner.settled.swap(true, Ordering::SeqCst) {
            self.bump();
        }
    }

    /// Whether ownership is decided yet.
    pub fn is_settled(&self) -> bool {
        self.inner.settled.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|v| *v += 1);
    }

    /// A receiver that changes whenever the live set (or settledness) changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Says the member lists to come name this replica while it serves (its Service's ready
    /// endpoints), and that it owns nothing while they do not: its siblings, which learn of
    /// it from the same lists, do not count it yet either.
    pub fn own_only_when_listed(&self) {
        self.inner.listed_only.store(true, Ordering::SeqCst);
        self.inner.listed.store(false, Ordering::SeqCst);
        self.refresh(Instant::now());
    }

    /// Replaces the members (itself excluded, by name).
    pub fn set_members(&self, members: &[(String, SocketAddr)]) {
        if self.inner.listed_only.load(Ordering::SeqCst) {
            let listed = members.iter().any(|(n, _)| *n == self.inner.me);
            self.inner.listed.store(listed, Ordering::SeqCst);
        }
        let others: Vec<(String, SocketAddr)> = members
            .iter()
            .filter(|(n, _)| *n != self.inner.me)
            .cloned()
            .collect();
        self.inner.liveness.write().set_members(&others);
        self.refresh(Instant::now());
    }

    /// Records a probe answer from `addr`.
    pub fn answered(&self, addr: SocketAddr, at: Instant) {
        if self.inner.liveness.write().answered(addr, at) {
            self.refresh(at);
        }
    }

    /// Recomputes the live set at `now`; notifies subscribers when it changed.
    pub fn refresh(&self, now: Instant) {
        let mut live: BTreeSet<String> = self
            .inner
            .liveness
            .read()
            .members(now)
            .into_iter()
            .filter(|m| m.2)
            .map(|m| m.0)
            .collect();
        if self.inner.listed.load(Ordering::SeqCst) {
            live.insert(self.inner.me.clone());
        }
        let mut cur = self.inner.live.write();
        if *cur != live {
            let gone: Vec<&String> = cur.difference(&live).collect();
            let came: Vec<&String> = live.difference(&cur).collect();
            tracing::info!(
                ?gone,
                ?came,
                live = live.len(),
                "cluster membership changed"
            );
            *cur = live;
            drop(cur);
            self.bump();
        }
    }

    /// The live replicas, this one included (unless it waits to be listed), sorted.
    pub fn live_replicas(&self) -> Vec<String> {
        self.inner.live.read().iter().cloned().collect()
    }

    /// The live replica owning `key` (rendezvous hashing).
    pub fn owner(&self, key: &str) -> String {
        let live = self.inner.live.read();
        rendezvous::owner(key, live.iter().map(String::as_str))
            .unwrap_or(&self.inner.me)
            .to_string()
    }

    /// Whether this replica owns `key` now (never before it is settled, nor while it waits
    /// to be listed).
    pub fn owns(&self, key: &str) -> bool {
        self.is_settled()
            && self.inner.listed.load(Ordering::SeqCst)
            && self.owner(key) == self.inner.me
    }

    /// A member's address and whether it is live.
    pub fn peer(&self, name: &str) -> Option<(SocketAddr, bool)> {
        let live = self.inner.live.read().contains(name);
        self.inner
            .liveness
            .read()
            .peer(name)
            .map(|p| (p.addr, live))
    }

    /// How to reach a binding over `transport` whose flow `holder` holds.
    pub fn reach(&self, holder: &str, transport: Transport) -> Reach {
        if holder == self.inner.me {
            return Reach::Local;
        }
        reach::reach(holder, transport, &self.inner.me, self.peer(holder))
    }

    /// Whether `addr` is a live sibling's SIP address (its Record-Route is its own, not ours).
    pub fn is_live_peer_addr(&self, addr: SocketAddr) -> bool {
        let liveness = self.inner.liveness.read();
        self.inner
            .live
            .read()
            .iter()
            .any(|name| liveness.peer(name).is_some_and(|p| p.addr == addr))
    }

    /// The members' addresses (what the prober sends to).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.inner.liveness.read().addresses()
    }

    /// The members, for `/debug/cluster`.
    pub fn members(&self) -> Vec<MemberView> {
        let live = self.inner.live.read();
        self.inner
            .liveness
            .read()
            .members(Instant::now())
            .into_iter()
            .map(|(name, address, _)| MemberView {
                live: live.contains(&name),
                name,
                address,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_waits_for_settling_and_follows_liveness() {
        let c = Cluster::new("r1");
        let mut rx = c.subscribe();
        assert!(!c.owns("ns/reg"), "not settled: owns nothing");
        let r2: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        c.set_members(&[
            ("r1".into(), "127.0.0.1:5060".parse().unwrap()),
            ("r2".into(), r2),
        ]);
        assert_eq!(c.addresses(), vec![r2], "itself is not a member");
        let t0 = Instant::now();
        c.answered(r2, t0);
        c.settle();
        assert!(rx.has_changed().unwrap());
        assert_eq!(c.live_replicas(), vec!["r1", "r2"]);
        // Some keys are r2's while it lives, and all are r1's once it is dead.
        let keys: Vec<String> = (0..50).map(|i| format!("ns/reg-{i}")).collect();
        let theirs: Vec<&String> = keys.iter().filter(|k| !c.owns(k)).collect();
        assert!(!theirs.is_empty() && theirs.len() < keys.len());
        assert_eq!(
            c.reach("r2", Transport::Tcp),
            Reach::Through(r2),
            "a live sibling's flow is reached through it"
        );
        assert!(c.is_live_peer_addr(r2));
        rx.borrow_and_update();
        c.refresh(t0 + DEAD_AFTER + Duration::from_millis(1));
        assert!(rx.has_changed().unwrap());
        assert_eq!(c.live_replicas(), vec!["r1"]);
        assert!(keys.iter().all(|k| c.owns(k)));
        assert_eq!(c.reach("r2", Transport::Tcp), Reach::Stale);
        assert_eq!(c.reach("r2", Transport::Udp), Reach::Direct);
        assert_eq!(c.reach("r1", Transport::Tcp), Reach::Local);
        assert!(!c.is_live_peer_addr(r2));
        assert_eq!(
            c.members(),
            vec![MemberView {
                name: "r2".into(),
                address: r2,
                live: false
            }]
        );
    }

    #[test]
    fn a_replica_listed_by_its_service_owns_nothing_until_listed() {
        let c = Cluster::new("pod-a");
        c.own_only_when_listed();
        c.settle();
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        c.set_members(&[("pod-b".into(), b)]);
        c.answered(b, Instant::now());
        assert_eq!(c.live_replicas(), vec!["pod-b"]);
        assert!(!c.owns("ns/reg"), "not a ready endpoint yet");
        c.set_members(&[
            ("pod-a".into(), "10.0.0.1:5060".parse().unwrap()),
            ("pod-b".into(), b),
        ]);
        assert_eq!(c.live_replicas(), vec!["pod-a", "pod-b"]);
        let keys: Vec<String> = (0..20).map(|i| format!("ns/reg-{i}")).collect();
        assert!(keys.iter().any(|k| c.owns(k)));
    }

    #[test]
    fn alone_owns_everything() {
        let c = Cluster::alone("solo");
        assert!(c.owns("any/thing"));
        assert_eq!(c.reach("other", Transport::Udp), Reach::Direct);
    }
}
