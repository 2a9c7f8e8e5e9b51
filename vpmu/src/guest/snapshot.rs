//! Serializable view of one vCPU's guest PMU, for the statistics API and
//! debugging. Built off the MSR path, so it may allocate.

use crate::arch::amd::PerfCtl;
use crate::arch::msr::{EventSelect, FixedCtrl};
use crate::config::PmuArch;
use crate::source::EventCode;
use serde::{Deserialize, Serialize};

/// The guest-visible PMU state of one vCPU, as of the last drain of its
/// counters ([`super::GuestPmu::sync`] or an MSR read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPmuState {
    /// The vendor interface the guest sees.
    pub arch: PmuArch,
    /// vPMU on for this vCPU.
    pub enabled: bool,
    /// Intel: architectural PMU version (0 when off). AMD: 0 legacy, 1
    /// PerfCtrCore, 2 PerfMonV2.
    pub version: u8,
    /// `IA32_PERF_CAPABILITIES` (0 on AMD).
    pub perf_capabilities: u64,
    /// `IA32_FIXED_CTR_CTRL` (0 on AMD).
    pub fixed_ctr_ctrl: u64,
    /// `IA32_PERF_GLOBAL_CTRL`, or AMD `PerfCntrGlobalCtl`.
    pub global_ctrl: u64,
    /// `IA32_PERF_GLOBAL_STATUS`, or AMD `PerfCntrGlobalStatus`.
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

/// A general-purpose counter's event select, decoded by its architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GpSelect {
    /// `IA32_PERFEVTSELx`.
    Intel(EventSelect),
    /// AMD `PERF_CTLx`.
    Amd(PerfCtl),
}

impl GpSelect {
    /// Event select and unit mask.
    pub fn code(&self) -> EventCode {
        match self {
            GpSelect::Intel(s) => s.code(),
            GpSelect::Amd(s) => s.code(),
        }
    }
}

/// One general-purpose counter (`IA32_PMCx` or AMD `PERF_CTRx`) and its
/// event select.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpCounterState {
    pub index: u8,
    /// The counter's name, as the statistics name it (`gp0`, `perf_ctr0`).
    pub name: String,
    /// Counter value (48 bits).
    pub value: u64,
    /// Raw `IA32_PERFEVTSELx` / `PERF_CTLx`.
    pub evtsel: u64,
    /// Decoded event select.
    pub select: GpSelect,
    /// perf name of the event it selects, if this model names it.
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
    /// The counter's name, as the statistics name it (`fixed0`).
    pub name: String,
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
