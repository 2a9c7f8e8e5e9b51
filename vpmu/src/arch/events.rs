//! The architectural performance events (SDM Vol. 3B, "Pre-defined
//! Architectural Performance Events"). The index of an event in
//! [`ARCH_EVENTS`] is its bit in `CPUID.0AH:EBX` (bit set = event
//! unavailable), so the order is fixed by the SDM.
//!
//! This is the one table of architectural event codes, names and
//! fixed-counter bindings: the generic host events
//! ([`crate::event::EventName`]) are its rows, and the AMD table
//! ([`crate::arch::amd::events`]) maps onto them by name.

use crate::source::EventCode;
use serde::{Deserialize, Serialize};

/// One architectural event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchEvent {
    /// Bit in `CPUID.0AH:EBX`.
    pub index: u8,
    /// Name as Linux perf names the generic event.
    pub name: &'static str,
    /// Event select and unit mask of `IA32_PERFEVTSELx`.
    pub code: EventCode,
    /// Fixed-function counter that counts the same event, if any.
    pub fixed: Option<u8>,
    /// First architectural PMU version whose `CPUID.0AH:EBX` length covers
    /// the event.
    pub since_version: u8,
}

const fn ev(
    index: u8,
    name: &'static str,
    select: u8,
    umask: u8,
    fixed: Option<u8>,
    since_version: u8,
) -> ArchEvent {
    ArchEvent {
        index,
        name,
        code: EventCode {
            select: select as u16,
            umask,
        },
        fixed,
        since_version,
    }
}

/// `UnHalted Core Cycles`, event 3CH umask 00H.
pub const CORE_CYCLES: ArchEvent = ev(0, "cycles", 0x3C, 0x00, Some(1), 1);
/// `Instructions Retired`, event C0H umask 00H.
pub const INSTRUCTIONS_RETIRED: ArchEvent = ev(1, "instructions", 0xC0, 0x00, Some(0), 1);
/// `UnHalted Reference Cycles`, event 3CH umask 01H.
pub const REFERENCE_CYCLES: ArchEvent = ev(2, "ref-cycles", 0x3C, 0x01, Some(2), 1);
/// `LLC Reference`, event 2EH umask 4FH.
pub const LLC_REFERENCES: ArchEvent = ev(3, "cache-references", 0x2E, 0x4F, None, 1);
/// `LLC Misses`, event 2EH umask 41H.
pub const LLC_MISSES: ArchEvent = ev(4, "cache-misses", 0x2E, 0x41, None, 1);
/// `Branch Instruction Retired`, event C4H umask 00H.
pub const BRANCHES_RETIRED: ArchEvent = ev(5, "branches", 0xC4, 0x00, None, 1);
/// `Branch Misses Retired`, event C5H umask 00H.
pub const BRANCH_MISSES_RETIRED: ArchEvent = ev(6, "branch-misses", 0xC5, 0x00, None, 1);
/// `Topdown Slots`, event A4H umask 01H (version 5, `IA32_FIXED_CTR3`).
pub const TOPDOWN_SLOTS: ArchEvent = ev(7, "topdown-slots", 0xA4, 0x01, Some(3), 5);

/// The architectural events, indexed by their `CPUID.0AH:EBX` bit.
pub const ARCH_EVENTS: [ArchEvent; 8] = [
    CORE_CYCLES,
    INSTRUCTIONS_RETIRED,
    REFERENCE_CYCLES,
    LLC_REFERENCES,
    LLC_MISSES,
    BRANCHES_RETIRED,
    BRANCH_MISSES_RETIRED,
    TOPDOWN_SLOTS,
];

/// Events fixed counters 0..=3 count, in counter order. Fixed counter 2
/// (reference cycles at TSC rate) is reported to sources as the
/// architectural reference-cycles event 3CH/01H (Linux uses the pseudo
/// encoding 00H/03H for it, which is not a real event select).
pub const FIXED_EVENTS: [ArchEvent; 4] = [
    INSTRUCTIONS_RETIRED,
    CORE_CYCLES,
    REFERENCE_CYCLES,
    TOPDOWN_SLOTS,
];

/// Length of the `CPUID.0AH:EBX` bit vector (`CPUID.0AH:EAX[31:24]`) for a
/// PMU version: 7 events for versions 1 to 4, 8 (with topdown slots) for
/// version 5.
pub fn ebx_length(version: u8) -> u8 {
    ARCH_EVENTS
        .iter()
        .filter(|e| e.since_version <= version)
        .count() as u8
}

/// The architectural event with this event select and unit mask, if any.
pub fn lookup(code: EventCode) -> Option<&'static ArchEvent> {
    ARCH_EVENTS.iter().find(|e| e.code == code)
}

/// The architectural event behind one of Linux's pseudo-encodings of fixed
/// counters: event select 00H with unit mask 03H (fixed counter 2,
/// reference cycles) or 04H (fixed counter 3, topdown slots). They are not
/// real event selects; a guest running Linux may still program them.
pub fn lookup_linux_pseudo(code: EventCode) -> Option<&'static ArchEvent> {
    match (code.select, code.umask) {
        (0x00, 0x03) => Some(&REFERENCE_CYCLES),
        (0x00, 0x04) => Some(&TOPDOWN_SLOTS),
        _ => None,
    }
}

/// The event a fixed counter counts.
pub fn fixed_event(counter: u8) -> Option<&'static ArchEvent> {
    FIXED_EVENTS.get(usize::from(counter))
}

/// A set of architectural events, as a bitmask over [`ARCH_EVENTS`] indices
/// (the layout of `CPUID.0AH:EBX`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArchEvents(pub u32);

impl ArchEvents {
    /// No event.
    pub const NONE: Self = Self(0);
    /// Every event of the table.
    pub const ALL: Self = Self((1 << ARCH_EVENTS.len()) - 1);

    /// The set holding just `event`.
    pub const fn of(event: &ArchEvent) -> Self {
        Self(1 << event.index)
    }

    /// This set plus `event`.
    pub const fn with(self, event: &ArchEvent) -> Self {
        Self(self.0 | (1 << event.index))
    }

    /// This set without `event`.
    pub const fn without(self, event: &ArchEvent) -> Self {
        Self(self.0 & !(1 << event.index))
    }

    /// Whether `event` is in the set.
    pub const fn contains(self, event: &ArchEvent) -> bool {
        self.0 & (1 << event.index) != 0
    }

    /// The events of the set.
    pub fn iter(self) -> impl Iterator<Item = &'static ArchEvent> {
        ARCH_EVENTS.iter().filter(move |e| self.contains(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_cpuid_bit() {
        for (i, e) in ARCH_EVENTS.iter().enumerate() {
            assert_eq!(usize::from(e.index), i);
        }
        assert_eq!(
            INSTRUCTIONS_RETIRED.code,
            EventCode {
                select: 0xC0,
                umask: 0
            }
        );
        assert_eq!(
            REFERENCE_CYCLES.code,
            EventCode {
                select: 0x3C,
                umask: 1
            }
        );
        assert_eq!(
            TOPDOWN_SLOTS.code,
            EventCode {
                select: 0xA4,
                umask: 1
            }
        );
    }

    #[test]
    fn fixed_binding() {
        assert_eq!(fixed_event(0).unwrap().name, "instructions");
        assert_eq!(fixed_event(1).unwrap().name, "cycles");
        assert_eq!(fixed_event(2).unwrap().name, "ref-cycles");
        assert_eq!(fixed_event(3).unwrap().name, "topdown-slots");
        assert!(fixed_event(4).is_none());
        for (i, e) in FIXED_EVENTS.iter().enumerate() {
            assert_eq!(e.fixed, Some(i as u8));
        }
    }

    #[test]
    fn lengths_and_lookup() {
        assert_eq!(ebx_length(1), 7);
        assert_eq!(ebx_length(4), 7);
        assert_eq!(ebx_length(5), 8);
        assert_eq!(
            lookup(EventCode {
                select: 0x2E,
                umask: 0x41
            })
            .unwrap()
            .name,
            "cache-misses"
        );
        assert!(lookup(EventCode {
            select: 0x2E,
            umask: 0x42
        })
        .is_none());
    }

    #[test]
    fn bitmask() {
        let s = ArchEvents::NONE.with(&LLC_MISSES).with(&TOPDOWN_SLOTS);
        assert_eq!(s.0, 0x90);
        assert!(s.contains(&LLC_MISSES) && !s.contains(&CORE_CYCLES));
        assert_eq!(s.iter().count(), 2);
        assert_eq!(ArchEvents::ALL.0, 0xFF);
        assert_eq!(ArchEvents::of(&CORE_CYCLES).0, 1);
    }
}
