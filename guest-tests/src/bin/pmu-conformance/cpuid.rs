//! CPUID.0AH and CPUID.01H:ECX.PDCM: the enumeration matches the
//! configuration, is internally consistent and identical on every CPU.

use crate::agg;
use crate::pmu::{Config, CPUID_1_ECX_PDCM};
use guest_tests::{cmdline, smp, Tap};

/// `CPUID.0AH:EBX` bit of the event of fixed counters 0..3: instructions,
/// core cycles, reference cycles, topdown slots.
const FIXED_EVENT_EBX_BIT: [u32; 4] = [1, 0, 2, 7];

/// Per-CPU: the leaf is the same everywhere.
pub fn per_cpu(_cpu: u32) {
    let bsp = Config::get();
    let mine = Config::read();
    agg::check(
        format_args!("CPUID.0AH identical to the BSP's"),
        mine.a == bsp.a,
        format_args!("got {:x?}, BSP {:x?}", mine.a, bsp.a),
    );
    agg::eq(
        format_args!("CPUID.01H:ECX.PDCM identical to the BSP's"),
        u64::from(mine.leaf1_ecx & CPUID_1_ECX_PDCM),
        u64::from(bsp.leaf1_ecx & CPUID_1_ECX_PDCM),
    );
}

/// BSP: field-by-field checks of the leaf.
pub fn run(tap: &Tap, cfg: &Config) {
    let [a, b, c, d] = cfg.a;
    tap.diag(format_args!(
        "CPUID.0AH eax={a:#010x} ebx={b:#010x} ecx={c:#010x} edx={d:#010x}; \
         PDCM={} FW_WRITE={} cpus={}",
        cfg.pdcm,
        cfg.fw,
        smp::cpu_count()
    ));
    cross_check_cmdline(tap, cfg);
    if !cfg.pmu() {
        tap.check_eq("vPMU off: CPUID.0AH is all zero", cfg.a, [0; 4]);
        tap.check_eq("vPMU off: CPUID.01H:ECX.PDCM clear", cfg.pdcm, false);
        return;
    }
    let v = cfg.version;
    tap.check_diag(
        "CPUID.0AH:EAX version is 1..5",
        (1..=5).contains(&v),
        format_args!("version {v}"),
    );
    tap.check_diag(
        "CPUID.0AH:EAX GP counters is 1..8",
        (1..=8).contains(&cfg.n_gp),
        format_args!("{} counters", cfg.n_gp),
    );
    tap.check_eq("CPUID.0AH:EAX GP counter width is 48", cfg.gp_width, 48);
    let len = if v >= 5 { 8 } else { 7 };
    tap.check_eq("CPUID.0AH:EAX EBX length (7, 8 for v5)", cfg.ebx_len, len);
    let want_ebx = ((1u32 << len) - 1) & !0b101;
    tap.check_diag(
        "CPUID.0AH:EBX: only core and reference cycles available",
        b == want_ebx,
        format_args!("expected {want_ebx:#x}, got {b:#x}"),
    );
    if v >= 5 {
        // Only the fixed counters whose event counts (EBX bit clear).
        let want = (0..cfg.fixed())
            .filter(|&i| b & (1 << FIXED_EVENT_EBX_BIT[usize::from(i)]) == 0)
            .fold(0u32, |m, i| m | 1 << i);
        tap.check_eq(
            "CPUID.0AH:ECX (v5) advertises exactly the configured fixed counters that count",
            c,
            want,
        );
        tap.check_eq(
            "CPUID.0AH:EDX[4:0] (v5) counts the advertised fixed counters contiguous from 0",
            d & 0x1F,
            want.trailing_ones(),
        );
    } else {
        tap.check_eq("CPUID.0AH:ECX is zero before v5", c, 0);
    }
    if v == 1 {
        tap.check_eq("CPUID.0AH:EDX is zero in v1 (no fixed counters)", d, 0);
    } else {
        tap.check_diag(
            "CPUID.0AH:EDX fixed counters is 0..4",
            (d & 0x1F) <= 4 && (cfg.n_fixed < 4 || v >= 5),
            format_args!("edx {d:#x}"),
        );
        let want_width = if cfg.n_fixed > 0 { 48 } else { 0 };
        tap.check_eq(
            "CPUID.0AH:EDX fixed counter width (48 when any)",
            cfg.fixed_width,
            want_width,
        );
        tap.check_eq(
            "CPUID.0AH:EDX[15] AnyThread deprecation iff v5",
            d >> 15 & 1,
            u32::from(v >= 5),
        );
    }
    tap.check("CPUID.01H:ECX.PDCM set with the vPMU on", cfg.pdcm);
}

fn cross_check_cmdline(tap: &Tap, cfg: &Config) {
    match cmdline::get("vpmu") {
        Some(s) => {
            tap.check_eq(
                "CPUID enumerates a vPMU iff vpmu=on on the command line",
                cfg.pmu(),
                s == "on",
            );
        }
        None => tap.skip("vpmu= cross-check", "no vpmu= on the command line"),
    }
    if !cfg.pmu() {
        return;
    }
    let pairs: [(&str, u64, &str); 4] = [
        ("version", u64::from(cfg.version), "CPUID version"),
        ("gp", u64::from(cfg.n_gp), "CPUID GP counter count"),
        ("fixed", u64::from(cfg.n_fixed), "CPUID fixed counter count"),
        ("fw", u64::from(cfg.fw), "PERF_CAPABILITIES.FW_WRITE"),
    ];
    for (key, got, what) in pairs {
        if key == "fixed" && cfg.version >= 5 {
            // The count comes from fixed= itself; the ECX check above
            // compares CPUID with it.
            tap.skip(
                format_args!("{what} cross-check"),
                "v5: checked as the ECX bitmask",
            );
            continue;
        }
        match cmdline::get_u64(key) {
            Some(want) => {
                tap.check_eq(format_args!("{what} matches {key}={want}"), got, want);
            }
            None => tap.skip(
                format_args!("{what} cross-check"),
                format_args!("no {key}= on the command line"),
            ),
        }
    }
}
