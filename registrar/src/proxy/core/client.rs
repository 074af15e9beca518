//! Client transactions: one per branch (and per CANCEL), and the responses they receive.

use super::{Action as Out, Branch, Core, Hop, TxKey};
use crate::message::headers::via_target;
use crate::message::owned::response_to;
use crate::message::{Msg, Start};
use crate::transaction::machine::{Action, Kind, Machine, State};
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
    key: TxKey,
    /// The request as sent: CANCEL, the ACK of a failure and a 408 are built from it; only its
    /// start line is kept once a non-INVITE is completed (Timer K).
    pub(super) req: Msg,
    /// The request encoded, for retransmissions (none once a final response arrived).
    data: Bytes,
    pub(super) dest: Hop,
    pub(super) call: Option<u64>,
    pub(super) provisional: bool,
    pub(super) cancel: Cancel,
    pub(super) trunk: Option<String>,
    pub(super) auth_tried: bool,
    /// The deadline queued in the timer wheel for it, if any.
    pub(super) armed: Option<Instant>,
}

pub(super) fn client_key(branch: &str, method: &str) -> String {
    [branch, method].join("|")
}

impl Core {
    /// Starts a client transaction sending `branch` (for `call`, if any); its id.
    pub(super) fn new_client(&mut self, branch: Branch, call: Option<u64>, now: Instant) -> u64 {
        let Branch {
            req,
            dest,
            trunk,
            via_branch,
        } = branch;
        self.next += 1;
        let id = self.next;
        let method = req.method().unwrap_or("");
        let key = self.tx_key(&client_key(&via_branch, method));
        let (m, actions) = Machine::client(
            method == "INVITE",
            dest.transport != Transport::Udp,
            self.settings.timers,
            now,
        );
        let data = req.encode();
        self.client_keys.insert(key, id);
        self.clients.insert(
            id,
            Box::new(ClientTx {
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
            }),
        );
        self.client_actions(id, &actions, None, now);
        id
    }

    /// Carries out a client transaction's actions; `resp` is the response that caused them.
    pub(super) fn client_actions(
        &mut self,
        id: u64,
        actions: &[Action],
        mut resp: Option<Msg>,
        now: Instant,
    ) {
        for (i, a) in actions.iter().enumerate() {
            match *a {
                Action::Transmit => {
                    if let Some(c) = self.clients.get(&id) {
                        let (data, hop) = (c.data.clone(), c.dest);
                        self.send(data, hop);
                    }
                }
                Action::SendAck => {
                    if let (Some(c), Some(r)) = (self.clients.get(&id), resp.as_ref()) {
                        let (ack, hop) = (build_ack(&c.req, r).encode(), c.dest);
                        self.send(ack, hop);
                    }
                }
                Action::Deliver(_) => {
                    // The response moves on to the call (copied only if an ACK is still to
                    // be built from it; the machine ACKs first).
                    let ack_later = actions[i + 1..].contains(&Action::SendAck);
                    let r = if ack_later { resp.clone() } else { resp.take() };
                    if let Some(r) = r {
                        self.branch_response(id, r, now);
                    }
                }
                Action::Timeout => {
                    let timeout = self.clients.get(&id).map(|c| {
                        let mut r = response_to(&c.req, 408, "Request Timeout", None);
                        r.headers.retain(|(n, _)| n != "Record-Route");
                        r
                    });
                    if let Some(r) = timeout {
                        self.branch_response(id, r, now);
                    }
                }
                Action::Terminated => {
                    if let Some(c) = self.clients.remove(&id) {
                        self.client_keys.remove(&c.key);
                    }
                    return;
                }
                Action::AbsorbAck => {}
            }
        }
        self.schedule_client(id);
    }

    /// A response from downstream: to its client transaction, or (a 2xx retransmission after
    /// the transaction ended, §16.7 step 5) forwarded statelessly when the top Via is ours.
    pub(in crate::proxy) fn on_response(&mut self, mut resp: Msg, now: Instant) {
        let Some(via) = resp.top_via() else { return };
        let Some((_, method)) = resp.cseq() else {
            return;
        };
        let key = self.tx_key(&client_key(via.branch().unwrap_or(""), method));
        if let Some(id) = self.client_keys.get(&key).copied() {
            let status = resp.status().unwrap_or(500);
            let actions = self
                .clients
                .get_mut(&id)
                .map(|c| c.m.on_response(status, now))
                .unwrap_or_default();
            self.client_actions(id, &actions, Some(resp), now);
            self.completed(id);
            return;
        }
        let ours = via
            .param("branch")
            .flatten()
            .is_some_and(|b| b.starts_with("z9hG4bK-sb"))
            && via_target(&via).is_some();
        if ours && resp.status().is_some_and(|s| (200..300).contains(&s)) {
            resp.pop_first("Via");
            if let Some(addr) = resp.top_via().as_ref().and_then(via_target) {
                self.out.push(Out::SendTo {
                    data: resp.encode(),
                    addr,
                });
            }
        } else {
            self.out.push(Out::Dropped("stray_response"));
        }
    }

    /// A completed transaction (Timer D or K running) only absorbs retransmitted responses
    /// (and ACKs a failure again, from the INVITE): what it kept to send is freed.
    fn completed(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.m.state() != State::Completed {
            return;
        }
        c.data = Bytes::new();
        if c.m.kind() == Kind::ClientNonInvite {
            c.req.headers = Vec::new();
            c.req.body = Bytes::new();
        }
    }
}

/// The ACK for a branch's non-2xx final response (§17.1.1.3): the To of the response, the
/// rest as the INVITE had it.
fn build_ack(req: &Msg, resp: &Msg) -> Msg {
    let max_forwards = req.header("Max-Forwards").unwrap_or("70");
    same_branch(req, "ACK", resp.header("To"), max_forwards)
}

/// A request on an INVITE's branch, as CANCEL (§9.1) and the ACK of a failure (§17.1.1.3)
/// are: the INVITE's Request-URI, top Via, Route, From, Call-ID and CSeq number, with this
/// method, To (the INVITE's when `None`) and Max-Forwards.
pub(super) fn same_branch(req: &Msg, method: &str, to: Option<&str>, max_forwards: &str) -> Msg {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = req.first_element("Via") {
        headers.push(("Via".into(), v.to_string()));
    }
    for (n, v) in &req.headers {
        if matches!(n.as_ref(), "Route" | "From" | "Call-ID") || (n == "To" && to.is_none()) {
            headers.push((n.clone(), v.clone()));
        }
    }
    if let Some(to) = to {
        headers.push(("To".into(), to.to_string()));
    }
    headers.push(("Max-Forwards".into(), max_forwards.to_string()));
    let n = req.cseq().map_or(1, |c| c.0);
    headers.push(("CSeq".into(), format!("{n} {method}")));
    Msg {
        start: Start::Request {
            method: method.to_string(),
            uri: req.uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{resp, INVITE};
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
