//! Discovery of the host's perf PMUs and of the core PMU's capacity.
//!
//! - `/sys/bus/event_source/devices/*`: every PMU's `type`,
//!   `perf_event_mux_interval_ms`, the `cpus` mask of hybrid core PMUs and
//!   the `caps/*` files.
//! - The core PMU's counters: CPUID leaf 0xA of the host (general-purpose
//!   counters EAX[15:8], fixed counters EDX[4:0] and, from version 5, the
//!   fixed-counter bitmask ECX; EBX bit i set = architectural event i
//!   missing), minus the counter the NMI watchdog holds
//!   (`/proc/sys/kernel/nmi_watchdog` = 1: a pinned cycles event, on fixed
//!   counter 1 where there is one).
//! - Core PMUs are `cpu`, or on hybrid parts the `cpu_*` PMUs that have a
//!   `cpus` file (`cpu_core` first). Their counters are all described by the
//!   same leaf 0xA (leaf 0x23's per-type enumeration is not read).
//! - No core PMU (this project's machines), or an Intel CPUID without an
//!   architectural PMU: a *software* PMU whose cycles and reference cycles
//!   come from the vCPU thread's task clock; every other architectural event
//!   maps to nothing, so the multiplexer reports it unavailable.
//!
//! The result is a [`Profile`] (the description the multiplexer and the
//! statistics consume) plus one [`PmuPlan`] per profile PMU (how the backend
//! opens events there). Everything is computed from a devices directory and
//! a [`CpuInfo`], so fake hosts are unit-testable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::translate::{supports, PmuPlan};
use crate::host::profile::{Profile, ProfileError};
use crate::host::sysfs::{mux_interval_ms_in, EVENT_SOURCE_DEVICES};
use crate::host::EventName;

/// CPU vendor from CPUID leaf 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// The CPUID facts discovery needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: Vendor,
    /// Leaf 0xA: EAX, EBX, ECX, EDX.
    pub leaf_0a: [u32; 4],
    /// AMD: CPUID 0x8000_0001 ECX bit 23 (PerfCtrExtCore: 6 core counters).
    pub amd_perfctr_core: bool,
}

impl CpuInfo {
    /// The host's CPUID.
    // `__cpuid` is safe on recent toolchains and unsafe on the MSRV.
    #[allow(unused_unsafe)]
    pub fn host() -> CpuInfo {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::__cpuid;
            // SAFETY: CPUID exists on every x86_64 CPU; leaf 0 is always
            // valid and the higher leaves are only read when leaf 0 /
            // 0x8000_0000 say they exist.
            let l0 = unsafe { __cpuid(0) };
            let mut vendor_bytes = [0u8; 12];
            vendor_bytes[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
            vendor_bytes[4..8].copy_from_slice(&l0.edx.to_le_bytes());
            vendor_bytes[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
            let vendor = match &vendor_bytes {
                b"GenuineIntel" => Vendor::Intel,
                b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
                _ => Vendor::Other,
            };
            let leaf_0a = if l0.eax >= 0xA {
                // SAFETY: leaf 0xA is within the maximum basic leaf.
                let a = unsafe { __cpuid(0xA) };
                [a.eax, a.ebx, a.ecx, a.edx]
            } else {
                [0; 4]
            };
            // SAFETY: leaf 0x8000_0000 is always valid on x86_64.
            let ext_max = unsafe { __cpuid(0x8000_0000) }.eax;
            let amd_perfctr_core = ext_max >= 0x8000_0001 && {
                // SAFETY: within the maximum extended leaf.
                let e = unsafe { __cpuid(0x8000_0001) };
                e.ecx & (1 << 23) != 0
            };
            CpuInfo {
                vendor,
                leaf_0a,
                amd_perfctr_core,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuInfo {
                vendor: Vendor::Other,
                leaf_0a: [0; 4],
                amd_perfctr_core: false,
            }
        }
    }

    /// An Intel CPU with this leaf 0xA (tests).
    pub fn intel(leaf_0a: [u32; 4]) -> CpuInfo {
        CpuInfo {
            vendor: Vendor::Intel,
            leaf_0a,
            amd_perfctr_core: false,
        }
    }

    /// Architectural PMU version (leaf 0xA EAX[7:0]).
    pub fn pmu_version(&self) -> u8 {
        self.leaf_0a[0] as u8
    }
}

/// One PMU of `/sys/bus/event_source/devices`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysfsPmu {
    pub name: String,
    pub perf_type: u32,
    pub mux_interval_ms: u64,
    /// The `cpus` file (hybrid core PMUs), e.g. `0-15`.
    pub cpus: Option<String>,
    /// `caps/*` files.
    pub caps: BTreeMap<String, String>,
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Every PMU under `devices` that has a numeric `type`, sorted by name.
/// Unreadable entries are skipped.
pub fn scan_sysfs(devices: &Path) -> Vec<SysfsPmu> {
    let Ok(dir) = std::fs::read_dir(devices) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = devices.join(&name);
        let Some(perf_type) = read_trim(&path.join("type")).and_then(|s| s.parse().ok()) else {
            continue;
        };
        let mut caps = BTreeMap::new();
        if let Ok(cdir) = std::fs::read_dir(path.join("caps")) {
            for c in cdir.flatten() {
                if let (Ok(k), Some(v)) = (c.file_name().into_string(), read_trim(&c.path())) {
                    caps.insert(k, v);
                }
            }
        }
        out.push(SysfsPmu {
            mux_interval_ms: mux_interval_ms_in(devices, &name),
            cpus: read_trim(&path.join("cpus")),
            name,
            perf_type,
            caps,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Is the NMI watchdog on (`/proc/sys/kernel/nmi_watchdog` = 1)?
pub fn nmi_watchdog_enabled() -> bool {
    read_trim(Path::new("/proc/sys/kernel/nmi_watchdog")).is_some_and(|s| s == "1")
}

/// Counters of the core PMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreCapacity {
    pub gp: u8,
    /// Fixed counters left to us, by event.
    pub fixed: Vec<EventName>,
    /// Architectural events the host CPUID reports missing.
    pub missing: Vec<EventName>,
}

/// The core PMU's counters from CPUID, minus the NMI watchdog's.
pub fn core_capacity(cpu: &CpuInfo, nmi_watchdog: bool) -> CoreCapacity {
    let [eax, ebx, ecx, edx] = cpu.leaf_0a;
    let (mut gp, mut fixed, mut missing) = match cpu.vendor {
        Vendor::Intel => {
            let version = eax & 0xFF;
            let gp = ((eax >> 8) & 0xFF) as u8;
            let nfixed = if version >= 2 { edx & 0x1F } else { 0 };
            let mut fixed = Vec::new();
            for i in 0..4u8 {
                let present = (i as u32) < nfixed || (version >= 5 && ecx & (1 << i) != 0);
                if let (true, Some(e)) = (present, EventName::of_fixed(i)) {
                    fixed.push(e);
                }
            }
            let len = (eax >> 24) & 0xFF;
            let missing = EventName::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 >= len || ebx & (1 << i) != 0)
                .map(|(_, e)| *e)
                .collect();
            (gp.min(16), fixed, missing)
        }
        // AMD core PMUs: 4 legacy counters, 6 with PerfCtrExtCore; no fixed
        // counters; no topdown slots.
        Vendor::Amd => (
            if cpu.amd_perfctr_core { 6 } else { 4 },
            Vec::new(),
            vec![EventName::TopdownSlots],
        ),
        Vendor::Other => (0, Vec::new(), EventName::ALL.to_vec()),
    };
    // Fixed-counter events the CPU reports missing are still counted by
    // their fixed counters.
    missing.retain(|e| !fixed.contains(e));
    if nmi_watchdog {
        if let Some(i) = fixed.iter().position(|e| *e == EventName::Cycles) {
            fixed.remove(i);
        } else {
            gp = gp.saturating_sub(1);
        }
    }
    CoreCapacity { gp, fixed, missing }
}

/// The host side of `--host-pmu perf`: what discovery found.
#[derive(Clone, Debug)]
pub struct PerfHost {
    pub sysfs: Vec<SysfsPmu>,
    pub cpu: CpuInfo,
    pub nmi_watchdog: bool,
    pub tsc_khz: u64,
    /// The description the multiplexer consumes.
    pub profile: Profile,
    /// Per profile PMU: how the backend opens events there.
    pub plans: Vec<PmuPlan>,
}

fn core_pmus(sysfs: &[SysfsPmu]) -> Vec<&SysfsPmu> {
    if let Some(cpu) = sysfs.iter().find(|p| p.name == "cpu") {
        return vec![cpu];
    }
    let mut v: Vec<&SysfsPmu> = sysfs
        .iter()
        .filter(|p| p.name.starts_with("cpu_") && p.cpus.is_some())
        .collect();
    // cpu_core first: the profile maps events to the first hardware PMU.
    v.sort_by_key(|p| (p.name != "cpu_core", p.name.clone()));
    v
}

impl PerfHost {
    /// Discovers this host's PMUs. `tsc_khz` is the vCPU's TSC frequency
    /// (`KVM_GET_TSC_KHZ`); task-clock nanoseconds become cycles at it.
    pub fn discover(tsc_khz: u32) -> Result<PerfHost, ProfileError> {
        PerfHost::discover_in(
            Path::new(EVENT_SOURCE_DEVICES),
            &CpuInfo::host(),
            nmi_watchdog_enabled(),
            tsc_khz,
        )
    }

    /// Discovery from a devices directory and CPUID facts (tests).
    pub fn discover_in(
        devices: &Path,
        cpu: &CpuInfo,
        nmi_watchdog: bool,
        tsc_khz: u32,
    ) -> Result<PerfHost, ProfileError> {
        let sysfs = scan_sysfs(devices);
        let tsc_khz = u64::from(tsc_khz.max(1));
        let cap = core_capacity(cpu, nmi_watchdog);
        let cores = core_pmus(&sysfs);
        let usable = !cores.is_empty() && (cap.gp > 0 || !cap.fixed.is_empty());
        // Events per ns, used by the multiplexer only to estimate when a
        // sampling counter overflows: cycles at the TSC rate is exact for
        // the task clock and a guess for hardware.
        let ghz = tsc_khz as f64 / 1e6;
        let mut text = String::new();
        let mut plans = Vec::new();
        let _ = writeln!(
            text,
            "name = \"perf\"\ndescription = \"host perf_event PMUs ({})\"",
            if usable {
                "hardware"
            } else {
                "no hardware PMU: cycles from the task clock"
            }
        );
        if usable {
            let hybrid = cores.len() > 1;
            for p in &cores {
                let plan = PmuPlan::Core {
                    name: p.name.clone(),
                    perf_type: p.perf_type,
                    raw: cpu.vendor == Vendor::Intel,
                    hybrid,
                };
                let _ = writeln!(
                    text,
                    "[[pmu]]\nname = \"{}\"\nkind = \"hardware\"\ngp_counters = {}\nmux_interval_ms = {}",
                    p.name,
                    cap.gp,
                    p.mux_interval_ms.clamp(1, 10_000)
                );
                let fixed: Vec<String> = cap.fixed.iter().map(|e| format!("\"{e}\"")).collect();
                let _ = writeln!(text, "fixed_counters = [{}]\n[pmu.rates]", fixed.join(", "));
                for e in EventName::ALL {
                    let on_fixed = cap.fixed.contains(&e);
                    if !supports(&plan, e) || cap.missing.contains(&e) {
                        continue;
                    }
                    if cap.gp == 0 && !on_fixed {
                        continue;
                    }
                    let rate = match e {
                        EventName::Cycles | EventName::RefCycles | EventName::Instructions => ghz,
                        EventName::TopdownSlots => ghz * 4.0,
                        _ => ghz / 10.0,
                    };
                    let _ = writeln!(text, "\"{e}\" = {}", rate.clamp(0.0, 1000.0));
                }
                plans.push(plan);
            }
        } else {
            let interval = sysfs
                .iter()
                .find(|p| p.name == "software")
                .map_or(crate::host::sysfs::DEFAULT_MUX_INTERVAL_MS, |p| {
                    p.mux_interval_ms
                });
            let _ = writeln!(
                text,
                "[[pmu]]\nname = \"software\"\nkind = \"software\"\nmux_interval_ms = {}\n[pmu.rates]",
                interval.clamp(1, 10_000)
            );
            for e in [EventName::Cycles, EventName::RefCycles] {
                let _ = writeln!(text, "\"{e}\" = {}", ghz.clamp(0.0, 1000.0));
            }
            plans.push(PmuPlan::TaskClock);
        }
        let profile = Profile::parse(&text, "perf discovery")?;
        Ok(PerfHost {
            sysfs,
            cpu: *cpu,
            nmi_watchdog,
            tsc_khz,
            profile,
            plans,
        })
    }

    /// No hardware PMU: cycles are emulated from the task clock.
    pub fn software_emulated(&self) -> bool {
        self.plans.contains(&PmuPlan::TaskClock)
    }

    /// The backend of one vCPU. **Call on the vCPU thread**: events attach
    /// to the calling thread and overflow signal `kick_signal` (e.g.
    /// `SIGRTMIN()`) is sent to it. `None`: no overflow signals.
    pub fn backend(&self, kick_signal: Option<i32>) -> super::PerfBackend {
        super::PerfBackend::new(
            self.plans.clone(),
            self.profile.pmus.iter().map(|p| p.name.clone()).collect(),
            self.tsc_khz,
            kick_signal,
            super::sys::gettid(),
        )
    }
}
