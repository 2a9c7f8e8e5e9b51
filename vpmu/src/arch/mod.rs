//! The Intel architectural PMU as the SDM defines it (Vol. 3B, "Architectural
//! Performance Monitoring"): the MSR map and field decoding ([`msr`]), CPUID
//! leaf 0AH ([`cpuid`]), and the architectural events ([`events`]).

pub mod cpuid;
pub mod events;
pub mod msr;

pub use events::{ArchEvent, ArchEvents, ARCH_EVENTS};

/// Mask of a general-purpose counter value (48 bits wide).
pub const GP_COUNTER_MASK: u64 = (1 << crate::config::GP_COUNTER_WIDTH) - 1;
/// Mask of a fixed-function counter value (48 bits wide).
pub const FIXED_COUNTER_MASK: u64 = (1 << crate::config::FIXED_COUNTER_WIDTH) - 1;
