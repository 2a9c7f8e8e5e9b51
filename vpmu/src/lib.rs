//! The virtual PMU: an Intel architectural or AMD64 PMU as a guest sees it, the
//! multiplexer that maps guest counters onto host counters, and the host
//! backends. Nothing here depends on KVM, so all of it is testable without
//! `/dev/kvm`.
//!
//! - [`arch`]: the SDM's architectural PMU (MSR map, field decoding, CPUID
//!   leaf 0xA, the architectural events table) and the APM's AMD64 PMU
//!   ([`arch::amd`]).
//! - [`config`]: the user's vPMU configuration and its validation.
//! - [`guest`]: the guest-visible PMU of one vCPU (RDMSR/WRMSR semantics).
//! - [`source`]: the trait through which the guest PMU is fed counts.
//! - [`event`]: generic event names, host events and their modifiers.
//! - [`backend`]: the host backend trait and its types, shared by the
//!   multiplexer and the backends.
//! - [`core`]: the multiplexer, after the Linux perf core.
//! - [`host`]: host counter backends (perf, simulated, no-op), profiles,
//!   and the assembly that builds a vCPU's counters.
//! - [`stats`]: serde snapshot types for the statistics API.
//! - [`util`]: helpers that are not about PMUs: the slab shared by the
//!   multiplexer and the backends, bounded file reads.

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
