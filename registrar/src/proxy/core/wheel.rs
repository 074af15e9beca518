//! The core's deadlines in a hashed timing wheel: a slot per 10 ms tick, [`SLOTS`] of them
//! (41 s, longer than the 32 s a finished transaction waits), a deadline kept in the slot of
//! its tick (modulo the wheel: a later one goes round again).
//!
//! A proxy at its steady size holds the deadline of every transaction that waits out Timer
//! L or J (32 s) or K (5 s): about 200 000 at 3 000 calls/s. In a binary heap each expiry sifted
//! through its 18 levels, the lower ones cold in the cache (68 % of the timer task's samples).
//! Here a deadline is appended to its slot and the slots are read in turn, in memory order:
//! CPU per call at that load went from 85.3 to 76.9 µs (`bench/proxy/README.md`, seventeenth
//! session).

use std::time::{Duration, Instant};

/// The wheel's grain. Deadlines fire at the time they name (not rounded), but a slot holds
/// those of one tick, and the timer task wakes at most every 10 ms anyway.
const TICK: Duration = Duration::from_millis(10);

/// Slots in the wheel: 4096 ticks, 40.96 s.
const SLOTS: u64 = 4096;

/// Deadlines, each with its key.
pub(super) struct Wheel<K> {
    origin: Instant,
    /// Slot `t % SLOTS` holds the deadlines of tick `t`, and those of `t + SLOTS`, ….
    slots: Vec<Vec<(Instant, K)>>,
    /// The tick up to which every due deadline has been taken: no deadline of an earlier tick
    /// is left, and one pushed for an earlier tick goes into this one's slot.
    cursor: u64,
    len: usize,
    /// The earliest deadline held.
    earliest: Option<Instant>,
}

impl<K: Copy + Ord> Wheel<K> {
    /// An empty wheel whose first tick starts at `origin`.
    pub(super) fn new(origin: Instant) -> Wheel<K> {
        Wheel {
            origin,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            len: 0,
            earliest: None,
        }
    }

    /// The tick `at` falls in (the first for a time before the origin).
    fn tick(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        // In u64 arithmetic: a u128 division per deadline is not needed for 10 ms.
        let per_sec = 1_000_000_000 / TICK.subsec_nanos();
        since.as_secs().saturating_mul(u64::from(per_sec))
            + u64::from(since.subsec_nanos() / TICK.subsec_nanos())
    }

    fn slot(&mut self, tick: u64) -> &mut Vec<(Instant, K)> {
        &mut self.slots[(tick % SLOTS) as usize]
    }

    /// Adds a deadline; `true` when it is earlier than every one held before.
    pub(super) fn push(&mut self, at: Instant, key: K) -> bool {
        let tick = self.tick(at).max(self.cursor);
        self.slot(tick).push((at, key));
        self.len += 1;
        let earliest = self.earliest.is_none_or(|e| at < e);
        if earliest {
            self.earliest = Some(at);
        }
        earliest
    }

    /// The earliest deadline held.
    pub(super) fn earliest(&self) -> Option<Instant> {
        self.earliest
    }

    /// Moves every deadline due at `now` (at or before it) into `due`, earliest first.
    pub(super) fn take_due(&mut self, now: Instant, due: &mut Vec<(Instant, K)>) {
        if self.earliest.is_none_or(|e| e > now) {
            return;
        }
        let last = self.tick(now);
        // A gap longer than the wheel visits each slot once.
        let first = self.cursor.max(last.saturating_sub(SLOTS - 1));
        let before = due.len();
        for tick in first..=last {
            self.slot(tick).retain(|&(at, key)| {
                let keep = at > now;
                if !keep {
                    due.push((at, key));
                }
                keep
            });
        }
        self.cursor = self.cursor.max(last);
        self.len -= due.len() - before;
        due[before..].sort_unstable();
        self.earliest = self.find_earliest();
    }

    /// The earliest deadline held, looked for slot by slot from the cursor: the first slot
    /// with a deadline of its own tick (not of a later turn) holds it.
    fn find_earliest(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        for tick in self.cursor..self.cursor + SLOTS {
            let this_turn = self.slots[(tick % SLOTS) as usize]
                .iter()
                .filter(|(at, _)| self.tick(*at) <= tick)
                .map(|(at, _)| *at)
                .min();
            if this_turn.is_some() {
                return this_turn;
            }
        }
        // Every deadline is a turn or more away.
        self.slots.iter().flatten().map(|(at, _)| *at).min()
    }

    /// Deadlines held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::{Wheel, SLOTS, TICK};
    use std::time::{Duration, Instant};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn due(w: &mut Wheel<u32>, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.take_due(now, &mut out);
        out.into_iter().map(|(_, k)| k).collect()
    }

    #[test]
    fn takes_what_is_due_earliest_first_and_keeps_the_rest() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        assert!(w.push(t0 + ms(500), 1));
        assert!(!w.push(t0 + ms(32_000), 2));
        assert!(!w.push(t0 + ms(503), 3));
        assert!(w.push(t0 + ms(499), 4));
        assert_eq!(w.earliest(), Some(t0 + ms(499)));
        assert_eq!(due(&mut w, t0 + ms(498)), Vec::<u32>::new());
        // Exactly at a deadline it is due; one 3 ms later in the same tick is not.
        assert_eq!(due(&mut w, t0 + ms(500)), vec![4, 1]);
        assert_eq!(w.earliest(), Some(t0 + ms(503)));
        assert_eq!(due(&mut w, t0 + ms(10_000)), vec![3]);
        assert_eq!(w.earliest(), Some(t0 + ms(32_000)));
        assert_eq!(due(&mut w, t0 + ms(31_999)), Vec::<u32>::new());
        assert_eq!(due(&mut w, t0 + ms(32_000)), vec![2]);
        assert_eq!((w.len(), w.earliest()), (0, None));
    }

    #[test]
    fn a_deadline_a_turn_or_more_away_waits_for_its_turn() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let turn = TICK * SLOTS as u32;
        w.push(t0 + turn + ms(20), 1); // the slot of tick 2, next turn
        w.push(t0 + ms(25), 2); // tick 2, this turn
        w.push(t0 + turn * 3, 3); // three turns away, alone in the wheel once 1 and 2 went
        assert_eq!(due(&mut w, t0 + ms(30)), vec![2]);
        assert_eq!(w.earliest(), Some(t0 + turn + ms(20)));
        assert_eq!(due(&mut w, t0 + turn), Vec::<u32>::new());
        assert_eq!(due(&mut w, t0 + turn + ms(20)), vec![1]);
        assert_eq!(w.earliest(), Some(t0 + turn * 3));
        // A gap of several turns at once (an idle proxy) still finds it.
        assert_eq!(due(&mut w, t0 + turn * 5), vec![3]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_deadline_already_past_is_taken_next() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0 + ms(100));
        w.push(t0 + ms(5_000), 1);
        w.push(t0 + ms(500), 9);
        // Taking at 1 s moves the cursor to that tick.
        assert_eq!(due(&mut w, t0 + ms(1_000)), vec![9]);
        // Before the cursor's tick, and before the origin: both go to the cursor's slot.
        assert!(w.push(t0 + ms(400), 2));
        assert!(w.push(t0, 3));
        assert_eq!(w.earliest(), Some(t0));
        assert_eq!(due(&mut w, t0 + ms(1_001)), vec![3, 2]);
        assert_eq!(w.earliest(), Some(t0 + ms(5_000)));
        assert_eq!(due(&mut w, t0 + ms(5_000)), vec![1]);
    }

    #[test]
    fn many_deadlines_come_out_in_order() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        // 0..2000 spread over 50 s with a stride that scatters them across slots and turns.
        let at = |k: u32| t0 + ms(u64::from(k) * 7_919 % 50_000);
        for k in 0..2_000 {
            w.push(at(k), k);
        }
        let mut taken: Vec<(Instant, u32)> = Vec::new();
        let mut now = t0;
        while w.len() > 0 {
            now += ms(37);
            let before = taken.len();
            w.take_due(now, &mut taken);
            assert!(taken[before..].iter().all(|(t, _)| *t <= now));
            assert!(w.earliest().is_none_or(|e| e > now));
        }
        let mut expected: Vec<(Instant, u32)> = (0..2_000).map(|k| (at(k), k)).collect();
        expected.sort_unstable();
        assert_eq!(taken, expected);
    }
}
