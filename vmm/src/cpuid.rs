//! The CPUID table each vCPU sees: what KVM supports, with per-vCPU
//! topology fields set.

use kvm_bindings::CpuId;
use vpmu::arch::{cpuid as pmu_cpuid, events::ArchEvents};
use vpmu::config::PmuConfig;

/// CPUID.1:ECX bit 31: running under a hypervisor.
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:ECX bit 15: Perfmon and Debug Capability (IA32_PERF_CAPABILITIES).
const CPUID1_ECX_PDCM: u32 = 1 << 15;

/// Adjusts `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`,
/// with the architectural PMU leaf built from `pmu`.
pub fn for_vcpu(
    base: &CpuId,
    id: u8,
    count: u8,
    pmu: &PmuConfig,
    unavailable: ArchEvents,
) -> CpuId {
    let mut cpuid = base.clone();
    let [a, b, c, d] = pmu_cpuid::leaf_0xa(pmu, unavailable);
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors.
                e.ebx = (e.ebx & 0x0000_FFFF) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= CPUID1_ECX_HYPERVISOR;
                if pmu_cpuid::pdcm(pmu) {
                    e.ecx |= CPUID1_ECX_PDCM;
                } else {
                    e.ecx &= !CPUID1_ECX_PDCM;
                }
            }
            0xA => (e.eax, e.ebx, e.ecx, e.edx) = (a, b, c, d),
            // x2APIC topology: EDX is the x2APIC ID on every sub-leaf.
            0xB | 0x1F => e.edx = u32::from(id),
            _ => {}
        }
    }
    if !cpuid.as_slice().iter().any(|e| e.function == 0xA) {
        let leaf = kvm_bindings::kvm_cpuid_entry2 {
            function: 0xA,
            eax: a,
            ebx: b,
            ecx: c,
            edx: d,
            ..Default::default()
        };
        if cpuid.push(leaf).is_err() {
            log::warn!("CPUID table full: the guest sees no PMU leaf 0xA");
        }
    }
    cpuid
}
