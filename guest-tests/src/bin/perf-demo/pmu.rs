//! The PMU driver, picked by vendor like a real OS: the Intel
//! architectural PMU as CPUID leaf 0xA enumerates it, or the AMD64 PMU
//! (legacy counters, PerfCtrCore, PerfMonV2) on an AuthenticAMD CPU with
//! PerfCtrCore or `arch=amd` on the command line. While CPUID leaf 0xA
//! reports a version, the Intel driver is kept unless `arch=amd` says
//! otherwise. The AMD driver maps onto the same interface: no fixed
//! counters, "version 2" (global control) with PerfMonV2, else "version 1"
//! (EN starts each counter, overflow read from the counter's value).

use core::sync::atomic::{AtomicU8, Ordering};
use guest_tests::amd_pmu::{self, AmdPmu};
pub use guest_tests::pmu::*;
use guest_tests::{cmdline, cpuid, try_rdmsr, try_wrmsr};

/// The driver in use: 0 Intel, 1 AMD legacy counters, 2 AMD core counters
/// (PerfCtrCore), 3 AMD core counters with PerfMonV2.
static DRIVER: AtomicU8 = AtomicU8::new(0);

/// Whether the AMD driver is in use.
pub fn is_amd() -> bool {
    DRIVER.load(Ordering::Relaxed) != 0
}

/// AMD event codes of the perf generic events (PPR names): cycles (76h,
/// Cycles not in Halt), instructions (C0h), branches (C2h), branch-misses
/// (C3h); the rest have no AMD counterpart here (0: unavailable).
const AMD_CODES: [u64; 8] = [
    amd_pmu::EV_CORE_CYCLES,
    amd_pmu::EV_RETIRED_INSTRUCTIONS,
    0,
    0,
    0,
    amd_pmu::EV_RETIRED_BRANCHES,
    amd_pmu::EV_RETIRED_BRANCH_MISPREDICTS,
    0,
];

/// Event select code (event | unit mask << 8) of generic event `e` for the
/// driver in use.
pub fn code(e: usize) -> u64 {
    if is_amd() {
        AMD_CODES[e % 8]
    } else {
        EVENTS[e % 8].code
    }
}

/// IA32_PERF_GLOBAL_CTRL or PerfCntrGlobalCtl.
pub fn global_ctrl() -> u32 {
    if is_amd() {
        amd_pmu::PERF_CNTR_GLOBAL_CTL
    } else {
        IA32_PERF_GLOBAL_CTRL
    }
}

/// IA32_PERF_GLOBAL_STATUS or PerfCntrGlobalStatus.
pub fn global_status() -> u32 {
    if is_amd() {
        amd_pmu::PERF_CNTR_GLOBAL_STATUS
    } else {
        IA32_PERF_GLOBAL_STATUS
    }
}

/// IA32_PERF_GLOBAL_OVF_CTRL or PerfCntrGlobalStatusClr: writing bits
/// clears them in the status.
pub fn global_status_clear() -> u32 {
    if is_amd() {
        amd_pmu::PERF_CNTR_GLOBAL_STATUS_CLR
    } else {
        IA32_PERF_GLOBAL_OVF_CTRL
    }
}

/// Fixed-counter control nibble: count in ring 0 and ring 3, PMI.
pub const F_OS_USR: u64 = 0b0011;

/// Most GP counters the MSR map has room for (IA32_PERFEVTSEL0..7).
pub const MAX_GP: usize = 8;
/// Most fixed counters we know an event for.
pub const MAX_FIXED: usize = 4;

/// An architectural event: perf name, event select | unit mask << 8.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub name: &'static str,
    pub code: u64,
}

/// The architectural events, indexed by their CPUID.0AH:EBX bit.
pub const EVENTS: [Event; 8] = [
    Event {
        name: "cycles",
        code: 0x003C,
    },
    Event {
        name: "instructions",
        code: 0x00C0,
    },
    Event {
        name: "ref-cycles",
        code: 0x013C,
    },
    Event {
        name: "cache-references",
        code: 0x4F2E,
    },
    Event {
        name: "cache-misses",
        code: 0x412E,
    },
    Event {
        name: "branches",
        code: 0x00C4,
    },
    Event {
        name: "branch-misses",
        code: 0x00C5,
    },
    Event {
        name: "slots",
        code: 0x01A4,
    },
];
pub const EV_CYCLES: usize = 0;
pub const EV_INSTRUCTIONS: usize = 1;
pub const EV_CACHE_REFS: usize = 3;
pub const EV_CACHE_MISSES: usize = 4;
pub const EV_BRANCHES: usize = 5;
pub const EV_BRANCH_MISSES: usize = 6;

/// The architectural event fixed counter `i` counts.
pub const FIXED_EVENT: [usize; MAX_FIXED] = [EV_INSTRUCTIONS, EV_CYCLES, 2, 7];

/// The PMU of this CPU, from CPUID.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pmu {
    pub version: u8,
    pub n_gp: u8,
    pub gp_width: u8,
    pub ebx_len: u8,
    pub unavailable: u32,
    /// Fixed counters present (bit i: fixed counter i).
    pub fixed_mask: u32,
    pub fixed_width: u8,
    /// IA32_PERF_CAPABILITIES.FW_WRITE: IA32_A_PMCx writes all bits.
    pub full_width_write: bool,
    pub raw: [u32; 4],
    /// AMD PMU version (0 legacy, 1 PerfCtrCore, 2 PerfMonV2) with the AMD
    /// driver.
    pub amd: Option<u8>,
}

impl Pmu {
    pub fn read() -> Pmu {
        let intel_version = if cpuid(0, 0).eax >= 0xA {
            cpuid(0xA, 0).eax as u8
        } else {
            0
        };
        let amd = AmdPmu::read();
        let want_amd = cmdline::get("arch") == Some("amd")
            || (intel_version == 0 && amd_pmu::is_amd() && amd.perf_ctr_core);
        if want_amd {
            return Pmu::read_amd(&amd);
        }
        DRIVER.store(0, Ordering::Relaxed);
        if cpuid(0, 0).eax < 0xA {
            return Pmu::default();
        }
        let r = cpuid(0xA, 0);
        let version = r.eax as u8;
        let mut fixed_mask = 0;
        if version >= 2 {
            let n = r.edx & 0x1F;
            for i in 0..MAX_FIXED as u32 {
                let by_count = i < n;
                let by_mask = version >= 5 && r.ecx & (1 << i) != 0;
                if by_count || by_mask {
                    fixed_mask |= 1 << i;
                }
            }
        }
        let pdcm = cpuid(1, 0).ecx & (1 << 15) != 0;
        let full_width_write =
            pdcm && try_rdmsr(IA32_PERF_CAPABILITIES).is_ok_and(|v| v & (1 << 13) != 0);
        Pmu {
            version,
            n_gp: (r.eax >> 8) as u8,
            gp_width: (r.eax >> 16) as u8,
            ebx_len: (r.eax >> 24) as u8,
            unavailable: r.ebx,
            fixed_mask,
            fixed_width: if version >= 2 { (r.edx >> 5) as u8 } else { 0 },
            full_width_write,
            raw: [r.eax, r.ebx, r.ecx, r.edx],
            amd: None,
        }
    }

    /// The AMD driver: counters as CPUID enumerates them (`gp=N` on the
    /// command line caps them, as for Intel); 48-bit counters written
    /// whole.
    fn read_amd(amd: &AmdPmu) -> Pmu {
        let v = amd.version();
        DRIVER.store(v + 1, Ordering::Relaxed);
        let unavailable = AMD_CODES
            .iter()
            .enumerate()
            .filter(|(_, &c)| c == 0)
            .fold(0, |m, (i, _)| m | 1 << i);
        Pmu {
            version: if v >= 2 { 2 } else { 1 },
            n_gp: amd.counters(),
            gp_width: 48,
            ebx_len: 8,
            unavailable,
            fixed_mask: 0,
            fixed_width: 0,
            full_width_write: true,
            raw: amd.leaf_22,
            amd: Some(v),
        }
    }

    pub fn present(&self) -> bool {
        self.version != 0
    }

    /// GP counters usable here (at most [`MAX_GP`]).
    pub fn gp(&self) -> usize {
        usize::from(self.n_gp).min(MAX_GP)
    }

    pub fn has_fixed(&self, i: usize) -> bool {
        i < MAX_FIXED && self.fixed_mask & (1 << i) != 0
    }

    /// Whether architectural event `i` is available (EBX bit clear, inside
    /// the EBX length).
    pub fn available(&self, i: usize) -> bool {
        i < usize::from(self.ebx_len) && self.unavailable & (1 << i) == 0
    }

    /// IA32_PERF_GLOBAL_CTRL / IA32_PERF_GLOBAL_STATUS bits of every counter present.
    pub fn all_counters(&self) -> u64 {
        let gp = (1u64 << self.gp()) - 1;
        gp | u64::from(self.fixed_mask) << 32
    }

    /// Stop every counter and zero it, clear overflow status.
    pub fn reset(&self) {
        if self.version >= 2 {
            w(global_ctrl(), 0);
            if !is_amd() {
                w(IA32_FIXED_CTR_CTRL, 0);
            }
        }
        for i in 0..self.gp() {
            w(evtsel(i), 0);
            w(pmc(i), 0);
        }
        for i in 0..MAX_FIXED {
            if self.has_fixed(i) {
                w(fixed_ctr(i), 0);
            }
        }
        if self.version >= 2 {
            w(global_status_clear(), self.all_counters());
        }
    }

    /// The MSR write that loads `-period` into a counter, so that it
    /// overflows after `period` events: (MSR, value).
    pub fn preload(&self, ctr: Counter, period: u64) -> (u32, u64) {
        match ctr {
            Counter::Gp(i) => {
                if self.full_width_write {
                    let width = u32::from(self.gp_width.clamp(32, 64));
                    (apmc(i), period.wrapping_neg() & mask(width))
                } else {
                    // The legacy alias sign-extends bit 31: fine for
                    // periods below 2^31.
                    (pmc(i), u64::from((period as u32).wrapping_neg()))
                }
            }
            Counter::Fixed(i) => {
                let width = u32::from(self.fixed_width.clamp(32, 64));
                (fixed_ctr(i), period.wrapping_neg() & mask(width))
            }
        }
    }
}

fn mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    }
}

/// A hardware counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Gp(usize),
    Fixed(usize),
}

impl Counter {
    /// Its IA32_PERF_GLOBAL_CTRL / IA32_PERF_GLOBAL_STATUS bit.
    pub fn bit(self) -> u64 {
        match self {
            Counter::Gp(i) => 1 << i,
            Counter::Fixed(i) => 1 << (32 + i),
        }
    }
}

/// IA32_PMCx, or the AMD counter (PERF_CTRx, PerfCtrx without PerfCtrCore).
pub fn pmc(i: usize) -> u32 {
    match DRIVER.load(Ordering::Relaxed) {
        0 => IA32_PMC0 + i as u32,
        1 => amd_pmu::perf_ctr_legacy(i as u8),
        _ => amd_pmu::perf_ctr(i as u8),
    }
}
/// IA32_A_PMCx (AMD counters are written whole: the counter itself).
pub fn apmc(i: usize) -> u32 {
    if is_amd() {
        pmc(i)
    } else {
        IA32_A_PMC0 + i as u32
    }
}
/// IA32_PERFEVTSELx, or PERF_CTLx (PerfEvtSelx without PerfCtrCore).
pub fn evtsel(i: usize) -> u32 {
    match DRIVER.load(Ordering::Relaxed) {
        0 => IA32_PERFEVTSEL0 + i as u32,
        1 => amd_pmu::perf_evt_sel(i as u8),
        _ => amd_pmu::perf_ctl(i as u8),
    }
}
pub fn fixed_ctr(i: usize) -> u32 {
    IA32_FIXED_CTR0 + i as u32
}

/// Write an MSR; a fault is ignored (reported by the caller's results).
pub fn w(index: u32, value: u64) {
    let _ = try_wrmsr(index, value);
}

/// Read an MSR (RDPMC never works under this VMM); 0 on a fault.
pub fn r(index: u32) -> u64 {
    try_rdmsr(index).unwrap_or(0)
}
