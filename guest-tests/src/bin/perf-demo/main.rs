//! `perf-demo`: a tiny bare-metal `perf` for the VMM's virtual PMU.
//!
//! Command line (all optional):
//!
//! * `mode=stat|record|both` (default `both`)
//! * `gp=N`: GP counters to use in stat mode (default: all CPUID reports,
//!   at most 8); more than the host has makes the VMM multiplex them
//! * `stat_ticks=T`: TSC ticks each stat workload runs (default 5e8)
//! * `buf=MiB`: size of the memory-walk buffer (default 64)
//! * `period=N`: record sampling period in core cycles (default 1,000,000)
//! * `pmi=nmi|vector`: PMI delivery through LVTPC (default `nmi`)
//! * `counter=fixed|gp`: sampling counter, fixed counter 1 or PMC0 (default
//!   `fixed` where fixed counter 1 exists)
//! * `ticks=T`: record run length per CPU in TSC ticks (default 1.5e9)
//! * `calib`: print how long `int_loop` takes for a few sizes first
//! * `min_share=P`: the share in percent the top function must reach
//!   (default 60)
//!
//! Counters are read with RDMSR only (RDPMC never reaches this VMM). Exit
//! status 0 if every requested mode worked (record: `hot_loop` on top with
//! at least `min_share`%), 1 otherwise.
#![no_std]
#![no_main]

mod fmt;
mod pmu;
mod record;
mod stat;
mod workloads;

use crate::fmt::Sep;
use crate::pmu::{Pmu, EVENTS, MAX_GP};
use guest_tests::{cmdline, exit, println, smp, syms};

guest_tests::entry!(main);

fn main() -> ! {
    let mode = cmdline::get("mode").unwrap_or("both");
    let (do_stat, do_record) = match mode {
        "stat" => (true, false),
        "record" => (false, true),
        "both" => (true, true),
        other => {
            println!("perf-demo: unknown mode={other} (stat, record or both)");
            exit::exit(exit::FAILURE)
        }
    };
    let pmu = Pmu::read();
    let cpus = smp::boot_aps();
    println!(
        "perf-demo: {} cpus, mode={mode}, cmdline '{}'",
        cpus,
        cmdline::raw()
    );
    println!(
        "perf-demo: CPUID.0AH eax={:#x} ebx={:#x} ecx={:#x} edx={:#x}: version {}, {} GP x {} bits, fixed mask {:#x} x {} bits, full-width writes {}",
        pmu.raw[0],
        pmu.raw[1],
        pmu.raw[2],
        pmu.raw[3],
        pmu.version,
        pmu.n_gp,
        pmu.gp_width,
        pmu.fixed_mask,
        pmu.fixed_width,
        if pmu.full_width_write { "yes" } else { "no" }
    );
    if let Some(v) = pmu.amd {
        println!(
            "perf-demo: AMD PMU driver: version {v} ({}), {} counters",
            ["legacy PerfEvtSel/PerfCtr", "PerfCtrCore", "PerfMonV2"][usize::from(v.min(2))],
            pmu.n_gp
        );
    }
    {
        let _console = guest_tests::print::lock();
        guest_tests::print!("perf-demo: events available:");
        for (i, e) in EVENTS.iter().enumerate() {
            if pmu.available(i) {
                guest_tests::print!(" {}", e.name);
            }
        }
        guest_tests::print!("\n");
    }
    let hot = workloads::hot_loop as fn(u64) -> u64 as usize as u64;
    match syms::lookup(hot) {
        Some((name, off)) => println!(
            "perf-demo: {} embedded symbols; {:#x} is {name}+{off:#x}",
            syms::count(),
            hot
        ),
        None => println!("perf-demo: no embedded symbols (reports show addresses only)"),
    }

    if cmdline::has("calib") {
        for n in [1_000u64, 10_000, 100_000, 1_000_000] {
            let t0 = guest_tests::rdtsc();
            workloads::int_loop(n);
            let t1 = guest_tests::rdtsc();
            println!("calib: int_loop({n}) {} ticks", t1 - t0);
        }
    }
    let mut ok = true;
    let mut summary_stat = "skipped";
    if do_stat {
        let gp_cap = cmdline::get_u64("gp").map_or(MAX_GP, |n| n as usize);
        let ticks = cmdline::get_u64("stat_ticks").unwrap_or(500_000_000);
        let want = cmdline::get_u64("buf").unwrap_or(64) << 20;
        let len = workloads::setup_buffer(want);
        println!(
            "perf-demo: stat: {} TSC ticks per workload, memory walk over {} MiB at {:#x}, {} of {} GP counters",
            Sep(ticks),
            len >> 20,
            workloads::buffer().0,
            gp_cap.min(pmu.gp()),
            pmu.n_gp
        );
        if stat::run(gp_cap, ticks) {
            summary_stat = "ok";
        } else {
            summary_stat = "FAILED";
            ok = false;
        }
    }

    let mut summary_record = [0u8; 160];
    let mut summary_len = 0;
    let mut put = |s: core::fmt::Arguments| {
        let mut w = Cursor {
            buf: &mut summary_record,
            len: summary_len,
        };
        let _ = core::fmt::write(&mut w, s);
        summary_len = w.len;
    };
    if do_record {
        let period = cmdline::get_u64("period").unwrap_or(1_000_000).max(50_000);
        let nmi = match cmdline::get("pmi").unwrap_or("nmi") {
            "nmi" => true,
            "vector" => false,
            other => {
                println!("perf-demo: unknown pmi={other} (nmi or vector)");
                exit::exit(exit::FAILURE)
            }
        };
        let use_fixed = cmdline::get("counter").unwrap_or("fixed") != "gp";
        let ticks = cmdline::get_u64("ticks").unwrap_or(1_500_000_000);
        let min_share = cmdline::get_u64("min_share").unwrap_or(60);
        if !pmu.present() || (pmu.gp() == 0 && !pmu.has_fixed(1)) {
            put(format_args!("FAILED (no counter to sample with)"));
            ok = false;
        } else {
            let rep = record::run(&pmu, period, nmi, use_fixed, ticks);
            let share = rep.top_share_x10000;
            let top = rep.top.unwrap_or("[unknown]");
            let good = rep.total > 0
                && rep.empty_cpus == 0
                && top.ends_with("hot_loop")
                && share >= min_share * 100;
            put(format_args!(
                "{} ({} samples, top {} with {}.{:02}%)",
                if good { "ok" } else { "FAILED" },
                rep.total,
                top,
                share / 100,
                share % 100
            ));
            ok &= good;
        }
    } else {
        put(format_args!("skipped"));
    }
    println!();
    println!(
        "perf-demo: {}: stat {summary_stat}, record {}",
        if ok { "PASS" } else { "FAIL" },
        core::str::from_utf8(&summary_record[..summary_len]).unwrap_or("?")
    );
    exit::exit(if ok { exit::SUCCESS } else { exit::FAILURE })
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
