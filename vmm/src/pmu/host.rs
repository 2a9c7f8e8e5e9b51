//! Which host side backs the guest counters (`--host-pmu`), and the state
//! shared by every vCPU for it. The host side itself (perf or simulated
//! backend, shared host PMUs, building a vCPU's counters) is
//! [`vpmu::host::assembly`]; this module parses the command line into it
//! and adds the thread clock, which needs no multiplexer.

use std::sync::Arc;

use vpmu::arch::events::{ArchEvents, ARCH_EVENTS};
use vpmu::core::host_pmu::HostPmu;
use vpmu::core::policy::MuxPolicy;
use vpmu::core::vcpu::VcpuCounters;
pub use vpmu::host::assembly::AnyBackend;
use vpmu::host::assembly::{AssemblyError, HostAssembly};
use vpmu::host::profile::{Profile, ProfileError};
use vpmu::host::EventName;

use super::thread_clock;

/// Errors of the host-side options and set-up.
#[derive(Debug, thiserror::Error)]
pub enum HostSideError {
    #[error("--host-pmu {0}: expected auto, perf, sim:PROFILE or thread-clock")]
    HostPmuSyntax(String),
    #[error("--host-pmu {arg}: {source}")]
    Profile {
        arg: String,
        #[source]
        source: Box<ProfileError>,
    },
    #[error("--sim-phases {arg}: {why} (expected MS:MULT[,MS:MULT...])")]
    SimPhases { arg: String, why: &'static str },
    #[error("--inject-host-fault {name}: expected one of {expected}")]
    Errno { name: String, expected: String },
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
}

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
    pub fn parse(arg: &str) -> Result<Self, HostSideError> {
        match arg {
            "auto" | "perf" => return Ok(HostPmuChoice::Perf),
            "thread-clock" => return Ok(HostPmuChoice::ThreadClock),
            _ => {}
        }
        let Some(spec) = arg.strip_prefix("sim:") else {
            return Err(HostSideError::HostPmuSyntax(arg.to_string()));
        };
        Profile::load(spec, None)
            .map(|p| HostPmuChoice::Sim(Arc::new(p)))
            .map_err(|source| HostSideError::Profile {
                arg: arg.to_string(),
                source: Box::new(source),
            })
    }
}

/// The host PMUs of a VM, shared by its vCPUs (the perf core's per-PMU
/// `perf_cpu_pmu_context`: capacity, interval, rotation count).
#[derive(Debug)]
pub struct HostSide {
    /// The multiplexer's host side; `None` for the thread clock.
    pub assembly: Option<HostAssembly>,
    /// The shared host PMUs (those of `assembly`; none for the thread clock).
    pub pmus: Vec<Arc<HostPmu>>,
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
pub fn parse_sim_phases(arg: &str) -> Result<Vec<(u64, f64)>, HostSideError> {
    let bad = |why: &'static str| HostSideError::SimPhases {
        arg: arg.to_string(),
        why,
    };
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
pub fn parse_errno(name: &str) -> Result<i32, HostSideError> {
    INJECTABLE_ERRNOS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, e)| e)
        .ok_or_else(|| {
            let names: Vec<&str> = INJECTABLE_ERRNOS.iter().map(|(n, _)| *n).collect();
            HostSideError::Errno {
                name: name.to_string(),
                expected: names.join(", "),
            }
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
    ) -> Result<Self, HostSideError> {
        if !sim_phases.is_empty() && !matches!(choice, HostPmuChoice::Sim(_)) {
            return Err(AssemblyError::PhasesNeedSimulation.into());
        }
        let assembly = match choice {
            HostPmuChoice::Perf => HostAssembly::discover(tsc_khz)?,
            HostPmuChoice::Sim(p) => HostAssembly::sim(Arc::clone(p)),
            HostPmuChoice::ThreadClock => {
                if let Some((pmu, _)) = overrides.first() {
                    return Err(AssemblyError::MuxInterval(
                        vpmu::core::MuxIntervalError::UnknownPmu(pmu.clone()),
                    )
                    .into());
                }
                return Ok(HostSide {
                    assembly: None,
                    pmus: Vec::new(),
                });
            }
        };
        let assembly = assembly
            .with_policy(policy)
            .with_open_fault(open_fault)
            .with_sim_phases(sim_phases)?
            .with_overrides(overrides)?;
        Ok(HostSide {
            pmus: assembly.pmus().to_vec(),
            assembly: Some(assembly),
        })
    }

    /// `perf`, `sim:NAME` or `thread-clock`, for statistics.
    pub fn name(&self) -> String {
        self.assembly
            .as_ref()
            .map_or_else(|| "thread-clock".into(), HostAssembly::name)
    }

    fn profile(&self) -> Option<&Profile> {
        self.assembly.as_ref().map(HostAssembly::profile)
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
        self.assembly
            .as_ref()
            .map(|a| a.vcpu_counters(vcpu, Some(kick_signal)))
    }
}
