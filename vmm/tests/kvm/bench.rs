//! The exit-path benchmark guest (`exit-bench`, driven by `scripts/bench`)
//! runs once in its short mode on both host backends and both vendors'
//! PMUs, so it cannot rot. The checks are on the output's shape (every
//! variant once, finite positive figures, the sampling run took PMIs),
//! never on time.

use crate::harness::run_guest;
use crate::KvmTest;

pub const TESTS: &[(&str, KvmTest)] = &[
    ("bench::exit_bench_short_is_well_formed_perf_intel", || {
        well_formed("auto", "intel")
    }),
    ("bench::exit_bench_short_is_well_formed_perf_amd", || {
        well_formed("auto", "amd")
    }),
    ("bench::exit_bench_short_is_well_formed_sim_intel", || {
        well_formed("sim:intel-4gp-3fixed", "intel")
    }),
    ("bench::exit_bench_short_is_well_formed_sim_amd", || {
        well_formed("sim:intel-4gp-3fixed", "amd")
    }),
    ("bench::exit_bench_short_is_well_formed_vpmu_off", vpmu_off),
];

/// The access variants of each PMU, in the order the guest prints them.
const INTEL: &[&str] = &[
    "null_exit",
    "cpuid",
    "rdmsr_evtsel",
    "wrmsr_evtsel_same",
    "rdmsr_global_status",
    "rdmsr_running_counter",
    "wrmsr_global_ctrl_toggle_4",
    "wrmsr_global_ctrl_toggle_8",
    "pmi_handler_sequence",
];
const AMD: &[&str] = &[
    "null_exit",
    "cpuid",
    "rdmsr_evtsel",
    "wrmsr_evtsel_same",
    "rdmsr_global_status",
    "rdmsr_running_counter",
    "wrmsr_global_ctrl_toggle_4",
    "wrmsr_global_ctrl_toggle_6",
    "pmi_handler_sequence",
];
const LOOP: &[&str] = &["loop_idle", "loop_all_counting", "loop_sampling"];

/// One `bench <variant> key=value...` line.
struct Line<'a> {
    variant: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl Line<'_> {
    fn get(&self, key: &str) -> Result<&str, String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("{}: no {key}=", self.variant))
    }

    /// `key=` as a finite number greater than zero.
    fn positive(&self, key: &str) -> Result<f64, String> {
        let raw = self.get(key)?;
        let v: f64 = raw
            .parse()
            .map_err(|e| format!("{}: {key}={raw}: {e}", self.variant))?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(format!(
                "{}: {key}={raw} is not finite and positive",
                self.variant
            ))
        }
    }
}

fn parse(stdout: &str) -> Vec<Line<'_>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("bench "))
        .filter_map(|l| {
            let mut words = l.split_ascii_whitespace();
            let variant = words.next()?;
            let fields = words.filter_map(|w| w.split_once('=')).collect();
            Some(Line { variant, fields })
        })
        .collect()
}

/// Runs the short mode and checks that exactly `want` variants appear, in
/// that order, each with finite positive figures.
fn check(extra: &[&str], want: &[&str], sampling: bool) -> Result<(), String> {
    let mut args = vec!["--vcpus", "1", "--cmdline", "short", "--timeout", "100"];
    args.extend_from_slice(extra);
    let run = run_guest("exit-bench.elf", &args)?;
    run.expect_status(0)?;
    let context = |e: String| format!("{e}\n--- stdout\n{}", run.stdout);
    if !run.stdout.lines().any(|l| l == "exit-bench done") {
        return Err(context("no `exit-bench done` line".into()));
    }
    let lines = parse(&run.stdout);
    let got: Vec<&str> = lines.iter().map(|l| l.variant).collect();
    if got != want {
        return Err(context(format!("variants {got:?}, want {want:?}")));
    }
    for line in &lines {
        line.positive("ratio").map_err(context)?;
        if line.variant.starts_with("loop_") {
            line.positive("ticks_per_unit").map_err(context)?;
        } else {
            line.positive("ticks_per_access").map_err(context)?;
            let lo = line.positive("ratio_min").map_err(context)?;
            let mid = line.positive("ratio").map_err(context)?;
            let hi = line.positive("ratio_max").map_err(context)?;
            if !(lo <= mid && mid <= hi) {
                return Err(context(format!(
                    "{}: ratio {mid} outside its range {lo}..{hi}",
                    line.variant
                )));
            }
            let reps = line.positive("reps").map_err(context)?;
            if reps < 7.0 {
                return Err(context(format!("{}: {reps} repetitions", line.variant)));
            }
        }
    }
    // The null exit is its own reference in every repetition.
    let null = lines.first().ok_or_else(|| context("no variants".into()))?;
    if null.get("ratio").map_err(context)? != "1.000" {
        return Err(context("null_exit: ratio is not 1.000".into()));
    }
    if sampling {
        let line = lines
            .iter()
            .find(|l| l.variant == "loop_sampling")
            .ok_or_else(|| context("no loop_sampling".into()))?;
        line.positive("pmis")
            .map_err(|e| context(format!("the sampling run took no PMI: {e}")))?;
    }
    Ok(())
}

fn well_formed(host: &str, vendor: &str) -> Result<(), String> {
    let access = if vendor == "amd" { AMD } else { INTEL };
    let want: Vec<&str> = access.iter().chain(LOOP).copied().collect();
    check(&["--host-pmu", host, "--cpu-vendor", vendor], &want, true)
}

/// Without a vPMU the guest measures only what needs no PMU.
fn vpmu_off() -> Result<(), String> {
    check(
        &["--vpmu", "off"],
        &["null_exit", "cpuid", "loop_idle"],
        false,
    )
}
