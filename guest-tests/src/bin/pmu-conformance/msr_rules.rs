//! MSR semantics: existence per version and counts, reset values, reserved
//! bits, read-only registers, counter write widths, STATUS_SET/RESET, INUSE.
//! Runs on every CPU (each vCPU has its own PMU).

use crate::agg;
use crate::pmu::*;
use guest_tests::sync::Barrier;
use guest_tests::{try_rdmsr, try_wrmsr};

/// The first index of `0..n` for which `f` is false, if any.
fn first_bad(n: u32, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
    (0..n).find(|&i| !f(i))
}

fn is_gp<T>(r: Result<T, guest_tests::Fault>) -> bool {
    matches!(r, Err(f) if f.is_gp())
}

/// rdmsr works iff `exists`; wrmsr of 0 #GPs when it does not exist.
fn exists_rw(msr: u32, exists: bool) -> bool {
    let rd = try_rdmsr(msr);
    if exists {
        rd.is_ok()
    } else {
        is_gp(rd) && is_gp(try_wrmsr(msr, 0))
    }
}

fn family(name: &str, base: u32, n: u32, exists: impl Fn(u32) -> bool) {
    let bad = first_bad(n, |i| exists_rw(base + i, exists(i)));
    agg::check(
        format_args!("{name} exist exactly for the enumerated counters"),
        bad.is_none(),
        format_args!(
            "wrong at index {bad:?} (msr {:#x})",
            base + bad.unwrap_or(0)
        ),
    );
}

pub fn per_cpu(_cpu: u32) {
    let cfg = Config::get();
    reset_values(&cfg);
    existence(&cfg);
    evtsel_rules(&cfg);
    if cfg.version >= 2 {
        fixed_ctrl_rules(&cfg);
        global_ctrl_rules(&cfg);
    }
    read_only_rules(&cfg);
    counter_writes(&cfg);
    if cfg.version >= 2 {
        ovf_ctrl_rules(&cfg);
    }
    if cfg.version >= 4 {
        status_set_rules(&cfg);
        inuse_rules(&cfg);
    }
    per_vcpu_state(&cfg, _cpu);
    reset(&cfg);
}

static BARRIER: Barrier = Barrier::all_cpus();

/// Every vCPU has its own PMU: values written on one CPU are not seen by
/// another (all CPUs run this at the same time).
fn per_vcpu_state(cfg: &Config, cpu: u32) {
    let mine = 0x1000 + u64::from(cpu);
    w(pmc(0), mine);
    w(evtsel(0), u64::from(cpu) << 8);
    BARRIER.wait();
    let got = (r(pmc(0)), r(evtsel(0)));
    BARRIER.wait();
    agg::check(
        format_args!("PMU state is per vCPU (IA32_PMC0/PERFEVTSEL0 written on every CPU)"),
        got == (mine, u64::from(cpu) << 8),
        format_args!(
            "read {got:x?}, wrote ({mine:#x}, {:#x})",
            u64::from(cpu) << 8
        ),
    );
    w(evtsel(0), 0);
    w(pmc(0), 0);
    let _ = cfg;
}

fn reset_values(cfg: &Config) {
    let gp = u32::from(cfg.gp());
    let bad = first_bad(gp, |i| {
        try_rdmsr(evtsel(i as u8)) == Ok(0) && try_rdmsr(pmc(i as u8)) == Ok(0)
    });
    agg::check(
        format_args!("reset: IA32_PERFEVTSELx and IA32_PMCx read 0"),
        bad.is_none(),
        format_args!("counter {bad:?}"),
    );
    if cfg.fixed() > 0 {
        let bad = first_bad(u32::from(cfg.fixed()), |i| {
            try_rdmsr(fixed_ctr(i as u8)) == Ok(0)
        });
        agg::check(
            format_args!("reset: IA32_FIXED_CTRx read 0"),
            bad.is_none(),
            format_args!("counter {bad:?}"),
        );
    }
    if cfg.version >= 2 {
        agg::eq(
            format_args!("reset: IA32_PERF_GLOBAL_CTRL = GP enable bits set, fixed clear"),
            r(IA32_PERF_GLOBAL_CTRL),
            cfg.gp_mask(),
        );
        agg::eq(
            format_args!("reset: IA32_PERF_GLOBAL_STATUS = 0"),
            r(IA32_PERF_GLOBAL_STATUS),
            0,
        );
        agg::eq(
            format_args!("reset: IA32_FIXED_CTR_CTRL = 0"),
            r(IA32_FIXED_CTR_CTRL),
            0,
        );
    }
    if cfg.version >= 4 {
        agg::eq(
            format_args!("reset: IA32_PERF_GLOBAL_INUSE = 0"),
            r(IA32_PERF_GLOBAL_INUSE),
            0,
        );
    }
}

fn existence(cfg: &Config) {
    let gp = u32::from(cfg.gp());
    let fixed = u32::from(cfg.fixed());
    let v = cfg.version;
    family("IA32_PMC0..7", IA32_PMC0, 8, |i| i < gp);
    family("IA32_PERFEVTSEL0..7", IA32_PERFEVTSEL0, 8, |i| i < gp);
    family(
        if cfg.fw {
            "IA32_A_PMC0..7 (FW_WRITE on)"
        } else {
            "IA32_A_PMC0..7 (FW_WRITE off: none)"
        },
        IA32_A_PMC0,
        8,
        |i| cfg.fw && i < gp,
    );
    family("IA32_FIXED_CTR0..3", IA32_FIXED_CTR0, 4, |i| i < fixed);
    let v2 = [
        (IA32_FIXED_CTR_CTRL, "IA32_FIXED_CTR_CTRL"),
        (IA32_PERF_GLOBAL_STATUS, "IA32_PERF_GLOBAL_STATUS"),
        (IA32_PERF_GLOBAL_CTRL, "IA32_PERF_GLOBAL_CTRL"),
        (IA32_PERF_GLOBAL_OVF_CTRL, "IA32_PERF_GLOBAL_OVF_CTRL"),
    ];
    let bad = v2.iter().find(|(m, _)| !exists_rw(*m, v >= 2));
    agg::check(
        format_args!(
            "global MSRs 0x38D-0x390 {} in version {v}",
            if v >= 2 { "exist" } else { "#GP" }
        ),
        bad.is_none(),
        format_args!("wrong: {:?}", bad.map(|b| b.1)),
    );
    let v4 = [
        (IA32_PERF_GLOBAL_STATUS_SET, "IA32_PERF_GLOBAL_STATUS_SET"),
        (IA32_PERF_GLOBAL_INUSE, "IA32_PERF_GLOBAL_INUSE"),
    ];
    let bad = v4.iter().find(|(m, _)| !exists_rw(*m, v >= 4));
    agg::check(
        format_args!(
            "STATUS_SET/INUSE (0x391/0x392) {} in version {v}",
            if v >= 4 { "exist" } else { "#GP" }
        ),
        bad.is_none(),
        format_args!("wrong: {:?}", bad.map(|b| b.1)),
    );
    let caps = try_rdmsr(IA32_PERF_CAPABILITIES);
    agg::check(
        format_args!("IA32_PERF_CAPABILITIES readable, only FW_WRITE may be set"),
        matches!(caps, Ok(c) if c & !PERF_CAP_FW_WRITE == 0),
        format_args!("got {caps:x?}"),
    );
    // Neighbours outside the PMU space are not PMU MSRs the VMM emulates;
    // MSRs just past the configured counters must #GP.
    if gp < 8 {
        agg::gp(
            format_args!("wrmsr IA32_PERFEVTSEL{gp} (first absent) #GP"),
            try_wrmsr(evtsel(gp as u8), EN | OS | CYCLES),
        );
    }
}

fn evtsel_rules(cfg: &Config) {
    let gp = cfg.gp();
    // Every architecturally defined bit except EN (so nothing counts).
    let val = CYCLES | USR | OS | EDGE | PC | INT | INV | (0x5A << 24);
    let bad = first_bad(u32::from(gp), |i| {
        let m = evtsel(i as u8);
        let ok = try_wrmsr(m, val).is_ok() && try_rdmsr(m) == Ok(val);
        w(m, 0);
        ok
    });
    agg::check(
        format_args!("IA32_PERFEVTSELx: defined bits 31:0 (except AnyThread) read back"),
        bad.is_none(),
        format_args!("counter {bad:?}"),
    );
    let last = evtsel(gp - 1);
    w(last, CYCLES);
    let bad = first_bad(32, |b| {
        is_gp(try_wrmsr(last, CYCLES | 1 << (32 + b))) && try_rdmsr(last) == Ok(CYCLES)
    });
    agg::check(
        format_args!("IA32_PERFEVTSELx bits 63:32 reserved (#GP, value kept)"),
        bad.is_none(),
        format_args!("bit {:?} accepted or value changed", bad.map(|b| b + 32)),
    );
    let any = try_wrmsr(last, CYCLES | ANY);
    if cfg.version >= 3 {
        agg::check(
            format_args!("IA32_PERFEVTSELx AnyThread accepted in v3+"),
            any.is_ok() && try_rdmsr(last) == Ok(CYCLES | ANY),
            format_args!("wrmsr {any:x?}, read {:x?}", try_rdmsr(last)),
        );
    } else {
        agg::gp(
            format_args!("IA32_PERFEVTSELx AnyThread reserved before v3 (#GP)"),
            any,
        );
    }
    w(last, 0);
}

fn fixed_ctrl_rules(cfg: &Config) {
    let n = cfg.fixed();
    let mut all = 0;
    for i in 0..n {
        all |= nibble(i, F_OS | F_USR | F_PMI);
    }
    let wr = try_wrmsr(IA32_FIXED_CTR_CTRL, all);
    agg::check(
        format_args!("IA32_FIXED_CTR_CTRL: EN/PMI nibbles of {n} counters read back"),
        wr.is_ok() && r(IA32_FIXED_CTR_CTRL) == all,
        format_args!(
            "wrmsr {all:#x}: {wr:x?}, read {:#x}",
            r(IA32_FIXED_CTR_CTRL)
        ),
    );
    w(IA32_FIXED_CTR_CTRL, 0);
    if n > 0 {
        let any = try_wrmsr(IA32_FIXED_CTR_CTRL, nibble(0, F_OS | F_ANY));
        if cfg.version >= 3 {
            agg::check(
                format_args!("IA32_FIXED_CTR_CTRL AnyThread accepted in v3+"),
                any.is_ok() && r(IA32_FIXED_CTR_CTRL) == nibble(0, F_OS | F_ANY),
                format_args!("wrmsr {any:x?}, read {:#x}", r(IA32_FIXED_CTR_CTRL)),
            );
        } else {
            agg::gp(
                format_args!("IA32_FIXED_CTR_CTRL AnyThread reserved before v3 (#GP)"),
                any,
            );
        }
        w(IA32_FIXED_CTR_CTRL, 0);
    }
    // Nibbles of absent counters and everything above bit 15.
    let bad = first_bad(64 - 4 * u32::from(n), |b| {
        let bit = 4 * u32::from(n) + b;
        is_gp(try_wrmsr(IA32_FIXED_CTR_CTRL, 1 << bit))
    });
    agg::check(
        format_args!("IA32_FIXED_CTR_CTRL bits of absent counters reserved (#GP)"),
        bad.is_none() && r(IA32_FIXED_CTR_CTRL) == 0,
        format_args!("bit {:?} accepted", bad.map(|b| b + 4 * u32::from(n))),
    );
}

fn global_ctrl_rules(cfg: &Config) {
    let mask = cfg.counter_mask();
    let wr = try_wrmsr(IA32_PERF_GLOBAL_CTRL, mask);
    agg::check(
        format_args!("IA32_PERF_GLOBAL_CTRL: enable bits of every counter read back"),
        wr.is_ok() && r(IA32_PERF_GLOBAL_CTRL) == mask,
        format_args!(
            "wrmsr {mask:#x}: {wr:x?}, read {:#x}",
            r(IA32_PERF_GLOBAL_CTRL)
        ),
    );
    let bad = first_bad(64, |b| {
        mask & (1 << b) != 0 || is_gp(try_wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << b))
    });
    agg::check(
        format_args!("IA32_PERF_GLOBAL_CTRL bits of absent counters reserved (#GP)"),
        bad.is_none() && r(IA32_PERF_GLOBAL_CTRL) == mask,
        format_args!("bit {bad:?} accepted or value changed"),
    );
    w(IA32_PERF_GLOBAL_CTRL, 0);
    agg::eq(
        format_args!("IA32_PERF_GLOBAL_CTRL = 0 reads back"),
        r(IA32_PERF_GLOBAL_CTRL),
        0,
    );
    w(IA32_PERF_GLOBAL_CTRL, cfg.gp_mask());
}

fn read_only_rules(cfg: &Config) {
    let caps = r(IA32_PERF_CAPABILITIES);
    let a = try_wrmsr(IA32_PERF_CAPABILITIES, caps);
    let b = try_wrmsr(IA32_PERF_CAPABILITIES, caps ^ PERF_CAP_FW_WRITE);
    agg::check(
        format_args!("IA32_PERF_CAPABILITIES is read-only (#GP, value kept)"),
        is_gp(a) && is_gp(b) && r(IA32_PERF_CAPABILITIES) == caps,
        format_args!("same value: {a:x?}, flipped FW_WRITE: {b:x?}"),
    );
    if cfg.version >= 2 {
        let a = try_wrmsr(IA32_PERF_GLOBAL_STATUS, 0);
        let b = try_wrmsr(IA32_PERF_GLOBAL_STATUS, 1);
        agg::check(
            format_args!("IA32_PERF_GLOBAL_STATUS is read-only (#GP)"),
            is_gp(a) && is_gp(b) && r(IA32_PERF_GLOBAL_STATUS) == 0,
            format_args!("wrmsr 0: {a:x?}, wrmsr 1: {b:x?}"),
        );
    }
    if cfg.version >= 4 {
        let a = try_wrmsr(IA32_PERF_GLOBAL_INUSE, 0);
        agg::gp(format_args!("IA32_PERF_GLOBAL_INUSE is read-only (#GP)"), a);
    }
}

fn counter_writes(cfg: &Config) {
    let gp = cfg.gp();
    let cases: [(u64, u64); 5] = [
        (0x8000_0000, 0xFFFF_8000_0000),
        (0x7FFF_FFFF, 0x7FFF_FFFF),
        (0xFFFF_FFFF, MASK48),
        (0xFFFF_FFFF_8765_4321, 0xFFFF_8765_4321),
        (0xDEAD_BEEF_0000_1234, 0x1234),
    ];
    let mut diag = (0u8, 0u64, 0u64);
    let bad = first_bad(u32::from(gp), |i| {
        cases.iter().all(|&(wv, want)| {
            let m = pmc(i as u8);
            let got = try_wrmsr(m, wv).and_then(|_| try_rdmsr(m));
            diag = (i as u8, wv, got.unwrap_or(u64::MAX));
            got == Ok(want)
        })
    });
    agg::check(
        format_args!("IA32_PMCx write: bits 31:0 sign-extended to 48 bits"),
        bad.is_none(),
        format_args!("PMC{} wrmsr {:#x} read {:#x}", diag.0, diag.1, diag.2),
    );
    if cfg.fw {
        let val = 0x8765_4321_0FED;
        let bad = first_bad(u32::from(gp), |i| {
            let i = i as u8;
            try_wrmsr(apmc(i), val).is_ok()
                && try_rdmsr(apmc(i)) == Ok(val)
                && try_rdmsr(pmc(i)) == Ok(val)
        });
        agg::check(
            format_args!("IA32_A_PMCx write takes all 48 bits (read via A_PMC and PMC)"),
            bad.is_none(),
            format_args!("counter {bad:?}"),
        );
        let m = apmc(gp - 1);
        let a = try_wrmsr(m, 1 << 48);
        let b = try_wrmsr(m, 1 << 63);
        agg::check(
            format_args!("IA32_A_PMCx write above bit 47 #GPs, value kept"),
            is_gp(a) && is_gp(b) && r(m) == val,
            format_args!("bit 48: {a:x?}, bit 63: {b:x?}, value {:#x}", r(m)),
        );
        w(m, MASK48);
        agg::eq(
            format_args!("IA32_A_PMCx write of 2^48-1 reads back"),
            r(m),
            MASK48,
        );
    }
    for i in 0..gp {
        w(pmc(i), 0);
    }
    if cfg.fixed() > 0 {
        let cases: [u64; 3] = [0x8765_4321_0FED, 0xFFFF_FFFF, MASK48];
        let mut diag = (0u8, 0u64, 0u64);
        let bad = first_bad(u32::from(cfg.fixed()), |i| {
            cases.iter().all(|&v| {
                let m = fixed_ctr(i as u8);
                let got = try_wrmsr(m, v).and_then(|_| try_rdmsr(m));
                diag = (i as u8, v, got.unwrap_or(u64::MAX));
                got == Ok(v)
            })
        });
        agg::check(
            format_args!("IA32_FIXED_CTRx write takes 48 bits, no sign extension"),
            bad.is_none(),
            format_args!("FIXED_CTR{} wrmsr {:#x} read {:#x}", diag.0, diag.1, diag.2),
        );
        for i in 0..cfg.fixed() {
            w(fixed_ctr(i), 0);
        }
    }
}

fn ovf_ctrl_rules(cfg: &Config) {
    let a = try_wrmsr(IA32_PERF_GLOBAL_OVF_CTRL, cfg.counter_mask() | 3 << 62);
    agg::check(
        format_args!("IA32_PERF_GLOBAL_OVF_CTRL accepts counter bits and 63:62, reads 0"),
        a.is_ok() && try_rdmsr(IA32_PERF_GLOBAL_OVF_CTRL) == Ok(0),
        format_args!(
            "wrmsr {a:x?}, read {:x?}",
            try_rdmsr(IA32_PERF_GLOBAL_OVF_CTRL)
        ),
    );
    let absent = if cfg.gp() < 32 {
        1u64 << cfg.gp()
    } else {
        1 << 31
    };
    agg::gp(
        format_args!("IA32_PERF_GLOBAL_OVF_CTRL bit of an absent counter #GPs"),
        try_wrmsr(IA32_PERF_GLOBAL_OVF_CTRL, absent),
    );
}

fn status_set_rules(cfg: &Config) {
    let mask = cfg.counter_mask();
    let a = try_wrmsr(IA32_PERF_GLOBAL_STATUS_SET, mask);
    agg::check(
        format_args!("STATUS_SET sets every counter's IA32_PERF_GLOBAL_STATUS bit"),
        a.is_ok() && r(IA32_PERF_GLOBAL_STATUS) == mask,
        format_args!(
            "wrmsr {a:x?}, status {:#x}, want {mask:#x}",
            r(IA32_PERF_GLOBAL_STATUS)
        ),
    );
    agg::eq(
        format_args!("STATUS_SET reads 0"),
        r(IA32_PERF_GLOBAL_STATUS_SET),
        0,
    );
    w(IA32_PERF_GLOBAL_OVF_CTRL, 1);
    agg::eq(
        format_args!("STATUS_RESET clears only the written bit (write-1-to-clear)"),
        r(IA32_PERF_GLOBAL_STATUS),
        mask & !1,
    );
    w(IA32_PERF_GLOBAL_STATUS_SET, 0);
    agg::eq(
        format_args!("STATUS_SET of 0 changes nothing"),
        r(IA32_PERF_GLOBAL_STATUS),
        mask & !1,
    );
    w(IA32_PERF_GLOBAL_OVF_CTRL, mask);
    agg::eq(
        format_args!("STATUS_RESET of all bits clears IA32_PERF_GLOBAL_STATUS"),
        r(IA32_PERF_GLOBAL_STATUS),
        0,
    );
    let absent = if cfg.gp() < 32 {
        1u64 << cfg.gp()
    } else {
        1 << 31
    };
    let a = try_wrmsr(IA32_PERF_GLOBAL_STATUS_SET, absent);
    agg::check(
        format_args!("STATUS_SET bit of an absent counter #GPs"),
        is_gp(a) && r(IA32_PERF_GLOBAL_STATUS) == 0,
        format_args!("wrmsr {absent:#x}: {a:x?}"),
    );
}

fn inuse_rules(cfg: &Config) {
    let last = cfg.gp() - 1;
    let lastbit = 1u64 << last;
    w(evtsel(last), CYCLES);
    agg::eq(
        format_args!("INUSE: PERFEVTSELx[7:0] != 0 sets bit x (without EN)"),
        r(IA32_PERF_GLOBAL_INUSE),
        lastbit,
    );
    w(evtsel(last), 0x0100);
    agg::eq(
        format_args!("INUSE: event select 0 with a unit mask leaves bit x clear"),
        r(IA32_PERF_GLOBAL_INUSE),
        0,
    );
    w(evtsel(last), INT);
    agg::eq(
        format_args!("INUSE: PERFEVTSELx.INT sets PMI_InUse (bit 63)"),
        r(IA32_PERF_GLOBAL_INUSE),
        1 << 63,
    );
    w(evtsel(last), 0);
    if cfg.fixed() > 0 {
        let f = cfg.fixed() - 1;
        w(IA32_FIXED_CTR_CTRL, nibble(f, F_OS));
        agg::eq(
            format_args!("INUSE: fixed counter EN field sets bit 32+i"),
            r(IA32_PERF_GLOBAL_INUSE),
            fixed_bit(f),
        );
        w(IA32_FIXED_CTR_CTRL, nibble(f, F_PMI));
        agg::eq(
            format_args!("INUSE: fixed PMI bit alone sets only PMI_InUse"),
            r(IA32_PERF_GLOBAL_INUSE),
            1 << 63,
        );
        w(IA32_FIXED_CTR_CTRL, 0);
    }
    agg::eq(
        format_args!("INUSE: 0 when nothing is programmed"),
        r(IA32_PERF_GLOBAL_INUSE),
        0,
    );
}
