//! The proxy core: transactions, calls, forking, CANCEL, response choice, timers.
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

use super::flows::Flows;
use super::sip::{addr_uri, response_to, uri_target, via_target, Msg, Start};
use crate::auth::client::{authorization, Challenge, ClientCredentials};
use crate::auth::digest::Credentials;
use crate::auth::nonce::NonceStatus;
use crate::auth::{Attempt, Authenticator, Failure, Ha1, Verdict};
use crate::config::ConfigHandle;
use crate::location::LocationStore;
use crate::message::headers::{NameAddr, SipUri, Via};
use crate::metrics::Metrics;
use crate::routing::{Caller, Decision, Route, RoutingTable};
use crate::transaction::machine::{Action, Machine, State as TxState, Timers};
use bytes::Bytes;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
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

struct Inner {
    config: Arc<ConfigHandle>,
    store: Arc<dyn LocationStore>,
    metrics: Arc<Metrics>,
    settings: ProxySettings,
    table: Mutex<Option<Arc<RoutingTable>>>,
    udp: OnceLock<(Arc<UdpSocket>, SocketAddr)>,
    flows: Flows,
    outbound: OnceLock<Outbound>,
    state: Mutex<State>,
    wake: Notify,
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

/// How long connecting to a trunk (with the TLS handshake) may take.
const TRUNK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Tx(u64),
    Ring(u64),
}

#[derive(Default)]
struct State {
    next: u64,
    server_keys: HashMap<String, u64>,
    client_keys: HashMap<String, u64>,
    servers: HashMap<u64, ServerTx>,
    clients: HashMap<u64, ClientTx>,
    calls: HashMap<u64, Call>,
    timers: BinaryHeap<Reverse<(Instant, TimerKey)>>,
}

/// Where a message goes: an address and the transport (UDP, or the TCP/TLS flow to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The address (for TCP/TLS: the peer of an open flow).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

struct ServerTx {
    m: Machine,
    key: String,
    /// The request as received (top Via with received/rport).
    req: Msg,
    reply_to: Hop,
    last: Option<Bytes>,
    call: Option<u64>,
    to_tag: String,
    /// The deadline queued in the timer heap for it, if any.
    armed: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cancel {
    No,
    /// Cancel once a provisional response arrives.
    Pending,
    Sent,
}

struct ClientTx {
    m: Machine,
    key: String,
    req: Msg,
    data: Bytes,
    dest: Hop,
    call: Option<u64>,
    provisional: bool,
    cancel: Cancel,
    trunk: Option<String>,
    auth_tried: bool,
    /// The deadline queued in the timer heap for it, if any.
    armed: Option<Instant>,
}

struct Call {
    server: u64,
    invite: bool,
    branches: Vec<u64>,
    outstanding: usize,
    answered: bool,
    finished: bool,
    cancelled: bool,
    timed_out: bool,
    best: Option<Msg>,
    log: CallLog,
}

#[derive(Clone, Debug, Default)]
struct CallLog {
    from: String,
    to: String,
    number: String,
    route: String,
    call_id: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_branch() -> String {
    format!("z9hG4bK-sb{:016x}", rand::random::<u64>())
}

fn new_tag() -> String {
    format!("sb{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// §16.7 step 6: the best of the final responses received (lowest class; 6xx first).
fn better(candidate: &Msg, current: Option<&Msg>) -> bool {
    let rank = |m: &Msg| {
        let s = m.status().unwrap_or(500);
        match s / 100 {
            6 => 0,
            3 => 1,
            4 if s != 408 => 2,
            5 | 4 => 3,
            _ => 4,
        }
    };
    match current {
        None => true,
        Some(c) => rank(candidate) < rank(c),
    }
}

fn server_key(via: &Via, method: &str) -> String {
    let method = if method == "ACK" { "INVITE" } else { method };
    format!(
        "{}|{}:{}|{}",
        via.branch().unwrap_or(""),
        via.host,
        via.port.unwrap_or(5060),
        method
    )
}

fn client_key(branch: &str, method: &str) -> String {
    format!("{branch}|{method}")
}

impl Proxy {
    /// A proxy over the registrar's config, location store and metrics.
    pub fn new(
        config: Arc<ConfigHandle>,
        store: Arc<dyn LocationStore>,
        metrics: Arc<Metrics>,
        settings: ProxySettings,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
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

    /// Whether a UDP socket is attached.
    pub fn is_attached(&self) -> bool {
        self.inner.udp.get().is_some()
    }

    /// Number of live transactions and calls (for tests and debugging).
    pub fn load(&self) -> (usize, usize, usize) {
        let st = self.inner.state.lock();
        (st.servers.len(), st.clients.len(), st.calls.len())
    }

    /// Handles one message claimed by [`super::claims`], received from `source` over
    /// `transport` (for TCP/TLS, on the flow registered for `source`).
    pub async fn handle(
        &self,
        auth: &Authenticator,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) {
        if self.inner.udp.get().is_none() {
            return;
        }
        let Some(msg) = Msg::parse(data) else {
            self.inner
                .metrics
                .dropped
                .with_label_values(&["proxy_unparseable"])
                .inc();
            return;
        };
        match msg.start {
            Start::Response { .. } => self.inner.on_response(msg),
            Start::Request { .. } => self.inner.on_request(auth, msg, source, transport).await,
        }
    }
}

impl Inner {
    fn local(&self) -> SocketAddr {
        self.udp.get().map(|u| u.1).expect("attached")
    }

    fn send(&self, data: &[u8], to: Hop) {
        if to.transport != Transport::Udp {
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
    fn hop(&self, addr: SocketAddr) -> Hop {
        Hop {
            addr,
            transport: self.flows.transport_of(addr).unwrap_or(Transport::Udp),
        }
    }

    fn table(&self) -> Option<Arc<RoutingTable>> {
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

    fn is_ours(&self, uri: &str) -> bool {
        let Some(u) = SipUri::parse(uri) else {
            return false;
        };
        if u.params.iter().any(|(k, _)| k == "sbp") {
            return true;
        }
        let local = self.local();
        uri_target(&u) == Some(local)
    }

    /// Our Record-Route for a dialog: its `sbp` parameter is a MAC of the Call-ID under the
    /// config's nonce key (shared by every replica), so only requests of dialogs this proxy
    /// (or a sibling replica) record-routed are relayed by their Request-URI.
    fn record_route(&self, call_id: &str) -> String {
        let local = self.local();
        match self.config.current() {
            Some(loaded) => {
                let token = loaded.nonce_key.issue(call_id, 0, [0; 8]);
                format!("<sip:{local};lr;sbp={token}>")
            }
            None => format!("<sip:{local};lr;sbp>"),
        }
    }

    /// Whether a Route of ours carries the right token for this Call-ID.
    fn route_token_valid(&self, route_uri: &str, call_id: &str) -> bool {
        let Some(u) = SipUri::parse(route_uri) else {
            return false;
        };
        let Some(token) = u
            .params
            .iter()
            .find(|(k, _)| k == "sbp")
            .and_then(|(_, v)| v.as_deref())
        else {
            return false;
        };
        self.config.current().is_some_and(|loaded| {
            loaded.nonce_key.check(token, call_id, 0, u64::MAX) != NonceStatus::Invalid
        })
    }

    /// Our Record-Route facing a trunk reached over TCP/TLS (RFC 5658 double Record-Route:
    /// this one on top for the trunk, the ordinary one below for the caller), when we listen
    /// on that transport.
    fn stream_record_route(&self, call_id: &str, transport: Transport) -> Option<String> {
        let out = self.outbound.get()?;
        let addr = match transport {
            Transport::Udp => return None,
            Transport::Tcp => out.tcp?,
            Transport::Tls => out.tls_addr?,
        };
        let ordinary = self.record_route(call_id);
        let local = self.local();
        let rest = ordinary.strip_prefix(&format!("<sip:{local};"))?;
        Some(format!(
            "<sip:{addr};transport={};{rest}",
            transport.as_sip_param()
        ))
    }

    /// A connection to `peer` over TCP/TLS: the open flow to its address, else a new one,
    /// registered in the flow table and read by the transport's connection loop.
    async fn stream_to(&self, peer: &crate::uac::flow::Peer) -> Option<Hop> {
        use crate::uac::flow::{resolve, Flow};
        let out = self.outbound.get()?;
        let addr = crate::transport::nat::canonical(resolve(&peer.host, peer.port).await.ok()?);
        if self.flows.transport_of(addr) == Some(peer.transport) {
            return Some(Hop {
                addr,
                transport: peer.transport,
            });
        }
        let flow = match Flow::open(peer, out.tls.as_ref(), TRUNK_CONNECT_TIMEOUT).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot connect to the trunk");
                return None;
            }
        };
        let addr = crate::transport::nat::canonical(flow.remote_addr());
        let (stream, buf) = flow.into_stream()?;
        let registered = self.flows.open(addr, peer.transport);
        (out.reader)(stream, buf, addr, peer.transport, registered);
        Some(Hop {
            addr,
            transport: peer.transport,
        })
    }

    fn via(&self, branch: &str, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        format!("SIP/2.0/{t} {};branch={branch};rport", self.local())
    }

    fn schedule(&self, st: &mut State, key: TimerKey, at: Option<Instant>) {
        if let Some(at) = at {
            let earliest = st.timers.peek().map(|Reverse((t, _))| *t);
            st.timers.push(Reverse((at, key)));
            if earliest.is_none_or(|e| at < e) {
                self.wake.notify_one();
            }
        }
    }

    async fn run_timers(self: Arc<Self>) {
        loop {
            let next = self.state.lock().timers.peek().map(|Reverse((t, _))| *t);
            // Timers fire in batches at most every 10 ms: SIP timers need no finer grain, and
            // a busy proxy would otherwise wake for every single deadline.
            // At least once a second, for the gauges below.
            let floor = Instant::now() + Duration::from_millis(10);
            let ceiling = Instant::now() + Duration::from_secs(1);
            let sleep = match next {
                Some(t) => tokio::time::sleep_until(t.max(floor).min(ceiling).into()),
                None => tokio::time::sleep(Duration::from_secs(1)),
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake.notified() => continue,
            }
            let now = Instant::now();
            let mut st = self.state.lock();
            self.metrics
                .proxy_transactions
                .with_label_values(&["server"])
                .set(st.servers.len() as i64);
            self.metrics
                .proxy_transactions
                .with_label_values(&["client"])
                .set(st.clients.len() as i64);
            self.metrics.proxy_calls.set(st.calls.len() as i64);
            while let Some(Reverse((t, key))) = st.timers.peek().copied() {
                if t > now {
                    break;
                }
                st.timers.pop();
                match key {
                    TimerKey::Tx(id) => self.fire_tx(&mut st, id, t, now),
                    TimerKey::Ring(call) => self.ring_timeout(&mut st, call, now),
                }
            }
        }
    }

    /// Queues the transaction's next deadline, unless an entry at or before it is queued
    /// already (that one reschedules when it fires): one heap entry per transaction at a time.
    fn schedule_tx(&self, st: &mut State, id: u64) {
        let armed = if let Some(s) = st.servers.get_mut(&id) {
            let d = s.m.deadline();
            match d {
                Some(d) if s.armed.is_none_or(|a| a > d) => {
                    s.armed = Some(d);
                    Some(d)
                }
                _ => None,
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
            let d = c.m.deadline();
            match d {
                Some(d) if c.armed.is_none_or(|a| a > d) => {
                    c.armed = Some(d);
                    Some(d)
                }
                _ => None,
            }
        } else {
            None
        };
        self.schedule(st, TimerKey::Tx(id), armed);
    }

    fn fire_tx(&self, st: &mut State, id: u64, queued: Instant, now: Instant) {
        if let Some(s) = st.servers.get_mut(&id) {
            if s.armed == Some(queued) {
                s.armed = None;
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
            if c.armed == Some(queued) {
                c.armed = None;
            }
        }
        self.fire_due(st, id, now);
        self.schedule_tx(st, id);
    }

    fn fire_due(&self, st: &mut State, id: u64, now: Instant) {
        if let Some(s) = st.servers.get_mut(&id) {
            if s.m.deadline().is_some_and(|d| d <= now) {
                let actions = s.m.on_timer(now);
                self.server_actions(st, id, &actions, now);
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
            if c.m.deadline().is_some_and(|d| d <= now) {
                let actions = c.m.on_timer(now);
                self.client_actions(st, id, &actions, None, now);
            }
        }
    }

    // ----- server transactions -----

    fn new_server(&self, st: &mut State, req: &Msg, reply_to: Hop) -> u64 {
        st.next += 1;
        let id = st.next;
        let via = req.top_via().expect("checked");
        let key = server_key(&via, req.method().unwrap_or(""));
        let invite = req.method() == Some("INVITE");
        st.server_keys.insert(key.clone(), id);
        st.servers.insert(
            id,
            ServerTx {
                m: Machine::server(
                    invite,
                    reply_to.transport != Transport::Udp,
                    self.settings.timers,
                ),
                key,
                req: response_headers(req),
                reply_to,
                last: None,
                call: None,
                to_tag: new_tag(),
                armed: None,
            },
        );
        id
    }

    /// Sends a response through a server transaction (it keeps it for retransmissions).
    fn respond(&self, st: &mut State, id: u64, resp: Msg, now: Instant) {
        let Some(s) = st.servers.get_mut(&id) else {
            // The transaction is gone (a 2xx retransmission after Timer L): stateless.
            if let Some(to) = resp.top_via().as_ref().and_then(via_target) {
                self.send(&resp.encode(), self.hop(to));
            }
            return;
        };
        let status = resp.status().unwrap_or(500);
        let data = resp.encode();
        let actions = s.m.on_send(status, now);
        if actions.contains(&Action::Transmit) {
            s.last = Some(data);
        }
        self.server_actions(st, id, &actions, now);
        // Accepted (a 2xx went out): retransmitted INVITEs are absorbed and the 2xx's own
        // retransmissions are relayed as they come; nothing to keep.
        if let Some(s) = st.servers.get_mut(&id) {
            if s.m.state() == TxState::Accepted {
                s.last = None;
            }
            if status >= 200 {
                // Final: no response is built from the request any more.
                s.req.headers = Vec::new();
            }
        }
    }

    /// A locally generated response to the server transaction's request.
    fn reply(&self, st: &mut State, id: u64, status: u16, reason: &str, now: Instant) {
        let Some(s) = st.servers.get(&id) else { return };
        let tag = (status > 100).then_some(s.to_tag.as_str());
        let resp = response_to(&s.req, status, reason, tag);
        self.respond(st, id, resp, now);
    }

    fn reply_with(&self, st: &mut State, id: u64, mut resp: Msg, extra: Vec<(String, String)>) {
        resp.headers.extend(extra);
        self.respond(st, id, resp, Instant::now());
    }

    fn server_actions(&self, st: &mut State, id: u64, actions: &[Action], _now: Instant) {
        for a in actions {
            match a {
                Action::Transmit => {
                    if let Some(s) = st.servers.get(&id) {
                        if let Some(d) = &s.last {
                            self.send(d, s.reply_to);
                        }
                    }
                }
                Action::Terminated => {
                    if let Some(s) = st.servers.remove(&id) {
                        st.server_keys.remove(&s.key);
                        if let Some(c) = s.call {
                            if st.calls.get(&c).is_some_and(|c| c.finished) {
                                st.calls.remove(&c);
                            }
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
        self.schedule_tx(st, id);
    }

    // ----- client transactions -----

    fn new_client(
        &self,
        st: &mut State,
        req: Msg,
        dest: Hop,
        call: Option<u64>,
        trunk: Option<String>,
        now: Instant,
    ) -> u64 {
        st.next += 1;
        let id = st.next;
        let branch = req
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let method = req.method().unwrap_or("").to_string();
        let key = client_key(&branch, &method);
        let (m, actions) = Machine::client(
            method == "INVITE",
            dest.transport != Transport::Udp,
            self.settings.timers,
            now,
        );
        let data = req.encode();
        st.client_keys.insert(key.clone(), id);
        st.clients.insert(
            id,
            ClientTx {
                m,
                key,
                req,
                data,
                dest,
                call,
                provisional: false,
                cancel: Cancel::No,
                trunk,
                auth_tried: false,
                armed: None,
            },
        );
        self.client_actions(st, id, &actions, None, now);
        id
    }

    fn client_actions(
        &self,
        st: &mut State,
        id: u64,
        actions: &[Action],
        resp: Option<&Msg>,
        now: Instant,
    ) {
        for a in actions {
            match *a {
                Action::Transmit => {
                    if let Some(c) = st.clients.get(&id) {
                        self.send(&c.data, c.dest);
                    }
                }
                Action::SendAck => {
                    if let (Some(c), Some(r)) = (st.clients.get(&id), resp) {
                        let ack = build_ack(&c.req, r);
                        self.send(&ack.encode(), c.dest);
                    }
                }
                Action::Deliver(_) => {
                    if let Some(r) = resp {
                        self.branch_response(st, id, r.clone(), now);
                    }
                }
                Action::Timeout => {
                    let timeout = st.clients.get(&id).map(|c| {
                        let mut r = response_to(&c.req, 408, "Request Timeout", None);
                        r.headers.retain(|(n, _)| n != "Record-Route");
                        r
                    });
                    if let Some(r) = timeout {
                        self.branch_response(st, id, r, now);
                    }
                }
                Action::Terminated => {
                    if let Some(c) = st.clients.remove(&id) {
                        st.client_keys.remove(&c.key);
                    }
                    return;
                }
                Action::AbsorbAck => {}
            }
        }
        self.schedule_tx(st, id);
    }

    fn on_response(&self, mut resp: Msg) {
        let now = Instant::now();
        let Some(via) = resp.top_via() else { return };
        let Some((_, method)) = resp.cseq() else {
            return;
        };
        let key = client_key(via.branch().unwrap_or(""), &method);
        let mut st = self.state.lock();
        match st.client_keys.get(&key).copied() {
            Some(id) => {
                let status = resp.status().unwrap_or(500);
                let actions = st
                    .clients
                    .get_mut(&id)
                    .map(|c| c.m.on_response(status, now))
                    .unwrap_or_default();
                self.client_actions(&mut st, id, &actions, Some(&resp), now);
            }
            None => {
                // A 2xx retransmission after the client transaction ended (§16.7 step 5:
                // forwarded statelessly), when the top Via is ours.
                let ours = via
                    .param("branch")
                    .flatten()
                    .is_some_and(|b| b.starts_with("z9hG4bK-sb"))
                    && via_target(&via).is_some();
                if ours && resp.status().is_some_and(|s| (200..300).contains(&s)) {
                    resp.pop_first("Via");
                    if let Some(to) = resp.top_via().as_ref().and_then(via_target) {
                        self.send(&resp.encode(), self.hop(to));
                    }
                } else {
                    self.metrics
                        .dropped
                        .with_label_values(&["stray_response"])
                        .inc();
                }
            }
        }
    }

    /// A response from a branch, for the TU (the call), with our Via still on top.
    fn branch_response(&self, st: &mut State, id: u64, mut resp: Msg, now: Instant) {
        let status = resp.status().unwrap_or(500);
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        let Some(call_id) = c.call else { return };
        let mut cancel_now = false;
        if status < 200 {
            c.provisional = true;
            cancel_now = c.cancel == Cancel::Pending;
        }
        // A trunk's challenge: answer it once with the registration's credentials.
        let retry = if matches!(status, 401 | 407) && !c.auth_tried {
            c.trunk.clone().and_then(|reg| {
                self.authenticated_retry(&c.req, &resp, &reg, c.dest.transport)
                    .map(|r| (r, reg, c.dest))
            })
        } else {
            None
        };
        if cancel_now {
            self.cancel_branch(st, id, now);
        }
        if let Some((retry, reg, dest)) = retry {
            if let Some(c) = st.clients.get_mut(&id) {
                c.auth_tried = true;
            }
            let new = self.new_client(st, retry, dest, Some(call_id), Some(reg), now);
            if let Some(n) = st.clients.get_mut(&new) {
                n.auth_tried = true;
            }
            let mut cancel_new = false;
            if let Some(call) = st.calls.get_mut(&call_id) {
                call.branches.push(new);
                call.outstanding += 1;
                cancel_new = call.cancelled || call.answered || call.timed_out;
            }
            if cancel_new {
                self.cancel_branch(st, new, now);
            }
            self.branch_done(st, call_id, None, now);
            return;
        }
        resp.pop_first("Via");
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        let server = call.server;
        if status == 100 {
            return;
        }
        if status < 200 {
            if !call.finished {
                self.respond(st, server, resp, now);
            }
            return;
        }
        if status < 300 {
            let first = !call.answered;
            call.answered = true;
            call.finished = true;
            let invite = call.invite;
            let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
            if first {
                self.log_call(call, status, "answered");
            }
            self.respond(st, server, resp, now);
            if first && invite {
                for b in others {
                    self.cancel_branch(st, b, now);
                }
            }
            if first {
                self.branch_done(st, call_id, None, now);
            }
            return;
        }
        if status >= 600 && !call.answered && call.invite {
            let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
            for b in others {
                self.cancel_branch(st, b, now);
            }
        }
        self.branch_done(st, call_id, Some(resp), now);
    }

    /// A branch finished with `resp` (None: answered, or replaced by an authenticated retry).
    fn branch_done(&self, st: &mut State, call_id: u64, resp: Option<Msg>, now: Instant) {
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        call.outstanding = call.outstanding.saturating_sub(1);
        if let Some(r) = resp {
            if better(&r, call.best.as_ref()) {
                call.best = Some(r);
            }
        }
        if call.outstanding > 0 || call.finished {
            if call.finished && call.outstanding == 0 {
                st.calls.remove(&call_id);
            }
            return;
        }
        call.finished = true;
        let server = call.server;
        let (status, reason) = if call.cancelled {
            (487, "Request Terminated")
        } else if call.timed_out {
            (480, "No Answer")
        } else {
            (0, "")
        };
        let best = call.best.take();
        let outcome = match (&best, status) {
            (_, 487) => "cancelled",
            (_, 480) => "no_answer",
            (Some(b), _) if b.status() == Some(408) => "no_answer",
            (Some(_), _) => "failed",
            (None, _) => "no_answer",
        };
        let code = if status != 0 {
            status
        } else {
            best.as_ref().and_then(Msg::status).unwrap_or(408)
        };
        self.log_call(call, code, outcome);
        // Every branch is done: nothing refers to the call any more.
        let call = st.calls.remove(&call_id).expect("present");
        if call.cancelled {
            // The 487 went out when the CANCEL came.
            return;
        }
        match best {
            Some(mut b) if status == 0 => {
                if matches!(b.status(), Some(503)) {
                    b.start = Start::Response {
                        status: 500,
                        reason: "Server Internal Error".into(),
                    };
                }
                self.respond(st, server, b, now);
            }
            _ => {
                let (s, r) = if status != 0 {
                    (status, reason)
                } else {
                    (408, "Request Timeout")
                };
                self.reply(st, server, s, r, now);
            }
        }
    }

    fn log_call(&self, call: &Call, status: u16, outcome: &str) {
        if call.log.call_id.is_empty() {
            return; // a request inside a dialog, not a call
        }
        if !call.invite {
            self.metrics
                .calls
                .with_label_values(&[if (200..300).contains(&status) {
                    "message_delivered"
                } else {
                    "message_failed"
                }])
                .inc();
            return;
        }
        self.metrics.calls.with_label_values(&[outcome]).inc();
        let l = &call.log;
        tracing::info!(
            call_id = %l.call_id,
            from = %l.from,
            to = %l.to,
            number = %l.number,
            route = %l.route,
            status,
            outcome,
            "call"
        );
    }

    fn cancel_branch(&self, st: &mut State, id: u64, now: Instant) {
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        if c.req.method() != Some("INVITE") || c.cancel == Cancel::Sent {
            return;
        }
        if !matches!(c.m.state(), TxState::Calling | TxState::Proceeding) {
            return;
        }
        if !c.provisional {
            c.cancel = Cancel::Pending;
            return;
        }
        c.cancel = Cancel::Sent;
        let cancel = build_cancel(&c.req);
        let dest = c.dest;
        self.new_client(st, cancel, dest, None, None, now);
    }

    fn ring_timeout(&self, st: &mut State, call_id: u64, now: Instant) {
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        if call.finished || call.answered {
            return;
        }
        call.timed_out = true;
        let branches = call.branches.clone();
        for b in &branches {
            self.cancel_branch(st, *b, now);
        }
        // Branches that never answered anything cannot be cancelled: give up on them now.
        let silent: Vec<u64> = branches
            .into_iter()
            .filter(|b| st.clients.get(b).is_some_and(|c| !c.provisional))
            .collect();
        for b in silent {
            if let Some(c) = st.clients.get_mut(&b) {
                c.call = None;
            }
            self.branch_done(st, call_id, None, now);
        }
    }

    fn authenticated_retry(
        &self,
        req: &Msg,
        resp: &Msg,
        reg_id: &str,
        transport: Transport,
    ) -> Option<Msg> {
        let loaded = self.config.current()?;
        let reg = loaded
            .config
            .registrations
            .iter()
            .find(|r| r.id == reg_id)?;
        let (header, answer) = match resp.status()? {
            401 => ("WWW-Authenticate", "Authorization"),
            _ => ("Proxy-Authenticate", "Proxy-Authorization"),
        };
        let challenge = Challenge::pick(resp.headers_raw(header)).ok()?;
        if let Some(realm) = &reg.realm {
            if !challenge.realm.eq_ignore_ascii_case(realm) {
                tracing::warn!(registration = %reg.id, realm = %challenge.realm, "trunk challenged with an unexpected realm");
                return None;
            }
        }
        let creds = ClientCredentials {
            username: reg.auth_username.as_deref().unwrap_or(&reg.username),
            password: &reg.password,
        };
        let uri = req.uri()?.to_string();
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let value = authorization(&challenge, &creds, req.method()?, &uri, 1, &cnonce);
        let mut retry = req.clone();
        retry.pop_first("Via");
        retry.push_front("Via", self.via(&new_branch(), transport));
        retry.push_front(answer, value);
        Some(retry)
    }

    // ----- requests -----

    async fn on_request(
        &self,
        auth: &Authenticator,
        mut req: Msg,
        source: SocketAddr,
        transport: Transport,
    ) {
        let now = Instant::now();
        let method = req.method().unwrap_or("").to_string();
        let Some(top) = req.top_via() else {
            self.metrics.dropped.with_label_values(&["bad_via"]).inc();
            return;
        };
        let (fixed, target) = crate::transport::nat::fix_top_via(&top, source, transport);
        req.set_top_via(&fixed);
        // Over TCP/TLS the responses go back into the connection whatever the Via says.
        let reply_to = match transport {
            Transport::Udp => Hop {
                addr: target,
                transport,
            },
            _ => Hop {
                addr: source,
                transport,
            },
        };
        let (Some(_), Some((_, cseq_method))) = (req.call_id(), req.cseq()) else {
            return;
        };
        if cseq_method != method && method != "ACK" && method != "CANCEL" {
            return;
        }
        let key = server_key(&top, &method);

        // ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx it is
        // relayed on its own.
        if method == "ACK" {
            let mut st = self.state.lock();
            if let Some(&id) = st.server_keys.get(&key) {
                let absorbed = st.servers.get_mut(&id).map(|s| {
                    let a = s.m.on_request(true, now);
                    (
                        s.m.state() == TxState::Confirmed || a.contains(&Action::AbsorbAck),
                        a,
                    )
                });
                if let Some((true, a)) = absorbed {
                    self.server_actions(&mut st, id, &a, now);
                    return;
                }
            }
            drop(st);
            self.relay_stateless(req);
            return;
        }

        // Retransmission of a request in a live server transaction.
        {
            let mut st = self.state.lock();
            if let Some(&id) = st.server_keys.get(&key) {
                let a = st
                    .servers
                    .get_mut(&id)
                    .map(|s| s.m.on_request(false, now))
                    .unwrap_or_default();
                self.server_actions(&mut st, id, &a, now);
                return;
            }
        }

        if method == "CANCEL" {
            self.on_cancel(req, &top, reply_to, now);
            return;
        }

        let id = {
            let mut st = self.state.lock();
            let id = self.new_server(&mut st, &req, reply_to);
            if method == "INVITE" {
                self.reply(&mut st, id, 100, "Trying", now);
            }
            id
        };

        // Max-Forwards (§16.3 step 3).
        let mf = req
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 483, "Too Many Hops", now);
            return;
        }
        req.set("Max-Forwards", (mf - 1).min(70).to_string());

        // Loose routing (§16.4): a Route naming us is ours to remove.
        let top_route = req
            .header_list("Route")
            .first()
            .map(|r| addr_uri(r))
            .filter(|u| self.is_ours(u));
        let routed_here = top_route.is_some();
        if routed_here {
            req.pop_first("Route");
            self.pop_second_route(&mut req);
        }

        if req.to_tag().is_some() {
            // Inside a dialog: it must come through our Record-Route, with its token.
            let call_id = req.call_id().unwrap_or("");
            if !top_route.is_some_and(|u| self.route_token_valid(&u, call_id)) {
                let mut st = self.state.lock();
                self.reply(&mut st, id, 403, "Not Routed Through This Proxy", now);
                return;
            }
            let Some(dest) = next_hop(&req) else {
                let mut st = self.state.lock();
                self.reply(&mut st, id, 404, "No Route To Target", now);
                return;
            };
            let hop = match next_hop_transport(&req) {
                // A trunk's Contact over TCP/TLS whose connection is gone: open another.
                Some(t) if t != Transport::Udp && self.flows.transport_of(dest) != Some(t) => {
                    let peer = crate::uac::flow::Peer {
                        host: dest.ip().to_string(),
                        port: dest.port(),
                        transport: t,
                    };
                    self.stream_to(&peer).await.unwrap_or(self.hop(dest))
                }
                _ => self.hop(dest),
            };
            let mut st = self.state.lock();
            self.start_call(
                &mut st,
                id,
                &req,
                vec![(None, hop, None)],
                false,
                CallLog::default(),
                now,
            );
            return;
        }

        if !matches!(method.as_str(), "INVITE" | "MESSAGE") {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 481, "Call/Transaction Does Not Exist", now);
            return;
        }
        self.initial(auth, id, req, source, now).await;
    }

    fn on_cancel(&self, req: Msg, top: &Via, reply_to: Hop, now: Instant) {
        let invite_key = server_key(top, "INVITE");
        let mut st = self.state.lock();
        let cancel_id = self.new_server(&mut st, &req, reply_to);
        let Some(&inv) = st.server_keys.get(&invite_key) else {
            self.reply(
                &mut st,
                cancel_id,
                481,
                "Call/Transaction Does Not Exist",
                now,
            );
            return;
        };
        self.reply(&mut st, cancel_id, 200, "OK", now);
        let Some(call_id) = st.servers.get(&inv).and_then(|s| s.call) else {
            // Not routed yet: answer 487 now; the call is dropped when it is.
            self.reply(&mut st, inv, 487, "Request Terminated", now);
            return;
        };
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        if call.answered || call.finished {
            return;
        }
        call.cancelled = true;
        let branches = call.branches.clone();
        for b in branches {
            self.cancel_branch(&mut st, b, now);
        }
        self.reply(&mut st, inv, 487, "Request Terminated", now);
    }

    /// An ACK for a 2xx (or anything else without a transaction): our Route popped, our Via
    /// pushed, sent on by Route or Request-URI.
    /// After our top Route is popped: the second of a double Record-Route (RFC 5658) is ours
    /// too, and goes as well.
    fn pop_second_route(&self, req: &mut Msg) {
        if req
            .header_list("Route")
            .first()
            .is_some_and(|r| self.is_ours(&addr_uri(r)))
        {
            req.pop_first("Route");
        }
    }

    fn relay_stateless(&self, mut req: Msg) {
        let call_id = req.call_id().unwrap_or("").to_string();
        if req
            .header_list("Route")
            .first()
            .map(|r| addr_uri(r))
            .is_some_and(|u| self.is_ours(&u) && self.route_token_valid(&u, &call_id))
        {
            req.pop_first("Route");
            self.pop_second_route(&mut req);
        } else {
            return;
        }
        let mf = req
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            return;
        }
        req.set("Max-Forwards", (mf - 1).min(70).to_string());
        if let Some(dest) = next_hop(&req) {
            let hop = self.hop(dest);
            req.push_front("Via", self.via(&new_branch(), hop.transport));
            self.send(&req.encode(), hop);
        }
    }

    /// Creates the call and its branches: (Request-URI or None to keep it, destination, trunk).
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &self,
        st: &mut State,
        server: u64,
        req: &Msg,
        targets: Vec<(Option<String>, Hop, Option<String>)>,
        record_route: bool,
        log: CallLog,
        now: Instant,
    ) {
        if !st.servers.contains_key(&server) {
            return; // cancelled and gone meanwhile
        }
        let cancelled = st
            .servers
            .get(&server)
            .is_some_and(|s| s.m.state() != TxState::Proceeding && s.m.state() != TxState::Trying);
        if cancelled {
            return;
        }
        st.next += 1;
        let call_id = st.next;
        let invite = req.method() == Some("INVITE");
        st.calls.insert(
            call_id,
            Call {
                server,
                invite,
                branches: Vec::new(),
                outstanding: targets.len(),
                answered: false,
                finished: false,
                cancelled: false,
                timed_out: false,
                best: None,
                log,
            },
        );
        if let Some(s) = st.servers.get_mut(&server) {
            s.call = Some(call_id);
        }
        for (uri, dest, trunk) in targets {
            let mut fwd = req.clone();
            if let Some(u) = uri {
                fwd.set_uri(u);
            }
            if record_route {
                let call = req.call_id().unwrap_or("");
                fwd.push_front("Record-Route", self.record_route(call));
                if trunk.is_some() {
                    if let Some(rr) = self.stream_record_route(call, dest.transport) {
                        fwd.push_front("Record-Route", rr);
                    }
                }
            }
            fwd.push_front("Via", self.via(&new_branch(), dest.transport));
            let b = self.new_client(st, fwd, dest, Some(call_id), trunk, now);
            if let Some(c) = st.calls.get_mut(&call_id) {
                c.branches.push(b);
            }
        }
        if invite {
            let at = now + self.settings.ring_timeout;
            self.schedule(st, TimerKey::Ring(call_id), Some(at));
        }
    }

    async fn initial(
        &self,
        auth: &Authenticator,
        id: u64,
        mut req: Msg,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(table) = self.table() else {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 503, "Service Unavailable", now);
            return;
        };
        let Some(ruri) = req.request_uri() else {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 416, "Unsupported URI Scheme", now);
            return;
        };
        let dialled = ruri.user.clone().unwrap_or_default();
        let from = req.header("From").and_then(NameAddr::parse);
        let from_uri = from.as_ref().and_then(|f| SipUri::parse(&f.uri));
        let to = req.header("To").unwrap_or("").to_string();
        let config = table.config();

        // Who is calling: an upstream through one of our registrations, a trusted peer, or a
        // device (digest-authenticated).
        let candidate = table
            .registration_for_user(&dialled)
            .and_then(|id| config.registrations.iter().find(|r| r.id == id));
        let upstream = match candidate {
            Some(r) if from_upstream(r, source).await => Some(r.id.clone()),
            _ => None,
        };
        let peer_domain = if table.trusted_domain(source.ip(), &ruri.host) {
            Some(ruri.host.clone())
        } else {
            table.any_trusting_domain(source.ip()).map(str::to_string)
        };
        let mut from_user = from_uri
            .as_ref()
            .and_then(|u| u.user.clone())
            .unwrap_or_default();
        let caller_domain;
        let decision: Decision = if let Some(reg) = &upstream {
            table.route(Caller::Upstream { registration: reg }, &dialled)
        } else if let Some(domain) = &peer_domain {
            table.route(Caller::Peer { domain }, &dialled)
        } else {
            let Some(domain) = from_uri
                .as_ref()
                .and_then(|u| config.domain(&u.host))
                .or_else(|| config.domain(&ruri.host))
            else {
                let mut st = self.state.lock();
                self.reply(&mut st, id, 403, "Domain Not Served", now);
                return;
            };
            caller_domain = domain.domain.clone();
            match self.authenticate(auth, &req, &caller_domain, source) {
                Ok(user) => from_user = user,
                Err((resp, extra)) => {
                    let mut st = self.state.lock();
                    let Some(s) = st.servers.get(&id) else { return };
                    let r = response_to(&s.req, resp.0, resp.1, Some(&s.to_tag.clone()));
                    self.reply_with(&mut st, id, r, extra);
                    return;
                }
            }
            // Our realm's credentials are consumed here (§22.3).
            req.headers.retain(|(n, v)| {
                n != "Proxy-Authorization"
                    || !Credentials::parse(v)
                        .is_some_and(|c| c.realm.eq_ignore_ascii_case(&caller_domain))
            });
            table.route(
                Caller::Device {
                    domain: &caller_domain,
                    sip_user: &from_user,
                },
                &dialled,
            )
        };

        let mut log = CallLog {
            from: from_user.clone(),
            to: crate::routing::unescape(&dialled),
            number: decision.number.clone(),
            route: match &decision.route {
                Route::Extension { extension, .. } => format!("extension:{extension}"),
                Route::User { user, .. } => format!("user:{user}"),
                Route::Trunk { registration, .. } => format!("trunk:{registration}"),
                other => other.label().to_string(),
            },
            call_id: req.call_id().unwrap_or("").to_string(),
        };
        if let Some(cid) = &decision.caller_id {
            req.set(
                "P-Asserted-Identity",
                format!(
                    "\"{cid}\" <sip:{cid}@{}>",
                    from_uri.as_ref().map_or("", |u| u.host.as_str())
                ),
            );
            if let Some(f) = &from {
                let mut v = format!("\"{cid}\" <{}>", f.uri);
                for (k, val) in &f.params {
                    v.push(';');
                    v.push_str(k);
                    if let Some(val) = val {
                        v.push('=');
                        v.push_str(val);
                    }
                }
                req.set("From", v);
            }
        }
        let _ = to;

        let invite = req.method() == Some("INVITE");
        let targets: Vec<(Option<String>, Hop, Option<String>)> = match &decision.route {
            Route::Refused { status, reason } => {
                self.refuse(id, *status, reason, &log, now);
                return;
            }
            Route::NotFound => {
                self.refuse(id, 404, "Not Found", &log, now);
                return;
            }
            Route::Extension { devices, .. } | Route::User { devices, .. } => {
                let mut targets = Vec::new();
                let wall = SystemTime::now();
                for d in devices {
                    match self.store.lookup(d, wall).await {
                        Ok(bindings) => {
                            for b in bindings.into_iter().filter(|b| b.is_live(wall)) {
                                // UDP, or the TCP/TLS flow the phone registered over when
                                // it is open on this replica.
                                let hop = Hop {
                                    addr: b.source,
                                    transport: b.transport,
                                };
                                if b.transport == Transport::Udp
                                    || self.flows.transport_of(b.source) == Some(b.transport)
                                {
                                    targets.push((Some(b.contact.clone()), hop, None));
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(device = %d, error = %e, "location lookup failed");
                        }
                    }
                }
                if targets.is_empty() {
                    self.refuse(id, 480, "Temporarily Unavailable", &log, now);
                    return;
                }
                targets
            }
            Route::Trunk {
                registration,
                number,
            } => {
                let Some(reg) = config.registrations.iter().find(|r| &r.id == registration) else {
                    self.refuse(id, 503, "Trunk Not Configured", &log, now);
                    return;
                };
                // The registration's host, or its outbound proxy (with a Route to it).
                let Ok((peer, route)) = crate::uac::client::peer_and_route(reg) else {
                    self.refuse(id, 503, "Trunk Unreachable", &log, now);
                    return;
                };
                let dest = match peer.transport {
                    Transport::Udp => resolve(&peer.host, peer.port).await.map(|addr| Hop {
                        addr,
                        transport: Transport::Udp,
                    }),
                    _ => self.stream_to(&peer).await,
                };
                let Some(dest) = dest else {
                    self.refuse(id, 503, "Trunk Unreachable", &log, now);
                    return;
                };
                if let Some(route) = route {
                    req.push_front("Route", route);
                }
                let param = match reg.transport {
                    Transport::Udp => String::new(),
                    t => format!(";transport={}", t.as_sip_param()),
                };
                let uri = format!("sip:{number}@{}:{}{param}", reg.host, reg.port);
                vec![(Some(uri), dest, Some(reg.id.clone()))]
            }
        };
        log.number = decision.number.clone();
        let mut st = self.state.lock();
        self.start_call(&mut st, id, &req, targets, invite, log, now);
    }

    fn refuse(&self, id: u64, status: u16, reason: &str, log: &CallLog, now: Instant) {
        let outcome = match status {
            404 => "not_found",
            480 => "unavailable",
            403 => "refused",
            _ => "failed",
        };
        self.metrics.calls.with_label_values(&[outcome]).inc();
        tracing::info!(
            call_id = %log.call_id,
            from = %log.from,
            to = %log.to,
            number = %log.number,
            route = %log.route,
            status,
            outcome,
            reason,
            "call"
        );
        let mut st = self.state.lock();
        self.reply(&mut st, id, status, reason, now);
    }

    /// Checks the Proxy-Authorization of a device's request; the authenticated SIP user, or
    /// the status, reason and headers to answer with.
    #[allow(clippy::type_complexity)]
    fn authenticate(
        &self,
        auth: &Authenticator,
        req: &Msg,
        realm: &str,
        source: SocketAddr,
    ) -> Result<String, ((u16, &'static str), Vec<(String, String)>)> {
        let loaded = self
            .config
            .current()
            .ok_or(((503, "Service Unavailable"), Vec::new()))?;
        let domain = loaded
            .config
            .domain(realm)
            .ok_or(((403, "Domain Not Served"), Vec::new()))?;
        let credentials: Option<Credentials> = req
            .headers
            .iter()
            .filter(|(n, _)| n == "Proxy-Authorization")
            .filter_map(|(_, v)| Credentials::parse(v))
            .find(|c| c.realm.eq_ignore_ascii_case(realm));
        let device = credentials
            .as_ref()
            .and_then(|c| loaded.config.device(realm, &c.username))
            .map(|(_, d)| d);
        let now_secs = unix_now();
        let (verdict, failure) = auth.verify(
            &loaded.nonce_key,
            &Attempt {
                realm,
                algorithms: &domain.registration.digest_algorithms,
                method: req.method().unwrap_or(""),
                credentials: credentials.as_ref(),
                ha1: device.map(|d| Ha1 {
                    md5: &d.ha1_md5,
                    sha256: &d.ha1_sha256,
                }),
                source: source.ip(),
                now_secs,
                now: Instant::now(),
            },
        );
        if let Some(f) = failure.filter(|f| *f != Failure::NoCredentials) {
            self.metrics
                .auth_failures
                .with_label_values(&[f.as_str()])
                .inc();
        }
        match verdict {
            Verdict::Authorized => device
                .map(|d| d.sip_user.clone())
                .ok_or(((403, "Forbidden"), Vec::new())),
            Verdict::Forbidden => Err(((403, "Forbidden"), Vec::new())),
            Verdict::Challenge { stale } => {
                let challenges = auth
                    .challenges(
                        &loaded.nonce_key,
                        realm,
                        &domain.registration.digest_algorithms,
                        now_secs,
                        stale,
                    )
                    .into_iter()
                    .map(|c| ("Proxy-Authenticate".to_string(), c))
                    .collect();
                Err(((407, "Proxy Authentication Required"), challenges))
            }
        }
    }
}

/// What a server transaction keeps of its request: the start line and the headers a response
/// copies (§8.2.6.2), no body.
fn response_headers(req: &Msg) -> Msg {
    Msg {
        start: req.start.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "Via" | "From" | "To" | "Call-ID" | "CSeq" | "Record-Route"
                )
            })
            .cloned()
            .collect(),
        body: Bytes::new(),
    }
}

/// Whether a request from `source` comes from a registration's upstream: its host or outbound
/// proxy, by address (host names resolved at the time of the call).
async fn from_upstream(reg: &OutboundRegistration, source: SocketAddr) -> bool {
    let ip = crate::transport::nat::canonical(source).ip();
    let proxy = reg.outbound_proxy.as_deref().map(|p| {
        crate::message::headers::split_host_port(p).map_or_else(|| p.to_string(), |(h, _)| h)
    });
    for host in std::iter::once(reg.host.clone()).chain(proxy) {
        let bare = host.trim_matches(|c| c == '[' || c == ']');
        if let Ok(addr) = bare.parse::<std::net::IpAddr>() {
            if addr == ip {
                return true;
            }
            continue;
        }
        // A host name: its addresses now (the upstream may have several).
        if let Ok(addrs) = tokio::net::lookup_host((bare, reg.port)).await {
            if addrs
                .map(|a| crate::transport::nat::canonical(a).ip())
                .any(|a| a == ip)
            {
                return true;
            }
        }
    }
    false
}

async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

/// Where a request goes next: its first Route, else its Request-URI.
fn next_hop(req: &Msg) -> Option<SocketAddr> {
    let uri = match req.header_list("Route").first() {
        Some(r) => addr_uri(r),
        None => req.uri()?.to_string(),
    };
    uri_target(&SipUri::parse(&uri)?)
}

/// The `transport` parameter of where a request goes next (its first Route, else its
/// Request-URI), if given.
fn next_hop_transport(req: &Msg) -> Option<Transport> {
    let uri = match req.header_list("Route").first() {
        Some(r) => addr_uri(r),
        None => req.uri()?.to_string(),
    };
    let u = SipUri::parse(&uri)?;
    let (_, v) = u.params.iter().find(|(k, _)| k == "transport")?;
    match v.as_deref()?.to_ascii_lowercase().as_str() {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        "tls" => Some(Transport::Tls),
        _ => None,
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3).
fn build_ack(req: &Msg, resp: &Msg) -> Msg {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = req.header_list("Via").first() {
        headers.push(("Via".to_string(), v.clone()));
    }
    for (n, v) in &req.headers {
        if matches!(n.as_str(), "Route" | "From" | "Call-ID" | "Max-Forwards") {
            headers.push((n.clone(), v.clone()));
        }
    }
    if let Some(to) = resp.header("To") {
        headers.push(("To".into(), to.to_string()));
    }
    let n = req.cseq().map_or(1, |c| c.0);
    headers.push(("CSeq".into(), format!("{n} ACK")));
    Msg {
        start: Start::Request {
            method: "ACK".into(),
            uri: req.uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

/// The CANCEL for a branch's INVITE (§9.1): same Request-URI, top Via, Route, From, To,
/// Call-ID and CSeq number.
fn build_cancel(req: &Msg) -> Msg {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = req.header_list("Via").first() {
        headers.push(("Via".to_string(), v.clone()));
    }
    for (n, v) in &req.headers {
        if matches!(n.as_str(), "Route" | "From" | "To" | "Call-ID") {
            headers.push((n.clone(), v.clone()));
        }
    }
    headers.push(("Max-Forwards".into(), "70".into()));
    let n = req.cseq().map_or(1, |c| c.0);
    headers.push(("CSeq".into(), format!("{n} CANCEL")));
    Msg {
        start: Start::Request {
            method: "CANCEL".into(),
            uri: req.uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1002@127.0.0.1:5070 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sb1;rport\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-caller;rport=5071;received=127.0.0.1\r\n\
        Record-Route: <sip:127.0.0.1:5060;lr;sbp>\r\n\
        Route: <sip:10.0.0.9;lr>\r\n\
        From: <sip:1001@switchboard.local>;tag=a\r\nTo: <sip:1002@switchboard.local>\r\n\
        Call-ID: c1\r\nCSeq: 7 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n";

    fn resp(status: u16) -> Msg {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        response_to(&req, status, "X", Some("b"))
    }

    #[test]
    fn ack_for_a_failure_has_the_branch_the_to_tag_and_the_route() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let ack = build_ack(&req, &resp(486));
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.uri(), req.uri());
        assert_eq!(ack.header_list("Via").len(), 1, "only the top Via");
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK-sb1"));
        assert_eq!(ack.to_tag().as_deref(), Some("b"));
        assert_eq!(ack.header("CSeq"), Some("7 ACK"));
        assert_eq!(ack.header("Route"), Some("<sip:10.0.0.9;lr>"));
    }

    #[test]
    fn cancel_matches_the_invite_branch() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let c = build_cancel(&req);
        assert_eq!(c.method(), Some("CANCEL"));
        assert_eq!(c.header("CSeq"), Some("7 CANCEL"));
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bK-sb1"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(next_hop(&c), Some("10.0.0.9:5060".parse().unwrap()));
    }

    #[test]
    fn best_response_prefers_6xx_then_3xx_then_4xx_over_408_and_5xx() {
        assert!(better(&resp(486), None));
        assert!(better(&resp(486), Some(&resp(503))));
        assert!(better(&resp(486), Some(&resp(408))));
        assert!(better(&resp(302), Some(&resp(486))));
        assert!(better(&resp(603), Some(&resp(302))));
        assert!(!better(&resp(500), Some(&resp(404))));
    }

    #[tokio::test]
    async fn upstream_is_recognised_by_address_or_resolved_name() {
        let reg = |host: &str, proxy: Option<&str>| OutboundRegistration {
            id: "default/carrier".into(),
            host: host.into(),
            port: 5060,
            outbound_proxy: proxy.map(str::to_string),
            ..Default::default()
        };
        let src: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        assert!(from_upstream(&reg("127.0.0.1", None), src).await);
        assert!(from_upstream(&reg("localhost", None), src).await);
        assert!(!from_upstream(&reg("192.0.2.1", None), src).await);
        assert!(from_upstream(&reg("192.0.2.1", Some("127.0.0.1:5070")), src).await);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5099".parse().unwrap();
        assert!(from_upstream(&reg("127.0.0.1", None), mapped).await);
    }

    #[test]
    fn keys_match_retransmissions_ack_and_cancel_to_the_invite() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let via = req.top_via().unwrap();
        assert_eq!(server_key(&via, "ACK"), server_key(&via, "INVITE"));
        assert_ne!(server_key(&via, "CANCEL"), server_key(&via, "INVITE"));
        assert_eq!(client_key("z9hG4bK-sb1", "INVITE"), "z9hG4bK-sb1|INVITE");
    }
}
