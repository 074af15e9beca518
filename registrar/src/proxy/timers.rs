//! Timers: one heap of deadlines (transaction timers and ring timeouts) served by one task.

use super::core::{Inner, State, TimerKey};
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Inner {
    pub(super) fn schedule(&self, st: &mut State, key: TimerKey, at: Option<Instant>) {
        if let Some(at) = at {
            let earliest = st.timers.peek().map(|Reverse((t, _))| *t);
            st.timers.push(Reverse((at, key)));
            if earliest.is_none_or(|e| at < e) {
                self.wake.notify_one();
            }
        }
    }

    pub(super) async fn run_timers(self: Arc<Self>) {
        loop {
            let next = self.state.lock().timers.peek().map(|Reverse((t, _))| *t);
            // Timers fire in batches at most every 10 ms: SIP timers need no finer grain, and
            // a busy proxy would otherwise wake for every single deadline.
            // At least once a second, for the gauges below.
            let floor = Instant::now() + Duration::from_millis(10);
            let ceiling = Instant::now() + Duration::from_secs(1);
            let sleep = match next {
                Some(t) => tokio::time::sleep_until(t.max(floor).min(ceiling).into()),
                None => tokio::time::sleep(Duration::from_secs(1)),
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake.notified() => continue,
            }
            let now = Instant::now();
            let mut st = self.state.lock();
            self.metrics
                .proxy_transactions
                .with_label_values(&["server"])
                .set(st.servers.len() as i64);
            self.metrics
                .proxy_transactions
                .with_label_values(&["client"])
                .set(st.clients.len() as i64);
            self.metrics.proxy_calls.set(st.calls.len() as i64);
            while let Some(Reverse((t, key))) = st.timers.peek().copied() {
                if t > now {
                    break;
                }
                st.timers.pop();
                match key {
                    TimerKey::Tx(id) => self.fire_tx(&mut st, id, t, now),
                    TimerKey::Ring(call) => self.ring_timeout(&mut st, call, now),
                }
            }
        }
    }

    /// Queues the transaction's next deadline, unless an entry at or before it is queued
    /// already (that one reschedules when it fires): one heap entry per transaction at a time.
    pub(super) fn schedule_tx(&self, st: &mut State, id: u64) {
        let armed = if let Some(s) = st.servers.get_mut(&id) {
            let d = s.m.deadline();
            match d {
                Some(d) if s.armed.is_none_or(|a| a > d) => {
                    s.armed = Some(d);
                    Some(d)
                }
                _ => None,
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
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
        self.schedule(st, TimerKey::Tx(id), armed);
    }

    fn fire_tx(&self, st: &mut State, id: u64, queued: Instant, now: Instant) {
        if let Some(s) = st.servers.get_mut(&id) {
            if s.armed == Some(queued) {
                s.armed = None;
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
            if c.armed == Some(queued) {
                c.armed = None;
            }
        }
        self.fire_due(st, id, now);
        self.schedule_tx(st, id);
    }

    fn fire_due(&self, st: &mut State, id: u64, now: Instant) {
        if let Some(s) = st.servers.get_mut(&id) {
            if s.m.deadline().is_some_and(|d| d <= now) {
                let actions = s.m.on_timer(now);
                self.server_actions(st, id, &actions, now);
            }
        } else if let Some(c) = st.clients.get_mut(&id) {
            if c.m.deadline().is_some_and(|d| d <= now) {
                let actions = c.m.on_timer(now);
                self.client_actions(st, id, &actions, None, now);
            }
        }
    }
}
