//! Placement of events on the counters of one hardware PMU, honouring
//! per-event counter constraints with a maximum bipartite matching
//! (augmenting paths, Kuhn's algorithm) over at most 32 counters.
//!
//! The kernel's x86 PMU does the same job in `x86_schedule_events()` with a
//! weight-ordered greedy pass and limited backtracking. Here adding an event
//! may move already placed events to other allowed counters, so a placement
//! is found whenever one exists. An [`Assignment`] is `Copy`: a transaction
//! (`start_txn`/`cancel_txn`) is a saved copy restored on failure.

use super::list::NIL;

/// Which event owns which counter of one hardware PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    owner: [u32; 32],
    owner_mask: [u32; 32],
    counters: u8,
}

impl Assignment {
    /// An empty PMU with `counters` counters (at most 32).
    pub fn new(counters: u8) -> Assignment {
        Assignment {
            owner: [NIL; 32],
            owner_mask: [0; 32],
            counters: counters.min(32),
        }
    }

    fn all(&self) -> u32 {
        if self.counters >= 32 {
            u32::MAX
        } else {
            (1u32 << self.counters) - 1
        }
    }

    /// Counters nobody owns.
    pub fn free_mask(&self) -> u32 {
        let mut used = 0u32;
        for (i, o) in self.owner.iter().enumerate().take(self.counters as usize) {
            if *o != NIL {
                used |= 1 << i;
            }
        }
        self.all() & !used
    }

    /// The event on counter `slot`.
    pub fn owner(&self, slot: u8) -> Option<u32> {
        let o = *self.owner.get(slot as usize)?;
        (o != NIL).then_some(o)
    }

    /// Places `event` (allowed on `mask`), moving others if needed. Returns
    /// the counter it got, or `None` (and no change) if no placement exists.
    pub fn add(&mut self, event: u32, mask: u32) -> Option<u8> {
        let mask = mask & self.all();
        if mask == 0 {
            return None;
        }
        // Fast path: a free allowed counter, taking the highest (fixed
        // counters and the less constrained high GP counters first).
        let free = mask & self.free_mask();
        if free != 0 {
            let slot = 31 - free.leading_zeros() as u8;
            self.owner[slot as usize] = event;
            self.owner_mask[slot as usize] = mask;
            return Some(slot);
        }
        let mut visited = 0u32;
        self.augment(event, mask, &mut visited)
    }

    fn augment(&mut self, event: u32, mask: u32, visited: &mut u32) -> Option<u8> {
        let mut cand = mask & !*visited;
        while cand != 0 {
            let slot = cand.trailing_zeros() as u8;
            cand &= cand - 1;
            *visited |= 1 << slot;
            let s = slot as usize;
            let prev = self.owner[s];
            if prev == NIL || self.augment(prev, self.owner_mask[s], visited).is_some() {
                self.owner[s] = event;
                self.owner_mask[s] = mask;
                return Some(slot);
            }
        }
        None
    }

    /// Frees counter `slot`.
    pub fn remove(&mut self, slot: u8) {
        if let Some(o) = self.owner.get_mut(slot as usize) {
            *o = NIL;
            self.owner_mask[slot as usize] = 0;
        }
    }

    /// Would events with these masks fit together on an empty PMU?
    pub fn fits_empty(counters: u8, masks: impl IntoIterator<Item = u32>) -> bool {
        let mut a = Assignment::new(counters);
        masks
            .into_iter()
            .enumerate()
            .all(|(i, m)| a.add(i as u32, m).is_some())
    }

    /// Counters whose owner differs from `before` and whose new owner was
    /// placed before (it moved): `(slot, event)`.
    pub fn moved_since(&self, before: &Assignment) -> impl Iterator<Item = (u8, u32)> + '_ {
        let before = *before;
        (0..self.counters).filter_map(move |s| {
            let now = self.owner[s as usize];
            let was_placed =
                now != NIL && now != before.owner[s as usize] && before.owner.contains(&now);
            was_placed.then_some((s, now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_beats_first_fit() {
        // A may use counters 0-1, B only counter 1: first fit puts A on the
        // counter B needs (the fast path takes the highest, 1); the matching
        // moves A to 0.
        let mut a = Assignment::new(2);
        assert_eq!(a.add(10, 0b11), Some(1));
        let before = a;
        assert_eq!(a.add(11, 0b10), Some(1));
        assert_eq!(a.owner(0), Some(10));
        assert_eq!(a.moved_since(&before).collect::<Vec<_>>(), vec![(0, 10)]);
        assert_eq!(a.add(12, 0b11), None);
        assert_eq!(a.free_mask(), 0);
    }

    #[test]
    fn failure_changes_nothing() {
        let mut a = Assignment::new(3);
        a.add(1, 0b001);
        a.add(2, 0b011);
        let saved = a;
        assert_eq!(a.add(3, 0b011), None);
        assert_eq!(a, saved);
        assert!(!Assignment::fits_empty(2, [1, 1]));
        assert!(Assignment::fits_empty(2, [3, 1]));
    }
}
