//! CPUID as the guest sees it: leaf 0AH (architectural performance
//! monitoring) and `CPUID.01H:ECX.PDCM` with `IA32_PERF_CAPABILITIES`.

use super::events::{ebx_length, fixed_event, ArchEvents};
use super::msr::PERF_CAP_FW_WRITE;
use crate::config::{PmuConfig, FIXED_COUNTER_WIDTH, GP_COUNTER_WIDTH};

/// `CPUID.01H:ECX.PDCM` (bit 15): `IA32_PERF_CAPABILITIES` exists.
pub const CPUID_1_ECX_PDCM: u32 = 1 << 15;
/// `CPUID.0AH:EDX[15]`: AnyThread deprecation.
pub const CPUID_A_EDX_ANYTHREAD_DEPRECATED: u32 = 1 << 15;

/// `CPUID.0AH` as `[eax, ebx, ecx, edx]`.
///
/// - EAX: version `[7:0]`, general-purpose counters `[15:8]`, their width
///   `[23:16]` (48), length of the EBX event vector `[31:24]` (7 for
///   versions 1 to 4, 8 with topdown slots for version 5);
/// - EBX: bit i set = architectural event i unavailable (`unavailable`,
///   limited to the vector length);
/// - ECX (version 5): fixed-counter bitmask, bit i = `IA32_FIXED_CTRi` is
///   supported. Only the fixed counters whose event the host side can count
///   are advertised (clients expect every advertised fixed counter to count):
///   on a host without a hardware PMU that leaves out `IA32_FIXED_CTR0`
///   (instructions retired) and `IA32_FIXED_CTR3` (topdown slots);
/// - EDX (version 2+): fixed counters `[4:0]`, their width `[12:5]` (48 when
///   there is at least one), AnyThread deprecation `[15]` (version 5). From
///   version 5, `EDX[4:0]` counts the supported counters contiguous from 0
///   (the SDM: counter i is supported if `ECX[i]` or `EDX[4:0] > i`), so a
///   gap in ECX stays a gap. Versions 2-4 cannot express a gap: they
///   advertise every configured fixed counter, and `EBX` marks the events
///   that do not count, so a fixed counter on such an event reads 0.
///
/// All zero when the vPMU is off. The configuration is assumed valid
/// ([`PmuConfig::validate`]); out-of-range counts are clamped.
pub fn leaf_0xa(cfg: &PmuConfig, unavailable: ArchEvents) -> [u32; 4] {
    if !cfg.enabled || cfg.version == 0 {
        return [0; 4];
    }
    let version = cfg.version.min(crate::config::MAX_VERSION);
    let len = ebx_length(version);
    let eax = u32::from(version)
        | u32::from(cfg.effective_gp()) << 8
        | u32::from(GP_COUNTER_WIDTH) << 16
        | u32::from(len) << 24;
    let ebx = unavailable.0 & ((1u32 << len) - 1);
    let fixed = cfg.effective_fixed();
    let ecx = if version >= 5 {
        (0..fixed)
            .filter(|&i| fixed_event(i).is_some_and(|e| !unavailable.contains(e)))
            .fold(0u32, |m, i| m | 1 << i)
    } else {
        0
    };
    let mut edx = 0;
    if version >= 2 {
        edx = if version >= 5 {
            ecx.trailing_ones()
        } else {
            u32::from(fixed)
        };
        if fixed > 0 {
            edx |= u32::from(FIXED_COUNTER_WIDTH) << 5;
        }
    }
    if version >= 5 {
        edx |= CPUID_A_EDX_ANYTHREAD_DEPRECATED;
    }
    [eax, ebx, ecx, edx]
}

/// Whether `CPUID.01H:ECX.PDCM` must be set: whenever the vPMU is on, for
/// every version. The SDM ties `IA32_PERF_CAPABILITIES` to PDCM alone, not to
/// a PMU version (KVM likewise keys it on the guest's PDCM), and it is the
/// only way to advertise full-width writes.
pub fn pdcm(cfg: &PmuConfig) -> bool {
    cfg.enabled
}

/// The value of `IA32_PERF_CAPABILITIES`: `FW_WRITE` (bit 13) when full-width
/// writes are on, nothing else (no LBR format, no PEBS, no perf metrics: none
/// of those are emulated). Zero when the MSR does not exist ([`pdcm`] false).
pub fn perf_capabilities(cfg: &PmuConfig) -> u64 {
    if pdcm(cfg) && cfg.full_width_writes {
        PERF_CAP_FW_WRITE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::events::{
        ArchEvents, CORE_CYCLES, LLC_MISSES, REFERENCE_CYCLES, TOPDOWN_SLOTS,
    };

    fn cfg(version: u8, gp: u8, fixed: u8) -> PmuConfig {
        PmuConfig {
            version,
            gp_counters: gp,
            fixed_counters: fixed,
            ..Default::default()
        }
    }

    #[test]
    fn default_v4() {
        let [a, b, c, d] = leaf_0xa(&PmuConfig::default(), ArchEvents::NONE);
        assert_eq!(a, 4 | 8 << 8 | 48 << 16 | 7 << 24);
        assert_eq!(b, 0);
        assert_eq!(c, 0);
        assert_eq!(d, 3 | 48 << 5);
    }

    #[test]
    fn v5_fixed_bitmask_and_anythread() {
        let [a, b, c, d] = leaf_0xa(&cfg(5, 6, 4), ArchEvents::NONE);
        assert_eq!(a, 5 | 6 << 8 | 48 << 16 | 8 << 24);
        assert_eq!(b, 0);
        assert_eq!(c, 0xF);
        assert_eq!(d, 4 | 48 << 5 | 1 << 15);
        // Only counters whose event counts are advertised.
        let [_, b, c, d] = leaf_0xa(&cfg(5, 6, 4), ArchEvents::of(&TOPDOWN_SLOTS));
        assert_eq!(b, 1 << 7);
        assert_eq!((c, d & 0x1F), (0x7, 3));
        // No hardware PMU: instructions and topdown slots do not count, so
        // FIXED_CTR0 is a gap the contiguous count cannot include.
        let un = ArchEvents::ALL
            .without(&CORE_CYCLES)
            .without(&REFERENCE_CYCLES);
        let [_, _, c, d] = leaf_0xa(&cfg(5, 8, 4), un);
        assert_eq!((c, d & 0x1F), (0b0110, 0));
        // Versions 2-4 cannot express the gap.
        let [_, _, c, d] = leaf_0xa(&cfg(4, 8, 3), un);
        assert_eq!((c, d & 0x1F), (0, 3));
    }

    #[test]
    fn v1_no_fixed_and_unavailable_limited_to_length() {
        let un = ArchEvents::of(&LLC_MISSES).with(&TOPDOWN_SLOTS);
        let [a, b, c, d] = leaf_0xa(&cfg(1, 2, 0), un);
        assert_eq!(a, 1 | 2 << 8 | 48 << 16 | 7 << 24);
        assert_eq!(b, 1 << 4);
        assert_eq!((c, d), (0, 0));
    }

    #[test]
    fn v2_zero_fixed_has_no_width() {
        assert_eq!(leaf_0xa(&cfg(2, 4, 0), ArchEvents::NONE)[3], 0);
    }

    #[test]
    fn disabled_is_zero() {
        assert_eq!(leaf_0xa(&PmuConfig::disabled(), ArchEvents::ALL), [0; 4]);
        assert!(!pdcm(&PmuConfig::disabled()));
        assert_eq!(perf_capabilities(&PmuConfig::disabled()), 0);
    }

    #[test]
    fn pdcm_and_caps() {
        for v in 1..=5 {
            let mut c = cfg(v, 8, 0);
            assert!(pdcm(&c));
            assert_eq!(perf_capabilities(&c), 1 << 13);
            c.full_width_writes = false;
            assert_eq!(perf_capabilities(&c), 0);
        }
    }
}
