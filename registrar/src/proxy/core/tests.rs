//! Table tests of the sans-IO core: forking, §16.7 response choice, CANCEL, ring timeout,
//! retransmissions, the ACK of a non-2xx and Timers B/F, driven by messages and a fake clock
//! (the `Instant`s passed in), with no socket and no runtime.

use super::{Action, Arrival, Branch, CallLog, Challenge, Core, Hop, ProxySettings, ViaKey};
use crate::message::owned::{response_to, Msg};
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;

const CALLER: &str = "192.0.2.10:5060";

fn hop(addr: &str) -> Hop {
    Hop {
        addr: addr.parse().unwrap(),
        transport: Transport::Udp,
    }
}

/// A request from the caller (its Via already given `received`/`rport`).
fn from_caller(method: &str, cseq_method: &str) -> Msg {
    let text = format!(
        "{method} sip:1002@switchboard.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-caller;rport=5060;received=192.0.2.10\r\n\
         From: <sip:1001@switchboard.local>;tag=a\r\nTo: <sip:1002@switchboard.local>\r\n\
         Call-ID: c1\r\nCSeq: 7 {cseq_method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Msg::parse(text.as_bytes()).unwrap()
}

/// What the core sent, by hop, parsed back.
fn sent(actions: &[Action]) -> Vec<(Hop, Msg)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { data, hop } => Some((*hop, Msg::parse(data).unwrap())),
            _ => None,
        })
        .collect()
}

/// The statuses sent to the caller.
fn to_caller(actions: &[Action]) -> Vec<u16> {
    sent(actions)
        .into_iter()
        .filter(|(h, _)| *h == hop(CALLER))
        .filter_map(|(_, m)| m.status())
        .collect()
}

/// The requests of `method` sent to `to`.
fn requests_to(actions: &[Action], method: &str, to: &str) -> Vec<Msg> {
    sent(actions)
        .into_iter()
        .filter(|(h, m)| *h == hop(to) && m.method() == Some(method))
        .map(|(_, m)| m)
        .collect()
}

/// A proxy core with a call from the caller forked to `callees`: the core, the forwarded
/// requests (one per callee, our Via on top) and the start time.
struct Fork {
    core: Core,
    branches: Vec<Msg>,
    now: Instant,
}

impl Fork {
    fn new(method: &str, callees: &[&str]) -> Fork {
        Fork::with(ProxySettings::default(), method, callees, None)
    }

    fn with(settings: ProxySettings, method: &str, callees: &[&str], trunk: Option<&str>) -> Fork {
        let mut core = Core::new(settings);
        let now = Instant::now();
        let req = from_caller(method, method);
        let top = ViaKey::of(&req.top_via().unwrap());
        let Arrival::Route(id, req) = core.request(req, &top, hop(CALLER), now) else {
            panic!("a new request is routed");
        };
        let trying = to_caller(&core.take());
        assert_eq!(
            trying,
            if method == "INVITE" {
                vec![100]
            } else {
                vec![]
            }
        );
        let branches: Vec<Branch> = callees
            .iter()
            .enumerate()
            .map(|(i, to)| {
                let mut fwd = req.clone();
                let via = format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sb{i};rport");
                fwd.push_front("Via", via);
                Branch::new(fwd, hop(to), trunk.map(str::to_string))
            })
            .collect();
        let forwarded: Vec<Msg> = branches.iter().map(|b| b.req.clone()).collect();
        let log = CallLog {
            call_id: "c1".into(),
            ..CallLog::default()
        };
        core.start_call(id, branches, log, now);
        let out = core.take();
        for (to, fwd) in callees.iter().zip(&forwarded) {
            assert_eq!(requests_to(&out, method, to), vec![fwd.clone()], "forked");
        }
        Fork {
            core,
            branches: forwarded,
            now,
        }
    }

    /// Branch `i` answers `status`; the actions that follow.
    fn answer(&mut self, i: usize, status: u16) -> Vec<Action> {
        let resp = response_to(&self.branches[i], status, "X", Some(&format!("t{i}")));
        self.core.on_response(resp, self.now);
        self.core.take()
    }

    /// The caller sends `req`; what became of it and the actions that follow.
    fn caller_sends(&mut self, req: Msg) -> (Arrival, Vec<Action>) {
        let top = ViaKey::of(&req.top_via().unwrap());
        let arrival = self.core.request(req, &top, hop(CALLER), self.now);
        (arrival, self.core.take())
    }

    /// The clock moves on by `by`, in 100 ms steps (as the timer task would fire them).
    fn wait(&mut self, by: Duration) -> Vec<Action> {
        let end = self.now + by;
        let mut out = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            self.core.on_timers(self.now);
            out.extend(self.core.take());
        }
        out
    }

    fn call_records(actions: &[Action]) -> Vec<(u16, &'static str)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Call(r) => Some((r.status, r.outcome)),
                _ => None,
            })
            .collect()
    }
}

const A: &str = "192.0.2.21:5060";
const B: &str = "192.0.2.22:5060";
const C: &str = "192.0.2.23:5060";

#[test]
fn a_fork_relays_the_200_acks_the_486_and_cancels_the_branch_still_ringing() {
    let mut f = Fork::new("INVITE", &[A, B, C]);
    assert_eq!(to_caller(&f.answer(0, 180)), vec![180]);
    assert_eq!(to_caller(&f.answer(2, 180)), vec![180]);
    // A failure is kept for later, not relayed; its ACK goes to that branch only.
    let out = f.answer(1, 486);
    assert!(to_caller(&out).is_empty());
    assert_eq!(requests_to(&out, "ACK", B).len(), 1);
    // The 200 goes to the caller at once, without our Via; the ringing branch is cancelled.
    let out = f.answer(0, 200);
    let relayed: Vec<Msg> = sent(&out)
        .into_iter()
        .filter(|(h, _)| *h == hop(CALLER))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].status(), Some(200));
    assert_eq!(relayed[0].header_list("Via").len(), 1, "our Via popped");
    assert_eq!(
        relayed[0].top_via().unwrap().branch(),
        Some("z9hG4bK-caller")
    );
    assert_eq!(Fork::call_records(&out), vec![(200, "answered")]);
    let cancels = requests_to(&out, "CANCEL", C);
    assert_eq!(cancels.len(), 1);
    let cancel_via = cancels[0].top_via().unwrap();
    assert_eq!(
        cancel_via.branch(),
        Some("z9hG4bK-sb2"),
        "the INVITE's branch"
    );
    assert!(requests_to(&out, "CANCEL", B).is_empty(), "done already");
    assert!(
        requests_to(&out, "CANCEL", A).is_empty(),
        "the answering one"
    );
    // The cancelled branch's 487 is acknowledged and goes no further.
    let out = f.answer(2, 487);
    assert!(to_caller(&out).is_empty());
    assert_eq!(requests_to(&out, "ACK", C).len(), 1);
}

#[test]
fn when_every_branch_fails_the_best_response_is_chosen_by_section_16_7() {
    // Branch finals in arrival order → what the caller gets.
    let cases: &[(&[u16], u16)] = &[
        (&[486, 503], 486),
        (&[503, 486], 486),
        (&[408, 404], 404),
        (&[404, 302], 302),
        (&[302, 603], 603),
        (&[603, 302], 603),
        (&[408, 500], 408),
        (&[500, 408], 500),
        (&[503], 500), // never relayed as such (§16.7 step 6); logged as received
        (&[480, 486], 480),
    ];
    for &(finals, expected) in cases {
        let callees = &[A, B][..finals.len()];
        let mut f = Fork::new("INVITE", callees);
        let mut out = Vec::new();
        for (i, &status) in finals.iter().enumerate() {
            out = f.answer(i, status);
            if i + 1 < finals.len() {
                assert!(to_caller(&out).is_empty(), "{finals:?}: nothing yet");
            }
        }
        assert_eq!(to_caller(&out), vec![expected], "{finals:?}");
        let outcome = if expected == 408 {
            "no_answer"
        } else {
            "failed"
        };
        let logged = if finals == [503] { 503 } else { expected };
        assert_eq!(Fork::call_records(&out), vec![(logged, outcome)]);
        assert_eq!(f.core.load().2, 0, "{finals:?}: the call is over");
    }
}

#[test]
fn a_6xx_cancels_the_other_branches_and_wins() {
    let mut f = Fork::new("INVITE", &[A, B]);
    f.answer(1, 180);
    let out = f.answer(0, 603);
    assert_eq!(requests_to(&out, "CANCEL", B).len(), 1);
    assert!(to_caller(&out).is_empty(), "once every branch is done");
    let out = f.answer(1, 487);
    assert_eq!(to_caller(&out), vec![603]);
}

#[test]
fn a_cancel_from_the_caller_is_answered_and_cancels_every_branch() {
    let mut f = Fork::new("INVITE", &[A, B]);
    f.answer(0, 180);
    let (arrival, out) = f.caller_sends(from_caller("CANCEL", "CANCEL"));
    assert!(matches!(arrival, Arrival::Done));
    // 200 to the CANCEL, 487 to the INVITE.
    let answers: Vec<(u16, String)> = sent(&out)
        .into_iter()
        .filter(|(h, _)| *h == hop(CALLER))
        .map(|(_, m)| (m.status().unwrap(), m.cseq().unwrap().1.to_string()))
        .collect();
    assert_eq!(
        answers,
        vec![(200, "CANCEL".into()), (487, "INVITE".into())]
    );
    assert_eq!(requests_to(&out, "CANCEL", A).len(), 1, "ringing: now");
    assert!(requests_to(&out, "CANCEL", B).is_empty(), "silent: not yet");
    // The silent branch is cancelled once it rings (§9.1).
    let out = f.answer(1, 180);
    assert!(to_caller(&out).is_empty(), "the call is finished");
    assert_eq!(requests_to(&out, "CANCEL", B).len(), 1);
    // Their 487s are acknowledged; the caller got its 487 already.
    let mut out = f.answer(0, 487);
    out.extend(f.answer(1, 487));
    assert!(to_caller(&out).is_empty());
    assert_eq!(requests_to(&out, "ACK", A).len(), 1);
    assert_eq!(Fork::call_records(&out), vec![(487, "cancelled")]);
}

#[test]
fn a_cancel_for_an_unknown_invite_gets_481() {
    let mut core = Core::new(ProxySettings::default());
    let req = from_caller("CANCEL", "CANCEL");
    let top = ViaKey::of(&req.top_via().unwrap());
    core.request(req, &top, hop(CALLER), Instant::now());
    assert_eq!(to_caller(&core.take()), vec![481]);
}

#[test]
fn the_ring_timeout_cancels_the_branches_and_ends_the_call_480() {
    let settings = ProxySettings {
        ring_timeout: Duration::from_secs(10),
        ..ProxySettings::default()
    };
    let mut f = Fork::with(settings, "INVITE", &[A, B], None);
    f.answer(0, 180);
    let out = f.wait(Duration::from_secs(9));
    assert!(requests_to(&out, "CANCEL", A).is_empty(), "still ringing");
    let out = f.wait(Duration::from_secs(1));
    assert_eq!(requests_to(&out, "CANCEL", A).len(), 1);
    // The silent branch is given up at once; the ringing one ends with its 487.
    assert!(to_caller(&out).is_empty());
    let out = f.answer(0, 487);
    assert_eq!(to_caller(&out), vec![480]);
    assert_eq!(Fork::call_records(&out), vec![(480, "no_answer")]);
}

#[test]
fn a_retransmitted_invite_is_absorbed_and_gets_the_last_response_again() {
    let mut f = Fork::new("INVITE", &[A]);
    let (arrival, out) = f.caller_sends(from_caller("INVITE", "INVITE"));
    assert!(matches!(arrival, Arrival::Done));
    assert_eq!(to_caller(&out), vec![100]);
    assert!(
        requests_to(&out, "INVITE", A).is_empty(),
        "not forwarded again"
    );
    f.answer(0, 180);
    let (_, out) = f.caller_sends(from_caller("INVITE", "INVITE"));
    assert_eq!(to_caller(&out), vec![180]);
}

#[test]
fn a_completed_bye_answers_its_retransmissions_until_timer_j_and_absorbs_the_200s() {
    let mut f = Fork::new("BYE", &[A]);
    // Unanswered, the branch retransmits its request (Timer E).
    let out = f.wait(Duration::from_millis(500));
    assert_eq!(requests_to(&out, "BYE", A), vec![f.branches[0].clone()]);
    let out = f.answer(0, 200);
    let first = sent(&out);
    assert_eq!(to_caller(&out), vec![200]);
    // Completed: a retransmitted 200 from the callee is absorbed, the branch is not sent again.
    assert!(sent(&f.answer(0, 200)).is_empty());
    assert!(requests_to(&f.wait(Duration::from_secs(5)), "BYE", A).is_empty());
    // The caller's retransmission gets the same 200 again, until Timer J (64·T1).
    let (arrival, out) = f.caller_sends(from_caller("BYE", "BYE"));
    assert!(matches!(arrival, Arrival::Done));
    assert_eq!(sent(&out), first);
    assert_eq!(f.core.load(), (1, 0, 0), "the branch went with Timer K");
    f.wait(Duration::from_secs(28));
    assert_eq!(
        f.core.load(),
        (0, 0, 0),
        "Timer J ended the server transaction"
    );
}

#[test]
fn a_failure_is_acked_hop_by_hop_and_the_callers_ack_absorbed() {
    let mut f = Fork::new("INVITE", &[A]);
    let out = f.answer(0, 486);
    assert_eq!(to_caller(&out), vec![486]);
    let acks = requests_to(&out, "ACK", A);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.uri(), f.branches[0].uri());
    assert_eq!(ack.header_list("Via").len(), 1, "our Via only");
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bK-sb0"));
    assert_eq!(ack.header("CSeq"), Some("7 ACK"));
    assert_eq!(ack.to_tag().as_deref(), Some("t0"));
    // A retransmitted 486 is acknowledged again, not relayed again.
    let out = f.answer(0, 486);
    assert!(to_caller(&out).is_empty());
    assert_eq!(requests_to(&out, "ACK", A).len(), 1);
    // The caller's ACK for our 486 stays here.
    let (arrival, out) = f.caller_sends(from_caller("ACK", "ACK"));
    assert!(matches!(arrival, Arrival::Done));
    assert!(sent(&out).is_empty());
}

#[test]
fn an_ack_for_a_2xx_is_left_to_the_stateless_relay() {
    let mut f = Fork::new("INVITE", &[A]);
    f.answer(0, 200);
    let (arrival, out) = f.caller_sends(from_caller("ACK", "ACK"));
    assert!(matches!(arrival, Arrival::Stateless(m) if m.method() == Some("ACK")));
    assert!(sent(&out).is_empty());
}

#[test]
fn timers_b_and_f_end_a_silent_branch_with_408_to_the_caller() {
    for method in ["INVITE", "MESSAGE"] {
        let mut f = Fork::new(method, &[A]);
        // Retransmitted meanwhile (Timer A / E), over UDP.
        let out = f.wait(Duration::from_millis(31_900));
        assert!(requests_to(&out, method, A).len() >= 5, "{method}");
        assert!(to_caller(&out).is_empty(), "{method}");
        // 64·T1 = 32 s.
        let out = f.wait(Duration::from_millis(100));
        assert_eq!(to_caller(&out), vec![408], "{method}");
        if method == "INVITE" {
            assert_eq!(Fork::call_records(&out), vec![(408, "no_answer")]);
        }
    }
}

#[test]
fn max_forwards_zero_gets_483_and_is_not_routed() {
    let mut core = Core::new(ProxySettings::default());
    let mut req = from_caller("MESSAGE", "MESSAGE");
    req.set("Max-Forwards", "0".into());
    let top = ViaKey::of(&req.top_via().unwrap());
    let arrival = core.request(req, &top, hop(CALLER), Instant::now());
    assert!(matches!(arrival, Arrival::Done));
    assert_eq!(to_caller(&core.take()), vec![483]);
}

#[test]
fn a_trunks_challenge_is_retried_once_through_the_driver() {
    let mut f = Fork::with(ProxySettings::default(), "INVITE", &[A], Some("t/carrier"));
    let out = f.answer(0, 407);
    assert!(
        to_caller(&out).is_empty(),
        "not relayed while being answered"
    );
    assert_eq!(requests_to(&out, "ACK", A).len(), 1);
    let challenge = challenged(out);
    assert_eq!(challenge.registration, "t/carrier");
    let mut retry = challenge.req.clone();
    retry.pop_first("Via");
    retry.push_front(
        "Via",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sbretry;rport".into(),
    );
    retry.push_front("Proxy-Authorization", "Digest x".into());
    f.core.reauth(challenge, Some(retry.clone()), f.now);
    let out = f.core.take();
    assert_eq!(requests_to(&out, "INVITE", A), vec![retry.clone()]);
    // The retry's answer is the call's; a second challenge is relayed, not answered again.
    let resp = response_to(&retry, 407, "X", Some("t9"));
    f.core.on_response(resp, f.now);
    let out = f.core.take();
    assert_eq!(to_caller(&out), vec![407]);
}

#[test]
fn a_challenge_the_driver_cannot_answer_stands_as_the_branchs_response() {
    let mut f = Fork::with(ProxySettings::default(), "INVITE", &[A], Some("t/carrier"));
    let out = f.answer(0, 401);
    let challenge = challenged(out);
    f.core.reauth(challenge, None, f.now);
    assert_eq!(to_caller(&f.core.take()), vec![401]);
}

/// The challenge handed to the driver.
fn challenged(actions: Vec<Action>) -> Challenge {
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Challenged(c) => Some(c),
            _ => None,
        })
        .expect("handed to the driver")
}
