//! Cost of the guest PMU's handling of one trapped MSR access, the part of a
//! PMU exit the VMM adds to KVM's ~8 us user-space round trip.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use vpmu::arch::msr;
use vpmu::config::PmuConfig;
use vpmu::guest::GuestPmu;
use vpmu::source::NullSource;

fn msr_access(c: &mut Criterion) {
    let mut pmu = GuestPmu::new(PmuConfig::default());
    let mut src = NullSource;
    let mut g = c.benchmark_group("guest_msr");
    g.bench_function("wrmsr_evtsel_disabled", |b| {
        b.iter(|| {
            pmu.wrmsr(
                black_box(msr::IA32_PERFEVTSEL0 + 1),
                black_box(0x3C),
                &mut src,
            )
        })
    });
    g.bench_function("rdmsr_global_status", |b| {
        b.iter(|| pmu.rdmsr(black_box(msr::IA32_PERF_GLOBAL_STATUS), &mut src))
    });
    let _ = pmu.wrmsr(msr::IA32_PERFEVTSEL0, 0x43_003C, &mut src);
    g.bench_function("rdmsr_running_counter", |b| {
        b.iter(|| pmu.rdmsr(black_box(msr::IA32_PMC0), &mut src))
    });
    g.bench_function("wrmsr_enable_disable_counter", |b| {
        b.iter(|| {
            let _ = pmu.wrmsr(msr::IA32_PERFEVTSEL0 + 2, black_box(0x43_003C), &mut src);
            pmu.wrmsr(msr::IA32_PERFEVTSEL0 + 2, black_box(0), &mut src)
        })
    });
    g.bench_function("rdmsr_gp_fault", |b| {
        b.iter(|| pmu.rdmsr(black_box(msr::IA32_PMC0 + 20), &mut src))
    });
    g.finish();
}

criterion_group!(benches, msr_access);
criterion_main!(benches);
