//! Calls: a request forked to its branches, the responses relayed and the best final one
//! chosen (§16.7), and the call log.

use super::client::Cancel;
use super::{Action, Branch, CallRecord, Challenge, Core, TimerKey};
use crate::message::{Msg, Start};
use crate::transaction::machine::State as TxState;
use std::time::Instant;

pub(super) struct Call {
    pub(super) server: u64,
    pub(super) invite: bool,
    pub(super) branches: Vec<u64>,
    outstanding: usize,
    pub(super) answered: bool,
    pub(super) finished: bool,
    pub(super) cancelled: bool,
    pub(super) timed_out: bool,
    best: Option<Msg>,
    pub(super) log: CallLog,
}

/// Who called whom, through which route: the call-log line and `sip_calls_total`.
#[derive(Clone, Debug, Default)]
pub(in crate::proxy) struct CallLog {
    pub(in crate::proxy) from: String,
    pub(in crate::proxy) to: String,
    pub(in crate::proxy) number: String,
    pub(in crate::proxy) route: String,
    pub(in crate::proxy) call_id: String,
}

/// §16.7 step 6: the best of the final responses received (lowest class; 6xx first).
fn better(candidate: &Msg, current: Option<&Msg>) -> bool {
    let rank = |m: &Msg| {
        let s = m.status().unwrap_or(500);
        match s / 100 {
            6 => 0,
            3 => 1,
            4 if s != 408 => 2,
            5 | 4 => 3,
            _ => 4,
        }
    };
    match current {
        None => true,
        Some(c) => rank(candidate) < rank(c),
    }
}

impl Core {
    /// Creates the call of server transaction `server` and sends its branches (built by the
    /// driver: our Via on top, Record-Route when wanted); an INVITE gets its ring timeout.
    pub(in crate::proxy) fn start_call(
        &mut self,
        server: u64,
        branches: Vec<Branch>,
        log: CallLog,
        now: Instant,
    ) {
        // Gone meanwhile, or cancelled (answered 487) while the driver was routing it.
        let live = self
            .servers
            .get(&server)
            .is_some_and(|s| matches!(s.m.state(), TxState::Proceeding | TxState::Trying));
        if !live {
            return;
        }
        self.next += 1;
        let call_id = self.next;
        let invite = branches
            .first()
            .is_some_and(|b| b.req.method() == Some("INVITE"));
        self.calls.insert(
            call_id,
            Call {
                server,
                invite,
                branches: Vec::with_capacity(branches.len()),
                outstanding: branches.len(),
                answered: false,
                finished: false,
                cancelled: false,
                timed_out: false,
                best: None,
                log,
            },
        );
        if let Some(s) = self.servers.get_mut(&server) {
            s.call = Some(call_id);
        }
        for branch in branches {
            let b = self.new_client(branch, Some(call_id), now);
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.branches.push(b);
            }
        }
        if invite {
            let at = now + self.settings.ring_timeout;
            self.schedule(TimerKey::Ring(call_id), at);
        }
    }

    /// A response from a branch, for the TU (the call), with our Via still on top.
    pub(super) fn branch_response(&mut self, id: u64, resp: Msg, now: Instant) {
        let status = resp.status().unwrap_or(500);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(call_id) = c.call else { return };
        if status < 200 {
            c.provisional = true;
            if c.cancel == Cancel::Pending {
                self.cancel_branch(id, now);
            }
        } else if matches!(status, 401 | 407) && !c.auth_tried && c.trunk.is_some() {
            // A trunk's challenge: the driver answers it once with the registration's
            // credentials; the branch stays outstanding until it has.
            c.auth_tried = true;
            self.out.push(Action::Challenged(Challenge {
                branch: id,
                call: call_id,
                req: c.req.clone(),
                resp,
                dest: c.dest,
                registration: c.trunk.clone().unwrap_or_default(),
            }));
            return;
        }
        self.relay_branch_response(id, call_id, resp, now);
    }

    /// The driver's answer to a [`Challenge`]: the retry (a new branch, same CSeq), or none
    /// (the challenge stands as the branch's final response).
    pub(in crate::proxy) fn reauth(
        &mut self,
        challenge: Challenge,
        retry: Option<Msg>,
        now: Instant,
    ) {
        let Challenge {
            branch: id,
            call: call_id,
            resp,
            dest,
            registration,
            ..
        } = challenge;
        let Some(retry) = retry else {
            self.relay_branch_response(id, call_id, resp, now);
            return;
        };
        let branch = Branch::new(retry, dest, Some(registration));
        let new = self.new_client(branch, Some(call_id), now);
        if let Some(n) = self.clients.get_mut(&new) {
            n.auth_tried = true;
        }
        let mut cancel_new = false;
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.branches.push(new);
            call.outstanding += 1;
            cancel_new = call.cancelled || call.answered || call.timed_out;
        }
        if cancel_new {
            self.cancel_branch(new, now);
        }
        self.branch_done(call_id, None, now);
    }

    /// A branch's response relayed or kept (§16.7): `id` is the branch, left out when the
    /// others are cancelled.
    fn relay_branch_response(&mut self, id: u64, call_id: u64, mut resp: Msg, now: Instant) {
        let status = resp.status().unwrap_or(500);
        resp.pop_first("Via");
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let server = call.server;
        if status == 100 {
            return;
        }
        if status < 200 {
            if !call.finished {
                self.respond(server, resp, now);
            }
            return;
        }
        if status < 300 {
            self.answered(id, call_id, resp, now);
            return;
        }
        if status >= 600 && !call.answered && call.invite {
            let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
            for b in others {
                self.cancel_branch(b, now);
            }
        }
        self.branch_done(call_id, Some(resp), now);
    }

    /// A 2xx from branch `id`: relayed; the first one ends the call and cancels the other
    /// branches of an INVITE.
    fn answered(&mut self, id: u64, call_id: u64, resp: Msg, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let server = call.server;
        let status = resp.status().unwrap_or(200);
        let first = !call.answered;
        call.answered = true;
        call.finished = true;
        let invite = call.invite;
        let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
        if first {
            // Nothing logs the call after its first 2xx: the log moves out.
            let log = std::mem::take(&mut call.log);
            self.log_call(log, invite, status, "answered");
        }
        self.respond(server, resp, now);
        if first && invite {
            for b in others {
                self.cancel_branch(b, now);
            }
        }
        if first {
            self.branch_done(call_id, None, now);
        }
    }

    /// A branch finished with `resp` (None: answered, or replaced by an authenticated retry).
    pub(super) fn branch_done(&mut self, call_id: u64, resp: Option<Msg>, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.outstanding = call.outstanding.saturating_sub(1);
        if let Some(r) = resp {
            if better(&r, call.best.as_ref()) {
                call.best = Some(r);
            }
        }
        if call.outstanding > 0 || call.finished {
            if call.finished && call.outstanding == 0 {
                self.calls.remove(&call_id);
            }
            return;
        }
        // Every branch is done: nothing refers to the call any more.
        let mut call = self.calls.remove(&call_id).expect("present");
        self.finish(&mut call, now);
    }

    /// The final response of a call whose branches are all done without a 2xx: 487 (sent
    /// when the CANCEL came), 480 after the ring timeout, else the best one received (503
    /// becomes 500), or 408 when none was.
    fn finish(&mut self, call: &mut Call, now: Instant) {
        call.finished = true;
        let (status, reason) = if call.cancelled {
            (487, "Request Terminated")
        } else if call.timed_out {
            (480, "No Answer")
        } else {
            (0, "")
        };
        let best = call.best.take();
        let outcome = match (&best, status) {
            (_, 487) => "cancelled",
            (_, 480) => "no_answer",
            (Some(b), _) if b.status() == Some(408) => "no_answer",
            (Some(_), _) => "failed",
            (None, _) => "no_answer",
        };
        let code = if status != 0 {
            status
        } else {
            best.as_ref().and_then(Msg::status).unwrap_or(408)
        };
        self.log_call(std::mem::take(&mut call.log), call.invite, code, outcome);
        if call.cancelled {
            return;
        }
        match best {
            Some(mut b) if status == 0 => {
                if matches!(b.status(), Some(503)) {
                    b.start = Start::Response {
                        status: 500,
                        reason: "Server Internal Error".into(),
                    };
                }
                self.respond(call.server, b, now);
            }
            _ if status != 0 => self.reply(call.server, status, reason, now),
            _ => self.reply(call.server, 408, "Request Timeout", now),
        }
    }

    fn log_call(&mut self, log: CallLog, invite: bool, status: u16, outcome: &'static str) {
        if log.call_id.is_empty() {
            return; // a request inside a dialog, not a call
        }
        self.out.push(Action::Call(CallRecord {
            log,
            invite,
            status,
            outcome,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::resp;
    use super::*;

    #[test]
    fn best_response_prefers_6xx_then_3xx_then_4xx_over_408_and_5xx() {
        assert!(better(&resp(486), None));
        assert!(better(&resp(486), Some(&resp(503))));
        assert!(better(&resp(486), Some(&resp(408))));
        assert!(better(&resp(302), Some(&resp(486))));
        assert!(better(&resp(603), Some(&resp(302))));
        assert!(!better(&resp(500), Some(&resp(404))));
    }
}
