//! Translation of a guest counter's event into a `perf_event_attr`.
//!
//! The guest programs architectural events (event select, unit mask) with
//! `USR`, `OS`, `edge`, `inv` and `cmask`. The multiplexer hands the backend
//! a [`HostEvent`](crate::host::HostEvent): the generic event and the
//! [`Modifiers`]. Per host PMU ([`PmuPlan`]):
//!
//! - **Intel core PMU** (`cpu`, or `cpu_core`/`cpu_atom` on hybrid parts; the
//!   host is the guest's vendor): a raw event on the PMU's own type number
//!   (`cpu` is `PERF_TYPE_RAW`, 4; hybrid PMUs have their own), `config =
//!   event | umask << 8 | edge << 18 | inv << 23 | cmask << 24` as in
//!   `IA32_PERFEVTSELx`. Reference cycles and topdown slots without
//!   edge/inv/cmask use Linux's fixed-counter pseudo-encodings `0x0300` and
//!   `0x0400` (they count at the TSC rate / in slots, as the guest's fixed
//!   counters 2 and 3 do; the raw `0x3C/01` counts at the bus/crystal rate).
//!   AnyThread is not passed on: a vCPU is one thread.
//! - **Other core PMU** (another vendor: raw encodings differ): the generic
//!   `PERF_TYPE_HARDWARE` event, with the PMU's type in `config[63:32]` on a
//!   hybrid host. Edge/inv/cmask cannot be expressed: the event is
//!   untranslatable rather than silently wrong. Topdown slots has no generic
//!   event.
//! - Both: `exclude_host = 1` (a guest counts guest execution only),
//!   `exclude_user = !USR`, `exclude_kernel = !OS` (with `exclude_host`, the
//!   kernel applies them to the guest's privilege level).
//! - **No hardware PMU** ([`PmuPlan::TaskClock`]): core and reference cycles
//!   come from the vCPU thread's task clock (`PERF_TYPE_SOFTWARE`,
//!   `PERF_COUNT_SW_TASK_CLOCK`, nanoseconds, converted to TSC cycles by the
//!   backend); nothing else is available. The task clock cannot tell guest
//!   user from guest kernel time, so all of it is attributed to CPL 0
//!   (documented approximation): a counter with `OS` counts it, one with
//!   `USR` alone counts nothing.
//!
//! A guest counter with neither `USR` nor `OS` counts nothing on every
//! plan: it translates to a *silent* spec that needs no host event.

use perf_event_open_sys::bindings as b;
use perf_event_open_sys::bindings::perf_event_attr;

use crate::host::{EventName, Modifiers};
use crate::source::EventCode;

/// How the backend counts events of one host PMU of the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PmuPlan {
    /// A hardware core PMU.
    Core {
        /// Its name in sysfs (`cpu`, `cpu_core`, `cpu_atom`).
        name: String,
        /// Its `type` in sysfs.
        perf_type: u32,
        /// Raw Intel encodings apply (same vendor as the guest).
        raw: bool,
        /// One of several core PMUs: generic events name their PMU.
        hybrid: bool,
    },
    /// Cycles from the thread's task clock (no hardware PMU).
    TaskClock,
}

/// What the host counter's value measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Events, reported as they are.
    Events,
    /// Nanoseconds of task clock, reported as TSC cycles.
    TaskClockNs,
}

/// A host event to open: the fields of `perf_event_attr` that matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttrSpec {
    pub type_: u32,
    pub config: u64,
    pub exclude_user: bool,
    pub exclude_kernel: bool,
    pub exclude_host: bool,
    pub exclude_guest: bool,
    pub unit: Unit,
    /// Counts nothing (neither USR nor OS): no host event is opened.
    pub silent: bool,
}

/// Sample period of an event nobody samples yet. Every event is opened as
/// a sampling event so `PERF_EVENT_IOC_PERIOD` can arm it later without a
/// re-open (the kernel refuses a period on a counting-only event).
pub const PERIOD_NEVER: u64 = 1 << 62;

impl AttrSpec {
    /// The `perf_event_attr`: disabled, sampling with period
    /// [`PERIOD_NEVER`], no sample records (no ring buffer is mapped),
    /// `read_format` with both times.
    pub fn to_attr(&self) -> perf_event_attr {
        let mut a = perf_event_attr {
            type_: self.type_,
            size: std::mem::size_of::<perf_event_attr>() as u32,
            config: self.config,
            read_format: super::sys::READ_FORMAT,
            ..Default::default()
        };
        a.sample_period = PERIOD_NEVER;
        a.set_disabled(1);
        a.set_exclude_user(self.exclude_user as u64);
        a.set_exclude_kernel(self.exclude_kernel as u64);
        a.set_exclude_hv(1);
        a.set_exclude_host(self.exclude_host as u64);
        a.set_exclude_guest(self.exclude_guest as u64);
        a
    }
}

/// The SDM encoding of an architectural event.
pub fn arch_code(name: EventName) -> EventCode {
    let (select, umask) = match name {
        EventName::Cycles => (0x3C, 0x00),
        EventName::Instructions => (0xC0, 0x00),
        EventName::RefCycles => (0x3C, 0x01),
        EventName::CacheReferences => (0x2E, 0x4F),
        EventName::CacheMisses => (0x2E, 0x41),
        EventName::Branches => (0xC4, 0x00),
        EventName::BranchMisses => (0xC5, 0x00),
        EventName::TopdownSlots => (0xA4, 0x01),
    };
    EventCode { select, umask }
}

/// `config` of a raw Intel event: the `IA32_PERFEVTSELx` layout without
/// USR/OS/INT/EN (the kernel sets those).
pub fn raw_config(code: EventCode, m: &Modifiers) -> u64 {
    code.select as u64
        | (code.umask as u64) << 8
        | (m.edge as u64) << 18
        | (m.inv as u64) << 23
        | (m.cmask as u64) << 24
}

fn edge_inv_cmask(m: &Modifiers) -> bool {
    m.edge || m.inv || m.cmask != 0
}

/// The generic `PERF_TYPE_HARDWARE` id of an event, if there is one.
pub fn generic_id(name: EventName) -> Option<u64> {
    Some(match name {
        EventName::Cycles => b::PERF_COUNT_HW_CPU_CYCLES,
        EventName::Instructions => b::PERF_COUNT_HW_INSTRUCTIONS,
        EventName::RefCycles => b::PERF_COUNT_HW_REF_CPU_CYCLES,
        EventName::CacheReferences => b::PERF_COUNT_HW_CACHE_REFERENCES,
        EventName::CacheMisses => b::PERF_COUNT_HW_CACHE_MISSES,
        EventName::Branches => b::PERF_COUNT_HW_BRANCH_INSTRUCTIONS,
        EventName::BranchMisses => b::PERF_COUNT_HW_BRANCH_MISSES,
        EventName::TopdownSlots => return None,
    } as u64)
}

/// Can `plan` count `name` at all (with plain modifiers)?
pub fn supports(plan: &PmuPlan, name: EventName) -> bool {
    translate(plan, name, &Modifiers::plain()).is_some()
}

/// The host event for guest event `name` with modifiers `m` on `plan`;
/// `None`: this host cannot count it.
pub fn translate(plan: &PmuPlan, name: EventName, m: &Modifiers) -> Option<AttrSpec> {
    let silent = !m.usr && !m.os;
    match plan {
        PmuPlan::TaskClock => {
            if !matches!(name, EventName::Cycles | EventName::RefCycles) || edge_inv_cmask(m) {
                return None;
            }
            Some(AttrSpec {
                type_: b::PERF_TYPE_SOFTWARE,
                config: b::PERF_COUNT_SW_TASK_CLOCK as u64,
                // See `sampling` in the backend docs: a sampling task clock
                // that excludes a privilege level skips overflows.
                exclude_user: false,
                exclude_kernel: false,
                exclude_host: false,
                exclude_guest: false,
                unit: Unit::TaskClockNs,
                // Guest time is attributed to CPL 0 (see the module docs).
                silent: !m.os,
            })
        }
        PmuPlan::Core {
            perf_type,
            raw,
            hybrid,
            ..
        } => {
            let (type_, config) = if *raw {
                let config = match name {
                    EventName::RefCycles if !edge_inv_cmask(m) => 0x0300,
                    EventName::TopdownSlots if !edge_inv_cmask(m) => 0x0400,
                    _ => raw_config(arch_code(name), m),
                };
                (*perf_type, config)
            } else {
                if edge_inv_cmask(m) {
                    return None;
                }
                let id = generic_id(name)?;
                let ext = if *hybrid {
                    (*perf_type as u64) << b::PERF_PMU_TYPE_SHIFT
                } else {
                    0
                };
                (b::PERF_TYPE_HARDWARE, ext | id)
            };
            Some(AttrSpec {
                type_,
                config,
                exclude_user: !m.usr,
                exclude_kernel: !m.os,
                exclude_host: true,
                exclude_guest: false,
                unit: Unit::Events,
                silent,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_layout() {
        let m = Modifiers {
            usr: true,
            os: false,
            edge: true,
            inv: true,
            cmask: 0xAB,
            any_thread: true,
        };
        let c = raw_config(
            EventCode {
                select: 0x2E,
                umask: 0x41,
            },
            &m,
        );
        assert_eq!(c, 0xAB_84_41_2E);
    }
}
