//! Snapshot types of the statistics API (serde; shared with the HTTP API).
//!
//! A vCPU thread builds a [`VcpuStats`] (see
//! [`crate::core::VcpuCounters::snapshot`]) and publishes it in a
//! [`SnapshotSlot`]; API threads read the latest one without ever waiting for
//! the vCPU. Values of simulated host PMUs carry the label `simulated`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::core::PmuContext;
use crate::source::CounterIndex;

/// State of a guest counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterState {
    /// Holds a host counter, counting.
    Active,
    /// Enabled, waiting for a host counter (multiplexed out).
    Inactive,
    /// Pinned and could not be placed: not counting.
    Error,
    /// Enabled but counted in a lesser way: unavailable on this host
    /// (counts zero), or approximated (see labels).
    Degraded,
    /// Stopped by the guest.
    Off,
}

/// One guest counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterStats {
    pub counter: CounterIndex,
    /// The counter's name: `gp0`, `fixed1` (Intel guest PMU), `perf_ctr0`
    /// (AMD guest PMU).
    pub name: String,
    /// Generic event name (`cycles`, ...) or `raw:0xSSUU`.
    pub event: String,
    pub host_pmu: Option<String>,
    pub group: Option<u64>,
    pub state: CounterState,
    /// `simulated`, `software-emulated`, `unavailable`, `approximate`,
    /// `sampling` (never extrapolated), `pinned`.
    pub labels: Vec<String>,
    /// Events the host counted for it (lifetime).
    pub raw: u64,
    /// Raw extrapolated to the enabled time (lifetime).
    pub scaled: u64,
    pub enabled_ns: u64,
    pub running_ns: u64,
    /// running / enabled x 100 (100 when never enabled).
    pub running_pct: f64,
    /// Simulated host only: what the counter's event really did over its
    /// enabled time (rate x workload), to measure the multiplexer's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_truth: Option<u64>,
}

pub use crate::backend::PmuKind;

/// Counters of a host PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityStats {
    pub gp: u8,
    pub fixed: u8,
    pub unbounded: bool,
}

/// One host PMU as seen by one vCPU context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PmuStats {
    pub name: String,
    pub kind: PmuKind,
    /// The backend: `simulated`, `perf`, `noop`.
    pub backend: String,
    pub capacity: CapacityStats,
    pub interval_ms: u64,
    /// Rotations of this PMU by all contexts.
    pub rotations: u64,
    /// Rotations of this PMU by this context.
    pub context_rotations: u64,
    pub rotate_necessary: bool,
    pub groups_active: usize,
    pub groups_waiting: usize,
    pub groups_error: usize,
    pub counters_used: u32,
}

impl PmuStats {
    pub(crate) fn of(pc: &PmuContext, backend: BackendKind) -> PmuStats {
        let pmu = pc.pmu();
        let cap = pmu.capacity();
        PmuStats {
            name: pmu.name().to_string(),
            kind: pmu.kind(),
            backend: backend.as_str().to_string(),
            capacity: CapacityStats {
                gp: cap.gp,
                fixed: cap.fixed,
                unbounded: cap.unbounded,
            },
            interval_ms: pmu.interval_ms(),
            rotations: pmu.rotations(),
            context_rotations: pc.rotations(),
            rotate_necessary: pc.rotate_necessary(),
            groups_active: pc.groups_active(),
            groups_waiting: pc.groups_waiting(),
            groups_error: pc.groups_error(),
            counters_used: pc.counters_used(),
        }
    }
}

/// One vCPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VcpuStats {
    pub vcpu: u32,
    /// vCPU run time the snapshot was taken at.
    pub run_time_ns: u64,
    /// `raw` or `scaled`.
    pub scaling: String,
    /// `per-counter` or `packed`.
    pub grouping: String,
    pub counters: Vec<CounterStats>,
    pub pmus: Vec<PmuStats>,
}

/// The latest published snapshot of one vCPU. The vCPU thread swaps a new
/// one in (a short critical section); readers clone it.
#[derive(Debug, Default)]
pub struct SnapshotSlot {
    latest: Mutex<Option<VcpuStats>>,
}

impl SnapshotSlot {
    pub fn publish(&self, stats: VcpuStats) {
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(stats);
        }
    }

    pub fn latest(&self) -> Option<VcpuStats> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }
}
