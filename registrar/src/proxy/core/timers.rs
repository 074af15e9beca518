//! Timers: one wheel of deadlines (transaction timers and ring timeouts, [`super::wheel`]).
//! The driver's timer task sleeps until [`Core::next_deadline`] (woken by [`Action::Wake`]
//! when an earlier one is queued) and calls [`Core::on_timers`].

use super::{Action, Core, TimerKey};
use std::time::Instant;

impl Core {
    pub(super) fn schedule(&mut self, key: TimerKey, at: Option<Instant>) {
        if let Some(at) = at {
            if self.timers.push(at, key) {
                self.out.push(Action::Wake);
            }
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
                    TimerKey::Tx(id) => self.fire_tx(id, t, now),
                    TimerKey::Ring(call) => self.ring_timeout(call, now),
                }
            }
        }
    }

    /// Queues the transaction's next deadline, unless an entry at or before it is queued
    /// already (that one reschedules when it fires): one heap entry per transaction at a time.
    pub(super) fn schedule_tx(&mut self, id: u64) {
        let armed = if let Some(s) = self.servers.get_mut(&id) {
            let d = s.m.deadline();
            match d {
                Some(d) if s.armed.is_none_or(|a| a > d) => {
                    s.armed = Some(d);
                    Some(d)
                }
                _ => None,
            }
        } else if let Some(c) = self.clients.get_mut(&id) {
            let d = c.m.deadline();
            match d {
                Some(d) if c.armed.is_none_or(|a| a > d) => {
                    c.armed = Some(d);
                    Some(d)
                }
                _ => None,
            }
        } else {
            None
        };
        self.schedule(TimerKey::Tx(id), armed);
    }

    fn fire_tx(&mut self, id: u64, queued: Instant, now: Instant) {
        if let Some(s) = self.servers.get_mut(&id) {
            if s.armed == Some(queued) {
                s.armed = None;
            }
        } else if let Some(c) = self.clients.get_mut(&id) {
            if c.armed == Some(queued) {
                c.armed = None;
            }
        }
        self.fire_due(id, now);
        self.schedule_tx(id);
    }

    fn fire_due(&mut self, id: u64, now: Instant) {
        if let Some(s) = self.servers.get_mut(&id) {
            if s.m.deadline().is_some_and(|d| d <= now) {
                let actions = s.m.on_timer(now);
                self.server_actions(id, &actions);
            }
        } else if let Some(c) = self.clients.get_mut(&id) {
            if c.m.deadline().is_some_and(|d| d <= now) {
                let actions = c.m.on_timer(now);
                self.client_actions(id, &actions, None, now);
            }
        }
    }
}
