//! Counting: what counts (cycles, reference cycles, emulated instructions),
//! what does not (unavailable events, USR-only, locally or globally
//! disabled counters), monotonic reads. Runs on one CPU at a time so the
//! busy loops measure an uncontended vCPU thread.

use crate::agg;
use crate::pmu::*;
use guest_tests::io::inb;
use guest_tests::{rdtsc, try_rdmsr, try_wrmsr};

/// Busy-loop length of a rate measurement, in TSC ticks (~5 ms).
const N: u64 = 13_000_000;
/// Attempts per rate measurement: a window in which the host ran the vCPU
/// thread for only a sliver of the time may miss the floor.
const ATTEMPTS: u32 = 10;
/// Upper bound of counted cycles, in percent of the TSC ticks of the
/// window: a vCPU thread cannot run longer than the wall time (emulated
/// cycles come from its CPU time, at the TSC rate).
pub const HIGH: u64 = 120;
/// Lower bound, in percent of the TSC ticks: far below what a thread sharing
/// a CPU with busy neighbours gets (a third or more), so it holds under host
/// load, yet a dead or stalled counter misses it.
pub const FLOOR: u64 = 1;
/// Two counters of the same event over the same window agree within this
/// many percent (of the larger). Both count the same vCPU thread's time, so
/// host load, which stops both, does not change it.
pub const AGREE: u64 = 5;

/// Counts of one or two counters over one busy loop, and the TSC ticks of
/// the window (which encloses every read).
#[derive(Clone, Copy, Default)]
pub struct Window {
    pub a: u64,
    pub b: Option<u64>,
    pub ticks: u64,
}

impl Window {
    /// Deltas of counter MSRs `a` and (if given) `b` over a busy loop of
    /// `len` TSC ticks; the counters are already running.
    pub fn measure(a: u32, b: Option<u32>, len: u64) -> Window {
        let t0 = rdtsc();
        let a0 = r(a);
        let b0 = b.map(r);
        spin(len);
        let a1 = r(a);
        let b1 = b.map(r);
        let ticks = rdtsc().wrapping_sub(t0).max(1);
        Window {
            a: a1.wrapping_sub(a0) & MASK48,
            b: b0.zip(b1).map(|(x, y)| y.wrapping_sub(x) & MASK48),
            ticks,
        }
    }

    fn pct(&self, v: u64) -> u64 {
        v * 100 / self.ticks
    }

    fn in_band(&self, v: u64) -> bool {
        (FLOOR..=HIGH).contains(&self.pct(v))
    }

    /// The two counts differ by at most AGREE % of the larger.
    pub fn agree(&self) -> bool {
        self.b
            .is_none_or(|b| self.a.abs_diff(b) * 100 <= AGREE * self.a.max(b))
    }

    /// Every count within FLOOR..=HIGH % of the TSC ticks, and the two agree.
    pub fn good(&self) -> bool {
        self.in_band(self.a) && self.b.is_none_or(|b| self.in_band(b)) && self.agree()
    }
}

impl core::fmt::Display for Window {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({}%)", self.a, self.pct(self.a))?;
        if let Some(b) = self.b {
            write!(f, " vs {} ({}%)", b, self.pct(b))?;
        }
        write!(f, " in {} TSC ticks", self.ticks)
    }
}

/// Rate check of a counter (MSR `a`) counting cycles, optionally against a
/// second counter (MSR `b`) of the same event over the same window: both
/// within FLOOR..=HIGH % of the TSC ticks and agreeing within AGREE %
/// (the diagnostic shows both counts).
/// Retried a few times (a window the host hardly ran the vCPU in may miss
/// the floor); the check itself does not depend on the host's load.
pub fn rate_check(what: core::fmt::Arguments, a: u32, b: Option<u32>) {
    let mut m = Window::measure(a, b, N);
    for _ in 1..ATTEMPTS {
        if m.good() {
            break;
        }
        m = Window::measure(a, b, N);
    }
    agg::check(
        format_args!(
            "{what}: {FLOOR}-{HIGH}% of TSC{}",
            if b.is_some() {
                ", agrees with a second counter"
            } else {
                ""
            }
        ),
        m.good(),
        format_args!("{m}"),
    );
}

/// About 50 ms of TSC time at the usual 2-3 GHz.
const LONG: u64 = 130_000_000;

/// Core cycles on GP counter 0 and fixed counter 1 at once over a ~50 ms
/// busy loop, read ten times: both monotonic, agreeing within AGREE %, and
/// within FLOOR..=HIGH % of the TSC delta (up to ten tries: a window the
/// host hardly ran the vCPU thread in may miss the floor).
fn core_cycles_together(cfg: &Config) {
    let mut m = (Window::default(), false);
    for _ in 0..10 {
        w(evtsel(0), 0);
        w(pmc(0), 0);
        w(IA32_FIXED_CTR_CTRL, 0);
        w(fixed_ctr(1), 0);
        w(evtsel(0), CYCLES | EN | OS);
        w(IA32_FIXED_CTR_CTRL, nibble(1, F_OS));
        global_enable(cfg, cfg.gp_mask() | fixed_bit(1));
        let t0 = rdtsc();
        let (g0, f0) = (r(pmc(0)), r(fixed_ctr(1)));
        let (mut last_g, mut last_f, mut monotonic) = (g0, f0, true);
        for _ in 0..10 {
            spin(LONG / 10);
            let (g, f) = (r(pmc(0)), r(fixed_ctr(1)));
            monotonic &= g >= last_g && f >= last_f;
            (last_g, last_f) = (g, f);
        }
        let ticks = rdtsc().wrapping_sub(t0).max(1);
        let window = Window {
            a: last_g.wrapping_sub(g0) & MASK48,
            b: Some(last_f.wrapping_sub(f0) & MASK48),
            ticks,
        };
        m = (window, monotonic);
        if window.good() && monotonic {
            break;
        }
    }
    let (window, monotonic) = m;
    agg::check(
        format_args!("GP0 and IA32_FIXED_CTR1 count core cycles together over ~50 ms: agree within {AGREE}%, {FLOOR}-{HIGH}% of TSC, monotonic"),
        window.good() && monotonic,
        format_args!("GP0 vs fixed1: {window}, monotonic {monotonic}"),
    );
}

/// Program GP counter `i` with `sel` (and globally enable it), from 0.
fn gp_start(cfg: &Config, i: u8, sel: u64) {
    w(evtsel(i), 0);
    w(pmc(i), 0);
    w(evtsel(i), sel);
    global_enable(cfg, cfg.gp_mask());
}

fn fixed_start(cfg: &Config, i: u8, nib: u64) {
    w(IA32_FIXED_CTR_CTRL, 0);
    w(fixed_ctr(i), 0);
    w(IA32_FIXED_CTR_CTRL, nibble(i, nib));
    global_enable(cfg, cfg.gp_mask() | fixed_bit(i));
}

pub fn per_cpu(_cpu: u32) {
    let cfg = Config::get();
    reset(&cfg);
    rates(&cfg);
    instructions(&cfg);
    not_counting(&cfg);
    enables(&cfg);
    monotonic(&cfg);
    reset(&cfg);
}

/// Cycle rates, load-proof: each cycles counter is measured against a
/// second counter of the same event over the same window where one exists
/// (another GP counter, else the fixed counter), the TSC serving only as an
/// upper bound and a floor a live counter always clears.
fn rates(cfg: &Config) {
    let gp = cfg.gp();
    let other = gp - 1;
    // GP counter 0 on `sel`, with GP counter `gp - 1` on the same event when
    // there are two, else the fixed counter `fixed` (if enumerated) on
    // `nib`: the partner's MSR.
    let start = |sel: u64, fixed: u8, nib: u64| -> Option<u32> {
        reset(cfg);
        w(evtsel(0), sel);
        if other > 0 {
            w(evtsel(other), sel);
            global_enable(cfg, cfg.gp_mask());
            Some(pmc(other))
        } else if cfg.fixed() > fixed {
            w(IA32_FIXED_CTR_CTRL, nibble(fixed, nib));
            global_enable(cfg, cfg.gp_mask() | fixed_bit(fixed));
            Some(fixed_ctr(fixed))
        } else {
            global_enable(cfg, cfg.gp_mask());
            None
        }
    };
    let partner = start(CYCLES | EN | OS, 1, F_OS);
    rate_check(
        format_args!("GP counter, core cycles (3CH/00H)"),
        pmc(0),
        partner,
    );
    let partner = start(REF_CYCLES | EN | OS | USR, 2, F_OS | F_USR);
    rate_check(
        format_args!("GP counter, reference cycles (3CH/01H)"),
        pmc(0),
        partner,
    );
    reset(cfg);
    // Every GP counter counts cycles: something, and no more than the TSC
    // time the whole sequence took (the vCPU's time cannot exceed it).
    let t0 = rdtsc();
    for i in 0..gp {
        gp_start(cfg, i, CYCLES | EN | OS);
    }
    spin(N / 25);
    let values: [u64; 8] = core::array::from_fn(|i| {
        if i < usize::from(gp) {
            w(evtsel(i as u8), 0);
            r(pmc(i as u8))
        } else {
            0
        }
    });
    let bound = rdtsc().wrapping_sub(t0) / 100 * 101;
    let mut bad = None;
    for (i, &v) in values.iter().enumerate().take(usize::from(gp)) {
        if !(1..=bound).contains(&v) && bad.is_none() {
            bad = Some((i, v, bound));
        }
    }
    agg::check(
        format_args!("all {gp} GP counters count cycles at once"),
        bad.is_none(),
        format_args!("(counter, value, TSC ticks of the sequence) {bad:?}"),
    );
    reset(cfg);
    if cfg.fixed() > 1 {
        core_cycles_together(cfg);
    }
    // Fixed counters against GP counter 0 on the same event.
    for (i, nib, sel, what) in [
        (1, F_OS, CYCLES | EN | OS, "core cycles"),
        (
            2,
            F_OS | F_USR,
            REF_CYCLES | EN | OS | USR,
            "reference cycles",
        ),
    ] {
        if cfg.fixed() > i {
            reset(cfg);
            w(IA32_FIXED_CTR_CTRL, nibble(i, nib));
            w(evtsel(0), sel);
            global_enable(cfg, cfg.gp_mask() | fixed_bit(i));
            rate_check(
                format_args!("IA32_FIXED_CTR{i} ({what}) vs GP counter 0"),
                fixed_ctr(i),
                Some(pmc(0)),
            );
        }
    }
    reset(cfg);
}

/// Where instructions retired is available, the instructions the VMM
/// emulates count too (as KVM counts the ones it emulates): every successful
/// trapped RDMSR/WRMSR and port access, not a faulting one, so a counter
/// grows by at least that much (the host counts the guest's own instructions
/// on top). Where CPUID says it is unavailable, it reads zero, emulated
/// accesses included.
fn instructions(cfg: &Config) {
    const K: u64 = 10;
    let available = cfg.available(1);
    // The delta a check expects: exactly 0 when unavailable, at least
    // `emulated` otherwise.
    let delta = |name: core::fmt::Arguments, got: u64, emulated: u64| {
        if available {
            agg::check(name, got >= emulated, format_args!("{got} < {emulated}"));
        } else {
            agg::eq(format_args!("{name} [unavailable here: reads 0]"), got, 0);
        }
    };
    gp_start(cfg, 0, INSTRUCTIONS | EN | OS);
    let c0 = r(pmc(0));
    for _ in 0..K {
        let _ = try_rdmsr(evtsel(0));
    }
    let c1 = r(pmc(0));
    delta(
        format_args!("instructions (C0H): +1 per emulated RDMSR ({K} reads + 1)"),
        c1.wrapping_sub(c0),
        K + 1,
    );
    let c0 = r(pmc(0));
    for _ in 0..K {
        // Rewrites the running counter's own event select unchanged.
        let _ = try_wrmsr(evtsel(0), INSTRUCTIONS | EN | OS);
    }
    let c1 = r(pmc(0));
    delta(
        format_args!("instructions: +1 per emulated WRMSR ({K} writes + 1)"),
        c1.wrapping_sub(c0),
        K + 1,
    );
    let c0 = r(pmc(0));
    for _ in 0..K {
        let _ = try_wrmsr(IA32_PERF_CAPABILITIES, 0);
    }
    let c1 = r(pmc(0));
    delta(
        format_args!("instructions: a WRMSR that #GPs does not retire"),
        c1.wrapping_sub(c0),
        1,
    );
    // An RDMSR of an MSR the configuration lacks (#GP) does not retire.
    let absent = [
        (cfg.fixed() < 4).then(|| fixed_ctr(cfg.fixed())),
        (!cfg.fw).then_some(IA32_A_PMC0),
        (cfg.gp() < 8).then(|| evtsel(cfg.gp())),
        (cfg.version < 4).then_some(IA32_PERF_GLOBAL_INUSE),
    ];
    if let Some(m) = absent.into_iter().flatten().next() {
        let c0 = r(pmc(0));
        for _ in 0..K {
            let _ = try_rdmsr(m);
        }
        let c1 = r(pmc(0));
        delta(
            format_args!("instructions: an RDMSR that #GPs does not retire"),
            c1.wrapping_sub(c0),
            1,
        );
    }
    let c0 = r(pmc(0));
    for _ in 0..K {
        inb(0x3FD);
    }
    let c1 = r(pmc(0));
    delta(
        format_args!("instructions: +1 per emulated port read (serial LSR)"),
        c1.wrapping_sub(c0),
        K + 1,
    );
    // Only the OS bit counts at CPL 0.
    gp_start(cfg, 0, INSTRUCTIONS | EN | USR);
    for _ in 0..K {
        let _ = try_rdmsr(evtsel(0));
    }
    agg::eq(
        format_args!("instructions: USR-only counter does not count at CPL 0"),
        r(pmc(0)),
        0,
    );
    w(evtsel(0), 0);
    if cfg.fixed() > 0 {
        fixed_start(cfg, 0, F_OS);
        let c0 = r(fixed_ctr(0));
        for _ in 0..K {
            let _ = try_rdmsr(IA32_PERF_GLOBAL_CTRL);
        }
        let c1 = r(fixed_ctr(0));
        delta(
            format_args!("IA32_FIXED_CTR0 (instructions): +1 per emulated RDMSR"),
            c1.wrapping_sub(c0),
            K + 1,
        );
    }
    reset(cfg);
}

fn not_counting(cfg: &Config) {
    // Unavailable architectural events read zero (instructions retired is
    // checked around emulated accesses above).
    let mut tested = 0;
    let mut bad = None;
    for (i, &(name, code)) in ARCH_EVENTS.iter().enumerate() {
        if i == 1 || i >= usize::from(cfg.ebx_len) || cfg.available(i as u32) {
            continue;
        }
        gp_start(cfg, 0, code | EN | OS | USR);
        spin(N / 10);
        let v = r(pmc(0));
        tested += 1;
        if v != 0 && bad.is_none() {
            bad = Some((name, v));
        }
    }
    agg::check(
        format_args!("{tested} unavailable architectural events read 0 while enabled"),
        bad.is_none(),
        format_args!("{bad:x?}"),
    );
    gp_start(cfg, 0, 0x0100 | 0xB7 | EN | OS);
    spin(N / 10);
    agg::eq(
        format_args!("a non-architectural event (B7H/01H) reads 0 while enabled"),
        r(pmc(0)),
        0,
    );
    gp_start(cfg, 0, CYCLES | EN | USR);
    spin(N / 10);
    agg::eq(
        format_args!("USR-only cycles counter does not count at CPL 0"),
        r(pmc(0)),
        0,
    );
    gp_start(cfg, 0, CYCLES | OS | USR);
    spin(N / 10);
    agg::eq(
        format_args!("cycles counter without EN does not count"),
        r(pmc(0)),
        0,
    );
    gp_start(cfg, 0, CYCLES | EN);
    spin(N / 10);
    agg::eq(
        format_args!("cycles counter with EN but neither OS nor USR does not count"),
        r(pmc(0)),
        0,
    );
    w(evtsel(0), 0);
    if cfg.fixed() > 1 {
        fixed_start(cfg, 1, F_USR);
        spin(N / 10);
        agg::eq(
            format_args!("USR-only IA32_FIXED_CTR1 does not count at CPL 0"),
            r(fixed_ctr(1)),
            0,
        );
        fixed_start(cfg, 1, F_PMI);
        spin(N / 10);
        agg::eq(
            format_args!("IA32_FIXED_CTR1 with only the PMI bit does not count"),
            r(fixed_ctr(1)),
            0,
        );
    }
    reset(cfg);
}

fn enables(cfg: &Config) {
    // Local disable freezes the value.
    gp_start(cfg, 0, CYCLES | EN | OS);
    spin(N / 10);
    w(evtsel(0), CYCLES | OS);
    let a = r(pmc(0));
    spin(N / 10);
    let b = r(pmc(0));
    agg::check(
        format_args!("clearing EN stops a running counter (value frozen)"),
        a > 0 && a == b,
        format_args!("{a:#x} then {b:#x}"),
    );
    if cfg.version < 2 {
        agg::check(
            format_args!("v1: EN alone starts counting (no global control)"),
            a > 0,
            format_args!("{a:#x}"),
        );
        reset(cfg);
        return;
    }
    // Global disable.
    w(pmc(0), 0);
    w(IA32_PERF_GLOBAL_CTRL, 0);
    w(evtsel(0), CYCLES | EN | OS);
    spin(N / 10);
    agg::eq(
        format_args!("IA32_PERF_GLOBAL_CTRL bit clear: locally enabled GP counter does not count"),
        r(pmc(0)),
        0,
    );
    w(IA32_PERF_GLOBAL_CTRL, 1);
    spin(N / 10);
    w(IA32_PERF_GLOBAL_CTRL, 0);
    let a = r(pmc(0));
    spin(N / 10);
    let b = r(pmc(0));
    agg::check(
        format_args!("IA32_PERF_GLOBAL_CTRL set then cleared: counts, then stops (value frozen)"),
        a > 0 && a == b,
        format_args!("{a:#x} then {b:#x}"),
    );
    w(evtsel(0), 0);
    if cfg.fixed() > 1 {
        w(fixed_ctr(1), 0);
        w(IA32_FIXED_CTR_CTRL, nibble(1, F_OS));
        spin(N / 10);
        let z = r(fixed_ctr(1));
        w(IA32_PERF_GLOBAL_CTRL, fixed_bit(1));
        spin(N / 10);
        w(IA32_PERF_GLOBAL_CTRL, 0);
        let a = r(fixed_ctr(1));
        spin(N / 10);
        let b = r(fixed_ctr(1));
        agg::check(
            format_args!("fixed counter counts only while its IA32_PERF_GLOBAL_CTRL bit is set"),
            z == 0 && a > 0 && a == b,
            format_args!("disabled {z:#x}, enabled {a:#x}, disabled again {b:#x}"),
        );
    }
    reset(cfg);
}

fn monotonic(cfg: &Config) {
    gp_start(cfg, 0, CYCLES | EN | OS);
    let mut prev = 0;
    let mut bad = None;
    for k in 0..200 {
        let v = r(pmc(0));
        if v < prev && bad.is_none() {
            bad = Some((k, prev, v));
        }
        prev = v;
    }
    agg::check(
        format_args!("200 back-to-back reads of a running cycles counter never decrease"),
        bad.is_none() && prev > 0,
        format_args!("(read, previous, value) {bad:x?}, last {prev:#x}"),
    );
    // A write to a running counter restarts it from the written value.
    w(pmc(0), 0x1000_0000);
    let v = r(pmc(0));
    agg::check(
        format_args!("write to a running counter restarts it from the written value"),
        (0x1000_0000..0x1000_0000 + N).contains(&v),
        format_args!("read {v:#x} after writing 0x10000000"),
    );
    w(evtsel(0), 0);
    if cfg.fixed() > 1 {
        fixed_start(cfg, 1, F_OS);
        let mut prev = 0;
        let mut bad = None;
        for k in 0..200 {
            let v = r(fixed_ctr(1));
            if v < prev && bad.is_none() {
                bad = Some((k, prev, v));
            }
            prev = v;
        }
        agg::check(
            format_args!("200 back-to-back reads of IA32_FIXED_CTR1 never decrease"),
            bad.is_none() && prev > 0,
            format_args!("(read, previous, value) {bad:x?}, last {prev:#x}"),
        );
    }
    reset(cfg);
}
