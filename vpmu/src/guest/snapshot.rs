//! Serializable view of one vCPU's guest PMU, for the statistics API and
//! debugging. Built off the MSR path, so it may allocate.

use crate::arch::msr::{EventSelect, FixedCtrl};
use serde::{Deserialize, Serialize};

/// The guest-visible PMU state of one vCPU, as of the last drain of its
/// counters ([`super::GuestPmu::sync`] or an MSR read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPmuState {
    /// vPMU on for this vCPU.
    pub enabled: bool,
    /// Architectural PMU version (0 when off).
    pub version: u8,
    /// `IA32_PERF_CAPABILITIES`.
    pub perf_capabilities: u64,
    /// `IA32_FIXED_CTR_CTRL`.
    pub fixed_ctr_ctrl: u64,
    /// `IA32_PERF_GLOBAL_CTRL`.
    pub global_ctrl: u64,
    /// `IA32_PERF_GLOBAL_STATUS`.
    pub global_status: u64,
    /// `IA32_PERF_GLOBAL_INUSE` (computed; 0 before version 4).
    pub global_inuse: u64,
    /// A PMI is pending delivery.
    pub pmi_pending: bool,
    /// General-purpose counters, in index order.
    pub gp: Vec<GpCounterState>,
    /// Fixed-function counters, in index order.
    pub fixed: Vec<FixedCounterState>,
}

/// One general-purpose counter `IA32_PMCx` and its `IA32_PERFEVTSELx`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpCounterState {
    pub index: u8,
    /// Counter value (48 bits).
    pub value: u64,
    /// Raw `IA32_PERFEVTSELx`.
    pub evtsel: u64,
    /// Decoded `IA32_PERFEVTSELx`.
    pub select: EventSelect,
    /// perf name of the architectural event it selects, if it selects one.
    pub event_name: Option<String>,
    /// `EN` set.
    pub enabled: bool,
    /// Counting: locally and globally enabled, for at least one privilege level.
    pub running: bool,
    /// Its `IA32_PERF_GLOBAL_STATUS` overflow bit.
    pub overflowed: bool,
}

/// One fixed-function counter `IA32_FIXED_CTRx` and its control nibble.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedCounterState {
    pub index: u8,
    /// Counter value (48 bits).
    pub value: u64,
    /// Decoded nibble of `IA32_FIXED_CTR_CTRL`.
    pub ctrl: FixedCtrl,
    /// perf name of the architectural event it counts.
    pub event_name: String,
    /// `ENi` non-zero.
    pub enabled: bool,
    /// Counting: locally and globally enabled.
    pub running: bool,
    /// Its `IA32_PERF_GLOBAL_STATUS` overflow bit.
    pub overflowed: bool,
}
