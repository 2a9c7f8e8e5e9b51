//! The guest-visible PMU architectures. The Intel architectural PMU as the
//! SDM defines it (Vol. 3B, "Architectural Performance Monitoring"): the MSR
//! map and field decoding ([`msr`]), CPUID leaf 0AH ([`cpuid`]), and the
//! architectural events ([`events`]). The AMD64 PMU (APM Vol. 2 §13.2) in
//! [`amd`].

pub mod amd;
pub mod cpuid;
pub mod events;
pub mod msr;

pub use events::{ArchEvent, ArchEvents, ARCH_EVENTS};

/// Mask of a general-purpose counter value (48 bits wide).
pub const GP_COUNTER_MASK: u64 = (1 << crate::config::GP_COUNTER_WIDTH) - 1;
/// Mask of a fixed-function counter value (48 bits wide).
pub const FIXED_COUNTER_MASK: u64 = (1 << crate::config::FIXED_COUNTER_WIDTH) - 1;

/// Every PMU MSR range of both vendors, `(first index, count)`: what a VMM
/// denies in its KVM MSR filter so that the model answers every PMU MSR
/// access, including the #GP for the other vendor's MSRs.
pub fn trapped_ranges() -> impl Iterator<Item = (u32, u32)> {
    msr::trapped_ranges()
        .iter()
        .chain(amd::msr::trapped_ranges())
        .copied()
}

/// Whether `index` is a PMU MSR of either vendor (inside [`trapped_ranges`]).
pub fn is_pmu_msr(index: u32) -> bool {
    msr::is_pmu_msr(index) || amd::AmdPmuMsr::decode(index).is_some()
}

/// The SDM or APM name of PMU MSR `index`, if it is one.
pub fn msr_name(index: u32) -> Option<String> {
    if let Some(m) = msr::PmuMsr::decode(index) {
        return Some(m.name());
    }
    amd::AmdPmuMsr::decode(index).map(|m| m.name())
}
