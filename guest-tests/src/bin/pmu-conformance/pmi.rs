//! Overflow and PMIs: a counter preloaded close to 2^48 wraps, sets its
//! IA32_PERF_GLOBAL_STATUS bit, and with INT raises a PMI through LVTPC (NMI or fixed
//! delivery), after which LVTPC is masked; a masked LVTPC delivers nothing.
//! Runs on one CPU at a time. The PMI machinery (handlers, counts, waits)
//! serves the AMD suite too.

use crate::agg;
use crate::pmu::*;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_tests::idt::{self, InterruptFrame};
use guest_tests::{exceptions, irq, lapic, rdtsc, smp, try_rdmsr, try_wrmsr};

/// Vector of fixed-mode PMIs.
pub const PMI_VECTOR: u8 = 0x50;
/// Events before the preloaded counter wraps (TSC ticks, at cycles' rate).
pub const PRELOAD: u64 = 3_000_000;
/// Give up waiting for a PMI after this many TSC ticks.
pub const TIMEOUT: u64 = 2_000_000_000;

const MAX: usize = smp::MAX_CPUS;
static NMI_COUNT: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
static VEC_COUNT: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
/// The global status MSR read inside the last handler (u64::MAX:
/// unreadable; 0 without one).
static STATUS_IN_HANDLER: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];
static LVT_IN_HANDLER: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
/// The global overflow status MSR the handlers read (0: none).
static STATUS_MSR: AtomicU32 = AtomicU32::new(0);

fn record(count: &AtomicU32) {
    let cpu = smp::this_cpu() as usize % MAX;
    let status = match STATUS_MSR.load(Ordering::Relaxed) {
        0 => 0,
        msr => try_rdmsr(msr).unwrap_or(u64::MAX),
    };
    STATUS_IN_HANDLER[cpu].store(status, Ordering::SeqCst);
    LVT_IN_HANDLER[cpu].store(lapic::lvt_perf(), Ordering::SeqCst);
    count.fetch_add(1, Ordering::SeqCst);
}

fn nmi_handler(_frame: &mut InterruptFrame) {
    record(&NMI_COUNT[smp::this_cpu() as usize % MAX]);
}

fn vec_handler(_frame: &mut InterruptFrame) {
    record(&VEC_COUNT[smp::this_cpu() as usize % MAX]);
}

/// Install the NMI and PMI-vector handlers (BSP, before the tests); the
/// handlers record `status_msr` (the global overflow status) if given.
pub fn install_handlers(status_msr: Option<u32>) {
    STATUS_MSR.store(status_msr.unwrap_or(0), Ordering::Relaxed);
    idt::set_handler(exceptions::NMI, nmi_handler);
    idt::set_handler(PMI_VECTOR, vec_handler);
}

/// Install the handlers for the Intel suite.
pub fn install(cfg: &Config) {
    install_handlers((cfg.version >= 2).then_some(IA32_PERF_GLOBAL_STATUS));
}

/// (NMI, vector) PMIs this CPU received so far.
pub fn counts() -> (u32, u32) {
    let cpu = smp::this_cpu() as usize % MAX;
    (
        NMI_COUNT[cpu].load(Ordering::SeqCst),
        VEC_COUNT[cpu].load(Ordering::SeqCst),
    )
}

/// (status MSR, LVTPC) as the last handler on this CPU read them.
pub fn handler_state() -> (u64, u32) {
    let cpu = smp::this_cpu() as usize % MAX;
    (
        STATUS_IN_HANDLER[cpu].load(Ordering::SeqCst),
        LVT_IN_HANDLER[cpu].load(Ordering::SeqCst),
    )
}

/// Spin (interrupts on) until the PMI counts differ from `before` or the
/// timeout passes; returns the TSC ticks waited.
pub fn wait_pmi(before: (u32, u32)) -> u64 {
    let t0 = rdtsc();
    irq::enable();
    while counts() == before && rdtsc() - t0 < TIMEOUT {
        core::hint::spin_loop();
    }
    // Anything else in flight lands now.
    guest_tests::msr::spin_tsc(PRELOAD);
    irq::disable();
    rdtsc() - t0
}

/// What a counter under test is.
#[derive(Clone, Copy)]
enum Ctr {
    /// GP counter, preloaded through the legacy (sign-extending) alias.
    Legacy(u8),
    /// GP counter, preloaded through IA32_A_PMCx.
    Full(u8),
    /// Fixed counter 1 or 2 (cycles).
    Fixed(u8),
}

impl Ctr {
    fn name(self) -> &'static str {
        match self {
            Ctr::Legacy(_) => "GP counter (legacy -N preload)",
            Ctr::Full(_) => "GP counter (IA32_A_PMCx preload)",
            Ctr::Fixed(_) => "fixed counter",
        }
    }

    fn bit(self) -> u64 {
        match self {
            Ctr::Legacy(i) | Ctr::Full(i) => 1 << i,
            Ctr::Fixed(i) => fixed_bit(i),
        }
    }

    fn read_msr(self) -> u32 {
        match self {
            Ctr::Legacy(i) | Ctr::Full(i) => pmc(i),
            Ctr::Fixed(i) => fixed_ctr(i),
        }
    }

    /// Preload 2^48 - PRELOAD and start counting cycles (with INT if `int`).
    fn start(self, cfg: &Config, int: bool) {
        match self {
            Ctr::Legacy(i) | Ctr::Full(i) => {
                w(evtsel(i), 0);
                if let Ctr::Legacy(_) = self {
                    w(pmc(i), (PRELOAD as u32).wrapping_neg() as u64);
                } else {
                    w(apmc(i), (1 << 48) - PRELOAD);
                }
                w(evtsel(i), CYCLES | EN | OS | if int { INT } else { 0 });
            }
            Ctr::Fixed(i) => {
                w(IA32_FIXED_CTR_CTRL, 0);
                w(fixed_ctr(i), (1 << 48) - PRELOAD);
                w(
                    IA32_FIXED_CTR_CTRL,
                    nibble(i, F_OS | if int { F_PMI } else { 0 }),
                );
            }
        }
        global_enable(cfg, self.bit());
    }

    fn stop(self, cfg: &Config) {
        global_enable(cfg, 0);
        match self {
            Ctr::Legacy(i) | Ctr::Full(i) => w(evtsel(i), 0),
            Ctr::Fixed(_) => w(IA32_FIXED_CTR_CTRL, 0),
        }
    }
}

pub fn per_cpu(_cpu: u32) {
    let cfg = Config::get();
    reset(&cfg);
    let gp_last = cfg.gp() - 1;
    // Preload checks.
    w(pmc(0), (PRELOAD as u32).wrapping_neg() as u64);
    agg::eq(
        format_args!("legacy IA32_PMC0 write of -N reads 2^48-N"),
        r(pmc(0)),
        (1 << 48) - PRELOAD,
    );
    w(pmc(0), 0);

    let mut ctrs = overflow_ctrs(&cfg, gp_last);
    // Overflow without INT: status bit, no PMI.
    for c in ctrs.iter().flatten() {
        overflow_no_int(&cfg, *c);
    }
    if cfg.version >= 2 && cfg.version < 4 {
        agg::check(
            format_args!("overflow status cleared with IA32_PERF_GLOBAL_OVF_CTRL (v2/v3)"),
            r(IA32_PERF_GLOBAL_STATUS) == 0,
            format_args!("status {:#x}", r(IA32_PERF_GLOBAL_STATUS)),
        );
    }
    instructions_overflow(&cfg);
    // PMIs: NMI mode with a GP counter, fixed mode with a fixed counter if
    // there is a cycles one, else a GP counter.
    pmi(&cfg, Ctr::Legacy(0), lapic::LVT_NMI, "NMI");
    let fixed_mode = ctrs[2].take().unwrap_or(Ctr::Legacy(gp_last));
    pmi(&cfg, fixed_mode, u32::from(PMI_VECTOR), "fixed vector");
    masked(&cfg, Ctr::Legacy(0));
    int_without_en(&cfg);
    if cfg.version >= 4 {
        status_set_no_pmi(&cfg);
    }
    reset(&cfg);
}

/// The counters to overflow: legacy GP0, full-width last GP (FW_WRITE),
/// fixed counter 1 (if present).
fn overflow_ctrs(cfg: &Config, gp_last: u8) -> [Option<Ctr>; 3] {
    [
        Some(Ctr::Legacy(0)),
        cfg.fw.then_some(Ctr::Full(gp_last)),
        (cfg.fixed() > 1).then_some(Ctr::Fixed(1)),
    ]
}

/// Poll counter MSR `msr` until it has wrapped (reads below 2^47) or the
/// timeout passes; returns the last value. Polling instead of a fixed busy
/// loop: the counts come from vCPU thread CPU time, which lags the TSC when
/// the host deschedules the thread.
pub fn wait_wrap(msr: u32) -> u64 {
    let t0 = rdtsc();
    loop {
        spin(PRELOAD / 4);
        let v = r(msr);
        if v < 1 << 47 || rdtsc() - t0 > TIMEOUT {
            return v;
        }
    }
}

fn overflow_no_int(cfg: &Config, c: Ctr) {
    lapic::set_lvt_perf(lapic::LVT_NMI);
    let before = counts();
    c.start(cfg, false);
    let v = wait_wrap(c.read_msr());
    let status = if cfg.version >= 2 {
        r(IA32_PERF_GLOBAL_STATUS)
    } else {
        0
    };
    c.stop(cfg);
    irq::enable();
    spin(PRELOAD / 10);
    irq::disable();
    let after = counts();
    lapic::set_lvt_perf(lapic::LVT_MASKED);
    agg::check(
        format_args!("{}: wraps past 2^48 to a small value", c.name()),
        v < 1 << 47,
        format_args!("read {v:#x}"),
    );
    if cfg.version >= 2 {
        agg::eq(
            format_args!(
                "{}: overflow sets its IA32_PERF_GLOBAL_STATUS bit (only)",
                c.name()
            ),
            status,
            c.bit(),
        );
        w(IA32_PERF_GLOBAL_OVF_CTRL, c.bit());
        agg::eq(
            format_args!(
                "{}: STATUS_RESET/OVF_CTRL clears the overflow bit",
                c.name()
            ),
            r(IA32_PERF_GLOBAL_STATUS),
            0,
        );
    }
    agg::check(
        format_args!("{}: overflow without INT raises no PMI", c.name()),
        after == before,
        format_args!("(NMIs, vector PMIs) {before:?} -> {after:?}"),
    );
}

/// Instructions retired wraps from emulated RDMSRs alone where it is
/// available; where it is not, the preloaded counter stays put.
fn instructions_overflow(cfg: &Config) {
    if !cfg.available(1) {
        w(evtsel(0), 0);
        w(pmc(0), 0xFFFF_FFF8); // -8
        w(evtsel(0), INSTRUCTIONS | EN | OS);
        global_enable(cfg, 1);
        for _ in 0..64 {
            let _ = try_rdmsr(evtsel(0));
        }
        let v = r(pmc(0));
        w(evtsel(0), 0);
        agg::check(
            format_args!("unavailable instructions counter preloaded to -8 does not move"),
            v == 0xFFFF_FFFF_FFF8,
            format_args!("value {v:#x}"),
        );
        reset(cfg);
        return;
    }
    w(evtsel(0), 0);
    w(pmc(0), 0xFFFF_FFF8); // -8
    w(evtsel(0), INSTRUCTIONS | EN | OS);
    global_enable(cfg, 1);
    // v0 is the value before this RDMSR retires; after it and `n` more the
    // counter is v0 + 1 + n, which the final read returns.
    let v0 = r(pmc(0));
    let n = (1u64 << 48).saturating_sub(v0) + 1;
    for _ in 0..n.min(64) {
        let _ = try_rdmsr(evtsel(0));
    }
    let v = r(pmc(0));
    let status = if cfg.version >= 2 {
        r(IA32_PERF_GLOBAL_STATUS)
    } else {
        1
    };
    w(evtsel(0), 0);
    agg::check(
        format_args!("instructions counter preloaded to -8 wraps from emulated RDMSRs"),
        n <= 64 && v == 2 && status == 1,
        format_args!("value {v:#x} (want 0x2) after {v0:#x} + {n} reads, status {status:#x}"),
    );
    reset(cfg);
}

fn pmi(cfg: &Config, c: Ctr, lvt: u32, mode: &str) {
    reset(cfg);
    lapic::set_lvt_perf(lvt);
    let before = counts();
    c.start(cfg, true);
    let waited = wait_pmi(before);
    let v = r(c.read_msr());
    c.stop(cfg);
    let after = counts();
    let lvt_after = lapic::lvt_perf();
    let (status, lvt_in) = handler_state();
    let got = if lvt == lapic::LVT_NMI {
        (after.0 - before.0, after.1 - before.1)
    } else {
        (after.1 - before.1, after.0 - before.0)
    };
    agg::check(
        format_args!("{} with INT: exactly one PMI as {mode}", c.name()),
        got == (1, 0),
        format_args!(
            "(this mode, other mode) deliveries {got:?} after {waited} ticks, counter {v:#x}"
        ),
    );
    if got.0 == 0 {
        lapic::set_lvt_perf(lapic::LVT_MASKED);
        return;
    }
    agg::check(
        format_args!("{mode} PMI: LVTPC masked on delivery, rest kept"),
        lvt_after == lvt | lapic::LVT_MASKED && lvt_in == lvt_after,
        format_args!("LVTPC {lvt_after:#x} after, {lvt_in:#x} in handler, programmed {lvt:#x}"),
    );
    if cfg.version >= 2 {
        agg::check(
            format_args!(
                "{mode} PMI: IA32_PERF_GLOBAL_STATUS has the counter's bit in the handler"
            ),
            status != u64::MAX && status & c.bit() != 0,
            format_args!("status {status:#x}, bit {:#x}", c.bit()),
        );
    }
    agg::check(
        format_args!("{mode} PMI: counter had wrapped when the PMI arrived"),
        v < 2 * TIMEOUT,
        format_args!("counter {v:#x}"),
    );
    // Linux's PMI handler pattern: clear status, re-preload, unmask LVTPC:
    // the next overflow interrupts again.
    if cfg.version >= 2 {
        w(IA32_PERF_GLOBAL_OVF_CTRL, cfg.counter_mask());
    }
    lapic::set_lvt_perf(lvt);
    let before = counts();
    c.start(cfg, true);
    wait_pmi(before);
    c.stop(cfg);
    let after = counts();
    agg::check(
        format_args!("{mode} PMI: a second PMI after unmasking LVTPC and re-preloading"),
        after != before,
        format_args!("(NMIs, vector PMIs) {before:?} -> {after:?}"),
    );
    reset(cfg);
}

fn masked(cfg: &Config, c: Ctr) {
    reset(cfg);
    lapic::set_lvt_perf(u32::from(PMI_VECTOR) | lapic::LVT_MASKED);
    let before = counts();
    c.start(cfg, true);
    irq::enable();
    let v = wait_wrap(c.read_msr());
    spin(PRELOAD);
    irq::disable();
    let status = if cfg.version >= 2 {
        r(IA32_PERF_GLOBAL_STATUS)
    } else {
        0
    };
    c.stop(cfg);
    // Unmasking afterwards must not deliver a stale PMI either.
    lapic::set_lvt_perf(u32::from(PMI_VECTOR));
    irq::enable();
    spin(PRELOAD);
    irq::disable();
    let after = counts();
    agg::check(
        format_args!("masked LVTPC: overflow with INT delivers nothing (nor after unmask)"),
        after == before && v < 1 << 47,
        format_args!("(NMIs, vector PMIs) {before:?} -> {after:?}, counter {v:#x}"),
    );
    if cfg.version >= 2 {
        agg::eq(
            format_args!("masked LVTPC: IA32_PERF_GLOBAL_STATUS still records the overflow"),
            status,
            c.bit(),
        );
    }
    reset(cfg);
}

fn status_set_no_pmi(cfg: &Config) {
    reset(cfg);
    lapic::set_lvt_perf(lapic::LVT_NMI);
    let before = counts();
    let a = try_wrmsr(IA32_PERF_GLOBAL_STATUS_SET, cfg.counter_mask());
    irq::enable();
    spin(PRELOAD);
    irq::disable();
    let after = counts();
    agg::check(
        format_args!("STATUS_SET sets status bits without raising a PMI"),
        a.is_ok() && after == before && r(IA32_PERF_GLOBAL_STATUS) == cfg.counter_mask(),
        format_args!("wrmsr {a:x?}, PMIs {before:?} -> {after:?}"),
    );
    reset(cfg);
}

/// INT set but EN clear: the counter neither counts nor interrupts.
fn int_without_en(cfg: &Config) {
    reset(cfg);
    lapic::set_lvt_perf(lapic::LVT_NMI);
    let before = counts();
    let pre = (1u64 << 48) - PRELOAD;
    w(apmc_or_pmc(cfg, 0), pre);
    w(evtsel(0), CYCLES | OS | INT);
    irq::enable();
    spin(3 * PRELOAD);
    irq::disable();
    let v = r(pmc(0));
    let after = counts();
    agg::check(
        format_args!("INT without EN: counter neither counts nor raises a PMI"),
        v == pre && after == before,
        format_args!("counter {v:#x} (preloaded {pre:#x}), PMIs {before:?} -> {after:?}"),
    );
    reset(cfg);
}

/// A write that sets all 48 bits: IA32_A_PMCx with FW_WRITE, else the
/// legacy alias (whose sign extension reaches the same value when bit 31 of
/// the value is set).
fn apmc_or_pmc(cfg: &Config, i: u8) -> u32 {
    if cfg.fw {
        apmc(i)
    } else {
        pmc(i)
    }
}
