//! The vCPU side of the virtual PMU: trapped PMU MSR accesses go to the
//! guest PMU model (`vpmu::guest`), counts come from a count source (the
//! thread clock, or the multiplexer over perf or a simulated host PMU,
//! built by `vpmu::host::assembly`), and overflows become PMIs through the
//! guest's LVTPC.
//!
//! - [`filter`]: the KVM MSR filter that traps the PMU MSRs;
//! - [`host`]: `--host-pmu` and its options, into the host assembly;
//! - [`pmi`]: PMI delivery through the LVTPC;
//! - [`thread_clock`]: the count source without a multiplexer;
//! - [`timer`]: the vCPU's CPU-time clock and its rotation/overflow timer.

pub mod filter;
pub mod host;
pub mod pmi;
pub mod thread_clock;
pub mod timer;

use kvm_ioctls::{VcpuFd, VmFd};
use vpmu::config::PmuConfig;
use vpmu::core::vcpu::VcpuCounters;
use vpmu::guest::{Gp, GuestPmu};
use vpmu::source::{CountSource, CounterConfig, CounterIndex};

use crate::view::VcpuView;
use host::{AnyBackend, HostSide};
use pmi::PmiOutcome;
use thread_clock::ThreadClockSource;
use timer::{thread_cpu_ns, VcpuTimer};

/// Where a vCPU's guest counters get their counts.
enum Source {
    ThreadClock(Box<ThreadClockSource>),
    /// The multiplexer over simulated host PMUs; time is vCPU run time.
    Mux {
        counters: Box<VcpuCounters<AnyBackend>>,
        timer: Option<VcpuTimer>,
        /// The run-time deadline the timer is armed for.
        armed_for: Option<u64>,
        /// The guest model called the multiplexer since the last entry:
        /// schedule-in and deadlines may have changed.
        dirty: bool,
        /// Calls of the guest model into the multiplexer, ever.
        source_calls: u64,
    },
}

/// Arms `timer` for the nearest rotation or overflow deadline, if that
/// changed (no syscall otherwise).
fn rearm_mux(
    counters: &mut VcpuCounters<AnyBackend>,
    timer: &Option<VcpuTimer>,
    armed_for: &mut Option<u64>,
    now: u64,
) {
    let next = [
        counters.next_rotation_deadline(),
        counters.next_overflow_deadline(),
    ]
    .into_iter()
    .flatten()
    .min();
    if next == *armed_for {
        return;
    }
    if let Some(t) = timer {
        t.arm(next.map_or(0, |at| at.saturating_sub(now).max(1)));
    }
    *armed_for = next;
}

/// The multiplexer as the guest model's count source, its clock brought to
/// the vCPU's run time only when the model calls it: an access that needs
/// no host change reaches no source, and so reads no clock (a syscall).
/// Counts the calls, so that only an access that reached the multiplexer
/// makes the vCPU look at schedule-in and deadlines before the next entry.
struct Clocked<'a> {
    counters: &'a mut VcpuCounters<AnyBackend>,
    calls: u64,
}

impl Clocked<'_> {
    fn clock(&mut self) -> &mut VcpuCounters<AnyBackend> {
        self.calls += 1;
        self.counters.advance(thread_cpu_ns());
        self.counters
    }
}

impl CountSource for Clocked<'_> {
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig) {
        self.clock().start(counter, config);
    }
    fn stop(&mut self, counter: CounterIndex) {
        self.clock().stop(counter);
    }
    fn drain(&mut self, counter: CounterIndex) -> u64 {
        self.clock().drain(counter)
    }
}

/// One vCPU's PMU: the guest-visible model and its count source. Lives on,
/// and is used only from, the vCPU thread.
pub struct VcpuPmu {
    guest: GuestPmu,
    source: Source,
    apic_id: u8,
    /// Instructions retired is counted, so emulated instructions count too.
    count_emulated: bool,
}

impl VcpuPmu {
    /// Must be called on the vCPU thread (sources measure its CPU time and
    /// their timers signal it).
    pub fn new(cfg: PmuConfig, host: &HostSide, tsc_khz: u32, apic_id: u8) -> Self {
        let source = match host.vcpu_counters(u32::from(apic_id), crate::kick::kick_signal()) {
            None => Source::ThreadClock(Box::new(ThreadClockSource::new(tsc_khz, cfg.arch))),
            Some(counters) => {
                let timer = VcpuTimer::for_this_thread()
                    .map_err(|e| {
                        log::warn!("vcpu{apic_id}: no rotation timer, rotating at exits only: {e}")
                    })
                    .ok();
                Source::Mux {
                    counters: Box::new(counters.with_guest_arch(cfg.arch)),
                    timer,
                    armed_for: None,
                    dirty: false,
                    source_calls: 0,
                }
            }
        };
        VcpuPmu {
            guest: GuestPmu::new(cfg),
            source,
            apic_id,
            count_emulated: host.counts_instructions(),
        }
    }

    /// Runs one guest PMU access against the current source.
    fn access<R>(&mut self, f: impl FnOnce(&mut GuestPmu, &mut dyn CountSource) -> R) -> R {
        match &mut self.source {
            Source::ThreadClock(s) => f(&mut self.guest, s.as_mut()),
            Source::Mux {
                counters,
                dirty,
                source_calls,
                ..
            } => {
                let mut clocked = Clocked { counters, calls: 0 };
                let r = f(&mut self.guest, &mut clocked);
                // Only a call into the multiplexer can change schedule-in
                // and deadlines: look at them before the next entry then.
                *dirty |= clocked.calls != 0;
                *source_calls += clocked.calls;
                r
            }
        }
    }

    /// A trapped RDMSR: the value, or `Err(Gp)` to inject #GP.
    pub fn rdmsr(&mut self, index: u32) -> Result<u64, Gp> {
        let r = self.access(|g, s| g.rdmsr(index, s));
        self.finish_access(r.is_ok());
        r
    }

    /// A trapped WRMSR: `Err(Gp)` to inject #GP.
    pub fn wrmsr(&mut self, index: u32, value: u64) -> Result<(), Gp> {
        let r = self.access(|g, s| g.wrmsr(index, value, s));
        self.finish_access(r.is_ok());
        r
    }

    fn finish_access(&mut self, ok: bool) {
        if ok {
            self.retire_emulated_instruction();
        }
    }

    /// Another instruction the VMM emulated (port I/O) retired.
    pub fn retire_emulated_instruction(&mut self) {
        // The access retired in the VMM, not in the guest: count it as KVM
        // does for the instructions it emulates, where instructions are
        // counted at all.
        if self.count_emulated {
            self.guest.retire_emulated_instruction(true);
        }
    }

    /// After a kick: perform due rotations, fold in counts so overflows are
    /// seen, and re-arm the timer for the next rotation or overflow.
    pub fn sync(&mut self) {
        match &mut self.source {
            Source::ThreadClock(s) => {
                if s.sampling() {
                    self.guest.sync(s.as_mut());
                    s.rearm();
                }
            }
            Source::Mux {
                counters,
                timer,
                armed_for,
                ..
            } => {
                let now = thread_cpu_ns();
                counters.tick(now);
                self.guest.sync(counters.as_mut());
                // The timer fired (or the kick was for something else):
                // re-arm whatever is due next.
                *armed_for = None;
                rearm_mux(counters, timer, armed_for, now);
            }
        }
    }

    /// Before VM entry, after a PMU MSR access: the multiplexer schedules in
    /// what is pending (counters started since, freed counters refilled)
    /// and the timer follows the new deadlines. Nothing happens, and no
    /// syscall is made, when no access since the last entry reached the
    /// multiplexer (a model-only access: an event select read, a write to
    /// a disabled counter's event select, a GLOBAL_STATUS read).
    pub fn before_entry(&mut self) {
        if let Source::Mux {
            counters,
            timer,
            armed_for,
            dirty,
            ..
        } = &mut self.source
        {
            if *dirty {
                *dirty = false;
                let now = counters.now();
                counters.sched_in_pending(now);
                rearm_mux(counters, timer, armed_for, now);
            }
        }
    }

    /// Publishes the guest-visible state and, for multiplexed sources, the
    /// counter statistics as of now (allocates: called off the MSR path, at
    /// the main thread's request or when the vCPU stops).
    pub fn publish(&mut self, view: &VcpuView) {
        let counters = match &mut self.source {
            Source::Mux { counters, .. } => {
                counters.advance(thread_cpu_ns());
                self.guest.sync(counters.as_mut());
                Some(counters.snapshot())
            }
            Source::ThreadClock(s) => {
                self.guest.sync(s.as_mut());
                None
            }
        };
        view.publish(self.guest.snapshot(), counters);
    }

    /// Delivers a pending PMI, if any, before the vCPU re-enters the guest;
    /// says what happened to it.
    pub fn deliver_pending_pmi(
        &mut self,
        fd: &VcpuFd,
        vm: &VmFd,
    ) -> Result<Option<PmiOutcome>, kvm_ioctls::Error> {
        if !self.guest.take_pmi() {
            return Ok(None);
        }
        let outcome = pmi::deliver(fd, vm, self.apic_id)?;
        if let PmiOutcome::Unsupported(mode) = outcome {
            log::warn!(
                "vcpu{}: LVTPC delivery mode {mode:#b} cannot carry a PMI; dropped",
                self.apic_id
            );
        }
        Ok(Some(outcome))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vpmu::core::policy::MuxPolicy;
    use vpmu::host::profile::Profile;

    use super::*;
    use host::HostPmuChoice;

    const EVTSEL0: u32 = 0x186;
    const EVTSEL1: u32 = 0x187;
    const PMC0: u32 = 0xC1;
    const GLOBAL_STATUS: u32 = 0x38E;
    const GLOBAL_CTRL: u32 = 0x38F;
    /// USR | OS | INT | EN, branch instructions retired.
    const BRANCHES_INT: u64 = 0xC4 | (0b1011 << 16) | (1 << 22);

    fn source_calls(pmu: &VcpuPmu) -> (u64, bool) {
        match &pmu.source {
            Source::Mux {
                source_calls,
                dirty,
                ..
            } => (*source_calls, *dirty),
            Source::ThreadClock(_) => (0, false),
        }
    }

    /// A model-only access (event select read, write of a disabled
    /// counter's event select, GLOBAL_STATUS read with a sampling counter
    /// running) calls the multiplexer zero times, so the next entry
    /// performs no schedule-in and reads no host counter.
    #[test]
    fn model_only_accesses_reach_no_count_source() {
        // A timer armed by `before_entry` signals this thread.
        crate::kick::install_handler().unwrap();
        let profile = Arc::new(Profile::builtin("intel-4gp-3fixed").unwrap());
        let host = HostSide::new(
            &HostPmuChoice::Sim(profile),
            MuxPolicy::default(),
            1_000_000,
            &[],
            None,
            Vec::new(),
        )
        .unwrap();
        let mut pmu = VcpuPmu::new(PmuConfig::default(), &host, 1_000_000, 0);
        // A sampling counter: overflows after 2^40 events (far away).
        pmu.wrmsr(PMC0, (1u64 << 48) - (1 << 40)).unwrap();
        pmu.wrmsr(EVTSEL0, BRANCHES_INT).unwrap();
        pmu.wrmsr(GLOBAL_CTRL, 1).unwrap();
        let (calls, dirty) = source_calls(&pmu);
        assert!(calls > 0 && dirty, "starting a counter reaches the source");
        pmu.before_entry();
        assert!(!source_calls(&pmu).1);

        assert_eq!(pmu.rdmsr(EVTSEL0), Ok(BRANCHES_INT));
        pmu.wrmsr(EVTSEL1, BRANCHES_INT).unwrap();
        assert_eq!(pmu.rdmsr(EVTSEL1), Ok(BRANCHES_INT));
        assert_eq!(pmu.rdmsr(GLOBAL_STATUS), Ok(0));
        assert_eq!(
            source_calls(&pmu),
            (calls, false),
            "model-only accesses called the count source"
        );

        // Enabling the second counter does reach it.
        pmu.wrmsr(GLOBAL_CTRL, 0b11).unwrap();
        let (after, dirty) = source_calls(&pmu);
        assert!(after > calls && dirty);
    }
}
