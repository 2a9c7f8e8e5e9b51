//! The JSON bodies of the statistics API (documented in
//! `resources/openapi.yaml`). Where the vPMU crate or the exit recorder
//! already has a serde type (guest PMU state, counter statistics, exit
//! counts), it is used as is.

use serde::{Deserialize, Serialize};

use crate::cpuid::CpuVendor;

use vpmu::config::PmuArch;
use vpmu::core::history::{counters_of, HistoryEntry};
use vpmu::core::HostPmu;
use vpmu::guest::GuestPmuState;
use vpmu::source::CounterIndex;
use vpmu::stats::{CapacityStats, PmuKind, VcpuStats};

/// `GET /v1/exits` is what the exit recorders sum to, as is.
pub use crate::exits::{Distribution, Exits, MsrExits, VcpuExits};

/// `GET /v1/vm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    pub config: VmConfigInfo,
    /// `running` or `stopping`.
    pub state: String,
    pub uptime_ms: u64,
}

/// What `vmm run` was configured with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmConfigInfo {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub vpmu: VpmuConfigInfo,
    /// `--host-pmu` as given: `auto` or `sim:PROFILE`.
    pub host_pmu: String,
    /// `raw` or `scaled`.
    pub scaling: String,
    /// `per-counter` or `packed`.
    pub grouping: String,
}

/// The guest-visible PMU configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VpmuConfigInfo {
    pub enabled: bool,
    /// The CPU vendor guests see in CPUID (`intel` or `amd`).
    pub cpu_vendor: String,
    /// The PMU interface guests see (`intel` or `amd`).
    pub arch: PmuArch,
    /// Intel: architectural PMU version; AMD: 0 legacy, 1 PerfCtrCore, 2
    /// PerfMonV2.
    pub version: u8,
    pub gp_counters: u8,
    pub fixed_counters: u8,
    pub full_width_writes: bool,
}

impl VpmuConfigInfo {
    /// One-word summary for tables: `intel v4 8+3` (GP + fixed counters),
    /// `amd v2 6` (AMD has no fixed counters), or `off`.
    pub fn summary(&self) -> String {
        match (self.enabled, self.arch) {
            (false, _) => "off".to_string(),
            (true, PmuArch::Intel) => format!(
                "intel v{} {}+{}",
                self.version, self.gp_counters, self.fixed_counters
            ),
            (true, PmuArch::Amd) => format!("amd v{} {}", self.version, self.gp_counters),
        }
    }

    pub fn of(cfg: &vpmu::config::PmuConfig, vendor: CpuVendor) -> Self {
        VpmuConfigInfo {
            enabled: cfg.enabled,
            cpu_vendor: vendor.as_str().to_string(),
            arch: cfg.arch,
            version: cfg.version,
            gp_counters: cfg.gp_counters,
            fixed_counters: cfg.fixed_counters,
            full_width_writes: cfg.full_width_writes,
        }
    }
}

/// `GET /v1/vcpus/{id}/pmu`, and each element of `GET /v1/vcpus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VcpuPmu {
    pub id: u32,
    /// Guest-visible PMU state as last published (`null` before the first
    /// publication).
    pub guest: Option<GuestPmuState>,
    /// Counter statistics of the multiplexer (`null` for host sides that do
    /// not multiplex, e.g. the thread clock of `--host-pmu auto`).
    pub stats: Option<VcpuStats>,
}

/// `GET /v1/vcpus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VcpuList {
    pub vcpus: Vec<VcpuPmu>,
}

/// One host PMU: `GET /v1/host-pmus/{name}` and the elements of
/// `GET /v1/host-pmus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostPmuInfo {
    pub name: String,
    pub kind: PmuKind,
    pub capacity: CapacityStats,
    pub mux_interval_ms: u64,
    /// Rotations by all vCPU contexts.
    pub rotations: u64,
    /// vCPU contexts that currently need rotation on this PMU.
    pub rotating_contexts: u64,
    /// Groups holding counters, summed over vCPUs (as last published).
    pub groups_active: u64,
    /// Flexible groups waiting for counters, summed over vCPUs.
    pub groups_waiting: u64,
    /// Pinned groups in error, summed over vCPUs.
    pub groups_error: u64,
}

impl HostPmuInfo {
    /// A host PMU's live numbers plus the group counts of the vCPUs'
    /// latest published statistics.
    pub fn of(pmu: &HostPmu, vcpus: &[VcpuStats]) -> Self {
        let cap = pmu.capacity();
        let mut info = HostPmuInfo {
            name: pmu.name().to_string(),
            kind: pmu.kind(),
            capacity: CapacityStats {
                gp: cap.gp,
                fixed: cap.fixed,
                unbounded: cap.unbounded,
            },
            mux_interval_ms: pmu.interval_ms(),
            rotations: pmu.rotations(),
            rotating_contexts: pmu.rotating_contexts() as u64,
            groups_active: 0,
            groups_waiting: 0,
            groups_error: 0,
        };
        for p in vcpus
            .iter()
            .flat_map(|v| &v.pmus)
            .filter(|p| p.name == info.name)
        {
            info.groups_active += p.groups_active as u64;
            info.groups_waiting += p.groups_waiting as u64;
            info.groups_error += p.groups_error as u64;
        }
        info
    }
}

/// `GET /v1/host-pmus`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostPmuList {
    pub host_pmus: Vec<HostPmuInfo>,
}

/// `PUT /v1/host-pmus/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPmuUpdate {
    pub mux_interval_ms: u64,
}

/// `GET /v1/host-pmus/{name}/timeline`: the PMU's rotation history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub host_pmu: String,
    pub mux_interval_ms: u64,
    /// Points recorded since start (older ones were overwritten).
    pub recorded: u64,
    /// Oldest first.
    pub entries: Vec<TimelineEntry>,
}

/// One schedule-in, rotation or schedule-out of one vCPU on the PMU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub seq: u64,
    pub vcpu: u32,
    /// vCPU run time, ns (each vCPU has its own clock).
    pub run_time_ns: u64,
    /// `sched-in`, `rotation` or `sched-out`.
    pub kind: String,
    /// Guest counters holding counters of this PMU from this point on.
    pub active: Vec<CounterIndex>,
}

impl TimelineEntry {
    pub fn of(e: &HistoryEntry) -> Self {
        TimelineEntry {
            seq: e.seq,
            vcpu: e.vcpu,
            run_time_ns: e.run_time_ns,
            kind: e.kind.as_str().to_string(),
            active: counters_of(e.active).collect(),
        }
    }
}

impl Timeline {
    pub fn of(pmu: &HostPmu) -> Self {
        let h = pmu.history();
        Timeline {
            host_pmu: pmu.name().to_string(),
            mux_interval_ms: pmu.interval_ms(),
            recorded: h.recorded(),
            entries: h.snapshot().iter().map(TimelineEntry::of).collect(),
        }
    }
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod summary_tests {
    use super::*;
    use vpmu::config::PmuConfig;

    #[test]
    fn summaries_name_the_vendor_interface() {
        let intel = VpmuConfigInfo::of(&PmuConfig::default(), CpuVendor::Intel);
        assert_eq!(intel.summary(), "intel v4 8+3");
        let amd = VpmuConfigInfo::of(&PmuConfig::amd(2, 6), CpuVendor::Amd);
        assert_eq!(amd.summary(), "amd v2 6");
        let off = VpmuConfigInfo::of(&PmuConfig::disabled(), CpuVendor::Amd);
        assert_eq!(off.summary(), "off");
    }
}
