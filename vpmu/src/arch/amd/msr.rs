//! The AMD64 performance-monitoring MSRs (APM Vol. 2 §13.2.1 and §13.2.2,
//! Zen PPRs "Core Performance Monitor Counters"), their field layout, and the
//! MSR ranges a VMM must trap to emulate them.

use crate::config::{AMD_LEGACY_COUNTERS, MAX_AMD_CORE_COUNTERS};
use crate::source::EventCode;
use serde::{Deserialize, Serialize};

/// `PerfEvtSel0`: first legacy event select (`MSRC001_0000`).
pub const PERF_EVT_SEL0: u32 = 0xC001_0000;
/// `PerfCtr0`: first legacy counter (`MSRC001_0004`).
pub const PERF_CTR_LEGACY0: u32 = 0xC001_0004;
/// `PERF_CTL0`: first PerfCtrCore event select (`MSRC001_0200`); `PERF_CTLn`
/// is at `PERF_CTL0 + 2n`, `PERF_CTRn` right after it.
pub const PERF_CTL0: u32 = 0xC001_0200;
/// `PERF_CTR0`: first PerfCtrCore counter (`MSRC001_0201`).
pub const PERF_CTR0: u32 = 0xC001_0201;
/// `PerfCntrGlobalStatus` (PerfMonV2), read-only.
pub const PERF_CNTR_GLOBAL_STATUS: u32 = 0xC000_0300;
/// `PerfCntrGlobalCtl` (PerfMonV2).
pub const PERF_CNTR_GLOBAL_CTL: u32 = 0xC000_0301;
/// `PerfCntrGlobalStatusClr` (PerfMonV2), write-only (reads 0).
pub const PERF_CNTR_GLOBAL_STATUS_CLR: u32 = 0xC000_0302;
/// `PerfCntrGlobalStatusSet` (PerfMonV2), write-only (reads 0).
pub const PERF_CNTR_GLOBAL_STATUS_SET: u32 = 0xC000_0303;

/// `PerfEvtSel` / `PERF_CTL` fields.
pub mod perf_ctl {
    /// `EventSelect[7:0]`, bits 7:0.
    pub const EVENT_LO_MASK: u64 = 0xFF;
    /// `UnitMask`, bits 15:8.
    pub const UMASK_SHIFT: u32 = 8;
    /// `USR`: count at CPL > 0.
    pub const USR: u64 = 1 << 16;
    /// `OS`: count at CPL 0.
    pub const OS: u64 = 1 << 17;
    /// `Edge`: edge detect.
    pub const EDGE: u64 = 1 << 18;
    /// `INT`: APIC interrupt on overflow.
    pub const INT: u64 = 1 << 20;
    /// `EN`: counter enable.
    pub const EN: u64 = 1 << 22;
    /// `Inv`: invert counter mask.
    pub const INV: u64 = 1 << 23;
    /// `CntMask`, bits 31:24.
    pub const CMASK_SHIFT: u32 = 24;
    /// `EventSelect[11:8]`, bits 35:32.
    pub const EVENT_HI_SHIFT: u32 = 32;
    /// `EventSelect[11:8]` in place.
    pub const EVENT_HI_MASK: u64 = 0xF << EVENT_HI_SHIFT;
    /// `GuestOnly`: count only in SVM guest mode.
    pub const GUEST_ONLY: u64 = 1 << 40;
    /// `HostOnly`: count only in SVM host mode.
    pub const HOST_ONLY: u64 = 1 << 41;
    /// Every defined bit; the rest (19, 21, 39:36, 63:42) is reserved.
    pub const DEFINED: u64 = EVENT_LO_MASK
        | 0xFF << UMASK_SHIFT
        | USR
        | OS
        | EDGE
        | INT
        | EN
        | INV
        | 0xFF << CMASK_SHIFT
        | EVENT_HI_MASK
        | GUEST_ONLY
        | HOST_ONLY;
}

/// A `PerfEvtSel` / `PERF_CTL` value, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerfCtl {
    /// `EventSelect[11:0]`.
    pub event: u16,
    pub umask: u8,
    pub usr: bool,
    pub os: bool,
    pub edge: bool,
    pub int: bool,
    pub en: bool,
    pub inv: bool,
    pub cmask: u8,
    pub guest_only: bool,
    pub host_only: bool,
}

impl PerfCtl {
    /// Decodes the defined fields (reserved bits ignored).
    pub fn decode(v: u64) -> Self {
        let lo = v & perf_ctl::EVENT_LO_MASK;
        let hi = (v & perf_ctl::EVENT_HI_MASK) >> perf_ctl::EVENT_HI_SHIFT;
        Self {
            event: (lo | hi << 8) as u16,
            umask: (v >> perf_ctl::UMASK_SHIFT) as u8,
            usr: v & perf_ctl::USR != 0,
            os: v & perf_ctl::OS != 0,
            edge: v & perf_ctl::EDGE != 0,
            int: v & perf_ctl::INT != 0,
            en: v & perf_ctl::EN != 0,
            inv: v & perf_ctl::INV != 0,
            cmask: (v >> perf_ctl::CMASK_SHIFT) as u8,
            guest_only: v & perf_ctl::GUEST_ONLY != 0,
            host_only: v & perf_ctl::HOST_ONLY != 0,
        }
    }

    /// Encodes back into a `PERF_CTL` value.
    pub fn encode(&self) -> u64 {
        let flag = |b: bool, bit: u64| if b { bit } else { 0 };
        let event = u64::from(self.event);
        (event & perf_ctl::EVENT_LO_MASK)
            | ((event >> 8) & 0xF) << perf_ctl::EVENT_HI_SHIFT
            | u64::from(self.umask) << perf_ctl::UMASK_SHIFT
            | flag(self.usr, perf_ctl::USR)
            | flag(self.os, perf_ctl::OS)
            | flag(self.edge, perf_ctl::EDGE)
            | flag(self.int, perf_ctl::INT)
            | flag(self.en, perf_ctl::EN)
            | flag(self.inv, perf_ctl::INV)
            | u64::from(self.cmask) << perf_ctl::CMASK_SHIFT
            | flag(self.guest_only, perf_ctl::GUEST_ONLY)
            | flag(self.host_only, perf_ctl::HOST_ONLY)
    }

    /// Event select and unit mask.
    pub fn code(&self) -> EventCode {
        EventCode {
            select: self.event,
            umask: self.umask,
        }
    }

    /// Whether the Host/Guest-only filter lets the counter count in a guest
    /// that does not use SVM (`EFER.SVME` = 0, always so here): with exactly
    /// one of the two bits set the hardware counts nothing (Linux commit
    /// "perf/x86/kvm: Fix Host-Only/Guest-Only counting with SVM disabled");
    /// with both or neither it counts in every mode.
    pub fn counts_without_svm(&self) -> bool {
        self.guest_only == self.host_only
    }
}

/// An AMD PMU MSR, by role. Covers the largest configuration (six core
/// counters, PerfMonV2); whether the configured PMU has it is decided by the
/// guest model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmdPmuMsr {
    /// Legacy `PerfEvtSeln` (n < 4), alias of `PERF_CTLn`.
    PerfEvtSel(u8),
    /// Legacy `PerfCtrn` (n < 4), alias of `PERF_CTRn`.
    PerfCtrLegacy(u8),
    /// PerfCtrCore `PERF_CTLn` (n < 6).
    PerfCtl(u8),
    /// PerfCtrCore `PERF_CTRn` (n < 6).
    PerfCtr(u8),
    /// `PerfCntrGlobalStatus`.
    GlobalStatus,
    /// `PerfCntrGlobalCtl`.
    GlobalCtl,
    /// `PerfCntrGlobalStatusClr`.
    GlobalStatusClr,
    /// `PerfCntrGlobalStatusSet`.
    GlobalStatusSet,
}

const LEGACY_N: u32 = AMD_LEGACY_COUNTERS as u32;
const CORE_N: u32 = MAX_AMD_CORE_COUNTERS as u32;

impl AmdPmuMsr {
    /// The role of MSR `index`, or `None` outside the AMD PMU MSR space.
    pub fn decode(index: u32) -> Option<Self> {
        let off = |base: u32, n: u32| index.checked_sub(base).filter(|o| *o < n);
        if let Some(i) = off(PERF_EVT_SEL0, LEGACY_N) {
            return Some(Self::PerfEvtSel(i as u8));
        }
        if let Some(i) = off(PERF_CTR_LEGACY0, LEGACY_N) {
            return Some(Self::PerfCtrLegacy(i as u8));
        }
        if let Some(o) = off(PERF_CTL0, 2 * CORE_N) {
            let n = (o / 2) as u8;
            return Some(if o % 2 == 0 {
                Self::PerfCtl(n)
            } else {
                Self::PerfCtr(n)
            });
        }
        Some(match index {
            PERF_CNTR_GLOBAL_STATUS => Self::GlobalStatus,
            PERF_CNTR_GLOBAL_CTL => Self::GlobalCtl,
            PERF_CNTR_GLOBAL_STATUS_CLR => Self::GlobalStatusClr,
            PERF_CNTR_GLOBAL_STATUS_SET => Self::GlobalStatusSet,
            _ => return None,
        })
    }

    /// The MSR index.
    pub fn index(self) -> u32 {
        match self {
            Self::PerfEvtSel(i) => PERF_EVT_SEL0 + u32::from(i),
            Self::PerfCtrLegacy(i) => PERF_CTR_LEGACY0 + u32::from(i),
            Self::PerfCtl(i) => PERF_CTL0 + 2 * u32::from(i),
            Self::PerfCtr(i) => PERF_CTR0 + 2 * u32::from(i),
            Self::GlobalStatus => PERF_CNTR_GLOBAL_STATUS,
            Self::GlobalCtl => PERF_CNTR_GLOBAL_CTL,
            Self::GlobalStatusClr => PERF_CNTR_GLOBAL_STATUS_CLR,
            Self::GlobalStatusSet => PERF_CNTR_GLOBAL_STATUS_SET,
        }
    }

    /// The APM / PPR name, e.g. `PERF_CTR2` or `PerfEvtSel1`.
    pub fn name(self) -> String {
        match self {
            Self::PerfEvtSel(i) => format!("PerfEvtSel{i}"),
            Self::PerfCtrLegacy(i) => format!("PerfCtr{i}"),
            Self::PerfCtl(i) => format!("PERF_CTL{i}"),
            Self::PerfCtr(i) => format!("PERF_CTR{i}"),
            Self::GlobalStatus => "PerfCntrGlobalStatus".into(),
            Self::GlobalCtl => "PerfCntrGlobalCtl".into(),
            Self::GlobalStatusClr => "PerfCntrGlobalStatusClr".into(),
            Self::GlobalStatusSet => "PerfCntrGlobalStatusSet".into(),
        }
    }
}

/// MSR ranges `(first index, count)` a VMM must deny in its KVM MSR filter so
/// that every guest access to an AMD PMU MSR exits to user space: the legacy
/// pairs, the six PerfCtrCore pairs and the four PerfMonV2 global MSRs,
/// whatever the configuration, so the model (not KVM) answers. No non-PMU MSR
/// is included.
pub fn trapped_ranges() -> &'static [(u32, u32)] {
    const RANGES: [(u32, u32); 3] = [
        (PERF_EVT_SEL0, 2 * LEGACY_N),
        (PERF_CTL0, 2 * CORE_N),
        (PERF_CNTR_GLOBAL_STATUS, 4),
    ];
    &RANGES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apm_addresses() {
        assert_eq!(
            AmdPmuMsr::decode(0xC001_0003),
            Some(AmdPmuMsr::PerfEvtSel(3))
        );
        assert_eq!(
            AmdPmuMsr::decode(0xC001_0007),
            Some(AmdPmuMsr::PerfCtrLegacy(3))
        );
        assert_eq!(AmdPmuMsr::decode(0xC001_0200), Some(AmdPmuMsr::PerfCtl(0)));
        assert_eq!(AmdPmuMsr::decode(0xC001_020B), Some(AmdPmuMsr::PerfCtr(5)));
        assert_eq!(AmdPmuMsr::decode(0xC001_020A), Some(AmdPmuMsr::PerfCtl(5)));
        assert_eq!(
            AmdPmuMsr::decode(0xC000_0303),
            Some(AmdPmuMsr::GlobalStatusSet)
        );
        for i in [
            0xC000_FFFF,
            0xC001_0008,
            0xC001_01FF,
            0xC001_020C,
            0xC000_02FF,
            0xC000_0304,
        ] {
            assert_eq!(AmdPmuMsr::decode(i), None, "{i:#x}");
        }
    }

    #[test]
    fn ranges_match_decode_and_roundtrip() {
        let in_ranges = |i: u32| trapped_ranges().iter().any(|&(f, n)| i >= f && i - f < n);
        for base in [0xC000_0000u32, 0xC001_0000] {
            for i in base..base + 0x400 {
                assert_eq!(in_ranges(i), AmdPmuMsr::decode(i).is_some(), "{i:#x}");
                if let Some(m) = AmdPmuMsr::decode(i) {
                    assert_eq!(m.index(), i);
                }
            }
        }
        assert_eq!(
            trapped_ranges().iter().map(|r| r.1).sum::<u32>(),
            8 + 12 + 4
        );
    }

    #[test]
    fn perf_ctl_fields() {
        let v = 0x0000_0301_5A57_0076u64 | perf_ctl::INT | perf_ctl::INV;
        let d = PerfCtl::decode(v);
        assert_eq!(d.event, 0x176);
        assert_eq!(d.umask, 0x00);
        assert!(d.usr && d.os && d.en && d.int && d.inv && d.edge);
        assert!(d.guest_only && d.host_only && d.counts_without_svm());
        assert_eq!(d.cmask, 0x5A);
        assert_eq!(d.encode(), v);
        assert_eq!(
            perf_ctl::DEFINED & (1 << 19 | 1 << 21 | 0xF << 36 | 1 << 42),
            0
        );
        let host = PerfCtl::decode(perf_ctl::HOST_ONLY);
        assert!(!host.counts_without_svm());
    }
}
