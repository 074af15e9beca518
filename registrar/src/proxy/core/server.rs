//! Server transactions: the caller's side of a request, a request arriving (ACK,
//! retransmission, CANCEL, Max-Forwards, Proxy-Require), and the responses sent through it.

use super::{tag_text, Action as Out, Core, Hop, TxKey};
use crate::message::check;
use crate::message::headers::{via_target, ViaRef};
use crate::message::owned::{response_to, Name};
use crate::message::Msg;
use crate::transaction::machine::{Action, Machine, State as TxState};
use bytes::Bytes;
use std::time::Instant;
use switchboard_crds::common::Transport;

pub(super) struct ServerTx {
    pub(super) m: Machine,
    key: TxKey,
    /// What a response copies of the request as received (top Via with received/rport), until
    /// the final response: nothing builds one from it after that.
    req: Option<Box<Msg>>,
    pub(super) reply_to: Hop,
    last: Option<Bytes>,
    pub(super) call: Option<u64>,
    /// The To tag of our own responses (see [`tag_text`]), written out only when one is sent.
    tag: u64,
    /// The deadline queued in the timer wheel for it, if any.
    pub(super) armed: Option<Instant>,
}

/// What a request's top Via gives its server transaction's key (RFC 3261 §17.2.3: the branch
/// and the sent-by, host lower-cased), read before the driver rewrites that Via; the method
/// completes it ([`server_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::proxy) struct ViaKey(String);

impl ViaKey {
    /// The key text of `via`: `branch|host:port|`.
    pub(in crate::proxy) fn of(via: &ViaRef<'_>) -> ViaKey {
        let branch = via.branch().unwrap_or("");
        // Built on every request, so without format!.
        let mut k = String::with_capacity(branch.len() + via.host.len() + 16);
        k.push_str(branch);
        k.push('|');
        k.extend(via.host.chars().map(|c| c.to_ascii_lowercase()));
        k.push(':');
        k.push_str(itoa::Buffer::new().format(via.port.unwrap_or(5060)));
        k.push('|');
        ViaKey(k)
    }
}

/// A server transaction's key text: its Via's part and the method (an ACK's is its INVITE's).
pub(super) fn server_key(via: &ViaKey, method: &str) -> String {
    let method = if method == "ACK" { "INVITE" } else { method };
    [via.0.as_str(), method].concat()
}

/// What became of a request handed to [`Core::request`].
#[derive(Debug)]
pub(in crate::proxy) enum Arrival {
    /// The core dealt with it: absorbed, answered, or a CANCEL.
    Done,
    /// An ACK outside any transaction (for a 2xx): the driver relays it statelessly.
    Stateless(Msg),
    /// A new request, its server transaction created (100 Trying sent for an INVITE) and
    /// Max-Forwards decremented: the driver routes it and starts its call or answers it.
    Route(u64, Msg),
}

impl Core {
    /// A request from the caller whose top Via (`top`, as received) has been given its
    /// `received`/`rport`; responses go to `reply_to`. Call-ID, CSeq and its method were
    /// checked by the driver.
    pub(in crate::proxy) fn request(
        &mut self,
        mut req: Msg,
        top: &ViaKey,
        reply_to: Hop,
        now: Instant,
    ) -> Arrival {
        let method = req.method().unwrap_or("");
        let key = self.tx_key(&server_key(top, method));
        if method == "ACK" {
            return self.ack(req, key, now);
        }
        if self.retransmitted(key, now) {
            return Arrival::Done;
        }
        if method == "CANCEL" {
            self.on_cancel(&req, top, reply_to, now);
            return Arrival::Done;
        }
        let invite = method == "INVITE";
        let id = self.new_server(&req, key, reply_to);
        if invite {
            self.reply(id, 100, "Trying", now);
        }
        if !self.validate(id, &mut req, now) {
            return Arrival::Done;
        }
        Arrival::Route(id, req)
    }

    /// ACK: for a non-2xx it belongs to the INVITE server transaction; for a 2xx it is
    /// relayed on its own.
    fn ack(&mut self, req: Msg, key: TxKey, now: Instant) -> Arrival {
        if let Some(&id) = self.server_keys.get(&key) {
            let absorbed = self.servers.get_mut(&id).map(|s| {
                let a = s.m.on_request(true, now);
                (
                    s.m.state() == TxState::Confirmed || a.contains(&Action::AbsorbAck),
                    a,
                )
            });
            if let Some((true, a)) = absorbed {
                self.server_actions(id, &a);
                return Arrival::Done;
            }
        }
        Arrival::Stateless(req)
    }

    /// A retransmission of a request in a live server transaction goes to that transaction
    /// (which answers again with its last response); true if it was one.
    fn retransmitted(&mut self, key: TxKey, now: Instant) -> bool {
        let Some(&id) = self.server_keys.get(&key) else {
            return false;
        };
        let a = self
            .servers
            .get_mut(&id)
            .map(|s| s.m.on_request(false, now))
            .unwrap_or_default();
        self.server_actions(id, &a);
        true
    }

    /// Max-Forwards (§16.3 step 3, decremented here) and Proxy-Require (step 5); false when
    /// the request was answered (483, 420).
    fn validate(&mut self, id: u64, req: &mut Msg, now: Instant) -> bool {
        let mf = req
            .header("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if mf == 0 {
            self.reply(id, 483, "Too Many Hops", now);
            return false;
        }
        req.set("Max-Forwards", (mf - 1).min(70).to_string());

        // RFC 4475 §3.3.5: this proxy implements no extension.
        let fields = req.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str()));
        let unknown = check::unsupported(fields, &["Proxy-Require"]);
        if unknown.is_empty() {
            return true;
        }
        let unsupported = unknown.join(", ");
        let extra = vec![("Unsupported".into(), unsupported)];
        self.reply_with(id, (420, "Bad Extension"), extra, now);
        false
    }

    /// A server transaction for `req`, under its key (see [`server_key`]: the caller has
    /// the top Via parsed already).
    pub(super) fn new_server(&mut self, req: &Msg, key: TxKey, reply_to: Hop) -> u64 {
        self.next += 1;
        let id = self.next;
        let invite = req.method() == Some("INVITE");
        self.server_keys.insert(key, id);
        self.servers.insert(
            id,
            Box::new(ServerTx {
                m: Machine::server(
                    invite,
                    reply_to.transport != Transport::Udp,
                    self.settings.timers,
                ),
                key,
                req: Some(Box::new(response_headers(req))),
                reply_to,
                last: None,
                call: None,
                tag: rand::random(),
                armed: None,
            }),
        );
        id
    }

    /// Sends a response through a server transaction (it keeps it for retransmissions).
    pub(super) fn respond(&mut self, id: u64, resp: Msg, now: Instant) {
        let Some(s) = self.servers.get_mut(&id) else {
            // The transaction is gone (a 2xx retransmission after Timer L): stateless.
            if let Some(addr) = resp.top_via().as_ref().and_then(via_target) {
                self.out.push(Out::SendTo {
                    data: resp.encode(),
                    addr,
                });
            }
            return;
        };
        let status = resp.status().unwrap_or(500);
        let data = resp.encode();
        let actions = s.m.on_send(status, now);
        if actions.contains(&Action::Transmit) {
            s.last = Some(data);
        }
        self.server_actions(id, &actions);
        // Accepted (a 2xx went out): retransmitted INVITEs are absorbed and the 2xx's own
        // retransmissions are relayed as they come; nothing to keep.
        if let Some(s) = self.servers.get_mut(&id) {
            if s.m.state() == TxState::Accepted {
                s.last = None;
            }
            if status >= 200 {
                // Final: no response is built from the request any more.
                s.req = None;
            }
        }
    }

    /// A locally generated response to the server transaction's request.
    pub(in crate::proxy) fn reply(&mut self, id: u64, status: u16, reason: &str, now: Instant) {
        let Some((s, req)) = self
            .servers
            .get(&id)
            .and_then(|s| Some((s, s.req.as_ref()?)))
        else {
            return;
        };
        let tag = (status > 100).then(|| tag_text(s.tag));
        let resp = response_to(req, status, reason, tag.as_deref());
        self.respond(id, resp, now);
    }

    /// A locally generated final response with these extra headers (a challenge, Unsupported,
    /// Retry-After).
    pub(in crate::proxy) fn reply_with(
        &mut self,
        id: u64,
        (status, reason): (u16, &str),
        extra: Vec<(Name, String)>,
        now: Instant,
    ) {
        let Some((s, req)) = self
            .servers
            .get(&id)
            .and_then(|s| Some((s, s.req.as_ref()?)))
        else {
            return;
        };
        let mut resp = response_to(req, status, reason, Some(&tag_text(s.tag)));
        resp.headers.extend(extra);
        self.respond(id, resp, now);
    }

    pub(super) fn server_actions(&mut self, id: u64, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Transmit => {
                    if let Some(s) = self.servers.get(&id) {
                        if let Some(d) = &s.last {
                            let (data, hop) = (d.clone(), s.reply_to);
                            self.send(data, hop);
                        }
                    }
                }
                Action::Terminated => {
                    if let Some(s) = self.servers.remove(&id) {
                        self.server_keys.remove(&s.key);
                        if let Some(c) = s.call {
                            if self.calls.get(&c).is_some_and(|c| c.finished) {
                                self.calls.remove(&c);
                            }
                        }
                    }
                    return;
                }
                _ => {}
            }
        }
        self.schedule_server(id);
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
                    n.as_ref(),
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
    use super::super::fixtures::INVITE;
    use super::*;

    #[test]
    fn keys_match_retransmissions_ack_and_cancel_to_the_invite() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let via = ViaKey::of(&req.top_via().unwrap());
        assert_eq!(server_key(&via, "ACK"), server_key(&via, "INVITE"));
        assert_ne!(server_key(&via, "CANCEL"), server_key(&via, "INVITE"));
        assert_eq!(client_key("z9hG4bK-sb1", "INVITE"), "z9hG4bK-sb1|INVITE");
    }
}
