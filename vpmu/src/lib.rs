//! The virtual PMU: an Intel architectural PMU as a guest sees it, the
//! multiplexer that maps guest counters onto host counters, and the host
//! backends. Nothing here depends on KVM, so all of it is testable without
//! `/dev/kvm`.
//!
//! - [`arch`]: the SDM's architectural PMU: MSR map, field decoding, CPUID
//!   leaf 0xA, the architectural events table.
//! - [`config`]: the user's vPMU configuration and its validation.
//! - [`guest`]: the guest-visible PMU of one vCPU (RDMSR/WRMSR semantics).
//! - [`source`]: the trait through which the guest PMU is fed counts.
//! - [`core`]: the multiplexer, after the Linux perf core.
//! - [`host`]: host counter backends (simulated, perf).
//! - [`stats`]: serde snapshot types for the statistics API.
//! - [`util`]: helpers that are not about PMUs (bounded file reads).

pub mod arch;
pub mod backend;
pub mod config;
pub mod core;
pub mod event;
pub mod guest;
pub mod host;
pub mod source;
pub mod stats;
pub mod util;
