//! The proxy core: its state and the dispatch of a message. Transactions, calls, forking,
//! CANCEL, the response choice and the timers are added to `impl Inner` by the sibling modules
//! (listed in [`super`]).
//!
//! All transaction and call state sits behind one mutex; nothing awaits while holding it (UDP
//! sends are `try_send_to`; a full socket buffer loses the datagram, which the transaction's
//! retransmission covers). The async work of a new call (digest check, routing, location
//! lookups) runs before the branches are created; the server transaction exists from the
//! first moment, so retransmissions meanwhile get the 100 Trying again.
//!
//! **Per new request** (§16.3–16.6): Max-Forwards (483 at 0); a Route naming this proxy is
//! popped (loose routing); a request inside a dialog (To tag) must come through our
//! Record-Route and is relayed by its Request-URI; an initial INVITE or MESSAGE is
//! authenticated (407, the registrar's nonces and digest code), routed ([`crate::routing`]) and
//! forked to every live binding of the target devices in parallel, or sent to the trunk. Each
//! branch gets our Via on top and, for INVITE, our Record-Route.
//!
//! **Responses** (§16.7): 100 absorbed; other provisionals relayed; every 2xx relayed at once
//! and the other branches CANCELled; 6xx ends the call and cancels the rest; otherwise the best
//! final response is relayed when every branch is done (lowest class, 503 → 500), 408 when
//! none answered, 480 when the ring timeout cancelled them. A trunk branch challenged with
//! 401/407 is retried once with the registration's credentials (same CSeq, new branch).

use super::calls::Call;
use super::client::ClientTx;
use super::flows::Flows;
use super::server::ServerTx;
use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::ConfigHandle;
use crate::location::LocationStore;
use crate::message::check::{self, Fault};
use crate::message::owned as sip;
use crate::message::ParseError;
use crate::message::{Msg, Start};
use crate::metrics::Metrics;
use crate::routing::RoutingTable;
use crate::transaction::machine::Timers;
use bytes::Bytes;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

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

/// The stateful proxy; cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: Arc<ConfigHandle>,
    pub(super) store: Arc<dyn LocationStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) cluster: Cluster,
    pub(super) settings: ProxySettings,
    table: Mutex<Option<Arc<RoutingTable>>>,
    udp: OnceLock<(Arc<UdpSocket>, SocketAddr)>,
    pub(super) flows: Flows,
    pub(super) outbound: OnceLock<Outbound>,
    pub(super) state: Mutex<State>,
    pub(super) wake: Notify,
}

/// What the proxy needs to open TCP/TLS connections to trunks itself (see
/// [`Proxy::attach_outbound`]).
pub struct Outbound {
    /// Starts the transport's connection loop on a connection we opened (as for accepted
    /// ones): [`crate::transport::tcp::outbound_reader`].
    pub reader: StreamReader,
    /// The TLS client config (the same as outbound registrations use).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Our TCP and TLS listening addresses (for a Record-Route the trunk can reach over its
    /// transport), when bound.
    pub tcp: Option<SocketAddr>,
    /// See `tcp`.
    pub tls_addr: Option<SocketAddr>,
    /// Our WS and WSS listening addresses (the Record-Route facing a browser), when bound.
    pub ws: Option<SocketAddr>,
    /// See `ws`.
    pub wss: Option<SocketAddr>,
}

/// Starts reading a connection the proxy opened: the stream, bytes already read, the peer,
/// the transport, and its registration in the flow table.
pub type StreamReader = Arc<
    dyn Fn(
            Box<dyn crate::uac::flow::Io>,
            bytes::BytesMut,
            SocketAddr,
            Transport,
            (super::flows::FlowGuard, tokio::sync::mpsc::Receiver<Bytes>),
        ) + Send
        + Sync,
>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    Tx(u64),
    Ring(u64),
}

#[derive(Default)]
pub(super) struct State {
    pub(super) next: u64,
    pub(super) server_keys: HashMap<String, u64>,
    pub(super) client_keys: HashMap<String, u64>,
    pub(super) servers: HashMap<u64, ServerTx>,
    pub(super) clients: HashMap<u64, ClientTx>,
    pub(super) calls: HashMap<u64, Call>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

/// Where a message goes: an address and the transport (UDP, or the TCP/TLS flow to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The address (for TCP/TLS: the peer of an open flow).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

pub(super) fn new_branch() -> String {
    format!("z9hG4bK-sb{:016x}", rand::random::<u64>())
}

pub(super) fn new_tag() -> String {
    format!("sb{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

impl Proxy {
    /// A proxy over the registrar's config, location store, metrics and sibling replicas.
    pub fn new(
        config: Arc<ConfigHandle>,
        store: Arc<dyn LocationStore>,
        metrics: Arc<Metrics>,
        cluster: Cluster,
        settings: ProxySettings,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                cluster,
                settings,
                table: Mutex::new(None),
                udp: OnceLock::new(),
                flows: Flows::default(),
                outbound: OnceLock::new(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
            }),
        }
    }

    /// Gives the proxy the UDP socket it sends on and the address it puts in Via and
    /// Record-Route, and starts the timer task. Only the first call counts.
    pub fn attach_udp(&self, socket: Arc<UdpSocket>, advertised: SocketAddr) {
        if self.inner.udp.set((socket, advertised)).is_ok() {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.run_timers().await });
        }
    }

    /// Lets the proxy open TCP/TLS connections to trunks. Only the first call counts.
    pub fn attach_outbound(&self, outbound: Outbound) {
        let _ = self.inner.outbound.set(outbound);
    }

    /// The TCP/TLS connections the proxy can send into; the stream transports register each
    /// connection here.
    pub fn flows(&self) -> &Flows {
        &self.inner.flows
    }

    /// The address the proxy puts in Via and Record-Route, once a UDP socket is attached.
    pub fn advertised(&self) -> Option<SocketAddr> {
        self.inner.udp.get().map(|u| u.1)
    }

    /// Whether a UDP socket is attached.
    pub fn is_attached(&self) -> bool {
        self.inner.udp.get().is_some()
    }

    /// Sends a check-sync `NOTIFY` (see `notify.rs`) for address of record `aor`
    /// (`sip:user@domain`) to `binding`'s contact: from here when its flow is here, over UDP
    /// when its replica is another (a sibling relays only calls, so a TCP/TLS flow held
    /// elsewhere is skipped). Returns whether it was sent.
    pub fn check_sync(&self, aor: &str, binding: &crate::location::Binding) -> bool {
        self.is_attached() && self.inner.check_sync(aor, binding)
    }

    /// Number of live transactions and calls (for tests and debugging).
    pub fn load(&self) -> (usize, usize, usize) {
        let st = self.inner.state.lock();
        (st.servers.len(), st.clients.len(), st.calls.len())
    }

    /// Handles one message claimed by [`super::claims`], received from `source` over
    /// `transport` (for TCP/TLS, on the flow registered for `source`). A request that is
    /// malformed (RFC 3261 §16.3 step 1) is never forwarded: it comes back as the error the
    /// caller answers with (400, or 505 for another SIP version) when it can be answered. A
    /// malformed response is dropped.
    pub async fn handle(
        &self,
        auth: &Authenticator,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Result<(), ParseError> {
        if self.inner.udp.get().is_none() {
            return Ok(());
        }
        let Some(msg) = Msg::parse(data) else {
            return self.malformed(data, None);
        };
        // A response's Date is not ours to judge: dropping a callee's answer over it would
        // fail the call with nobody told why.
        let response = msg.status().is_some();
        let fields = msg
            .headers
            .iter()
            .filter(|(n, _)| !(response && n.eq_ignore_ascii_case("Date")))
            .map(|(n, v)| (n.as_str(), v.as_str()));
        let fault = msg
            .uri()
            .and_then(|uri| check::request_uri(uri).err())
            .or_else(|| check::headers(fields).err())
            .or_else(|| method_mismatch(&msg));
        if let Some(fault) = fault {
            return self.malformed(data, Some((fault, &msg)));
        }
        match msg.start {
            Start::Response { .. } => self.inner.on_response(msg),
            Start::Request { .. } => self.inner.on_request(auth, msg, source, transport).await,
        }
        Ok(())
    }

    /// A message that failed to parse (`fault` is `None`) or a header check: responses and
    /// ACKs are dropped, requests answered with the error when their Via and CSeq can be read.
    fn malformed(&self, data: &[u8], fault: Option<(Fault, &Msg)>) -> Result<(), ParseError> {
        let response = sip::is_response(data);
        let label = if response {
            "proxy_malformed_response"
        } else {
            "proxy_malformed_request"
        };
        self.inner.metrics.dropped.with_label_values(&[label]).inc();
        if response || sip::method_token(data) == Some(b"ACK") {
            return Ok(());
        }
        Err(match fault {
            Some((fault, msg)) => ParseError::answer(fault.status, fault.reason, &msg.headers),
            // The registrar's parser says what is wrong (and whether it can be answered).
            None => match crate::message::parse(data) {
                Err(e) => e,
                Ok(_) => ParseError::answer(400, "Bad Request", &[]),
            },
        })
    }
}

/// A request whose CSeq names another method (RFC 4475 §3.1.2.17); an ACK is exempt (it is
/// never answered).
fn method_mismatch(msg: &Msg) -> Option<Fault> {
    let method = msg.method()?;
    let (_, cseq_method) = msg.cseq()?;
    (cseq_method != method && method != "ACK").then_some(Fault {
        status: 400,
        reason: "CSeq Method Mismatch",
    })
}

impl Inner {
    pub(super) fn local(&self) -> SocketAddr {
        self.udp.get().map(|u| u.1).expect("attached")
    }

    pub(super) fn send(&self, data: &[u8], to: Hop) {
        if to.transport.is_stream() {
            if !self.flows.send(to.addr, Bytes::copy_from_slice(data)) {
                tracing::debug!(to = %to.addr, "no open flow to send into");
            }
            return;
        }
        let Some((socket, _)) = self.udp.get() else {
            return;
        };
        if let Err(e) = socket.try_send_to(data, to.addr) {
            tracing::debug!(to = %to.addr, error = %e, "proxy UDP send failed");
        }
    }

    /// The hop to an address: its open TCP/TLS flow if there is one, else UDP.
    pub(super) fn hop(&self, addr: SocketAddr) -> Hop {
        Hop {
            addr,
            transport: self.flows.transport_of(addr).unwrap_or(Transport::Udp),
        }
    }

    pub(super) fn table(&self) -> Option<Arc<RoutingTable>> {
        let loaded = self.config.current()?;
        let mut t = self.table.lock();
        match &*t {
            Some(table) if table.generation() == loaded.generation => Some(table.clone()),
            _ => {
                let table = Arc::new(RoutingTable::new(
                    Arc::new(loaded.config.clone()),
                    loaded.generation,
                ));
                *t = Some(table.clone());
                Some(table)
            }
        }
    }

    pub(super) fn via(&self, branch: &str, transport: Transport) -> String {
        format!("SIP/2.0/{transport} {};branch={branch};rport", self.local())
    }
}

/// A forwarded INVITE (our Via and Record-Route on top, a Route, the caller's Via) and
/// responses to it, for the unit tests of the proxy's modules.
#[cfg(test)]
pub(super) mod fixtures {
    use crate::message::owned::response_to;
    use crate::message::Msg;

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

    /// The core of a proxy on the embedded config, attached to a loopback UDP socket.
    pub(in crate::proxy) async fn core() -> std::sync::Arc<super::Inner> {
        use crate::location::MemoryStore;
        use std::sync::Arc;
        let config = Arc::new(super::ConfigHandle::new());
        config.replace(crate::config::embedded());
        let p = super::Proxy::new(
            config,
            Arc::new(MemoryStore::new()),
            Arc::new(super::Metrics::new()),
            super::Cluster::alone("r"),
            super::ProxySettings::default(),
        );
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        p.attach_udp(Arc::new(socket), local);
        p.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthSettings, Authenticator};
    use crate::location::MemoryStore;

    async fn proxy() -> (Proxy, Authenticator, Arc<Metrics>) {
        let config = Arc::new(ConfigHandle::new());
        config.replace(crate::config::embedded());
        let metrics = Arc::new(Metrics::new());
        let p = Proxy::new(
            config,
            Arc::new(MemoryStore::new()),
            metrics.clone(),
            Cluster::alone("r"),
            ProxySettings::default(),
        );
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        p.attach_udp(Arc::new(socket), local);
        let settings = AuthSettings::default();
        let state = settings.memory_state();
        (
            p,
            Authenticator::new(settings, state, metrics.clone()),
            metrics,
        )
    }

    fn dropped(m: &Metrics, why: &str) -> u64 {
        m.dropped.with_label_values(&[why]).get()
    }

    #[tokio::test]
    async fn responses_are_checked_but_their_date_is_not_judged() {
        let (p, auth, m) = proxy().await;
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let resp = fixtures::resp(180).encode();
        let text = String::from_utf8(resp.to_vec()).unwrap();
        let with = |extra: &str| text.replacen("\r\n", &format!("\r\n{extra}\r\n"), 1);
        let odd_date = with("Date: Fri, 01 Jan 2010 16:00:00 EST");
        assert!(p
            .handle(&auth, odd_date.as_bytes(), src, Transport::Udp)
            .await
            .is_ok());
        assert_eq!(dropped(&m, "proxy_malformed_response"), 0);
        // A second CSeq is a header error: dropped, never relayed.
        let two_cseqs = with("CSeq: 8 INVITE");
        assert!(p
            .handle(&auth, two_cseqs.as_bytes(), src, Transport::Udp)
            .await
            .is_ok());
        assert_eq!(dropped(&m, "proxy_malformed_response"), 1);
        // A request with one is answered 400 by whoever called (an error, with the headers).
        let req =
            fixtures::INVITE.replacen("\r\n", "\r\nDate: Fri, 01 Jan 2010 16:00:00 EST\r\n", 1);
        let e = p
            .handle(&auth, req.as_bytes(), src, Transport::Udp)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.reason.as_str()), (400, "Bad Date"));
        assert!(e.salvage.is_some());
    }
}
