//! `mode=stat`: count every available architectural event on every fixed
//! counter and on up to `gp=N` general-purpose counters while each workload
//! runs, on every vCPU; print `perf stat`-style tables from the BSP.

use crate::fmt::{Ratio, Sep};
use crate::pmu::*;
use crate::workloads;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use guest_tests::sync::SpinLock;
use guest_tests::{println, rdtsc, smp};

/// A workload: `run(state, iterations) -> state`, called in chunks of
/// `chunk` iterations until the run's TSC budget is spent (so the tool
/// takes about as long on a fast host as on one that runs guest code
/// slowly).
struct Workload {
    name: &'static str,
    run: fn(u64, u64) -> u64,
    chunk: u64,
}

fn int_chunk(state: u64, iters: u64) -> u64 {
    state ^ workloads::int_loop(iters)
}

fn branchy_chunk(state: u64, iters: u64) -> u64 {
    state ^ workloads::branchy(iters)
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "int-loop",
        run: int_chunk,
        chunk: 2_000,
    },
    Workload {
        name: "mem-walk",
        run: workloads::mem_walk_from,
        chunk: 256,
    },
    Workload {
        name: "branchy",
        run: branchy_chunk,
        chunk: 1_000,
    },
];
const N_WL: usize = WORKLOADS.len();

/// What one run counted.
#[derive(Clone, Copy, Default)]
struct Run {
    done: bool,
    /// GP counter -> architectural event index (None: unused).
    gp_event: [Option<usize>; MAX_GP],
    gp: [u64; MAX_GP],
    fixed: [u64; MAX_FIXED],
    ticks: u64,
    iters: u64,
    pmu: Pmu,
}

static RESULTS: SpinLock<[[Run; N_WL]; smp::MAX_CPUS]> = SpinLock::new(
    [[Run {
        done: false,
        gp_event: [None; MAX_GP],
        gp: [0; MAX_GP],
        fixed: [0; MAX_FIXED],
        ticks: 0,
        iters: 0,
        pmu: Pmu {
            version: 0,
            n_gp: 0,
            gp_width: 0,
            ebx_len: 0,
            unavailable: 0,
            fixed_mask: 0,
            fixed_width: 0,
            full_width_write: false,
            raw: [0; 4],
            amd: None,
        },
    }; N_WL]; smp::MAX_CPUS],
);

/// GP counters to use (`gp=N`, capped by CPUID).
static GP_CAP: AtomicUsize = AtomicUsize::new(MAX_GP);
/// TSC ticks each workload runs (`ticks=`).
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Events for the GP counters: the available architectural events, round
/// robin, on `min(cap, GP counters)` counters.
fn plan(pmu: &Pmu, cap: usize) -> [Option<usize>; MAX_GP] {
    let mut out = [None; MAX_GP];
    let avail: [bool; 8] = core::array::from_fn(|e| pmu.available(e));
    let n_avail = avail.iter().filter(|&&a| a).count();
    if n_avail == 0 {
        return out;
    }
    let mut e = 0;
    for slot in out.iter_mut().take(pmu.gp().min(cap)) {
        while !avail[e % 8] {
            e += 1;
        }
        *slot = Some(e % 8);
        e += 1;
    }
    out
}

fn measure(pmu: &Pmu, gp_event: &[Option<usize>; MAX_GP], wl: &Workload, ticks: u64) -> Run {
    pmu.reset();
    let mut enable = 0u64;
    let mut fixed_ctrl = 0u64;
    for i in 0..MAX_FIXED {
        if pmu.has_fixed(i) && pmu.version >= 2 {
            fixed_ctrl |= F_OS_USR << (4 * i);
            enable |= Counter::Fixed(i).bit();
        }
    }
    let sel = |i: usize| gp_event[i].map(|e| code(e) | USR | OS | EN);
    if pmu.version >= 2 {
        for i in 0..pmu.gp() {
            if let Some(s) = sel(i) {
                w(evtsel(i), s);
                enable |= Counter::Gp(i).bit();
            }
        }
        if !is_amd() {
            w(IA32_FIXED_CTR_CTRL, fixed_ctrl);
        }
    }
    let t0 = rdtsc();
    if pmu.version >= 2 {
        w(global_ctrl(), enable);
    } else {
        // Version 1: no global control, EN starts each counter.
        for i in 0..pmu.gp() {
            if let Some(s) = sel(i) {
                w(evtsel(i), s);
            }
        }
    }
    let mut state = 0;
    let mut iters = 0;
    loop {
        state = core::hint::black_box((wl.run)(state, wl.chunk));
        iters += wl.chunk;
        if rdtsc().wrapping_sub(t0) >= ticks {
            break;
        }
    }
    if pmu.version >= 2 {
        w(global_ctrl(), 0);
    } else {
        for i in 0..pmu.gp() {
            w(evtsel(i), 0);
        }
    }
    let ticks = rdtsc() - t0;
    let mut run = Run {
        done: true,
        gp_event: *gp_event,
        ticks,
        iters,
        pmu: *pmu,
        ..Run::default()
    };
    for (i, e) in gp_event.iter().enumerate().take(pmu.gp()) {
        if e.is_some() {
            run.gp[i] = r(pmc(i));
        }
    }
    for i in 0..MAX_FIXED {
        if pmu.has_fixed(i) {
            run.fixed[i] = r(fixed_ctr(i));
        }
    }
    pmu.reset();
    run
}

/// Per-CPU part: measure every workload, store the results.
fn stat_cpu(cpu: u32) {
    let pmu = Pmu::read();
    let gp_event = plan(&pmu, GP_CAP.load(Ordering::Relaxed));
    let ticks = TICKS.load(Ordering::Relaxed);
    for (k, wl) in WORKLOADS.iter().enumerate() {
        let run = measure(&pmu, &gp_event, wl, ticks);
        RESULTS.lock()[cpu as usize % smp::MAX_CPUS][k] = run;
    }
}

/// Run the stat mode on all CPUs and print the tables. Returns whether every
/// CPU produced results.
pub fn run(gp_cap: usize, ticks: u64) -> bool {
    GP_CAP.store(gp_cap, Ordering::Relaxed);
    TICKS.store(ticks, Ordering::Relaxed);
    smp::run_on_all(stat_cpu);
    let results = *RESULTS.lock();
    let mut ok = true;
    for (cpu, runs) in results.iter().enumerate().take(smp::online_cpus() as usize) {
        for (run, wl) in runs.iter().zip(WORKLOADS.iter()) {
            if !run.done {
                println!(
                    "perf-demo: stat: cpu {cpu} produced no result for {}",
                    wl.name
                );
                ok = false;
                continue;
            }
            print_table(cpu, wl.name, run);
        }
    }
    ok
}

/// The value of event `e` for ratios: from its fixed counter if there is
/// one, else from the first GP counter with it; None if CPUID marks the
/// event unavailable or nothing counted it.
fn value_of(run: &Run, e: usize) -> Option<u64> {
    if !run.pmu.available(e) {
        return None;
    }
    (0..MAX_FIXED)
        .find(|&i| run.pmu.has_fixed(i) && FIXED_EVENT[i] == e)
        .map(|i| run.fixed[i])
        .or_else(|| {
            (0..MAX_GP)
                .find(|&i| run.gp_event[i] == Some(e))
                .map(|i| run.gp[i])
        })
}

/// Print the derived metric of the row for event `e`, if any.
fn print_row(value: u64, e: usize, counter: &dyn core::fmt::Display, run: &Run, first: bool) {
    let name = EVENTS[e].name;
    if !run.pmu.available(e) {
        // A fixed counter exists for an event CPUID marks unavailable: show
        // what it read, but not as a measurement.
        println!(
            "{:>18}      {:<18} {:<8} #  read {}, but CPUID.0AH:EBX marks the event unavailable",
            "<not supported>",
            name,
            counter,
            Sep(value)
        );
        return;
    }
    let (num, den, scale, what) = match e {
        EV_INSTRUCTIONS if first => (
            value_of(run, EV_INSTRUCTIONS),
            value_of(run, EV_CYCLES),
            1,
            "  insn per cycle",
        ),
        EV_CACHE_MISSES if first => (
            value_of(run, EV_CACHE_MISSES),
            value_of(run, EV_CACHE_REFS),
            100,
            "% of all cache refs",
        ),
        EV_BRANCH_MISSES if first => (
            value_of(run, EV_BRANCH_MISSES),
            value_of(run, EV_BRANCHES),
            100,
            "% of all branches",
        ),
        _ => (None, None, 1, ""),
    };
    match (num, den) {
        (Some(num), Some(den)) => println!(
            "{:>18}      {:<18} {:<8} #  {:>7}{}",
            Sep(value),
            name,
            counter,
            Ratio { num, den, scale },
            what
        ),
        _ => println!("{:>18}      {:<18} {}", Sep(value), name, counter),
    }
}

struct Fixed(usize);
impl core::fmt::Display for Fixed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut b = [b'f', b'i', b'x', b'e', b'd', b'0'];
        b[5] += self.0 as u8;
        f.pad(core::str::from_utf8(&b).unwrap_or("fixed"))
    }
}
struct Gp(usize);
impl core::fmt::Display for Gp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = [b'p', b'm', b'c', b'0' + self.0 as u8];
        f.pad(core::str::from_utf8(&b).unwrap_or("pmc"))
    }
}

fn print_table(cpu: usize, workload: &str, run: &Run) {
    let _console = guest_tests::print::lock();
    let pmu = &run.pmu;
    println!();
    println!(" Performance counter stats for '{workload}' on cpu {cpu}:");
    println!();
    if !pmu.present() {
        println!(
            "{:>18}      (no architectural PMU: CPUID.0AH:EAX = 0)",
            "<not supported>"
        );
    }
    let mut shown = [false; 8];
    for (i, &e) in FIXED_EVENT.iter().enumerate() {
        if pmu.has_fixed(i) {
            print_row(run.fixed[i], e, &Fixed(i), run, !shown[e]);
            shown[e] = true;
        }
    }
    for i in 0..MAX_GP {
        if let Some(e) = run.gp_event[i] {
            print_row(run.gp[i], e, &Gp(i), run, !shown[e]);
            shown[e] = true;
        }
    }
    for (e, ev) in EVENTS.iter().enumerate() {
        if !shown[e] && !pmu.available(e) && pmu.present() {
            println!("{:>18}      {}", "<not supported>", ev.name);
        }
    }
    println!();
    println!(
        "{:>18}      TSC ticks elapsed ({} iterations)",
        Sep(run.ticks),
        Sep(run.iters)
    );
}
