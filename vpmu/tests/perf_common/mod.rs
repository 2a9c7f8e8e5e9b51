//! Helpers shared by the perf backend tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vpmu::host::perf::{CpuInfo, Vendor};
use vpmu::source::{CounterConfig, EventCode};

/// A fake `/sys/bus/event_source/devices` in a temporary directory,
/// removed on drop.
pub struct FakeSysfs {
    pub root: PathBuf,
}

impl FakeSysfs {
    pub fn new(tag: &str) -> FakeSysfs {
        let root = std::env::temp_dir().join(format!(
            "vpmu-perf-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        FakeSysfs { root }
    }

    /// Adds a PMU with `type`, a mux interval and optional `cpus`.
    pub fn pmu(&self, name: &str, ty: u32, mux_ms: u64, cpus: Option<&str>) -> &Self {
        let d = self.root.join(name);
        std::fs::create_dir_all(d.join("caps")).unwrap();
        std::fs::write(d.join("type"), format!("{ty}\n")).unwrap();
        std::fs::write(d.join("perf_event_mux_interval_ms"), format!("{mux_ms}\n")).unwrap();
        if let Some(c) = cpus {
            std::fs::write(d.join("cpus"), format!("{c}\n")).unwrap();
        }
        self
    }

    pub fn cap(&self, pmu: &str, key: &str, value: &str) -> &Self {
        std::fs::write(self.root.join(pmu).join("caps").join(key), value).unwrap();
        self
    }

    /// The software-only PMUs every Linux host has (this machine's set).
    pub fn software_pmus(&self) -> &Self {
        self.pmu("software", 1, 4, None)
            .pmu("tracepoint", 2, 4, None)
            .pmu("breakpoint", 5, 4, None)
            .pmu("msr", 9, 4, None)
            .pmu("uprobe", 8, 4, None)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Leaf 0xA of an Intel v5 PMU: `gp` counters of 48 bits, 8 architectural
/// events all present, `fixed` fixed counters (bitmask too).
pub fn leaf_0a(version: u32, gp: u32, fixed: u32, ebx: u32) -> [u32; 4] {
    let eax = version | gp << 8 | 48 << 16 | 8 << 24;
    let ecx = if version >= 5 { (1 << fixed) - 1 } else { 0 };
    let edx = fixed | 48 << 5;
    [eax, ebx, ecx, edx]
}

/// An Intel CPU with this leaf 0xA.
pub fn intel_cpu(leaf_0a: [u32; 4]) -> CpuInfo {
    CpuInfo {
        vendor: Vendor::Intel,
        leaf_0a,
        amd_perfctr_core: false,
    }
}

pub fn intel(gp: u32, fixed: u32) -> CpuInfo {
    intel_cpu(leaf_0a(5, gp, fixed, 0))
}

/// A counting guest configuration.
pub fn config(select: u16, umask: u8) -> CounterConfig {
    CounterConfig::counting(EventCode { select, umask })
}

/// Nanoseconds of CPU time of the calling thread.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Burns CPU on this thread for `ns` of thread CPU time.
pub fn spin_cpu(ns: u64) {
    let start = thread_cpu_ns();
    let mut x = 1u64;
    while thread_cpu_ns() - start < ns {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
