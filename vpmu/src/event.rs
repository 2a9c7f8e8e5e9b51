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
//!
//! The generic events are the rows of the architectural events table
//! ([`crate::arch::events::ARCH_EVENTS`]), in its order: names, event codes
//! and fixed-counter bindings all come from there ([`EventName::arch`]).

use std::fmt;
use std::str::FromStr;

use crate::arch::events::{self, ArchEvent, ARCH_EVENTS};
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
    /// Every generic event, in the order of [`ARCH_EVENTS`] (`as usize`
    /// indexes both).
    pub const ALL: [EventName; ARCH_EVENTS.len()] = [
        EventName::Cycles,
        EventName::Instructions,
        EventName::RefCycles,
        EventName::CacheReferences,
        EventName::CacheMisses,
        EventName::Branches,
        EventName::BranchMisses,
        EventName::TopdownSlots,
    ];

    /// The architectural event this generic event is: its row of
    /// [`ARCH_EVENTS`], the one table of codes, names and fixed counters.
    pub fn arch(self) -> &'static ArchEvent {
        &ARCH_EVENTS[self.index()]
    }

    /// The generic event of an architectural event.
    pub fn of_arch(event: &ArchEvent) -> EventName {
        EventName::ALL[usize::from(event.index)]
    }

    /// The name `perf list` (and the profiles) use.
    pub fn as_str(self) -> &'static str {
        self.arch().name
    }

    /// Position in [`EventName::ALL`] (and in [`ARCH_EVENTS`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The architectural event of a guest event code, if it is one; Linux's
    /// pseudo-encodings of fixed counters 2 and 3 included.
    pub fn from_code(code: EventCode) -> Option<EventName> {
        events::lookup(code)
            .or_else(|| events::lookup_linux_pseudo(code))
            .map(EventName::of_arch)
    }

    /// The event an architectural fixed counter counts.
    pub fn of_fixed(n: u8) -> Option<EventName> {
        events::fixed_event(n).map(EventName::of_arch)
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

pub use crate::source::Modifiers;

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
    fn generic_events_are_the_architectural_table() {
        for (i, e) in EventName::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(EventName::of_arch(e.arch()), e);
            assert_eq!(e.as_str().parse::<EventName>(), Ok(e));
            assert_eq!(EventName::from_code(e.arch().code), Some(e));
        }
        assert_eq!(EventName::Instructions.as_str(), "instructions");
        assert_eq!(EventName::of_fixed(1), Some(EventName::Cycles));
        assert_eq!(EventName::of_fixed(4), None);
        let pseudo = |umask| EventCode { select: 0, umask };
        assert_eq!(EventName::from_code(pseudo(3)), Some(EventName::RefCycles));
        assert_eq!(
            EventName::from_code(pseudo(4)),
            Some(EventName::TopdownSlots)
        );
        assert_eq!(EventName::from_code(pseudo(5)), None);
    }

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
