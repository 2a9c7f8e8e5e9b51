//! Programs `gp=N` general-purpose counters (default 8) with architectural
//! events, spins for `ticks=T` TSC ticks with a steady workload, then prints
//! every counter: the multiplexing test reads the host-side statistics.
#![no_std]
#![no_main]

use guest_tests::{cmdline, exit, msr, println};

use guest_tests::pmu::{EN, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PMC0, OS, USR};

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

fn main() {
    let gp = cmdline::get_u64("gp").unwrap_or(8).min(8) as usize;
    let ticks = cmdline::get_u64("ticks").unwrap_or(1_500_000_000);
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
