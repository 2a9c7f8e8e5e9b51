//! The AMD64 PMU suite (APM vol. 2 §13.2; the contract is the project's
//! AMD-SPEC): CPUID enumeration, the legacy, core (PerfCtrCore) and global
//! (PerfMonV2) MSR rules, counting, overflow and PMIs. Selected when CPUID
//! leaf 0 says AuthenticAMD and the command line has `arch=amd` or CPUID
//! enumerates PerfCtrCore. `amd_version=N` and `gp=N` state what the VMM
//! was asked for (versions 0 and 1 cannot enumerate the counter count);
//! `vpmu=off` expects no PMU of either family.

use crate::agg;
use crate::counting::{rate_check, HIGH};
use crate::nopmu;
use crate::pmi::{self, counts, handler_state, wait_pmi, wait_wrap, PMI_VECTOR, PRELOAD};
use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::amd_pmu::*;
use guest_tests::pmu::CPUID_1_ECX_PDCM;
use guest_tests::sync::Barrier;
use guest_tests::{cmdline, cpuid, irq, lapic, msr, rdtsc, smp, try_rdmsr, try_wrmsr, Tap};

/// Whether the AMD suite runs (instead of the Intel one).
pub fn selected() -> bool {
    is_amd() && (cmdline::get("arch") == Some("amd") || AmdPmu::read().perf_ctr_core)
}

/// The AMD PMU under test: (vPMU on, version, GP counters), packed for the
/// APs.
static CFG: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy)]
struct Cfg {
    on: bool,
    version: u8,
    gp: u8,
}

impl Cfg {
    fn get() -> Cfg {
        let v = CFG.load(Ordering::SeqCst);
        Cfg {
            on: v & 1 != 0,
            version: (v >> 8) as u8,
            gp: (v >> 16) as u8,
        }
    }

    fn gp_mask(self) -> u64 {
        (1 << self.gp) - 1
    }

    /// The counter MSRs the suite programs: the core ones from version 1,
    /// else the legacy ones.
    fn ctl(self, i: u8) -> u32 {
        if self.version >= 1 {
            perf_ctl(i)
        } else {
            perf_evt_sel(i)
        }
    }

    fn ctr(self, i: u8) -> u32 {
        if self.version >= 1 {
            perf_ctr(i)
        } else {
            perf_ctr_legacy(i)
        }
    }
}

fn w(msr: u32, v: u64) {
    let _ = try_wrmsr(msr, v);
}

fn r(msr: u32) -> u64 {
    try_rdmsr(msr).unwrap_or(0)
}

/// Counters stopped and zero, GlobalCtl at its reset value, status clear,
/// LVTPC masked.
fn reset(cfg: Cfg) {
    lapic::set_lvt_perf(lapic::LVT_MASKED);
    for i in 0..cfg.gp {
        w(cfg.ctl(i), 0);
        w(cfg.ctr(i), 0);
    }
    if cfg.version >= 2 {
        w(PERF_CNTR_GLOBAL_STATUS_CLR, cfg.gp_mask());
        w(PERF_CNTR_GLOBAL_CTL, cfg.gp_mask());
    }
}

/// Core cycles, both privilege levels, enabled.
const CYCLES: u64 = EV_CORE_CYCLES | USR | OS | EN;

/// Run the whole suite (BSP); never returns.
pub fn run(tap: &Tap, run_each: fn(fn(u32))) -> ! {
    let pmu = AmdPmu::read();
    let on = cmdline::get("vpmu") != Some("off");
    let version = cmdline::get_u64("amd_version").map_or(pmu.version(), |v| v as u8);
    let gp = cmdline::get_u64("gp")
        .map_or(pmu.counters(), |v| v as u8)
        .min(6);
    CFG.store(
        u64::from(on) | u64::from(version) << 8 | u64::from(gp) << 16,
        Ordering::SeqCst,
    );
    let cpus = smp::boot_aps();
    guest_tests::println!(
        "# pmu-conformance (AMD): {cpus} cpus, vPMU {}, version {version}, {gp} counters",
        if on { "on" } else { "off" }
    );
    enumeration(tap, &pmu, Cfg::get());
    smp::run_on_all(per_cpu_cpuid);
    agg::flush(tap);
    let cfg = Cfg::get();
    tap.diag("Intel PMU MSRs");
    smp::run_on_all(|_| nopmu::check_all("Intel PMU MSR on an AMD guest"));
    agg::flush(tap);
    if !cfg.on {
        smp::run_on_all(no_pmu);
        agg::flush(tap);
        tap.finish();
    }
    tap.diag("MSR rules");
    smp::run_on_all(legacy_rules);
    agg::flush(tap);
    smp::run_on_all(core_rules);
    agg::flush(tap);
    smp::run_on_all(global_rules);
    smp::run_on_all(per_vcpu_state);
    agg::flush(tap);
    tap.diag("counting");
    run_each(counting);
    agg::flush(tap);
    tap.diag("overflow and PMIs");
    pmi::install_handlers((cfg.version >= 2).then_some(PERF_CNTR_GLOBAL_STATUS));
    run_each(overflow);
    agg::flush(tap);
    tap.finish()
}

/// BSP: the vendor and the AMD PMU CPUID bits match the configuration.
fn enumeration(tap: &Tap, pmu: &AmdPmu, cfg: Cfg) {
    tap.diag(format_args!(
        "CPUID 8000_0000h.EAX={:#x} PerfCtrCore={} 8000_0022h={:x?}",
        pmu.max_ext_leaf, pmu.perf_ctr_core, pmu.leaf_22
    ));
    tap.check_eq("CPUID leaf 0 vendor is AuthenticAMD", is_amd(), true);
    let l1 = cpuid(1, 0);
    tap.check_eq(
        "CPUID.01H:ECX.PDCM clear (no IA32_PERF_CAPABILITIES)",
        l1.ecx & CPUID_1_ECX_PDCM,
        0,
    );
    let a = if cpuid(0, 0).eax >= 0xA {
        let l = cpuid(0xA, 0);
        [l.eax, l.ebx, l.ecx, l.edx]
    } else {
        [0; 4]
    };
    tap.check_eq("CPUID.0AH (Intel PMU) is all zero", a, [0; 4]);
    let want_core = cfg.on && cfg.version >= 1;
    let want_v2 = cfg.on && cfg.version >= 2;
    tap.check_eq(
        format_args!("CPUID 8000_0001h.ECX[23] PerfCtrCore = {want_core}"),
        pmu.perf_ctr_core,
        want_core,
    );
    tap.check_eq(
        format_args!("CPUID 8000_0022h.EAX[0] PerfMonV2 = {want_v2}"),
        pmu.perfmon_v2,
        want_v2,
    );
    if want_v2 {
        tap.check(
            "CPUID 8000_0000h.EAX reaches leaf 8000_0022h",
            pmu.max_ext_leaf >= 0x8000_0022,
        );
        tap.check_eq(
            format_args!("CPUID 8000_0022h.EBX[3:0] = {} core counters", cfg.gp),
            pmu.v2_counters(),
            cfg.gp,
        );
    } else {
        tap.check_eq("CPUID 8000_0022h is all zero", pmu.leaf_22, [0; 4]);
    }
    if cfg.on {
        tap.check_eq(
            "CPUID-derived AMD PMU version matches amd_version=",
            pmu.version(),
            cfg.version,
        );
    }
}

fn per_cpu_cpuid(_cpu: u32) {
    let bsp = AmdPmu::read();
    // Every CPU reads the same leaves; compare with the BSP's through the
    // configuration it published.
    let cfg = Cfg::get();
    agg::eq(
        format_args!("CPUID AMD PMU version identical on every CPU"),
        u64::from(bsp.version()),
        u64::from(if cfg.on { cfg.version } else { 0 }),
    );
}

/// vPMU off: every AMD PMU MSR (legacy, core, global) answers #GP.
fn no_pmu(_cpu: u32) {
    check_all_gp("vPMU off");
}

/// Every AMD PMU MSR (legacy, core, global) answers #GP (check names start
/// with `why`): with the vPMU off, and on a guest with the Intel PMU.
pub fn check_all_gp(why: &str) {
    for i in 0..LEGACY_COUNTERS {
        all_gp(format_args!("{why}: PerfEvtSel{i}"), perf_evt_sel(i));
        all_gp(format_args!("{why}: PerfCtr{i}"), perf_ctr_legacy(i));
    }
    for i in 0..CORE_COUNTERS {
        all_gp(format_args!("{why}: PERF_CTL{i}"), perf_ctl(i));
        all_gp(format_args!("{why}: PERF_CTR{i}"), perf_ctr(i));
    }
    globals_gp(why);
}

/// RDMSR, WRMSR 0 and WRMSR 1 of `msr` all #GP.
fn all_gp(name: core::fmt::Arguments, msr: u32) {
    let rd = try_rdmsr(msr);
    let w0 = try_wrmsr(msr, 0);
    let w1 = try_wrmsr(msr, 1);
    let ok = matches!(rd, Err(f) if f.is_gp())
        && matches!(w0, Err(f) if f.is_gp())
        && matches!(w1, Err(f) if f.is_gp());
    agg::check(
        format_args!("{name} ({msr:#x}) rdmsr/wrmsr #GP"),
        ok,
        format_args!("rdmsr {rd:x?}, wrmsr 0 {w0:x?}, wrmsr 1 {w1:x?}"),
    );
}

fn globals_gp(why: &str) {
    for (msr, name) in [
        (PERF_CNTR_GLOBAL_STATUS, "PerfCntrGlobalStatus"),
        (PERF_CNTR_GLOBAL_CTL, "PerfCntrGlobalCtl"),
        (PERF_CNTR_GLOBAL_STATUS_CLR, "PerfCntrGlobalStatusClr"),
        (PERF_CNTR_GLOBAL_STATUS_SET, "PerfCntrGlobalStatusSet"),
    ] {
        all_gp(format_args!("{why}: {name}"), msr);
    }
}

/// The reserved event select bits the suite sets one at a time: each
/// boundary of a defined field (19 between Edge and INT, 21 between INT and
/// EN, 36-39 above EventSelect[11:8], 42-63 above HostOnly).
const RESERVED_BITS: [u32; 6] = [19, 21, 36, 39, 42, 63];

/// Reserved bits #GP and leave the MSR unchanged; the defined fields read
/// back exactly.
fn evtsel_rules(name: &str, msr: u32) {
    // EN clear: nothing counts while the fields are exercised.
    let fields = EVT_SEL_VALID & !EN;
    let wr = try_wrmsr(msr, fields);
    agg::check(
        format_args!("{name}: every defined field but EN reads back"),
        wr.is_ok() && r(msr) == fields,
        format_args!("wrmsr {wr:x?}, read {:#x}, wrote {fields:#x}", r(msr)),
    );
    w(msr, 0x1205_0076);
    for bit in RESERVED_BITS {
        let res = try_wrmsr(msr, 0x76 | 1 << bit);
        let after = r(msr);
        agg::check(
            format_args!("{name}: reserved bit {bit} #GP, value kept"),
            matches!(res, Err(f) if f.is_gp()) && after == 0x1205_0076,
            format_args!("wrmsr {res:x?}, reads {after:#x}"),
        );
    }
    w(msr, 0);
}

/// 48-bit counters: upper bits dropped on write (no #GP), reads 48 bits.
fn width_rules(name: &str, msr: u32) {
    let r1 = try_wrmsr(msr, u64::MAX);
    let v1 = r(msr);
    agg::check(
        format_args!("{name}: write of all ones reads 2^48-1 (no #GP)"),
        r1.is_ok() && v1 == CTR_MASK,
        format_args!("wrmsr {r1:x?}, read {v1:#x}"),
    );
    let r2 = try_wrmsr(msr, 0xABCD_0000_1234_5678);
    let v2 = r(msr);
    agg::check(
        format_args!("{name}: bits 63:48 of a write are dropped"),
        r2.is_ok() && v2 == 0x0000_0000_1234_5678,
        format_args!("wrmsr {r2:x?}, read {v2:#x}"),
    );
    w(msr, 0);
}

/// Legacy PerfEvtSel0-3 / PerfCtr0-3: present below the counter count,
/// #GP from it on; rules on index 0.
fn legacy_rules(_cpu: u32) {
    let cfg = Cfg::get();
    for i in 0..LEGACY_COUNTERS {
        if i < cfg.gp {
            let v = 0x0000_8765_4321_0ABC & CTR_MASK;
            let sel = EV_CORE_CYCLES | OS | USR;
            let ok =
                try_wrmsr(perf_evt_sel(i), sel).is_ok() && try_wrmsr(perf_ctr_legacy(i), v).is_ok();
            let got = (r(perf_evt_sel(i)), r(perf_ctr_legacy(i)));
            agg::check(
                format_args!("PerfEvtSel{i}/PerfCtr{i} read back what was written"),
                ok && got == (sel, v),
                format_args!("read {got:#x?}"),
            );
            w(perf_evt_sel(i), 0);
            w(perf_ctr_legacy(i), 0);
        } else {
            all_gp(
                format_args!("PerfEvtSel{i} beyond {} counters", cfg.gp),
                perf_evt_sel(i),
            );
            all_gp(
                format_args!("PerfCtr{i} beyond {} counters", cfg.gp),
                perf_ctr_legacy(i),
            );
        }
    }
    evtsel_rules("PerfEvtSel0", perf_evt_sel(0));
    width_rules("PerfCtr0", perf_ctr_legacy(0));
}

/// Core PERF_CTL0-5 / PERF_CTR0-5 (PerfCtrCore): #GP on version 0 and
/// beyond the counter count; legacy MSR i aliases core pair i.
fn core_rules(_cpu: u32) {
    let cfg = Cfg::get();
    if cfg.version == 0 {
        for i in 0..CORE_COUNTERS {
            all_gp(format_args!("v0: PERF_CTL{i}"), perf_ctl(i));
            all_gp(format_args!("v0: PERF_CTR{i}"), perf_ctr(i));
        }
        return;
    }
    for i in 0..CORE_COUNTERS {
        if i < cfg.gp {
            let sel = EV_CORE_CYCLES | OS | GUEST_ONLY | HOST_ONLY | 0x3 << 32;
            let v = 0x0000_F00D_0000_0000 | u64::from(i);
            let ok = try_wrmsr(perf_ctl(i), sel).is_ok() && try_wrmsr(perf_ctr(i), v).is_ok();
            let got = (r(perf_ctl(i)), r(perf_ctr(i)));
            agg::check(
                format_args!("PERF_CTL{i}/PERF_CTR{i} read back what was written"),
                ok && got == (sel, v),
                format_args!("read {got:#x?}"),
            );
            w(perf_ctl(i), 0);
            w(perf_ctr(i), 0);
        } else {
            all_gp(
                format_args!("PERF_CTL{i} beyond {} counters", cfg.gp),
                perf_ctl(i),
            );
            all_gp(
                format_args!("PERF_CTR{i} beyond {} counters", cfg.gp),
                perf_ctr(i),
            );
        }
    }
    evtsel_rules("PERF_CTL0", perf_ctl(0));
    width_rules("PERF_CTR0", perf_ctr(0));
    // Aliasing, both directions, on every legacy index that exists.
    for i in 0..cfg.gp.min(LEGACY_COUNTERS) {
        let a = EV_CORE_CYCLES | USR | u64::from(i) << 8;
        w(perf_evt_sel(i), a);
        let b = EV_RETIRED_INSTRUCTIONS | OS | EDGE;
        let via_core = r(perf_ctl(i));
        w(perf_ctl(i), b);
        let via_legacy = r(perf_evt_sel(i));
        agg::check(
            format_args!("PerfEvtSel{i} and PERF_CTL{i} alias both ways"),
            via_core == a && via_legacy == b,
            format_args!("PERF_CTL{i} read {via_core:#x} (want {a:#x}), PerfEvtSel{i} read {via_legacy:#x} (want {b:#x})"),
        );
        w(perf_ctr_legacy(i), 0x1111 + u64::from(i));
        let via_core = r(perf_ctr(i));
        w(perf_ctr(i), 0x8000_0000_2222);
        let via_legacy = r(perf_ctr_legacy(i));
        agg::check(
            format_args!("PerfCtr{i} and PERF_CTR{i} alias both ways"),
            via_core == 0x1111 + u64::from(i) && via_legacy == 0x8000_0000_2222,
            format_args!("PERF_CTR{i} read {via_core:#x}, PerfCtr{i} read {via_legacy:#x}"),
        );
        w(perf_ctl(i), 0);
        w(perf_ctr(i), 0);
    }
}

/// PerfMonV2 global MSRs (#GP below version 2).
fn global_rules(_cpu: u32) {
    let cfg = Cfg::get();
    if cfg.version < 2 {
        globals_gp("below PerfMonV2");
        return;
    }
    let mask = cfg.gp_mask();
    // Reset value, read before the suite writes it on this CPU.
    agg::eq(
        format_args!("PerfCntrGlobalCtl resets to every counter enabled"),
        r(PERF_CNTR_GLOBAL_CTL),
        mask,
    );
    for v in [0, 1, mask] {
        let res = try_wrmsr(PERF_CNTR_GLOBAL_CTL, v);
        agg::check(
            format_args!("PerfCntrGlobalCtl reads back {v:#x}"),
            res.is_ok() && r(PERF_CNTR_GLOBAL_CTL) == v,
            format_args!("wrmsr {res:x?}, read {:#x}", r(PERF_CNTR_GLOBAL_CTL)),
        );
    }
    for (msr, name) in [
        (PERF_CNTR_GLOBAL_CTL, "PerfCntrGlobalCtl"),
        (PERF_CNTR_GLOBAL_STATUS_CLR, "PerfCntrGlobalStatusClr"),
        (PERF_CNTR_GLOBAL_STATUS_SET, "PerfCntrGlobalStatusSet"),
    ] {
        for bit in [u32::from(cfg.gp), 32, 63] {
            agg::gp(
                format_args!("{name}: reserved bit {bit} #GP"),
                try_wrmsr(msr, 1 << bit),
            );
        }
    }
    agg::eq(
        format_args!("PerfCntrGlobalCtl unchanged by the faulting writes"),
        r(PERF_CNTR_GLOBAL_CTL),
        mask,
    );
    agg::gp(
        format_args!("PerfCntrGlobalStatus: wrmsr 0 #GP (read-only)"),
        try_wrmsr(PERF_CNTR_GLOBAL_STATUS, 0),
    );
    agg::gp(
        format_args!("PerfCntrGlobalStatus: wrmsr of a counter bit #GP"),
        try_wrmsr(PERF_CNTR_GLOBAL_STATUS, 1),
    );
    w(PERF_CNTR_GLOBAL_STATUS_CLR, mask);
    agg::eq(
        format_args!("PerfCntrGlobalStatus reads 0 after StatusClr of all bits"),
        r(PERF_CNTR_GLOBAL_STATUS),
        0,
    );
    let set = try_wrmsr(PERF_CNTR_GLOBAL_STATUS_SET, mask);
    agg::check(
        format_args!("PerfCntrGlobalStatusSet sets every counter bit"),
        set.is_ok() && r(PERF_CNTR_GLOBAL_STATUS) == mask,
        format_args!("wrmsr {set:x?}, status {:#x}", r(PERF_CNTR_GLOBAL_STATUS)),
    );
    agg::eq(
        format_args!("PerfCntrGlobalStatusSet reads 0"),
        r(PERF_CNTR_GLOBAL_STATUS_SET),
        0,
    );
    let clr = try_wrmsr(PERF_CNTR_GLOBAL_STATUS_CLR, 1);
    agg::check(
        format_args!("PerfCntrGlobalStatusClr clears only the bits written"),
        clr.is_ok() && r(PERF_CNTR_GLOBAL_STATUS) == mask & !1,
        format_args!("wrmsr {clr:x?}, status {:#x}", r(PERF_CNTR_GLOBAL_STATUS)),
    );
    agg::eq(
        format_args!("PerfCntrGlobalStatusClr reads 0"),
        r(PERF_CNTR_GLOBAL_STATUS_CLR),
        0,
    );
    w(PERF_CNTR_GLOBAL_STATUS_CLR, mask);
    agg::eq(
        format_args!("PerfCntrGlobalStatus clear again"),
        r(PERF_CNTR_GLOBAL_STATUS),
        0,
    );
}

static BARRIER: Barrier = Barrier::all_cpus();

/// Every vCPU has its own PMU: values written on one CPU are not seen by
/// another (all CPUs run this at the same time).
fn per_vcpu_state(cpu: u32) {
    let cfg = Cfg::get();
    let (sel, ctr) = (u64::from(cpu) << 8, 0x1000 + u64::from(cpu));
    w(perf_evt_sel(0), sel);
    w(cfg.ctr(0), ctr);
    let ctl = if cfg.version >= 2 {
        let v = 1 << (cpu % u32::from(cfg.gp));
        w(PERF_CNTR_GLOBAL_CTL, v);
        v
    } else {
        0
    };
    BARRIER.wait();
    let got = (r(perf_evt_sel(0)), r(cfg.ctr(0)));
    let got_ctl = if cfg.version >= 2 {
        r(PERF_CNTR_GLOBAL_CTL)
    } else {
        0
    };
    BARRIER.wait();
    agg::check(
        format_args!(
            "PMU state is per vCPU (PerfEvtSel0, counter 0, GlobalCtl written on every CPU)"
        ),
        got == (sel, ctr) && got_ctl == ctl,
        format_args!("read {got:x?} GlobalCtl {got_ctl:#x}, wrote ({sel:#x}, {ctr:#x}) {ctl:#x}"),
    );
    reset(cfg);
}

/// Program counter `i` with `sel` from 0.
fn start(cfg: Cfg, i: u8, sel: u64) {
    w(cfg.ctl(i), 0);
    w(cfg.ctr(i), 0);
    w(cfg.ctl(i), sel);
}

/// Counter `i` programmed with `sel` over a short busy loop: its count.
fn count_with(cfg: Cfg, i: u8, sel: u64) -> u64 {
    start(cfg, i, sel);
    msr::spin_tsc(PRELOAD);
    let v = r(cfg.ctr(i));
    w(cfg.ctl(i), 0);
    v
}

fn counting(_cpu: u32) {
    let cfg = Cfg::get();
    reset(cfg);
    let last = cfg.gp - 1;
    // Core cycles on counter 0 against the last counter (load-proof: the
    // TSC is only an upper bound and a floor).
    start(cfg, 0, CYCLES);
    let partner = (last > 0).then(|| {
        start(cfg, last, CYCLES);
        cfg.ctr(last)
    });
    rate_check(
        format_args!("counter 0, core cycles (76h, USR+OS)"),
        cfg.ctr(0),
        partner,
    );
    reset(cfg);
    // Every counter counts cycles at once, no more than the TSC allows.
    let t0 = rdtsc();
    for i in 0..cfg.gp {
        start(cfg, i, CYCLES);
    }
    msr::spin_tsc(PRELOAD / 6);
    let mut values = [0u64; 6];
    for i in 0..cfg.gp {
        w(cfg.ctl(i), 0);
        values[usize::from(i)] = r(cfg.ctr(i));
    }
    let bound = rdtsc().wrapping_sub(t0) * HIGH / 100;
    let bad = values[..usize::from(cfg.gp)]
        .iter()
        .position(|&v| !(1..=bound).contains(&v));
    agg::check(
        format_args!("all {} counters count core cycles at once", cfg.gp),
        bad.is_none(),
        format_args!("values {values:?}, TSC bound {bound}"),
    );
    reset(cfg);
    let i = last;
    for (what, sel) in [
        (
            "USR only (the guest runs at CPL 0)",
            EV_CORE_CYCLES | USR | EN,
        ),
        ("neither USR nor OS", EV_CORE_CYCLES | EN),
        ("HostOnly alone (EFER.SVME clear)", CYCLES | HOST_ONLY),
        ("GuestOnly alone (EFER.SVME clear)", CYCLES | GUEST_ONLY),
        ("EN clear", EV_CORE_CYCLES | USR | OS),
    ] {
        agg::eq(
            format_args!("counter {i}: {what} counts nothing"),
            count_with(cfg, i, sel),
            0,
        );
    }
    let v = count_with(cfg, i, CYCLES | HOST_ONLY | GUEST_ONLY);
    agg::check(
        format_args!("counter {i}: HostOnly+GuestOnly counts"),
        v > 0,
        format_args!("counted {v}"),
    );
    let v = count_with(cfg, 0, EV_CORE_CYCLES | OS | EN);
    agg::check(
        format_args!("counter 0: OS only counts at CPL 0"),
        v > 0,
        format_args!("counted {v}"),
    );
    if cfg.version >= 2 {
        w(PERF_CNTR_GLOBAL_CTL, cfg.gp_mask() & !1);
        agg::eq(
            format_args!("counter 0 with its PerfCntrGlobalCtl bit clear counts nothing"),
            count_with(cfg, 0, CYCLES),
            0,
        );
        w(PERF_CNTR_GLOBAL_CTL, 1);
        let v = count_with(cfg, 0, CYCLES);
        agg::check(
            format_args!("counter 0 with only its PerfCntrGlobalCtl bit set counts"),
            v > 0,
            format_args!("counted {v}"),
        );
        w(PERF_CNTR_GLOBAL_CTL, 0);
        for i in 0..cfg.gp {
            start(cfg, i, CYCLES);
        }
        msr::spin_tsc(PRELOAD);
        let mut sum = 0;
        for i in 0..cfg.gp {
            sum |= r(cfg.ctr(i));
        }
        agg::eq(
            format_args!("PerfCntrGlobalCtl = 0 stops every counter"),
            sum,
            0,
        );
        w(PERF_CNTR_GLOBAL_CTL, cfg.gp_mask());
    }
    // Monotonic reads.
    start(cfg, 0, CYCLES);
    let mut last_v = r(cfg.ctr(0));
    let mut monotonic = true;
    for _ in 0..20 {
        msr::spin_tsc(PRELOAD / 20);
        let v = r(cfg.ctr(0));
        monotonic &= v >= last_v;
        last_v = v;
    }
    agg::check(
        format_args!("counter 0 reads are monotonic while counting"),
        monotonic && last_v > 0,
        format_args!("last {last_v}, monotonic {monotonic}"),
    );
    reset(cfg);
}

/// Preload counter `i` to 2^48 - PRELOAD and count cycles (INT if `int`).
fn preload(cfg: Cfg, i: u8, int: bool) {
    w(cfg.ctl(i), 0);
    w(cfg.ctr(i), (1 << 48) - PRELOAD);
    w(cfg.ctl(i), CYCLES | if int { INT } else { 0 });
}

fn overflow(_cpu: u32) {
    let cfg = Cfg::get();
    reset(cfg);
    let last = cfg.gp - 1;
    let v2 = cfg.version >= 2;
    // Without INT: wraps, sets the status bit (v2), no PMI.
    lapic::set_lvt_perf(lapic::LVT_NMI);
    let before = counts();
    preload(cfg, last, false);
    let v = wait_wrap(cfg.ctr(last));
    let status = r(PERF_CNTR_GLOBAL_STATUS);
    w(cfg.ctl(last), 0);
    irq::enable();
    msr::spin_tsc(PRELOAD / 10);
    irq::disable();
    let after = counts();
    lapic::set_lvt_perf(lapic::LVT_MASKED);
    agg::check(
        format_args!("counter {last}: wraps past 2^48 to a small value"),
        v < 1 << 47,
        format_args!("read {v:#x}"),
    );
    agg::check(
        format_args!("counter {last}: no PMI without INT"),
        after == before,
        format_args!("PMIs (NMI, vector) {before:?} -> {after:?}"),
    );
    if v2 {
        agg::check(
            format_args!("counter {last}: overflow sets its PerfCntrGlobalStatus bit"),
            status & (1 << last) != 0,
            format_args!("status {status:#x}"),
        );
        w(PERF_CNTR_GLOBAL_STATUS_CLR, 1 << last);
        agg::eq(
            format_args!("PerfCntrGlobalStatusClr clears the overflow bit"),
            r(PERF_CNTR_GLOBAL_STATUS),
            0,
        );
    }
    // With INT: one PMI per mode, LVTPC masked on delivery.
    for (i, lvt, mode) in [
        (0, lapic::LVT_NMI, "NMI"),
        (last, u32::from(PMI_VECTOR), "fixed vector"),
    ] {
        reset(cfg);
        lapic::set_lvt_perf(lvt);
        let before = counts();
        preload(cfg, i, true);
        let waited = wait_pmi(before);
        w(cfg.ctl(i), 0);
        let after = counts();
        let lvt_after = lapic::lvt_perf();
        let (status, lvt_in) = handler_state();
        let got = if lvt == lapic::LVT_NMI {
            (after.0 - before.0, after.1 - before.1)
        } else {
            (after.1 - before.1, after.0 - before.0)
        };
        agg::check(
            format_args!("counter {i} with INT: exactly one PMI as {mode}"),
            got == (1, 0),
            format_args!("(this mode, other mode) deliveries {got:?} after {waited} ticks"),
        );
        agg::check(
            format_args!("{mode} PMI: LVTPC masked on delivery, rest kept"),
            lvt_after == lvt | lapic::LVT_MASKED && lvt_in == lvt_after,
            format_args!("LVTPC {lvt_after:#x} after, {lvt_in:#x} in handler, programmed {lvt:#x}"),
        );
        if v2 {
            agg::check(
                format_args!(
                    "{mode} PMI: PerfCntrGlobalStatus has the counter's bit in the handler"
                ),
                status != u64::MAX && status & (1 << i) != 0,
                format_args!("status {status:#x}"),
            );
        }
    }
    // Masked LVTPC: the counter wraps, no PMI.
    reset(cfg);
    lapic::set_lvt_perf(lapic::LVT_NMI | lapic::LVT_MASKED);
    let before = counts();
    preload(cfg, 0, true);
    let v = wait_wrap(cfg.ctr(0));
    w(cfg.ctl(0), 0);
    irq::enable();
    msr::spin_tsc(PRELOAD / 10);
    irq::disable();
    let after = counts();
    agg::check(
        format_args!("masked LVTPC: counter 0 wraps with INT, no PMI"),
        v < 1 << 47 && after == before,
        format_args!("read {v:#x}, PMIs {before:?} -> {after:?}"),
    );
    if v2 {
        // GlobalCtl clear: a preloaded counter does not move, no PMI.
        reset(cfg);
        lapic::set_lvt_perf(lapic::LVT_NMI);
        w(PERF_CNTR_GLOBAL_CTL, 0);
        let before = counts();
        preload(cfg, 0, true);
        irq::enable();
        msr::spin_tsc(2 * PRELOAD);
        irq::disable();
        let v = r(cfg.ctr(0));
        let after = counts();
        agg::check(
            format_args!("PerfCntrGlobalCtl bit clear: preloaded counter 0 stays, no PMI"),
            v == (1 << 48) - PRELOAD && after == before,
            format_args!("read {v:#x}, PMIs {before:?} -> {after:?}"),
        );
    }
    reset(cfg);
}
