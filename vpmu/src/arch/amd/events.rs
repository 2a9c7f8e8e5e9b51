//! The AMD core events a guest's perf driver programs for the generic perf
//! events (Linux `amd_zen1_perfmon_event_map` / `amd_perfmon_event_map`,
//! PPR for family 17h/19h "Core Performance Monitor Counters"). AMD has no
//! architectural event list and no CPUID availability mask: which of these
//! count on a host is shown by the statistics API (`available` per counter).

use crate::source::EventCode;

/// One AMD core event with the perf name of the generic event it implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmdEvent {
    /// Name as Linux perf names the generic event.
    pub name: &'static str,
    /// `EventSelect[11:0]` and `UnitMask` of `PERF_CTL`.
    pub code: EventCode,
}

const fn ev(name: &'static str, select: u16, umask: u8) -> AmdEvent {
    AmdEvent {
        name,
        code: EventCode { select, umask },
    }
}

/// `Cycles not in Halt` (PMCx076).
pub const CORE_CYCLES: AmdEvent = ev("cycles", 0x76, 0x00);
/// `Retired Instructions` (PMCx0C0).
pub const RETIRED_INSTRUCTIONS: AmdEvent = ev("instructions", 0xC0, 0x00);
/// `Retired Branch Instructions` (PMCx0C2).
pub const RETIRED_BRANCHES: AmdEvent = ev("branches", 0xC2, 0x00);
/// `Retired Branch Instructions Mispredicted` (PMCx0C3).
pub const RETIRED_BRANCH_MISSES: AmdEvent = ev("branch-misses", 0xC3, 0x00);
/// `Requests to L2 Group 1`, all (PMCx060 umask FFh): Linux's Zen
/// `cache-references`.
pub const L2_REQUESTS: AmdEvent = ev("cache-references", 0x60, 0xFF);
/// `Core to L2 Cacheable Request Access Status`, misses (PMCx064 umask 09h):
/// Linux's Zen `cache-misses`.
pub const L2_MISSES: AmdEvent = ev("cache-misses", 0x64, 0x09);

/// The AMD events this model names and the host side translates.
pub const AMD_EVENTS: [AmdEvent; 6] = [
    CORE_CYCLES,
    RETIRED_INSTRUCTIONS,
    RETIRED_BRANCHES,
    RETIRED_BRANCH_MISSES,
    L2_REQUESTS,
    L2_MISSES,
];

/// The named AMD event with event select and unit mask `code`, if any.
pub fn lookup(code: EventCode) -> Option<&'static AmdEvent> {
    AMD_EVENTS.iter().find(|e| e.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_unique() {
        for (i, a) in AMD_EVENTS.iter().enumerate() {
            for b in &AMD_EVENTS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.code, b.code);
            }
        }
        assert_eq!(
            lookup(EventCode {
                select: 0x76,
                umask: 0
            }),
            Some(&CORE_CYCLES)
        );
        assert_eq!(
            lookup(EventCode {
                select: 0x176,
                umask: 0
            }),
            None
        );
    }
}
