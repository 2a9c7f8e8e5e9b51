//! One host PMU as the scheduler sees it: the `perf_cpu_pmu_context`
//! analogue. Shared (`Arc`) by the contexts of every vCPU and the
//! statistics API.
//!
//! - capacity: general-purpose and fixed counters, or unbounded (software);
//! - the rotation interval (`perf_event_mux_interval_ms`), changeable live
//!   from any thread (an atomic; the statistics API writes it). Each vCPU
//!   rotates on its own: its context computes the next run-time deadline
//!   from this interval and the VMM arms the vCPU's `VcpuTimer` for it (the
//!   kernel's mux hrtimer, per task rather than per CPU);
//! - how many contexts currently need rotation on this PMU, and how many
//!   rotations they performed, for statistics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::history::RotationHistory;
use crate::backend::PmuKind;

/// Allowed rotation intervals, ms.
pub const MUX_INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 1..=10_000;

/// Errors of rotation-interval settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MuxIntervalError {
    #[error("`{0}` is not PMU=MS")]
    Syntax(String),
    #[error("rotation interval {0} ms is not in 1..=10000")]
    OutOfRange(u64),
    #[error("no host PMU `{0}`")]
    UnknownPmu(String),
}

/// Parses a `--mux-interval-ms` argument, `PMU=MS` with MS in 1..=10000.
pub fn parse_mux_interval(arg: &str) -> Result<(String, u64), MuxIntervalError> {
    let (pmu, ms) = arg
        .split_once('=')
        .ok_or_else(|| MuxIntervalError::Syntax(arg.to_string()))?;
    let pmu = pmu.trim();
    if pmu.is_empty() {
        return Err(MuxIntervalError::Syntax(arg.to_string()));
    }
    let ms: u64 = ms
        .trim()
        .parse()
        .map_err(|_| MuxIntervalError::Syntax(arg.to_string()))?;
    if !MUX_INTERVAL_RANGE_MS.contains(&ms) {
        return Err(MuxIntervalError::OutOfRange(ms));
    }
    Ok((pmu.to_string(), ms))
}

/// Counters of a host PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub gp: u8,
    pub fixed: u8,
    /// Software PMU: no counters, everything schedules.
    pub unbounded: bool,
}

impl Capacity {
    pub fn counters(&self) -> u8 {
        self.gp + self.fixed
    }
}

/// A host PMU shared by the contexts of all vCPUs.
pub struct HostPmu {
    index: usize,
    name: String,
    kind: PmuKind,
    simulated: bool,
    capacity: Capacity,
    interval_ns: AtomicU64,
    rotations: AtomicU64,
    rotating_contexts: AtomicUsize,
    history: RotationHistory,
}

impl std::fmt::Debug for HostPmu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPmu")
            .field("index", &self.index)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .field("interval_ms", &self.interval_ms())
            .finish()
    }
}

impl HostPmu {
    /// Host PMU `index` (its position in the host's description) named
    /// `name`, with `gp` and `fixed` counters (a software PMU is unbounded)
    /// and a rotation interval of `mux_interval_ms` (clamped to 1..=10000).
    /// The host side builds these ([`crate::host::assembly`]).
    pub fn new(
        index: usize,
        name: &str,
        kind: PmuKind,
        (gp, fixed): (u8, u8),
        mux_interval_ms: u64,
        simulated: bool,
    ) -> HostPmu {
        let software = kind == PmuKind::Software;
        HostPmu {
            index,
            name: name.to_string(),
            kind,
            simulated,
            capacity: Capacity {
                gp,
                fixed,
                unbounded: software,
            },
            interval_ns: AtomicU64::new(
                mux_interval_ms.clamp(*MUX_INTERVAL_RANGE_MS.start(), *MUX_INTERVAL_RANGE_MS.end())
                    * 1_000_000,
            ),
            rotations: AtomicU64::new(0),
            rotating_contexts: AtomicUsize::new(0),
            history: RotationHistory::default(),
        }
    }

    /// Applies `--mux-interval-ms PMU=MS` overrides.
    pub fn apply_overrides(
        pmus: &[Arc<HostPmu>],
        overrides: &[(String, u64)],
    ) -> Result<(), MuxIntervalError> {
        for (name, ms) in overrides {
            let pmu = pmus
                .iter()
                .find(|p| p.name == *name)
                .ok_or_else(|| MuxIntervalError::UnknownPmu(name.clone()))?;
            pmu.set_interval_ms(*ms)?;
        }
        Ok(())
    }

    pub fn index(&self) -> usize {
        self.index
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> PmuKind {
        self.kind
    }
    pub fn is_software(&self) -> bool {
        self.capacity.unbounded
    }
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    pub fn interval_ns(&self) -> u64 {
        self.interval_ns.load(Ordering::Relaxed)
    }
    pub fn interval_ms(&self) -> u64 {
        self.interval_ns() / 1_000_000
    }
    /// Changes the rotation interval; takes effect at the next deadline.
    pub fn set_interval_ms(&self, ms: u64) -> Result<(), MuxIntervalError> {
        if !MUX_INTERVAL_RANGE_MS.contains(&ms) {
            return Err(MuxIntervalError::OutOfRange(ms));
        }
        self.interval_ns.store(ms * 1_000_000, Ordering::Relaxed);
        Ok(())
    }

    /// Who held this PMU's counters at the last schedule-ins and rotations.
    pub fn history(&self) -> &RotationHistory {
        &self.history
    }

    /// Rotations performed on this PMU by all contexts.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }
    pub(crate) fn count_rotation(&self) {
        self.rotations.fetch_add(1, Ordering::Relaxed);
    }
    /// Does any context need rotation on this PMU?
    pub fn needs_rotation(&self) -> bool {
        self.rotating_contexts.load(Ordering::Acquire) > 0
    }
    /// Contexts needing rotation on this PMU.
    pub fn rotating_contexts(&self) -> usize {
        self.rotating_contexts.load(Ordering::Acquire)
    }

    pub(crate) fn rotation_needed_changed(&self, needed: bool) {
        if needed {
            self.rotating_contexts.fetch_add(1, Ordering::AcqRel);
        } else {
            let _ = self
                .rotating_contexts
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_overrides() {
        assert_eq!(parse_mux_interval("cpu=8"), Ok(("cpu".into(), 8)));
        assert_eq!(
            parse_mux_interval(" cpu_atom = 10000"),
            Ok(("cpu_atom".into(), 10000))
        );
        assert!(matches!(
            parse_mux_interval("cpu=0"),
            Err(MuxIntervalError::OutOfRange(0))
        ));
        assert!(matches!(
            parse_mux_interval("cpu=10001"),
            Err(MuxIntervalError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_mux_interval("cpu"),
            Err(MuxIntervalError::Syntax(_))
        ));
        assert!(matches!(
            parse_mux_interval("=4"),
            Err(MuxIntervalError::Syntax(_))
        ));
        assert!(matches!(
            parse_mux_interval("cpu=x"),
            Err(MuxIntervalError::Syntax(_))
        ));
        let pmus = [
            Arc::new(HostPmu::new(
                0,
                "cpu_core",
                PmuKind::Hardware,
                (8, 4),
                4,
                true,
            )),
            Arc::new(HostPmu::new(
                1,
                "cpu_atom",
                PmuKind::Hardware,
                (6, 3),
                4,
                true,
            )),
        ];
        HostPmu::apply_overrides(&pmus, &[("cpu_atom".into(), 2)]).unwrap();
        assert_eq!(pmus[1].interval_ms(), 2);
        assert_eq!(pmus[0].interval_ms(), 4);
        assert!(HostPmu::apply_overrides(&pmus, &[("gpu".into(), 2)]).is_err());
    }
}
