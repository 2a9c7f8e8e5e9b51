//! Reprograms guest counters `n=N` times (default 10,000) between two idle
//! phases of `ticks=T` TSC ticks each: a host can count its open file
//! descriptors in both phases and see that reprogramming leaks none.
//! Prints `reprogram: start`, `reprogram: done N`.
#![no_std]
#![no_main]

use guest_tests::{cmdline, msr, println};

use guest_tests::pmu::{EN, IA32_FIXED_CTR_CTRL, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, OS, USR};

guest_tests::entry!(main);

/// Core cycles and reference cycles, with different privilege filters:
/// each is a different host event configuration.
const CONFIGS: [u64; 4] = [
    0x3C | OS | USR | EN,
    0x013C | OS | USR | EN,
    0x3C | OS | EN,
    0x013C | OS | EN,
];

fn main() {
    let n = cmdline::get_u64("n").unwrap_or(10_000);
    let ticks = cmdline::get_u64("ticks").unwrap_or(2_000_000_000);
    msr::wrmsr(IA32_PERFEVTSEL0, CONFIGS[0]);
    msr::wrmsr(IA32_FIXED_CTR_CTRL, 0x3 << 4);
    msr::wrmsr(IA32_PERF_GLOBAL_CTRL, 0x2_0000_0001);
    println!("reprogram: start");
    msr::spin_tsc(ticks);
    for i in 0..n {
        msr::wrmsr(IA32_PERFEVTSEL0, CONFIGS[(i % 4) as usize]);
    }
    println!("reprogram: done {}", n);
    msr::spin_tsc(ticks);
}
