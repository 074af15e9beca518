//! REGISTER (RFC 3261 §10.3): [`Service::register`] reads as its steps, `RegisterAsk::read`
//! (AOR from To, domain, transport, Contacts, Expires), `authenticate` (the digest), `bind`
//! (`registrar::decide` inside the location store's update) and `registered` (change events,
//! the 200 listing the bindings).

use super::{unix_ms, Service};
use crate::auth::Verdict;
use crate::config;
use crate::location::{Binding, Update};
use crate::message::headers::{parse_contacts_all, parse_expires, Contacts, NameAddrRef, SipUri};
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
    pub(super) async fn register(
        &self,
        request: &Request,
        via: &str,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        let Some(loaded) = self.config.current() else {
            return Response::to_request(&request.headers, 503, "Service Unavailable", Some(via))
                .with("Retry-After", "5");
        };
        let ask = match RegisterAsk::read(&loaded.config, request, via, transport) {
            Ok(ask) => ask,
            Err(r) => return r,
        };
        let now = SystemTime::now();
        let device = match self
            .authenticate(&loaded, &ask, request, via, source, now)
            .await
        {
            Ok(device) => device,
            Err(r) => return r,
        };
        self.bind(request, via, &ask, device, source, transport, now)
            .await
    }

    /// Checks the REGISTER's digest: the authorized device, or the answer (a challenge, 403,
    /// 500). The device must be the AOR's user: third-party registration is not offered.
    async fn authenticate<'c>(
        &self,
        loaded: &'c config::Loaded,
        ask: &RegisterAsk<'c>,
        request: &Request,
        via: &str,
        source: SocketAddr,
        now: SystemTime,
    ) -> Result<&'c DeviceConfig, Response> {
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(via))
        };
        let now_ms = unix_ms(now);
        let checked = self
            .auth
            .check(
                &loaded.nonce_key,
                loaded,
                ask.domain,
                request.method.as_str(),
                request.headers_named(&HeaderName::Authorization),
                source.ip(),
                now_ms,
            )
            .await;
        let device = match checked.verdict {
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
                return Err(r);
            }
            Verdict::Forbidden => return Err(reply(403, "Forbidden")),
            // The state lives in the location store's Redis: the same answer as its failure.
            Verdict::Unavailable => {
                return Err(reply(500, "Location Store Unavailable").with("Retry-After", "5"));
            }
            Verdict::Authorized => match checked.device {
                Some(d) => d,
                None => return Err(reply(403, "Forbidden")),
            },
        };
        if device.sip_user != ask.aor_user {
            self.metrics
                .auth_failures
                .with_label_values(&["aor_mismatch"])
                .inc();
            return Err(reply(403, "Forbidden"));
        }
        Ok(device)
    }

    /// Applies an authorized REGISTER to the device's bindings in the location store and
    /// answers: the rejection `registrar::decide` chose, or 200 with the bindings now held.
    #[allow(clippy::too_many_arguments)]
    async fn bind(
        &self,
        request: &Request,
        via: &str,
        ask: &RegisterAsk<'_>,
        device: &DeviceConfig,
        source: SocketAddr,
        transport: Transport,
        now: SystemTime,
    ) -> Response {
        let (cseq, _) = request.cseq().expect("checked by handle");
        let req = RegisterRequest {
            contacts: &ask.contacts,
            expires_header: ask.expires_header,
            call_id: request.call_id().expect("checked by handle"),
            cseq,
            source,
            transport,
            user_agent: request.header(&HeaderName::UserAgent),
        };
        let policy = &ask.domain.registration;
        let replica = self.cluster.me();
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
            self.store.update(&device.id, now, &mut decide).await
        };
        let update = match update {
            Ok(u) => u,
            Err(e) => {
                self.store_failed("update");
                tracing::error!(error = %e, device = %device.id, "location store update failed");
                return Response::to_request(
                    &request.headers,
                    500,
                    "Location Store Unavailable",
                    Some(via),
                )
                .with("Retry-After", "5");
            }
        };
        match decision {
            Some(Decision::Reject {
                status,
                reason,
                min_expires,
            }) => {
                let mut r = Response::to_request(&request.headers, status, reason, Some(via));
                if let Some(m) = min_expires {
                    r.push("Min-Expires", m.to_string());
                }
                r
            }
            _ => self.registered(request, via, &device.id, &update, now),
        }
    }

    /// The 200 for an accepted REGISTER: emits the binding changes and lists every binding
    /// the AOR now holds with its remaining lifetime.
    fn registered(
        &self,
        request: &Request,
        via: &str,
        device_id: &str,
        update: &Update,
        now: SystemTime,
    ) -> Response {
        for kind in changes(&update.before, &update.after) {
            self.emit(device_id, kind, &update.after, now);
        }
        let mut r = Response::to_request(&request.headers, 200, "OK", Some(via));
        for b in &update.after {
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
}

/// What a REGISTER asks for, read from its headers before authentication.
struct RegisterAsk<'c> {
    /// The domain served: the To host's, else the Request-URI's.
    domain: &'c DomainConfig,
    /// The AOR's user part, from To.
    aor_user: String,
    /// The Contact headers taken together.
    contacts: Contacts,
    /// The Expires header.
    expires_header: Option<u32>,
}

impl<'c> RegisterAsk<'c> {
    /// Reads the AOR, domain, Contacts and Expires, or the answer refusing them (400, 403,
    /// 404).
    fn read(
        config: &'c RegistrarConfig,
        request: &Request,
        via: &str,
        transport: Transport,
    ) -> Result<Self, Response> {
        let reply = |status: u16, reason: &'static str| {
            Response::to_request(&request.headers, status, reason, Some(via))
        };
        // The AOR from To; its host names the domain (else the Request-URI's does).
        let Some(to) = request
            .header(&HeaderName::To)
            .and_then(NameAddrRef::parse)
            .and_then(|n| SipUri::parse(n.uri))
        else {
            return Err(reply(400, "Bad To"));
        };
        let Some(aor_user) = to.user else {
            return Err(reply(404, "Not Found"));
        };
        let Some(domain) = config
            .domain(&to.host)
            .or_else(|| SipUri::parse(&request.uri).and_then(|u| config.domain(&u.host)))
        else {
            return Err(reply(404, "Domain Not Served"));
        };
        if !registrar::transport_allowed(&domain.registration, transport) {
            return Err(reply(403, "Transport Not Allowed"));
        }
        let contacts = parse_contacts_all(request.headers_named(&HeaderName::Contact))
            .map_err(|e| Response::to_request(&request.headers, 400, e.to_string(), Some(via)))?;
        let expires_header = match request.header(&HeaderName::Expires) {
            None => None,
            Some(v) => match parse_expires(v) {
                Some(e) => Some(e),
                None => return Err(reply(400, "Bad Expires")),
            },
        };
        Ok(RegisterAsk {
            domain,
            aor_user,
            contacts,
            expires_header,
        })
    }
}
