//! The one place where a host side and the multiplexer are put together.
//!
//! A [`HostAssembly`] is the host side of a VM: which backend counts
//! (Linux perf on this host, or a simulated profile), the host PMUs every
//! vCPU shares ([`HostPmu`]), the multiplexing policy, and the fault and
//! workload settings. [`HostAssembly::vcpu_counters`] builds the counting
//! front of one vCPU over [`AnyBackend`]; the VMM and the tests build
//! counters through it, so both run the same construction.
//!
//! This is the only module of [`crate::host`] that imports
//! [`crate::core`]; the backends see the multiplexer only through
//! [`crate::backend`].

use std::sync::Arc;

use crate::backend::{HostBackend, HostError, HostHandle, HostReading};
use crate::core::host_pmu::{HostPmu, MuxIntervalError};
use crate::core::policy::MuxPolicy;
use crate::core::vcpu::{EventTable, VcpuCounters};
use crate::event::{EventName, HostEvent};
use crate::host::perf::{PerfBackend, PerfHost};
use crate::host::profile::{Profile, ProfileError};
use crate::host::sim::{SimBackend, Workload};

impl HostPmu {
    /// All PMUs of a simulated profile, shared by every vCPU: make them once.
    pub fn from_profile(profile: &Profile) -> Vec<Arc<HostPmu>> {
        host_pmus(profile, true)
    }
}

fn host_pmus(profile: &Profile, simulated: bool) -> Vec<Arc<HostPmu>> {
    profile
        .pmus
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let fixed = u8::try_from(d.fixed.len()).unwrap_or(u8::MAX);
            Arc::new(HostPmu::new(
                i,
                &d.name,
                d.kind,
                (d.gp, fixed),
                d.mux_interval_ms,
                simulated,
            ))
        })
        .collect()
}

impl EventTable {
    /// Which PMU of `profile` counts each generic event.
    pub fn from_profile(profile: &Profile) -> EventTable {
        EventTable::new(|e| profile.map(e))
    }
}

impl PerfHost {
    /// This host's PMUs, shared by every vCPU: make them once.
    pub fn host_pmus(&self) -> Vec<Arc<HostPmu>> {
        host_pmus(&self.profile, false)
    }

    /// Which host PMU counts each generic event.
    pub fn event_table(&self) -> EventTable {
        EventTable::from_profile(&self.profile)
    }

    /// Architectural events no host PMU counts (set their bits in the
    /// guest's CPUID 0xA EBX).
    pub fn unavailable_events(&self) -> Vec<EventName> {
        unavailable_events(&self.profile)
    }
}

fn unavailable_events(profile: &Profile) -> Vec<EventName> {
    EventName::ALL
        .into_iter()
        .filter(|e| profile.map(*e).is_none())
        .collect()
}

/// Errors of setting up a host side.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("discovering host PMUs: {0}")]
    Discovery(#[source] Box<ProfileError>),
    #[error("--mux-interval-ms: {0}")]
    MuxInterval(#[from] MuxIntervalError),
    #[error("--sim-phases needs --host-pmu sim:PROFILE")]
    PhasesNeedSimulation,
}

/// Which backend counts.
#[derive(Debug)]
pub enum Backing {
    /// Linux perf events on the vCPU threads of this host.
    Perf(PerfHost),
    /// A simulated host PMU described by a profile.
    Sim(Arc<Profile>),
}

/// The host side of a VM, shared by its vCPUs.
#[derive(Debug)]
pub struct HostAssembly {
    backing: Backing,
    pmus: Vec<Arc<HostPmu>>,
    policy: MuxPolicy,
    /// Every host counter open fails with this errno (fault injection).
    open_fault: Option<i32>,
    /// (ns of run time, rate multiplier) of the simulated workload; empty
    /// = steady.
    sim_phases: Vec<(u64, f64)>,
}

impl HostAssembly {
    /// Over what perf discovery found on this host.
    pub fn perf(host: PerfHost) -> Self {
        let pmus = host.host_pmus();
        HostAssembly::new(Backing::Perf(host), pmus)
    }

    /// Discovers this host's PMUs (`tsc_khz` converts task-clock time to
    /// cycles).
    pub fn discover(tsc_khz: u32) -> Result<Self, AssemblyError> {
        PerfHost::discover(tsc_khz)
            .map(HostAssembly::perf)
            .map_err(|e| AssemblyError::Discovery(Box::new(e)))
    }

    /// Over the simulated host PMUs of `profile`.
    pub fn sim(profile: Arc<Profile>) -> Self {
        let pmus = HostPmu::from_profile(&profile);
        HostAssembly::new(Backing::Sim(profile), pmus)
    }

    fn new(backing: Backing, pmus: Vec<Arc<HostPmu>>) -> Self {
        HostAssembly {
            backing,
            pmus,
            policy: MuxPolicy::default(),
            open_fault: None,
            sim_phases: Vec::new(),
        }
    }

    pub fn with_policy(mut self, policy: MuxPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Every host counter open fails with `errno` (perf hosts).
    pub fn with_open_fault(mut self, errno: Option<i32>) -> Self {
        self.open_fault = errno;
        self
    }

    /// Phases of the simulated workload: (ns of run time, multiplier).
    pub fn with_sim_phases(mut self, phases: Vec<(u64, f64)>) -> Result<Self, AssemblyError> {
        if !phases.is_empty() && !matches!(self.backing, Backing::Sim(_)) {
            return Err(AssemblyError::PhasesNeedSimulation);
        }
        self.sim_phases = phases;
        Ok(self)
    }

    /// Applies `--mux-interval-ms PMU=MS` overrides.
    pub fn with_overrides(self, overrides: &[(String, u64)]) -> Result<Self, AssemblyError> {
        HostPmu::apply_overrides(&self.pmus, overrides)?;
        Ok(self)
    }

    pub fn backing(&self) -> &Backing {
        &self.backing
    }
    /// The host PMUs, shared by every vCPU.
    pub fn pmus(&self) -> &[Arc<HostPmu>] {
        &self.pmus
    }
    pub fn policy(&self) -> MuxPolicy {
        self.policy
    }
    /// The description the multiplexer schedules on.
    pub fn profile(&self) -> &Profile {
        match &self.backing {
            Backing::Perf(h) => &h.profile,
            Backing::Sim(p) => p,
        }
    }

    /// `perf` or `sim:NAME`, for statistics.
    pub fn name(&self) -> String {
        match &self.backing {
            Backing::Perf(_) => "perf".into(),
            Backing::Sim(p) => format!("sim:{}", p.name),
        }
    }

    /// Events no host PMU counts.
    pub fn unavailable_events(&self) -> Vec<EventName> {
        unavailable_events(self.profile())
    }

    /// The counting front of vCPU `vcpu`. **Call on the vCPU thread**: perf
    /// events attach to the calling thread and send their overflow signal
    /// (`kick_signal`; `None`: no overflow signals) to it.
    pub fn vcpu_counters(&self, vcpu: u32, kick_signal: Option<i32>) -> VcpuCounters<AnyBackend> {
        let backend = match &self.backing {
            Backing::Perf(h) => match self.open_fault {
                Some(errno) => AnyBackend::FailingOpen(errno),
                None => AnyBackend::Perf(h.backend(kick_signal)),
            },
            Backing::Sim(p) => AnyBackend::Sim(self.sim_backend(p)),
        };
        self.build(vcpu, backend)
    }

    /// [`HostAssembly::vcpu_counters`] with the simulated backend itself
    /// (tests that check its invariants or change its workload); `None` on
    /// a perf host.
    pub fn sim_vcpu_counters(&self, vcpu: u32) -> Option<VcpuCounters<SimBackend>> {
        match &self.backing {
            Backing::Sim(p) => Some(self.build(vcpu, self.sim_backend(p))),
            Backing::Perf(_) => None,
        }
    }

    /// [`HostAssembly::vcpu_counters`] with the perf backend itself; `None`
    /// on a simulated host. **Call on the vCPU thread.**
    pub fn perf_vcpu_counters(
        &self,
        vcpu: u32,
        kick_signal: Option<i32>,
    ) -> Option<VcpuCounters<PerfBackend>> {
        match &self.backing {
            Backing::Perf(h) => Some(self.build(vcpu, h.backend(kick_signal))),
            Backing::Sim(_) => None,
        }
    }

    fn sim_backend(&self, profile: &Profile) -> SimBackend {
        let mut sim = SimBackend::new(profile.clone());
        if !self.sim_phases.is_empty() {
            sim.set_workload(Workload::phases(&self.sim_phases));
        }
        sim
    }

    fn build<B: HostBackend>(&self, vcpu: u32, backend: B) -> VcpuCounters<B> {
        VcpuCounters::new(
            vcpu,
            self.pmus.clone(),
            EventTable::from_profile(self.profile()),
            backend,
            self.policy,
        )
    }
}

/// The host backends a vCPU's multiplexer can drive.
#[derive(Debug)]
pub enum AnyBackend {
    Perf(PerfBackend),
    Sim(SimBackend),
    /// Fault injection: a perf host whose every open fails with this errno.
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
            return Err(crate::host::perf::open_error(err, "injected", event.name));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_phases_are_checked() {
        let p = Arc::new(Profile::builtin("hybrid").unwrap());
        let a = HostAssembly::sim(p.clone())
            .with_overrides(&[("cpu_atom".into(), 2)])
            .unwrap();
        assert_eq!(a.pmus()[1].interval_ms(), 2);
        assert_eq!(a.pmus()[0].interval_ms(), 4);
        assert!(a.pmus().iter().all(|p| p.is_simulated()));
        assert!(matches!(
            HostAssembly::sim(p.clone()).with_overrides(&[("gpu".into(), 2)]),
            Err(AssemblyError::MuxInterval(MuxIntervalError::UnknownPmu(_)))
        ));
        assert!(HostAssembly::sim(p)
            .with_sim_phases(vec![(1_000_000, 2.0)])
            .is_ok());
    }
}
