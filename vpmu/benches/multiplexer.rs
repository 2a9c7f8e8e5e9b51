//! Cost of scheduling one context: schedule-in, schedule-out and rotation
//! with 8, 64 and 1024 single-counter flexible groups on 4- and 8-counter
//! host PMUs. The no-op backend makes this measure the scheduler alone.
//!
//! `cargo bench -p vpmu --bench multiplexer -- --warm-up-time 1 --measurement-time 2`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vpmu::core::{Context, HostPmu};
use vpmu::host::noop::NoopBackend;
use vpmu::host::profile::{PmuDesc, Profile};
use vpmu::host::{EventName, HostEvent, Modifiers};

fn context(counters: u8, groups: usize) -> Context<NoopBackend> {
    let p = Profile::from_pmus("bench", vec![PmuDesc::hardware("cpu", counters, &[], 1.0)]);
    let mut ctx = Context::new(HostPmu::from_profile(&p), NoopBackend::default());
    for i in 0..groups {
        let ev = HostEvent {
            name: EventName::ALL[i % EventName::ALL.len()],
            pmu: 0,
            mask: (1 << counters) - 1,
            modifiers: Modifiers::plain(),
        };
        if let Ok(e) = ctx.open_event(ev, 0) {
            let _ = ctx.add_group(&[e], false);
        }
    }
    ctx.sched_in_pending(0);
    ctx
}

fn bench(c: &mut Criterion) {
    for counters in [4u8, 8] {
        let mut g = c.benchmark_group(format!("{counters}-counters"));
        for groups in [8usize, 64, 1024] {
            g.bench_with_input(BenchmarkId::new("rotate", groups), &groups, |b, &n| {
                let mut ctx = context(counters, n);
                let mut now = 0u64;
                b.iter(|| {
                    now += 4_000_000;
                    ctx.rotate(0, now)
                });
            });
            g.bench_with_input(BenchmarkId::new("sched_out", groups), &groups, |b, &n| {
                let mut ctx = context(counters, n);
                let mut now = 0u64;
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        now += 1000;
                        let t = Instant::now();
                        ctx.sched_out(now);
                        total += t.elapsed();
                        ctx.sched_in(now);
                    }
                    total
                });
            });
            g.bench_with_input(BenchmarkId::new("sched_in", groups), &groups, |b, &n| {
                let mut ctx = context(counters, n);
                let mut now = 0u64;
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        now += 1000;
                        ctx.sched_out(now);
                        let t = Instant::now();
                        ctx.sched_in(now);
                        total += t.elapsed();
                    }
                    total
                });
            });
            g.bench_with_input(
                BenchmarkId::new("sched_in_pending_idle", groups),
                &groups,
                |b, &n| {
                    let mut ctx = context(counters, n);
                    b.iter(|| ctx.sched_in_pending(1));
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
