//! The proxy's driver: the I/O around the sans-IO [`super::core`]. [`Proxy`] owns the UDP
//! socket, the TCP/TLS flows, the location store, the authenticator's checks, DNS and the
//! connections it opens to trunks, the timer task and the metrics. For each message it does
//! the async work first (the digest check, routing, location lookups, resolving a trunk:
//! `request.rs`, `initial.rs`, `auth.rs`, `trunk.rs`), then locks the core, feeds it,
//! releases the lock and carries out the actions it decided (sends, a timer wake-up, a call
//! logged, a drop counted): nothing is sent or awaited with the core locked. The server
//! transaction exists from the first moment, so a retransmission arriving while a new call is
//! being routed gets the 100 Trying again.
//!
//! **Per new request** (§16.3–16.6): the core checks Max-Forwards (483 at 0) and
//! Proxy-Require; a Route naming this proxy is popped (loose routing); a request inside a
//! dialog (To tag) must come through our Record-Route and is relayed by its Request-URI; an
//! initial INVITE or MESSAGE is authenticated (407, the registrar's nonces and digest code),
//! routed ([`crate::routing`]) and forked to every live binding of the target devices in
//! parallel, or sent to the trunk. Each branch gets our Via on top and, for INVITE, our
//! Record-Route (built here, as they need the configuration and our addresses).

use super::core::{new_branch, Action, Branch, CallLog, CallRecord, Core, Hop, ProxySettings};
use super::flows::Flows;
use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::ConfigHandle;
use crate::location::LocationStore;
use crate::message::check::{self, Fault};
use crate::message::owned::{self as sip, Msg, Start};
use crate::message::ParseError;
use crate::metrics::Metrics;
use crate::routing::RoutingTable;
use bytes::Bytes;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

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
    table: Mutex<Option<Arc<RoutingTable>>>,
    /// The UDP socket, the address we advertise and that address as text (for Via and
    /// Record-Route, written on every request relayed).
    udp: OnceLock<(Arc<UdpSocket>, SocketAddr, String)>,
    pub(super) flows: Flows,
    pub(super) outbound: OnceLock<Outbound>,
    /// Every transaction and call; locked only to feed it one input.
    core: Mutex<Core>,
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

/// Where one branch of a call goes (before the driver builds its request).
#[derive(Clone, Debug)]
pub(super) struct Target {
    /// The Request-URI to set, or None to keep the request's.
    pub(super) uri: Option<String>,
    /// The next hop.
    pub(super) hop: Hop,
    /// The outbound registration when the branch goes to a trunk (answers its challenges).
    pub(super) trunk: Option<String>,
    /// A Route to push on top: the sibling replica that holds the target's flow.
    pub(super) route: Option<String>,
}

impl Target {
    /// A branch to `hop`, the Request-URI kept.
    pub(super) fn hop(hop: Hop) -> Target {
        Target {
            uri: None,
            hop,
            trunk: None,
            route: None,
        }
    }
}

// The call log is written here: the core only decides what goes in it.
impl CallLog {
    /// Counts the call by `outcome` and logs its line (with the reason of a refusal).
    pub(super) fn record(
        &self,
        metrics: &Metrics,
        status: u16,
        outcome: &str,
        reason: Option<&str>,
    ) {
        metrics.calls.with_label_values(&[outcome]).inc();
        tracing::info!(
            call_id = %self.call_id,
            from = %self.from,
            to = %self.to,
            number = %self.number,
            route = %self.route,
            status,
            outcome,
            reason,
            "call"
        );
    }
}

impl CallRecord {
    /// Counts the call (a MESSAGE by whether it was delivered) and logs a call's line.
    pub(super) fn record(&self, metrics: &Metrics) {
        if !self.invite {
            let outcome = if (200..300).contains(&self.status) {
                "message_delivered"
            } else {
                "message_failed"
            };
            metrics.calls.with_label_values(&[outcome]).inc();
            return;
        }
        self.log.record(metrics, self.status, self.outcome, None);
    }
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
                table: Mutex::new(None),
                udp: OnceLock::new(),
                flows: Flows::default(),
                outbound: OnceLock::new(),
                core: Mutex::new(Core::new(settings)),
                wake: Notify::new(),
            }),
        }
    }

    /// Gives the proxy the UDP socket it sends on and the address it puts in Via and
    /// Record-Route, and starts the timer task. Only the first call counts.
    pub fn attach_udp(&self, socket: Arc<UdpSocket>, advertised: SocketAddr) {
        let text = advertised.to_string();
        if self.inner.udp.set((socket, advertised, text)).is_ok() {
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
        self.inner.core.lock().load()
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
            .map(|(n, v)| (n.as_ref(), v.as_str()));
        let fault = msg
            .uri()
            .and_then(|uri| check::request_uri(uri).err())
            .or_else(|| check::headers(fields).err())
            .or_else(|| method_mismatch(&msg));
        if let Some(fault) = fault {
            return self.malformed(data, Some((fault, &msg)));
        }
        match msg.start {
            Start::Response { .. } => {
                let now = Instant::now();
                self.inner.with_core(|core| core.on_response(msg, now));
            }
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

    /// [`Inner::local`] as text.
    pub(super) fn local_text(&self) -> &str {
        self.udp.get().map(|u| u.2.as_str()).expect("attached")
    }

    pub(super) fn send(&self, data: Bytes, to: Hop) {
        if to.transport.is_stream() {
            if !self.flows.send(to.addr, data) {
                tracing::debug!(to = %to.addr, "no open flow to send into");
            }
            return;
        }
        let Some((socket, ..)) = self.udp.get() else {
            return;
        };
        if let Err(e) = socket.try_send_to(&data, to.addr) {
            tracing::debug!(to = %to.addr, error = %e, "proxy UDP send failed");
        }
    }

    /// Locks the core for `f` (one input), then carries out the actions it decided, the lock
    /// released.
    pub(super) fn with_core<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let (r, actions) = {
            let mut core = self.core.lock();
            let r = f(&mut core);
            (r, core.take())
        };
        self.perform(actions);
        r
    }

    fn perform(&self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { data, hop } => self.send(data, hop),
                Action::SendTo { data, addr } => self.send(data, self.hop(addr)),
                Action::Wake => self.wake.notify_one(),
                Action::Call(record) => record.record(&self.metrics),
                Action::Dropped(why) => self.metrics.dropped.with_label_values(&[why]).inc(),
                Action::Challenged(challenge) => {
                    let retry = self.authenticated_retry(
                        &challenge.req,
                        &challenge.resp,
                        &challenge.registration,
                        challenge.dest.transport,
                    );
                    let now = Instant::now();
                    self.with_core(|core| core.reauth(challenge, retry, now));
                }
            }
        }
    }

    /// A locally generated response through server transaction `id`.
    pub(super) fn reply(&self, id: u64, status: u16, reason: &str, now: Instant) {
        self.with_core(|core| core.reply(id, status, reason, now));
    }

    /// Starts the call of server transaction `id`: `req` forked to `targets`, with our
    /// Record-Route facing `caller` and each target when `caller` is given.
    pub(super) fn start_call(
        &self,
        id: u64,
        req: Msg,
        targets: Vec<Target>,
        caller: Option<Hop>,
        log: CallLog,
        now: Instant,
    ) {
        let branches = self.branches(req, targets, caller);
        self.with_core(|core| core.start_call(id, branches, log, now));
    }

    /// The request of each branch: Request-URI, a sibling's Route, our Record-Route(s) and
    /// our Via (the request is cloned for all but the last).
    fn branches(&self, req: Msg, targets: Vec<Target>, caller: Option<Hop>) -> Vec<Branch> {
        let n = targets.len();
        let mut req = Some(req);
        let mut branches = Vec::with_capacity(n);
        for (i, target) in targets.into_iter().enumerate() {
            let mut fwd = match (i + 1 == n, &mut req) {
                (true, r) => r.take().expect("the last branch"),
                (false, r) => r.as_ref().expect("kept until the last").clone(),
            };
            let Target {
                uri,
                hop: dest,
                trunk,
                route,
            } = target;
            if let Some(u) = uri {
                fwd.set_uri(u);
            }
            if let Some(r) = route {
                fwd.push_front("Route", r);
            }
            if let Some(caller) = caller {
                let call = fwd.call_id().unwrap_or("");
                let (bottom, top) = self.record_routes(call, caller, dest, trunk.is_some());
                fwd.push_front("Record-Route", bottom);
                if let Some(rr) = top {
                    fwd.push_front("Record-Route", rr);
                }
            }
            let via_branch = new_branch();
            fwd.push_front("Via", self.via(&via_branch, dest.transport));
            branches.push(Branch {
                req: fwd,
                dest,
                trunk,
                via_branch,
            });
        }
        branches
    }

    /// Serves the core's deadlines: sleeps until the earliest, fires those due, and sets the
    /// gauges of live transactions and calls.
    pub(super) async fn run_timers(self: Arc<Self>) {
        loop {
            let next = self.core.lock().next_deadline();
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
            let (servers, clients, calls) = self.with_core(|core| {
                core.on_timers(now);
                core.load()
            });
            let gauge = &self.metrics.proxy_transactions;
            gauge.with_label_values(&["server"]).set(servers as i64);
            gauge.with_label_values(&["client"]).set(clients as i64);
            self.metrics.proxy_calls.set(calls as i64);
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
        use std::fmt::Write;
        let local = self.local_text();
        let mut via = String::with_capacity(local.len() + branch.len() + 32);
        let _ = write!(via, "SIP/2.0/{transport} ");
        for part in [local, ";branch=", branch, ";rport"] {
            via.push_str(part);
        }
        via
    }
}

/// A driver on the embedded config, attached to a loopback UDP socket, for the unit tests
/// of the driver's modules.
#[cfg(test)]
pub(super) mod fixtures {
    /// The driver's state.
    pub(in crate::proxy) async fn inner() -> std::sync::Arc<super::Inner> {
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
    use super::super::core::fixtures;
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
