//! The vCPU side of the virtual PMU: trapped PMU MSR accesses go to the
//! guest PMU model (`vpmu::guest`), counts come from a count source, and
//! overflows become PMIs through the guest's LVTPC.

pub mod filter;
pub mod pmi;
pub mod thread_clock;

use kvm_ioctls::{VcpuFd, VmFd};
use vpmu::arch::events::ArchEvents;
use vpmu::config::PmuConfig;
use vpmu::guest::{Gp, GuestPmu};

use pmi::PmiOutcome;
use thread_clock::ThreadClockSource;

/// Architectural events the guest is told are unavailable (CPUID.0AH:EBX):
/// everything the count source cannot count.
pub fn unavailable_events() -> ArchEvents {
    ArchEvents(!thread_clock::AVAILABLE_EVENTS)
}

/// Counts of what the vCPU's PMU did, for logs and (later) the stats API.
#[derive(Clone, Copy, Debug, Default)]
pub struct PmuExitCounts {
    pub rdmsr: u64,
    pub wrmsr: u64,
    pub gp_injected: u64,
    pub pmi_delivered: u64,
    pub pmi_masked: u64,
}

/// One vCPU's PMU: the guest-visible model and its count source. Lives on,
/// and is used only from, the vCPU thread.
pub struct VcpuPmu {
    guest: GuestPmu,
    source: ThreadClockSource,
    apic_id: u8,
    pub counts: PmuExitCounts,
}

impl VcpuPmu {
    /// Must be called on the vCPU thread (the source measures its CPU time).
    pub fn new(cfg: PmuConfig, tsc_khz: u32, apic_id: u8) -> Self {
        VcpuPmu { guest: GuestPmu::new(cfg), source: ThreadClockSource::new(tsc_khz), apic_id, counts: PmuExitCounts::default() }
    }

    /// A trapped RDMSR: the value, or `Err(Gp)` to inject #GP.
    pub fn rdmsr(&mut self, index: u32) -> Result<u64, Gp> {
        self.counts.rdmsr += 1;
        let r = self.guest.rdmsr(index, &mut self.source);
        self.finish_access(r.is_ok());
        r
    }

    /// A trapped WRMSR: `Err(Gp)` to inject #GP.
    pub fn wrmsr(&mut self, index: u32, value: u64) -> Result<(), Gp> {
        self.counts.wrmsr += 1;
        let r = self.guest.wrmsr(index, value, &mut self.source);
        self.finish_access(r.is_ok());
        r
    }

    fn finish_access(&mut self, ok: bool) {
        if ok {
            // The access retired in the VMM, not in the guest: count it as
            // KVM does for the instructions it emulates.
            self.guest.retire_emulated_instruction(true);
        } else {
            self.counts.gp_injected += 1;
        }
    }

    /// Another instruction the VMM emulated (port I/O) retired.
    pub fn retire_emulated_instruction(&mut self) {
        self.guest.retire_emulated_instruction(true);
    }

    /// After a kick: fold in counts so overflows are seen, and re-arm the
    /// overflow timer for the next one.
    pub fn sync(&mut self) {
        if self.source.sampling() {
            self.guest.sync(&mut self.source);
            self.source.rearm();
        }
    }

    /// Delivers a pending PMI, if any, before the vCPU re-enters the guest.
    pub fn deliver_pending_pmi(&mut self, fd: &VcpuFd, vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
        if !self.guest.take_pmi() {
            return Ok(());
        }
        match pmi::deliver(fd, vm, self.apic_id)? {
            PmiOutcome::Nmi | PmiOutcome::Fixed(_) => self.counts.pmi_delivered += 1,
            PmiOutcome::Masked => self.counts.pmi_masked += 1,
            PmiOutcome::Unsupported(mode) => {
                self.counts.pmi_masked += 1;
                log::warn!("vcpu{}: LVTPC delivery mode {mode:#b} cannot carry a PMI; dropped", self.apic_id);
            }
        }
        Ok(())
    }
}
