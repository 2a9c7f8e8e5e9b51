//! vPMU off (and the AMD suite): every Intel architectural PMU MSR raises
//! #GP on read and write.

use crate::agg;
use crate::pmu::*;
use guest_tests::{try_rdmsr, try_wrmsr};

/// Every PMU MSR of the largest configuration, with a name.
pub fn all_msrs() -> impl Iterator<Item = (u32, &'static str, u8)> {
    let per =
        |base: u32, n: u32, name: &'static str| (0..n).map(move |i| (base + i, name, i as u8));
    per(IA32_PMC0, 8, "IA32_PMC")
        .chain(per(IA32_PERFEVTSEL0, 8, "IA32_PERFEVTSEL"))
        .chain(per(IA32_A_PMC0, 8, "IA32_A_PMC"))
        .chain(per(IA32_FIXED_CTR0, 4, "IA32_FIXED_CTR"))
        .chain([
            (IA32_PERF_CAPABILITIES, "IA32_PERF_CAPABILITIES", u8::MAX),
            (IA32_FIXED_CTR_CTRL, "IA32_FIXED_CTR_CTRL", u8::MAX),
            (IA32_PERF_GLOBAL_STATUS, "IA32_PERF_GLOBAL_STATUS", u8::MAX),
            (IA32_PERF_GLOBAL_CTRL, "IA32_PERF_GLOBAL_CTRL", u8::MAX),
            (
                IA32_PERF_GLOBAL_OVF_CTRL,
                "IA32_PERF_GLOBAL_OVF_CTRL",
                u8::MAX,
            ),
            (
                IA32_PERF_GLOBAL_STATUS_SET,
                "IA32_PERF_GLOBAL_STATUS_SET",
                u8::MAX,
            ),
            (IA32_PERF_GLOBAL_INUSE, "IA32_PERF_GLOBAL_INUSE", u8::MAX),
        ])
}

pub fn per_cpu(_cpu: u32) {
    check_all("vPMU off");
}

/// Every Intel PMU MSR answers #GP on read and write (check names start
/// with `why`).
pub fn check_all(why: &str) {
    for (msr, name, i) in all_msrs() {
        let rd = try_rdmsr(msr);
        let w0 = try_wrmsr(msr, 0);
        let w1 = try_wrmsr(msr, 1);
        let all = matches!(rd, Err(f) if f.is_gp())
            && matches!(w0, Err(f) if f.is_gp())
            && matches!(w1, Err(f) if f.is_gp());
        let diag = format_args!("rdmsr {rd:x?}, wrmsr 0 {w0:x?}, wrmsr 1 {w1:x?}");
        if i == u8::MAX {
            agg::check(
                format_args!("{why}: {name} ({msr:#x}) rdmsr/wrmsr #GP"),
                all,
                diag,
            );
        } else {
            agg::check(
                format_args!("{why}: {name}{i} ({msr:#x}) rdmsr/wrmsr #GP"),
                all,
                diag,
            );
        }
    }
}
