//! The multiplexer on real KVM: 8 guest GP counters on a simulated host PMU
//! with 4, rotated per the perf core; the guest's scaled reads against the
//! simulated truth.

use vpmu::host::profile::Profile;
use vpmu::host::EventName;
use vpmu::source::CounterIndex;
use vpmu::stats::VcpuStats;

use crate::harness::run_guest;
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    ("mux::counters_that_fit_never_rotate", all_fit),
    (
        "mux::phase_changing_workload_scales_within_5_percent_of_truth",
        phase_change,
    ),
    (
        "mux::eight_counters_on_four_gp_share_fairly_and_scale_to_truth",
        eight_on_four,
    ),
];

/// A workload that changes phase every 5 rotation intervals (20 ms at the
/// profile's rates, 20 ms at 3x): the scaled values, guest-read and in the
/// host statistics, stay within 5% of the simulated truth over each
/// counter's enabled time.
fn phase_change() -> Result<(), String> {
    let json = std::env::temp_dir().join(format!("vmm-phases-{}.json", std::process::id()));
    let json_arg = json.to_string_lossy().into_owned();
    let host = format!("sim:{PROFILE}");
    let run = run_guest(
        "mux-steady.elf",
        &[
            "--host-pmu",
            &host,
            "--sim-phases",
            "20:1,20:3",
            "--stats-json",
            &json_arg,
            "--cmdline",
            "gp=8 ticks=4000000000",
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let text = std::fs::read_to_string(&json).map_err(|e| format!("stats file: {e}"))?;
    let _ = std::fs::remove_file(&json);
    let stats: Vec<VcpuStats> =
        serde_json::from_str(&text).map_err(|e| format!("stats JSON: {e}"))?;
    let vcpu = stats.first().ok_or("no vCPU statistics")?;
    let mut problems = Vec::new();
    for i in 0..8u8 {
        let c = vcpu
            .counters
            .iter()
            .find(|c| c.counter == CounterIndex::Gp(i))
            .ok_or_else(|| format!("no statistics for GP{i}"))?;
        let truth = c
            .simulated_truth
            .ok_or_else(|| format!("GP{i}: no simulated truth"))? as f64;
        let prefix = format!("pmc{i} ");
        let read: f64 = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("guest did not print pmc{i}"))?;
        for (who, value) in [("guest read", read), ("host stats scaled", c.scaled as f64)] {
            let err = (value - truth).abs() / truth;
            if err > 0.05 {
                problems.push(format!(
                    "GP{i} ({}): {who} {value}, truth {truth:.0}: {:.2}% off",
                    c.event,
                    err * 100.0
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// 4 guest counters on 4 host GP counters: everything fits, so no PMU
/// needs rotation, no rotation timer is armed and every counter runs all
/// the time.
fn all_fit() -> Result<(), String> {
    let json = std::env::temp_dir().join(format!("vmm-fit-{}.json", std::process::id()));
    let json_arg = json.to_string_lossy().into_owned();
    let host = format!("sim:{PROFILE}");
    let run = run_guest(
        "mux-steady.elf",
        &[
            "--host-pmu",
            &host,
            "--stats-json",
            &json_arg,
            "--cmdline",
            "gp=4 ticks=2000000000",
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let text = std::fs::read_to_string(&json).map_err(|e| format!("stats file: {e}"))?;
    let _ = std::fs::remove_file(&json);
    let stats: Vec<VcpuStats> =
        serde_json::from_str(&text).map_err(|e| format!("stats JSON: {e}"))?;
    let vcpu = stats.first().ok_or("no vCPU statistics")?;
    let rotations: u64 = vcpu.pmus.iter().map(|p| p.rotations).sum();
    let partial: Vec<f64> = vcpu
        .counters
        .iter()
        .map(|c| c.running_pct)
        .filter(|&p| p < 100.0)
        .collect();
    if rotations != 0 || vcpu.counters.len() != 4 || !partial.is_empty() {
        return Err(format!(
            "{rotations} rotations, {} counters, partly running: {partial:?}",
            vcpu.counters.len()
        ));
    }
    Ok(())
}

const PROFILE: &str = "intel-4gp-3fixed";

fn eight_on_four() -> Result<(), String> {
    let json = std::env::temp_dir().join(format!("vmm-mux-{}.json", std::process::id()));
    let json_arg = json.to_string_lossy().into_owned();
    let host = format!("sim:{PROFILE}");
    let run = run_guest(
        "mux-steady.elf",
        &[
            "--vcpus",
            "1",
            "--host-pmu",
            &host,
            "--stats-json",
            &json_arg,
            "--cmdline",
            // Long enough for 100+ rotations even on a loaded host.
            "gp=8 ticks=4000000000",
            "--timeout",
            "60",
        ],
    )?;
    run.expect_status(0)?;
    let text = std::fs::read_to_string(&json).map_err(|e| format!("stats file: {e}"))?;
    let _ = std::fs::remove_file(&json);
    let stats: Vec<VcpuStats> =
        serde_json::from_str(&text).map_err(|e| format!("stats JSON: {e}"))?;
    let vcpu = stats.first().ok_or("no vCPU statistics")?;
    let profile = Profile::builtin(PROFILE).map_err(|e| e.to_string())?;
    let cpu = profile
        .pmus
        .iter()
        .find(|p| p.name == "cpu")
        .ok_or("profile has no cpu PMU")?;

    let rotations = vcpu
        .pmus
        .iter()
        .find(|p| p.name == "cpu")
        .map_or(0, |p| p.rotations);
    if rotations < 100 {
        return Err(format!("only {rotations} rotations"));
    }
    let mut problems = Vec::new();
    for i in 0..8u8 {
        let c = vcpu
            .counters
            .iter()
            .find(|c| c.counter == CounterIndex::Gp(i))
            .ok_or_else(|| format!("no statistics for GP{i}"))?;
        if !(35.0..=65.0).contains(&c.running_pct) {
            problems.push(format!(
                "GP{i} ({}) ran {:.1}% of the time",
                c.event, c.running_pct
            ));
        }
        let name = EventName::ALL
            .into_iter()
            .find(|e| e.as_str() == c.event)
            .ok_or("unknown event")?;
        let rate = cpu
            .rate(name)
            .ok_or_else(|| format!("no rate for {}", c.event))?;
        let truth = rate * c.enabled_ns as f64;
        // What the guest read (scaled to its enabled time).
        let prefix = format!("pmc{i} ");
        let read: f64 = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("guest did not print pmc{i}"))?;
        for (who, value) in [("guest read", read), ("host stats scaled", c.scaled as f64)] {
            let err = (value - truth).abs() / truth;
            if err > 0.02 {
                problems.push(format!(
                    "GP{i} ({}): {who} {value}, truth {truth:.0}: {:.2}% off",
                    c.event,
                    err * 100.0
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
