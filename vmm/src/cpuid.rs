//! The CPUID table each vCPU sees: what KVM supports, with per-vCPU
//! topology fields set.

use kvm_bindings::CpuId;

/// CPUID.1:ECX bit 31: running under a hypervisor.
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;

/// Adjusts `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `id` of `count`.
pub fn for_vcpu(base: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors.
                e.ebx = (e.ebx & 0x0000_FFFF) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= CPUID1_ECX_HYPERVISOR;
            }
            // x2APIC topology: EDX is the x2APIC ID on every sub-leaf.
            0xB | 0x1F => e.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}
