//! Architectural PMU constants, the configuration read from CPUID, and
//! helpers shared by the test modules.

use guest_tests::sync::SpinLock;
use guest_tests::{cpuid, lapic, msr, try_rdmsr, try_wrmsr};

pub const IA32_PMC0: u32 = 0xC1;
pub const IA32_PERFEVTSEL0: u32 = 0x186;
pub const IA32_A_PMC0: u32 = 0x4C1;
pub const IA32_FIXED_CTR0: u32 = 0x309;
pub const IA32_PERF_CAPABILITIES: u32 = 0x345;
pub const FIXED_CTR_CTRL: u32 = 0x38D;
pub const GLOBAL_STATUS: u32 = 0x38E;
pub const GLOBAL_CTRL: u32 = 0x38F;
pub const GLOBAL_OVF_CTRL: u32 = 0x390;
pub const GLOBAL_STATUS_SET: u32 = 0x391;
pub const GLOBAL_INUSE: u32 = 0x392;

pub const PERF_CAP_FW_WRITE: u64 = 1 << 13;
pub const CPUID_1_ECX_PDCM: u32 = 1 << 15;

pub const USR: u64 = 1 << 16;
pub const OS: u64 = 1 << 17;
pub const EDGE: u64 = 1 << 18;
pub const PC: u64 = 1 << 19;
pub const INT: u64 = 1 << 20;
pub const ANY: u64 = 1 << 21;
pub const EN: u64 = 1 << 22;
pub const INV: u64 = 1 << 23;

/// Fixed-counter control nibble bits.
pub const F_OS: u64 = 1;
pub const F_USR: u64 = 2;
pub const F_ANY: u64 = 4;
pub const F_PMI: u64 = 8;

pub const MASK48: u64 = (1 << 48) - 1;

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
            n_fixed: if version >= 2 {
                (r.edx & 0x1F) as u8
            } else {
                0
            },
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
/// and zero, status clear, GLOBAL_CTRL at its reset value) and mask LVTPC.
pub fn reset(cfg: &Config) {
    lapic::set_lvt_perf(lapic::LVT_MASKED);
    if cfg.version >= 2 {
        w(GLOBAL_CTRL, 0);
        w(FIXED_CTR_CTRL, 0);
    }
    for i in 0..cfg.gp() {
        w(evtsel(i), 0);
        w(pmc(i), 0);
    }
    for i in 0..cfg.fixed() {
        w(fixed_ctr(i), 0);
    }
    if cfg.version >= 2 {
        w(GLOBAL_OVF_CTRL, cfg.counter_mask());
        w(GLOBAL_CTRL, cfg.gp_mask());
    }
}

/// Enable exactly `bits` in GLOBAL_CTRL (version 2+; nothing on version 1).
pub fn global_enable(cfg: &Config, bits: u64) {
    if cfg.version >= 2 {
        w(GLOBAL_CTRL, bits);
    }
}

pub fn spin(ticks: u64) {
    msr::spin_tsc(ticks);
}
