//! The architectural PMU MSRs (SDM Vol. 4, "Architectural MSRs"), their field
//! layout, and the MSR ranges a VMM must trap to emulate them.

use crate::config::{MAX_FIXED_COUNTERS, MAX_GP_COUNTERS};
use crate::source::EventCode;
use serde::{Deserialize, Serialize};

/// `IA32_PMC0`: first general-purpose counter (legacy 32-bit write alias).
pub const IA32_PMC0: u32 = 0xC1;
/// `IA32_PERFEVTSEL0`: first event select.
pub const IA32_PERFEVTSEL0: u32 = 0x186;
/// `IA32_PERF_CAPABILITIES` (exists if `CPUID.01H:ECX.PDCM`).
pub const IA32_PERF_CAPABILITIES: u32 = 0x345;
/// `IA32_FIXED_CTR0`: first fixed-function counter.
pub const IA32_FIXED_CTR0: u32 = 0x309;
/// `IA32_FIXED_CTR_CTRL` (a.k.a. `IA32_PERF_FIXED_CTR_CTRL`), version 2+.
pub const IA32_FIXED_CTR_CTRL: u32 = 0x38D;
/// `IA32_PERF_GLOBAL_STATUS`, version 2+, read-only.
pub const IA32_PERF_GLOBAL_STATUS: u32 = 0x38E;
/// `IA32_PERF_GLOBAL_CTRL`, version 2+.
pub const IA32_PERF_GLOBAL_CTRL: u32 = 0x38F;
/// `IA32_PERF_GLOBAL_OVF_CTRL`, version 2+; named
/// `IA32_PERF_GLOBAL_STATUS_RESET` from version 4.
pub const IA32_PERF_GLOBAL_OVF_CTRL: u32 = 0x390;
/// Version 4 name of [`IA32_PERF_GLOBAL_OVF_CTRL`].
pub const IA32_PERF_GLOBAL_STATUS_RESET: u32 = IA32_PERF_GLOBAL_OVF_CTRL;
/// `IA32_PERF_GLOBAL_STATUS_SET`, version 4+.
pub const IA32_PERF_GLOBAL_STATUS_SET: u32 = 0x391;
/// `IA32_PERF_GLOBAL_INUSE`, version 4+, read-only.
pub const IA32_PERF_GLOBAL_INUSE: u32 = 0x392;
/// `IA32_A_PMC0`: first full-width counter alias (exists if
/// `IA32_PERF_CAPABILITIES.FW_WRITE`).
pub const IA32_A_PMC0: u32 = 0x4C1;

/// `IA32_PERF_CAPABILITIES.FW_WRITE` (bit 13): full-width writes to
/// `IA32_A_PMCx`.
pub const PERF_CAP_FW_WRITE: u64 = 1 << 13;

/// `IA32_PERFEVTSELx` fields.
pub mod evtsel {
    /// Event select, bits 7:0.
    pub const EVENT_MASK: u64 = 0xFF;
    /// Unit mask, bits 15:8.
    pub const UMASK_SHIFT: u32 = 8;
    /// `USR`: count at CPL > 0.
    pub const USR: u64 = 1 << 16;
    /// `OS`: count at CPL 0.
    pub const OS: u64 = 1 << 17;
    /// `E`: edge detect.
    pub const EDGE: u64 = 1 << 18;
    /// `PC`: pin control.
    pub const PC: u64 = 1 << 19;
    /// `INT`: APIC interrupt (PMI) on overflow.
    pub const INT: u64 = 1 << 20;
    /// `AnyThread` (version 3+).
    pub const ANY_THREAD: u64 = 1 << 21;
    /// `EN`: enable counter.
    pub const EN: u64 = 1 << 22;
    /// `INV`: invert counter mask.
    pub const INV: u64 = 1 << 23;
    /// Counter mask `CMASK`, bits 31:24.
    pub const CMASK_SHIFT: u32 = 24;
    /// Bits defined by the architecture with `AnyThread` (version 3+).
    pub const DEFINED: u64 = 0xFFFF_FFFF;
}

/// `IA32_FIXED_CTR_CTRL` nibble fields (shifted by `4 * counter`).
pub mod fixed_ctrl {
    /// `ENi` bit 0: count at CPL 0 (OS).
    pub const OS: u64 = 1 << 0;
    /// `ENi` bit 1: count at CPL > 0 (USR).
    pub const USR: u64 = 1 << 1;
    /// `AnyThread` (version 3+).
    pub const ANY_THREAD: u64 = 1 << 2;
    /// `PMI` on overflow.
    pub const PMI: u64 = 1 << 3;
    /// The 2-bit `ENi` field.
    pub const EN_MASK: u64 = OS | USR;
    /// Bits per counter.
    pub const STRIDE: u32 = 4;
}

/// Bit of `IA32_PERF_GLOBAL_{CTRL,STATUS,...}` for fixed counter 0.
pub const GLOBAL_FIXED_SHIFT: u32 = 32;
/// `IA32_PERF_GLOBAL_STATUS.OvfBuf` (DS buffer overflow; never set here).
pub const GLOBAL_STATUS_OVF_BUF: u64 = 1 << 62;
/// `IA32_PERF_GLOBAL_STATUS.CondChgd` (never set here).
pub const GLOBAL_STATUS_COND_CHGD: u64 = 1 << 63;
/// `IA32_PERF_GLOBAL_INUSE.PMI_InUse` (bit 63).
pub const GLOBAL_INUSE_PMI: u64 = 1 << 63;

/// An `IA32_PERFEVTSELx` value, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSelect {
    pub event: u8,
    pub umask: u8,
    pub usr: bool,
    pub os: bool,
    pub edge: bool,
    pub pc: bool,
    pub int: bool,
    pub any_thread: bool,
    pub en: bool,
    pub inv: bool,
    pub cmask: u8,
}

impl EventSelect {
    /// Decodes the architectural fields of bits 31:0 (upper bits ignored).
    pub fn decode(v: u64) -> Self {
        Self {
            event: (v & evtsel::EVENT_MASK) as u8,
            umask: (v >> evtsel::UMASK_SHIFT) as u8,
            usr: v & evtsel::USR != 0,
            os: v & evtsel::OS != 0,
            edge: v & evtsel::EDGE != 0,
            pc: v & evtsel::PC != 0,
            int: v & evtsel::INT != 0,
            any_thread: v & evtsel::ANY_THREAD != 0,
            en: v & evtsel::EN != 0,
            inv: v & evtsel::INV != 0,
            cmask: (v >> evtsel::CMASK_SHIFT) as u8,
        }
    }

    /// Encodes back into an `IA32_PERFEVTSELx` value.
    pub fn encode(&self) -> u64 {
        let flag = |b: bool, bit: u64| if b { bit } else { 0 };
        u64::from(self.event)
            | u64::from(self.umask) << evtsel::UMASK_SHIFT
            | flag(self.usr, evtsel::USR)
            | flag(self.os, evtsel::OS)
            | flag(self.edge, evtsel::EDGE)
            | flag(self.pc, evtsel::PC)
            | flag(self.int, evtsel::INT)
            | flag(self.any_thread, evtsel::ANY_THREAD)
            | flag(self.en, evtsel::EN)
            | flag(self.inv, evtsel::INV)
            | u64::from(self.cmask) << evtsel::CMASK_SHIFT
    }

    /// Event select and unit mask.
    pub fn code(&self) -> EventCode {
        EventCode {
            select: u16::from(self.event),
            umask: self.umask,
        }
    }
}

/// One counter's nibble of `IA32_FIXED_CTR_CTRL`, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedCtrl {
    pub os: bool,
    pub usr: bool,
    pub any_thread: bool,
    pub pmi: bool,
}

impl FixedCtrl {
    /// The nibble of fixed counter `counter` in an `IA32_FIXED_CTR_CTRL` value.
    pub fn nibble(ctrl: u64, counter: u8) -> u64 {
        (ctrl >> (fixed_ctrl::STRIDE * u32::from(counter))) & 0xF
    }

    /// Decodes the nibble of fixed counter `counter`.
    pub fn decode(ctrl: u64, counter: u8) -> Self {
        let n = Self::nibble(ctrl, counter);
        Self {
            os: n & fixed_ctrl::OS != 0,
            usr: n & fixed_ctrl::USR != 0,
            any_thread: n & fixed_ctrl::ANY_THREAD != 0,
            pmi: n & fixed_ctrl::PMI != 0,
        }
    }

    /// Encodes into a nibble at the position of fixed counter `counter`.
    pub fn encode(&self, counter: u8) -> u64 {
        let n = u64::from(self.os)
            | u64::from(self.usr) << 1
            | u64::from(self.any_thread) << 2
            | u64::from(self.pmi) << 3;
        n << (fixed_ctrl::STRIDE * u32::from(counter))
    }
}

/// An architectural PMU MSR, by role. Covers the maximum configuration
/// (8 general-purpose, 4 fixed counters); whether the configured PMU has it
/// is decided by [`crate::guest::GuestPmu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PmuMsr {
    /// `IA32_PMCx` (legacy: writes sign-extend bit 31).
    Pmc(u8),
    /// `IA32_A_PMCx` (full-width writes).
    APmc(u8),
    /// `IA32_PERFEVTSELx`.
    EvtSel(u8),
    /// `IA32_FIXED_CTRx`.
    FixedCtr(u8),
    /// `IA32_FIXED_CTR_CTRL`.
    FixedCtrCtrl,
    /// `IA32_PERF_GLOBAL_STATUS`.
    GlobalStatus,
    /// `IA32_PERF_GLOBAL_CTRL`.
    GlobalCtrl,
    /// `IA32_PERF_GLOBAL_OVF_CTRL` / `IA32_PERF_GLOBAL_STATUS_RESET`.
    GlobalOvfCtrl,
    /// `IA32_PERF_GLOBAL_STATUS_SET`.
    GlobalStatusSet,
    /// `IA32_PERF_GLOBAL_INUSE`.
    GlobalInuse,
    /// `IA32_PERF_CAPABILITIES`.
    PerfCapabilities,
}

const GP_N: u32 = MAX_GP_COUNTERS as u32;
const FIXED_N: u32 = MAX_FIXED_COUNTERS as u32;

impl PmuMsr {
    /// The role of MSR `index`, or `None` for an MSR outside the PMU space.
    pub fn decode(index: u32) -> Option<Self> {
        let off = |base: u32, n: u32| index.checked_sub(base).filter(|o| *o < n).map(|o| o as u8);
        if let Some(i) = off(IA32_PMC0, GP_N) {
            return Some(Self::Pmc(i));
        }
        if let Some(i) = off(IA32_A_PMC0, GP_N) {
            return Some(Self::APmc(i));
        }
        if let Some(i) = off(IA32_PERFEVTSEL0, GP_N) {
            return Some(Self::EvtSel(i));
        }
        if let Some(i) = off(IA32_FIXED_CTR0, FIXED_N) {
            return Some(Self::FixedCtr(i));
        }
        Some(match index {
            IA32_FIXED_CTR_CTRL => Self::FixedCtrCtrl,
            IA32_PERF_GLOBAL_STATUS => Self::GlobalStatus,
            IA32_PERF_GLOBAL_CTRL => Self::GlobalCtrl,
            IA32_PERF_GLOBAL_OVF_CTRL => Self::GlobalOvfCtrl,
            IA32_PERF_GLOBAL_STATUS_SET => Self::GlobalStatusSet,
            IA32_PERF_GLOBAL_INUSE => Self::GlobalInuse,
            IA32_PERF_CAPABILITIES => Self::PerfCapabilities,
            _ => return None,
        })
    }

    /// The MSR index.
    pub fn index(self) -> u32 {
        match self {
            Self::Pmc(i) => IA32_PMC0 + u32::from(i),
            Self::APmc(i) => IA32_A_PMC0 + u32::from(i),
            Self::EvtSel(i) => IA32_PERFEVTSEL0 + u32::from(i),
            Self::FixedCtr(i) => IA32_FIXED_CTR0 + u32::from(i),
            Self::FixedCtrCtrl => IA32_FIXED_CTR_CTRL,
            Self::GlobalStatus => IA32_PERF_GLOBAL_STATUS,
            Self::GlobalCtrl => IA32_PERF_GLOBAL_CTRL,
            Self::GlobalOvfCtrl => IA32_PERF_GLOBAL_OVF_CTRL,
            Self::GlobalStatusSet => IA32_PERF_GLOBAL_STATUS_SET,
            Self::GlobalInuse => IA32_PERF_GLOBAL_INUSE,
            Self::PerfCapabilities => IA32_PERF_CAPABILITIES,
        }
    }

    /// The SDM name, e.g. `IA32_PMC3` (version 4's name for the status reset).
    pub fn name(self) -> String {
        match self {
            Self::Pmc(i) => format!("IA32_PMC{i}"),
            Self::APmc(i) => format!("IA32_A_PMC{i}"),
            Self::EvtSel(i) => format!("IA32_PERFEVTSEL{i}"),
            Self::FixedCtr(i) => format!("IA32_FIXED_CTR{i}"),
            Self::FixedCtrCtrl => "IA32_FIXED_CTR_CTRL".into(),
            Self::GlobalStatus => "IA32_PERF_GLOBAL_STATUS".into(),
            Self::GlobalCtrl => "IA32_PERF_GLOBAL_CTRL".into(),
            Self::GlobalOvfCtrl => "IA32_PERF_GLOBAL_STATUS_RESET".into(),
            Self::GlobalStatusSet => "IA32_PERF_GLOBAL_STATUS_SET".into(),
            Self::GlobalInuse => "IA32_PERF_GLOBAL_INUSE".into(),
            Self::PerfCapabilities => "IA32_PERF_CAPABILITIES".into(),
        }
    }
}

/// MSR ranges `(first index, count)` a VMM must deny in its KVM MSR filter so
/// that every guest access exits to user space: the whole architectural PMU
/// MSR space of the largest configuration (8 general-purpose counters, 4
/// fixed counters, every global MSR, `IA32_PERF_CAPABILITIES`, the full-width
/// aliases), whatever the configured counts, so the model (not KVM) answers,
/// with #GP for MSRs the configured PMU lacks. No non-PMU MSR is included.
pub fn trapped_ranges() -> &'static [(u32, u32)] {
    const RANGES: [(u32, u32); 6] = [
        (IA32_PMC0, GP_N),
        (IA32_PERFEVTSEL0, GP_N),
        (IA32_FIXED_CTR0, FIXED_N),
        (IA32_PERF_CAPABILITIES, 1),
        (
            IA32_FIXED_CTR_CTRL,
            IA32_PERF_GLOBAL_INUSE - IA32_FIXED_CTR_CTRL + 1,
        ),
        (IA32_A_PMC0, GP_N),
    ];
    &RANGES
}

/// Whether `index` is an architectural PMU MSR (inside [`trapped_ranges`]).
pub fn is_pmu_msr(index: u32) -> bool {
    PmuMsr::decode(index).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdm_addresses() {
        assert_eq!(IA32_PMC0, 0xC1);
        assert_eq!(IA32_PERFEVTSEL0, 0x186);
        assert_eq!(IA32_A_PMC0, 0x4C1);
        assert_eq!(IA32_FIXED_CTR0, 0x309);
        assert_eq!(IA32_FIXED_CTR_CTRL, 0x38D);
        assert_eq!(IA32_PERF_GLOBAL_STATUS, 0x38E);
        assert_eq!(IA32_PERF_GLOBAL_CTRL, 0x38F);
        assert_eq!(IA32_PERF_GLOBAL_STATUS_RESET, 0x390);
        assert_eq!(IA32_PERF_GLOBAL_STATUS_SET, 0x391);
        assert_eq!(IA32_PERF_GLOBAL_INUSE, 0x392);
        assert_eq!(IA32_PERF_CAPABILITIES, 0x345);
    }

    #[test]
    fn ranges_match_is_pmu_msr() {
        let in_ranges = |i: u32| trapped_ranges().iter().any(|&(f, n)| i >= f && i - f < n);
        for i in 0..0x2000u32 {
            assert_eq!(in_ranges(i), is_pmu_msr(i), "msr {i:#x}");
        }
        assert_eq!(
            trapped_ranges().iter().map(|r| r.1).sum::<u32>(),
            8 * 3 + 4 + 1 + 6
        );
        // Neighbours that are not PMU MSRs.
        for i in [
            0xC0, 0xC9, 0x185, 0x18E, 0x308, 0x30D, 0x344, 0x346, 0x38C, 0x393, 0x4C0, 0x4C9,
        ] {
            assert!(!is_pmu_msr(i), "{i:#x}");
        }
        assert!(!is_pmu_msr(u32::MAX));
    }

    #[test]
    fn decode_roundtrip() {
        for &(f, n) in trapped_ranges() {
            for i in f..f + n {
                let m = PmuMsr::decode(i).unwrap();
                assert_eq!(m.index(), i);
            }
        }
        assert_eq!(PmuMsr::decode(0xC8), Some(PmuMsr::Pmc(7)));
        assert_eq!(PmuMsr::decode(0x4C3), Some(PmuMsr::APmc(2)));
        assert_eq!(PmuMsr::decode(0x30C), Some(PmuMsr::FixedCtr(3)));
    }

    #[test]
    fn evtsel_fields() {
        let v = 0x5A43_00C0u64 | evtsel::INT | evtsel::ANY_THREAD | evtsel::EDGE | evtsel::PC;
        let d = EventSelect::decode(v);
        assert_eq!(d.event, 0xC0);
        assert_eq!(d.umask, 0x00);
        assert!(d.os && d.usr && d.en && d.int && d.any_thread && d.edge && d.pc);
        assert!(!d.inv);
        assert_eq!(d.cmask, 0x5A);
        assert_eq!(d.encode(), v);
        let d = EventSelect::decode(0x0080_4F2E);
        assert!(d.inv && !d.en);
        assert_eq!((d.event, d.umask), (0x2E, 0x4F));
    }

    #[test]
    fn fixed_ctrl_nibbles() {
        let ctrl = 0xB0A3u64;
        let f0 = FixedCtrl::decode(ctrl, 0);
        assert!(f0.os && f0.usr && !f0.any_thread && !f0.pmi);
        let f1 = FixedCtrl::decode(ctrl, 1);
        assert!(!f1.os && f1.usr && !f1.any_thread && f1.pmi);
        assert_eq!(FixedCtrl::decode(ctrl, 2), FixedCtrl::default());
        let f3 = FixedCtrl::decode(ctrl, 3);
        assert!(f3.os && f3.usr && !f3.any_thread && f3.pmi);
        let enc: u64 = (0..4).map(|i| FixedCtrl::decode(ctrl, i).encode(i)).sum();
        assert_eq!(enc, ctrl);
        assert!(FixedCtrl::decode(0x4, 0).any_thread);
    }
}
