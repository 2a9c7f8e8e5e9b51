//! Intel architectural PMU constants, by their SDM names: the MSRs, the
//! `IA32_PERFEVTSELx` fields and the `IA32_FIXED_CTR_CTRL` nibble bits.

pub const IA32_PMC0: u32 = 0xC1;
pub const IA32_PERFEVTSEL0: u32 = 0x186;
/// Full-width aliases of `IA32_PMCx` (with `PERF_CAPABILITIES.FW_WRITE`).
pub const IA32_A_PMC0: u32 = 0x4C1;
pub const IA32_FIXED_CTR0: u32 = 0x309;
pub const IA32_PERF_CAPABILITIES: u32 = 0x345;
pub const IA32_FIXED_CTR_CTRL: u32 = 0x38D;
pub const IA32_PERF_GLOBAL_STATUS: u32 = 0x38E;
pub const IA32_PERF_GLOBAL_CTRL: u32 = 0x38F;
/// `IA32_PERF_GLOBAL_OVF_CTRL`, `IA32_PERF_GLOBAL_STATUS_RESET` from v4.
pub const IA32_PERF_GLOBAL_OVF_CTRL: u32 = 0x390;
pub const IA32_PERF_GLOBAL_STATUS_SET: u32 = 0x391;
pub const IA32_PERF_GLOBAL_INUSE: u32 = 0x392;

/// `IA32_PERF_CAPABILITIES.FW_WRITE`.
pub const PERF_CAP_FW_WRITE: u64 = 1 << 13;
/// `CPUID.01H:ECX.PDCM`: `IA32_PERF_CAPABILITIES` exists.
pub const CPUID_1_ECX_PDCM: u32 = 1 << 15;

/// `IA32_PERFEVTSELx` fields.
pub const USR: u64 = 1 << 16;
pub const OS: u64 = 1 << 17;
pub const EDGE: u64 = 1 << 18;
pub const PC: u64 = 1 << 19;
pub const INT: u64 = 1 << 20;
pub const ANY: u64 = 1 << 21;
pub const EN: u64 = 1 << 22;
pub const INV: u64 = 1 << 23;

/// `IA32_FIXED_CTR_CTRL` nibble bits (shifted by 4 x counter).
pub const F_OS: u64 = 1;
pub const F_USR: u64 = 2;
pub const F_ANY: u64 = 4;
pub const F_PMI: u64 = 8;

/// Counter width of this vPMU.
pub const MASK48: u64 = (1 << 48) - 1;
