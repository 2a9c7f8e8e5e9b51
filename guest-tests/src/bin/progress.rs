//! Measures its own progress: how many fixed work units every vCPU
//! completes in `ticks=T` TSC ticks (default 2e9), printed as
//! `progress cpu <i> units <n> ticks <t>`. Benchmarks run it with and
//! without load on the host (e.g. statistics API clients) to measure the
//! guest's slowdown.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use guest_tests::{cmdline, msr, println, smp};

guest_tests::entry!(main);

static TICKS: AtomicU64 = AtomicU64::new(2_000_000_000);

/// One unit of work: a short dependent integer chain the compiler cannot
/// fold away.
#[inline(never)]
fn work_unit(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..256 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn run(cpu: u32) {
    let ticks = TICKS.load(Ordering::Relaxed);
    let start = msr::rdtsc();
    let mut units = 0u64;
    let mut acc = 0u64;
    while msr::rdtsc().wrapping_sub(start) < ticks {
        acc = acc.wrapping_add(work_unit(acc ^ units));
        units += 1;
    }
    println!(
        "progress cpu {} units {} ticks {} ({:x})",
        cpu,
        units,
        ticks,
        acc & 0xF
    );
}

fn main() {
    if cmdline::has("calibrate") {
        let t0 = msr::rdtsc();
        let mut acc = 0u64;
        for i in 0..1000u64 {
            acc = acc.wrapping_add(work_unit(acc ^ i));
        }
        let t1 = msr::rdtsc();
        for _ in 0..1000 {
            acc = acc.wrapping_add(msr::rdtsc());
        }
        let t2 = msr::rdtsc();
        println!(
            "1000 units: {} ticks; 1000 rdtsc: {} ticks ({:x})",
            t1 - t0,
            t2 - t1,
            acc & 0xF
        );
    }
    if let Some(t) = cmdline::get_u64("ticks") {
        TICKS.store(t, Ordering::Relaxed);
    }
    smp::run_on_all(run);
}
