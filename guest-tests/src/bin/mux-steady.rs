//! Programs `gp=N` general-purpose counters (default 8; at most 6 with
//! `arch=amd`) with events, spins for `ticks=T` TSC ticks with a steady
//! workload, then prints every counter: the multiplexing test reads the
//! host-side statistics. `arch=amd` programs the AMD core counters
//! (PERF_CTL/PERF_CTR, PerfCntrGlobalCtl with PerfMonV2) instead of the
//! Intel architectural ones.
#![no_std]
#![no_main]

use guest_tests::amd_pmu::{self, AmdPmu};
use guest_tests::pmu::{EN, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PMC0, OS, USR};
use guest_tests::{cmdline, exit, msr, println};

guest_tests::entry!(main);

/// (event select, unit mask): LLC references, LLC misses, branches, branch
/// misses, twice. None of them has a fixed counter, so on a host with 4
/// general-purpose counters 8 of them share 4 counters.
const EVENTS: [(u64, u64); 8] = [
    (0x2E, 0x4F),
    (0x2E, 0x41),
    (0xC4, 0x00),
    (0xC5, 0x00),
    (0x2E, 0x4F),
    (0x2E, 0x41),
    (0xC4, 0x00),
    (0xC5, 0x00),
];

/// AMD events (PPR names): retired instructions, retired branches, retired
/// branch mispredicts, twice. No AMD core counter is fixed to an event, so
/// 6 of them share a 4-counter host.
const AMD_EVENTS: [u64; 6] = [
    amd_pmu::EV_RETIRED_INSTRUCTIONS,
    amd_pmu::EV_RETIRED_BRANCHES,
    amd_pmu::EV_RETIRED_BRANCH_MISPREDICTS,
    amd_pmu::EV_RETIRED_INSTRUCTIONS,
    amd_pmu::EV_RETIRED_BRANCHES,
    amd_pmu::EV_RETIRED_BRANCH_MISPREDICTS,
];

fn main() {
    let ticks = cmdline::get_u64("ticks").unwrap_or(1_500_000_000);
    if cmdline::get("arch") == Some("amd") {
        amd(ticks);
    }
    let gp = cmdline::get_u64("gp").unwrap_or(8).min(8) as usize;
    for (i, &(event, umask)) in EVENTS.iter().enumerate().take(gp) {
        let sel = event | umask << 8 | USR | OS | EN;
        msr::wrmsr(IA32_PERFEVTSEL0 + i as u32, sel);
    }
    msr::wrmsr(IA32_PERF_GLOBAL_CTRL, (1u64 << gp) - 1);
    msr::spin_tsc(ticks);
    msr::wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    for i in 0..gp {
        println!("pmc{} {}", i, msr::rdmsr(IA32_PMC0 + i as u32));
    }
    exit::exit(exit::SUCCESS);
}

/// The AMD variant: `gp=N` (default 6) core counters, started by EN
/// (PerfCntrGlobalCtl resets to all enabled; it is written where
/// PerfMonV2 exists), stopped by clearing EN, printed as `PERF_CTRn`.
fn amd(ticks: u64) -> ! {
    let gp = cmdline::get_u64("gp").unwrap_or(6).min(6) as u8;
    let v2 = AmdPmu::read().perfmon_v2;
    if v2 {
        msr::wrmsr(amd_pmu::PERF_CNTR_GLOBAL_CTL, 0);
    }
    for (i, &event) in AMD_EVENTS.iter().enumerate().take(usize::from(gp)) {
        let sel = event | amd_pmu::USR | amd_pmu::OS | amd_pmu::EN;
        msr::wrmsr(amd_pmu::perf_ctl(i as u8), sel);
    }
    if v2 {
        msr::wrmsr(amd_pmu::PERF_CNTR_GLOBAL_CTL, (1u64 << gp) - 1);
    }
    msr::spin_tsc(ticks);
    if v2 {
        msr::wrmsr(amd_pmu::PERF_CNTR_GLOBAL_CTL, 0);
    }
    for i in 0..gp {
        msr::wrmsr(amd_pmu::perf_ctl(i), 0);
    }
    for i in 0..gp {
        println!("PERF_CTR{} {}", i, msr::rdmsr(amd_pmu::perf_ctr(i)));
    }
    exit::exit(exit::SUCCESS)
}
