//! An initial INVITE or MESSAGE: who is calling (upstream, trusted peer or authenticated
//! device), the route ([`crate::routing`]), and the targets the call is forked to.

use super::calls::{CallLog, Target};
use super::core::{Hop, Inner};
use super::sip::{response_to, Msg};
use super::trunk::{from_upstream, resolve};
use crate::auth::digest::Credentials;
use crate::auth::Authenticator;
use crate::cluster::reach::Reach;
use crate::location::Binding;
use crate::message::headers::{NameAddr, SipUri};
use crate::routing::{Caller, Decision, Route};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};
use switchboard_crds::common::Transport;

impl Inner {
    pub(super) async fn initial(
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
            match self.authenticate(auth, &req, &caller_domain, source).await {
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
        let targets: Vec<Target> = match &decision.route {
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
                vec![Target {
                    uri: Some(uri),
                    hop: dest,
                    trunk: Some(reg.id.clone()),
                    route: None,
                }]
            }
        };
        log.number = decision.number.clone();
        let mut st = self.state.lock();
        self.start_call(&mut st, id, &req, targets, invite, log, now);
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
        let mut st = self.state.lock();
        self.reply(&mut st, id, status, reason, now);
    }
}
