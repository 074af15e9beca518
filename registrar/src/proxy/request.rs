//! A request arriving, the driver's side: its top Via given `received`/`rport` and handed to
//! the core (which absorbs an ACK or a retransmission, answers a CANCEL, checks Max-Forwards
//! and Proxy-Require, §16.3); a new one is then routed here: loose routing (§16.4), a branch a
//! sibling relays through us, requests inside a dialog; an initial INVITE or MESSAGE goes on
//! to [`super::initial`]. An ACK for a 2xx comes back for the stateless relay.

use super::core::{Arrival, CallLog, Hop, ViaKey};
use super::driver::{Inner, Target};
use super::routes::next_hop;
use crate::auth::Authenticator;
use crate::message::headers::ViaRef;
use crate::message::Msg;
use std::net::SocketAddr;
use std::time::Instant;
use switchboard_crds::common::Transport;

impl Inner {
    pub(super) async fn on_request(
        &self,
        auth: &Authenticator,
        mut req: Msg,
        source: SocketAddr,
        transport: Transport,
    ) {
        let now = Instant::now();
        let Some(via) = req.header("Via").and_then(ViaRef::parse_first) else {
            self.metrics.dropped.with_label_values(&["bad_via"]).inc();
            return;
        };
        let top = ViaKey::of(&via);
        let (fixed, target) = crate::transport::nat::fix_top_via(&via, source, transport);
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
        match self.with_core(|core| core.request(req, &top, reply_to, now)) {
            Arrival::Done => {}
            Arrival::Stateless(ack) => self.relay_stateless(ack),
            Arrival::Route(id, req) => {
                self.route_request(auth, id, req, (source, reply_to), now)
                    .await
            }
        }
    }

    /// Loose routing (§16.4): a Route naming us is ours to remove. Then a branch relayed into
    /// a flow we hold, a request inside a dialog, or an initial INVITE or MESSAGE.
    async fn route_request(
        &self,
        auth: &Authenticator,
        id: u64,
        mut req: Msg,
        (source, reply_to): (SocketAddr, Hop),
        now: Instant,
    ) {
        // Our top Route, read once before it is popped: whether it is ours, the flow a
        // sibling's names, and whether a dialog's carries its token.
        let call_id = req.call_id().unwrap_or("");
        let ours = self.first_route_ours(&req);
        let popped = ours.is_some();
        let relayed = ours.as_ref().and_then(|u| self.relayed_flow(u, call_id));
        let in_our_dialog = ours.is_some_and(|u| self.route_token_valid(&u, call_id));
        // The connection to a browser the dialog's Route names (its Contact reaches nothing).
        let mut dialog_flow = None;
        if popped {
            req.pop_first("Route");
            dialog_flow = self.pop_second_route(&mut req);
        }

        // A branch a sibling sends through us into the flow we hold to its target.
        if let Some(flow) = relayed {
            if flow.transport != Transport::Udp
                && self.flows.transport_of(flow.addr) != Some(flow.transport)
            {
                self.reply(id, 480, "Flow Closed", now);
                return;
            }
            let record_route = req.method() == Some("INVITE") && req.to_tag().is_none();
            let target = vec![Target::hop(flow)];
            let caller = record_route.then_some(reply_to);
            self.start_call(id, req, target, caller, CallLog::default(), now);
            return;
        }

        if req.to_tag().is_some() {
            self.in_dialog(id, req, in_our_dialog, dialog_flow, now)
                .await;
            return;
        }
        if !matches!(req.method(), Some("INVITE" | "MESSAGE")) {
            self.reply(id, 481, "Call/Transaction Does Not Exist", now);
            return;
        }
        self.initial(auth, id, req, (source, reply_to), now).await;
    }

    /// A request inside a dialog: it must come through our Record-Route, with its token
    /// (`routed`), and goes into the flow the dialog's Route names or to the next hop its Route or
    /// Request-URI names.
    async fn in_dialog(
        &self,
        id: u64,
        req: Msg,
        routed: bool,
        dialog_flow: Option<Hop>,
        now: Instant,
    ) {
        if !routed {
            self.reply(id, 403, "Not Routed Through This Proxy", now);
            return;
        }
        if let Some(flow) = dialog_flow {
            if self.flows.transport_of(flow.addr) != Some(flow.transport) {
                // RFC 5626 §5.3: the flow named is gone.
                self.reply(id, 430, "Flow Failed", now);
                return;
            }
            let target = vec![Target::hop(flow)];
            self.start_call(id, req, target, None, CallLog::default(), now);
            return;
        }
        let Some((dest, transport)) = next_hop(&req) else {
            self.reply(id, 404, "No Route To Target", now);
            return;
        };
        let hop = match transport {
            // A trunk's Contact over TCP/TLS whose connection is gone: open another.
            Some(t)
                if t.is_stream()
                    && !t.is_websocket()
                    && self.flows.transport_of(dest) != Some(t) =>
            {
                let peer = crate::uac::flow::Peer {
                    host: dest.ip().to_string(),
                    port: dest.port(),
                    transport: t,
                };
                self.stream_to(&peer).await.unwrap_or(self.hop(dest))
            }
            _ => self.hop(dest),
        };
        let target = vec![Target::hop(hop)];
        self.start_call(id, req, target, None, CallLog::default(), now);
    }
}
