//! The request dispatcher: one entry point, [`Service::handle`], that every transport calls with
//! the bytes of a message and its source, and that returns the response to send (if any).
//!
//! Per message: [`route`] picks the handler from the first word of the start line (the one
//! list: registrar, proxy, OPTIONS, NOTIFY, anything else). The proxy takes its messages
//! whole; for the rest: parse → checks of the mandatory headers → `received`/`rport` →
//! transaction cache (retransmissions) → the handler:
//!
//! - [`register`]: REGISTER (domain, transport policy, digest, then the pure
//!   [`registrar::decide`] run atomically in the location store, then change events).
//! - [`options`]: OPTIONS, 200 (keepalives of phones and upstreams).
//! - [`notify`]: NOTIFY, 200 (upstreams notifying an outbound registration's Contact).
//! - anything else: 405 for a method served by nobody here, 501 (from the parser) for an
//!   unknown one.

mod notify;
mod options;
mod register;
mod route;

pub use route::{route, Handler};

use crate::auth::state::AuthState;
use crate::auth::{AuthSettings, Authenticator};
use crate::cluster::Cluster;
use crate::config::{self, ConfigHandle};
use crate::location::{Binding, LocationStore};
use crate::message::headers::{is_sip_scheme, ViaRef};
use crate::message::response::reason_phrase;
use crate::message::scan::Scan;
use crate::message::{check, parse, HeaderName, Method, Parsed, Request, Response};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxySettings};
use crate::registrar::events::{ChangeKind, RegistrationEvent};
use crate::transaction::{self, Lookup, TransactionCache};
use crate::transport::nat;
use bytes::Bytes;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;
use tokio::sync::broadcast;

/// Methods this registrar answers (the call methods through its proxy), for `Allow`.
pub const ALLOW: &str =
    "REGISTER, OPTIONS, NOTIFY, INVITE, ACK, CANCEL, BYE, MESSAGE, UPDATE, INFO, REFER, PRACK";

/// Settings of the service.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// This replica and its siblings (its name is recorded in bindings).
    pub cluster: Cluster,
    /// The `Server` header.
    pub server_header: String,
    /// Authentication.
    pub auth: AuthSettings,
    /// Where the limiter and nonce-count records live: `None` for this process's memory (one
    /// replica), the Redis state when replicas share bindings.
    pub auth_state: Option<Arc<dyn AuthState>>,
    /// Requests remembered by the transaction cache.
    pub transaction_capacity: usize,
    /// The proxy's settings.
    pub proxy: ProxySettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            cluster: Cluster::alone("standalone"),
            server_header: format!("Switchboard/{}", env!("CARGO_PKG_VERSION")),
            auth: AuthSettings::default(),
            auth_state: None,
            transaction_capacity: 100_000,
            proxy: ProxySettings::default(),
        }
    }
}

/// A response and where it goes (the connection itself for TCP/TLS).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The bytes.
    pub data: Bytes,
    /// The destination for UDP.
    pub target: SocketAddr,
}

/// The SIP service.
pub struct Service {
    config: Arc<ConfigHandle>,
    store: Arc<dyn LocationStore>,
    auth: Authenticator,
    cache: TransactionCache,
    events: broadcast::Sender<RegistrationEvent>,
    metrics: Arc<Metrics>,
    cluster: Cluster,
    server_header: String,
    proxy: Proxy,
    /// The config `config_changed` last saw (to tell which devices' credentials changed).
    seen: parking_lot::Mutex<Option<Arc<crate::config::Loaded>>>,
}

fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

impl Service {
    /// A service over a config, a store and metrics.
    pub fn new(
        settings: ServiceSettings,
        config: Arc<ConfigHandle>,
        store: Arc<dyn LocationStore>,
        metrics: Arc<Metrics>,
    ) -> Service {
        let proxy = Proxy::new(
            config.clone(),
            store.clone(),
            metrics.clone(),
            settings.cluster.clone(),
            settings.proxy.clone(),
        );
        Service {
            proxy,
            config,
            store,
            auth: Authenticator::new(
                settings.auth.clone(),
                settings
                    .auth_state
                    .clone()
                    .unwrap_or_else(|| settings.auth.memory_state()),
                metrics.clone(),
            ),
            cache: TransactionCache::new(settings.transaction_capacity),
            events: broadcast::channel(4096).0,
            metrics,
            cluster: settings.cluster,
            server_header: settings.server_header,
            seen: Default::default(),
        }
    }

    /// The proxy (calls); the runtime attaches its UDP socket.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Change events (first registration, contacts added/removed, unregistered, expired).
    pub fn subscribe(&self) -> broadcast::Receiver<RegistrationEvent> {
        self.events.subscribe()
    }

    /// The location store.
    pub fn store(&self) -> &Arc<dyn LocationStore> {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The config handle.
    pub fn config(&self) -> &Arc<ConfigHandle> {
        &self.config
    }

    fn emit(&self, device_id: &str, kind: ChangeKind, bindings: &[Binding], at: SystemTime) {
        self.metrics
            .events
            .with_label_values(&[&format!("{kind:?}")])
            .inc();
        tracing::info!(device = device_id, kind = ?kind, contacts = bindings.len(), "registration change");
        let _ = self.events.send(RegistrationEvent {
            device_id: device_id.to_string(),
            kind,
            bindings: bindings.to_vec(),
            at,
        });
    }

    /// Handles one message; returns the response to send, if any.
    pub async fn handle(
        &self,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Outgoing> {
        let handler = route(data);
        if self.is_proxied(handler) {
            return self.handle_proxied(data, source, transport).await;
        }
        self.handle_own(handler, data, source, transport).await
    }

    /// Whether [`Self::handle`] gives a message for `handler` ([`route`]'s) to the proxy (a
    /// call's message or a response, once the proxy has its socket) rather than to
    /// [`Self::handle_own`].
    pub fn is_proxied(&self, handler: Handler) -> bool {
        handler == Handler::Proxy && self.proxy.is_attached()
    }

    /// [`Self::handle`] for a message the proxy takes ([`Self::is_proxied`]): it answers by
    /// itself, over UDP or into the connection's flow; only a message it cannot read is
    /// answered here.
    pub async fn handle_proxied(
        &self,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Outgoing> {
        let source = nat::canonical(source);
        match self.proxy.handle(&self.auth, data, source, transport).await {
            Ok(()) => None,
            Err(e) => self.answer_unparsed(e, source, transport),
        }
    }

    /// [`Self::handle`] for a message the proxy does not take, `handler` being [`route`]'s: a
    /// REGISTER, OPTIONS or NOTIFY, or what no handler takes.
    pub async fn handle_own(
        &self,
        handler: Handler,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Outgoing> {
        let source = nat::canonical(source);
        let request = match parse(data) {
            Ok(Parsed::Request(r)) => r,
            Ok(Parsed::KeepAlive) => return None,
            Ok(Parsed::Response) => {
                self.metrics.dropped.with_label_values(&["response"]).inc();
                return None;
            }
            Err(e) => return self.answer_unparsed(e, source, transport),
        };
        if request.method == Method::Ack {
            return None;
        }
        let Some(via) = request
            .header(&HeaderName::Via)
            .and_then(ViaRef::parse_first)
        else {
            self.metrics.dropped.with_label_values(&["bad_via"]).inc();
            return None;
        };
        let (via_value, target) = nat::fix_top_via(&via, source, transport);
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(&via_value))
        };

        // From and To are there and read: `parse` checked them (`message::check`).
        let (Some(call_id), Some((cseq, cseq_method))) = (request.call_id(), request.cseq()) else {
            return Some(self.finish(
                &request,
                None,
                reply(400, "Missing Or Bad Mandatory Header"),
                target,
            ));
        };
        if cseq_method != request.method.as_str() {
            return Some(self.finish(&request, None, reply(400, "CSeq Method Mismatch"), target));
        }

        let key = if kept(&request) {
            let method = request.method.as_str();
            let key = self.cache.key(via.branch(), call_id, cseq, method, source);
            match self.cache.begin(key, Instant::now()) {
                Lookup::New => Some(key),
                seen => {
                    return self
                        .retransmitted(seen, &request, &via_value, transport, target)
                        .await
                }
            }
        } else {
            None
        };
        let response = match refuse(&request, &reply) {
            Some(refusal) => refusal,
            None => {
                self.dispatch(handler, &request, &via_value, source, transport)
                    .await
            }
        };
        Some(self.finish(&request, key, response, target))
    }

    /// What to send for a retransmission (`seen` by the transaction cache, so not
    /// [`Lookup::New`]): nothing while the first copy is processed, else the first copy's
    /// answer, kept or (a REGISTER's 200) built again.
    async fn retransmitted(
        &self,
        seen: Lookup,
        request: &Request<'_>,
        via: &str,
        transport: Transport,
        target: SocketAddr,
    ) -> Option<Outgoing> {
        let data = match seen {
            Lookup::Done(data) => data,
            Lookup::Answered => {
                let again = self.registered_again(request, via, transport).await?;
                Bytes::from(again.encode(&self.server_header))
            }
            Lookup::New | Lookup::Pending => {
                self.metrics
                    .dropped
                    .with_label_values(&["retransmission_in_progress"])
                    .inc();
                return None;
            }
        };
        self.metrics.retransmissions.inc();
        Some(Outgoing { data, target })
    }

    /// The answer of the request's handler, once it passed the checks every request passes
    /// (`via` is its top Via with `received`/`rport`).
    async fn dispatch<'r>(
        &self,
        handler: Handler,
        request: &'r Request<'r>,
        via: &'r str,
        source: SocketAddr,
        transport: Transport,
    ) -> Response<'r> {
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(via))
        };
        match handler {
            Handler::Registrar => self.register(request, via, source, transport).await,
            Handler::Options => options::answer(reply),
            Handler::Notify => notify::answer(reply),
            // A call method while the proxy has no socket yet, or a method nobody here serves.
            Handler::Proxy | Handler::Unsupported => {
                reply(405, "Method Not Allowed").with("Allow", ALLOW)
            }
        }
    }

    /// Encodes, caches (when `key` is given, unless a 5xx the client should retry; a
    /// REGISTER's 200 only as answered, see [`crate::transaction`]) and counts a response.
    fn finish(
        &self,
        request: &Request,
        key: Option<transaction::Key>,
        response: Response,
        target: SocketAddr,
    ) -> Outgoing {
        let data = Bytes::from(response.encode(&self.server_header));
        if let Some(key) = key {
            if response.status >= 500 {
                self.cache.abandon(key);
            } else if response.status == 200 && request.method == Method::Register {
                self.cache.answered(key, Instant::now());
            } else {
                self.cache.complete(key, &data, Instant::now());
            }
        }
        self.metrics
            .count_request(request.method.as_str(), response.status);
        Outgoing { data, target }
    }

    /// A 400/501/513 for a message that did not parse but whose headers could be read.
    fn answer_unparsed(
        &self,
        e: crate::message::ParseError,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Outgoing> {
        let Some(headers) = e.salvage else {
            self.metrics
                .dropped
                .with_label_values(&["unparseable"])
                .inc();
            tracing::debug!(%source, reason = %e.reason, "dropped an unparseable message");
            return None;
        };
        let via = headers
            .iter()
            .find(|h| h.name == HeaderName::Via)
            .and_then(|h| ViaRef::parse_first(&h.value))?;
        let (via_value, target) = nat::fix_top_via(&via, source, transport);
        let reason: String = e.reason.chars().filter(|c| !c.is_control()).collect();
        let mut resp = Response::to_request(&headers, e.status, reason, Some(&via_value));
        if e.status == 501 {
            resp.push("Allow", ALLOW);
        }
        self.metrics
            .requests
            .with_label_values(&["OTHER", &e.status.to_string()])
            .inc();
        tracing::debug!(%source, status = e.status, reason = %e.reason, "answered a malformed message");
        Some(Outgoing {
            data: Bytes::from(resp.encode(&self.server_header)),
            target,
        })
    }

    /// Removes lapsed bindings (emitting `Expired`), prunes limiter state and refreshes the
    /// binding and device gauges. Called every second by the runtime.
    pub async fn sweep(&self) {
        let now = SystemTime::now();
        match self.store.expire(now).await {
            Ok(expired) => {
                for e in expired {
                    self.emit(&e.aor, ChangeKind::Expired, &e.remaining, now);
                }
            }
            Err(e) => {
                self.store_failed("expire");
                tracing::warn!(error = %e, "expiring bindings failed");
            }
        }
        self.auth.sweep().await;
        self.refresh_gauges(now).await;
    }

    fn store_failed(&self, operation: &str) {
        self.metrics
            .store_errors
            .with_label_values(&[operation])
            .inc();
    }

    /// Sets the binding, device and cluster gauges.
    async fn refresh_gauges(&self, now: SystemTime) {
        self.metrics.set_cluster(
            self.cluster.live_replicas().len(),
            self.cluster.members().len() + 1,
        );
        if let Ok(stats) = self.store.stats(now).await {
            self.metrics.active_bindings.set(stats.bindings as i64);
            let devices = self.config.current().map_or(0, |c| c.devices);
            self.metrics
                .devices
                .with_label_values(&["registered"])
                .set(stats.aors as i64);
            self.metrics
                .devices
                .with_label_values(&["unregistered"])
                .set(devices.saturating_sub(stats.aors) as i64);
        }
    }

    /// After a config change: drops the bindings of devices no longer in the config and records
    /// the config in the metrics.
    pub async fn config_changed(&self) {
        let Some(loaded) = self.config.current() else {
            return;
        };
        self.metrics
            .set_config(loaded.generation, loaded.config.short_hash());
        let ids: HashSet<&str> = loaded
            .config
            .domains
            .iter()
            .flat_map(|d| d.devices.iter().map(|dev| dev.id.as_str()))
            .collect();
        match self.store.retain(&|aor: &str| ids.contains(aor)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "dropped the bindings of devices no longer configured"
            ),
            Err(e) => {
                self.store_failed("retain");
                tracing::warn!(error = %e, "dropping bindings of removed devices failed");
            }
        }
        let previous = self.seen.lock().replace(loaded.clone());
        if let Some(previous) = previous.filter(|p| p.generation != loaded.generation) {
            self.drop_bindings_of(config::credentials_changed(
                &previous.config,
                &loaded.config,
            ))
            .await;
        }
    }

    /// Drops the bindings of devices whose credentials changed, at once (a phone that kept the
    /// old password, a stolen one, is no longer rung): a `CredentialsChanged` event for each
    /// that had some. With Redis every replica tries; the one whose write removed them reports.
    async fn drop_bindings_of(&self, devices: Vec<&str>) {
        let now = SystemTime::now();
        for id in devices {
            let mut drop_all = |current: &[Binding]| (!current.is_empty()).then(Vec::new);
            match self.store.update(id, now, &mut drop_all).await {
                Ok(u) if !u.before.is_empty() => {
                    tracing::info!(
                        device = id,
                        dropped = u.before.len(),
                        "credentials changed: bindings dropped"
                    );
                    self.emit(id, ChangeKind::CredentialsChanged, &[], now);
                    self.check_sync(id, &u.before);
                }
                Ok(_) => {}
                Err(e) => {
                    self.store_failed("update");
                    tracing::warn!(device = id, error = %e, "dropping the bindings of a device whose credentials changed");
                }
            }
        }
    }

    /// Tells the phones that held `bindings` of device `id` to fetch their configuration
    /// again (`NOTIFY`, `Event: check-sync`): the provisioning service now serves the new
    /// password, so rotation needs nobody to touch the phone.
    fn check_sync(&self, id: &str, bindings: &[Binding]) {
        let Some(loaded) = self.config.current() else {
            return;
        };
        let aor = loaded.config.domains.iter().find_map(|d| {
            let dev = d.devices.iter().find(|dev| dev.id == id)?;
            Some(format!("sip:{}@{}", dev.sip_user, d.domain))
        });
        let Some(aor) = aor else { return };
        for b in bindings {
            let sent = self.proxy.check_sync(&aor, b);
            let result = if sent { "sent" } else { "unreachable" };
            self.metrics.check_sync.with_label_values(&[result]).inc();
            tracing::info!(device = id, contact = %b.contact, sent, "check-sync NOTIFY");
        }
    }

    /// The reason phrase for a code (re-exported for transports that answer by themselves).
    pub fn reason(status: u16) -> &'static str {
        reason_phrase(status)
    }
}

/// What this registrar answers before looking at a request's method, as the UAS of REGISTER,
/// OPTIONS and NOTIFY and the edge proxy in front of itself: a Request-URI that is not a SIP
/// URI (416, RFC 3261 §8.2.2.1; RFC 4475 §3.3.2), option tags it does not implement in
/// `Require` or `Proxy-Require` (420 with `Unsupported`, §8.2.2.3, §16.3; RFC 4475 §3.3.5).
fn refuse<'r>(
    request: &Request<'_>,
    reply: &impl Fn(u16, &'static str) -> Response<'r>,
) -> Option<Response<'r>> {
    // `parse` checked a sip:/sips: Request-URI whole (`check::request_uri`); another scheme is
    // not served here.
    if !request
        .uri
        .split_byte(b':')
        .is_some_and(|(scheme, _)| is_sip_scheme(scheme))
    {
        return Some(reply(416, "Unsupported URI Scheme"));
    }
    let fields = request
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_ref()));
    let unknown = check::unsupported(fields, &["Require", "Proxy-Require"]);
    (!unknown.is_empty())
        .then(|| reply(420, "Bad Extension").with("Unsupported", unknown.join(", ")))
}

/// Whether a request enters the transaction cache (which keeps its answer, or for a
/// REGISTER's 200 only that it was answered): all but a REGISTER without credentials. That
/// one changes nothing whatever it is answered (a challenge, or a 4xx), so a
/// retransmission is answered afresh, as a stateless registrar answers every first REGISTER;
/// keeping its challenges doubled what the cache holds under load, and looking it up and
/// forgetting it cost two visits to a map of 100 000s of entries per registration.
fn kept(request: &Request) -> bool {
    request.method != Method::Register || request.header(&HeaderName::Authorization).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::{expected_response, Algorithm};
    use crate::location::MemoryStore;
    use switchboard_crds::config::ha1;

    const SRC: &str = "127.0.0.1:40000";

    /// The demo config offering SHA-256 then MD5, as a site that opted in to RFC 8760 does
    /// (the demo itself offers MD5, the default).
    fn service() -> Service {
        let mut demo = crate::config::embedded();
        demo.domains[0].registration.digest_algorithms = vec![
            switchboard_crds::common::DigestAlgorithm::Sha256,
            switchboard_crds::common::DigestAlgorithm::Md5,
        ];
        service_with(demo.seal())
    }

    fn service_with(c: switchboard_crds::config::RegistrarConfig) -> Service {
        let config = Arc::new(ConfigHandle::new());
        config.replace(c);
        Service::new(
            ServiceSettings::default(),
            config,
            Arc::new(MemoryStore::new()),
            Arc::new(Metrics::new()),
        )
    }

    fn register(user: &str, cseq: u32, extra: &str) -> String {
        format!(
            "REGISTER sip:switchboard.local SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{cseq};rport\r\n\
             From: <sip:{user}@switchboard.local>;tag=t1\r\n\
             To: <sip:{user}@switchboard.local>\r\n\
             Call-ID: call-{user}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:40000>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    async fn send(s: &Service, msg: &str) -> String {
        let out = s
            .handle(msg.as_bytes(), SRC.parse().unwrap(), Transport::Udp)
            .await
            .expect("a response");
        String::from_utf8(out.data.to_vec()).unwrap()
    }

    fn header<'a>(resp: &'a str, name: &str) -> Vec<&'a str> {
        resp.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// A challenge for `user` and its answer with `password` by `alg`: a REGISTER without
    /// credentials (CSeq `cseq`) is challenged, and the challenge of that algorithm answered
    /// (nc 1) in an Authorization header line.
    async fn answer(
        s: &Service,
        user: &str,
        password: &str,
        cseq: u32,
        alg: Algorithm,
    ) -> (String, String) {
        let r = send(s, &register(user, cseq, "")).await;
        let name = match alg {
            Algorithm::Md5 => "algorithm=MD5",
            _ => "algorithm=SHA-256",
        };
        let ch = header(&r, "WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains(name))
            .unwrap_or_else(|| panic!("no {name} challenge in {r}"));
        (ch.to_string(), authorization(user, password, ch, alg, 1))
    }

    fn authorization(
        user: &str,
        password: &str,
        challenge: &str,
        alg: Algorithm,
        nc: u32,
    ) -> String {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let (md5, sha) = ha1(user, "switchboard.local", password);
        let h = if alg == Algorithm::Md5 { md5 } else { sha };
        let nc = format!("{nc:08x}");
        let uri = "sip:switchboard.local";
        let resp = expected_response(
            alg,
            &h,
            "REGISTER",
            uri,
            nonce,
            Some(&nc),
            Some("abc"),
            Some("auth"),
        );
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"switchboard.local\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"abc\"\r\n",
            alg.name()
        )
    }

    #[tokio::test]
    async fn challenge_then_register_then_retransmission() {
        let s = service();
        let r = send(&s, &register("1001", 1, "")).await;
        assert!(r.starts_with("SIP/2.0 401 "), "{r}");
        let ch = header(&r, "WWW-Authenticate");
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("SHA-256"));
        assert!(r.contains("received=127.0.0.1") && r.contains("rport=40000"));
        let auth = authorization("1001", "switchboard-1001", ch[0], Algorithm::Sha256, 1);
        let msg = register("1001", 2, &format!("Expires: 120\r\n{auth}"));
        let ok = send(&s, &msg).await;
        assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
        assert_eq!(
            header(&ok, "Contact"),
            vec!["<sip:1001@127.0.0.1:40000>;expires=120"]
        );
        assert_eq!(header(&ok, "Date").len(), 1);
        // A retransmission gets the 200 again, not a replay refusal: the cache keeps no copy,
        // so the lifetimes and Date are of the moment, the rest the same.
        assert_eq!(timeless(&send(&s, &msg).await), timeless(&ok));
        assert_eq!(s.metrics.retransmissions.get(), 1);
        let snap = s.store().snapshot(SystemTime::now()).await.unwrap();
        assert_eq!(snap[0].0, "default/desk-1001");
    }

    /// `r` without what depends on the moment it was built: the Date, and the Contacts'
    /// remaining lifetimes.
    fn timeless(r: &str) -> String {
        r.lines()
            .filter(|l| !l.starts_with("Date: "))
            .map(|l| match l.split_once(";expires=") {
                Some((contact, _)) if l.starts_with("Contact: ") => contact,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[tokio::test]
    async fn a_retransmitted_register_is_answered_with_the_bindings_of_its_moment() {
        let s = service();
        let (ch, auth) = answer(&s, "1001", "switchboard-1001", 1, Algorithm::Md5).await;
        let first = register("1001", 2, &format!("Expires: 120\r\n{auth}"));
        let ok = send(&s, &first).await;
        assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
        // Too brief a lifetime: refused, and that answer is kept as it was sent.
        let auth = authorization("1001", "switchboard-1001", &ch, Algorithm::Md5, 2);
        let brief = register("1001", 3, &format!("Expires: 1\r\n{auth}"));
        let refused = send(&s, &brief).await;
        assert!(refused.starts_with("SIP/2.0 423 "), "{refused}");
        assert_eq!(send(&s, &brief).await, refused);
        // The binding removed by a later REGISTER: the first one's retransmission lists none.
        let auth = authorization("1001", "switchboard-1001", &ch, Algorithm::Md5, 3);
        let gone = send(&s, &register("1001", 4, &format!("Expires: 0\r\n{auth}"))).await;
        assert!(gone.starts_with("SIP/2.0 200 OK"), "{gone}");
        assert!(header(&gone, "Contact").is_empty(), "{gone}");
        let again = send(&s, &first).await;
        assert!(again.starts_with("SIP/2.0 200 OK"), "{again}");
        assert!(header(&again, "Contact").is_empty(), "{again}");
        assert_eq!(header(&again, "To"), header(&ok, "To"), "the same To tag");
        assert_eq!(header(&again, "Via"), header(&ok, "Via"));
        assert_eq!(s.metrics.retransmissions.get(), 2);
    }

    #[tokio::test]
    async fn a_first_challenge_is_answered_afresh_not_kept() {
        let s = service();
        let first = register("1001", 1, "");
        let r = send(&s, &first).await;
        assert!(r.starts_with("SIP/2.0 401 "), "{r}");
        assert!(s.cache.is_empty(), "the challenge was kept");
        // Its retransmission gets a challenge of its own (a new nonce), as the first did.
        let again = send(&s, &first).await;
        assert!(again.starts_with("SIP/2.0 401 "), "{again}");
        assert_ne!(
            header(&again, "WWW-Authenticate"),
            header(&r, "WWW-Authenticate")
        );
        // Nor is any other answer to a REGISTER without credentials.
        let elsewhere = register("1001", 5, "").replace("switchboard.local", "elsewhere.test");
        let not_here = send(&s, &elsewhere).await;
        assert!(not_here.starts_with("SIP/2.0 404 "), "{not_here}");
        assert_eq!(send(&s, &elsewhere).await, not_here);
        assert!(s.cache.is_empty(), "the 404 was kept");
        // The 200 of an answered challenge is kept, for its retransmissions.
        let ch = header(&r, "WWW-Authenticate");
        let auth = authorization("1001", "switchboard-1001", ch[0], Algorithm::Sha256, 1);
        let ok = send(&s, &register("1001", 2, &auth)).await;
        assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
        assert_eq!(s.cache.len(), 1);
    }

    #[tokio::test]
    async fn a_replayed_nonce_is_challenged_and_one_from_before_a_restart_is_stale() {
        let mut c = crate::config::embedded();
        c.nonce_key = Some("00112233445566778899aabbccddeeff".into());
        let before = service_with(c.clone().seal());
        let (_, auth) = answer(&before, "1001", "switchboard-1001", 1, Algorithm::Md5).await;
        let ok = send(&before, &register("1001", 2, &auth)).await;
        assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
        let replayed = send(&before, &register("1001", 3, &auth)).await;
        assert!(replayed.starts_with("SIP/2.0 401 "), "{replayed}");
        assert!(!replayed.contains("stale=true"), "{replayed}");
        // A restarted registrar holds no nonce-counts: the nonce is stale, not accepted again,
        // and the phone retries on the new challenge.
        let after = service_with(c.seal());
        let restarted = send(&after, &register("1001", 4, &auth)).await;
        assert!(restarted.starts_with("SIP/2.0 401 "), "{restarted}");
        assert!(restarted.contains("stale=true"), "{restarted}");
    }

    #[tokio::test]
    async fn auth_names_with_the_realm_as_domain_are_accepted() {
        let s = service();
        for (cseq, alg) in [(1, Algorithm::Md5), (3, Algorithm::Sha256)] {
            let (ch, _) = answer(&s, "1001", "x", cseq, alg).await;
            // Zoiper's form: the digest over `1001@switchboard.local`, the AOR still `1001`.
            let auth = authorization("1001@switchboard.local", "switchboard-1001", &ch, alg, 1);
            let ok = send(&s, &register("1001", cseq + 1, &auth)).await;
            assert!(ok.starts_with("SIP/2.0 200 OK"), "{alg:?}: {ok}");
        }
        // Another domain after the `@` names nobody, even with the device's password.
        let (ch, _) = answer(&s, "1002", "x", 10, Algorithm::Md5).await;
        let auth = authorization(
            "1002@elsewhere.test",
            "switchboard-1002",
            &ch,
            Algorithm::Md5,
            1,
        );
        let refused = send(&s, &register("1002", 11, &auth)).await;
        assert!(!refused.starts_with("SIP/2.0 200"), "{refused}");
        // Nor does the right domain with a wrong password.
        let (ch, _) = answer(&s, "1002", "x", 12, Algorithm::Md5).await;
        let auth = authorization("1002@switchboard.local", "wrong", &ch, Algorithm::Md5, 1);
        let refused = send(&s, &register("1002", 13, &auth)).await;
        assert!(!refused.starts_with("SIP/2.0 200"), "{refused}");
    }

    #[tokio::test]
    async fn challenges_follow_the_domains_digest_algorithms() {
        // The demo domain lists MD5 alone (for old softphones): one challenge.
        let s = service_with(crate::config::embedded());
        let r = send(&s, &register("1001", 1, "")).await;
        assert_eq!(header(&r, "WWW-Authenticate").len(), 1, "{r}");
        assert!(header(&r, "WWW-Authenticate")[0].contains("algorithm=MD5"));
        // So does a domain that lists none: the default is MD5 alone.
        let mut demo = crate::config::embedded();
        demo.domains[0].registration.digest_algorithms =
            switchboard_crds::site::RegistrationPolicy::default().digest_algorithms;
        let r = send(&service_with(demo.seal()), &register("1001", 1, "")).await;
        assert_eq!(header(&r, "WWW-Authenticate").len(), 1, "{r}");
        assert!(header(&r, "WWW-Authenticate")[0].contains("algorithm=MD5"));
    }

    #[tokio::test]
    async fn events_on_register_and_unregister() {
        let s = service();
        let mut rx = s.subscribe();
        let (ch, auth) = answer(&s, "1002", "switchboard-1002", 1, Algorithm::Md5).await;
        assert!(send(&s, &register("1002", 2, &auth))
            .await
            .starts_with("SIP/2.0 200"));
        let e = rx.try_recv().unwrap();
        assert_eq!(
            (e.device_id.as_str(), e.kind),
            ("default/softphone-1002", ChangeKind::Registered)
        );
        // A refresh emits nothing.
        let auth = authorization("1002", "switchboard-1002", &ch, Algorithm::Md5, 2);
        assert!(send(&s, &register("1002", 3, &auth))
            .await
            .starts_with("SIP/2.0 200"));
        assert!(rx.try_recv().is_err());
        let auth = authorization("1002", "switchboard-1002", &ch, Algorithm::Md5, 3);
        let r = send(&s, &register("1002", 4, &format!("Expires: 0\r\n{auth}"))).await;
        assert!(
            r.starts_with("SIP/2.0 200") && header(&r, "Contact").is_empty(),
            "{r}"
        );
        assert_eq!(rx.try_recv().unwrap().kind, ChangeKind::Unregistered);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_get_the_same_403() {
        let s = service();
        let r = send(&s, &register("1003", 1, "")).await;
        let ch = header(&r, "WWW-Authenticate")[0].to_string();
        let wrong = send(
            &s,
            &register(
                "1003",
                2,
                &authorization("1003", "nope", &ch, Algorithm::Sha256, 1),
            ),
        )
        .await;
        let r = send(&s, &register("7777", 1, "")).await;
        assert!(
            r.starts_with("SIP/2.0 401"),
            "an unknown user is challenged like a known one"
        );
        let ch = header(&r, "WWW-Authenticate")[0].to_string();
        let unknown = send(
            &s,
            &register(
                "7777",
                2,
                &authorization("7777", "x", &ch, Algorithm::Sha256, 1),
            ),
        )
        .await;
        let first_line = |s: &str| s.lines().next().unwrap().to_string();
        assert_eq!(first_line(&wrong), "SIP/2.0 403 Forbidden");
        assert_eq!(first_line(&unknown), first_line(&wrong));
        let names = |s: &str| {
            s.lines()
                .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&wrong), names(&unknown));
    }

    #[tokio::test]
    async fn options_methods_and_garbage() {
        let s = service();
        let opts = "OPTIONS sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKo\r\n\
            From: <sip:ping@x>;tag=1\r\nTo: <sip:switchboard.local>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = send(&s, opts).await;
        assert!(
            r.starts_with("SIP/2.0 200 OK") && r.contains(&format!("Allow: {ALLOW}")),
            "{r}"
        );
        // An upstream's keepalive and a presence NOTIFY, addressed to an outbound
        // registration's Contact user.
        let upstream = opts
            .replace(
                "OPTIONS sip:switchboard.local",
                "OPTIONS sip:trunk-1@192.0.2.1:5060",
            )
            .replace("z9hG4bKo", "z9hG4bKup");
        assert!(send(&s, &upstream).await.starts_with("SIP/2.0 200 OK"));
        let notify = upstream.replace("OPTIONS", "NOTIFY").replace(
            "CSeq: 1 NOTIFY\r\n",
            "CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=600\r\n",
        );
        assert!(send(&s, &notify).await.starts_with("SIP/2.0 200 OK"));
        let invite = opts.replace("OPTIONS", "INVITE");
        assert!(send(&s, &invite).await.starts_with("SIP/2.0 405"));
        let foo = opts.replace("OPTIONS", "FOO");
        assert!(send(&s, &foo).await.starts_with("SIP/2.0 501"));
        let ack = opts.replace("OPTIONS", "ACK");
        assert!(s
            .handle(ack.as_bytes(), SRC.parse().unwrap(), Transport::Udp)
            .await
            .is_none());
        assert!(s
            .handle(b"\x00\x01garbage", SRC.parse().unwrap(), Transport::Udp)
            .await
            .is_none());
        let mismatch = opts.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        assert!(send(&s, &mismatch).await.starts_with("SIP/2.0 400"));
    }

    #[tokio::test]
    async fn scheme_extension_version_and_header_errors() {
        let s = service();
        let opts = "OPTIONS sip:switchboard.local SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKo\r\n\
            From: <sip:ping@x>;tag=1\r\nTo: <sip:switchboard.local>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let first = |r: String| r.lines().next().unwrap().to_string();
        // RFC 4475 §3.3.2 unkscm.
        let unknown = opts.replace(
            "OPTIONS sip:switchboard.local",
            "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent",
        );
        assert_eq!(
            first(send(&s, &unknown).await),
            "SIP/2.0 416 Unsupported URI Scheme"
        );
        // §3.3.5 bext01: every unknown option tag listed.
        // (Each case in a Call-ID of its own: the transaction cache answers a repeat.)
        let ext = opts.replace("o1", "o2").replace(
            "CSeq: 1 OPTIONS\r\n",
            "CSeq: 1 OPTIONS\r\nRequire: a, b\r\nProxy-Require: c\r\n",
        );
        let r = send(&s, &ext).await;
        assert_eq!(first(r.clone()), "SIP/2.0 420 Bad Extension");
        assert_eq!(header(&r, "Unsupported"), vec!["a, b, c"]);
        // §3.1.2.16 badvers, with a Via of that version too.
        let v7 = opts
            .replace("o1", "o3")
            .replace("SIP/2.0\r\n", "SIP/7.0\r\n")
            .replace("SIP/2.0/UDP", "SIP/7.0/UDP");
        assert_eq!(
            first(send(&s, &v7).await),
            "SIP/2.0 505 Version Not Supported"
        );
        // §3.3.8 multi01: a repeated single-instance header.
        let dup = opts.replace("Call-ID: o1\r\n", "Call-ID: o4\r\ni: o5\r\n");
        assert_eq!(first(send(&s, &dup).await), "SIP/2.0 400 Duplicate Call-ID");
        // A REGISTER whose CSeq went backwards in its Call-ID: 400, not 500.
        let (ch, auth) = answer(&s, "1001", "switchboard-1001", 1, Algorithm::Sha256).await;
        assert!(send(&s, &register("1001", 5, &auth))
            .await
            .starts_with("SIP/2.0 200"));
        let auth = authorization("1001", "switchboard-1001", &ch, Algorithm::Sha256, 2);
        assert_eq!(
            first(send(&s, &register("1001", 4, &auth)).await),
            "SIP/2.0 400 Out Of Order CSeq"
        );
    }

    #[tokio::test]
    async fn new_credentials_drop_the_bindings_at_once() {
        let s = service();
        let mut rx = s.subscribe();
        s.config_changed().await;
        let (ch, auth) = answer(&s, "1002", "switchboard-1002", 1, Algorithm::Md5).await;
        assert!(send(&s, &register("1002", 2, &auth))
            .await
            .starts_with("SIP/2.0 200"));
        assert_eq!(rx.try_recv().unwrap().kind, ChangeKind::Registered);
        // The operator rotates 1002's password.
        let mut rotated = s.config().current().unwrap().config.clone();
        let dev = &mut rotated.domains[0].devices[1];
        assert_eq!(dev.sip_user, "1002");
        (dev.ha1_md5, dev.ha1_sha256) = ha1("1002", "switchboard.local", "new-password");
        s.config().replace(rotated);
        s.config_changed().await;
        let e = rx.try_recv().unwrap();
        assert_eq!(
            (e.device_id.as_str(), e.kind, e.bindings.len()),
            ("default/softphone-1002", ChangeKind::CredentialsChanged, 0)
        );
        let now = SystemTime::now();
        assert!(s
            .store()
            .lookup("default/softphone-1002", now)
            .await
            .unwrap()
            .is_empty());
        // The old password is refused; the new one registers.
        let auth = authorization("1002", "switchboard-1002", &ch, Algorithm::Md5, 2);
        assert!(send(&s, &register("1002", 3, &auth))
            .await
            .starts_with("SIP/2.0 403"));
        let (_, auth) = answer(&s, "1002", "new-password", 4, Algorithm::Md5).await;
        assert!(send(&s, &register("1002", 5, &auth))
            .await
            .starts_with("SIP/2.0 200"));
        // Another reload that changes nothing for it drops nothing.
        s.config()
            .replace(s.config().current().unwrap().config.clone());
        s.config_changed().await;
        assert_eq!(rx.try_recv().unwrap().kind, ChangeKind::Registered);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn too_brief_and_star_and_unknown_domain() {
        let s = service();
        let (ch, auth) = answer(&s, "1001", "switchboard-1001", 1, Algorithm::Sha256).await;
        let r = send(&s, &register("1001", 2, &format!("Expires: 10\r\n{auth}"))).await;
        assert!(r.starts_with("SIP/2.0 423 Interval Too Brief"), "{r}");
        assert_eq!(header(&r, "Min-Expires"), vec!["60"]);
        let star = register("1001", 3, "Expires: 0\r\n")
            .replace("Contact: <sip:1001@127.0.0.1:40000>", "Contact: *");
        let auth = authorization("1001", "switchboard-1001", &ch, Algorithm::Sha256, 2);
        let star = star.replace("Content-Length", &format!("{}Content-Length", auth));
        assert!(send(&s, &star).await.starts_with("SIP/2.0 200"));
        let other = register("1001", 9, "").replace("switchboard.local", "elsewhere.test");
        assert!(send(&s, &other).await.starts_with("SIP/2.0 404"));
    }
}
