//! Cost of scheduling one context: rotation, refilling a freed counter and
//! the idle schedule-in point, with 8, 64 and 1024 single-counter flexible groups on 4- and 8-counter
//! host PMUs. The no-op backend makes this measure the scheduler alone.
//!
//! `cargo bench -p vpmu --bench multiplexer -- --warm-up-time 1 --measurement-time 2`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vpmu::core::{Context, EventId, HostPmu};
use vpmu::host::noop::NoopBackend;
use vpmu::host::profile::{PmuDesc, Profile};
use vpmu::host::{EventName, HostEvent, Modifiers};

fn context(counters: u8, groups: usize) -> (Context<NoopBackend>, Vec<EventId>) {
    let p = Profile::from_pmus("bench", vec![PmuDesc::hardware("cpu", counters, &[], 1.0)]);
    let mut ctx = Context::new(HostPmu::from_profile(&p), NoopBackend::default());
    let mut events = Vec::with_capacity(groups);
    for i in 0..groups {
        let ev = HostEvent {
            name: EventName::ALL[i % EventName::ALL.len()],
            pmu: 0,
            mask: (1 << counters) - 1,
            modifiers: Modifiers::plain(),
        };
        if let Ok(e) = ctx.open_event(ev, 0) {
            let _ = ctx.add_group(&[e], false);
            events.push(e);
        }
    }
    ctx.sched_in_pending(0);
    (ctx, events)
}

fn bench(c: &mut Criterion) {
    for counters in [4u8, 8] {
        let mut g = c.benchmark_group(format!("{counters}-counters"));
        for groups in [8usize, 64, 1024] {
            g.bench_with_input(BenchmarkId::new("rotate", groups), &groups, |b, &n| {
                let (mut ctx, _) = context(counters, n);
                let mut now = 0u64;
                b.iter(|| {
                    now += 4_000_000;
                    ctx.rotate(0, now)
                });
            });
            g.bench_with_input(BenchmarkId::new("refill", groups), &groups, |b, &n| {
                // A guest reprograms a counter: its group leaves and comes
                // back, and the next schedule-in point places it again.
                let (mut ctx, events) = context(counters, n);
                let mut now = 0u64;
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        now += 1000;
                        let e = events[i as usize % events.len()];
                        if let Some(g) = ctx.group_of(e) {
                            let _ = ctx.remove_group(g, now);
                        }
                        let _ = ctx.add_group(&[e], false);
                        let t = Instant::now();
                        ctx.sched_in_pending(now);
                        total += t.elapsed();
                    }
                    total
                });
            });
            g.bench_with_input(
                BenchmarkId::new("sched_in_pending_idle", groups),
                &groups,
                |b, &n| {
                    let (mut ctx, _) = context(counters, n);
                    b.iter(|| ctx.sched_in_pending(1));
                },
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
