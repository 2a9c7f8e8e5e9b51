//! `mode=record`: sample on core-cycles overflow. Each PMI records the
//! interrupted RIP and re-arms the counter (preload -period, clear the
//! overflow status, unmask LVTPC, which delivery masked); the BSP then maps
//! the RIPs to functions with the embedded symbol table and prints a
//! `perf report`-style list.

use crate::fmt::{Ratio, Sep};
use crate::pmu::*;
use crate::workloads;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use guest_tests::idt::{self, InterruptFrame};
use guest_tests::{exceptions, irq, lapic, println, rdtsc, smp, syms};

/// Vector of PMIs in `pmi=vector` mode.
pub const PMI_VECTOR: u8 = 0x50;
/// Samples kept per CPU.
const CAP: usize = 8192;
const MAX: usize = smp::MAX_CPUS;
/// Iterations of `hot_loop` per round of the workload (short rounds: the
/// run is bounded by TSC ticks, also where guest code runs slowly).
const HOT_ITERS: u64 = 6_000;

static SAMPLES: [[AtomicU64; CAP]; MAX] = [const { [const { AtomicU64::new(0) }; CAP] }; MAX];
static N_SAMPLES: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
static LOST: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
static SPURIOUS: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
static ACTIVE: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];

/// What the handler needs, fixed before sampling starts.
static LVT: AtomicU32 = AtomicU32::new(lapic::LVT_MASKED);
static VERSION: AtomicU32 = AtomicU32::new(0);
static STATUS_BIT: AtomicU64 = AtomicU64::new(0);
/// The preload write: MSR and value (-period).
static PRELOAD_MSR: AtomicU32 = AtomicU32::new(0);
static PRELOAD_VALUE: AtomicU64 = AtomicU64::new(0);
/// The sampling counter: Gp(i) as i, Fixed(i) as 32 + i.
static COUNTER: AtomicU32 = AtomicU32::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);
/// Per CPU: cycles the sampling counter counted while recording (every
/// sampled period plus what was left when recording stopped).
static COUNTED: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
/// Per CPU: TSC ticks the recording lasted.
static ELAPSED: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];

fn counter() -> Counter {
    match COUNTER.load(Ordering::Relaxed) {
        i @ 0..=31 => Counter::Gp(i as usize),
        i => Counter::Fixed(i as usize - 32),
    }
}

/// The PMI handler (NMI or fixed vector).
fn on_pmi(frame: &mut InterruptFrame) {
    let cpu = smp::this_cpu() as usize % MAX;
    let bit = STATUS_BIT.load(Ordering::Relaxed);
    let v2 = VERSION.load(Ordering::Relaxed) >= 2;
    let status = if v2 {
        r(global_status())
    } else if is_amd() {
        // No status register before PerfMonV2: the counter, preloaded
        // with -period (bit 47 set), has overflowed if it wrapped.
        match counter() {
            Counter::Gp(i) if r(pmc(i)) < 1 << 47 => bit,
            _ => 0,
        }
    } else {
        bit
    };
    if status & bit == 0 || !ACTIVE[cpu].load(Ordering::Relaxed) {
        SPURIOUS[cpu].fetch_add(1, Ordering::Relaxed);
        if v2 && status != 0 {
            w(global_status_clear(), status);
        }
        return;
    }
    let n = N_SAMPLES[cpu].load(Ordering::Relaxed);
    if n < CAP {
        SAMPLES[cpu][n].store(frame.rip, Ordering::Relaxed);
        N_SAMPLES[cpu].store(n + 1, Ordering::Relaxed);
    } else {
        LOST[cpu].fetch_add(1, Ordering::Relaxed);
    }
    // Re-arm: -period, clear the overflow bit, unmask LVTPC.
    preload();
    if v2 {
        w(global_status_clear(), status);
    }
    lapic::set_lvt_perf(LVT.load(Ordering::Relaxed));
}

/// The run of one CPU: a loop that spends ~83% of its time in `hot_loop`,
/// ~14% in `warm_loop`, ~3% in `cold_loop` (same cost per iteration).
fn workload(ticks: u64) -> u64 {
    let t0 = rdtsc();
    let mut acc = 0u64;
    while rdtsc().wrapping_sub(t0) < ticks {
        acc ^= workloads::hot_loop(HOT_ITERS);
        acc ^= workloads::warm_loop(HOT_ITERS / 6);
        acc ^= workloads::cold_loop(HOT_ITERS / 24);
    }
    acc
}

fn preload() {
    w(
        PRELOAD_MSR.load(Ordering::Relaxed),
        PRELOAD_VALUE.load(Ordering::Relaxed),
    );
}

fn record_cpu(cpu: u32) {
    let cpu = cpu as usize % MAX;
    let pmu = Pmu::read();
    let ctr = counter();
    pmu.reset();
    N_SAMPLES[cpu].store(0, Ordering::Relaxed);
    lapic::set_lvt_perf(LVT.load(Ordering::Relaxed));
    preload();
    match ctr {
        Counter::Gp(i) => w(evtsel(i), code(EV_CYCLES) | USR | OS | INT | EN),
        Counter::Fixed(i) => w(IA32_FIXED_CTR_CTRL, (F_OS_USR | F_PMI) << (4 * i)),
    }
    ACTIVE[cpu].store(true, Ordering::SeqCst);
    irq::enable();
    if pmu.version >= 2 {
        w(global_ctrl(), ctr.bit());
    }
    let t0 = rdtsc();
    core::hint::black_box(workload(TICKS.load(Ordering::Relaxed)));
    irq::disable();
    // Counted = the periods that ended in a PMI (recorded or lost) plus the
    // counter's progress since its last preload.
    let since_preload = r(PRELOAD_MSR.load(Ordering::Relaxed))
        .wrapping_sub(PRELOAD_VALUE.load(Ordering::Relaxed))
        & ((1 << 48) - 1);
    let pmis = N_SAMPLES[cpu].load(Ordering::Relaxed) as u64 + LOST[cpu].load(Ordering::Relaxed);
    COUNTED[cpu].store(
        pmis * PERIOD.load(Ordering::Relaxed) + since_preload,
        Ordering::Relaxed,
    );
    ELAPSED[cpu].store(rdtsc().wrapping_sub(t0), Ordering::Relaxed);
    irq::enable();
    ACTIVE[cpu].store(false, Ordering::SeqCst);
    pmu.reset();
    // A PMI already on its way lands now (and finds ACTIVE clear).
    guest_tests::msr::spin_tsc(1_000_000);
    irq::disable();
    lapic::set_lvt_perf(lapic::LVT_MASKED);
}

/// Per-symbol sample counts.
#[derive(Clone, Copy)]
struct Bucket {
    addr: u64,
    name: &'static str,
    count: u64,
}

const MAX_BUCKETS: usize = 128;

/// Result of the record mode: (total samples, top symbol name, its share in
/// 1/10000).
pub struct Report {
    pub total: u64,
    pub top: Option<&'static str>,
    pub top_share_x10000: u64,
    pub empty_cpus: u32,
}

/// Sample on all CPUs, print the report.
pub fn run(pmu: &Pmu, period: u64, nmi: bool, use_fixed: bool, ticks: u64) -> Report {
    let ctr = if use_fixed && pmu.has_fixed(1) && pmu.version >= 2 {
        Counter::Fixed(1)
    } else {
        Counter::Gp(0)
    };
    let (msr, value) = pmu.preload(ctr, period);
    PERIOD.store(period, Ordering::Relaxed);
    PRELOAD_MSR.store(msr, Ordering::Relaxed);
    PRELOAD_VALUE.store(value, Ordering::Relaxed);
    VERSION.store(u32::from(pmu.version), Ordering::Relaxed);
    STATUS_BIT.store(ctr.bit(), Ordering::Relaxed);
    COUNTER.store(
        match ctr {
            Counter::Gp(i) => i as u32,
            Counter::Fixed(i) => 32 + i as u32,
        },
        Ordering::Relaxed,
    );
    TICKS.store(ticks, Ordering::Relaxed);
    let lvt = if nmi {
        lapic::LVT_NMI
    } else {
        u32::from(PMI_VECTOR)
    };
    LVT.store(lvt, Ordering::Relaxed);
    idt::set_handler(exceptions::NMI, on_pmi);
    idt::set_handler(PMI_VECTOR, on_pmi);

    let ctr_name = match ctr {
        Counter::Gp(_) => "pmc0",
        Counter::Fixed(_) => "fixed1",
    };
    println!();
    println!(
        "perf-demo: record: sampling cycles on {ctr_name} every {} events, PMI as {}, {} TSC ticks per cpu",
        Sep(period),
        if nmi { "NMI" } else { "vector 0x50" },
        Sep(ticks)
    );
    smp::run_on_all(record_cpu);
    idt::clear_handler(exceptions::NMI);
    idt::clear_handler(PMI_VECTOR);

    // Aggregate.
    let mut buckets = [Bucket {
        addr: 0,
        name: "",
        count: 0,
    }; MAX_BUCKETS];
    let mut n_buckets = 0;
    let mut unknown = 0u64;
    let mut other = 0u64;
    let mut total = 0u64;
    let mut empty_cpus = 0;
    let table = syms::table();
    for cpu in 0..smp::online_cpus() as usize {
        let n = N_SAMPLES[cpu].load(Ordering::Acquire);
        println!(
            "# cpu {cpu}: {} samples, {} lost, {} spurious; {} cycles counted in {} TSC ticks",
            Sep(n as u64),
            LOST[cpu].load(Ordering::Relaxed),
            SPURIOUS[cpu].load(Ordering::Relaxed),
            Sep(COUNTED[cpu].load(Ordering::Relaxed)),
            Sep(ELAPSED[cpu].load(Ordering::Relaxed))
        );
        if n == 0 {
            empty_cpus += 1;
        }
        for s in SAMPLES[cpu].iter().take(n) {
            let rip = s.load(Ordering::Relaxed);
            total += 1;
            // Without a symbol table, 64-byte address ranges stand in for
            // functions.
            let (addr, name) = match table {
                Some(t) => match t.find(rip) {
                    Some(sym) => (sym.addr, sym.name),
                    None => {
                        unknown += 1;
                        continue;
                    }
                },
                None => (rip & !0x3F, "[unknown]"),
            };
            if let Some(b) = buckets[..n_buckets].iter_mut().find(|b| b.addr == addr) {
                b.count += 1;
            } else if n_buckets < MAX_BUCKETS {
                buckets[n_buckets] = Bucket {
                    addr,
                    name,
                    count: 1,
                };
                n_buckets += 1;
            } else {
                other += 1;
            }
        }
    }
    let buckets = &mut buckets[..n_buckets];
    buckets.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.addr.cmp(&b.addr)));

    let _console = guest_tests::print::lock();
    println!();
    println!(
        "# Samples: {} of event 'cycles' (period {}), {} cpus",
        Sep(total),
        Sep(period),
        smp::online_cpus()
    );
    if table.is_none() {
        println!("# no embedded symbol table: samples cannot be mapped to functions");
    }
    println!("#");
    println!("# Overhead  Samples  Symbol");
    println!("# ........  .......  ......................................");
    for b in buckets.iter().take(12) {
        println!(
            "  {:>7}%  {:>7}  {} [{:#x}]",
            Ratio {
                num: b.count,
                den: total,
                scale: 100
            },
            b.count,
            b.name,
            b.addr
        );
    }
    if unknown > 0 {
        println!(
            "  {:>7}%  {:>7}  [unknown]",
            Ratio {
                num: unknown,
                den: total,
                scale: 100
            },
            unknown
        );
    }
    if other > 0 {
        println!("  {:>7}  {:>7}  (more symbols)", "", other);
    }
    let top = buckets
        .first()
        .filter(|b| b.count > unknown && table.is_some());
    Report {
        total,
        top: top.map(|b| b.name),
        top_share_x10000: top.map_or(0, |b| (b.count * 10_000).checked_div(total).unwrap_or(0)),
        empty_cpus,
    }
}
