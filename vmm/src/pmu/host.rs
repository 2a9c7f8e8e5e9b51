//! Which host side backs the guest counters (`--host-pmu`), and the state
//! shared by every vCPU for it.

use std::sync::Arc;

use vpmu::arch::events::{ArchEvents, ARCH_EVENTS};
use vpmu::core::host_pmu::HostPmu;
use vpmu::core::policy::MuxPolicy;
use vpmu::host::profile::Profile;
use vpmu::host::EventName;

use super::thread_clock;

/// `--host-pmu`.
#[derive(Clone, Debug)]
pub enum HostPmuChoice {
    /// The best this host has. On a host without a hardware PMU: core and
    /// reference cycles from the vCPU thread's CPU time (software-emulated),
    /// every other architectural event unavailable.
    Auto,
    /// A simulated host PMU described by a profile (`sim:NAME`).
    Sim(Arc<Profile>),
}

impl HostPmuChoice {
    /// Parses `auto` or `sim:PROFILE` (a built-in profile name, or a path
    /// to a profile file).
    pub fn parse(arg: &str) -> Result<Self, String> {
        if arg == "auto" {
            return Ok(HostPmuChoice::Auto);
        }
        let Some(spec) = arg.strip_prefix("sim:") else {
            return Err(format!("--host-pmu {arg}: expected auto or sim:PROFILE"));
        };
        Profile::load(spec, None)
            .map(|p| HostPmuChoice::Sim(Arc::new(p)))
            .map_err(|e| format!("--host-pmu {arg}: {e}"))
    }
}

/// The host PMUs of a VM, shared by its vCPUs (the perf core's per-PMU
/// `perf_cpu_pmu_context`: capacity, interval, rotation count).
#[derive(Clone, Debug)]
pub struct HostSide {
    pub choice: HostPmuChoice,
    pub pmus: Vec<Arc<HostPmu>>,
    pub policy: MuxPolicy,
}

impl HostSide {
    pub fn new(choice: HostPmuChoice, policy: MuxPolicy) -> Self {
        let pmus = match &choice {
            HostPmuChoice::Auto => Vec::new(),
            HostPmuChoice::Sim(p) => HostPmu::from_profile(p),
        };
        HostSide {
            choice,
            pmus,
            policy,
        }
    }

    /// Whether instructions retired is counted: only then do the
    /// instructions the VMM emulates count as retired (as KVM does for the
    /// ones it emulates); an unavailable event reads zero.
    pub fn counts_instructions(&self) -> bool {
        !self.unavailable_events().contains(&ARCH_EVENTS[1])
    }

    /// Architectural events no host PMU can count: CPUID.0AH:EBX marks them
    /// unavailable, and a guest that programs them reads zero.
    pub fn unavailable_events(&self) -> ArchEvents {
        match &self.choice {
            HostPmuChoice::Auto => ArchEvents(!thread_clock::AVAILABLE_EVENTS),
            HostPmuChoice::Sim(profile) => {
                let mut missing = ArchEvents(0);
                for e in &ARCH_EVENTS {
                    let counted =
                        EventName::from_code(e.code).is_some_and(|n| profile.map(n).is_some());
                    if !counted {
                        missing = missing.with(e);
                    }
                }
                missing
            }
        }
    }
}
