//! The perf backend (`--host-pmu perf`): guest counters backed by Linux
//! perf events attached to the vCPU thread (`pid` = its tid, `cpu` = -1).
//!
//! - [`discover`]: host PMUs from sysfs and the core PMU's capacity from
//!   CPUID, as a [`Profile`](crate::host::profile::Profile) plus a
//!   [`PmuPlan`] per PMU ([`PerfHost`]).
//! - [`translate`]: guest event + modifiers -> `perf_event_attr`.
//! - [`sys`]: owned perf fds, ioctls, reads, signal ownership.
//! - [`PerfBackend`]: the [`HostBackend`] of one vCPU.
//!
//! # Host event lifetime
//!
//! `open` opens one disabled host event per guest counter configuration;
//! `enable`/`disable` are `PERF_EVENT_IOC_ENABLE`/`DISABLE` as the
//! multiplexer schedules; `close` keeps the fd, disabled, in a small cache
//! of idle events ([`IDLE_FDS`]) so a guest that stops and restarts a
//! counter with the same configuration (what guest kernels do at every
//! context switch) costs no `perf_event_open`. File descriptors per vCPU are
//! bounded by open guest counters + [`IDLE_FDS`].
//!
//! # Counts
//!
//! A read returns the count since open. Hardware events the *host* kernel
//! multiplexed (`time_running < time_enabled` while we had them enabled)
//! are scaled by `enabled / running`. Task-clock events count nanoseconds of
//! the vCPU thread's CPU time, reported as TSC cycles:
//! `ns * tsc_khz / 10^6` over the cumulative count, so no remainder is ever
//! lost between reads. These counters live on a *software* PMU of the
//! profile, so the statistics label them `software-emulated`, and their
//! groups never rotate. Task-clock time includes the vCPU thread's host
//! time (exits handled in KVM and in the VMM): an approximation of guest
//! cycles.
//!
//! # Overflow
//!
//! Every event is opened as a sampling event with period
//! [`translate::PERIOD_NEVER`]; [`HostBackend::set_overflow`] sets the
//! period to the guest counter's distance to overflow (for the task clock,
//! converted to nanoseconds, rounded up; the kernel's hrtimer does not fire
//! more often than every 10 us). When the backend has a kick signal, each
//! fd gets `F_SETOWN_EX(F_OWNER_TID, vcpu tid)`, `F_SETSIG(signal)` and
//! `O_ASYNC`: every overflow sends that signal to the vCPU thread, which
//! also kicks it out of `KVM_RUN`.
//!
//! **No ring buffer is needed for the signal.** In `__perf_event_overflow`
//! the kernel queues the wakeup (`perf_pending_irq` -> `perf_event_wakeup`
//! -> `kill_fasync`) whenever the event has a fasync owner, independently of
//! the output path; without a mapped buffer the sample record is simply
//! dropped. (Polling the fd with epoll is different: without a buffer it
//! reports `POLLHUP` forever.) The test `perf_signal` checks this on the
//! running kernel. With a real-time signal every overflow is queued; if the
//! queue overflows (`RLIMIT_SIGPENDING`) the kernel sends `SIGIO` instead,
//! so the VMM should block or ignore `SIGIO` on vCPU threads.
//!
//! A sampling task clock that excluded a privilege level would skip the
//! overflows that happen at that level (the hrtimer checks the interrupted
//! registers), which is why task-clock events exclude nothing.
//!
//! # Errors
//!
//! No host failure stops the VM: `open` maps `ENOENT`, `EOPNOTSUPP`,
//! `EINVAL`, `ENODEV` to [`HostError::Unsupported`], `ENOSPC` to
//! [`HostError::NoCounter`], and `EACCES`, `EPERM`, `EMFILE`, `ENFILE` (and
//! anything else) to [`HostError::Io`] carrying the errno; the multiplexer
//! turns a failed open into an *unavailable* (degraded) guest counter that
//! counts zero, with one log line per (re)programming. A pinned host event
//! in error state (`read` returns 0 bytes) reads as
//! [`HostError::NoCounter`], logged once per host event.

pub mod discover;
pub mod sys;
pub mod translate;

use crate::util::slab::Slab;
use std::collections::VecDeque;
use std::io;

use libc::pid_t;

pub use discover::{CpuInfo, PerfHost, SysfsPmu, Vendor};
use sys::{PerfFd, RawRead, ReadError};
pub use translate::{translate, AttrSpec, PmuPlan, Unit};

use super::{EventName, HostBackend, HostError, HostEvent, HostHandle, HostReading};

/// Idle (closed by the multiplexer, kept open for reuse) host events per
/// backend.
pub const IDLE_FDS: usize = 4;

/// The host error for a failed `perf_event_open` of `event` on `pmu`.
pub fn open_error(err: io::Error, pmu: &str, event: EventName) -> HostError {
    match err.raw_os_error() {
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EINVAL | libc::ENODEV) => {
            HostError::Unsupported {
                pmu: pmu.to_string(),
                event,
            }
        }
        Some(libc::ENOSPC) => HostError::NoCounter {
            pmu: pmu.to_string(),
        },
        _ => HostError::Io(err),
    }
}

#[derive(Debug)]
struct PerfCounter {
    event: HostEvent,
    spec: AttrSpec,
    /// `None`: silent (counts nothing).
    fd: Option<PerfFd>,
    /// Raw read when this counter took the fd (idle fds are reused).
    base: RawRead,
    enabled: bool,
    /// Current sample period (host units); [`translate::PERIOD_NEVER`]
    /// when not sampling.
    period: u64,
    last_count: u64,
    failed: bool,
}

/// The perf backend of one vCPU.
#[derive(Debug)]
pub struct PerfBackend {
    plans: Vec<PmuPlan>,
    pmu_names: Vec<String>,
    tsc_khz: u64,
    signal: Option<i32>,
    tid: pid_t,
    counters: Slab<PerfCounter>,
    idle: VecDeque<(AttrSpec, PerfFd)>,
    opens: u64,
}

impl PerfBackend {
    /// A backend whose events attach to thread `tid` and signal it with
    /// `signal` on overflow. `plans[i]` describes PMU `i` of the profile the
    /// multiplexer uses; [`PerfHost::backend`] builds one for the calling
    /// thread.
    pub fn new(
        plans: Vec<PmuPlan>,
        pmu_names: Vec<String>,
        tsc_khz: u64,
        signal: Option<i32>,
        tid: pid_t,
    ) -> PerfBackend {
        PerfBackend {
            plans,
            pmu_names,
            tsc_khz: tsc_khz.max(1),
            signal,
            tid,
            counters: Slab::default(),
            idle: VecDeque::new(),
            opens: 0,
        }
    }

    /// The thread events attach to.
    pub fn tid(&self) -> pid_t {
        self.tid
    }

    /// `perf_event_open` calls made so far.
    pub fn opens(&self) -> u64 {
        self.opens
    }

    /// Host fds held: open counters plus idle ones.
    pub fn fds(&self) -> usize {
        self.counters
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.fd.is_some())
            .count()
            + self.idle.len()
    }

    /// The fd of a counter (tests: `F_GETOWN_EX`).
    pub fn fd_of(&self, h: HostHandle) -> Option<&PerfFd> {
        self.get(h).ok()?.fd.as_ref()
    }

    fn pmu_name(&self, pmu: usize) -> String {
        self.pmu_names
            .get(pmu)
            .cloned()
            .unwrap_or_else(|| format!("#{pmu}"))
    }

    fn get(&self, h: HostHandle) -> Result<&PerfCounter, HostError> {
        self.counters.get(h.0).ok_or(HostError::BadHandle(h))
    }

    fn get_mut(&mut self, h: HostHandle) -> Result<&mut PerfCounter, HostError> {
        self.counters.get_mut(h.0).ok_or(HostError::BadHandle(h))
    }

    fn open_fd(&mut self, spec: &AttrSpec, event: &HostEvent) -> Result<PerfFd, HostError> {
        let name = self.pmu_name(event.pmu);
        self.opens += 1;
        let mut attr = spec.to_attr();
        let fd = match PerfFd::open(&attr, self.tid, -1) {
            // perf_event_paranoid >= 2 without CAP_PERFMON: a task clock
            // that excludes the kernel still counts all of the thread's
            // time (only sampling differs, see the module docs).
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && spec.unit == Unit::TaskClockNs => {
                attr.set_exclude_kernel(1);
                PerfFd::open(&attr, self.tid, -1)
            }
            r => r,
        }
        .map_err(|e| open_error(e, &name, event.name))?;
        if let Some(sig) = self.signal {
            fd.signal_thread(self.tid, sig)?;
        }
        Ok(fd)
    }

    /// Host units of a guest overflow distance.
    fn period_of(&self, spec: &AttrSpec, events: u64) -> u64 {
        let p = match spec.unit {
            Unit::Events => events,
            Unit::TaskClockNs => {
                let ns = (events as u128 * 1_000_000).div_ceil(self.tsc_khz as u128);
                ns.min(u64::MAX as u128) as u64
            }
        };
        p.clamp(1, translate::PERIOD_NEVER)
    }

    fn convert(&self, spec: &AttrSpec, raw: RawRead) -> u64 {
        match spec.unit {
            Unit::TaskClockNs => {
                let c = raw.value as u128 * self.tsc_khz as u128 / 1_000_000;
                c.min(u64::MAX as u128) as u64
            }
            Unit::Events => {
                if raw.time_running > 0 && raw.time_running < raw.time_enabled {
                    let c = raw.value as u128 * raw.time_enabled as u128 / raw.time_running as u128;
                    c.min(u64::MAX as u128) as u64
                } else {
                    raw.value
                }
            }
        }
    }
}

impl HostBackend for PerfBackend {
    fn open(&mut self, event: &HostEvent) -> Result<HostHandle, HostError> {
        let plan = self
            .plans
            .get(event.pmu)
            .ok_or(HostError::UnknownPmu(event.pmu))?;
        let spec = translate(plan, event.name, &event.modifiers).ok_or_else(|| {
            HostError::Unsupported {
                pmu: self.pmu_name(event.pmu),
                event: event.name,
            }
        })?;
        let (fd, base) = if spec.silent {
            (None, RawRead::default())
        } else if let Some(i) = self.idle.iter().position(|(s, _)| *s == spec) {
            let (_, fd) = self
                .idle
                .remove(i)
                .ok_or(HostError::Io(io::Error::other("idle fd vanished")))?;
            match fd.read() {
                Ok(base) => (Some(fd), base),
                // A broken idle fd is dropped; open a fresh one.
                Err(_) => (Some(self.open_fd(&spec, event)?), RawRead::default()),
            }
        } else {
            (Some(self.open_fd(&spec, event)?), RawRead::default())
        };
        let c = PerfCounter {
            event: *event,
            spec,
            fd,
            base,
            enabled: false,
            period: translate::PERIOD_NEVER,
            last_count: 0,
            failed: false,
        };
        Ok(HostHandle(self.counters.insert(c)))
    }

    fn enable(&mut self, h: HostHandle, _slot: Option<u8>, _now: u64) -> Result<(), HostError> {
        let c = self.get_mut(h)?;
        if c.enabled {
            return Err(HostError::AlreadyEnabled(h));
        }
        if let Some(fd) = &c.fd {
            fd.enable()?;
        }
        c.enabled = true;
        Ok(())
    }

    fn disable(&mut self, h: HostHandle, _now: u64) -> Result<(), HostError> {
        let c = self.get_mut(h)?;
        if !c.enabled {
            return Ok(());
        }
        c.enabled = false;
        if let Some(fd) = &c.fd {
            fd.disable()?;
        }
        Ok(())
    }

    fn read(&mut self, h: HostHandle, _now: u64) -> Result<HostReading, HostError> {
        let c = self.get(h)?;
        let Some(fd) = &c.fd else {
            return Ok(HostReading::default());
        };
        let pmu = c.event.pmu;
        let raw = match fd.read() {
            Ok(r) => r,
            Err(e) => {
                let (err, what) = match e {
                    ReadError::ErrorState => (
                        HostError::NoCounter {
                            pmu: self.pmu_name(pmu),
                        },
                        "in error state".to_string(),
                    ),
                    ReadError::Io(e) => {
                        let s = e.to_string();
                        (HostError::Io(e), s)
                    }
                };
                let tid = self.tid;
                let c = self.get_mut(h)?;
                if !c.failed {
                    c.failed = true;
                    log::warn!(
                        "vpmu: perf: host event {} on tid {} {what}; it reads as zero",
                        c.event.name,
                        tid
                    );
                }
                return Err(err);
            }
        };
        let since = RawRead {
            value: raw.value.wrapping_sub(c.base.value),
            time_enabled: raw.time_enabled.saturating_sub(c.base.time_enabled),
            time_running: raw.time_running.saturating_sub(c.base.time_running),
        };
        let count = self.convert(&c.spec, since);
        let c = self.get_mut(h)?;
        c.last_count = c.last_count.max(count);
        Ok(HostReading {
            count: c.last_count,
            time_enabled: since.time_enabled,
            time_running: since.time_running,
        })
    }

    fn set_overflow(&mut self, h: HostHandle, after: Option<u64>) -> Result<(), HostError> {
        let c = self.get(h)?;
        let period = match after {
            Some(n) => self.period_of(&c.spec, n),
            None => translate::PERIOD_NEVER,
        };
        let c = self.get_mut(h)?;
        // Re-arm even when unchanged: the period restarts from now.
        if let Some(fd) = &c.fd {
            if after.is_some() || c.period != period {
                fd.set_period(period)?;
            }
        }
        c.period = period;
        Ok(())
    }

    fn close(&mut self, h: HostHandle) -> Result<(), HostError> {
        let c = self.counters.remove(h.0).ok_or(HostError::BadHandle(h))?;
        let Some(fd) = c.fd else { return Ok(()) };
        // Park the fd for reuse only if it is healthy and quiet.
        let parked = !c.failed
            && fd.disable().is_ok()
            && (c.period == translate::PERIOD_NEVER
                || fd.set_period(translate::PERIOD_NEVER).is_ok());
        if parked {
            if self.idle.len() >= IDLE_FDS {
                self.idle.pop_front();
            }
            self.idle.push_back((c.spec, fd));
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "perf"
    }
}
