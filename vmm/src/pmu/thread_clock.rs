//! Software-emulated cycles: a [`CountSource`] that counts core cycles and
//! reference cycles from the vCPU thread's CPU time (the time KVM spends
//! running the guest plus the VMM's exit handling on that thread), at the
//! guest's TSC frequency. On a host without a hardware PMU this is the only
//! truthful count there is; every other architectural event is reported
//! unavailable in CPUID leaf 0xA and reads zero.
//!
//! Guests of this project run at CPL 0, so a counter counts when its `OS` bit
//! is set and not when only `USR` is set.
//!
//! Sampling: when a running counter has its interrupt enabled, a POSIX timer
//! on `CLOCK_MONOTONIC` sends the kick signal to the vCPU thread when the
//! counter would overflow; the vCPU then syncs the guest PMU, which raises
//! the PMI. Wall time runs at least as fast as thread CPU time, so the timer
//! can only fire early, never late: an early wake-up re-arms for the rest.

use vpmu::arch::events::{ArchEvents, CORE_CYCLES, REFERENCE_CYCLES};
use vpmu::config::PmuArch;
use vpmu::host::EventName;
use vpmu::source::{CountSource, CounterConfig, CounterIndex};

use super::timer::{thread_cpu_ns, VcpuTimer};

const SLOTS: usize = 12;
const NS_PER_MS: u64 = 1_000_000;

/// The architectural events this source counts: core and reference cycles.
pub const AVAILABLE_EVENTS: ArchEvents = ArchEvents::of(&CORE_CYCLES).with(&REFERENCE_CYCLES);

fn slot(c: CounterIndex) -> Option<usize> {
    match c {
        CounterIndex::Gp(i) if i < 8 => Some(usize::from(i)),
        CounterIndex::Fixed(i) if i < 4 => Some(8 + usize::from(i)),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    running: bool,
    /// Counts something (cycles or ref-cycles at CPL 0).
    counts: bool,
    last_ns: u64,
    /// Sub-event remainder, in units of 1/NS_PER_MS events (exact scaling).
    frac: u64,
    /// Events left before the counter wraps, when its interrupt is enabled.
    until_overflow: Option<u64>,
}

/// Counts cycles and reference cycles from the vCPU thread's CPU time.
pub struct ThreadClockSource {
    tsc_khz: u64,
    /// Whose event encoding the guest's counters use.
    arch: PmuArch,
    slots: [Slot; SLOTS],
    timer: Option<VcpuTimer>,
    armed: bool,
}

impl ThreadClockSource {
    /// A source for the calling (vCPU) thread, counting at `tsc_khz`, for a
    /// guest PMU of architecture `arch`.
    pub fn new(tsc_khz: u32, arch: PmuArch) -> Self {
        let timer = VcpuTimer::for_this_thread()
            .map_err(|e| log::warn!("no overflow timer, PMIs arrive only at exits: {e}"))
            .ok();
        ThreadClockSource {
            tsc_khz: u64::from(tsc_khz.max(1)),
            arch,
            slots: [Slot::default(); SLOTS],
            timer,
            armed: false,
        }
    }

    fn events_for(&self, ns: u64, frac: &mut u64) -> u64 {
        let total = u128::from(ns) * u128::from(self.tsc_khz) + u128::from(*frac);
        *frac = (total % u128::from(NS_PER_MS)) as u64;
        (total / u128::from(NS_PER_MS)).min(u128::from(u64::MAX)) as u64
    }

    fn ns_for(&self, events: u64) -> u64 {
        let ns = (u128::from(events) * u128::from(NS_PER_MS)).div_ceil(u128::from(self.tsc_khz));
        ns.min(u128::from(u64::MAX)) as u64
    }

    /// Whether any running counter samples (has an overflow to wait for).
    pub fn sampling(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.running && s.counts && s.until_overflow.is_some())
    }

    /// Arms the overflow timer for the nearest overflow, or disarms it.
    pub fn rearm(&mut self) {
        let Some(timer) = &self.timer else { return };
        let nearest = self
            .slots
            .iter()
            .filter(|s| s.running && s.counts)
            .filter_map(|s| s.until_overflow)
            .min();
        match nearest {
            Some(events) => {
                timer.arm(self.ns_for(events).max(1));
                self.armed = true;
            }
            None if self.armed => {
                timer.arm(0);
                self.armed = false;
            }
            None => {}
        }
    }
}

impl CountSource for ThreadClockSource {
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig) {
        let Some(i) = slot(counter) else { return };
        let counts = config.modifiers.os
            && matches!(
                EventName::of_guest_counter(self.arch, counter, config),
                Some(EventName::Cycles | EventName::RefCycles)
            );
        self.slots[i] = Slot {
            running: true,
            counts,
            last_ns: thread_cpu_ns(),
            frac: 0,
            until_overflow: config.overflow_after,
        };
        if config.overflow_after.is_some() || self.armed {
            self.rearm();
        }
    }

    fn stop(&mut self, counter: CounterIndex) {
        let Some(i) = slot(counter) else { return };
        let sampled = self.slots[i].until_overflow.is_some();
        self.slots[i] = Slot::default();
        if sampled && self.armed {
            self.rearm();
        }
    }

    fn drain(&mut self, counter: CounterIndex) -> u64 {
        let Some(i) = slot(counter) else { return 0 };
        let s = self.slots[i];
        if !s.running || !s.counts {
            return 0;
        }
        let now = thread_cpu_ns();
        let mut frac = s.frac;
        let events = self.events_for(now.saturating_sub(s.last_ns), &mut frac);
        let slot = &mut self.slots[i];
        slot.last_ns = now;
        slot.frac = frac;
        if let Some(left) = slot.until_overflow.as_mut() {
            *left = left.saturating_sub(events);
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpmu::arch::amd::events as amd_events;
    use vpmu::arch::events::CORE_CYCLES;
    use vpmu::source::EventCode;

    const CYCLES: EventCode = CORE_CYCLES.code;

    fn config(event: EventCode, os: bool) -> CounterConfig {
        let mut c = CounterConfig::counting(event);
        c.modifiers.os = os;
        c
    }

    fn burn(ms: u64) {
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut x = 0u64;
        while std::time::Instant::now() < end {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn cycles_follow_thread_cpu_time_at_the_tsc_rate() {
        // 1 GHz: 1 event per ns. Counting starts inside `start`, so the
        // clock is read before it.
        let mut src = ThreadClockSource::new(1_000_000, PmuArch::Intel);
        let t0 = thread_cpu_ns();
        src.start(CounterIndex::Gp(0), &config(CYCLES, true));
        burn(20);
        let n = src.drain(CounterIndex::Gp(0));
        let t1 = thread_cpu_ns();
        assert!(n > 0);
        assert!(n <= t1 - t0, "{n} events in {} ns", t1 - t0);
        assert!(n >= (t1 - t0) / 2, "{n} events in {} ns", t1 - t0);
    }

    #[test]
    fn other_events_and_user_only_counters_count_nothing() {
        let mut src = ThreadClockSource::new(3_000_000, PmuArch::Intel);
        src.start(
            CounterIndex::Gp(1),
            &config(
                EventCode {
                    select: 0xC0,
                    umask: 0,
                },
                true,
            ),
        );
        src.start(CounterIndex::Gp(2), &config(CYCLES, false));
        burn(5);
        assert_eq!(src.drain(CounterIndex::Gp(1)), 0);
        assert_eq!(src.drain(CounterIndex::Gp(2)), 0);
    }

    #[test]
    fn fractional_events_are_not_lost() {
        let src = ThreadClockSource::new(1, PmuArch::Intel); // 1 kHz: 1 event per ms
        let mut frac = 0;
        let total: u64 = (0..1000).map(|_| src.events_for(1000, &mut frac)).sum();
        assert_eq!(total, 1); // 1000 x 1 us = 1 ms = 1 event
        assert_eq!(src.ns_for(1), 1_000_000);
    }

    #[test]
    fn stopped_and_unknown_counters_drain_zero() {
        let mut src = ThreadClockSource::new(3_000_000, PmuArch::Intel);
        assert_eq!(src.drain(CounterIndex::Gp(0)), 0);
        assert_eq!(src.drain(CounterIndex::Gp(200)), 0);
        src.start(CounterIndex::Fixed(1), &config(CYCLES, true));
        src.stop(CounterIndex::Fixed(1));
        burn(2);
        assert_eq!(src.drain(CounterIndex::Fixed(1)), 0);
    }

    #[test]
    fn amd_guests_count_core_cycles_0x76_and_not_intel_0x3c() {
        let mut src = ThreadClockSource::new(1_000_000, PmuArch::Amd);
        src.start(
            CounterIndex::Gp(0),
            &config(amd_events::CORE_CYCLES.code, true),
        );
        src.start(CounterIndex::Gp(1), &config(CYCLES, true));
        src.start(
            CounterIndex::Gp(2),
            &config(amd_events::RETIRED_INSTRUCTIONS.code, true),
        );
        burn(5);
        assert!(src.drain(CounterIndex::Gp(0)) > 0);
        assert_eq!(
            src.drain(CounterIndex::Gp(1)),
            0,
            "0x3C is not cycles on AMD"
        );
        assert_eq!(src.drain(CounterIndex::Gp(2)), 0);
    }
}
