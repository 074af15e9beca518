//! The I/O driver of one outbound registration: a task that owns a flow to the upstream,
//! drives client transactions (`transaction::machine`: Timer E on UDP, F, K), and feeds
//! the pure [`Machine`]s of the REGISTER leg and, when `subscribe` is set, one SUBSCRIBE leg
//! per event package (`presence`, `dialog`), started once registered. NOTIFYs arrive on the
//! same flow (a subscription's Contact is the flow's own address, so the notifier's requests
//! reach this task rather than the registrar's listening socket), are answered here and read by
//! [`super::presence`].

use super::flow::{Flow, FlowError, Peer};
use super::machine::{Action, Input, Machine, Outcome, Timing};
use super::presence::{self, Body, DialogBook, Notified, Package, SubState};
use super::sip::{self, Method, RequestSpec, ResponseExt};
use crate::auth::client::{self as digest, ClientCredentials};
use crate::location::LocationStore;
use crate::transaction::machine::{
    Action as TxAction, Machine as TxMachine, State as TxState, Timers,
};
use bytes::Bytes;
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::parse_hostport;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;

/// The registrar's own addresses, put in the Contact so upstream requests arrive here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactAddrs {
    /// `host:port` reachable over UDP.
    pub udp: Option<String>,
    /// `host:port` reachable over TCP.
    pub tcp: Option<String>,
    /// `host:port` reachable over TLS.
    pub tls: Option<String>,
}

impl ContactAddrs {
    /// From the registrar's listen addresses (the first of each transport): a wildcard
    /// address (`0.0.0.0`, `::`) takes `advertise`'s IP, or is left out when there is none.
    pub fn from_listen(
        udp: &[std::net::SocketAddr],
        tcp: &[std::net::SocketAddr],
        tls: &[std::net::SocketAddr],
        advertise: Option<std::net::IpAddr>,
    ) -> ContactAddrs {
        let pick = |addrs: &[std::net::SocketAddr]| {
            let a = addrs.first()?;
            let ip = if a.ip().is_unspecified() {
                advertise?
            } else {
                a.ip()
            };
            Some(std::net::SocketAddr::new(ip, a.port()).to_string())
        };
        ContactAddrs {
            udp: pick(udp),
            tcp: pick(tcp),
            tls: pick(tls),
        }
    }

    /// The address for a transport.
    pub fn get(&self, t: Transport) -> Option<&str> {
        match t {
            Transport::Udp => self.udp.as_deref(),
            Transport::Tcp => self.tcp.as_deref(),
            Transport::Tls => self.tls.as_deref(),
            Transport::Ws | Transport::Wss => None,
        }
    }
}

/// Settings shared by every outbound registration.
#[derive(Clone)]
pub struct ClientSettings {
    /// Retry and refresh timing.
    pub timing: Timing,
    /// RFC 3261 T1 (500 ms): first UDP retransmission interval.
    pub t1: Duration,
    /// Transaction timeout (Timer F, 64·T1 = 32 s); also bounds connecting.
    pub transaction_timeout: Duration,
    /// User-Agent header.
    pub user_agent: String,
    /// Contact addresses per transport.
    pub contacts: ContactAddrs,
    /// TLS client config (system roots plus extra CAs); TLS registrations fail without it.
    pub tls: Option<Arc<ClientConfig>>,
    /// Where the Contact registered upstream is recorded for the replicas: one taking a
    /// registration over removes the previous owner's Contact in its first REGISTER.
    pub store: Option<Arc<dyn LocationStore>>,
    /// Retries of phase-change callbacks (`crate::callback`).
    pub callback: crate::callback::retry::Policy,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            timing: Timing::default(),
            t1: Duration::from_millis(500),
            transaction_timeout: Duration::from_secs(32),
            user_agent: format!("switchboard-registrar/{}", env!("CARGO_PKG_VERSION")),
            contacts: ContactAddrs::default(),
            tls: None,
            store: None,
            callback: crate::callback::retry::Policy::default(),
        }
    }
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("timing", &self.timing)
            .field("t1", &self.t1)
            .field("transaction_timeout", &self.transaction_timeout)
            .field("contacts", &self.contacts)
            .field("tls", &self.tls.is_some())
            .field("store", &self.store.is_some())
            .field("callback", &self.callback)
            .finish()
    }
}

/// What a registration task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `namespace/name` of the SipRegistration.
    pub id: String,
    /// REGISTER or SUBSCRIBE.
    pub method: Method,
    /// The outcome.
    pub outcome: Outcome,
    /// When the last request of the attempt was sent.
    pub attempt_time: SystemTime,
    /// When the binding expires unless refreshed (Successful only).
    pub expires_time: Option<SystemTime>,
    /// The Contact registered.
    pub contact: Option<String>,
}

/// A NOTIFY of one of a registration's subscriptions, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReport {
    /// `namespace/name` of the SipRegistration.
    pub id: String,
    /// The subscription's package.
    pub package: Package,
    /// Its `Subscription-State`, when readable.
    pub state: Option<SubState>,
    /// The entity's state, when the body told one.
    pub entity: Option<Notified>,
    /// Why the body could not be used, if it could not.
    pub body_error: Option<String>,
}

/// What a registration task tells its manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A leg's outcome: the REGISTER phase, or the answer to a SUBSCRIBE.
    Outcome(Report),
    /// A NOTIFY of a subscription.
    Notify(NotifyReport),
}

/// Where reports go.
pub type ReportFn = Arc<dyn Fn(Update) + Send + Sync>;

/// A client transaction of a leg: the request's identity and bytes; its states and timers
/// (E, F, K) are `transaction::machine`'s.
struct Tx {
    branch: String,
    cseq: u32,
    data: Bytes,
    machine: TxMachine,
}

impl Tx {
    /// Still waiting for a final response (not absorbing retransmissions in Completed).
    fn pending(&self) -> bool {
        matches!(self.machine.state(), TxState::Trying | TxState::Proceeding)
    }
}

struct Leg {
    method: Method,
    machine: Machine,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
    tx: Option<Tx>,
    timer: Option<Instant>,
    started: bool,
    contact: Option<String>,
    last_attempt: SystemTime,
    /// SUBSCRIBE: the notifier's Contact, the Request-URI of requests inside the dialog.
    remote_target: Option<String>,
    /// SUBSCRIBE `dialog`: the dialogs notified so far.
    book: DialogBook,
}

impl Leg {
    fn new(method: Method, machine: Machine) -> Leg {
        Leg {
            method,
            machine,
            call_id: format!("{}@switchboard", random_token(20)),
            from_tag: random_token(10),
            to_tag: None,
            cseq: 0,
            tx: None,
            timer: None,
            started: false,
            contact: None,
            last_attempt: SystemTime::now(),
            remote_target: None,
            book: DialogBook::default(),
        }
    }

    fn package(&self) -> Option<Package> {
        match self.method {
            Method::Subscribe(p) => Some(p),
            Method::Register => None,
        }
    }

    /// Forgets the subscription dialog: the next SUBSCRIBE starts a new one (RFC 6665 §4.1.3).
    fn reset_dialog(&mut self) {
        self.call_id = format!("{}@switchboard", random_token(20));
        self.from_tag = random_token(10);
        self.to_tag = None;
        self.remote_target = None;
        self.book.clear();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let tx = self
            .tx
            .as_ref()
            // The machine keeps std time; tokio's (paused in tests) maps onto it both ways.
            .and_then(|t| t.machine.deadline())
            .map(Instant::from_std);
        match (tx, self.timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn random_token(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// One registration's task state.
struct Client {
    reg: OutboundRegistration,
    settings: Arc<ClientSettings>,
    peer: Peer,
    route: Option<String>,
    flow: Option<Flow>,
    legs: Vec<Leg>,
    report: ReportFn,
    warned_contact: bool,
    /// A previous owner's Contact to remove with our first successful REGISTER.
    retire: Option<String>,
    /// The Contact recorded in the store.
    recorded: Option<String>,
}

/// How long a replica taking a registration over from another waits before registering.
const HANDOVER_DELAY: Duration = crate::cluster::DEAD_AFTER;

const REG: usize = 0;

/// Where REGISTER goes and the Route header, from the registration and its outbound proxy.
pub fn peer_and_route(reg: &OutboundRegistration) -> Result<(Peer, Option<String>), String> {
    match &reg.outbound_proxy {
        Some(p) => {
            let t = parse_hostport(p, reg.transport, None)?;
            let param = match t.transport {
                Transport::Udp => String::new(),
                other => format!(";transport={}", other.as_sip_param()),
            };
            let route = format!("<sip:{}:{}{param};lr>", t.host, t.port);
            Ok((
                Peer {
                    host: t.host,
                    port: t.port,
                    transport: t.transport,
                },
                Some(route),
            ))
        }
        None => Ok((
            Peer {
                host: reg.host.clone(),
                port: reg.port,
                transport: reg.transport,
            },
            None,
        )),
    }
}

/// Runs one registration until `stop` turns true and the unregistration is done.
pub async fn run(
    reg: OutboundRegistration,
    settings: Arc<ClientSettings>,
    report: ReportFn,
    mut stop: watch::Receiver<bool>,
) {
    let seed = {
        let mut rng = rand::rng();
        rng.random::<u64>()
    };
    let (peer, route) = match peer_and_route(&reg) {
        Ok(x) => x,
        Err(e) => {
            report(invalid_proxy(&reg, &e));
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    };
    let legs = legs(&reg, &settings, seed);
    let mut c = Client {
        reg,
        settings,
        peer,
        route,
        flow: None,
        legs,
        report,
        warned_contact: false,
        retire: None,
        recorded: None,
    };
    c.load_recorded().await;
    if c.retire.is_some() && c.retire != c.advertised_contact() {
        // Taken over from another replica. If it is alive (ownership moved because this one
        // joined), it stops once it sees this one, within a probe round or two: wait that long
        // so its last refresh cannot land after our REGISTER replaced its Contact.
        tokio::select! {
            _ = tokio::time::sleep(HANDOVER_DELAY) => {}
            _ = crate::transport::shutdown_requested(&mut stop) => {}
        }
    }
    c.feed(REG, Input::Start).await;
    c.drive(stop).await;
}

/// The report of a registration whose outbound proxy cannot be used.
fn invalid_proxy(reg: &OutboundRegistration, error: &str) -> Update {
    Update::Outcome(Report {
        id: reg.id.clone(),
        method: Method::Register,
        outcome: Outcome {
            phase: switchboard_crds::registration::RegistrationPhase::Failed,
            code: None,
            reason: format!("invalid outbound proxy: {error}"),
            granted: None,
        },
        attempt_time: SystemTime::now(),
        expires_time: None,
        contact: None,
    })
}

/// The legs of a registration: REGISTER first (at [`REG`]), then a SUBSCRIBE per package
/// when it subscribes, each machine with a seed of its own.
fn legs(reg: &OutboundRegistration, settings: &ClientSettings, seed: u64) -> Vec<Leg> {
    let timing = settings.timing.clone();
    let mut legs = vec![Leg::new(
        Method::Register,
        Machine::new(reg.expires, reg.realm.clone(), timing.clone(), seed),
    )];
    if reg.subscribe {
        for (n, package) in Package::ALL.into_iter().enumerate() {
            legs.push(Leg::new(
                Method::Subscribe(package),
                Machine::new(
                    reg.expires,
                    reg.realm.clone(),
                    timing.clone(),
                    seed.rotate_left(17 + 8 * n as u32),
                ),
            ));
        }
    }
    legs
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Client {
    /// Reads the Contact recorded in the store (by this or a previous owner), to remove it
    /// with the first successful REGISTER.
    async fn load_recorded(&mut self) {
        let Some(store) = &self.settings.store else {
            return;
        };
        match store.upstream_contact(&self.reg.id).await {
            Ok(previous) => {
                self.retire.clone_from(&previous);
                self.recorded = previous;
            }
            Err(e) => {
                tracing::warn!(registration = %self.reg.id, error = %e, "previous upstream Contact unknown: a Contact another replica registered stays until it expires");
            }
        }
    }

    /// Feeds stop, messages and timers to the legs until every leg is done (or, for a
    /// subscription, never started).
    async fn drive(&mut self, mut stop: watch::Receiver<bool>) {
        let mut stopping = *stop.borrow();
        if stopping {
            self.stop_all().await;
        }
        loop {
            if self
                .legs
                .iter()
                .all(|l| l.machine.is_done() || (!l.started && l.package().is_some()))
            {
                break;
            }
            let deadline = self.legs.iter().filter_map(Leg::next_deadline).min();
            let has_flow = self.flow.is_some();
            tokio::select! {
                changed = stop.changed(), if !stopping => {
                    if changed.is_err() || *stop.borrow() {
                        stopping = true;
                        self.stop_all().await;
                    }
                }
                msg = async { self.flow.as_mut().expect("flow").recv().await }, if has_flow => {
                    match msg {
                        Ok(text) => self.on_message(&text).await,
                        Err(e) => self.flow_lost(format!("connection to {} lost: {e}", self.peer)).await,
                    }
                }
                _ = sleep_until_opt(deadline) => self.on_timers().await,
            }
        }
    }

    async fn stop_all(&mut self) {
        // Unsubscribe and unregister concurrently; each ends when its answer (or timeout) comes.
        for i in (0..self.legs.len()).rev() {
            if self.legs[i].started || i == REG {
                self.legs[i].timer = None;
                self.feed(i, Input::Stop).await;
            }
        }
    }

    async fn flow_lost(&mut self, reason: String) {
        tracing::debug!(registration = %self.reg.id, %reason, "flow closed");
        self.flow = None;
        for i in 0..self.legs.len() {
            if self.legs[i].tx.take().is_some_and(|t| t.pending()) {
                self.feed(
                    i,
                    Input::TransportFailed {
                        code: Some(503),
                        reason: reason.clone(),
                    },
                )
                .await;
            }
        }
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.legs.len() {
            // Transaction timers: E retransmits, F times out, K ends Completed.
            let mut timed_out = false;
            let mut resend = None;
            if let Some(tx) = self.legs[i].tx.as_mut() {
                for action in tx.machine.on_timer(now.into_std()) {
                    match action {
                        TxAction::Transmit => resend = Some(tx.data.clone()),
                        TxAction::Timeout => timed_out = true,
                        _ => {}
                    }
                }
                if tx.machine.is_terminated() {
                    self.legs[i].tx = None;
                }
            }
            if timed_out {
                self.feed(i, Input::Timeout).await;
            } else if let Some(data) = resend {
                if let Some(flow) = self.flow.as_mut() {
                    let _ = flow.send(&data).await;
                }
            }
            // The machine's timer.
            if self.legs[i].timer.is_some_and(|t| t <= now) {
                self.legs[i].timer = None;
                self.feed(i, Input::Timer).await;
            }
        }
    }

    async fn on_message(&mut self, text: &str) {
        if !text.starts_with("SIP/2.0 ") {
            return self.on_request(text).await;
        }
        let resp = match sip::parse_response(text) {
            Ok(r) => r,
            Err(e) => {
                tracing::trace!(registration = %self.reg.id, error = %e, "ignoring a message that is not a response");
                return;
            }
        };
        let (code, branch) = (resp.code(), resp.branch());
        let Some((cseq, cseq_method)) = resp.cseq() else {
            return;
        };
        let Some(i) = self
            .legs
            .iter()
            .position(|l| Some(l.call_id.as_str()) == resp.call_id())
        else {
            return;
        };
        let leg = &mut self.legs[i];
        let Some(tx) = leg
            .tx
            .as_mut()
            .filter(|t| t.cseq == cseq && t.branch == branch)
        else {
            return;
        };
        if cseq_method != leg.method.as_str() {
            return;
        }
        let delivered = tx
            .machine
            .on_response(code, Instant::now().into_std())
            .contains(&TxAction::Deliver(code));
        if tx.machine.is_terminated() {
            leg.tx = None;
        }
        // Provisionals only move the transaction (E at T2); retransmitted finals are absorbed.
        if code < 200 || !delivered {
            return;
        }
        let reply = resp.reply(leg.method, leg.contact.as_deref());
        if leg.package().is_some() {
            if (200..300).contains(&code) {
                leg.to_tag = resp.to_tag();
                if let Some(uri) = resp.remote_target() {
                    leg.remote_target = Some(uri);
                }
            } else if !matches!(code, 401 | 407 | 423) {
                // Refused, or a refresh the notifier no longer knows (481): a new dialog.
                leg.reset_dialog();
            }
        }
        self.feed(i, Input::Reply(reply)).await;
    }

    /// Feeds an input to leg `i` and carries out the actions, including the inputs they cause.
    async fn feed(&mut self, i: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        let mut rounds = 0;
        while let Some(input) = inputs.pop_front() {
            rounds += 1;
            if rounds > 16 {
                tracing::error!(registration = %self.reg.id, "state machine loop; giving up this round");
                break;
            }
            if input == Input::Start {
                self.legs[i].started = true;
            }
            for action in self.legs[i].machine.handle(input) {
                match action {
                    Action::Send { expires, auth } => {
                        if let Err(failure) = self.send(i, expires, auth.as_ref()).await {
                            inputs.push_back(failure);
                        }
                    }
                    Action::Wait(d) => self.legs[i].timer = Some(Instant::now() + d),
                    Action::Report(outcome) => self.on_outcome(i, outcome).await,
                    Action::Finished => {
                        self.legs[i].timer = None;
                        self.legs[i].tx = None;
                    }
                }
            }
        }
    }

    async fn on_outcome(&mut self, i: usize, outcome: Outcome) {
        let leg = &self.legs[i];
        let expires_time = outcome
            .granted
            .map(|g| SystemTime::now() + Duration::from_secs(g.into()));
        let successful =
            outcome.phase == switchboard_crds::registration::RegistrationPhase::Successful;
        let failed = outcome.phase == switchboard_crds::registration::RegistrationPhase::Failed;
        (self.report)(Update::Outcome(Report {
            id: self.reg.id.clone(),
            method: leg.method,
            outcome,
            attempt_time: leg.last_attempt,
            expires_time,
            contact: leg.contact.clone(),
        }));
        if i != REG && failed && self.legs[i].to_tag.is_some() {
            // A refresh that timed out or could not be sent: the dialog is not to be trusted.
            self.legs[i].reset_dialog();
        }
        if i == REG && successful {
            self.retire = None;
            // Subscribe once registered.
            for sub in 1..self.legs.len() {
                if !self.legs[sub].started {
                    Box::pin(self.feed(sub, Input::Start)).await;
                }
            }
        }
    }

    /// A request from the upstream on this flow: a NOTIFY of one of the subscriptions is
    /// answered 200 and reported, an OPTIONS 200; anything else is answered as RFC 3261 and
    /// 6665 ask (481 for a NOTIFY of no subscription, 489 for another package, 501).
    async fn on_request(&mut self, text: &str) {
        use crate::message::{self, HeaderName, Parsed};
        let req = match message::parse(text.as_bytes()) {
            Ok(Parsed::Request(r)) => r,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(registration = %self.reg.id, error = %e, "malformed request from upstream");
                if let Some(headers) = e.salvage.as_deref() {
                    self.answer(headers, e.status, "Bad Request").await;
                }
                return;
            }
        };
        match req.method {
            message::Method::Ack => return,
            // An upstream's keepalive (qualify) of this flow.
            message::Method::Options => return self.answer(&req.headers, 200, "OK").await,
            message::Method::Notify => {}
            _ => return self.answer(&req.headers, 501, "Not Implemented").await,
        }
        let to_tag = req
            .header(&HeaderName::To)
            .and_then(message::headers::NameAddrRef::parse)
            .and_then(|n| n.tag());
        let leg = self.legs.iter().position(|l| {
            l.package().is_some()
                && Some(l.call_id.as_str()) == req.call_id()
                && Some(l.from_tag.as_str()) == to_tag
        });
        let Some(i) = leg else {
            return self
                .answer(&req.headers, 481, "Subscription Does Not Exist")
                .await;
        };
        let package = self.legs[i].package().expect("a subscription leg");
        let event = req.header(&HeaderName::Other("Event"));
        if event.and_then(Package::from_event) != Some(package) {
            return self.answer(&req.headers, 489, "Bad Event").await;
        }
        self.answer(&req.headers, 200, "OK").await;
        self.on_notify(i, package, &req).await;
    }

    /// Reads a NOTIFY already answered: the dialog it confirms, its state, its body.
    async fn on_notify(&mut self, i: usize, package: Package, req: &crate::message::Request<'_>) {
        use crate::message::headers::NameAddrRef;
        use crate::message::HeaderName;
        let other = |n: &str| req.header(&HeaderName::Other(n));
        let leg = &mut self.legs[i];
        if leg.to_tag.is_none() {
            // A NOTIFY may arrive before the 200 to SUBSCRIBE (RFC 6665 §4.1.2.4).
            leg.to_tag = req
                .header(&HeaderName::From)
                .and_then(NameAddrRef::parse)
                .and_then(|n| n.tag())
                .map(str::to_string);
        }
        if let Some(c) = req
            .header(&HeaderName::Contact)
            .and_then(NameAddrRef::parse)
        {
            leg.remote_target = Some(c.uri.to_string());
        }
        let state = other("Subscription-State").and_then(SubState::parse);
        let (entity, body_error) =
            match presence::parse_body(package, other("Content-Type"), req.body) {
                Ok(Body::Empty) => (None, None),
                Ok(Body::Presence(n)) => (Some(n), None),
                Ok(Body::Dialog(d)) => (Some(leg.book.apply(d)), None),
                Err(e) => (None, Some(e.to_string())),
            };
        if let Some(e) = &body_error {
            tracing::warn!(registration = %self.reg.id, event = package.event(), error = %e, "NOTIFY body not understood");
        }
        (self.report)(Update::Notify(NotifyReport {
            id: self.reg.id.clone(),
            package,
            state: state.clone(),
            entity,
            body_error,
        }));
        // Only a subscription at rest starts anew here: one being refreshed learns from the
        // refresh's answer (481), and one being ended (Expires: 0) gets this NOTIFY as the
        // normal end — resetting its dialog would lose the answer to the unsubscribe.
        if let (
            Some(SubState::Terminated {
                reason,
                retry_after,
            }),
            true,
        ) = (state, self.legs[i].machine.is_registered())
        {
            // RFC 6665 §4.1.3: after `rejected`, `noresource` or `invariant` asking again
            // soon is pointless; otherwise subscribe again (after `retry-after`, if given).
            let hopeless = matches!(
                reason.as_deref(),
                Some("rejected" | "noresource" | "invariant")
            );
            let max = u32::try_from(self.settings.timing.backoff_max.as_secs()).unwrap_or(u32::MAX);
            self.legs[i].reset_dialog();
            let retry_after = if hopeless { Some(max) } else { retry_after };
            self.feed(i, Input::Terminated { retry_after }).await;
        }
    }

    /// Answers a request from the upstream statelessly, on the flow it came in on.
    async fn answer(
        &mut self,
        headers: &[crate::message::parse::Header<'_>],
        code: u16,
        reason: &'static str,
    ) {
        let bytes = crate::message::Response::to_request(headers, code, reason, None)
            .encode(&self.settings.user_agent);
        if let Some(flow) = self.flow.as_mut() {
            if let Err(e) = flow.send(&bytes).await {
                tracing::debug!(registration = %self.reg.id, error = %e, "answering the upstream failed");
            }
        }
    }

    /// Records our Contact for the replica that may take this registration over, before it
    /// is sent: a replica reading it after that point removes it in its own first REGISTER.
    async fn record_contact(&mut self, contact: &str) {
        let Some(store) = &self.settings.store else {
            return;
        };
        if self.recorded.as_deref() == Some(contact) {
            return;
        }
        match store
            .set_upstream_contact(&self.reg.id, Some(contact))
            .await
        {
            Ok(()) => self.recorded = Some(contact.to_string()),
            Err(e) => {
                tracing::warn!(registration = %self.reg.id, error = %e, "recording the upstream Contact failed");
            }
        }
    }

    fn contact_for(&mut self, local: std::net::SocketAddr) -> String {
        if let Some(c) = self.advertised_contact() {
            return c;
        }
        if !self.warned_contact {
            self.warned_contact = true;
            tracing::warn!(registration = %self.reg.id, transport = %self.peer.transport,
                "no advertised address for this transport: Contact uses the UAC's own socket, which does not take calls");
        }
        self.contact_at(&local.to_string())
    }

    /// Our Contact at the advertised address for the transport, when there is one.
    fn advertised_contact(&self) -> Option<String> {
        let hostport = self.settings.contacts.get(self.peer.transport)?.to_string();
        Some(self.contact_at(&hostport))
    }

    fn contact_at(&self, hostport: &str) -> String {
        let param = match self.peer.transport {
            Transport::Udp => String::new(),
            other => format!(";transport={}", other.as_sip_param()),
        };
        format!("sip:{}@{hostport}{param}", self.reg.username)
    }

    /// Opens the flow if there is none; on failure returns the input to feed back to leg `i`.
    async fn open_flow(&mut self, i: usize) -> Result<(), Input> {
        if self.flow.is_some() {
            return Ok(());
        }
        let opened = Flow::open(
            &self.peer,
            self.settings.tls.as_ref(),
            self.settings.transaction_timeout,
        )
        .await;
        match opened {
            Ok(f) => {
                self.flow = Some(f);
                Ok(())
            }
            Err(e) => {
                self.legs[i].last_attempt = SystemTime::now();
                let code = match e {
                    FlowError::Dns(_) => None,
                    FlowError::Connect(_) => Some(503),
                };
                Err(Input::TransportFailed {
                    code,
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The `(Proxy-)Authorization` header answering `a` for a `method` request to `uri`,
    /// with the registration's credentials.
    fn authorization(
        &self,
        method: Method,
        uri: &str,
        a: &super::machine::Auth,
    ) -> (&'static str, String) {
        let creds = ClientCredentials {
            username: self
                .reg
                .auth_username
                .as_deref()
                .unwrap_or(&self.reg.username),
            password: &self.reg.password,
        };
        let value = digest::authorization(
            &a.challenge,
            &creds,
            method.as_str(),
            uri,
            a.nc,
            &random_token(16),
        );
        let name = if a.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        (name, value)
    }

    /// Sends a new request on leg `i`; on failure returns the input to feed back.
    async fn send(
        &mut self,
        i: usize,
        expires: u32,
        auth: Option<&super::machine::Auth>,
    ) -> Result<(), Input> {
        self.open_flow(i).await?;
        let flow = self.flow.as_ref().expect("flow");
        let local = flow.local_addr();
        let unreliable = flow.unreliable();
        let via_transport = flow.transport().to_string();
        let contact = if self.legs[i].package().is_some() {
            // NOTIFYs must reach this task: the subscription's Contact is the flow itself.
            self.contact_at(&local.to_string())
        } else {
            self.contact_for(local)
        };
        let retire = self.retire.clone().filter(|_| expires > 0);
        if self.legs[i].method == Method::Register && expires > 0 {
            self.record_contact(&contact).await;
        }
        let uri = self.request_uri(i);
        let auth_value = auth.map(|a| self.authorization(self.legs[i].method, &uri, a));
        let leg = &mut self.legs[i];
        leg.cseq += 1;
        let branch = format!("z9hG4bK{}", random_token(16));
        let sent_by = local.to_string();
        let request = sip::build_request(&RequestSpec {
            method: leg.method,
            uri: &uri,
            via_transport: &via_transport,
            via_sent_by: &sent_by,
            branch: &branch,
            aor: &self.reg.aor,
            from_tag: &leg.from_tag,
            to_tag: leg.to_tag.as_deref(),
            call_id: &leg.call_id,
            cseq: leg.cseq,
            contact: &contact,
            retire: retire.as_deref().filter(|_| leg.method == Method::Register),
            expires,
            route: self.route.as_deref(),
            auth: auth_value.as_ref().map(|(n, v)| (*n, v.as_str())),
            user_agent: &self.settings.user_agent,
        })
        .encode();
        leg.contact = Some(contact);
        self.start_transaction(i, branch, request.clone(), unreliable);
        self.transmit(i, &request).await
    }

    /// The Request-URI of leg `i`'s next request: the AOR's domain (else the registrar host)
    /// for REGISTER; the notifier's Contact (else the AOR) for SUBSCRIBE.
    fn request_uri(&self, i: usize) -> String {
        match self.legs[i].method {
            Method::Register => {
                let domain = self
                    .reg
                    .aor
                    .split_once('@')
                    .map(|(_, d)| d.split(';').next().unwrap_or(d))
                    .unwrap_or(&self.reg.host);
                format!("sip:{domain}")
            }
            Method::Subscribe(_) => self.legs[i]
                .remote_target
                .clone()
                .unwrap_or_else(|| self.reg.aor.clone()),
        }
    }

    /// Starts leg `i`'s client transaction for request `data` (`transaction::machine`'s
    /// non-INVITE client: Timer E from T1 on an unreliable flow, F at the transaction timeout).
    /// The first transmission is `transmit`'s, so the machine's initial `Transmit` is done there.
    fn start_transaction(&mut self, i: usize, branch: String, data: Bytes, unreliable: bool) {
        let leg = &mut self.legs[i];
        leg.last_attempt = SystemTime::now();
        let t1 = self.settings.t1;
        // T2 is 4 s, or T1 when T1 is longer, so E never shrinks below T1.
        let timers = Timers {
            t1,
            t2: Duration::from_secs(4).max(t1),
            ..Timers::default()
        };
        let (machine, _transmit) = TxMachine::client_with_timeout(
            false,
            !unreliable,
            timers,
            self.settings.transaction_timeout,
            Instant::now().into_std(),
        );
        leg.tx = Some(Tx {
            branch,
            cseq: leg.cseq,
            data,
            machine,
        });
    }

    /// Sends leg `i`'s request on the flow; a failed send drops the flow and the transaction.
    async fn transmit(&mut self, i: usize, data: &[u8]) -> Result<(), Input> {
        tracing::trace!(registration = %self.reg.id, request = %String::from_utf8_lossy(data), "sending");
        let result = self.flow.as_mut().expect("flow").send(data).await;
        if let Err(e) = result {
            self.flow = None;
            self.legs[i].tx = None;
            return Err(Input::TransportFailed {
                code: Some(503),
                reason: format!("send to {} failed: {e}", self.peer),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_addresses_from_listen_addresses() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let c = ContactAddrs::from_listen(&[a("0.0.0.0:5060")], &[a("10.1.2.3:5060")], &[], None);
        assert_eq!(
            c,
            ContactAddrs {
                udp: None,
                tcp: Some("10.1.2.3:5060".into()),
                tls: None
            }
        );
        let c = ContactAddrs::from_listen(
            &[a("0.0.0.0:5060")],
            &[],
            &[a("[::]:5061")],
            Some("192.0.2.7".parse().unwrap()),
        );
        assert_eq!(c.udp.as_deref(), Some("192.0.2.7:5060"));
        assert_eq!(c.tls.as_deref(), Some("192.0.2.7:5061"));
    }

    #[test]
    fn outbound_proxy_becomes_the_peer_and_a_route() {
        let mut reg = OutboundRegistration {
            id: "default/t".into(),
            aor: "sip:t@example.test".into(),
            username: "t".into(),
            host: "pbx.example.test".into(),
            port: 5060,
            expires: 600,
            ..Default::default()
        };
        let (peer, route) = peer_and_route(&reg).unwrap();
        assert_eq!(
            (peer.host.as_str(), peer.port, route),
            ("pbx.example.test", 5060, None)
        );
        reg.outbound_proxy = Some("edge.example.test:5070;transport=tcp".into());
        let (peer, route) = peer_and_route(&reg).unwrap();
        assert_eq!(
            (peer.host.as_str(), peer.port, peer.transport),
            ("edge.example.test", 5070, Transport::Tcp)
        );
        assert_eq!(
            route.as_deref(),
            Some("<sip:edge.example.test:5070;transport=tcp;lr>")
        );
    }
}
