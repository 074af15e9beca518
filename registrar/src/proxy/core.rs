//! The proxy core, sans-IO: every decision of the stateful proxy (RFC 3261 §16) over its
//! transactions and calls, with no socket, task, lock or clock of its own. The driver
//! ([`super::driver`]) feeds it what happened (a request or response with where it came from,
//! the current time for due timers, the answer to a trunk's challenge) and carries out the
//! [`Action`]s it leaves in its outbox: bytes to send, a timer to wake for, a call to log, a
//! drop to count. What needs configuration or a lookup (who the caller is, routing, the
//! location store, Record-Route, DNS, opening a connection) is done by the driver before it
//! hands the core the branches of a call; the core never waits.
//!
//! Its files each add their part of `impl Core`:
//! - `server.rs`: server transactions, the responses sent through them, and a request arriving
//!   (ACK, retransmission, CANCEL, Max-Forwards, Proxy-Require).
//! - `client.rs`: client transactions (one per branch and per CANCEL), the responses they
//!   receive, the ACK for a non-2xx.
//! - `calls.rs`: a call and its branches, the response choice of §16.7, the call log.
//! - `cancel.rs`: CANCEL from the caller, CANCEL of a branch, the ring timeout.
//! - `timers.rs`: the deadlines (transaction timers and ring timeouts), kept in `wheel.rs`.
//!
//! **Responses** (§16.7): 100 absorbed; other provisionals relayed; every 2xx relayed at once
//! and the other branches CANCELled; 6xx ends the call and cancels the rest; otherwise the best
//! final response is relayed when every branch is done (lowest class, 503 → 500), 408 when
//! none answered, 480 when the ring timeout cancelled them. A trunk branch challenged with
//! 401/407 is handed to the driver ([`Action::Challenged`]), which retries it once with the
//! registration's credentials (same CSeq, new branch) through [`Core::reauth`].

// The core's files name the message type through this, as the driver's do.
use crate::message::Msg;
use crate::transaction::machine::Timers;
use bytes::Bytes;
use calls::Call;
use client::ClientTx;
use foldhash::HashMap;
use server::ServerTx;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;

mod calls;
mod cancel;
mod client;
mod server;
#[cfg(test)]
mod tests;
mod timers;
mod wheel;

pub(super) use calls::CallLog;
pub(super) use server::{Arrival, ViaKey};

/// Proxy settings.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// How long an INVITE may ring before every branch is cancelled (480).
    pub ring_timeout: Duration,
    /// T1, T2, T4.
    pub timers: Timers,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            ring_timeout: Duration::from_secs(60),
            timers: Timers::default(),
        }
    }
}

/// Where a message goes: an address and the transport (UDP, or the TCP/TLS flow to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The address (for TCP/TLS: the peer of an open flow).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

/// What the core asks its driver to do.
#[derive(Debug)]
pub(super) enum Action {
    /// Send these bytes to this hop.
    Send { data: Bytes, hop: Hop },
    /// Send these bytes to an address a Via names: into its open TCP/TLS flow if there is
    /// one, else over UDP (a response relayed without its transaction).
    SendTo { data: Bytes, addr: SocketAddr },
    /// A deadline earlier than every one queued before: the timer task should wake.
    Wake,
    /// A call was answered or ended: count it and log its line.
    Call(CallRecord),
    /// A message was dropped: count it by this reason.
    Dropped(&'static str),
    /// A trunk challenged a branch (401/407): answer it with the registration's credentials
    /// and hand the retry (or `None`) back to [`Core::reauth`].
    Challenged(Challenge),
}

/// A call's line in the call log (see [`Action::Call`]).
#[derive(Debug)]
pub(super) struct CallRecord {
    pub(super) log: CallLog,
    /// An INVITE (a call) rather than a MESSAGE.
    pub(super) invite: bool,
    pub(super) status: u16,
    pub(super) outcome: &'static str,
}

/// A trunk's 401/407 to a branch (see [`Action::Challenged`]).
#[derive(Debug)]
pub(super) struct Challenge {
    /// The branch challenged (its client transaction).
    pub(super) branch: u64,
    /// The call the branch belongs to.
    pub(super) call: u64,
    /// The branch's request as sent (our Via on top).
    pub(super) req: Msg,
    /// The challenge, our Via still on top.
    pub(super) resp: Msg,
    /// Where the branch went.
    pub(super) dest: Hop,
    /// The outbound registration whose credentials answer it.
    pub(super) registration: String,
}

/// One branch of a call, built by the driver: the request with our Via (and Record-Route) on
/// top, where it goes, and the trunk registration when it goes to a trunk.
#[derive(Debug)]
pub(super) struct Branch {
    pub(super) req: Msg,
    pub(super) dest: Hop,
    pub(super) trunk: Option<String>,
    /// The branch parameter of our Via on top (its client transaction's key).
    pub(super) via_branch: String,
}

impl Branch {
    /// A branch whose Via branch is read back from its request's top Via (the driver, which
    /// wrote that Via, gives it without the parse).
    pub(super) fn new(req: Msg, dest: Hop, trunk: Option<String>) -> Branch {
        let via_branch = req
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        Branch {
            req,
            dest,
            trunk,
            via_branch,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// A server transaction's next timer.
    Server(u64),
    /// A client transaction's next timer.
    Client(u64),
    /// A call's ring timeout.
    Ring(u64),
}

/// A transaction's key as the core holds it: a 128-bit hash of its text ([`server::server_key`],
/// [`client::client_key`]), seeded at random per core. A transaction lives 32 s after its
/// final response (Timers J, L) and keeps 16 bytes for its key instead of a string of its own;
/// two live keys sharing a hash would need 2^64 of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct TxKey(u128);

/// The proxy core: every transaction and call, their deadlines and the outbox.
pub(super) struct Core {
    settings: ProxySettings,
    next: u64,
    /// The seed of [`TxKey`]s.
    seed: u64,
    server_keys: HashMap<TxKey, u64>,
    client_keys: HashMap<TxKey, u64>,
    // Boxed: a table of 100 000s of transactions then holds 16 bytes per slot, not a whole
    // transaction in every slot, free or not, and moves no transaction when it grows.
    servers: HashMap<u64, Box<ServerTx>>,
    clients: HashMap<u64, Box<ClientTx>>,
    calls: HashMap<u64, Call>,
    timers: wheel::Wheel<TimerKey>,
    out: Vec<Action>,
}

impl Core {
    /// An empty core.
    pub(super) fn new(settings: ProxySettings) -> Core {
        Core {
            settings,
            next: 0,
            seed: rand::random(),
            server_keys: HashMap::default(),
            client_keys: HashMap::default(),
            servers: HashMap::default(),
            clients: HashMap::default(),
            calls: HashMap::default(),
            timers: wheel::Wheel::new(Instant::now()),
            out: Vec::new(),
        }
    }

    /// The actions decided since the last call (the outbox, emptied).
    pub(super) fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// Live server transactions, client transactions and calls.
    pub(super) fn load(&self) -> (usize, usize, usize) {
        (self.servers.len(), self.clients.len(), self.calls.len())
    }

    fn send(&mut self, data: Bytes, hop: Hop) {
        self.out.push(Action::Send { data, hop });
    }

    /// The key of a transaction by its text.
    fn tx_key(&self, text: &str) -> TxKey {
        TxKey(xxhash_rust::xxh3::xxh3_128_with_seed(
            text.as_bytes(),
            self.seed,
        ))
    }
}

pub(super) fn new_branch() -> String {
    format!("z9hG4bK-sb{:016x}", rand::random::<u64>())
}

pub(super) fn new_tag() -> String {
    tag_text(rand::random())
}

/// A To tag of ours from 48 random bits.
fn tag_text(bits: u64) -> String {
    format!("sb{:012x}", bits & 0xffff_ffff_ffff)
}

/// A forwarded INVITE (our Via and Record-Route on top, a Route, the caller's Via) and
/// responses to it, for the unit tests of the proxy's modules.
#[cfg(test)]
pub(super) mod fixtures {
    use crate::message::owned::{response_to, Msg};

    pub(in crate::proxy) const INVITE: &str = "INVITE sip:1002@127.0.0.1:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb1;rport\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller;rport=5071;received=127.0.0.1\r\n\
        Record-Route: <sip:127.0.0.1:5060;lr;sbp>\r\n\
        Route: <sip:10.0.0.9;lr>\r\n\
        From: <sip:1001@switchboard.local>;tag=a\r\nTo: <sip:1002@switchboard.local>\r\n\
        Call-ID: c1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";

    pub(in crate::proxy) fn resp(status: u16) -> Msg {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        response_to(&req, status, "X", Some("b"))
    }
}
