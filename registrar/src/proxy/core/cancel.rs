//! Cancelling: a CANCEL from the caller, a branch's CANCEL, and the ring timeout.

use super::client::{same_branch, Cancel};
use super::server::{server_key, ViaKey};
use super::{Branch, Core, Hop};
use crate::message::Msg;
use crate::transaction::machine::State as TxState;
use std::time::Instant;

impl Core {
    /// A CANCEL from the caller (`top` its Via): 200 to it, 481 when its INVITE is unknown;
    /// the INVITE answered 487 and its branches cancelled, unless it was answered already.
    pub(super) fn on_cancel(&mut self, req: &Msg, top: &ViaKey, reply_to: Hop, now: Instant) {
        let invite_key = self.tx_key(&server_key(top, "INVITE"));
        let cancel_key = self.tx_key(&server_key(top, "CANCEL"));
        let cancel_id = self.new_server(req, cancel_key, reply_to);
        let Some(&inv) = self.server_keys.get(&invite_key) else {
            self.reply(cancel_id, 481, "Call/Transaction Does Not Exist", now);
            return;
        };
        self.reply(cancel_id, 200, "OK", now);
        let Some(call_id) = self.servers.get(&inv).and_then(|s| s.call) else {
            // Not routed yet: answer 487 now; the call is dropped when it is.
            self.reply(inv, 487, "Request Terminated", now);
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.answered || call.finished {
            return;
        }
        call.cancelled = true;
        let branches = call.branches.clone();
        for b in branches {
            self.cancel_branch(b, now);
        }
        self.reply(inv, 487, "Request Terminated", now);
    }

    /// Cancels an INVITE branch: now if it has had a provisional response, else once it has
    /// (§9.1).
    pub(super) fn cancel_branch(&mut self, id: u64, now: Instant) {
        let Some(c) = self.clients.get_mut(&id) else {
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
        let cancel = Branch::new(build_cancel(&c.req), c.dest, None);
        self.new_client(cancel, None, now);
    }

    /// The ring timeout of an INVITE call: every branch cancelled, the call ended (480) once
    /// they are done.
    pub(super) fn ring_timeout(&mut self, call_id: u64, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.finished || call.answered {
            return;
        }
        call.timed_out = true;
        let branches = call.branches.clone();
        for b in &branches {
            self.cancel_branch(*b, now);
        }
        // Branches that never answered anything cannot be cancelled: give up on them now.
        let silent: Vec<u64> = branches
            .into_iter()
            .filter(|b| self.clients.get(b).is_some_and(|c| !c.provisional))
            .collect();
        for b in silent {
            if let Some(c) = self.clients.get_mut(&b) {
                c.call = None;
            }
            self.branch_done(call_id, None, now);
        }
    }
}

/// The CANCEL for a branch's INVITE (§9.1): same Request-URI, top Via, Route, From, To,
/// Call-ID and CSeq number.
fn build_cancel(req: &Msg) -> Msg {
    same_branch(req, "CANCEL", None, "70")
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::INVITE;
    use super::*;
    use crate::proxy::routes::next_hop;

    #[test]
    fn cancel_matches_the_invite_branch() {
        let req = Msg::parse(INVITE.as_bytes()).unwrap();
        let c = build_cancel(&req);
        assert_eq!(c.method(), Some("CANCEL"));
        assert_eq!(c.header("CSeq"), Some("7 CANCEL"));
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bK-sb1"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(next_hop(&c), Some(("10.0.0.9:5060".parse().unwrap(), None)));
    }
}
