//! One vCPU: its thread, the `KVM_RUN` loop and exit dispatch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::boot::regs::{set_boot_msrs, set_entry_state};
use crate::boot::BootEntry;
use crate::devices::{PioAction, PioBus};
use crate::exits::ExitRecorder;
use crate::pmu::pmi::PmiOutcome;
use crate::pmu::VcpuPmu;
use crate::shared::{StopReason, VmShared};
use crate::view::VcpuView;
use crate::{cpuid, kick, VmError};

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
        let cpuid = cpuid::for_vcpu(
            base_cpuid,
            id,
            count,
            &shared.pmu_config,
            shared.host.unavailable_events(),
        );
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
        let id = self.id;
        let shared = &self.shared;
        match self.fd.run() {
            Ok(exit) => match exit {
                VcpuExit::IoOut(port, data) => {
                    pmu.retire_emulated_instruction();
                    match shared.pio.write(port, data) {
                        PioAction::Exit(status) => return Some(StopReason::GuestExit(status)),
                        PioAction::None => {
                            if !PioBus::claims(port) {
                                log_once(Unhandled::PortOut(port));
                            }
                        }
                    }
                }
                VcpuExit::IoIn(port, data) => {
                    pmu.retire_emulated_instruction();
                    if !PioBus::claims(port) {
                        log_once(Unhandled::PortIn(port));
                    }
                    shared.pio.read(port, data);
                }
                VcpuExit::MmioRead(addr, data) => {
                    log_once(Unhandled::Mmio(addr));
                    data.fill(0xFF);
                }
                VcpuExit::MmioWrite(addr, _) => log_once(Unhandled::Mmio(addr)),
                VcpuExit::X86Rdmsr(exit) => {
                    if !vpmu::arch::msr::is_pmu_msr(exit.index) {
                        // The filter traps PMU MSRs only; anything else
                        // here is a filter bug, answered as no such MSR.
                        log_once(Unhandled::Msr(exit.index));
                    }
                    let started = Instant::now();
                    let r = pmu.rdmsr(exit.index);
                    match r {
                        Ok(v) => *exit.data = v,
                        Err(_) => *exit.error = 1,
                    }
                    self.exits
                        .record_msr(exit.index, false, r.is_err(), elapsed_ns(started));
                }
                VcpuExit::X86Wrmsr(exit) => {
                    if !vpmu::arch::msr::is_pmu_msr(exit.index) {
                        log_once(Unhandled::Msr(exit.index));
                    }
                    let started = Instant::now();
                    let gp = pmu.wrmsr(exit.index, exit.data).is_err();
                    if gp {
                        *exit.error = 1;
                    }
                    self.exits
                        .record_msr(exit.index, true, gp, elapsed_ns(started));
                }
                VcpuExit::Hlt | VcpuExit::IrqWindowOpen | VcpuExit::Intr => {}
                VcpuExit::Shutdown => return Some(self.crash("triple fault")),
                VcpuExit::InternalError => return Some(self.crash("KVM internal error")),
                VcpuExit::FailEntry(reason, _) => {
                    return Some(
                        self.crash(&format!("VM entry failed (hardware reason {reason:#x})")),
                    )
                }
                VcpuExit::SystemEvent(kind, _) => {
                    return Some(self.crash(&format!("system event {kind} (reset or shutdown)")))
                }
                other => {
                    let what = format!("unexpected exit {other:?}");
                    return Some(self.crash(&what));
                }
            },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                // Kicked: by the overflow timer (sync the PMU, so the PMI is
                // raised before re-entry) or to stop (the loop checks).
                self.fd.set_kvm_immediate_exit(0);
                pmu.sync();
            }
            Err(e) => return Some(StopReason::VmmError(format!("vcpu{id}: KVM_RUN: {e}"))),
        }
        None
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

/// Nanoseconds since `started` (the MSR handling time; `Instant` reads the
/// vDSO clock, no syscall).
fn elapsed_ns(started: Instant) -> u64 {
    started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Exits nothing on the platform answers; each is logged once per VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Unhandled {
    PortIn(u16),
    PortOut(u16),
    Mmio(u64),
    Msr(u32),
}

fn log_once(what: Unhandled) {
    static SEEN: OnceLock<Mutex<HashSet<Unhandled>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let first = seen.lock().map(|mut s| s.insert(what)).unwrap_or(false);
    if first {
        match what {
            Unhandled::PortIn(p) => {
                log::warn!("guest read unclaimed I/O port {p:#x} (reads as 0xff; logged once)")
            }
            Unhandled::PortOut(p) => {
                log::warn!("guest wrote unclaimed I/O port {p:#x} (ignored; logged once)")
            }
            Unhandled::Mmio(a) => {
                log::warn!("guest accessed unclaimed MMIO {a:#x} (reads as 0xff; logged once)")
            }
            Unhandled::Msr(i) => {
                log::warn!("guest accessed MSR {i:#x} that no handler claims (#GP; logged once)")
            }
        }
    }
}
