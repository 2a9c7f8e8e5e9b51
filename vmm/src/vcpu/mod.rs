//! One vCPU: its thread, the `KVM_RUN` loop and kicks; what each exit does
//! is [`dispatch`]'s.

pub mod dispatch;

use std::sync::Arc;

use kvm_bindings::CpuId;
use kvm_ioctls::VcpuFd;

use crate::boot::regs::{set_boot_msrs, set_entry_state};
use crate::boot::BootEntry;
use crate::exits::ExitRecorder;
use crate::pmu::pmi::PmiOutcome;
use crate::pmu::VcpuPmu;
use crate::shared::{StopReason, VmShared};
use crate::view::VcpuView;
use crate::{cpuid, kick, VmError};
use dispatch::ExitAction;

/// A vCPU ready to run on its own thread.
pub struct Vcpu {
    id: u8,
    view: Arc<VcpuView>,
    exits: Arc<ExitRecorder>,
    fd: VcpuFd,
    shared: Arc<VmShared>,
    tsc_khz: u32,
}

impl Vcpu {
    /// Creates vCPU `id`; the BSP (`boot` is `Some`) gets its entry state,
    /// the others wait for INIT/SIPI in the in-kernel LAPIC.
    pub fn new(
        fd: VcpuFd,
        id: u8,
        count: u8,
        base_cpuid: &CpuId,
        boot: Option<BootEntry>,
        shared: Arc<VmShared>,
    ) -> Result<Self, VmError> {
        let guest_cpu = cpuid::GuestCpu {
            vendor: shared.vendor,
            pmu: shared.pmu_config,
            unavailable: shared.host.unavailable_events(),
        };
        let cpuid = cpuid::for_vcpu(base_cpuid, id, count, &guest_cpu);
        fd.set_cpuid2(&cpuid)
            .map_err(|e| VmError::Kvm("KVM_SET_CPUID2", e))?;
        set_boot_msrs(&fd)?;
        if let Some(entry) = boot {
            set_entry_state(&fd, &entry)?;
        }
        let tsc_khz = fd
            .get_tsc_khz()
            .map_err(|e| VmError::Kvm("KVM_GET_TSC_KHZ", e))?;
        Ok(Vcpu {
            id,
            view: Arc::clone(&shared.vcpus[usize::from(id)]),
            exits: Arc::clone(&shared.exits[usize::from(id)]),
            fd,
            shared,
            tsc_khz,
        })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    /// The vCPU thread's body: run until the VM stops.
    pub fn run(mut self) {
        if let Err(e) = crate::seccomp::enter(crate::seccomp::ThreadKind::Vcpu) {
            log::error!("vcpu{}: {e}", self.id);
            self.shared
                .request_stop(StopReason::VmmError(e.to_string()));
            return;
        }
        kick::set_immediate_exit_target(&mut self.fd.get_kvm_run().immediate_exit);
        let mut pmu = VcpuPmu::new(
            self.shared.pmu_config,
            &self.shared.host,
            self.tsc_khz,
            self.id,
        );
        while !self.shared.stopping() {
            pmu.before_entry();
            let stop = self.run_once(&mut pmu).or_else(|| {
                match pmu.deliver_pending_pmi(&self.fd, &self.shared.vm) {
                    Ok(None) => None,
                    Ok(Some(outcome)) => {
                        self.exits
                            .record_pmi(matches!(outcome, PmiOutcome::Nmi | PmiOutcome::Fixed(_)));
                        None
                    }
                    Err(e) => Some(StopReason::VmmError(format!(
                        "vcpu{}: delivering a PMI: {e}",
                        self.id
                    ))),
                }
            });
            if let Some(reason) = stop {
                self.shared.request_stop(reason);
            }
            if self.view.take_publish_request() {
                pmu.publish(&self.view);
            }
        }
        pmu.publish(&self.view);
        kick::clear_immediate_exit_target();
    }

    /// One `KVM_RUN` and the handling of its exit; `Some` stops the VM.
    fn run_once(&mut self, pmu: &mut VcpuPmu) -> Option<StopReason> {
        let action = match self.fd.run() {
            Ok(exit) => dispatch::handle_exit(exit, &self.shared.pio, pmu, &self.exits),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: by the overflow timer (sync the PMU, so the PMI is
                // raised before re-entry) or to stop (the loop checks).
                self.fd.set_kvm_immediate_exit(0);
                pmu.sync();
                ExitAction::Resume
            }
            Err(e) => ExitAction::Stop(StopReason::VmmError(format!(
                "vcpu{}: KVM_RUN: {e}",
                self.id
            ))),
        };
        match action {
            ExitAction::Resume => None,
            ExitAction::Stop(reason) => Some(reason),
            ExitAction::Crash(what) => Some(self.crash(&what)),
        }
    }

    /// Describes a crash in one line with the guest's registers.
    fn crash(&self, what: &str) -> StopReason {
        let regs = self.fd.get_regs().map(|r| {
            format!(
                "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x}",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx
            )
        });
        let sregs = self.fd.get_sregs().map(|s| {
            format!(
                "cs={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
                s.cs.selector, s.cr0, s.cr3, s.cr4, s.efer
            )
        });
        let regs = match (regs, sregs) {
            (Ok(r), Ok(s)) => format!("{r} {s}"),
            (Err(e), _) | (_, Err(e)) => format!("registers unavailable: {e}"),
        };
        StopReason::GuestCrash(format!("vcpu{}: {what}: {regs}", self.id))
    }
}
