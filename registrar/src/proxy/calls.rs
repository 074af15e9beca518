//! Calls: a request forked to its branches, the responses relayed and the best final one
//! chosen (§16.7), and the call log.

use super::client::Cancel;
use super::core::{new_branch, Hop, Inner, State, TimerKey};
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

/// Where one branch of a call goes.
#[derive(Clone, Debug)]
pub(super) struct Target {
    /// The Request-URI to set, or None to keep the request's.
    pub(super) uri: Option<String>,
    /// The next hop.
    pub(super) hop: Hop,
    /// The outbound registration when the branch goes to a trunk (answers its challenges).
    pub(super) trunk: Option<String>,
    /// A Route to push on top: the sibling replica that holds the target's flow.
    pub(super) route: Option<String>,
}

impl Target {
    /// A branch to `hop`, the Request-URI kept.
    pub(super) fn hop(hop: Hop) -> Target {
        Target {
            uri: None,
            hop,
            trunk: None,
            route: None,
        }
    }
}

/// Who called whom, through which route: the call-log line and `sip_calls_total`.
#[derive(Clone, Debug, Default)]
pub(super) struct CallLog {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) number: String,
    pub(super) route: String,
    pub(super) call_id: String,
}

impl CallLog {
    /// Counts the call by `outcome` and logs its line (with the reason of a refusal).
    pub(super) fn record(
        &self,
        metrics: &crate::metrics::Metrics,
        status: u16,
        outcome: &str,
        reason: Option<&str>,
    ) {
        metrics.calls.with_label_values(&[outcome]).inc();
        tracing::info!(
            call_id = %self.call_id,
            from = %self.from,
            to = %self.to,
            number = %self.number,
            route = %self.route,
            status,
            outcome,
            reason,
            "call"
        );
    }
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

impl Inner {
    /// Creates the call and its branches.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_call(
        &self,
        st: &mut State,
        server: u64,
        req: &Msg,
        targets: Vec<Target>,
        record_route: bool,
        log: CallLog,
        now: Instant,
    ) {
        if !st.servers.contains_key(&server) {
            return; // cancelled and gone meanwhile
        }
        let cancelled = st
            .servers
            .get(&server)
            .is_some_and(|s| s.m.state() != TxState::Proceeding && s.m.state() != TxState::Trying);
        if cancelled {
            return;
        }
        // The caller's side, which the bottom Record-Route faces.
        let caller = st.servers.get(&server).map(|s| s.reply_to);
        st.next += 1;
        let call_id = st.next;
        let invite = req.method() == Some("INVITE");
        st.calls.insert(
            call_id,
            Call {
                server,
                invite,
                branches: Vec::new(),
                outstanding: targets.len(),
                answered: false,
                finished: false,
                cancelled: false,
                timed_out: false,
                best: None,
                log,
            },
        );
        if let Some(s) = st.servers.get_mut(&server) {
            s.call = Some(call_id);
        }
        for Target {
            uri,
            hop: dest,
            trunk,
            route,
        } in targets
        {
            let mut fwd = req.clone();
            if let Some(u) = uri {
                fwd.set_uri(u);
            }
            if let Some(r) = route {
                fwd.push_front("Route", r);
            }
            if let (true, Some(caller)) = (record_route, caller) {
                let call = req.call_id().unwrap_or("");
                let (bottom, top) = self.record_routes(call, caller, dest, trunk.is_some());
                fwd.push_front("Record-Route", bottom);
                if let Some(rr) = top {
                    fwd.push_front("Record-Route", rr);
                }
            }
            fwd.push_front("Via", self.via(&new_branch(), dest.transport));
            let b = self.new_client(st, fwd, dest, Some(call_id), trunk, now);
            if let Some(c) = st.calls.get_mut(&call_id) {
                c.branches.push(b);
            }
        }
        if invite {
            let at = now + self.settings.ring_timeout;
            self.schedule(st, TimerKey::Ring(call_id), Some(at));
        }
    }

    /// A response from a branch, for the TU (the call), with our Via still on top.
    pub(super) fn branch_response(&self, st: &mut State, id: u64, mut resp: Msg, now: Instant) {
        let status = resp.status().unwrap_or(500);
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        let Some(call_id) = c.call else { return };
        let mut cancel_now = false;
        if status < 200 {
            c.provisional = true;
            cancel_now = c.cancel == Cancel::Pending;
        }
        // A trunk's challenge: answer it once with the registration's credentials.
        let retry = if matches!(status, 401 | 407) && !c.auth_tried {
            c.trunk.clone().and_then(|reg| {
                self.authenticated_retry(&c.req, &resp, &reg, c.dest.transport)
                    .map(|r| (r, reg, c.dest))
            })
        } else {
            None
        };
        if cancel_now {
            self.cancel_branch(st, id, now);
        }
        if let Some((retry, reg, dest)) = retry {
            if let Some(c) = st.clients.get_mut(&id) {
                c.auth_tried = true;
            }
            let new = self.new_client(st, retry, dest, Some(call_id), Some(reg), now);
            if let Some(n) = st.clients.get_mut(&new) {
                n.auth_tried = true;
            }
            let mut cancel_new = false;
            if let Some(call) = st.calls.get_mut(&call_id) {
                call.branches.push(new);
                call.outstanding += 1;
                cancel_new = call.cancelled || call.answered || call.timed_out;
            }
            if cancel_new {
                self.cancel_branch(st, new, now);
            }
            self.branch_done(st, call_id, None, now);
            return;
        }
        resp.pop_first("Via");
        let Some(call) = st.calls.get_mut(&call_id) else {
            return;
        };
        let server = call.server;
        if status == 100 {
            return;
        }
        if status < 200 {
            if !call.finished {
                self.respond(st, server, resp, now);
            }
            return;
        }
        if status < 300 {
            let first = !call.answered;
            call.answered = true;
            call.finished = true;
            let invite = call.invite;
            let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
            if first {
                self.log_call(call, status, "answered");
            }
            self.respond(st, server, resp, now);
            if first && invite {
                for b in others {
                    self.cancel_branch(st, b, now);
                }
            }
            if first {
                self.branch_done(st, call_id, None, now);
            }
            return;
        }
        if status >= 600 && !call.answered && call.invite {
            let others: Vec<u64> = call.branches.iter().copied().filter(|&b| b != id).collect();
            for b in others {
                self.cancel_branch(st, b, now);
            }
        }
        self.branch_done(st, call_id, Some(resp), now);
    }

    /// A branch finished with `resp` (None: answered, or replaced by an authenticated retry).
    pub(super) fn branch_done(
        &self,
        st: &mut State,
        call_id: u64,
        resp: Option<Msg>,
        now: Instant,
    ) {
        let Some(call) = st.calls.get_mut(&call_id) else {
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
                st.calls.remove(&call_id);
            }
            return;
        }
        call.finished = true;
        let server = call.server;
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
        self.log_call(call, code, outcome);
        // Every branch is done: nothing refers to the call any more.
        let call = st.calls.remove(&call_id).expect("present");
        if call.cancelled {
            // The 487 went out when the CANCEL came.
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
                self.respond(st, server, b, now);
            }
            _ => {
                let (s, r) = if status != 0 {
                    (status, reason)
                } else {
                    (408, "Request Timeout")
                };
                self.reply(st, server, s, r, now);
            }
        }
    }

    fn log_call(&self, call: &Call, status: u16, outcome: &str) {
        if call.log.call_id.is_empty() {
            return; // a request inside a dialog, not a call
        }
        if !call.invite {
            self.metrics
                .calls
                .with_label_values(&[if (200..300).contains(&status) {
                    "message_delivered"
                } else {
                    "message_failed"
                }])
                .inc();
            return;
        }
        call.log.record(&self.metrics, status, outcome, None);
    }
}

#[cfg(test)]
mod tests {
    use super::super::core::fixtures::resp;
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
