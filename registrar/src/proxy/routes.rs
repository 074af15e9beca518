//! Record-Route and loose routing: our Record-Route and its token, the Routes of ours a
//! request carries, the next hop, and the stateless relay of an ACK for a 2xx.
//!
//! A call whose two sides differ (a browser over WebSocket, a trunk over TCP/TLS) gets a
//! double Record-Route (RFC 5658): one facing each side. The one facing a WebSocket side names
//! that side's connection (`sbw`, with a MAC `sbwt` of it and the Call-ID): a browser's Contact
//! is a `*.invalid` host (RFC 7118 §5), so a request of the dialog toward it finds its
//! connection through the second Route, the one facing it.

use super::core::{new_branch, Hop};
use super::driver::Inner;
use crate::auth::nonce::NonceStatus;
use crate::message::headers::{addr_uri, SipUriRef};
use crate::message::Msg;
use std::net::SocketAddr;
use switchboard_crds::common::Transport;

impl Inner {
    /// Whether a Route names this proxy: our address, or a Record-Route of this installation
    /// (`sbp`) that does not name a live sibling, whose own it is. A dead sibling's is taken
    /// as ours, so a dialog through it goes on without it.
    pub(super) fn is_ours(&self, u: &SipUriRef<'_>) -> bool {
        let target = u.target();
        if target == Some(self.local()) {
            return true;
        }
        let tagged = u.param("sbp").is_some() || u.param("sbf").is_some();
        tagged && !target.is_some_and(|t| self.cluster.is_live_peer_addr(t))
    }

    /// The first Route of `req`, read in place, when it names this proxy (see
    /// [`Inner::is_ours`]).
    pub(super) fn first_route_ours<'m>(&self, req: &'m Msg) -> Option<SipUriRef<'m>> {
        let u = SipUriRef::parse(addr_uri(req.first_element("Route")?))?;
        self.is_ours(&u).then_some(u)
    }

    /// The Route that sends a branch through the sibling at `peer` into the flow it holds to
    /// the phone: the flow and a MAC of it with the Call-ID under the shared nonce key, so a
    /// sibling only relays into a flow another replica of this installation chose.
    pub(super) fn sibling_route(&self, peer: SocketAddr, call_id: &str, flow: Hop) -> String {
        let flow = flow_param(flow);
        let token = self.flow_mac(FlowUse::Sibling, call_id, &flow);
        format!("<sip:{peer};lr;sbf={flow};sbt={token}>")
    }

    /// The flow a sibling's Route (see [`Inner::sibling_route`]) asks us to relay into, when
    /// its MAC is right for this Call-ID.
    pub(super) fn relayed_flow(&self, route_uri: &SipUriRef<'_>, call_id: &str) -> Option<Hop> {
        self.flow_in(FlowUse::Sibling, route_uri, call_id)
    }

    /// A MAC of `flow` (as [`flow_param`] writes it), the Call-ID and the use under the shared
    /// nonce key.
    fn flow_mac(&self, use_: FlowUse, call_id: &str, flow: &str) -> String {
        self.config
            .current()
            .map(|l| l.nonce_key.issue(&use_.realm(call_id, flow), 0, [0; 8]))
            .unwrap_or_default()
    }

    /// The flow a URI of ours names for `use_`, when its MAC is right for this Call-ID (see
    /// [`Inner::flow_mac`]).
    fn flow_in(&self, use_: FlowUse, u: &SipUriRef<'_>, call_id: &str) -> Option<Hop> {
        let (flow, mac) = use_.params();
        let (flow, token) = (u.param(flow).flatten()?, u.param(mac).flatten()?);
        let loaded = self.config.current()?;
        let realm = use_.realm(call_id, flow);
        if loaded.nonce_key.check(token, &realm, 0, u64::MAX) == NonceStatus::Invalid {
            return None;
        }
        parse_flow_param(flow)
    }

    /// Our Record-Route for a dialog: its `sbp` parameter is a MAC of the Call-ID under the
    /// config's nonce key (shared by every replica), so only requests of dialogs this proxy
    /// (or a sibling replica) record-routed are relayed by their Request-URI.
    pub(super) fn record_route(&self, call_id: &str) -> String {
        let local = self.local_text();
        match self.config.current() {
            Some(loaded) => {
                let token = loaded.nonce_key.issue(call_id, 0, [0; 8]);
                ["<sip:", local, ";lr;sbp=", &token, ">"].concat()
            }
            None => format!("<sip:{local};lr;sbp>"),
        }
    }

    /// Whether a Route of ours carries the right token for this Call-ID.
    pub(super) fn route_token_valid(&self, route_uri: &SipUriRef<'_>, call_id: &str) -> bool {
        let Some(token) = route_uri.param("sbp").flatten() else {
            return false;
        };
        self.config.current().is_some_and(|loaded| {
            loaded.nonce_key.check(token, call_id, 0, u64::MAX) != NonceStatus::Invalid
        })
    }

    /// Our Record-Route(s) for a branch from `caller` to `callee` (a trunk when `trunk`): the
    /// one facing the caller and, when the callee's side needs another (a WebSocket flow, a
    /// trunk over TCP/TLS), the one facing the callee, which goes on top (RFC 5658).
    pub(super) fn record_routes(
        &self,
        call_id: &str,
        caller: Hop,
        callee: Hop,
        trunk: bool,
    ) -> (String, Option<String>) {
        let facing = |hop: Hop, trunk: bool| {
            if hop.transport.is_websocket() {
                Some(self.websocket_record_route(call_id, hop))
            } else if trunk {
                self.stream_record_route(call_id, hop.transport)
            } else {
                None
            }
        };
        let (bottom, top) = (facing(caller, false), facing(callee, trunk));
        if bottom.is_none() && top.is_none() {
            // The usual case: one ordinary Record-Route serves both sides (one MAC, not two).
            return (self.record_route(call_id), None);
        }
        let bottom = bottom.unwrap_or_else(|| self.record_route(call_id));
        let top = top.unwrap_or_else(|| self.record_route(call_id));
        let double = top != bottom;
        (bottom, double.then_some(top))
    }

    /// Our Record-Route facing a browser on the WebSocket `flow`: our WS/WSS address (the
    /// browser never dials it: everything goes down its connection), the dialog token, and the
    /// flow with its MAC.
    fn websocket_record_route(&self, call_id: &str, flow: Hop) -> String {
        let listening = self.outbound.get().and_then(|o| match flow.transport {
            Transport::Ws => o.ws,
            _ => o.wss,
        });
        let addr = listening.unwrap_or_else(|| self.local());
        let ordinary = self.record_route(call_id);
        let rest = ordinary
            .strip_prefix(&format!("<sip:{};", self.local()))
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or("lr;sbp");
        let transport = flow.transport.as_sip_param();
        let flow = flow_param(flow);
        let mac = self.flow_mac(FlowUse::Dialog, call_id, &flow);
        format!("<sip:{addr};transport={transport};{rest};sbw={flow};sbwt={mac}>")
    }

    /// The WebSocket flow a Route of ours facing a browser names (see
    /// [`Inner::record_routes`]), when its MAC is right for this Call-ID.
    pub(super) fn dialog_flow(&self, route_uri: &SipUriRef<'_>, call_id: &str) -> Option<Hop> {
        self.flow_in(FlowUse::Dialog, route_uri, call_id)
    }

    /// Our Record-Route facing a trunk reached over TCP/TLS (RFC 5658 double Record-Route:
    /// this one on top for the trunk, the ordinary one below for the caller), when we listen
    /// on that transport.
    pub(super) fn stream_record_route(
        &self,
        call_id: &str,
        transport: Transport,
    ) -> Option<String> {
        let out = self.outbound.get()?;
        let addr = match transport {
            Transport::Udp | Transport::Ws | Transport::Wss => return None,
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

    /// After our top Route is popped: the second of a double Record-Route (RFC 5658) is ours
    /// too, and goes as well. Returns the WebSocket flow it names (the way to the side it
    /// faces), if any.
    pub(super) fn pop_second_route(&self, req: &mut Msg) -> Option<Hop> {
        let second = self.first_route_ours(req)?;
        let flow = self.dialog_flow(&second, req.call_id().unwrap_or(""));
        req.pop_first("Route");
        flow
    }

    /// An ACK for a 2xx (or anything else without a transaction): our Route popped, our Via
    /// pushed, sent on by Route or Request-URI.
    pub(super) fn relay_stateless(&self, mut req: Msg) {
        let call_id = req.call_id().unwrap_or("");
        let routed = self
            .first_route_ours(&req)
            .is_some_and(|u| self.route_token_valid(&u, call_id));
        if !routed {
            return;
        }
        req.pop_first("Route");
        let flow = self.pop_second_route(&mut req);
        let mf = req
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            return;
        }
        req.set("Max-Forwards", (mf - 1).min(70).to_string());
        if let Some(hop) = flow.or_else(|| next_hop(&req).map(|(dest, _)| self.hop(dest))) {
            req.push_front("Via", self.via(&new_branch(), hop.transport));
            self.send(req.encode(), hop);
        }
    }
}

/// What a flow named in one of our URIs is for; each has its parameters and its own MAC, so
/// one cannot be passed off as the other (a Record-Route a callee saw is no licence to have a
/// sibling's relay ring the caller's connection).
#[derive(Clone, Copy)]
enum FlowUse {
    /// A sibling's Route into the flow it holds to a phone (`sbf`, `sbt`).
    Sibling,
    /// Our Record-Route facing a WebSocket side, naming its connection (`sbw`, `sbwt`).
    Dialog,
}

impl FlowUse {
    fn params(self) -> (&'static str, &'static str) {
        match self {
            FlowUse::Sibling => ("sbf", "sbt"),
            FlowUse::Dialog => ("sbw", "sbwt"),
        }
    }

    fn realm(self, call_id: &str, flow: &str) -> String {
        match self {
            FlowUse::Sibling => format!("{call_id}\n{flow}"),
            FlowUse::Dialog => format!("{call_id}\n{flow}\ndialog"),
        }
    }
}

/// Where a request goes next, by its first Route, else its Request-URI: the address, and the
/// `transport` parameter if given.
pub(super) fn next_hop(req: &Msg) -> Option<(SocketAddr, Option<Transport>)> {
    let uri = match req.first_element("Route") {
        Some(r) => addr_uri(r),
        None => req.uri()?,
    };
    let u = SipUriRef::parse(uri)?;
    let transport = u
        .param("transport")
        .flatten()
        .and_then(Transport::from_sip_param);
    Some((u.target()?, transport))
}

/// A flow as a URI parameter value: `udp/192.0.2.1:5060`, `tcp/[2001:db8::1]:5060`.
fn flow_param(hop: Hop) -> String {
    format!("{}/{}", hop.transport.as_sip_param(), hop.addr)
}

fn parse_flow_param(v: &str) -> Option<Hop> {
    let (t, addr) = v.split_once('/')?;
    Some(Hop {
        addr: addr.parse().ok()?,
        transport: Transport::from_sip_param(t)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::driver::fixtures;
    use super::*;

    fn hop(addr: &str, transport: Transport) -> Hop {
        Hop {
            addr: addr.parse().unwrap(),
            transport,
        }
    }

    #[tokio::test]
    async fn a_call_crossing_into_a_websocket_gets_a_record_route_naming_its_connection() {
        let inner = fixtures::inner().await;
        let udp = hop("127.0.0.1:5071", Transport::Udp);
        let ws = hop("127.0.0.1:40000", Transport::Ws);
        // Both sides alike: one Record-Route.
        assert_eq!(inner.record_routes("c1", udp, udp, false).1, None);
        // Callee on a WebSocket: the one facing it goes on top and names its connection.
        let (bottom, top) = inner.record_routes("c1", udp, ws, false);
        assert!(!bottom.contains("transport="), "{bottom}");
        let top = addr_uri(&top.expect("a double Record-Route")).to_string();
        assert!(top.contains(";transport=ws;"), "{top}");
        let parsed = uri(&top);
        assert!(inner.is_ours(&parsed) && inner.route_token_valid(&parsed, "c1"));
        assert_eq!(inner.dialog_flow(&parsed, "c1"), Some(ws));
        assert_eq!(inner.dialog_flow(&uri(addr_uri(&bottom)), "c1"), None);
        // Not for another dialog, nor for a connection written in by someone else.
        assert_eq!(inner.dialog_flow(&parsed, "c2"), None);
        let forged = top.replace("127.0.0.1:40000", "127.0.0.1:40001");
        assert_eq!(inner.dialog_flow(&uri(&forged), "c1"), None);
        // Nor as a sibling's Route, which would relay a new request into it unauthenticated.
        let as_sibling = top.replace("sbw=", "sbf=").replace("sbwt=", "sbt=");
        assert_eq!(inner.relayed_flow(&uri(&as_sibling), "c1"), None);
        // Caller on WSS: the bottom one faces it.
        let wss = hop("127.0.0.1:40002", Transport::Wss);
        let (bottom, top) = inner.record_routes("c1", wss, udp, false);
        assert!(bottom.contains(";transport=wss;"), "{bottom}");
        assert_eq!(inner.dialog_flow(&uri(addr_uri(&bottom)), "c1"), Some(wss));
        assert!(top.is_some_and(|t| !t.contains("transport=")));
    }

    fn uri(s: &str) -> SipUriRef<'_> {
        SipUriRef::parse(s).expect("a SIP URI")
    }

    #[test]
    fn flow_params_round_trip() {
        for (t, a) in [
            (Transport::Udp, "192.0.2.1:5060"),
            (Transport::Tcp, "[2001:db8::1]:5070"),
            (Transport::Tls, "10.0.0.1:5061"),
            (Transport::Wss, "10.0.0.1:40000"),
        ] {
            let hop = Hop {
                addr: a.parse().unwrap(),
                transport: t,
            };
            let v = flow_param(hop);
            assert_eq!(parse_flow_param(&v), Some(hop), "{v}");
            // It survives as a URI parameter.
            let uri = format!("sip:127.0.0.2:5060;lr;sbf={v};sbt=x");
            let u = SipUriRef::parse(&uri).unwrap();
            assert_eq!(u.param("sbf"), Some(Some(v.as_str())));
        }
        assert_eq!(parse_flow_param("sctp/1.2.3.4:5"), None);
        assert_eq!(parse_flow_param("udp/nonsense"), None);
    }
}
