//! The guest perf tool (`perf-demo`): sampling finds the hot function on
//! every host backend, and multiplexed counts agree with unmultiplexed ones.

use std::collections::HashMap;

use vpmu::source::CounterIndex;

use crate::harness::{run_guest, run_guest_with_stats};
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    ("demo::record_finds_the_hot_function_perf_nmi", || {
        record("auto", "nmi")
    }),
    ("demo::record_finds_the_hot_function_perf_vector", || {
        record("auto", "vector")
    }),
    ("demo::record_finds_the_hot_function_sim", || {
        record("sim:intel-4gp-3fixed", "nmi")
    }),
    (
        "demo::multiplexed_stat_agrees_with_unmultiplexed",
        multiplexed_vs_unmultiplexed,
    ),
    ("demo::default_guest_on_an_amd_cpu", default_guest_amd),
    ("demo::record_on_the_amd_pmu_sim_zen4", || {
        record_amd("sim:amd-zen4")
    }),
    ("demo::sampling_rate_1_vcpu_nmi", || sampling_rate(1, "nmi")),
    ("demo::sampling_rate_1_vcpu_vector", || {
        sampling_rate(1, "vector")
    }),
    ("demo::sampling_rate_4_vcpus_nmi", || {
        sampling_rate(4, "nmi")
    }),
    ("demo::sampling_rate_4_vcpus_vector", || {
        sampling_rate(4, "vector")
    }),
];

/// About one millisecond of TSC time, from the host's clock rate (the
/// guest's TSC runs at the host's): the sampling period in cycles.
fn one_ms_of_cycles() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("cpu MHz").and_then(|v| v.split(':').nth(1)))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(2_000_000, |mhz| (mhz * 1000.0) as u64)
}

/// Sampling on the perf backend (cycles from task-clock, overflow signals):
/// a PMI every ~1 ms of guest time for ~200 ms. Every vCPU receives a number
/// of PMIs within 25% of what it counted divided by the period (guest time
/// is the vCPU's: with more vCPUs than host cores it is less than wall
/// time).
fn sampling_rate(vcpus: u8, pmi: &str) -> Result<(), String> {
    let period = one_ms_of_cycles();
    let cmdline = format!(
        "mode=record pmi={pmi} period={period} ticks={}",
        period * 200
    );
    let n = vcpus.to_string();
    let run = run_guest(
        "perf-demo.elf",
        &[
            "--cpu-vendor",
            "intel",
            "--vcpus",
            &n,
            "--cmdline",
            &cmdline,
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let mut seen = 0;
    for line in run.stdout.lines().filter(|l| l.starts_with("# cpu ")) {
        // `# cpu N: S samples, L lost, X spurious; C cycles counted in T TSC ticks`
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit() && c != ',')
            .filter_map(|w| w.replace(',', "").parse().ok())
            .collect();
        let [_, samples, lost, spurious, counted, _ticks] = nums[..] else {
            return Err(format!("unexpected line `{line}`"));
        };
        let expected = counted as f64 / period as f64;
        // A PMI still in flight when recording stops reaches the handler
        // after it stopped recording: at most one per vCPU.
        let got = (samples + lost + spurious) as f64;
        if spurious > 1 || expected < 20.0 || (got - expected).abs() > 0.25 * expected {
            return Err(format!(
                "{pmi}, {vcpus} vCPUs: `{line}`: {got} PMIs, expected {expected:.1}"
            ));
        }
        seen += 1;
    }
    if seen != usize::from(vcpus) {
        return Err(format!("{seen} of {vcpus} vCPUs reported:\n{}", run.stdout));
    }
    Ok(())
}

/// `mode=record`: the first row of the report is `hot_loop` with >= 60%.
fn record(host: &str, pmi: &str) -> Result<(), String> {
    let cmdline = format!("mode=record pmi={pmi}");
    let run = run_guest(
        "perf-demo.elf",
        &[
            "--cpu-vendor",
            "intel",
            "--vcpus",
            "2",
            "--host-pmu",
            host,
            "--cmdline",
            &cmdline,
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let header = run
        .stdout
        .lines()
        .position(|l| l.starts_with("# Overhead"))
        .ok_or("no report")?;
    let first = run
        .stdout
        .lines()
        .skip(header + 1)
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .ok_or("empty report")?;
    let share: f64 = first
        .split_whitespace()
        .next()
        .and_then(|p| p.strip_suffix('%'))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("report row `{first}`"))?;
    if !first.contains("hot_loop") || share < 60.0 {
        return Err(format!("{host} {pmi}: top row `{first}`"));
    }
    Ok(())
}

/// Per (workload, counter): the guest-read value relative to the first GP
/// counter's (cycles). In the simulation every counter's truth is its rate
/// times the same enabled time, so the ratios are exact without
/// multiplexing, and multiplexed counters must scale to the same ratios.
fn ratios(stdout: &str) -> Result<HashMap<(String, String), f64>, String> {
    let mut out = HashMap::new();
    let mut workload = String::new();
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut flush = |workload: &str, rows: &mut Vec<(String, f64)>| -> Result<(), String> {
        if let Some(&(_, cycles)) = rows.iter().find(|(c, _)| c == "pmc0") {
            for (counter, v) in rows.iter().filter(|(c, _)| c.starts_with("pmc")) {
                out.insert((workload.to_string(), counter.clone()), v / cycles);
            }
        } else if !rows.is_empty() {
            return Err(format!("{workload}: no pmc0"));
        }
        rows.clear();
        Ok(())
    };
    for line in stdout.lines() {
        if let Some(rest) = line.trim().strip_prefix("Performance counter stats for '") {
            flush(&workload, &mut rows)?;
            workload = rest.split('\'').next().unwrap_or("").to_string();
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && f[2].starts_with("pmc") {
            if let Ok(v) = f[0].replace(',', "").parse::<f64>() {
                rows.push((f[2].to_string(), v));
            }
        }
    }
    flush(&workload, &mut rows)?;
    Ok(out)
}

/// 8 guest GP counters (no fixed counters) on a simulated host with 4
/// counters (multiplexed) against the 8-GP host (every counter fits): every
/// counter runs 35-65% of the time, and each steady workload's scaled counts
/// per cycle agree within 5%.
fn multiplexed_vs_unmultiplexed() -> Result<(), String> {
    let args = |host: &'static str| {
        [
            "--cpu-vendor",
            "intel",
            "--vcpus",
            "1",
            "--fixed-counters",
            "0",
            "--host-pmu",
            host,
            "--cmdline",
            "mode=stat stat_ticks=1500000000",
            "--timeout",
            "90",
        ]
    };
    let (muxed, stats) = run_guest_with_stats("perf-demo.elf", &args("sim:intel-4gp"))?;
    muxed.expect_status(0)?;
    let plain = run_guest("perf-demo.elf", &args("sim:intel-8gp-4fixed"))?;
    plain.expect_status(0)?;
    let vcpu = stats.first().ok_or("no statistics")?;
    let mut problems = Vec::new();
    for c in vcpu
        .counters
        .iter()
        .filter(|c| matches!(c.counter, CounterIndex::Gp(_)))
    {
        if !(35.0..=65.0).contains(&c.running_pct) {
            problems.push(format!(
                "{:?} {} ran {:.1}%",
                c.counter, c.event, c.running_pct
            ));
        }
    }
    let (m, p) = (ratios(&muxed.stdout)?, ratios(&plain.stdout)?);
    // pmc0 is the reference: 7 ratios per workload.
    if m.len() < 7 {
        return Err(format!(
            "only {} multiplexed counters parsed:\n{}",
            m.len(),
            muxed.stdout
        ));
    }
    for (key, mv) in &m {
        let pv = p
            .get(key)
            .ok_or_else(|| format!("{key:?} missing from the unmultiplexed run"))?;
        let err = (mv - pv).abs() / pv;
        if err > 0.05 {
            problems.push(format!(
                "{key:?}: {mv:.5} vs {pv:.5} per cycle ({:.1}% apart)",
                err * 100.0
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Plain `vmm run` as an AMD host runs it (`--cpu-vendor amd` stands for
/// the host's vendor here): the guest perf tool picks its AMD driver by
/// vendor, counts and samples with PERF_CTRs, and the host side names them
/// `perf_ctrN` (the final statistics; the summary on stderr sums events).
fn default_guest_amd() -> Result<(), String> {
    let json = std::env::temp_dir().join(format!("vmm-amd-default-{}.json", std::process::id()));
    let json_arg = json.to_string_lossy().into_owned();
    let run = crate::harness::vmm(&["run", "--cpu-vendor", "amd", "--stats-json", &json_arg])?;
    let text = std::fs::read_to_string(&json);
    let _ = std::fs::remove_file(&json);
    run.expect_status(0)?;
    for want in [
        "perf-demo: AMD PMU driver: version 2 (PerfMonV2), 6 counters",
        "Performance counter stats for 'branchy' on cpu 1:",
        "# Overhead  Samples  Symbol",
        "perf-demo: PASS",
    ] {
        if !run.stdout.contains(want) {
            return Err(format!("AMD run lacks `{want}`:\n{}", run.stdout));
        }
    }
    if !run
        .stderr
        .contains("Performance counter stats for VM (2 vCPUs")
    {
        return Err(format!("no host-side summary on stderr:\n{}", run.stderr));
    }
    let file: vmm::stats_cmd::StatsFile =
        serde_json::from_str(&text.map_err(|e| format!("stats file: {e}"))?)
            .map_err(|e| format!("stats JSON: {e}"))?;
    let names: Vec<String> = file
        .snapshot
        .vcpus
        .iter()
        .filter_map(|v| v.stats.as_ref())
        .flat_map(|s| s.counters.iter().map(|c| c.name.clone()))
        .collect();
    if !names.iter().any(|n| n == "perf_ctr0") || names.iter().any(|n| n.starts_with("gp")) {
        return Err(format!("AMD counters named {names:?}, want perf_ctrN"));
    }
    Ok(())
}

/// `mode=record` with the AMD driver on a simulated AMD host: the hot
/// function tops the profile.
fn record_amd(host: &str) -> Result<(), String> {
    let run = run_guest(
        "perf-demo.elf",
        &[
            "--cpu-vendor",
            "amd",
            "--vcpus",
            "2",
            "--host-pmu",
            host,
            "--cmdline",
            "mode=record pmi=nmi",
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let top = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("# ........"))
        .nth(1)
        .unwrap_or("");
    if !run.stdout.contains("AMD PMU driver") || !top.contains("hot_loop") {
        return Err(format!("top row `{top}`:\n{}", run.stdout));
    }
    Ok(())
}
