//! What the multiplexer ([`crate::core`]) needs of a host backend, and
//! what the backends ([`crate::host`]) implement: the [`HostBackend`]
//! trait, its handles, readings and errors, and where events are counted
//! ([`EventMapping`], [`PmuKind`]). Neither side imports the other; both
//! import this.

use crate::event::{EventName, HostEvent};

/// What a host PMU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuKind {
    /// Counters are a scarce resource: capacity, constraints, rotation.
    Hardware,
    /// Always schedules, unbounded, never rotates (perf's software PMU).
    Software,
}

/// Where a generic event is counted on a host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventMapping {
    pub pmu: usize,
    pub mask: u32,
    pub rate_per_ns: f64,
    pub software: bool,
}

/// An open host counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostHandle(pub u32);

/// What a host counter reports: its count since open, and the times (vCPU
/// run time, ns) it was enabled and actually counting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostReading {
    pub count: u64,
    pub time_enabled: u64,
    pub time_running: u64,
}

/// Errors of a host backend.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no host PMU #{0}")]
    UnknownPmu(usize),
    #[error("host PMU `{pmu}` cannot count `{event}`")]
    Unsupported { pmu: String, event: EventName },
    #[error("no such host counter handle {0:?}")]
    BadHandle(HostHandle),
    #[error("counter {slot} of host PMU `{pmu}` is busy or not allowed for this event")]
    SlotUnavailable { pmu: String, slot: u8 },
    #[error("host PMU `{pmu}` has no free counter")]
    NoCounter { pmu: String },
    #[error("host counter {0:?} is already enabled")]
    AlreadyEnabled(HostHandle),
    #[error("host I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Operations the scheduler needs on host counters.
///
/// `slot` is the counter of the host PMU the scheduler assigned (general
/// purpose counters first, then fixed ones), `None` on a software PMU. A perf
/// backend lets the kernel pick the counter and may ignore it; the simulated
/// backend enforces it, so it checks the scheduler's capacity and constraint
/// bookkeeping independently.
pub trait HostBackend {
    /// Opens a disabled host counter.
    fn open(&mut self, event: &HostEvent) -> Result<HostHandle, HostError>;
    /// Starts counting on `slot` at `now`.
    fn enable(&mut self, h: HostHandle, slot: Option<u8>, now: u64) -> Result<(), HostError>;
    /// Stops counting at `now`; the count is kept.
    fn disable(&mut self, h: HostHandle, now: u64) -> Result<(), HostError>;
    /// An enabled counter was moved to another counter of its PMU by a
    /// constraint-solving placement. The count carries over.
    fn reassign(&mut self, _h: HostHandle, _slot: u8) {}
    /// Count and times since open, as of `now`.
    fn read(&mut self, h: HostHandle, now: u64) -> Result<HostReading, HostError>;
    /// The guest counter behind `h` overflows after `after` more events
    /// (`None`: it does not sample). A backend that can be told (perf: the
    /// sample period, restarted from now) notifies the vCPU then; the
    /// default does nothing and the VMM relies on polling.
    fn set_overflow(&mut self, _h: HostHandle, _after: Option<u64>) -> Result<(), HostError> {
        Ok(())
    }
    /// What `event` on `pmu` really did over `[from, to)`, where the backend
    /// knows it (the simulated backend: its rate x workload); `None` for a
    /// real host, where only the counts are known.
    fn truth(&self, _pmu: usize, _event: EventName, _from: u64, _to: u64) -> Option<u64> {
        None
    }
    /// Releases the counter.
    fn close(&mut self, h: HostHandle) -> Result<(), HostError>;
    /// "simulated", "perf", "noop": shown in statistics.
    fn kind(&self) -> &'static str;
}
