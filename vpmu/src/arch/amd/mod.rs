//! The AMD64 PMU as the AMD APM defines it (Vol. 2 §13.2 "Performance
//! Monitoring Counters") with the PerfCtrCore and PerfMonV2 extensions: the
//! MSR map and field decoding ([`msr`]), its CPUID bits ([`cpuid`]) and the
//! core events the host side translates ([`events`]).
//!
//! Generations, as `PmuConfig::version` names them for [`crate::config::PmuArch::Amd`]:
//! 0 = the four legacy counters, 1 = PerfCtrCore (six counters), 2 =
//! PerfMonV2 (global control and status).

pub mod cpuid;
pub mod events;
pub mod msr;

pub use msr::{AmdPmuMsr, PerfCtl};
