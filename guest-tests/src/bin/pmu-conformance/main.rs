//! `pmu-conformance`: TAP conformance suite of the guest-visible Intel
//! architectural PMU (CPUID.0AH, PMU MSR rules, counting, overflow, PMIs),
//! and of the AMD64 PMU (`amd.rs`) on an AuthenticAMD guest with `arch=amd`
//! or PerfCtrCore.
//!
//! Adapts to the PMU CPUID enumerates (version 1..5, 1..8 GP counters, 0..4
//! fixed counters, full-width writes on/off, vPMU off), so one binary passes
//! for every configuration. With `vpmu=`, `version=`, `gp=`, `fixed=`, `fw=`
//! on the command line it also checks that the enumeration matches them.
//! Counters are read with RDMSR only (RDPMC never reaches the VMM).
//!
//! Per-CPU checks run on every vCPU and are reported once, aggregated
//! (`[N cpus]`); timing-sensitive ones (counting, PMIs) run on one vCPU at a
//! time so busy loops measure an uncontended vCPU thread.
#![no_std]
#![no_main]

mod agg;
mod amd;
mod counting;
mod cpuid;
mod msr_rules;
mod nopmu;
mod pmi;
mod pmu;

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use guest_tests::{println, smp, Tap};
use pmu::Config;

guest_tests::entry!(main);

static TARGET: AtomicU32 = AtomicU32::new(0);
static JOB: AtomicUsize = AtomicUsize::new(0);

fn one_cpu(cpu: u32) {
    if cpu == TARGET.load(Ordering::SeqCst) {
        // SAFETY: JOB holds a `fn(u32)` stored by `run_each` before the job
        // was started.
        let f = unsafe { core::mem::transmute::<usize, fn(u32)>(JOB.load(Ordering::SeqCst)) };
        f(cpu);
    }
}

/// Run `f` on every online CPU, one CPU at a time (the others halted).
fn run_each(f: fn(u32)) {
    f(smp::this_cpu());
    for cpu in 1..smp::online_cpus() {
        TARGET.store(cpu, Ordering::SeqCst);
        JOB.store(f as usize, Ordering::SeqCst);
        smp::start_aps(one_cpu);
        smp::wait_aps();
    }
}

fn main() -> ! {
    let tap = Tap::new();
    if amd::selected() {
        amd::run(&tap, run_each);
    }
    let cfg = Config::read();
    cfg.publish();
    let cpus = smp::boot_aps();
    println!(
        "# pmu-conformance: {} cpus, vPMU {}, version {}, {} GP, {} fixed, full-width writes {}",
        cpus,
        if cfg.pmu() { "on" } else { "off" },
        cfg.version,
        cfg.n_gp,
        cfg.n_fixed,
        cfg.fw
    );
    cpuid::run(&tap, &cfg);
    smp::run_on_all(cpuid::per_cpu);
    agg::flush(&tap);
    tap.diag("AMD PMU MSRs");
    smp::run_on_all(|_| amd::check_all_gp("AMD PMU MSR on an Intel-PMU guest"));
    agg::flush(&tap);
    if !cfg.pmu() {
        smp::run_on_all(nopmu::per_cpu);
        agg::flush(&tap);
        tap.finish();
    }
    tap.diag("MSR rules");
    smp::run_on_all(msr_rules::per_cpu);
    agg::flush(&tap);
    tap.diag("counting");
    run_each(counting::per_cpu);
    agg::flush(&tap);
    tap.diag("overflow and PMIs");
    pmi::install(&cfg);
    run_each(pmi::per_cpu);
    agg::flush(&tap);
    tap.finish()
}
