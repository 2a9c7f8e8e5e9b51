//! The simulated truth: the multiplexer's estimates against what the
//! simulated workload really did.

mod mux_common;
use mux_common::*;

use vpmu::core::{Grouping, MuxPolicy, Scaling};
use vpmu::host::sim::Workload;
use vpmu::host::EventName;
use vpmu::source::{CountSource, CounterIndex};
use vpmu::stats::CounterState;

const EVENTS: [(u16, u8); 4] = [LLC_REFS, LLC_MISSES, BRANCHES, BRANCH_MISSES];
const NAMES: [EventName; 4] = [
    EventName::CacheReferences,
    EventName::CacheMisses,
    EventName::Branches,
    EventName::BranchMisses,
];

/// 8 GP-only counters on 4 GP counters (fixed counters cannot take them).
fn eight_on_four(
    policy: MuxPolicy,
    workload: Option<Workload>,
) -> (vpmu::core::VcpuCounters<vpmu::host::sim::SimBackend>, u64) {
    let (mut v, _) = vcpu("intel-4gp-3fixed", policy);
    if let Some(w) = workload {
        v.context_mut().backend_mut().set_workload(w);
    }
    for i in 0..8u8 {
        let (s, u) = EVENTS[i as usize % 4];
        v.start(CounterIndex::Gp(i), &cfg(s, u));
    }
    let now = run_rotations(&mut v, 0, 100, 4 * MS);
    (v, now)
}

fn check(v: &mut vpmu::core::VcpuCounters<vpmu::host::sim::SimBackend>, now: u64, tolerance: f64) {
    let stats = v.snapshot();
    for i in 0..8u8 {
        let c = &stats.counters[i as usize];
        let truth = v
            .context()
            .backend()
            .truth(0, NAMES[i as usize % 4], 0, now);
        let err = (c.scaled as f64 - truth as f64).abs() / truth as f64;
        assert!(
            (c.running_pct - 50.0).abs() < 5.0,
            "counter {i} ran {:.1}%",
            c.running_pct
        );
        assert!(
            err < tolerance,
            "counter {i}: scaled {} truth {truth} err {err:.4}",
            c.scaled
        );
        assert!(c.raw < c.scaled);
        assert_eq!(c.enabled_ns, now);
        // The guest sees the scaled value.
        let drained = v.drain(CounterIndex::Gp(i));
        assert!((drained as f64 - truth as f64).abs() / (truth as f64) < tolerance);
    }
    assert_eq!(stats.pmus[0].context_rotations, 100);
}

#[test]
fn steady_rates_within_2_percent() {
    let (mut v, now) = eight_on_four(MuxPolicy::default(), None);
    check(&mut v, now, 0.02);
}

#[test]
fn packed_steady_rates_within_2_percent() {
    let policy = MuxPolicy {
        grouping: Grouping::Packed,
        ..MuxPolicy::default()
    };
    let (mut v, now) = eight_on_four(policy, None);
    // Two groups of four, alternating.
    let groups: std::collections::BTreeSet<_> =
        v.snapshot().counters.iter().map(|c| c.group).collect();
    assert_eq!(groups.len(), 2);
    check(&mut v, now, 0.02);
}

#[test]
fn phase_changing_workload_within_5_percent() {
    // 3 ms calm, 5 ms busy, 2 ms idle-ish: a 10 ms period against 4 ms slices.
    let w = Workload::phases(&[(3 * MS, 1.0), (5 * MS, 2.5), (2 * MS, 0.2)]);
    let (mut v, now) = eight_on_four(MuxPolicy::default(), Some(w));
    check(&mut v, now, 0.05);
}

#[test]
fn raw_policy_reports_what_was_counted() {
    let policy = MuxPolicy {
        scaling: Scaling::Raw,
        ..MuxPolicy::default()
    };
    let (mut v, now) = eight_on_four(policy, None);
    let mut drained = 0;
    for i in 0..8u8 {
        drained += v.drain(CounterIndex::Gp(i));
    }
    assert_eq!(drained, v.context().backend().total_counted(now));
    let truth: u64 = (0..8)
        .map(|i| v.context().backend().truth(0, NAMES[i % 4], 0, now))
        .sum();
    // Half the time running: about half the truth.
    assert!((drained as f64 / truth as f64 - 0.5).abs() < 0.02);
}

#[test]
fn fitting_counters_are_exact_and_never_rotate() {
    let (mut v, pmus) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    v.start(CounterIndex::Fixed(0), &cfg(0, 0));
    v.start(CounterIndex::Fixed(1), &cfg(0, 0));
    for i in 0..4u8 {
        let (s, u) = EVENTS[i as usize];
        v.start(CounterIndex::Gp(i), &cfg(s, u));
    }
    let now = run_rotations(&mut v, 0, 100, 4 * MS);
    assert_eq!(now, 400 * MS);
    assert_eq!(pmus[0].rotations(), 0);
    assert!(!pmus[0].needs_rotation());
    assert_eq!(v.next_rotation_deadline(), None);
    let stats = v.snapshot();
    for c in &stats.counters {
        assert_eq!(c.state, CounterState::Active);
        assert_eq!(c.running_pct, 100.0);
        assert_eq!(c.raw, c.scaled);
    }
    assert_eq!(v.drain(CounterIndex::Fixed(1)), 3 * now);
    assert_eq!(v.drain(CounterIndex::Fixed(0)), now * 5 / 2);
}
