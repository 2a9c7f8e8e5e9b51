//! The CPUID table each vCPU sees: what KVM supports, with the vendor the
//! user chose, per-vCPU topology fields, and the PMU leaves and bits of the
//! configured PMU architecture (and only those: an Intel PMU clears the AMD
//! PMU bits and leaves, an AMD PMU zeroes leaf 0AH and PDCM, a disabled vPMU
//! advertises neither).

use kvm_bindings::{kvm_cpuid_entry2, CpuId};
use vpmu::arch::amd::cpuid as amd_cpuid;
use vpmu::arch::{cpuid as intel_cpuid, events::ArchEvents};
use vpmu::config::{PmuArch, PmuConfig};

/// CPUID.1:ECX bit 31: running under a hypervisor.
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:ECX bit 15: Perfmon and Debug Capability (IA32_PERF_CAPABILITIES).
const CPUID1_ECX_PDCM: u32 = 1 << 15;
/// Largest extended leaf, in `CPUID 8000_0000h:EAX`.
const LEAF_EXT_MAX: u32 = 0x8000_0000;
/// Extended feature flags (`PerfCtrCore` in ECX).
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;

/// The CPU vendor a guest sees in CPUID leaf 0 (and 8000_0000h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuVendor {
    /// `GenuineIntel`.
    Intel,
    /// `AuthenticAMD`.
    Amd,
}

impl CpuVendor {
    /// The vendor string as CPUID returns it in `[ebx, edx, ecx]`.
    pub fn signature(self) -> [u32; 3] {
        let s: &[u8; 12] = match self {
            CpuVendor::Intel => b"GenuineIntel",
            CpuVendor::Amd => b"AuthenticAMD",
        };
        let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        [word(0), word(4), word(8)]
    }

    /// The vendor of a CPUID leaf 0 `[ebx, edx, ecx]`, if it is one of ours.
    pub fn of_signature(sig: [u32; 3]) -> Option<Self> {
        [CpuVendor::Intel, CpuVendor::Amd]
            .into_iter()
            .find(|v| v.signature() == sig)
    }

    /// The vendor of the CPU this process runs on (`None` for others, e.g.
    /// Hygon or Zhaoxin).
    pub fn host() -> Option<Self> {
        let r = std::arch::x86_64::__cpuid(0);
        Self::of_signature([r.ebx, r.edx, r.ecx])
    }

    /// The PMU interface guests of this vendor program.
    pub fn pmu_arch(self) -> PmuArch {
        match self {
            CpuVendor::Intel => PmuArch::Intel,
            CpuVendor::Amd => PmuArch::Amd,
        }
    }

    /// Lower-case name, as on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuVendor::Intel => "intel",
            CpuVendor::Amd => "amd",
        }
    }
}

/// What the guest's CPUID must say about its CPU and PMU.
#[derive(Clone, Copy, Debug)]
pub struct GuestCpu {
    /// Vendor string in leaves 0 and 8000_0000h.
    pub vendor: CpuVendor,
    /// The guest PMU: selects which vendor's PMU leaves are filled.
    pub pmu: PmuConfig,
    /// Intel architectural events the host side cannot count
    /// (`CPUID.0AH:EBX`).
    pub unavailable: ArchEvents,
}

/// Sets leaf `function` (sub-leaf 0) to `regs`, adding it if missing.
fn set_leaf(cpuid: &mut CpuId, function: u32, [eax, ebx, ecx, edx]: [u32; 4]) {
    if let Some(e) = cpuid
        .as_mut_slice()
        .iter_mut()
        .find(|e| e.function == function && e.index == 0)
    {
        (e.eax, e.ebx, e.ecx, e.edx) = (eax, ebx, ecx, edx);
        return;
    }
    let leaf = kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    };
    if cpuid.push(leaf).is_err() {
        log::warn!("CPUID table full: the guest sees no leaf {function:#x}");
    }
}

/// Adjusts `base` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`.
pub fn for_vcpu(base: &CpuId, id: u8, count: u8, cpu: &GuestCpu) -> CpuId {
    let mut cpuid = base.clone();
    let pmu = &cpu.pmu;
    let intel_pmu = pmu.enabled && pmu.arch == PmuArch::Intel;
    let [vb, vd, vc] = cpu.vendor.signature();
    let ext_perfmon = amd_cpuid::leaf_0x8000_0022(pmu);
    for e in cpuid.as_mut_slice() {
        match e.function {
            0 => (e.ebx, e.edx, e.ecx) = (vb, vd, vc),
            1 => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors.
                e.ebx = (e.ebx & 0x0000_FFFF) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= CPUID1_ECX_HYPERVISOR;
                if intel_pmu && intel_cpuid::pdcm(pmu) {
                    e.ecx |= CPUID1_ECX_PDCM;
                } else {
                    e.ecx &= !CPUID1_ECX_PDCM;
                }
            }
            // x2APIC topology: EDX is the x2APIC ID on every sub-leaf.
            0xB | 0x1F => e.edx = u32::from(id),
            LEAF_EXT_MAX => {
                // AMD repeats the vendor string here; Intel returns zeros.
                (e.ebx, e.edx, e.ecx) = match cpu.vendor {
                    CpuVendor::Amd => (vb, vd, vc),
                    CpuVendor::Intel => (0, 0, 0),
                };
                if ext_perfmon != [0; 4] {
                    e.eax = e.eax.max(amd_cpuid::LEAF_EXT_PERFMON);
                }
            }
            LEAF_EXT_FEATURES => {
                if amd_cpuid::perfctr_core(pmu) {
                    e.ecx |= amd_cpuid::PERFCTR_CORE;
                } else {
                    e.ecx &= !amd_cpuid::PERFCTR_CORE;
                }
            }
            _ => {}
        }
    }
    let leaf_a = if intel_pmu {
        intel_cpuid::leaf_0xa(pmu, cpu.unavailable)
    } else {
        [0; 4]
    };
    set_leaf(&mut cpuid, 0xA, leaf_a);
    let has_ext_perfmon = cpuid
        .as_slice()
        .iter()
        .any(|e| e.function == amd_cpuid::LEAF_EXT_PERFMON);
    if ext_perfmon != [0; 4] || has_ext_perfmon {
        set_leaf(&mut cpuid, amd_cpuid::LEAF_EXT_PERFMON, ext_perfmon);
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CpuId {
        let entries = [
            kvm_cpuid_entry2 {
                function: 0,
                eax: 0x16,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 1,
                ecx: CPUID1_ECX_PDCM,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_EXT_MAX,
                eax: 0x8000_0008,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_EXT_FEATURES,
                ecx: amd_cpuid::PERFCTR_CORE | 1,
                ..Default::default()
            },
        ];
        CpuId::from_entries(&entries).unwrap()
    }

    fn leaf(c: &CpuId, f: u32) -> Option<[u32; 4]> {
        c.as_slice()
            .iter()
            .find(|e| e.function == f)
            .map(|e| [e.eax, e.ebx, e.ecx, e.edx])
    }

    fn guest(vendor: CpuVendor, pmu: PmuConfig) -> CpuId {
        let cpu = GuestCpu {
            vendor,
            pmu,
            unavailable: ArchEvents::NONE,
        };
        for_vcpu(&base(), 1, 2, &cpu)
    }

    #[test]
    fn vendor_strings() {
        for v in [CpuVendor::Intel, CpuVendor::Amd] {
            assert_eq!(CpuVendor::of_signature(v.signature()), Some(v));
            let c = guest(v, PmuConfig::default());
            let [_, b, c0, d] = leaf(&c, 0).unwrap();
            assert_eq!(CpuVendor::of_signature([b, d, c0]), Some(v));
        }
        assert_eq!(
            CpuVendor::Intel.signature()[0],
            u32::from_le_bytes(*b"Genu")
        );
        assert!(
            CpuVendor::host().is_some(),
            "this project's hosts are Intel or AMD"
        );
    }

    #[test]
    fn intel_pmu_clears_the_amd_pmu_bits() {
        let c = guest(CpuVendor::Intel, PmuConfig::default());
        let a = leaf(&c, 0xA).unwrap();
        assert_eq!(a[0] & 0xFF, 4, "version 4");
        assert_ne!(leaf(&c, 1).unwrap()[2] & CPUID1_ECX_PDCM, 0);
        assert_eq!(
            leaf(&c, LEAF_EXT_FEATURES).unwrap()[2],
            1,
            "PerfCtrCore cleared"
        );
        assert_eq!(leaf(&c, amd_cpuid::LEAF_EXT_PERFMON), None);
        assert_eq!(leaf(&c, LEAF_EXT_MAX).unwrap()[1], 0, "no vendor string");
    }

    #[test]
    fn amd_pmu_zeroes_leaf_0xa_and_pdcm() {
        for v in 0..=2u8 {
            let c = guest(CpuVendor::Amd, PmuConfig::amd(v, 4));
            assert_eq!(leaf(&c, 0xA), Some([0; 4]));
            assert_eq!(leaf(&c, 1).unwrap()[2] & CPUID1_ECX_PDCM, 0);
            let core = leaf(&c, LEAF_EXT_FEATURES).unwrap()[2] & amd_cpuid::PERFCTR_CORE != 0;
            assert_eq!(core, v >= 1, "v{v}");
            let ext = leaf(&c, amd_cpuid::LEAF_EXT_PERFMON);
            let max = leaf(&c, LEAF_EXT_MAX).unwrap()[0];
            if v == 2 {
                assert_eq!(ext, Some([1, 4, 0, 0]));
                assert_eq!(max, amd_cpuid::LEAF_EXT_PERFMON);
            } else {
                assert_eq!(ext, None);
                assert_eq!(max, 0x8000_0008);
            }
        }
    }

    #[test]
    fn vpmu_off_advertises_no_pmu() {
        for cfg in [
            PmuConfig::disabled(),
            PmuConfig {
                enabled: false,
                ..PmuConfig::amd(2, 6)
            },
        ] {
            let c = guest(CpuVendor::Amd, cfg);
            assert_eq!(leaf(&c, 0xA), Some([0; 4]));
            assert_eq!(
                leaf(&c, LEAF_EXT_FEATURES).unwrap()[2] & amd_cpuid::PERFCTR_CORE,
                0
            );
            assert_eq!(leaf(&c, 1).unwrap()[2] & CPUID1_ECX_PDCM, 0);
        }
    }
}
