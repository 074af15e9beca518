//! Server transactions: the caller's side of a request, and the responses sent through it.

use super::core::{new_tag, Hop, Inner, State};
use crate::message::headers::via_target;
use crate::message::headers::Via;
use crate::message::owned::response_to;
use crate::message::Msg;
use crate::transaction::machine::{Action, Machine, State as TxState};
use bytes::Bytes;
use std::time::Instant;
use switchboard_crds::common::Transport;

pub(super) struct ServerTx {
    pub(super) m: Machine,
    key: String,
    /// The request as received (top Via with received/rport).
    pub(super) req: Msg,
    pub(super) reply_to: Hop,
    last: Option<Bytes>,
    pub(super) call: Option<u64>,
    pub(super) to_tag: String,
    /// The deadline queued in the timer heap for it, if any.
    pub(super) armed: Option<Instant>,
}

pub(super) fn server_key(via: &Via, method: &str) -> String {
    let method = if method == "ACK" { "INVITE" } else { method };
    format!(
        "{}|{}:{}|{}",
        via.branch().unwrap_or(""),
        via.host,
        via.port.unwrap_or(5060),
        method
    )
}

impl Inner {
    pub(super) fn new_server(&self, st: &mut State, req: &Msg, reply_to: Hop) -> u64 {
        st.next += 1;
        let id = st.next;
        let via = req.top_via().expect("checked");
        let key = server_key(&via, req.method().unwrap_or(""));
        let invite = req.method() == Some("INVITE");
        st.server_keys.insert(key.clone(), id);
        st.servers.insert(
            id,
            ServerTx {
                m: Machine::server(
                    invite,
                    reply_to.transport != Transport::Udp,
                    self.settings.timers,
                ),
                key,
                req: response_headers(req),
                reply_to,
                last: None,
                call: None,
                to_tag: new_tag(),
                armed: None,
            },
        );
        id
    }

    /// Sends a response through a server transaction (it keeps it for retransmissions).
    pub(super) fn respond(&self, st: &mut State, id: u64, resp: Msg, now: Instant) {
        let Some(s) = st.servers.get_mut(&id) else {
            // The transaction is gone (a 2xx retransmission after Timer L): stateless.
            if let Some(to) = resp.top_via().as_ref().and_then(via_target) {
                self.send(&resp.encode(), self.hop(to));
            }
            return;
        };
        let status = resp.status().unwrap_or(500);
        let data = resp.encode();
        let actions = s.m.on_send(status, now);
        if actions.contains(&Action::Transmit) {
            s.last = Some(data);
        }
        self.server_actions(st, id, &actions, now);
        // Accepted (a 2xx went out): retransmitted INVITEs are absorbed and the 2xx's own
        // retransmissions are relayed as they come; nothing to keep.
        if let Some(s) = st.servers.get_mut(&id) {
            if s.m.state() == TxState::Accepted {
                s.last = None;
            }
            if status >= 200 {
                // Final: no response is built from the request any more.
                s.req.headers = Vec::new();
            }
        }
    }

    /// A locally generated response to the server transaction's request.
    pub(super) fn reply(&self, st: &mut State, id: u64, status: u16, reason: &str, now: Instant) {
        let Some(s) = st.servers.get(&id) else { return };
        let tag = (status > 100).then_some(s.to_tag.as_str());
        let resp = response_to(&s.req, status, reason, tag);
        self.respond(st, id, resp, now);
    }

    pub(super) fn reply_with(
        &self,
        st: &mut State,
        id: u64,
        mut resp: Msg,
        extra: Vec<(String, String)>,
    ) {
        resp.headers.extend(extra);
        self.respond(st, id, resp, Instant::now());
    }

    pub(super) fn server_actions(
        &self,
        st: &mut State,
        id: u64,
        actions: &[Action],
        _now: Instant,
    ) {
        for a in actions {
            match a {
                Action::Transmit => {
                    if let Some(s) = st.servers.get(&id) {
                        if let Some(d) = &s.last {
                            self.send(d, s.reply_to);
                        }
                    }
                }
                Action::Terminated => {
                    if let Some(s) = st.servers.remove(&id) {
                        st.server_keys.remove(&s.key);
                        if let Some(c) = s.call {
                            if st.calls.get(&c).is_some_and(|c| c.finished) {
                                st.calls.remove(&c);
                            }
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
        self.schedule_tx(st, id);
    }
}

/// What a server transaction keeps of its request: the start line and the headers a response
/// copies (§8.2.6.2), no body.
fn response_headers(req: &Msg) -> Msg {
    Msg {
        start: req.start.clone(),
        headers: req
            .headers
            .iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "Via" | "From" | "To" | "Call-ID" | "CSeq" | "Record-Route"
                )
            })
            .cloned()
            .collect(),
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::client_key;
    use super::super::core::fixtures::INVITE;
    use super::*;

    #[test]
    fn keys_match_retransmissions_ack_and_cancel_to_the_invite() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let via = req.top_via().unwrap();
        assert_eq!(server_key(&via, "ACK"), server_key(&via, "INVITE"));
        assert_ne!(server_key(&via, "CANCEL"), server_key(&via, "INVITE"));
        assert_eq!(client_key("z9hG4bK-sb1", "INVITE"), "z9hG4bK-sb1|INVITE");
    }
}
