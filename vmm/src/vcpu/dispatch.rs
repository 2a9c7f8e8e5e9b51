//! What a vCPU does with one exit from `KVM_RUN` (as Firecracker's
//! `handle_kvm_exit`): port I/O goes to the PIO bus, trapped MSR accesses to
//! the vCPU's PMU and the exit recorder; crashes and the debug-exit port
//! stop the VM. [`handle_exit`] takes the exit and what it needs, not the
//! vCPU, so it is unit-tested with synthetic exits.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use kvm_ioctls::VcpuExit;

use crate::devices::{PioAction, PioBus};
use crate::exits::ExitRecorder;
use crate::pmu::VcpuPmu;
use crate::shared::StopReason;

/// What the run loop does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Enter the guest again.
    Resume,
    /// Stop the VM.
    Stop(StopReason),
    /// The guest crashed: stop the VM with this description and the guest's
    /// registers (which the run loop reads from the vCPU).
    Crash(String),
}

/// Handles one exit. `pio` is the VM's port bus, `pmu` and `exits` this
/// vCPU's PMU and exit recorder.
pub fn handle_exit(
    exit: VcpuExit<'_>,
    pio: &PioBus,
    pmu: &mut VcpuPmu,
    exits: &ExitRecorder,
) -> ExitAction {
    match exit {
        VcpuExit::IoOut(port, data) => {
            pmu.retire_emulated_instruction();
            match pio.write(port, data) {
                PioAction::Exit(status) => return ExitAction::Stop(StopReason::GuestExit(status)),
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
            pio.read(port, data);
        }
        VcpuExit::MmioRead(addr, data) => {
            log_once(Unhandled::Mmio(addr));
            data.fill(0xFF);
        }
        VcpuExit::MmioWrite(addr, _) => log_once(Unhandled::Mmio(addr)),
        VcpuExit::X86Rdmsr(exit) => {
            if !vpmu::arch::is_pmu_msr(exit.index) {
                // The filter traps PMU MSRs only; anything else here is a
                // filter bug, answered as no such MSR.
                log_once(Unhandled::Msr(exit.index));
            }
            let started = Instant::now();
            let r = pmu.rdmsr(exit.index);
            match r {
                Ok(v) => *exit.data = v,
                Err(_) => *exit.error = 1,
            }
            exits.record_msr(exit.index, false, r.is_err(), elapsed_ns(started));
        }
        VcpuExit::X86Wrmsr(exit) => {
            if !vpmu::arch::is_pmu_msr(exit.index) {
                log_once(Unhandled::Msr(exit.index));
            }
            let started = Instant::now();
            let gp = pmu.wrmsr(exit.index, exit.data).is_err();
            if gp {
                *exit.error = 1;
            }
            exits.record_msr(exit.index, true, gp, elapsed_ns(started));
        }
        VcpuExit::Hlt | VcpuExit::IrqWindowOpen | VcpuExit::Intr => {}
        VcpuExit::Shutdown => return ExitAction::Crash("triple fault".into()),
        VcpuExit::InternalError => return ExitAction::Crash("KVM internal error".into()),
        VcpuExit::FailEntry(reason, _) => {
            return ExitAction::Crash(format!("VM entry failed (hardware reason {reason:#x})"))
        }
        VcpuExit::SystemEvent(kind, _) => {
            return ExitAction::Crash(format!("system event {kind} (reset or shutdown)"))
        }
        other => return ExitAction::Crash(format!("unexpected exit {other:?}")),
    }
    ExitAction::Resume
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

#[cfg(test)]
mod tests {
    use super::*;

    use kvm_ioctls::{MsrExitReason, ReadMsrExit, WriteMsrExit};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
    use vpmu::config::PmuConfig;
    use vpmu::core::policy::MuxPolicy;

    use crate::devices::{debug_exit, fw_cfg::FwCfg, serial};
    use crate::pmu::host::{HostPmuChoice, HostSide};

    const IA32_PERFEVTSEL0: u32 = 0x186;
    /// A PMU MSR of version 4 that the tests' version 2 guest PMU lacks.
    const IA32_PERF_GLOBAL_STATUS_SET: u32 = 0x391;
    const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
    /// A port no device claims.
    const UNCLAIMED_PORT: u16 = 0x80;

    /// A vCPU's exit handling without KVM: the port bus, a thread-clock PMU
    /// and an exit recorder.
    struct Fixture {
        pio: PioBus,
        pmu: VcpuPmu,
        exits: ExitRecorder,
    }

    impl Fixture {
        fn new() -> Self {
            let host = HostSide::new(
                &HostPmuChoice::ThreadClock,
                MuxPolicy::default(),
                1_000_000,
                &[],
                None,
                Vec::new(),
            )
            .expect("thread-clock host side");
            let uart = serial::new(
                EventFd::new(EFD_NONBLOCK).expect("eventfd"),
                Box::new(std::io::sink()),
            );
            let guest_pmu = PmuConfig {
                version: 2,
                ..PmuConfig::default()
            };
            Fixture {
                pio: PioBus::new(uart, FwCfg::new(64 << 20, 1)),
                pmu: VcpuPmu::new(guest_pmu, &host, 1_000_000, 0),
                exits: ExitRecorder::new(0),
            }
        }

        fn handle(&mut self, exit: VcpuExit<'_>) -> ExitAction {
            handle_exit(exit, &self.pio, &mut self.pmu, &self.exits)
        }

        /// A trapped RDMSR: (action, value, #GP).
        fn rdmsr(&mut self, index: u32) -> (ExitAction, u64, bool) {
            let (mut data, mut error) = (0xDEAD_BEEF, 0u8);
            let action = self.handle(VcpuExit::X86Rdmsr(ReadMsrExit {
                error: &mut error,
                reason: MsrExitReason::Filter,
                index,
                data: &mut data,
            }));
            (action, data, error == 1)
        }

        /// A trapped WRMSR: (action, #GP).
        fn wrmsr(&mut self, index: u32, data: u64) -> (ExitAction, bool) {
            let mut error = 0u8;
            let action = self.handle(VcpuExit::X86Wrmsr(WriteMsrExit {
                error: &mut error,
                reason: MsrExitReason::Filter,
                index,
                data,
            }));
            (action, error == 1)
        }
    }

    #[test]
    fn debug_exit_port_stops_with_the_written_status() {
        let mut f = Fixture::new();
        assert_eq!(
            f.handle(VcpuExit::IoOut(debug_exit::PORT, &[3])),
            ExitAction::Stop(StopReason::GuestExit(3))
        );
        assert_eq!(
            f.handle(VcpuExit::IoOut(debug_exit::PORT, &0x0170u16.to_le_bytes())),
            ExitAction::Stop(StopReason::GuestExit(0x70))
        );
    }

    #[test]
    fn unclaimed_ports_are_ignored_and_read_all_ones() {
        let mut f = Fixture::new();
        assert_eq!(
            f.handle(VcpuExit::IoOut(UNCLAIMED_PORT, &[1])),
            ExitAction::Resume
        );
        let mut data = [0u8; 2];
        assert_eq!(
            f.handle(VcpuExit::IoIn(UNCLAIMED_PORT, &mut data)),
            ExitAction::Resume
        );
        assert_eq!(data, [0xFF, 0xFF]);
        // Port I/O is not a PMU exit.
        assert_eq!(f.exits.read().handling_ns.count, 0);
    }

    #[test]
    fn unclaimed_mmio_reads_all_ones() {
        let mut f = Fixture::new();
        let mut data = [0u8; 4];
        assert_eq!(
            f.handle(VcpuExit::MmioRead(0xFEC0_0000, &mut data)),
            ExitAction::Resume
        );
        assert_eq!(data, [0xFF; 4]);
        assert_eq!(
            f.handle(VcpuExit::MmioWrite(0xFEC0_0000, &[0])),
            ExitAction::Resume
        );
    }

    #[test]
    fn pmu_msr_accesses_reach_the_guest_pmu_and_the_recorder() {
        let mut f = Fixture::new();
        // USR | OS | event 0x3C (unhalted core cycles), not enabled.
        let select = (1 << 16) | (1 << 17) | 0x3C;
        assert_eq!(
            f.wrmsr(IA32_PERFEVTSEL0, select),
            (ExitAction::Resume, false)
        );
        assert_eq!(
            f.rdmsr(IA32_PERFEVTSEL0),
            (ExitAction::Resume, select, false)
        );
        // A reserved bit (bit 63) set: #GP, the select keeps its value.
        assert_eq!(
            f.wrmsr(IA32_PERFEVTSEL0, select | (1 << 63)),
            (ExitAction::Resume, true)
        );
        assert_eq!(f.rdmsr(IA32_PERFEVTSEL0).1, select);
        // A PMU MSR this guest PMU version lacks: #GP, data untouched.
        assert_eq!(
            f.rdmsr(IA32_PERF_GLOBAL_STATUS_SET),
            (ExitAction::Resume, 0xDEAD_BEEF, true)
        );

        let e = f.exits.read();
        assert_eq!((e.rdmsr, e.wrmsr, e.gp_injected), (3, 2, 2));
        assert_eq!(e.handling_ns.count, 5);
        let all = crate::exits::exits_of([&f.exits]);
        let sel0 = all.msrs.iter().find(|m| m.msr == IA32_PERFEVTSEL0);
        assert_eq!(sel0.map(|m| (m.rdmsr, m.wrmsr)), Some((2, 2)));
    }

    #[test]
    fn a_non_pmu_msr_is_answered_with_gp() {
        let mut f = Fixture::new();
        assert_eq!(
            f.rdmsr(IA32_TIME_STAMP_COUNTER),
            (ExitAction::Resume, 0xDEAD_BEEF, true)
        );
        assert_eq!(
            f.wrmsr(IA32_TIME_STAMP_COUNTER, 1),
            (ExitAction::Resume, true)
        );
        let e = f.exits.read();
        assert_eq!((e.rdmsr, e.wrmsr, e.gp_injected), (1, 1, 2));
        // Counted outside every trapped MSR.
        let all = crate::exits::exits_of([&f.exits]);
        assert!(all.msrs.iter().all(|m| m.rdmsr == 0 && m.wrmsr == 0));
    }

    #[test]
    fn hlt_and_interrupts_resume() {
        let mut f = Fixture::new();
        for exit in [VcpuExit::Hlt, VcpuExit::IrqWindowOpen, VcpuExit::Intr] {
            assert_eq!(f.handle(exit), ExitAction::Resume);
        }
    }

    #[test]
    fn shutdown_and_failures_are_crashes() {
        let mut f = Fixture::new();
        assert_eq!(
            f.handle(VcpuExit::Shutdown),
            ExitAction::Crash("triple fault".into())
        );
        assert_eq!(
            f.handle(VcpuExit::InternalError),
            ExitAction::Crash("KVM internal error".into())
        );
        assert_eq!(
            f.handle(VcpuExit::FailEntry(0x21, 0)),
            ExitAction::Crash("VM entry failed (hardware reason 0x21)".into())
        );
        assert!(
            matches!(f.handle(VcpuExit::Unknown), ExitAction::Crash(what) if what.contains("Unknown"))
        );
    }
}
