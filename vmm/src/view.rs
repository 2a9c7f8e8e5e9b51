//! What each vCPU thread publishes for readers on other threads (the
//! statistics API, the summary at exit): the guest-visible PMU state and the
//! multiplexer's counter statistics. Readers take a short lock to clone the
//! latest snapshot; they never issue a vCPU ioctl or wait on a vCPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vpmu::guest::GuestPmuState;
use vpmu::stats::{SnapshotSlot, VcpuStats};

/// One vCPU's published state.
#[derive(Debug)]
pub struct VcpuView {
    pub id: u8,
    guest_pmu: Mutex<Option<GuestPmuState>>,
    counters: SnapshotSlot,
    /// Set by the main thread (then it kicks the vCPU): publish at the next
    /// exit, off the MSR path.
    publish_requested: AtomicBool,
}

impl VcpuView {
    pub fn new(id: u8) -> Self {
        VcpuView {
            id,
            guest_pmu: Mutex::new(None),
            counters: SnapshotSlot::default(),
            publish_requested: AtomicBool::new(false),
        }
    }

    /// The latest guest-visible PMU state, if the vCPU published one.
    pub fn guest_pmu(&self) -> Option<GuestPmuState> {
        self.guest_pmu
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latest counter statistics (multiplexed host sides only).
    pub fn counters(&self) -> Option<VcpuStats> {
        self.counters.latest()
    }

    /// Called on the vCPU thread.
    pub fn publish(&self, guest: GuestPmuState, counters: Option<VcpuStats>) {
        *self.guest_pmu.lock().unwrap_or_else(|p| p.into_inner()) = Some(guest);
        if let Some(c) = counters {
            self.counters.publish(c);
        }
    }

    /// Asks the vCPU to publish; the caller then kicks it.
    pub fn request_publish(&self) {
        self.publish_requested.store(true, Ordering::Release);
    }

    /// Called on the vCPU thread: whether a publication was asked for.
    pub fn take_publish_request(&self) -> bool {
        self.publish_requested.swap(false, Ordering::AcqRel)
    }
}
