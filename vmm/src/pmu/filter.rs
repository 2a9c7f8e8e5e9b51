//! The KVM MSR filter that sends exactly the PMU MSRs to user space.
//!
//! `KVM_CAP_X86_USER_SPACE_MSR` with the *filter* exit reason turns a denied
//! access into a `KVM_EXIT_X86_RDMSR`/`WRMSR` exit; every other MSR stays
//! with KVM (default action allow). Without the filter KVM would answer some
//! PMU MSRs itself. Both vendors' PMU MSRs are denied whatever the guest's
//! PMU architecture, so the model answers the other vendor's with #GP.

use kvm_bindings::{kvm_enable_cap, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};

use crate::VmError;

/// Installs the filter denying `vpmu::arch::trapped_ranges()`.
pub fn install(vm: &VmFd) -> Result<(), VmError> {
    let cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| VmError::Kvm("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)", e))?;
    let ranges: Vec<(u32, u32)> = vpmu::arch::trapped_ranges().collect();
    // A clear bit denies the access (so it exits to user space).
    let bitmaps: Vec<Vec<u8>> = ranges
        .iter()
        .map(|&(_, n)| vec![0u8; n.div_ceil(8) as usize])
        .collect();
    let filter: Vec<MsrFilterRange> = ranges
        .iter()
        .zip(&bitmaps)
        .map(|(&(base, msr_count), bitmap)| MsrFilterRange {
            flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
            base,
            msr_count,
            bitmap,
        })
        .collect();
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &filter)
        .map_err(|e| VmError::Kvm("KVM_X86_SET_MSR_FILTER", e))
}
