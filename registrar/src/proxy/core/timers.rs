//! Timers: one wheel of deadlines (transaction timers and ring timeouts, [`super::wheel`]).
//! The driver's timer task sleeps until [`Core::next_deadline`] (woken by [`Action::Wake`]
//! when an earlier one is queued) and calls [`Core::on_timers`].

use super::{Action, Core, TimerKey};
use crate::transaction::machine::{Action as TxAction, Machine};
use std::time::Instant;

impl Core {
    /// Queues a deadline; the timer task is woken if it is the earliest.
    pub(super) fn schedule(&mut self, key: TimerKey, at: Instant) {
        if self.timers.push(at, key) {
            self.out.push(Action::Wake);
        }
    }

    /// The earliest deadline queued.
    pub(in crate::proxy) fn next_deadline(&self) -> Option<Instant> {
        self.timers.earliest()
    }

    /// Fires every deadline due at `now`, earliest first (and those that firing queues due
    /// at `now` too).
    pub(in crate::proxy) fn on_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        loop {
            self.timers.take_due(now, &mut due);
            if due.is_empty() {
                break;
            }
            for (t, key) in due.drain(..) {
                match key {
                    TimerKey::Server(id) => self.fire_server(id, t, now),
                    TimerKey::Client(id) => self.fire_client(id, t, now),
                    TimerKey::Ring(call) => self.ring_timeout(call, now),
                }
            }
        }
    }

    /// Queues a server transaction's next deadline, unless an entry at or before it is
    /// queued already (that one reschedules when it fires): one entry per transaction at a
    /// time. Server and client transactions have their own keys and calls, so each looks in
    /// its own table only: a probe into the other (hundreds of thousands of entries at the
    /// steady size) was a cache miss for nothing.
    pub(super) fn schedule_server(&mut self, id: u64) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        if let Some(d) = rearm(&mut s.armed, s.m.deadline()) {
            self.schedule(TimerKey::Server(id), d);
        }
    }

    /// [`Self::schedule_server`] for a client transaction.
    pub(super) fn schedule_client(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(d) = rearm(&mut c.armed, c.m.deadline()) {
            self.schedule(TimerKey::Client(id), d);
        }
    }

    fn fire_server(&mut self, id: u64, queued: Instant, now: Instant) {
        let Some(s) = self.servers.get_mut(&id) else {
            return;
        };
        match fired(&mut s.armed, &mut s.m, queued, now) {
            Some(actions) => self.server_actions(id, &actions),
            None => self.schedule_server(id),
        }
    }

    fn fire_client(&mut self, id: u64, queued: Instant, now: Instant) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        match fired(&mut c.armed, &mut c.m, queued, now) {
            Some(actions) => self.client_actions(id, &actions, None, now),
            None => self.schedule_client(id),
        }
    }
}

/// The deadline to queue for a transaction whose machine's next is `next`, noting it as
/// `armed`: none when an entry at or before it is queued already.
fn rearm(armed: &mut Option<Instant>, next: Option<Instant>) -> Option<Instant> {
    let d = next?;
    if armed.is_some_and(|a| a <= d) {
        return None;
    }
    *armed = Some(d);
    Some(d)
}

/// A transaction's entry queued for `queued` came due at `now`: it is no longer the one
/// armed, and the machine's actions if one of its timers is due (else it only needs
/// queueing again).
fn fired(
    armed: &mut Option<Instant>,
    m: &mut Machine,
    queued: Instant,
    now: Instant,
) -> Option<Vec<TxAction>> {
    if *armed == Some(queued) {
        *armed = None;
    }
    m.deadline()
        .is_some_and(|d| d <= now)
        .then(|| m.on_timer(now))
}
