//! REGISTER (RFC 3261 §10.3): [`Service::register`] reads as its steps, `RegisterAsk::read`
//! (AOR from To, domain, transport), `authenticate` (the digest), `contacts_and_expires`, `bind`
//! (`registrar::decide` inside the location store's update) and `registered` (change events,
//! the 200 listing the bindings).
//!
//! The admission of a right digest (blocked? nonce-count replayed?) is left to `bind`: with
//! the authentication state in Redis it is the guard of the bindings write, so a REGISTER that
//! writes is one round trip; otherwise (memory, or a decision that writes nothing) it is asked
//! of the state before the answer, as [`crate::auth::Authenticator::check`] does.

use super::{unix_ms, Service};
use crate::auth::state::{Admission, StateError};
use crate::auth::{Pending, Verdict};
use crate::config;
use crate::location::{Binding, Decide, Guarded, StoreError, Update};
use crate::message::headers::{
    parse_contacts_all, parse_expires, Contacts, NameAddrRef, SipUriParts,
};
use crate::message::response::{format_q, http_date};
use crate::message::{HeaderName, Request, Response};
use crate::registrar::events::changes;
use crate::registrar::{self, Decision, RegisterRequest};
use std::net::SocketAddr;
use std::time::SystemTime;
use switchboard_crds::common::Transport;
use switchboard_crds::config::{DeviceConfig, DomainConfig, RegistrarConfig};

impl Service {
    /// The REGISTER handler: the answer to an authorized, bound or refused registration.
    pub(super) async fn register<'r>(
        &self,
        request: &'r Request<'r>,
        via: &'r str,
        source: SocketAddr,
        transport: Transport,
    ) -> Response<'r> {
        let Some(loaded) = self.config.current() else {
            return Response::to_request(&request.headers, 503, "Service Unavailable", Some(via))
                .with("Retry-After", "5");
        };
        let ask = match RegisterAsk::read(&loaded.config, request, via, transport) {
            Ok(ask) => ask,
            Err(r) => return r,
        };
        let now = SystemTime::now();
        let (device, pending) = match self
            .authenticate(&loaded, &ask, request, via, source, now)
            .await
        {
            Ok(authorized) => authorized,
            Err(r) => return r,
        };
        // Read once the request is authenticated (RFC 3261 §10.3 steps 3-7): a challenge
        // costs no Contact parsing.
        let (contacts, expires_header) = match contacts_and_expires(request, via) {
            Ok(asked) => asked,
            Err(r) => return r,
        };
        let at = Bind {
            loaded: &loaded,
            request,
            via,
            source,
            transport,
            now,
            contacts,
            expires_header,
        };
        self.bind(&at, &ask, device, pending).await
    }

    /// The answer to a request not authorized: a 401 with challenges, 403 or 500 (403 too for
    /// `Authorized`: a device registering an AOR not its own).
    fn refuse<'r>(
        &self,
        loaded: &config::Loaded,
        ask: &RegisterAsk<'_>,
        request: &'r Request<'r>,
        via: &'r str,
        verdict: Verdict,
        now_ms: u64,
    ) -> Response<'r> {
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(via))
        };
        match verdict {
            Verdict::Challenge { stale } => {
                let mut r = reply(401, "Unauthorized");
                for ch in self.auth.challenges(
                    &loaded.nonce_key,
                    &ask.domain.domain,
                    &ask.domain.registration.digest_algorithms,
                    now_ms / 1000,
                    stale,
                ) {
                    r.push("WWW-Authenticate", ch);
                }
                r
            }
            // The state lives in the location store's Redis: the same answer as its failure.
            Verdict::Unavailable => {
                reply(500, "Location Store Unavailable").with("Retry-After", "5")
            }
            Verdict::Forbidden | Verdict::Authorized => reply(403, "Forbidden"),
        }
    }

    /// Checks the REGISTER's digest: the device it names with its admission still to do
    /// (`None` once done), or the answer (a challenge, 403, 500). The device must be the AOR's
    /// user: third-party registration is not offered.
    async fn authenticate<'c, 'r>(
        &self,
        loaded: &'c config::Loaded,
        ask: &RegisterAsk<'c>,
        request: &'r Request<'r>,
        via: &'r str,
        source: SocketAddr,
        now: SystemTime,
    ) -> Result<(&'c DeviceConfig, Option<Pending>), Response<'r>> {
        let now_ms = unix_ms(now);
        let mut checked = self
            .auth
            .check_digest(
                &loaded.nonce_key,
                loaded,
                ask.domain,
                request.method.as_str(),
                request.headers_named(&HeaderName::Authorization),
                source.ip(),
                now_ms,
            )
            .await;
        let refuse = |verdict| self.refuse(loaded, ask, request, via, verdict, now_ms);
        if checked.verdict != Verdict::Authorized {
            return Err(refuse(checked.verdict));
        }
        if let Some(device) = checked.device.filter(|d| d.sip_user == ask.aor_user) {
            return Ok((device, checked.pending));
        }
        // Refused whatever the state says, but admitted first, as a blocked pair or a replay
        // is counted as such before the mismatch.
        if let Some(pending) = checked.pending.take() {
            let verdict = self.auth.admit(&pending).await.verdict;
            if verdict != Verdict::Authorized {
                return Err(refuse(verdict));
            }
        }
        if checked.device.is_some() {
            self.metrics
                .auth_failures
                .with_label_values(&["aor_mismatch"])
                .inc();
        }
        Err(refuse(Verdict::Forbidden))
    }

    /// Applies an authorized REGISTER to the device's bindings in the location store and
    /// answers: the refusal of its admission (`pending`), the rejection `registrar::decide`
    /// chose, or 200 with the bindings now held.
    async fn bind<'r>(
        &self,
        at: &Bind<'_, 'r>,
        ask: &RegisterAsk<'_>,
        device: &DeviceConfig,
        pending: Option<Pending>,
    ) -> Response<'r> {
        let request = at.request;
        let (cseq, _) = request.cseq().expect("checked by handle");
        let req = RegisterRequest {
            contacts: &at.contacts,
            expires_header: at.expires_header,
            call_id: request.call_id().expect("checked by handle"),
            cseq,
            source: at.source,
            transport: at.transport,
            user_agent: request.header(&HeaderName::UserAgent),
        };
        let policy = &ask.domain.registration;
        let replica = self.cluster.me();
        let now = at.now;
        let mut decision = None;
        let update = {
            let mut decide = |current: &[Binding]| {
                // The new set goes to the store (and comes back as `update.after`); only the
                // verdict is kept here.
                let (d, next) = match registrar::decide(
                    &req,
                    policy,
                    device.max_contacts,
                    current,
                    now,
                    replica,
                ) {
                    Decision::Accept(set) => (Decision::Accept(None), set),
                    reject => (reject, None),
                };
                decision = Some(d);
                next
            };
            self.write(at, ask, &device.id, pending.as_ref(), &mut decide)
                .await
        };
        let update = match update {
            Ok(u) => u,
            Err(r) => return r,
        };
        match decision {
            Some(Decision::Reject {
                status,
                reason,
                min_expires,
            }) => {
                let mut r = Response::to_request(&request.headers, status, reason, Some(at.via));
                if let Some(m) = min_expires {
                    r.push("Min-Expires", m.to_string());
                }
                r
            }
            _ => self.registered(request, at.via, &device.id, &update, now),
        }
    }

    /// The store's update of `aor` with `pending`'s admission: checked in the write itself
    /// when the state gives a guard and the store takes it (one round trip to Redis), else
    /// asked of the state first; a decision that wrote nothing is admitted after it. The
    /// update, or the answer refusing the request.
    async fn write<'r>(
        &self,
        at: &Bind<'_, 'r>,
        ask: &RegisterAsk<'_>,
        aor: &str,
        pending: Option<&Pending>,
        decide: &mut Decide<'_>,
    ) -> Result<Update, Response<'r>> {
        let guarded = pending.and_then(|p| Some((p, self.auth.guard(p)?)));
        if let Some((p, guard)) = &guarded {
            let refused = |admission| Err(self.concluded(at, ask, p, admission));
            match self.store.update_guarded(aor, at.now, guard, decide).await {
                Ok(Guarded::Applied(u)) => return Ok(u),
                Ok(Guarded::Unwritten(u)) => return self.admit(at, ask, p).await.map(|()| u),
                Ok(Guarded::Refused(r)) => return refused(Ok(r.into())),
                Ok(Guarded::Unreached(StoreError(e))) => return refused(Err(StateError(e))),
                Ok(Guarded::Skipped) => {}
                Err(e) => return Err(self.update_failed(at, aor, e)),
            }
        }
        if let Some(p) = pending {
            self.admit(at, ask, p).await?;
        }
        self.store
            .update(aor, at.now, decide)
            .await
            .map_err(|e| self.update_failed(at, aor, e))
    }

    /// Admits a request whose digest verified, through the state; the refusal's answer.
    async fn admit<'r>(
        &self,
        at: &Bind<'_, 'r>,
        ask: &RegisterAsk<'_>,
        pending: &Pending,
    ) -> Result<(), Response<'r>> {
        match self.auth.admit(pending).await.verdict {
            Verdict::Authorized => Ok(()),
            verdict => {
                Err(self.refuse(at.loaded, ask, at.request, at.via, verdict, unix_ms(at.now)))
            }
        }
    }

    /// The answer to an admission a guarded write refused (or could not check).
    fn concluded<'r>(
        &self,
        at: &Bind<'_, 'r>,
        ask: &RegisterAsk<'_>,
        pending: &Pending,
        admission: Result<Admission, StateError>,
    ) -> Response<'r> {
        let verdict = self.auth.conclude(pending, admission).verdict;
        self.refuse(at.loaded, ask, at.request, at.via, verdict, unix_ms(at.now))
    }

    /// Counts and logs a failed update; its answer.
    fn update_failed<'r>(&self, at: &Bind<'_, 'r>, aor: &str, e: StoreError) -> Response<'r> {
        self.store_failed("update");
        tracing::error!(error = %e, device = %aor, "location store update failed");
        Response::to_request(
            &at.request.headers,
            500,
            "Location Store Unavailable",
            Some(at.via),
        )
        .with("Retry-After", "5")
    }

    /// The 200 for an accepted REGISTER: emits the binding changes and lists every binding
    /// the AOR now holds with its remaining lifetime.
    fn registered<'r>(
        &self,
        request: &'r Request<'r>,
        via: &'r str,
        device_id: &str,
        update: &Update,
        now: SystemTime,
    ) -> Response<'r> {
        for kind in changes(&update.before, &update.after) {
            self.emit(device_id, kind, &update.after, now);
        }
        listing(request, via, &update.after, now)
    }

    /// The 200 again for a retransmission of an accepted REGISTER, whose answer the transaction
    /// cache does not keep: the bindings the AOR holds now, listed as [`Service::registered`]
    /// lists them (the To tag is the same; the lifetimes and Date are those of now). `None`
    /// (nothing sent) when the AOR no longer names a device or the store fails: the phone's
    /// next REGISTER gets the answer of the moment.
    pub(super) async fn registered_again<'r>(
        &self,
        request: &'r Request<'r>,
        via: &'r str,
        transport: Transport,
    ) -> Option<Response<'r>> {
        let loaded = self.config.current()?;
        let ask = RegisterAsk::read(&loaded.config, request, via, transport).ok()?;
        let (_, device) = loaded.device(&ask.domain.domain, ask.aor_user)?;
        let now = SystemTime::now();
        let bindings = self.store.lookup(&device.id, now).await.ok()?;
        Some(listing(request, via, &bindings, now))
    }
}

/// A REGISTER's 200: every binding of the AOR with its remaining lifetime, and the Date.
fn listing<'r>(
    request: &'r Request<'r>,
    via: &'r str,
    bindings: &[Binding],
    now: SystemTime,
) -> Response<'r> {
    let mut r = Response::to_request(&request.headers, 200, "OK", Some(via));
    for b in bindings {
        let mut c = String::with_capacity(b.contact.len() + 24);
        c.push('<');
        c.push_str(&b.contact);
        c.push_str(">;expires=");
        c.push_str(itoa::Buffer::new().format(b.remaining(now)));
        if let Some(q) = b.q {
            c.push_str(";q=");
            c.push_str(&format_q(q));
        }
        r.push("Contact", c);
    }
    r.push("Date", http_date(now));
    r
}

/// The REGISTER being bound: its config, message, source, time, and the bindings it asks for.
struct Bind<'l, 'r> {
    loaded: &'l config::Loaded,
    request: &'r Request<'r>,
    via: &'r str,
    source: SocketAddr,
    transport: Transport,
    now: SystemTime,
    /// The Contact headers taken together.
    contacts: Contacts,
    /// The Expires header.
    expires_header: Option<u32>,
}

/// Whom a REGISTER is for, read from its headers before authentication.
struct RegisterAsk<'c> {
    /// The domain served: the To host's, else the Request-URI's.
    domain: &'c DomainConfig,
    /// The AOR's user part, from To.
    aor_user: &'c str,
}

/// The Contacts and Expires of a REGISTER, or the 400 refusing them.
fn contacts_and_expires<'r>(
    request: &'r Request<'r>,
    via: &'r str,
) -> Result<(Contacts, Option<u32>), Response<'r>> {
    let bad = |reason: String| Response::to_request(&request.headers, 400, reason, Some(via));
    let contacts = parse_contacts_all(request.headers_named(&HeaderName::Contact))
        .map_err(|e| bad(e.to_string()))?;
    let expires_header = match request.header(&HeaderName::Expires) {
        Some(v) => Some(parse_expires(v).ok_or_else(|| bad("Bad Expires".into()))?),
        None => None,
    };
    Ok((contacts, expires_header))
}

impl<'c> RegisterAsk<'c> {
    /// Reads the AOR and its domain, or the answer refusing them (400, 403, 404).
    fn read<'r: 'c>(
        config: &'c RegistrarConfig,
        request: &'r Request<'r>,
        via: &'r str,
        transport: Transport,
    ) -> Result<Self, Response<'r>> {
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(via))
        };
        // The AOR from To; its host names the domain (else the Request-URI's does).
        let Some((to, to_host)) = request
            .header(&HeaderName::To)
            .and_then(NameAddrRef::parse)
            .and_then(|n| SipUriParts::split(n.uri))
            .and_then(|to| Some((to, to.host_port()?.0)))
        else {
            return Err(reply(400, "Bad To"));
        };
        let Some(aor_user) = to.user() else {
            return Err(reply(404, "Not Found"));
        };
        let request_host = || SipUriParts::split(request.uri)?.host_port();
        let Some(domain) = config
            .domain(&to_host)
            .or_else(|| config.domain(&request_host()?.0))
        else {
            return Err(reply(404, "Domain Not Served"));
        };
        if !registrar::transport_allowed(&domain.registration, transport) {
            return Err(reply(403, "Transport Not Allowed"));
        }
        Ok(RegisterAsk { domain, aor_user })
    }
}
