//! Settings of perf-backed host PMUs read from sysfs.

use std::path::Path;

/// Where the kernel lists perf PMUs.
pub const EVENT_SOURCE_DEVICES: &str = "/sys/bus/event_source/devices";

/// Rotation interval used when sysfs has no value (the kernel's default,
/// `PERF_CPU_HRTIMER`, is 4 ms on HZ=250 kernels).
pub const DEFAULT_MUX_INTERVAL_MS: u64 = 4;

/// The perf multiplexing interval of host PMU `pmu`, from
/// `/sys/bus/event_source/devices/<pmu>/perf_event_mux_interval_ms`, or
/// [`DEFAULT_MUX_INTERVAL_MS`] when the file is missing or unreadable.
pub fn mux_interval_ms(pmu: &str) -> u64 {
    mux_interval_ms_in(Path::new(EVENT_SOURCE_DEVICES), pmu)
}

/// [`mux_interval_ms`] with another devices directory (tests).
pub fn mux_interval_ms_in(devices: &Path, pmu: &str) -> u64 {
    if pmu.is_empty() || pmu.contains('/') || pmu.contains("..") {
        return DEFAULT_MUX_INTERVAL_MS;
    }
    let path = devices.join(pmu).join("perf_event_mux_interval_ms");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_MUX_INTERVAL_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_value_or_falls_back() {
        let dir = std::env::temp_dir().join(format!("vpmu-sysfs-{}", std::process::id()));
        let pmu = dir.join("cpu");
        std::fs::create_dir_all(&pmu).unwrap();
        std::fs::write(pmu.join("perf_event_mux_interval_ms"), "16\n").unwrap();
        assert_eq!(mux_interval_ms_in(&dir, "cpu"), 16);
        assert_eq!(mux_interval_ms_in(&dir, "nope"), DEFAULT_MUX_INTERVAL_MS);
        assert_eq!(mux_interval_ms_in(&dir, "../x"), DEFAULT_MUX_INTERVAL_MS);
        std::fs::write(pmu.join("perf_event_mux_interval_ms"), "0").unwrap();
        assert_eq!(mux_interval_ms_in(&dir, "cpu"), DEFAULT_MUX_INTERVAL_MS);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
