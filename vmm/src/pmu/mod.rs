//! The vCPU side of the virtual PMU: trapped PMU MSR accesses go to the
//! guest PMU model (`vpmu::guest`), counts come from a count source (the
//! thread clock, or the multiplexer over a simulated host PMU), and
//! overflows become PMIs through the guest's LVTPC.

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
        /// A PMU MSR was accessed since the last entry: schedule-in and
        /// deadlines may have changed.
        dirty: bool,
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
struct Clocked<'a>(&'a mut VcpuCounters<AnyBackend>);

impl CountSource for Clocked<'_> {
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig) {
        self.0.advance(thread_cpu_ns());
        self.0.start(counter, config);
    }
    fn stop(&mut self, counter: CounterIndex) {
        self.0.advance(thread_cpu_ns());
        self.0.stop(counter);
    }
    fn drain(&mut self, counter: CounterIndex) -> u64 {
        self.0.advance(thread_cpu_ns());
        self.0.drain(counter)
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
                counters, dirty, ..
            } => {
                // Schedule-in and deadlines may change: look at them before
                // the next entry.
                *dirty = true;
                f(&mut self.guest, &mut Clocked(counters))
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
                counters.publish();
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
    /// syscall is made, when no PMU MSR was accessed.
    pub fn before_entry(&mut self) {
        if let Source::Mux {
            counters,
            timer,
            armed_for,
            dirty,
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
