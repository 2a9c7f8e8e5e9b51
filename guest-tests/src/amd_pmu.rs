//! AMD64 PMU constants, by their APM vol. 2 (§13.2) names, and the CPUID
//! enumeration of the AMD PMU (vendor, PerfCtrCore, PerfMonV2).

use crate::msr::cpuid;

/// Legacy `PerfEvtSel0-3`.
pub const PERF_EVT_SEL0: u32 = 0xC001_0000;
/// Legacy `PerfCtr0-3`.
pub const PERF_CTR0: u32 = 0xC001_0004;
/// Legacy counters (PerfEvtSel0-3 / PerfCtr0-3).
pub const LEGACY_COUNTERS: u8 = 4;
/// Core counters with PerfCtrCore (`PERF_CTL0-5` / `PERF_CTR0-5`).
pub const CORE_COUNTERS: u8 = 6;
/// First core counter MSR (`PERF_CTL0`); `PERF_CTLn` = base + 2n,
/// `PERF_CTRn` = base + 2n + 1.
pub const PERF_CTL_CORE_BASE: u32 = 0xC001_0200;
/// PerfMonV2 `PerfCntrGlobalStatus` (read-only).
pub const PERF_CNTR_GLOBAL_STATUS: u32 = 0xC000_0300;
/// PerfMonV2 `PerfCntrGlobalCtl`.
pub const PERF_CNTR_GLOBAL_CTL: u32 = 0xC000_0301;
/// PerfMonV2 `PerfCntrGlobalStatusClr`.
pub const PERF_CNTR_GLOBAL_STATUS_CLR: u32 = 0xC000_0302;
/// PerfMonV2 `PerfCntrGlobalStatusSet`.
pub const PERF_CNTR_GLOBAL_STATUS_SET: u32 = 0xC000_0303;

/// Legacy `PerfEvtSel<n>`.
pub const fn perf_evt_sel(n: u8) -> u32 {
    PERF_EVT_SEL0 + n as u32
}
/// Legacy `PerfCtr<n>`.
pub const fn perf_ctr_legacy(n: u8) -> u32 {
    PERF_CTR0 + n as u32
}
/// Core `PERF_CTL<n>`.
pub const fn perf_ctl(n: u8) -> u32 {
    PERF_CTL_CORE_BASE + 2 * n as u32
}
/// Core `PERF_CTR<n>`.
pub const fn perf_ctr(n: u8) -> u32 {
    PERF_CTL_CORE_BASE + 2 * n as u32 + 1
}

// Event select fields.
/// EventSelect[7:0].
pub const EVENT_SELECT_LO: u64 = 0xFF;
/// UnitMask.
pub const UNIT_MASK: u64 = 0xFF << 8;
pub const USR: u64 = 1 << 16;
pub const OS: u64 = 1 << 17;
pub const EDGE: u64 = 1 << 18;
pub const INT: u64 = 1 << 20;
pub const EN: u64 = 1 << 22;
pub const INV: u64 = 1 << 23;
/// CntMask.
pub const CNT_MASK: u64 = 0xFF << 24;
/// EventSelect[11:8].
pub const EVENT_SELECT_HI: u64 = 0xF << 32;
pub const GUEST_ONLY: u64 = 1 << 40;
pub const HOST_ONLY: u64 = 1 << 41;
/// Every defined event select bit; the rest are reserved (#GP on WRMSR).
pub const EVT_SEL_VALID: u64 = EVENT_SELECT_LO
    | UNIT_MASK
    | USR
    | OS
    | EDGE
    | INT
    | EN
    | INV
    | CNT_MASK
    | EVENT_SELECT_HI
    | GUEST_ONLY
    | HOST_ONLY;

/// Counter width: 48 bits.
pub const CTR_MASK: u64 = (1 << 48) - 1;

// Events (PPR names).
/// `Cycles not in Halt` (core cycles).
pub const EV_CORE_CYCLES: u64 = 0x76;
/// `Retired Instructions`.
pub const EV_RETIRED_INSTRUCTIONS: u64 = 0xC0;
/// `Retired Branch Instructions`.
pub const EV_RETIRED_BRANCHES: u64 = 0xC2;
/// `Retired Branch Instructions Mispredicted`.
pub const EV_RETIRED_BRANCH_MISPREDICTS: u64 = 0xC3;

/// CPUID 8000_0001h ECX bit 23: PerfCtrCore.
pub const CPUID_80000001_ECX_PERF_CTR_CORE: u32 = 1 << 23;
/// CPUID 8000_0022h EAX bit 0: PerfMonV2.
pub const CPUID_80000022_EAX_PERFMON_V2: u32 = 1;

/// The 12-byte vendor string of CPUID leaf 0 (EBX, EDX, ECX).
pub fn vendor() -> [u8; 12] {
    let l0 = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&l0.edx.to_le_bytes());
    v[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
    v
}

pub fn is_amd() -> bool {
    &vendor() == b"AuthenticAMD"
}

pub fn is_intel() -> bool {
    &vendor() == b"GenuineIntel"
}

/// The AMD PMU as CPUID enumerates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmdPmu {
    /// Leaf 8000_0000h EAX: the highest extended leaf.
    pub max_ext_leaf: u32,
    /// 8000_0001h ECX[23].
    pub perf_ctr_core: bool,
    /// 8000_0022h EAX[0].
    pub perfmon_v2: bool,
    /// 8000_0022h EAX, EBX, ECX, EDX (zero when the leaf is absent).
    pub leaf_22: [u32; 4],
}

impl AmdPmu {
    /// Read the enumeration on this CPU.
    pub fn read() -> AmdPmu {
        let max_ext_leaf = cpuid(0x8000_0000, 0).eax;
        let perf_ctr_core = max_ext_leaf >= 0x8000_0001
            && cpuid(0x8000_0001, 0).ecx & CPUID_80000001_ECX_PERF_CTR_CORE != 0;
        let leaf_22 = if max_ext_leaf >= 0x8000_0022 {
            let l = cpuid(0x8000_0022, 0);
            [l.eax, l.ebx, l.ecx, l.edx]
        } else {
            [0; 4]
        };
        AmdPmu {
            max_ext_leaf,
            perf_ctr_core,
            perfmon_v2: leaf_22[0] & CPUID_80000022_EAX_PERFMON_V2 != 0,
            leaf_22,
        }
    }

    /// 2 with PerfMonV2, 1 with PerfCtrCore, else 0 (legacy counters only,
    /// or no PMU: CPUID cannot tell these apart).
    pub fn version(&self) -> u8 {
        if self.perfmon_v2 {
            2
        } else if self.perf_ctr_core {
            1
        } else {
            0
        }
    }

    /// 8000_0022h EBX[3:0]: core counters (PerfMonV2 only).
    pub fn v2_counters(&self) -> u8 {
        (self.leaf_22[1] & 0xF) as u8
    }

    /// The counters a guest may assume: EBX[3:0] on v2, 6 with PerfCtrCore,
    /// 4 legacy ones otherwise.
    pub fn counters(&self) -> u8 {
        match self.version() {
            2 => self.v2_counters(),
            1 => CORE_COUNTERS,
            _ => LEGACY_COUNTERS,
        }
    }
}
