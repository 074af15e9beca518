//! A request arriving: ACK, retransmissions, CANCEL, Max-Forwards (§16.3), loose routing
//! (§16.4) and requests inside a dialog; an initial INVITE or MESSAGE goes on to
//! [`super::initial`].

use super::calls::{CallLog, Target};
use super::core::{Hop, Inner};
use super::routes::{next_hop, next_hop_transport};
use super::server::server_key;
use crate::auth::Authenticator;
use crate::message::check;
use crate::message::headers::addr_uri;
use crate::message::owned::response_to;
use crate::message::Msg;
use crate::transaction::machine::{Action, State as TxState};
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
        // Call-ID, CSeq and its method were checked by `Proxy::handle`.
        let key = server_key(&top, &method);
        if method == "ACK" {
            self.on_ack(req, &key, now);
            return;
        }
        if self.retransmitted(&key, now) {
            return;
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
        if !self.validate(id, &mut req, now) {
            return;
        }
        self.route_request(auth, id, req, &method, source, now)
            .await;
    }

    /// ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx it is
    /// relayed on its own.
    fn on_ack(&self, req: Msg, key: &str, now: Instant) {
        let mut st = self.state.lock();
        if let Some(&id) = st.server_keys.get(key) {
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
    }

    /// A retransmission of a request in a live server transaction goes to that transaction
    /// (which answers again with its last response); true if it was one.
    fn retransmitted(&self, key: &str, now: Instant) -> bool {
        let mut st = self.state.lock();
        let Some(&id) = st.server_keys.get(key) else {
            return false;
        };
        let a = st
            .servers
            .get_mut(&id)
            .map(|s| s.m.on_request(false, now))
            .unwrap_or_default();
        self.server_actions(&mut st, id, &a, now);
        true
    }

    /// Max-Forwards (§16.3 step 3, decremented here) and Proxy-Require (step 5); false when
    /// the request was answered (483, 420).
    fn validate(&self, id: u64, req: &mut Msg, now: Instant) -> bool {
        let mf = req
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 483, "Too Many Hops", now);
            return false;
        }
        req.set("Max-Forwards", (mf - 1).min(70).to_string());

        // RFC 4475 §3.3.5: this proxy implements no extension.
        let fields = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let unknown = check::unsupported(fields, &["Proxy-Require"]);
        if unknown.is_empty() {
            return true;
        }
        let unsupported = unknown.join(", ");
        let mut st = self.state.lock();
        if let Some(s) = st.servers.get(&id) {
            let resp = response_to(&s.req, 420, "Bad Extension", Some(&s.to_tag));
            self.reply_with(&mut st, id, resp, vec![("Unsupported".into(), unsupported)]);
        }
        false
    }

    /// Loose routing (§16.4): a Route naming us is ours to remove. Then a branch relayed into
    /// a flow we hold, a request inside a dialog, or an initial INVITE or MESSAGE.
    async fn route_request(
        &self,
        auth: &Authenticator,
        id: u64,
        mut req: Msg,
        method: &str,
        source: SocketAddr,
        now: Instant,
    ) {
        let top_route = req
            .header_list("Route")
            .first()
            .map(|r| addr_uri(r))
            .filter(|u| self.is_ours(u));
        // The connection to a browser the dialog's Route names (its Contact reaches nothing).
        let mut dialog_flow = None;
        if top_route.is_some() {
            req.pop_first("Route");
            dialog_flow = self.pop_second_route(&mut req);
        }

        // A branch a sibling sends through us into the flow we hold to its target.
        if let Some(flow) = top_route
            .as_deref()
            .and_then(|u| self.relayed_flow(u, req.call_id().unwrap_or("")))
        {
            let mut st = self.state.lock();
            if flow.transport != Transport::Udp
                && self.flows.transport_of(flow.addr) != Some(flow.transport)
            {
                self.reply(&mut st, id, 480, "Flow Closed", now);
                return;
            }
            let record_route = method == "INVITE" && req.to_tag().is_none();
            let target = vec![Target::hop(flow)];
            self.start_call(
                &mut st,
                id,
                &req,
                target,
                record_route,
                CallLog::default(),
                now,
            );
            return;
        }

        if req.to_tag().is_some() {
            self.in_dialog(id, req, top_route, dialog_flow, now).await;
            return;
        }
        if !matches!(method, "INVITE" | "MESSAGE") {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 481, "Call/Transaction Does Not Exist", now);
            return;
        }
        self.initial(auth, id, req, source, now).await;
    }

    /// A request inside a dialog: it must come through our Record-Route, with its token, and
    /// goes into the flow the dialog's Route names or to the next hop its Route or
    /// Request-URI names.
    async fn in_dialog(
        &self,
        id: u64,
        req: Msg,
        top_route: Option<String>,
        dialog_flow: Option<Hop>,
        now: Instant,
    ) {
        let call_id = req.call_id().unwrap_or("");
        if !top_route.is_some_and(|u| self.route_token_valid(&u, call_id)) {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 403, "Not Routed Through This Proxy", now);
            return;
        }
        if let Some(flow) = dialog_flow {
            let mut st = self.state.lock();
            if self.flows.transport_of(flow.addr) != Some(flow.transport) {
                // RFC 5626 §5.3: the flow named is gone.
                self.reply(&mut st, id, 430, "Flow Failed", now);
                return;
            }
            let target = vec![Target::hop(flow)];
            self.start_call(&mut st, id, &req, target, false, CallLog::default(), now);
            return;
        }
        let Some(dest) = next_hop(&req) else {
            let mut st = self.state.lock();
            self.reply(&mut st, id, 404, "No Route To Target", now);
            return;
        };
        let hop = match next_hop_transport(&req) {
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
        let mut st = self.state.lock();
        let target = vec![Target::hop(hop)];
        self.start_call(&mut st, id, &req, target, false, CallLog::default(), now);
    }
}
