//! What the main thread and the vCPU threads share: [`VmShared`] and why the
//! VM stopped ([`StopReason`]). A leaf of the VMM's modules: `vm`, `vcpu`,
//! `event_loop` and `stats_source` all use it, and it uses none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vpmu::config::PmuConfig;

use crate::cpuid::CpuVendor;
use crate::devices::PioBus;
use crate::exits::ExitRecorder;
use crate::pmu::host::HostSide;
use crate::view::VcpuView;

/// Why the VM stopped; the CLI turns it into the exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote this value to the debug-exit port.
    GuestExit(u8),
    /// Triple fault, failed entry, or KVM internal error.
    GuestCrash(String),
    /// `--timeout` elapsed.
    Timeout,
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// A host-side failure while running.
    VmmError(String),
}

impl StopReason {
    /// `vmm run`'s exit status for this stop (the README lists them).
    pub fn exit_status(&self) -> u8 {
        use crate::exit_status as st;
        match self {
            StopReason::GuestExit(status) => *status,
            StopReason::Timeout => st::TIMEOUT,
            StopReason::GuestCrash(_) => st::GUEST_CRASH,
            StopReason::Signal(sig) => st::SIGNAL_BASE.wrapping_add(*sig as u8),
            StopReason::VmmError(_) => st::VMM_ERROR,
        }
    }

    /// `guest-exit`, `timeout`, `guest-crash`, `signal` or `vmm-error`.
    pub fn kind(&self) -> &'static str {
        match self {
            StopReason::GuestExit(_) => "guest-exit",
            StopReason::Timeout => "timeout",
            StopReason::GuestCrash(_) => "guest-crash",
            StopReason::Signal(_) => "signal",
            StopReason::VmmError(_) => "vmm-error",
        }
    }
}

/// State shared by the main thread and every vCPU thread.
pub struct VmShared {
    pub vm: VmFd,
    /// The CPU vendor guests see.
    pub vendor: CpuVendor,
    pub pmu_config: PmuConfig,
    pub host: HostSide,
    /// What each vCPU publishes, indexed by vCPU id.
    pub vcpus: Vec<Arc<VcpuView>>,
    /// Each vCPU's PMU exit counters, indexed by vCPU id.
    pub exits: Vec<Arc<ExitRecorder>>,
    pub pio: PioBus,
    stopping: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    /// Written when a stop is requested; the main thread waits on it.
    stop_evt: EventFd,
}

impl VmShared {
    /// Shares `vm` and its devices with one [`VcpuView`] and one
    /// [`ExitRecorder`] per vCPU; nothing is stopping yet.
    pub fn new(
        vm: VmFd,
        vendor: CpuVendor,
        pmu_config: PmuConfig,
        host: HostSide,
        vcpus: u8,
        pio: PioBus,
    ) -> std::io::Result<Self> {
        Ok(VmShared {
            vm,
            vendor,
            pmu_config,
            host,
            vcpus: (0..vcpus).map(|id| Arc::new(VcpuView::new(id))).collect(),
            exits: (0..vcpus)
                .map(|id| Arc::new(ExitRecorder::new(u32::from(id))))
                .collect(),
            pio,
            stopping: AtomicBool::new(false),
            reason: Mutex::new(None),
            stop_evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records the first stop reason and wakes the main thread. Later
    /// requests (e.g. other vCPUs exiting as they are kicked) do not override
    /// the first.
    pub fn request_stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.stop_evt.write(1) {
            log::error!("waking the main thread: {e}");
        }
    }

    /// Whether vCPUs should leave their run loops.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The eventfd written when a stop is requested.
    pub fn stop_evt(&self) -> &EventFd {
        &self.stop_evt
    }

    /// The recorded stop reason (the first one requested).
    pub fn stop_reason(&self) -> StopReason {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(StopReason::VmmError("stopped without a reason".into()))
    }

    /// Takes the recorded stop reason (once every vCPU thread is joined).
    pub(crate) fn take_reason(&self) -> Option<StopReason> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
