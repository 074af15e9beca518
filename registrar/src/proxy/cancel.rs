//! Cancelling: a CANCEL from the caller, a branch's CANCEL, and the ring timeout.

use super::client::Cancel;
use super::core::{Hop, Inner, State};
use super::server::server_key;
use crate::message::headers::Via;
use crate::message::{Msg, Start};
use crate::transaction::machine::State as TxState;
use bytes::Bytes;
use std::time::Instant;

impl Inner {
    pub(super) fn on_cancel(&self, req: Msg, top: &Via, reply_to: Hop, now: Instant) {
        let invite_key = server_key(top, "INVITE");
        let mut st = self.state.lock();
        let cancel_id = self.new_server(&mut st, &req, reply_to);
        let Some(&inv) = st.server_keys.get(&invite_key) else {
            self.reply(
                &mut st,
                cancel_id,
                481,
                "Call/Transaction Does Not Exist",
                now,
            );
            return;
        };
        self.reply(&mut st, cancel_id, 200, "OK", now);
        let Some(call_id) = st.servers.get(&inv).and_then(|s| s.call) else {
            // Not routed yet: answer 487 now; the call is dropped when it is.
            self.reply(&mut st, inv, 487, "Request Terminated", now);
            return;
        };
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        if call.answered || call.finished {
            return;
        }
        call.cancelled = true;
        let branches = call.branches.clone();
        for b in branches {
            self.cancel_branch(&mut st, b, now);
        }
        self.reply(&mut st, inv, 487, "Request Terminated", now);
    }

    pub(super) fn cancel_branch(&self, st: &mut State, id: u64, now: Instant) {
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        if c.req.method() != Some("INVITE") || c.cancel == Cancel::Sent {
            return;
        }
        if !matches!(c.m.state(), TxState::Calling | TxState::Proceeding) {
            return;
        }
        if !c.provisional {
            c.cancel = Cancel::Pending;
            return;
        }
        c.cancel = Cancel::Sent;
        let cancel = build_cancel(&c.req);
        let dest = c.dest;
        self.new_client(st, cancel, dest, None, None, now);
    }

    pub(super) fn ring_timeout(&self, st: &mut State, call_id: u64, now: Instant) {
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        if call.finished || call.answered {
            return;
        }
        call.timed_out = true;
        let branches = call.branches.clone();
        for b in &branches {
            self.cancel_branch(st, *b, now);
        }
        // Branches that never answered anything cannot be cancelled: give up on them now.
        let silent: Vec<u64> = branches
            .into_iter()
            .filter(|b| st.clients.get(b).is_some_and(|c| !c.provisional))
            .collect();
        for b in silent {
            if let Some(c) = st.clients.get_mut(&b) {
                c.call = None;
            }
            self.branch_done(st, call_id, None, now);
        }
    }
}

/// The CANCEL for a branch's INVITE (§9.1): same Request-URI, top Via, Route, From, To,
/// Call-ID and CSeq number.
fn build_cancel(req: &Msg) -> Msg {
    let mut headers = Vec::with_capacity(8);
    if let Some(v) = req.header_list("Via").first() {
        headers.push(("Via".to_string(), v.clone()));
    }
    for (n, v) in &req.headers {
        if matches!(n.as_str(), "Route" | "From" | "To" | "Call-ID") {
            headers.push((n.clone(), v.clone()));
        }
    }
    headers.push(("Max-Forwards".into(), "70".into()));
    let n = req.cseq().map_or(1, |c| c.0);
    headers.push(("CSeq".into(), format!("{n} CANCEL")));
    Msg {
        start: Start::Request {
            method: "CANCEL".into(),
            uri: req.uri().unwrap_or("").to_string(),
        },
        headers,
        body: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::fixtures::INVITE;
    use super::super::routes::next_hop;
    use super::*;

    #[test]
    fn cancel_matches_the_invite_branch() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let c = build_cancel(&req);
        assert_eq!(c.method(), Some("CANCEL"));
        assert_eq!(c.header("CSeq"), Some("7 CANCEL"));
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bK-sb1"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(next_hop(&c), Some("10.0.0.9:5060".parse().unwrap()));
    }
}
