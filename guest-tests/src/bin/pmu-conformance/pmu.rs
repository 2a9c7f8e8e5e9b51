//! Architectural PMU constants, the configuration read from CPUID, and
//! helpers shared by the test modules.

pub use guest_tests::pmu::*;
use guest_tests::sync::SpinLock;
use guest_tests::{cmdline, cpuid, lapic, msr, try_rdmsr, try_wrmsr};

/// Event select + unit mask of the architectural events, by CPUID.0AH:EBX bit.
pub const ARCH_EVENTS: [(&str, u64); 8] = [
    ("core cycles", 0x003C),
    ("instructions retired", 0x00C0),
    ("reference cycles", 0x013C),
    ("LLC references", 0x4F2E),
    ("LLC misses", 0x412E),
    ("branches retired", 0x00C4),
    ("branch misses retired", 0x00C5),
    ("topdown slots", 0x01A4),
];
pub const CYCLES: u64 = 0x003C;
pub const INSTRUCTIONS: u64 = 0x00C0;
pub const REF_CYCLES: u64 = 0x013C;

/// The PMU as CPUID enumerates it.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub leaf1_ecx: u32,
    pub a: [u32; 4],
    pub pdcm: bool,
    pub version: u8,
    pub n_gp: u8,
    pub gp_width: u8,
    pub ebx_len: u8,
    pub unavailable: u32,
    pub n_fixed: u8,
    pub fixed_width: u8,
    /// IA32_PERF_CAPABILITIES.FW_WRITE (read once on the BSP).
    pub fw: bool,
}

static CFG: SpinLock<Option<Config>> = SpinLock::new(None);

/// The fixed counters the VMM configured. Before version 5 that is
/// `CPUID.0AH:EDX[4:0]`. From version 5 CPUID advertises only the fixed
/// counters whose event the host counts (`ECX` bitmask, `EDX[4:0]` the
/// contiguous ones), so a counter on an unavailable event is a gap: the
/// configured count comes from `fixed=` on the command line when given.
fn fixed_counters(version: u8, ecx: u32, edx: u32) -> u8 {
    let contiguous = (edx & 0x1F) as u8;
    match version {
        0 | 1 => 0,
        2..=4 => contiguous,
        _ => cmdline::get_u64("fixed")
            .map(|f| f.min(4) as u8)
            .unwrap_or((32 - ecx.leading_zeros()) as u8)
            .max(contiguous),
    }
}

impl Config {
    /// Read CPUID (and IA32_PERF_CAPABILITIES if PDCM) on this CPU.
    pub fn read() -> Config {
        let l1 = cpuid(1, 0);
        let max = cpuid(0, 0).eax;
        let r = if max >= 0xA {
            cpuid(0xA, 0)
        } else {
            guest_tests::msr::Cpuid {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            }
        };
        let pdcm = l1.ecx & CPUID_1_ECX_PDCM != 0;
        let version = r.eax as u8;
        let fw =
            pdcm && try_rdmsr(IA32_PERF_CAPABILITIES).is_ok_and(|v| v & PERF_CAP_FW_WRITE != 0);
        Config {
            leaf1_ecx: l1.ecx,
            a: [r.eax, r.ebx, r.ecx, r.edx],
            pdcm,
            version,
            n_gp: (r.eax >> 8) as u8,
            gp_width: (r.eax >> 16) as u8,
            ebx_len: (r.eax >> 24) as u8,
            unavailable: r.ebx,
            n_fixed: fixed_counters(version, r.ecx, r.edx),
            fixed_width: if version >= 2 { (r.edx >> 5) as u8 } else { 0 },
            fw,
        }
    }

    pub fn publish(self) {
        *CFG.lock() = Some(self);
    }

    /// The configuration the BSP published.
    pub fn get() -> Config {
        CFG.lock().expect("configuration not published")
    }

    pub fn pmu(&self) -> bool {
        self.version != 0
    }

    /// GP counters the tests may use (the MSR map holds at most 8).
    pub fn gp(&self) -> u8 {
        self.n_gp.min(8)
    }

    pub fn fixed(&self) -> u8 {
        self.n_fixed.min(4)
    }

    pub fn gp_mask(&self) -> u64 {
        (1u64 << self.gp()) - 1
    }

    pub fn fixed_mask(&self) -> u64 {
        ((1u64 << self.fixed()) - 1) << 32
    }

    pub fn counter_mask(&self) -> u64 {
        self.gp_mask() | self.fixed_mask()
    }

    /// Whether architectural event `i` is available (EBX bit clear, within
    /// the EBX length).
    pub fn available(&self, i: u32) -> bool {
        i < u32::from(self.ebx_len) && self.unavailable & (1 << i) == 0
    }
}

pub fn pmc(i: u8) -> u32 {
    IA32_PMC0 + u32::from(i)
}
pub fn apmc(i: u8) -> u32 {
    IA32_A_PMC0 + u32::from(i)
}
pub fn evtsel(i: u8) -> u32 {
    IA32_PERFEVTSEL0 + u32::from(i)
}
pub fn fixed_ctr(i: u8) -> u32 {
    IA32_FIXED_CTR0 + u32::from(i)
}

/// Status/ctrl bit of fixed counter `i`.
pub fn fixed_bit(i: u8) -> u64 {
    1 << (32 + u32::from(i))
}

/// A fixed-counter control nibble at counter `i`'s position.
pub fn nibble(i: u8, v: u64) -> u64 {
    v << (4 * u32::from(i))
}

/// Best-effort write (used for cleanup; faults are checked elsewhere).
pub fn w(index: u32, value: u64) {
    let _ = try_wrmsr(index, value);
}

/// Read, 0 on a fault.
pub fn r(index: u32) -> u64 {
    try_rdmsr(index).unwrap_or(0)
}

/// Put every PMU MSR of this CPU back to its reset state (counters stopped
/// and zero, status clear, IA32_PERF_GLOBAL_CTRL at its reset value) and mask LVTPC.
pub fn reset(cfg: &Config) {
    lapic::set_lvt_perf(lapic::LVT_MASKED);
    if cfg.version >= 2 {
        w(IA32_PERF_GLOBAL_CTRL, 0);
        w(IA32_FIXED_CTR_CTRL, 0);
    }
    for i in 0..cfg.gp() {
        w(evtsel(i), 0);
        w(pmc(i), 0);
    }
    for i in 0..cfg.fixed() {
        w(fixed_ctr(i), 0);
    }
    if cfg.version >= 2 {
        w(IA32_PERF_GLOBAL_OVF_CTRL, cfg.counter_mask());
        w(IA32_PERF_GLOBAL_CTRL, cfg.gp_mask());
    }
}

/// Enable exactly `bits` in IA32_PERF_GLOBAL_CTRL (version 2+; nothing on version 1).
pub fn global_enable(cfg: &Config, bits: u64) {
    if cfg.version >= 2 {
        w(IA32_PERF_GLOBAL_CTRL, bits);
    }
}

pub fn spin(ticks: u64) {
    msr::spin_tsc(ticks);
}
