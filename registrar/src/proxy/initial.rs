//! An initial INVITE or MESSAGE: who is calling (upstream, trusted peer or authenticated
//! device), the route ([`crate::routing`]), and the targets the call is forked to.

use super::core::{CallLog, Hop};
use super::driver::{Inner, Target};
use super::trunk::{from_upstream, resolve};
use crate::auth::digest::Credentials;
use crate::auth::Authenticator;
use crate::cluster::reach::Reach;
use crate::location::Binding;
use crate::message::headers::{NameAddr, SipUri};
use crate::message::Msg;
use crate::routing::{Caller, Decision, Route, RoutingTable};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;

impl Inner {
    pub(super) async fn initial(
        &self,
        auth: &Authenticator,
        id: u64,
        mut req: Msg,
        (source, reply_to): (SocketAddr, Hop),
        now: Instant,
    ) {
        let Some(table) = self.table() else {
            self.reply(id, 503, "Service Unavailable", now);
            return;
        };
        let Some(ruri) = req.request_uri() else {
            self.reply(id, 416, "Unsupported URI Scheme", now);
            return;
        };
        let dialled = ruri.user.clone().unwrap_or_default();
        let from = req.header("From").and_then(NameAddr::parse);
        let from_uri = from.as_ref().and_then(|f| SipUri::parse(&f.uri));
        let Some((decision, from_user)) = self
            .caller(
                auth,
                id,
                &mut req,
                source,
                now,
                &table,
                &ruri,
                from_uri.as_ref(),
            )
            .await
        else {
            return;
        };

        let mut log = CallLog {
            from: from_user,
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
            assert_caller_id(&mut req, cid, from.as_ref(), from_uri.as_ref());
        }

        let invite = req.method() == Some("INVITE");
        let Some(targets) = self
            .targets(id, &decision.route, &table, &mut req, &log, now)
            .await
        else {
            return;
        };
        log.number = decision.number.clone();
        let caller = invite.then_some(reply_to);
        self.start_call(id, req, targets, caller, log, now);
    }

    /// The branches a route forks to, or none when it was refused (its 4xx/5xx sent and
    /// logged).
    async fn targets(
        &self,
        id: u64,
        route: &Route,
        table: &RoutingTable,
        req: &mut Msg,
        log: &CallLog,
        now: Instant,
    ) -> Option<Vec<Target>> {
        let targets = match route {
            Route::Refused { status, reason } => {
                self.refuse(id, *status, reason, log, now);
                return None;
            }
            Route::NotFound => {
                self.refuse(id, 404, "Not Found", log, now);
                return None;
            }
            Route::Extension { devices, .. } | Route::User { devices, .. } => {
                let targets = self.device_targets(devices, req).await;
                if targets.is_empty() {
                    self.refuse(id, 480, "Temporarily Unavailable", log, now);
                    return None;
                }
                targets
            }
            Route::Trunk {
                registration,
                number,
            } => {
                let trunk = table
                    .config()
                    .registrations
                    .iter()
                    .find(|r| &r.id == registration);
                match self.trunk_target(trunk, number, req).await {
                    Ok(target) => vec![target],
                    Err(reason) => {
                        self.refuse(id, 503, reason, log, now);
                        return None;
                    }
                }
            }
        };
        Some(targets)
    }

    /// Who is calling and where the call goes: an upstream through one of our registrations,
    /// a trusted peer, or a device (digest-authenticated; our realm's credentials are
    /// consumed here, §22.3). The routing decision and the caller's user, or none when the
    /// request was answered (403, a challenge).
    #[allow(clippy::too_many_arguments)]
    async fn caller(
        &self,
        auth: &Authenticator,
        id: u64,
        req: &mut Msg,
        source: SocketAddr,
        now: Instant,
        table: &RoutingTable,
        ruri: &SipUri,
        from_uri: Option<&SipUri>,
    ) -> Option<(Decision, String)> {
        let dialled = ruri.user.clone().unwrap_or_default();
        let config = table.config();
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
        let from_user = from_uri.and_then(|u| u.user.clone()).unwrap_or_default();
        if let Some(reg) = &upstream {
            let decision = table.route(Caller::Upstream { registration: reg }, &dialled);
            return Some((decision, from_user));
        }
        if let Some(domain) = &peer_domain {
            return Some((table.route(Caller::Peer { domain }, &dialled), from_user));
        }
        let Some(domain) = from_uri
            .and_then(|u| config.domain(&u.host))
            .or_else(|| config.domain(&ruri.host))
        else {
            self.reply(id, 403, "Domain Not Served", now);
            return None;
        };
        let caller_domain = domain.domain.clone();
        let from_user = match self.authenticate(auth, req, &caller_domain, source).await {
            Ok(user) => user,
            Err((status, extra)) => {
                self.with_core(|core| core.reply_with(id, status, extra, now));
                return None;
            }
        };
        req.headers.retain(|(n, v)| {
            n != "Proxy-Authorization"
                || !Credentials::parse(v)
                    .is_some_and(|c| c.realm.eq_ignore_ascii_case(&caller_domain))
        });
        let caller = Caller::Device {
            domain: &caller_domain,
            sip_user: &from_user,
        };
        let decision = table.route(caller, &dialled);
        Some((decision, from_user))
    }

    /// The branches to every live binding of these devices; a failed lookup is counted and
    /// logged, and leaves that device out.
    async fn device_targets(&self, devices: &[String], req: &Msg) -> Vec<Target> {
        let mut targets = Vec::new();
        let wall = SystemTime::now();
        for d in devices {
            match self.store.lookup(d, wall).await {
                Ok(bindings) => {
                    let call_id = req.call_id().unwrap_or("");
                    for b in bindings.into_iter().filter(|b| b.is_live(wall)) {
                        if let Some(t) = self.target_of(&b, call_id) {
                            targets.push(t);
                        }
                    }
                }
                Err(e) => {
                    self.metrics
                        .store_errors
                        .with_label_values(&["lookup"])
                        .inc();
                    tracing::warn!(device = %d, error = %e, "location lookup failed");
                }
            }
        }
        targets
    }

    /// The branch to a trunk: the registration's host, or its outbound proxy (with a Route
    /// to it pushed onto the request), with `number` in the Request-URI; else the reason
    /// phrase of the 503.
    async fn trunk_target(
        &self,
        reg: Option<&OutboundRegistration>,
        number: &str,
        req: &mut Msg,
    ) -> Result<Target, &'static str> {
        let reg = reg.ok_or("Trunk Not Configured")?;
        let (peer, route) =
            crate::uac::client::peer_and_route(reg).map_err(|_| "Trunk Unreachable")?;
        let dest = match peer.transport {
            Transport::Udp => resolve(&peer.host, peer.port).await.map(|addr| Hop {
                addr,
                transport: Transport::Udp,
            }),
            _ => self.stream_to(&peer).await,
        };
        let dest = dest.ok_or("Trunk Unreachable")?;
        if let Some(route) = route {
            req.push_front("Route", route);
        }
        let param = match reg.transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_sip_param()),
        };
        Ok(Target {
            uri: Some(format!("sip:{number}@{}:{}{param}", reg.host, reg.port)),
            hop: dest,
            trunk: Some(reg.id.clone()),
            route: None,
        })
    }

    /// The branch to a binding: from here when its flow is here (UDP, or the TCP/TLS
    /// connection it registered over while that is open), through the sibling holding its
    /// flow, straight over UDP when that sibling is gone; none for a TCP/TLS binding whose
    /// connection is gone.
    fn target_of(&self, b: &Binding, call_id: &str) -> Option<Target> {
        let flow = Hop {
            addr: b.source,
            transport: b.transport,
        };
        let direct = Target {
            uri: Some(b.contact.clone()),
            hop: flow,
            trunk: None,
            route: None,
        };
        match self.cluster.reach(&b.replica, b.transport) {
            Reach::Local => (b.transport == Transport::Udp
                || self.flows.transport_of(b.source) == Some(b.transport))
            .then_some(direct),
            Reach::Direct => Some(direct),
            Reach::Through(peer) => Some(Target {
                uri: Some(b.contact.clone()),
                hop: Hop {
                    addr: peer,
                    transport: Transport::Udp,
                },
                trunk: None,
                route: Some(self.sibling_route(peer, call_id, flow)),
            }),
            Reach::Stale => {
                tracing::debug!(contact = %b.contact, replica = %b.replica, "binding stale: its replica and connection are gone");
                None
            }
        }
    }

    fn refuse(&self, id: u64, status: u16, reason: &str, log: &CallLog, now: Instant) {
        let outcome = match status {
            404 => "not_found",
            480 => "unavailable",
            403 => "refused",
            _ => "failed",
        };
        log.record(&self.metrics, status, outcome, Some(reason));
        self.reply(id, status, reason, now);
    }
}

/// The route's caller ID: a P-Asserted-Identity in the caller's host, and the From display
/// name (its URI and parameters kept).
fn assert_caller_id(req: &mut Msg, cid: &str, from: Option<&NameAddr>, from_uri: Option<&SipUri>) {
    req.set(
        "P-Asserted-Identity",
        format!(
            "\"{cid}\" <sip:{cid}@{}>",
            from_uri.map_or("", |u| u.host.as_str())
        ),
    );
    if let Some(f) = from {
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
