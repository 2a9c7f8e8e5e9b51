//! The statistics API's view of a running VM: published snapshots only.
//! Nothing here issues a vCPU ioctl or waits on a vCPU thread.

use std::sync::Arc;
use std::time::Instant;

use vpmu::stats::VcpuStats;

use crate::api::{self, model, ApiError, StatsSource};
use crate::shared::VmShared;

/// A running VM as the API sees it.
pub struct VmSource {
    shared: Arc<VmShared>,
    config: model::VmConfigInfo,
    started: Instant,
}

impl VmSource {
    pub fn new(shared: Arc<VmShared>, config: model::VmConfigInfo) -> Self {
        VmSource {
            shared,
            config,
            started: Instant::now(),
        }
    }

    fn stats(&self) -> Vec<VcpuStats> {
        self.shared
            .vcpus
            .iter()
            .filter_map(|v| v.counters())
            .collect()
    }
}

impl StatsSource for VmSource {
    fn vm(&self) -> model::VmInfo {
        model::VmInfo {
            config: self.config.clone(),
            state: if self.shared.stopping() {
                "stopping"
            } else {
                "running"
            }
            .into(),
            uptime_ms: self.started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }

    fn vcpu_ids(&self) -> Vec<u32> {
        self.shared.vcpus.iter().map(|v| u32::from(v.id)).collect()
    }

    fn vcpu_pmu(&self, id: u32) -> Option<model::VcpuPmu> {
        let view = self.shared.vcpus.get(usize::try_from(id).ok()?)?;
        Some(model::VcpuPmu {
            id,
            guest: view.guest_pmu(),
            stats: view.counters(),
        })
    }

    fn host_pmus(&self) -> Vec<model::HostPmuInfo> {
        let stats = self.stats();
        self.shared
            .host
            .pmus
            .iter()
            .map(|p| model::HostPmuInfo::of(p, &stats))
            .collect()
    }

    fn set_mux_interval_ms(&self, pmu: &str, ms: u64) -> Result<model::HostPmuInfo, ApiError> {
        api::set_interval(&self.shared.host.pmus, pmu, ms, &self.stats())
    }

    fn timeline(&self, pmu: &str) -> Option<model::Timeline> {
        self.shared
            .host
            .pmus
            .iter()
            .find(|p| p.name() == pmu)
            .map(|p| model::Timeline::of(p))
    }

    fn exits(&self) -> model::Exits {
        crate::exits::exits_of(self.shared.exits.iter().map(|r| &**r))
    }
}
