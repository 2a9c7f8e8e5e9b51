//! Host events: the generic events a host PMU can count for a guest, and the
//! translation of a guest counter's configuration into one.
//!
//! The guest programs architectural events (SDM Vol. 3B, table "UMask and
//! Event Select Encodings for Pre-Defined Architectural Performance Events").
//! A host backend counts *generic* events (`cycles`, `instructions`, ...), the
//! same names `perf list` uses, so a perf backend can open
//! `PERF_TYPE_HARDWARE` events and the simulated backend can look rates up in
//! a profile. Events that are not architectural translate to `None`: the
//! counter counts nothing and is reported unavailable (never silently).

use std::fmt;
use std::str::FromStr;

use crate::config::PmuArch;
use crate::source::{CounterConfig, CounterIndex, EventCode};

/// A generic host event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventName {
    Cycles,
    Instructions,
    RefCycles,
    CacheReferences,
    CacheMisses,
    Branches,
    BranchMisses,
    TopdownSlots,
}

impl EventName {
    /// Every generic event, in a fixed order (`as usize` indexes it).
    pub const ALL: [EventName; 8] = [
        EventName::Cycles,
        EventName::Instructions,
        EventName::RefCycles,
        EventName::CacheReferences,
        EventName::CacheMisses,
        EventName::Branches,
        EventName::BranchMisses,
        EventName::TopdownSlots,
    ];

    /// The name `perf list` (and the profiles) use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Cycles => "cycles",
            EventName::Instructions => "instructions",
            EventName::RefCycles => "ref-cycles",
            EventName::CacheReferences => "cache-references",
            EventName::CacheMisses => "cache-misses",
            EventName::Branches => "branches",
            EventName::BranchMisses => "branch-misses",
            EventName::TopdownSlots => "topdown-slots",
        }
    }

    /// Position in [`EventName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The architectural event of a guest event code, if it is one.
    pub fn from_code(code: EventCode) -> Option<EventName> {
        Some(match (code.select, code.umask) {
            (0x3C, 0x00) => EventName::Cycles,
            (0xC0, 0x00) => EventName::Instructions,
            (0x3C, 0x01) => EventName::RefCycles,
            // Pseudo-encoding of fixed counter 2 used by Linux.
            (0x00, 0x03) => EventName::RefCycles,
            (0x2E, 0x4F) => EventName::CacheReferences,
            (0x2E, 0x41) => EventName::CacheMisses,
            (0xC4, 0x00) => EventName::Branches,
            (0xC5, 0x00) => EventName::BranchMisses,
            (0xA4, 0x01) => EventName::TopdownSlots,
            // Pseudo-encoding of fixed counter 3 used by Linux.
            (0x00, 0x04) => EventName::TopdownSlots,
            _ => return None,
        })
    }

    /// The event an architectural fixed counter counts.
    pub fn of_fixed(n: u8) -> Option<EventName> {
        Some(match n {
            0 => EventName::Instructions,
            1 => EventName::Cycles,
            2 => EventName::RefCycles,
            3 => EventName::TopdownSlots,
            _ => return None,
        })
    }

    /// The generic event of an AMD guest event code, from the AMD events
    /// table ([`crate::arch::amd::events`]).
    pub fn from_amd_code(code: EventCode) -> Option<EventName> {
        let event = crate::arch::amd::events::lookup(code)?;
        event.name.parse().ok()
    }

    /// What guest `counter` of a guest PMU of architecture `arch`,
    /// programmed with `config`, counts.
    pub fn of_guest_counter(
        arch: PmuArch,
        counter: CounterIndex,
        config: &CounterConfig,
    ) -> Option<EventName> {
        match (arch, counter) {
            (PmuArch::Amd, CounterIndex::Gp(_)) => EventName::from_amd_code(config.event),
            _ => EventName::of_counter(counter, config),
        }
    }

    /// What Intel guest `counter` programmed with `config` counts: fixed
    /// counters count their architectural event whatever `config.event` says.
    pub fn of_counter(counter: CounterIndex, config: &CounterConfig) -> Option<EventName> {
        match counter {
            CounterIndex::Fixed(n) => EventName::of_fixed(n),
            CounterIndex::Gp(_) => EventName::from_code(config.event),
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an event name no profile may use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event `{0}`")]
pub struct UnknownEvent(pub String);

impl FromStr for EventName {
    type Err = UnknownEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventName::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.to_string()))
    }
}

/// Privilege and edge/threshold modifiers the guest asked for. The perf
/// backend encodes them in `perf_event_attr` (`exclude_user`,
/// `exclude_kernel`, raw `config` bits); the simulated backend honours only
/// "counts at no privilege level" (counts zero) and labels the rest
/// approximate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Modifiers {
    pub usr: bool,
    pub os: bool,
    pub edge: bool,
    pub inv: bool,
    pub cmask: u8,
    pub any_thread: bool,
}

impl Modifiers {
    /// The modifiers of a guest configuration.
    pub fn of(config: &CounterConfig) -> Modifiers {
        Modifiers {
            usr: config.usr,
            os: config.os,
            edge: config.edge,
            inv: config.inv,
            cmask: config.cmask,
            any_thread: config.any_thread,
        }
    }

    /// Counting at both privilege levels with no edge/threshold tricks.
    pub fn plain() -> Modifiers {
        Modifiers {
            usr: true,
            os: true,
            ..Modifiers::default()
        }
    }

    /// Anything beyond a privilege filter.
    pub fn is_exotic(&self) -> bool {
        self.edge || self.inv || self.cmask != 0 || self.any_thread
    }
}

/// A host counter to open: which event, on which host PMU, on which counters
/// of that PMU it may be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostEvent {
    pub name: EventName,
    /// Index of the host PMU in the topology (profile order).
    pub pmu: usize,
    /// Counters of the PMU the event may use (bit i = counter i, general
    /// purpose counters first, then fixed counters). Ignored on software PMUs.
    pub mask: u32,
    pub modifiers: Modifiers,
}

#[cfg(test)]
mod guest_arch_tests {
    use super::*;
    use crate::arch::amd::events::AMD_EVENTS;

    #[test]
    fn amd_events_translate_by_their_table_names() {
        for e in AMD_EVENTS {
            let n = EventName::from_amd_code(e.code).expect(e.name);
            assert_eq!(n.as_str(), e.name);
        }
        let cycles = CounterConfig::counting(EventCode {
            select: 0x76,
            umask: 0,
        });
        let gp = CounterIndex::Gp(0);
        assert_eq!(
            EventName::of_guest_counter(PmuArch::Amd, gp, &cycles),
            Some(EventName::Cycles)
        );
        assert_eq!(
            EventName::of_guest_counter(PmuArch::Intel, gp, &cycles),
            None
        );
        let intel_cycles = CounterConfig::counting(EventCode {
            select: 0x3C,
            umask: 0,
        });
        assert_eq!(
            EventName::of_guest_counter(PmuArch::Amd, gp, &intel_cycles),
            None
        );
    }
}
