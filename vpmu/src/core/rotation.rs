//! What a vCPU context shares with the event-loop thread for rotation.
//!
//! The context lives on its vCPU thread and only that thread mutates it.
//! The event loop owns one timer per host PMU ([`super::HostPmu`]); when
//! one fires it calls [`RotationFlags::request_rotation`] on every context's
//! flags, and kicks the vCPUs for which it returned true. The vCPU performs
//! the rotation in [`super::Context::sched_in_pending`] before re-entering
//! the guest. Two atomic bit masks, one bit per host PMU; no lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Rotation state of one context, shared with the event loop.
#[derive(Debug, Default)]
pub struct RotationFlags {
    /// Bit `pmu`: the context's pmu_context has `rotate_necessary`.
    necessary: AtomicU64,
    /// Bit `pmu`: the timer asked for a rotation not yet performed.
    requested: AtomicU64,
}

impl RotationFlags {
    /// Does this context need rotation on `pmu`?
    pub fn needs_rotation(&self, pmu: usize) -> bool {
        pmu < 64 && self.necessary.load(Ordering::Acquire) & (1 << pmu) != 0
    }

    /// Timer of `pmu` fired: flags a rotation if this context needs one.
    /// Returns true when the vCPU should be kicked (a new request).
    pub fn request_rotation(&self, pmu: usize) -> bool {
        if !self.needs_rotation(pmu) {
            return false;
        }
        self.requested.fetch_or(1 << pmu, Ordering::AcqRel) & (1 << pmu) == 0
    }

    /// Is any rotation requested (cheap check before VM entry)?
    pub fn any_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn take_requested(&self) -> u64 {
        self.requested.swap(0, Ordering::AcqRel)
    }

    pub(crate) fn set_necessary(&self, pmu: usize, on: bool) {
        if pmu >= 64 {
            return;
        }
        if on {
            self.necessary.fetch_or(1 << pmu, Ordering::AcqRel);
        } else {
            self.necessary.fetch_and(!(1 << pmu), Ordering::AcqRel);
        }
    }
}
