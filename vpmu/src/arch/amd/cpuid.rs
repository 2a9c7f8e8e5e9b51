//! CPUID as an AMD guest sees its PMU (APM Vol. 3, "CPUID"): the PerfCtrCore
//! bit of leaf 8000_0001h and the PerfMonV2 leaf 8000_0022h.

use crate::config::{PmuArch, PmuConfig};

/// `CPUID Fn8000_0001_ECX[23]` PerfCtrCore: the six `PERF_CTL`/`PERF_CTR`
/// pairs at `MSRC001_020x` exist.
pub const PERFCTR_CORE: u32 = 1 << 23;
/// `CPUID Fn8000_0022`: extended performance monitoring and debug.
pub const LEAF_EXT_PERFMON: u32 = 0x8000_0022;
/// `CPUID Fn8000_0022_EAX[0]` PerfMonV2.
pub const EAX_PERFMON_V2: u32 = 1 << 0;

/// Whether `CPUID Fn8000_0001_ECX.PerfCtrCore` is set: an enabled AMD PMU of
/// version 1 or 2.
pub fn perfctr_core(cfg: &PmuConfig) -> bool {
    cfg.enabled && cfg.arch == PmuArch::Amd && cfg.version >= 1
}

/// `CPUID Fn8000_0022` as `[eax, ebx, ecx, edx]`: with PerfMonV2, EAX bit 0
/// and `EBX[3:0]` = number of core counters (`NumPerfCtrCore`); all zero
/// otherwise (no LBR v2 stack, no northbridge or UMC counters).
pub fn leaf_0x8000_0022(cfg: &PmuConfig) -> [u32; 4] {
    if !cfg.enabled || cfg.arch != PmuArch::Amd || cfg.version < 2 {
        return [0; 4];
    }
    [EAX_PERFMON_V2, u32::from(cfg.effective_gp()) & 0xF, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_version() {
        assert!(!perfctr_core(&PmuConfig::amd(0, 4)));
        assert!(perfctr_core(&PmuConfig::amd(1, 6)));
        assert_eq!(leaf_0x8000_0022(&PmuConfig::amd(1, 6)), [0; 4]);
        assert_eq!(leaf_0x8000_0022(&PmuConfig::amd(2, 5)), [1, 5, 0, 0]);
        let off = PmuConfig {
            enabled: false,
            ..PmuConfig::amd(2, 6)
        };
        assert!(!perfctr_core(&off));
        assert_eq!(leaf_0x8000_0022(&off), [0; 4]);
        assert!(!perfctr_core(&PmuConfig::default()));
        assert_eq!(leaf_0x8000_0022(&PmuConfig::default()), [0; 4]);
    }
}
