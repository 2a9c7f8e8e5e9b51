//! Rotation history of a host PMU: a bounded, lock-free record of which
//! guest counters held counters of the PMU, per vCPU, at each schedule-in
//! and rotation. The statistics API draws it as a timeline.
//!
//! Each [`super::HostPmu`] owns one [`RotationHistory`]: a ring of the last
//! [`HISTORY_LEN`] entries written by every vCPU context scheduling on that
//! PMU. A writer claims a slot with one `fetch_add` and fills it under a
//! per-slot sequence number (a seqlock); it never allocates, locks or waits.
//! Readers copy entries whose sequence number is stable and skip the ones
//! being written. Two writers on the same slot at once would need
//! [`HISTORY_LEN`] other records in between; a reader then may see a mixed
//! entry, which is acceptable for statistics.
//!
//! Times are vCPU run time in ns (the multiplexer's clock): entries of one
//! vCPU are ordered; entries of different vCPUs are on their own clocks.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::source::CounterIndex;

/// Entries kept per host PMU.
pub const HISTORY_LEN: usize = 256;

/// The bit of a guest counter in [`HistoryEntry::active`]: general-purpose
/// counter `i` is bit `i`, fixed counter `i` is bit `32 + i`.
pub fn counter_bit(counter: CounterIndex) -> u8 {
    match counter {
        CounterIndex::Gp(i) => i.min(31),
        CounterIndex::Fixed(i) => 32 + i.min(31),
    }
}

/// The guest counters in an [`HistoryEntry::active`] mask, in bit order.
pub fn counters_of(mask: u64) -> impl Iterator<Item = CounterIndex> {
    (0..64u8).filter(move |b| mask & (1 << b) != 0).map(|b| {
        if b < 32 {
            CounterIndex::Gp(b)
        } else {
            CounterIndex::Fixed(b - 32)
        }
    })
}

/// What happened at a history point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryKind {
    /// Schedule-in (new groups placed, freed counters refilled, resched).
    SchedIn,
    /// The PMU's flexible groups were rotated.
    Rotation,
    /// Everything scheduled out.
    SchedOut,
}

impl HistoryKind {
    fn code(self) -> u64 {
        match self {
            HistoryKind::SchedIn => 0,
            HistoryKind::Rotation => 1,
            HistoryKind::SchedOut => 2,
        }
    }
    fn from_code(c: u64) -> HistoryKind {
        match c {
            1 => HistoryKind::Rotation,
            2 => HistoryKind::SchedOut,
            _ => HistoryKind::SchedIn,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::SchedIn => "sched-in",
            HistoryKind::Rotation => "rotation",
            HistoryKind::SchedOut => "sched-out",
        }
    }
}

/// One history point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the PMU's history (0, 1, ...; gaps are overwritten or
    /// in-flight entries).
    pub seq: u64,
    /// vCPU run time, ns.
    pub run_time_ns: u64,
    pub vcpu: u32,
    pub kind: HistoryKind,
    /// Guest counters holding counters of this PMU from now on (see
    /// [`counter_bit`]).
    pub active: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// `2n + 1` while entry `n` is written, `2n + 2` once written.
    seq: AtomicU64,
    time: AtomicU64,
    /// vCPU in the low 32 bits, kind above.
    vcpu_kind: AtomicU64,
    active: AtomicU64,
}

/// The bounded history of one host PMU.
#[derive(Debug)]
pub struct RotationHistory {
    head: AtomicU64,
    slots: Box<[Slot]>,
}

impl Default for RotationHistory {
    fn default() -> Self {
        RotationHistory {
            head: AtomicU64::new(0),
            slots: (0..HISTORY_LEN).map(|_| Slot::default()).collect(),
        }
    }
}

impl RotationHistory {
    /// Records one point (vCPU thread; no allocation, no lock).
    pub fn record(&self, vcpu: u32, run_time_ns: u64, kind: HistoryKind, active: u64) {
        let n = self.head.fetch_add(1, Ordering::AcqRel);
        let slot = &self.slots[(n % HISTORY_LEN as u64) as usize];
        slot.seq.store(2 * n + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.time.store(run_time_ns, Ordering::Relaxed);
        slot.vcpu_kind
            .store(u64::from(vcpu) | (kind.code() << 32), Ordering::Relaxed);
        slot.active.store(active, Ordering::Relaxed);
        slot.seq.store(2 * n + 2, Ordering::Release);
    }

    /// Points recorded so far (including overwritten ones).
    pub fn recorded(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The retained points, oldest first (any thread; allocates).
    pub fn snapshot(&self) -> Vec<HistoryEntry> {
        let head = self.head.load(Ordering::Acquire);
        let first = head.saturating_sub(HISTORY_LEN as u64);
        let mut out = Vec::with_capacity((head - first) as usize);
        for n in first..head {
            let slot = &self.slots[(n % HISTORY_LEN as u64) as usize];
            let s1 = slot.seq.load(Ordering::Acquire);
            if s1 != 2 * n + 2 {
                continue;
            }
            let time = slot.time.load(Ordering::Relaxed);
            let vk = slot.vcpu_kind.load(Ordering::Relaxed);
            let active = slot.active.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            out.push(HistoryEntry {
                seq: n,
                run_time_ns: time,
                vcpu: vk as u32,
                kind: HistoryKind::from_code(vk >> 32),
                active,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_entries() {
        let h = RotationHistory::default();
        assert!(h.snapshot().is_empty());
        for i in 0..300u64 {
            h.record(1, i * 10, HistoryKind::Rotation, i);
        }
        let s = h.snapshot();
        assert_eq!(s.len(), HISTORY_LEN);
        assert_eq!(s[0].seq, 300 - HISTORY_LEN as u64);
        assert_eq!(s.last().map(|e| e.active), Some(299));
        assert!(s
            .iter()
            .all(|e| e.vcpu == 1 && e.kind == HistoryKind::Rotation));
        assert!(s.windows(2).all(|w| w[0].run_time_ns < w[1].run_time_ns));
    }

    #[test]
    fn counter_bits_round_trip() {
        let mask =
            (1 << counter_bit(CounterIndex::Gp(3))) | (1 << counter_bit(CounterIndex::Fixed(1)));
        let v: Vec<_> = counters_of(mask).collect();
        assert_eq!(v, vec![CounterIndex::Gp(3), CounterIndex::Fixed(1)]);
    }

    #[test]
    fn concurrent_writers_and_reader() {
        let h = std::sync::Arc::new(RotationHistory::default());
        let writers: Vec<_> = (0..4u32)
            .map(|v| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record(v, i, HistoryKind::SchedIn, u64::from(v));
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            for e in h.snapshot() {
                assert_eq!(e.active, u64::from(e.vcpu));
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(h.recorded(), 40_000);
        assert_eq!(h.snapshot().len(), HISTORY_LEN);
    }
}
