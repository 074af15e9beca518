//! Client transactions: one per branch (and per CANCEL), and the responses they receive.

use super::core::{Hop, Inner, State};
use crate::message::headers::via_target;
use crate::message::owned::response_to;
use crate::message::{Msg, Start};
use crate::transaction::machine::{Action, Machine};
use bytes::Bytes;
use std::time::Instant;
use switchboard_crds::common::Transport;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Cancel {
    No,
    /// Cancel once a provisional response arrives.
    Pending,
    Sent,
}

pub(super) struct ClientTx {
    pub(super) m: Machine,
    key: String,
    pub(super) req: Msg,
    data: Bytes,
    pub(super) dest: Hop,
    pub(super) call: Option<u64>,
    pub(super) provisional: bool,
    pub(super) cancel: Cancel,
    pub(super) trunk: Option<String>,
    pub(super) auth_tried: bool,
    /// The deadline queued in the timer heap for it, if any.
    pub(super) armed: Option<Instant>,
}

pub(super) fn client_key(branch: &str, method: &str) -> String {
    format!("{branch}|{method}")
}

impl Inner {
    pub(super) fn new_client(
        &self,
        st: &mut State,
        req: Msg,
        dest: Hop,
        call: Option<u64>,
        trunk: Option<String>,
        now: Instant,
    ) -> u64 {
        st.next += 1;
        let id = st.next;
        let branch = req
            .top_via()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let method = req.method().unwrap_or("").to_string();
        let key = client_key(&branch, &method);
        let (m, actions) = Machine::client(
            method == "INVITE",
            dest.transport != Transport::Udp,
            self.settings.timers,
            now,
        );
        let data = req.encode();
        st.client_keys.insert(key.clone(), id);
        st.clients.insert(
            id,
            ClientTx {
                m,
                key,
                req,
                data,
                dest,
                call,
                provisional: false,
                cancel: Cancel::No,
                trunk,
                auth_tried: false,
                armed: None,
            },
        );
        self.client_actions(st, id, &actions, None, now);
        id
    }

    pub(super) fn client_actions(
        &self,
        st: &mut State,
        id: u64,
        actions: &[Action],
        resp: Option<&Msg>,
        now: Instant,
    ) {
        for a in actions {
            match *a {
                Action::Transmit => {
                    if let Some(c) = st.clients.get(&id) {
                        self.send(&c.data, c.dest);
                    }
                }
                Action::SendAck => {
                    if let (Some(c), Some(r)) = (st.clients.get(&id), resp) {
                        let ack = build_ack(&c.req, r);
                        self.send(&ack.encode(), c.dest);
                    }
                }
                Action::Deliver(_) => {
                    if let Some(r) = resp {
                        self.branch_response(st, id, r.clone(), now);
                    }
                }
                Action::Timeout => {
                    let timeout = st.clients.get(&id).map(|c| {
                        let mut r = response_to(&c.req, 408, "Request Timeout", None);
                        r.headers.retain(|(n, _)| n != "Record-Route");
                        r
                    });
                    if let Some(r) = timeout {
                        self.branch_response(st, id, r, now);
                    }
                }
                Action::Terminated => {
                    if let Some(c) = st.clients.remove(&id) {
                        st.client_keys.remove(&c.key);
                    }
                    return;
                }
                Action::AbsorbAck => {}
            }
        }
        self.schedule_tx(st, id);
    }

    pub(super) fn on_response(&self, mut resp: Msg) {
        let now = Instant::now();
        let Some(via) = resp.top_via() else { return };
        let Some((_, method)) = resp.cseq() else {
            return;
        };
        let key = client_key(via.branch().unwrap_or(""), &method);
        let mut st = self.state.lock();
        match st.client_keys.get(&key).copied() {
            Some(id) => {
                let status = resp.status().unwrap_or(500);
                let actions = st
                    .clients
                    .get_mut(&id)
                    .map(|c| c.m.on_response(status, now))
                    .unwrap_or_default();
                self.client_actions(&mut st, id, &actions, Some(&resp), now);
            }
            None => {
                // A 2xx retransmission after the client transaction ended (§16.7 step 5:
                // forwarded statelessly), when the top Via is ours.
                let ours = via
                    .param("branch")
                    .flatten()
                    .is_some_and(|b| b.starts_with("z9hG4bK-sb"))
                    && via_target(&via).is_some();
                if ours && resp.status().is_some_and(|s| (200..300).contains(&s)) {
                    resp.pop_first("Via");
                    if let Some(to) = resp.top_via().as_ref().and_then(via_target) {
                        self.send(&resp.encode(), self.hop(to));
                    }
                } else {
                    self.metrics
                        .dropped
                        .with_label_values(&["stray_response"])
                        .inc();
                }
            }
        }
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3).
fn build_ack(req: &Msg, resp: &Msg) -> Msg {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = req.header_list("Via").first() {
        headers.push(("Via".to_string(), v.clone()));
    }
    for (n, v) in &req.headers {
        if matches!(n.as_str(), "Route" | "From" | "Call-ID" | "Max-Forwards") {
            headers.push((n.clone(), v.clone()));
        }
    }
    if let Some(to) = resp.header("To") {
        headers.push(("To".into(), to.to_string()));
    }
    let n = req.cseq().map_or(1, |c| c.0);
    headers.push(("CSeq".into(), format!("{n} ACK")));
    Msg {
        start: Start::Request {
            method: "ACK".into(),
            uri: req.uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::fixtures::{resp, INVITE};
    use super::*;

    #[test]
    fn ack_for_a_failure_has_the_branch_the_to_tag_and_the_route() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let ack = build_ack(&req, &resp(486));
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.uri(), req.uri());
        assert_eq!(ack.header_list("Via").len(), 1, "only the top Via");
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK-sb1"));
        assert_eq!(ack.to_tag().as_deref(), Some("b"));
        assert_eq!(ack.header("CSeq"), Some("7 ACK"));
        assert_eq!(ack.header("Route"), Some("<sip:10.0.0.9;lr>"));
    }
}
