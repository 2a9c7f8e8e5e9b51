//! A [`StatsSource`] over real vPMU pieces driven without KVM: a simulated
//! host PMU with fewer counters than the guest programs, so the multiplexer
//! rotates and the rotation history fills.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm::api::model::{
    Exits, HostPmuInfo, Timeline, VcpuPmu, VmConfigInfo, VmInfo, VpmuConfigInfo,
};
use vmm::api::{ApiError, StatsSource};
use vmm::exits::{exits_of, ExitRecorder};
use vpmu::config::PmuConfig;
use vpmu::core::HostPmu;
use vpmu::guest::GuestPmu;
use vpmu::host::assembly::HostAssembly;
use vpmu::host::profile::Profile;
use vpmu::stats::VcpuStats;

pub const MS: u64 = 1_000_000;

pub struct FakeSource {
    started: Instant,
    pub profile: String,
    pub pmus: Vec<Arc<HostPmu>>,
    vcpus: Vec<Mutex<VcpuPmu>>,
    pub exits: Vec<ExitRecorder>,
    cfg: PmuConfig,
}

fn evtsel(event: u8, umask: u8) -> u64 {
    // EN | OS | USR
    (1 << 22) | (1 << 17) | (1 << 16) | (u64::from(umask) << 8) | u64::from(event)
}

impl FakeSource {
    /// `vcpus` vCPUs on `profile`, each programming 7 GP counters (one of
    /// them an event the profile cannot count) and 3 fixed counters, run
    /// through `slices` rotation intervals.
    pub fn new(profile: &str, vcpus: u32, slices: u32) -> Arc<FakeSource> {
        let p = Profile::builtin(profile).expect("profile");
        let host = HostAssembly::sim(Arc::new(p));
        let pmus = host.pmus().to_vec();
        let cfg = PmuConfig::default();
        let events = [
            (0x3C, 0x00),
            (0xC0, 0x00),
            (0x2E, 0x4F),
            (0x2E, 0x41),
            (0xC4, 0x00),
            (0xC5, 0x00),
            (0xA4, 0x01), // topdown slots: not on every profile
        ];
        let mut out = Vec::new();
        let mut exits = Vec::new();
        for v in 0..vcpus {
            let mut guest = GuestPmu::new(cfg);
            let mut c = host.vcpu_counters(v, None);
            let rec = ExitRecorder::new(v);
            for (i, (e, u)) in events.iter().enumerate() {
                let msr = 0x186 + i as u32;
                let _ = guest.wrmsr(msr, evtsel(*e, *u), &mut c);
                rec.record_msr(msr, true, false, 900 + 100 * i as u64);
            }
            let _ = guest.wrmsr(0x38D, 0x333, &mut c);
            let _ = guest.wrmsr(0x38F, (0x7 << 32) | 0x7F, &mut c);
            rec.record_msr(0x38D, true, false, 1500);
            rec.record_msr(0x38F, true, false, 2500);
            let _ = guest
                .rdmsr(0x123, &mut c)
                .map_err(|_| rec.record_msr(0x123, false, true, 700));
            let mut now = 0;
            c.sched_in_pending(now);
            for _ in 0..slices {
                now = c.next_rotation_deadline().unwrap_or(now + 4 * MS) + u64::from(v) * 1000;
                c.advance(now);
                c.tick(now);
                c.sched_in_pending(now);
                guest.sync(&mut c);
                let _ = guest.rdmsr(0xC1, &mut c);
                rec.record_msr(0xC1, false, false, 800);
            }
            rec.record_pmi(true);
            out.push(Mutex::new(VcpuPmu {
                id: v,
                guest: Some(guest.snapshot()),
                stats: Some(c.snapshot()),
            }));
            exits.push(rec);
        }
        Arc::new(FakeSource {
            started: Instant::now(),
            profile: profile.to_string(),
            pmus,
            vcpus: out,
            exits,
            cfg,
        })
    }

    fn stats(&self) -> Vec<VcpuStats> {
        self.vcpus
            .iter()
            .filter_map(|v| v.lock().ok().and_then(|v| v.stats.clone()))
            .collect()
    }
}

impl StatsSource for FakeSource {
    fn vm(&self) -> VmInfo {
        VmInfo {
            config: VmConfigInfo {
                vcpus: self.vcpus.len() as u32,
                memory_mib: 256,
                vpmu: VpmuConfigInfo::of(&self.cfg, vmm::cpuid::CpuVendor::Intel),
                host_pmu: format!("sim:{}", self.profile),
                scaling: "scaled".into(),
                grouping: "per-counter".into(),
            },
            state: "running".into(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
    fn vcpu_ids(&self) -> Vec<u32> {
        (0..self.vcpus.len() as u32).collect()
    }
    fn vcpu_pmu(&self, id: u32) -> Option<VcpuPmu> {
        self.vcpus.get(id as usize)?.lock().ok().map(|v| v.clone())
    }
    fn host_pmus(&self) -> Vec<HostPmuInfo> {
        let stats = self.stats();
        self.pmus
            .iter()
            .map(|p| HostPmuInfo::of(p, &stats))
            .collect()
    }
    fn set_mux_interval_ms(&self, pmu: &str, ms: u64) -> Result<HostPmuInfo, ApiError> {
        vmm::api::set_interval(&self.pmus, pmu, ms, &self.stats())
    }
    fn timeline(&self, pmu: &str) -> Option<Timeline> {
        self.pmus
            .iter()
            .find(|p| p.name() == pmu)
            .map(|p| Timeline::of(p))
    }
    fn exits(&self) -> Exits {
        exits_of(&self.exits)
    }
}
