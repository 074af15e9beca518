//! RFC 3261 §17 transaction state machines, pure: they hold a state and timers, take events
//! with the time as an argument, and answer with [`Action`]s. They never touch bytes or sockets;
//! the driver keeps the message to (re)transmit and does what the actions say. Virtual time in
//! the tests is just `Instant`s the test makes up.
//!
//! | kind | states | timers |
//! | --- | --- | --- |
//! | client INVITE (§17.1.1) | Calling → Proceeding → Completed → Terminated | A (retransmit, unreliable), B (64·T1 timeout), D (32 s unreliable, 0 reliable) |
//! | client non-INVITE (§17.1.2) | Trying → Proceeding → Completed → Terminated | E (retransmit: T1 doubling to T2, T2 once proceeding), F (64·T1 timeout), K (T4 unreliable, 0 reliable) |
//! | server INVITE (§17.2.1, RFC 6026) | Proceeding → Completed → Confirmed → Terminated, or Proceeding → Accepted (2xx) → Terminated | G (retransmit final, unreliable), H (64·T1 wait for ACK), I (T4 unreliable), L (64·T1 absorb INVITE retransmissions after 2xx) |
//! | server non-INVITE (§17.2.2) | Trying → Proceeding → Completed → Terminated | J (64·T1 unreliable, 0 reliable) |
//!
//! A retransmitted request reaching a server transaction makes it send its last response again
//! (or nothing in Trying); a retransmitted final response reaching a completed client INVITE
//! transaction makes it ACK again without telling the TU (retransmission absorption both ways).

use std::time::{Duration, Instant};

/// Timer values (RFC 3261 §17.1.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Which of the four machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Client INVITE.
    ClientInvite,
    /// Client non-INVITE.
    ClientNonInvite,
    /// Server INVITE.
    ServerInvite,
    /// Server non-INVITE.
    ServerNonInvite,
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Client INVITE sent, nothing heard.
    Calling,
    /// Client non-INVITE sent, nothing heard; or server non-INVITE received, nothing sent.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response was received (client) or a non-2xx final sent (server).
    Completed,
    /// Server INVITE: the ACK for its non-2xx arrived.
    Confirmed,
    /// Server INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    /// Done; the driver forgets it.
    Terminated,
}

/// The timers by their RFC names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerName {
    /// Client INVITE retransmission.
    A,
    /// Client INVITE timeout.
    B,
    /// Client INVITE wait for response retransmissions.
    D,
    /// Client non-INVITE retransmission.
    E,
    /// Client non-INVITE timeout.
    F,
    /// Server INVITE final response retransmission.
    G,
    /// Server INVITE wait for ACK.
    H,
    /// Server INVITE wait for ACK retransmissions.
    I,
    /// Server non-INVITE wait for request retransmissions.
    J,
    /// Client non-INVITE wait for response retransmissions.
    K,
    /// Server INVITE wait after a 2xx (RFC 6026).
    L,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// (Re)send the request (client) or the last response (server).
    Transmit,
    /// Client INVITE: send an ACK for the non-2xx final response (§17.1.1.3).
    SendAck,
    /// Client: hand this response (by status) to the TU.
    Deliver(u16),
    /// Server INVITE: the ACK for the non-2xx arrived; absorb it.
    AbsorbAck,
    /// Timer B, F or H fired: the peer never answered (client: tell the TU, as a 408).
    Timeout,
    /// The transaction is over.
    Terminated,
}

/// One transaction's state machine.
#[derive(Clone, Debug)]
pub struct Machine {
    kind: Kind,
    state: State,
    reliable: bool,
    timers: Timers,
    /// Current retransmit interval (A, E, G).
    interval: Duration,
    armed: Vec<(TimerName, Instant)>,
    /// Whether a response has been sent (server) — what a retransmitted request gets again.
    responded: bool,
}

impl Machine {
    /// A client transaction: the request was just sent at `now`. Answers the first actions
    /// (always one `Transmit`).
    pub fn client(
        invite: bool,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> (Machine, Vec<Action>) {
        Machine::client_with_timeout(invite, reliable, timers, timers.t1 * 64, now)
    }

    /// [`Machine::client`] with Timer B or F at `timeout` instead of 64·T1: the UAC lets its
    /// operator choose the transaction timeout apart from T1.
    pub fn client_with_timeout(
        invite: bool,
        reliable: bool,
        timers: Timers,
        timeout: Duration,
        now: Instant,
    ) -> (Machine, Vec<Action>) {
        let kind = if invite {
            Kind::ClientInvite
        } else {
            Kind::ClientNonInvite
        };
        let mut m = Machine {
            kind,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            reliable,
            timers,
            interval: timers.t1,
            armed: Vec::with_capacity(2),
            responded: false,
        };
        let (retransmit, timeout_timer) = if invite {
            (TimerName::A, TimerName::B)
        } else {
            (TimerName::E, TimerName::F)
        };
        if !reliable {
            m.arm(retransmit, now + timers.t1);
        }
        m.arm(timeout_timer, now + timeout);
        (m, vec![Action::Transmit])
    }

    /// A server transaction for a request just received.
    pub fn server(invite: bool, reliable: bool, timers: Timers) -> Machine {
        Machine {
            kind: if invite {
                Kind::ServerInvite
            } else {
                Kind::ServerNonInvite
            },
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliable,
            timers,
            interval: timers.t1,
            armed: Vec::with_capacity(2),
            responded: false,
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the driver can forget it.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// The earliest armed timer, for the driver's timer queue.
    pub fn deadline(&self) -> Option<Instant> {
        self.armed.iter().map(|&(_, t)| t).min()
    }

    /// Whether a timer is armed (for tests and debugging).
    pub fn is_armed(&self, name: TimerName) -> bool {
        self.armed.iter().any(|&(n, _)| n == name)
    }

    fn arm(&mut self, name: TimerName, at: Instant) {
        self.disarm(name);
        self.armed.push((name, at));
    }

    fn disarm(&mut self, name: TimerName) {
        self.armed.retain(|&(n, _)| n != name);
    }

    fn terminate(&mut self, actions: &mut Vec<Action>) {
        self.state = State::Terminated;
        self.armed.clear();
        actions.push(Action::Terminated);
    }

    /// Client: a response with `status` arrived.
    pub fn on_response(&mut self, status: u16, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let provisional = status < 200;
        match (self.kind, self.state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                self.disarm(TimerName::A);
                if provisional {
                    self.state = State::Proceeding;
                    out.push(Action::Deliver(status));
                } else if status < 300 {
                    out.push(Action::Deliver(status));
                    self.terminate(&mut out);
                } else {
                    // ACK first, so the peer has it before anything the TU sends next.
                    out.push(Action::SendAck);
                    out.push(Action::Deliver(status));
                    self.state = State::Completed;
                    self.disarm(TimerName::B);
                    let d = if self.reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    };
                    self.arm(TimerName::D, now + d);
                }
            }
            (Kind::ClientInvite, State::Completed) if status >= 300 => out.push(Action::SendAck),
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                out.push(Action::Deliver(status));
                if provisional {
                    if self.state == State::Trying && !self.reliable {
                        // Retransmit at T2 from now on (§17.1.2.2).
                        self.interval = self.timers.t2;
                    }
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    self.disarm(TimerName::E);
                    self.disarm(TimerName::F);
                    let k = if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    self.arm(TimerName::K, now + k);
                }
            }
            // Retransmissions of a final response, or anything after the end: absorbed.
            _ => {}
        }
        out
    }

    /// Server: the TU sends a response with `status` (the driver stores it for retransmission).
    pub fn on_send(&mut self, status: u16, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                out.push(Action::Transmit);
                self.responded = true;
                if status >= 300 {
                    self.state = State::Completed;
                    if !self.reliable {
                        self.arm(TimerName::G, now + self.timers.t1);
                    }
                    self.arm(TimerName::H, now + self.timers.t1 * 64);
                } else if status >= 200 {
                    self.state = State::Accepted;
                    self.arm(TimerName::L, now + self.timers.t1 * 64);
                }
            }
            // 2xx retransmissions from the UAS pass through in Accepted (RFC 6026 §7.1).
            (Kind::ServerInvite, State::Accepted) if (200..300).contains(&status) => {
                out.push(Action::Transmit)
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                out.push(Action::Transmit);
                self.responded = true;
                if status < 200 {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    let j = if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t1 * 64
                    };
                    self.arm(TimerName::J, now + j);
                }
            }
            _ => {}
        }
        out
    }

    /// Server: the request arrived again (a retransmission), or, for INVITE, its ACK.
    pub fn on_request(&mut self, ack: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.kind, self.state, ack) {
            (Kind::ServerInvite, State::Completed, true) => {
                self.state = State::Confirmed;
                self.disarm(TimerName::G);
                self.disarm(TimerName::H);
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    self.timers.t4
                };
                self.arm(TimerName::I, now + i);
                out.push(Action::AbsorbAck);
            }
            (Kind::ServerInvite, State::Confirmed, true) => out.push(Action::AbsorbAck),
            (_, _, true) => {}
            (Kind::ServerInvite, State::Proceeding | State::Completed, false)
            | (Kind::ServerNonInvite, State::Proceeding | State::Completed, false)
                if self.responded =>
            {
                out.push(Action::Transmit)
            }
            _ => {}
        }
        out
    }

    /// Fires every timer due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(i) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, &(_, t))| t <= now)
            .min_by_key(|(_, &(_, t))| t)
            .map(|(i, _)| i)
        {
            let (name, at) = self.armed.swap_remove(i);
            match name {
                TimerName::A => {
                    out.push(Action::Transmit);
                    self.interval *= 2;
                    self.arm(TimerName::A, at + self.interval);
                }
                TimerName::E => {
                    out.push(Action::Transmit);
                    if self.state == State::Trying {
                        self.interval = (self.interval * 2).min(self.timers.t2);
                    }
                    self.arm(TimerName::E, at + self.interval);
                }
                TimerName::G => {
                    out.push(Action::Transmit);
                    self.interval = (self.interval * 2).min(self.timers.t2);
                    self.arm(TimerName::G, at + self.interval);
                }
                TimerName::B | TimerName::F | TimerName::H => {
                    out.push(Action::Timeout);
                    self.terminate(&mut out);
                }
                TimerName::D | TimerName::I | TimerName::J | TimerName::K | TimerName::L => {
                    self.terminate(&mut out)
                }
            }
            if self.state == State::Terminated {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs timers in 10 ms steps from `from` to `to`, collecting (time offset, action).
    fn run(m: &mut Machine, t0: Instant, from: u64, to: u64) -> Vec<(u64, Action)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            for a in m.on_timer(t0 + ms(t)) {
                out.push((t, a));
            }
            t += 10;
        }
        out
    }

    #[test]
    fn client_invite_retransmits_on_a_then_times_out_on_b() {
        let t0 = Instant::now();
        let (mut m, first) = Machine::client(true, false, Timers::default(), t0);
        assert_eq!(first, vec![Action::Transmit]);
        let events = run(&mut m, t0, 0, 40_000);
        let sends: Vec<u64> = events
            .iter()
            .filter(|(_, a)| *a == Action::Transmit)
            .map(|(t, _)| *t)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (A doubles without a cap).
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(
            events.iter().rev().take(2).map(|e| e.1).collect::<Vec<_>>(),
            vec![Action::Terminated, Action::Timeout]
        );
        assert_eq!(events.iter().rev().nth(1).unwrap().0, 32_000);
    }

    #[test]
    fn client_invite_provisional_stops_a_final_acks_and_absorbs() {
        let t0 = Instant::now();
        let (mut m, _) = Machine::client(true, false, Timers::default(), t0);
        assert_eq!(m.on_response(100, t0 + ms(100)), vec![Action::Deliver(100)]);
        assert_eq!(m.state(), State::Proceeding);
        assert!(run(&mut m, t0, 0, 5_000).is_empty(), "no retransmission");
        assert_eq!(
            m.on_response(486, t0 + ms(6_000)),
            vec![Action::SendAck, Action::Deliver(486)]
        );
        // The 486 again: ACK again, not delivered twice.
        assert_eq!(m.on_response(486, t0 + ms(6_400)), vec![Action::SendAck]);
        assert_eq!(
            run(&mut m, t0, 6_000, 38_010),
            vec![(38_000, Action::Terminated)],
            "timer D = 32 s"
        );
    }

    #[test]
    fn client_invite_2xx_terminates_at_once() {
        let t0 = Instant::now();
        let (mut m, _) = Machine::client(true, true, Timers::default(), t0);
        assert!(!m.is_armed(TimerName::A), "no retransmission over TCP");
        assert_eq!(
            m.on_response(200, t0),
            vec![Action::Deliver(200), Action::Terminated]
        );
        assert!(m.on_response(200, t0).is_empty());
    }

    #[test]
    fn client_non_invite_caps_e_at_t2_and_uses_t2_when_proceeding() {
        let t0 = Instant::now();
        let (mut m, _) = Machine::client(false, false, Timers::default(), t0);
        let sends: Vec<u64> = run(&mut m, t0, 0, 12_000)
            .into_iter()
            .filter(|(_, a)| *a == Action::Transmit)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 11500]);
        let (mut m, _) = Machine::client(false, false, Timers::default(), t0);
        m.on_response(100, t0 + ms(100));
        let sends: Vec<u64> = run(&mut m, t0, 0, 9_000)
            .into_iter()
            .filter(|(_, a)| *a == Action::Transmit)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(sends, vec![500, 4500, 8500]);
        assert_eq!(
            m.on_response(200, t0 + ms(9_000)),
            vec![Action::Deliver(200)]
        );
        assert_eq!(
            run(&mut m, t0, 9_000, 14_000),
            vec![(14_000, Action::Terminated)],
            "timer K = T4"
        );
    }

    #[test]
    fn client_non_invite_times_out_on_f() {
        let t0 = Instant::now();
        let (mut m, _) = Machine::client(false, true, Timers::default(), t0);
        let events = run(&mut m, t0, 0, 33_000);
        assert_eq!(
            events,
            vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn client_timeout_can_be_chosen_apart_from_t1() {
        let t0 = Instant::now();
        let timers = Timers {
            t1: ms(100),
            ..Timers::default()
        };
        let (mut m, first) = Machine::client_with_timeout(false, false, timers, ms(1_000), t0);
        assert_eq!(first, vec![Action::Transmit]);
        let events = run(&mut m, t0, 0, 2_000);
        let sends: Vec<u64> = events
            .iter()
            .filter(|(_, a)| *a == Action::Transmit)
            .map(|&(t, _)| t)
            .collect();
        assert_eq!(sends, vec![100, 300, 700], "E doubles from T1 until F");
        assert_eq!(
            &events[events.len() - 2..],
            &[(1_000, Action::Timeout), (1_000, Action::Terminated)],
            "F at the chosen timeout, not 64·T1"
        );
    }

    #[test]
    fn server_invite_non_2xx_retransmits_on_g_until_ack() {
        let t0 = Instant::now();
        let mut m = Machine::server(true, false, Timers::default());
        assert!(m.on_request(false, t0).is_empty(), "nothing sent yet");
        assert_eq!(m.on_send(100, t0), vec![Action::Transmit]);
        assert_eq!(m.on_request(false, t0 + ms(10)), vec![Action::Transmit]);
        assert_eq!(m.on_send(486, t0 + ms(100)), vec![Action::Transmit]);
        let sends: Vec<u64> = run(&mut m, t0, 100, 5_000)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        // G: 0.5, 1, 2, 4 (capped at T2) s after the 486.
        assert_eq!(sends, vec![600, 1600, 3600]);
        assert_eq!(m.on_request(true, t0 + ms(5_000)), vec![Action::AbsorbAck]);
        assert_eq!(m.state(), State::Confirmed);
        assert_eq!(m.on_request(true, t0 + ms(5_100)), vec![Action::AbsorbAck]);
        assert_eq!(
            run(&mut m, t0, 5_000, 10_000),
            vec![(10_000, Action::Terminated)],
            "timer I = T4"
        );
    }

    #[test]
    fn server_invite_without_ack_times_out_on_h() {
        let t0 = Instant::now();
        let mut m = Machine::server(true, true, Timers::default());
        m.on_send(404, t0);
        assert_eq!(
            run(&mut m, t0, 0, 32_000),
            vec![(32_000, Action::Timeout), (32_000, Action::Terminated)]
        );
    }

    #[test]
    fn server_invite_2xx_is_accepted_then_l() {
        let t0 = Instant::now();
        let mut m = Machine::server(true, false, Timers::default());
        m.on_send(180, t0);
        assert_eq!(m.on_send(200, t0), vec![Action::Transmit]);
        assert_eq!(m.state(), State::Accepted);
        assert_eq!(m.on_send(200, t0 + ms(500)), vec![Action::Transmit]);
        assert!(
            m.on_request(false, t0 + ms(600)).is_empty(),
            "INVITE retransmission absorbed"
        );
        assert_eq!(
            run(&mut m, t0, 0, 32_000),
            vec![(32_000, Action::Terminated)]
        );
    }

    #[test]
    fn server_non_invite_answers_retransmissions_then_j() {
        let t0 = Instant::now();
        let mut m = Machine::server(false, false, Timers::default());
        assert!(
            m.on_request(false, t0).is_empty(),
            "Trying: nothing to resend"
        );
        assert_eq!(m.on_send(200, t0), vec![Action::Transmit]);
        assert_eq!(m.on_request(false, t0 + ms(500)), vec![Action::Transmit]);
        assert!(m.on_send(500, t0 + ms(600)).is_empty(), "one final only");
        assert_eq!(
            run(&mut m, t0, 0, 32_000),
            vec![(32_000, Action::Terminated)]
        );
        let mut tcp = Machine::server(false, true, Timers::default());
        tcp.on_send(200, t0);
        assert_eq!(tcp.on_timer(t0), vec![Action::Terminated], "J = 0 over TCP");
    }
}
