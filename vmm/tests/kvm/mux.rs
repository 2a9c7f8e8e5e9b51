//! The multiplexer on real KVM: guest GP counters on a simulated host PMU
//! with 4, rotated per the perf core; scaled values against the simulated
//! truth.

use vpmu::host::profile::Profile;
use vpmu::host::EventName;
use vpmu::source::CounterIndex;
use vpmu::stats::{CounterStats, VcpuStats};

use crate::harness::{run_guest_with_stats, Run};
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    (
        "mux::eight_counters_on_four_gp_share_fairly_and_scale_to_truth",
        eight_on_four,
    ),
    (
        "mux::phase_changing_workload_scales_within_5_percent_of_truth",
        phase_change,
    ),
    ("mux::counters_that_fit_never_rotate", all_fit),
    (
        "mux::amd_six_counters_on_four_share_fairly_and_scale_to_truth",
        amd_six_on_four,
    ),
];

const PROFILE: &str = "intel-4gp-3fixed";

/// TSC ticks `mux-steady` spins by default: 100+ rotations unless the host
/// gives the vCPU thread less than a quarter of a CPU.
const TICKS: u64 = 4_000_000_000;

/// `mux-steady` with `gp` GP-only counters on the simulated 4-GP host,
/// spinning `ticks` TSC ticks: the run and vCPU 0's final statistics.
fn run_mux(gp: u8, ticks: u64, extra: &[&str]) -> Result<(Run, VcpuStats), String> {
    run_mux_on(Guest::INTEL, PROFILE, gp, ticks, extra)
}

/// The guest's vendor, PMU and how it prints counter `i`.
struct Guest {
    vendor: &'static str,
    cmdline: &'static str,
    label: &'static str,
}

impl Guest {
    const INTEL: Guest = Guest {
        vendor: "intel",
        cmdline: "",
        label: "pmc",
    };
    const AMD: Guest = Guest {
        vendor: "amd",
        cmdline: "arch=amd ",
        label: "PERF_CTR",
    };
}

/// `mux-steady` as `guest` with `gp` counters on simulated host `profile`.
fn run_mux_on(
    guest: Guest,
    profile: &str,
    gp: u8,
    ticks: u64,
    extra: &[&str],
) -> Result<(Run, VcpuStats), String> {
    let host = format!("sim:{profile}");
    let cmdline = format!("{}gp={gp} ticks={ticks}", guest.cmdline);
    let mut args = vec![
        "--cpu-vendor",
        guest.vendor,
        "--host-pmu",
        host.as_str(),
        "--cmdline",
        cmdline.as_str(),
        "--timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    let (run, stats) = run_guest_with_stats("mux-steady.elf", &args)?;
    run.expect_status(0)?;
    let vcpu = stats.into_iter().next().ok_or("no vCPU statistics")?;
    Ok((run, vcpu))
}

fn gp(vcpu: &VcpuStats, i: u8) -> Result<&CounterStats, String> {
    vcpu.counters
        .iter()
        .find(|c| c.counter == CounterIndex::Gp(i))
        .ok_or_else(|| format!("no statistics for GP{i}"))
}

/// The value the guest printed for counter `i` (`pmc<i>` or `PERF_CTR<i>`,
/// a scaled read).
fn guest_read(run: &Run, label: &str, i: u8) -> Result<f64, String> {
    let prefix = format!("{label}{i} ");
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("guest did not print {label}{i}"))
}

/// Every GP counter's guest-read and host-scaled value within `bound` of
/// `truth(counter)`; the problems found.
fn against_truth(
    run: &Run,
    label: &str,
    vcpu: &VcpuStats,
    bound: f64,
    truth: impl Fn(&CounterStats) -> Result<f64, String>,
) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    for c in &vcpu.counters {
        let CounterIndex::Gp(i) = c.counter else {
            continue;
        };
        let truth = truth(c)?;
        for (who, value) in [
            ("guest read", guest_read(run, label, i)?),
            ("host stats scaled", c.scaled as f64),
        ] {
            let err = (value - truth).abs() / truth;
            if err > bound {
                problems.push(format!(
                    "{} ({}): {who} {value}, truth {truth:.0}: {:.2}% off",
                    c.name,
                    c.event,
                    err * 100.0
                ));
            }
        }
    }
    Ok(problems)
}

fn verdict(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// 8 counters on 4: each runs about half the time over 100+ rotations, and
/// scales to within 2% of the truth, computed independently from the
/// profile's rate and the counter's enabled time.
fn eight_on_four() -> Result<(), String> {
    // Rotation runs on the vCPU's run time: a 1 ms interval keeps 100+
    // rotations even when a loaded host gives the vCPU a quarter of a CPU.
    let (run, vcpu) = run_mux(8, TICKS, &["--mux-interval-ms", "cpu=1"])?;
    let rotations = vcpu
        .pmus
        .iter()
        .find(|p| p.name == "cpu")
        .map_or(0, |p| p.rotations);
    let profile = Profile::builtin(PROFILE).map_err(|e| e.to_string())?;
    let cpu = profile
        .pmus
        .iter()
        .find(|p| p.name == "cpu")
        .ok_or("profile has no cpu PMU")?;
    if rotations < 100 {
        return Err(format!("only {rotations} rotations"));
    }
    let mut problems: Vec<String> = (0..8u8)
        .filter_map(|i| gp(&vcpu, i).ok())
        .filter(|c| !(35.0..=65.0).contains(&c.running_pct))
        .map(|c| {
            format!(
                "{:?} ({}) ran {:.1}% of the time",
                c.counter, c.event, c.running_pct
            )
        })
        .collect();
    problems.extend(against_truth(&run, Guest::INTEL.label, &vcpu, 0.02, |c| {
        let name = EventName::ALL
            .into_iter()
            .find(|e| e.as_str() == c.event)
            .ok_or("unknown event")?;
        let rate = cpu
            .rate(name)
            .ok_or_else(|| format!("no rate for {}", c.event))?;
        Ok(rate * c.enabled_ns as f64)
    })?);
    verdict(problems)
}

/// A workload that changes phase every 5 rotation intervals (20 ms at the
/// profile's rates, 20 ms at 3x): scaled values stay within 5% of the
/// simulated truth over each counter's enabled time.
fn phase_change() -> Result<(), String> {
    let (run, vcpu) = run_mux(8, TICKS, &["--sim-phases", "20:1,20:3"])?;
    verdict(against_truth(&run, Guest::INTEL.label, &vcpu, 0.05, |c| {
        c.simulated_truth
            .map(|t| t as f64)
            .ok_or_else(|| format!("{:?}: no simulated truth", c.counter))
    })?)
}

/// 4 counters on 4 host GP counters: everything fits, so no PMU needs
/// rotation, no rotation timer is armed and every counter runs all the time.
fn all_fit() -> Result<(), String> {
    let (_, vcpu) = run_mux(4, TICKS, &[])?;
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

/// 6 AMD PERF_CTRs on the 4-counter `amd-4gp` profile: each runs about two
/// thirds of the time, and the guest's reads and the host's scaled values
/// stay within 2% of the simulated truth.
fn amd_six_on_four() -> Result<(), String> {
    let (run, vcpu) = run_mux_on(
        Guest::AMD,
        "amd-4gp",
        6,
        TICKS,
        &["--mux-interval-ms", "cpu=1"],
    )?;
    if vcpu.counters.len() != 6
        || vcpu
            .counters
            .iter()
            .any(|c| !c.name.starts_with("perf_ctr"))
    {
        return Err(format!("expected perf_ctr0..5, got {:?}", vcpu.counters));
    }
    let mut problems: Vec<String> = vcpu
        .counters
        .iter()
        .filter(|c| !(57.0..=77.0).contains(&c.running_pct))
        .map(|c| {
            format!(
                "{} ({}) ran {:.1}% of the time",
                c.name, c.event, c.running_pct
            )
        })
        .collect();
    problems.extend(against_truth(&run, Guest::AMD.label, &vcpu, 0.02, |c| {
        c.simulated_truth
            .map(|t| t as f64)
            .ok_or_else(|| format!("{}: no simulated truth", c.name))
    })?);
    verdict(problems)
}
