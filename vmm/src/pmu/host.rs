//! Which host side backs the guest counters (`--host-pmu`), and the state
//! shared by every vCPU for it.

use std::sync::Arc;

use vpmu::arch::events::{ArchEvents, ARCH_EVENTS};
use vpmu::core::host_pmu::HostPmu;
use vpmu::core::policy::MuxPolicy;
use vpmu::core::vcpu::{EventTable, VcpuCounters};
use vpmu::host::perf::{PerfBackend, PerfHost};
use vpmu::host::profile::Profile;
use vpmu::host::sim::{SimBackend, Workload};
use vpmu::host::{EventName, HostBackend, HostError, HostEvent, HostHandle, HostReading};

use super::thread_clock;

/// `--host-pmu`, as the user gave it.
#[derive(Clone, Debug)]
pub enum HostPmuChoice {
    /// Linux perf events on the vCPU thread (this host's PMUs; where there
    /// is no hardware PMU, cycles come from task-clock, software-emulated).
    Perf,
    /// A simulated host PMU described by a profile (`sim:NAME`).
    Sim(Arc<Profile>),
    /// No host counters at all: cycles from the vCPU thread's CPU time,
    /// without the multiplexer (no statistics).
    ThreadClock,
}

impl HostPmuChoice {
    /// Parses `auto` / `perf`, `sim:PROFILE` (a built-in profile name, or a
    /// path to a profile file) or `thread-clock`.
    pub fn parse(arg: &str) -> Result<Self, String> {
        match arg {
            "auto" | "perf" => return Ok(HostPmuChoice::Perf),
            "thread-clock" => return Ok(HostPmuChoice::ThreadClock),
            _ => {}
        }
        let Some(spec) = arg.strip_prefix("sim:") else {
            return Err(format!(
                "--host-pmu {arg}: expected auto, perf, sim:PROFILE or thread-clock"
            ));
        };
        Profile::load(spec, None)
            .map(|p| HostPmuChoice::Sim(Arc::new(p)))
            .map_err(|e| format!("--host-pmu {arg}: {e}"))
    }
}

/// How the host side was set up for this VM.
#[derive(Debug)]
pub enum Backing {
    Perf(PerfHost),
    Sim(Arc<Profile>),
    ThreadClock,
}

/// The host PMUs of a VM, shared by its vCPUs (the perf core's per-PMU
/// `perf_cpu_pmu_context`: capacity, interval, rotation count).
#[derive(Debug)]
pub struct HostSide {
    pub backing: Backing,
    pub pmus: Vec<Arc<HostPmu>>,
    pub policy: MuxPolicy,
    /// `--inject-host-fault`: every host counter open fails with this errno.
    pub open_fault: Option<i32>,
    /// `--sim-phases`: (ns of run time, rate multiplier) of the simulated
    /// workload; empty = steady.
    pub sim_phases: Vec<(u64, f64)>,
}

/// The errnos `--inject-host-fault` accepts: the host failures a VM must
/// survive.
pub const INJECTABLE_ERRNOS: [(&str, i32); 5] = [
    ("ENOENT", libc::ENOENT),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EACCES", libc::EACCES),
    ("ENOSPC", libc::ENOSPC),
    ("EMFILE", libc::EMFILE),
];

/// Parses `--sim-phases MS:MULT[,MS:MULT...]`: phases of the simulated
/// workload, each `MS` milliseconds of vCPU run time at `MULT` times the
/// profile's rates, repeated.
pub fn parse_sim_phases(arg: &str) -> Result<Vec<(u64, f64)>, String> {
    let bad = |why: &str| format!("--sim-phases {arg}: {why} (expected MS:MULT[,MS:MULT...])");
    let phases = arg
        .split(',')
        .map(|p| {
            let (ms, mult) = p.split_once(':').ok_or_else(|| bad("a phase lacks `:`"))?;
            let ms: u64 = ms.trim().parse().map_err(|_| bad("bad milliseconds"))?;
            let mult: f64 = mult.trim().parse().map_err(|_| bad("bad multiplier"))?;
            if !(1..=100_000).contains(&ms) || !mult.is_finite() || !(0.0..=1000.0).contains(&mult)
            {
                return Err(bad("phases are 1..=100000 ms at a multiplier of 0..=1000"));
            }
            Ok((ms * 1_000_000, mult))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if phases.is_empty() || phases.len() > 64 {
        return Err(bad("1 to 64 phases"));
    }
    Ok(phases)
}

/// Parses an `--inject-host-fault` errno name.
pub fn parse_errno(name: &str) -> Result<i32, String> {
    INJECTABLE_ERRNOS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, e)| e)
        .ok_or_else(|| {
            let names: Vec<&str> = INJECTABLE_ERRNOS.iter().map(|(n, _)| *n).collect();
            format!(
                "--inject-host-fault {name}: expected one of {}",
                names.join(", ")
            )
        })
}

impl HostSide {
    /// Sets up the host side: for perf, discovers this host's PMUs
    /// (`tsc_khz` converts task-clock time to cycles); then applies the
    /// `--mux-interval-ms` overrides.
    pub fn new(
        choice: &HostPmuChoice,
        policy: MuxPolicy,
        tsc_khz: u32,
        overrides: &[(String, u64)],
        open_fault: Option<i32>,
        sim_phases: Vec<(u64, f64)>,
    ) -> Result<Self, String> {
        if !sim_phases.is_empty() && !matches!(choice, HostPmuChoice::Sim(_)) {
            return Err("--sim-phases needs --host-pmu sim:PROFILE".into());
        }
        let (backing, pmus) = match choice {
            HostPmuChoice::Perf => {
                let host = PerfHost::discover(tsc_khz)
                    .map_err(|e| format!("discovering host PMUs: {e}"))?;
                let pmus = host.host_pmus();
                (Backing::Perf(host), pmus)
            }
            HostPmuChoice::Sim(p) => (Backing::Sim(Arc::clone(p)), HostPmu::from_profile(p)),
            HostPmuChoice::ThreadClock => (Backing::ThreadClock, Vec::new()),
        };
        HostPmu::apply_overrides(&pmus, overrides)
            .map_err(|e| format!("--mux-interval-ms: {e}"))?;
        Ok(HostSide {
            backing,
            pmus,
            policy,
            open_fault,
            sim_phases,
        })
    }

    /// `perf`, `sim:NAME` or `thread-clock`, for statistics.
    pub fn name(&self) -> String {
        match &self.backing {
            Backing::Perf(_) => "perf".into(),
            Backing::Sim(p) => format!("sim:{}", p.name),
            Backing::ThreadClock => "thread-clock".into(),
        }
    }

    fn profile(&self) -> Option<&Profile> {
        match &self.backing {
            Backing::Perf(h) => Some(&h.profile),
            Backing::Sim(p) => Some(p),
            Backing::ThreadClock => None,
        }
    }

    /// Architectural events no host PMU can count: CPUID.0AH:EBX marks them
    /// unavailable, and a guest that programs them reads zero.
    pub fn unavailable_events(&self) -> ArchEvents {
        let Some(profile) = self.profile() else {
            return ArchEvents(!thread_clock::AVAILABLE_EVENTS);
        };
        ARCH_EVENTS
            .iter()
            .filter(|e| EventName::from_code(e.code).is_none_or(|n| profile.map(n).is_none()))
            .fold(ArchEvents(0), |m, e| m.with(e))
    }

    /// Whether instructions retired is counted: only then do the
    /// instructions the VMM emulates count as retired (as KVM does for the
    /// ones it emulates); an unavailable event reads zero.
    pub fn counts_instructions(&self) -> bool {
        !self.unavailable_events().contains(&ARCH_EVENTS[1])
    }

    /// The counting front of one vCPU over the multiplexer, or `None` for
    /// the thread clock. **Call on the vCPU thread**: perf events attach to
    /// the calling thread and send their overflow signal (`kick_signal`) to it.
    pub fn vcpu_counters(&self, vcpu: u32, kick_signal: i32) -> Option<VcpuCounters<AnyBackend>> {
        let (table, backend) = match &self.backing {
            Backing::Perf(h) => match self.open_fault {
                Some(errno) => (h.event_table(), AnyBackend::FailingOpen(errno)),
                None => (
                    h.event_table(),
                    AnyBackend::Perf(h.backend(Some(kick_signal))),
                ),
            },
            Backing::Sim(p) => {
                let mut sim = SimBackend::new(Profile::clone(p));
                if !self.sim_phases.is_empty() {
                    sim.set_workload(Workload::phases(&self.sim_phases));
                }
                (EventTable::from_profile(p), AnyBackend::Sim(sim))
            }
            Backing::ThreadClock => return None,
        };
        Some(VcpuCounters::new(
            vcpu,
            self.pmus.clone(),
            table,
            backend,
            self.policy,
        ))
    }
}

/// The host backends a vCPU's multiplexer can drive.
#[derive(Debug)]
pub enum AnyBackend {
    Perf(PerfBackend),
    Sim(SimBackend),
    /// `--inject-host-fault`: a perf host whose every open fails.
    FailingOpen(i32),
}

impl AnyBackend {
    fn inner(&mut self) -> Result<&mut dyn HostBackend, HostError> {
        match self {
            AnyBackend::Perf(b) => Ok(b),
            AnyBackend::Sim(b) => Ok(b),
            // No open succeeds, so no handle reaches the other operations.
            AnyBackend::FailingOpen(errno) => {
                Err(HostError::Io(std::io::Error::from_raw_os_error(*errno)))
            }
        }
    }
}

impl HostBackend for AnyBackend {
    fn open(&mut self, event: &HostEvent) -> Result<HostHandle, HostError> {
        if let AnyBackend::FailingOpen(errno) = self {
            let err = std::io::Error::from_raw_os_error(*errno);
            return Err(vpmu::host::perf::open_error(err, "injected", event.name));
        }
        self.inner()?.open(event)
    }
    fn enable(&mut self, h: HostHandle, slot: Option<u8>, now: u64) -> Result<(), HostError> {
        self.inner()?.enable(h, slot, now)
    }
    fn disable(&mut self, h: HostHandle, now: u64) -> Result<(), HostError> {
        self.inner()?.disable(h, now)
    }
    fn reassign(&mut self, h: HostHandle, slot: u8) {
        if let Ok(b) = self.inner() {
            b.reassign(h, slot)
        }
    }
    fn read(&mut self, h: HostHandle, now: u64) -> Result<HostReading, HostError> {
        self.inner()?.read(h, now)
    }
    fn set_overflow(&mut self, h: HostHandle, after: Option<u64>) -> Result<(), HostError> {
        self.inner()?.set_overflow(h, after)
    }
    fn close(&mut self, h: HostHandle) -> Result<(), HostError> {
        self.inner()?.close(h)
    }
    fn truth(&self, pmu: usize, event: EventName, from: u64, to: u64) -> Option<u64> {
        match self {
            AnyBackend::Sim(b) => HostBackend::truth(b, pmu, event, from, to),
            AnyBackend::Perf(_) | AnyBackend::FailingOpen(_) => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            AnyBackend::Perf(b) => b.kind(),
            AnyBackend::Sim(b) => b.kind(),
            AnyBackend::FailingOpen(_) => "perf",
        }
    }
}
