//! Scheduling invariants of one context, on the simulated backend.

mod mux_common;
use mux_common::*;

use std::sync::Arc;

use vpmu::core::{Context, GroupState, HostPmu, MuxPolicy};
use vpmu::host::profile::{PmuDesc, Profile};
use vpmu::host::sim::SimBackend;
use vpmu::host::{EventName, HostEvent, Modifiers};
use vpmu::source::{CountSource, CounterIndex};
use vpmu::stats::{CounterState, PmuKindStat, VcpuStats};

fn ctx_for(profile: Profile) -> (Context<SimBackend>, Vec<Arc<HostPmu>>) {
    let pmus = HostPmu::from_profile(&profile);
    (Context::new(pmus.clone(), SimBackend::new(profile)), pmus)
}

fn ev(pmu: usize, name: EventName, mask: u32) -> HostEvent {
    HostEvent {
        name,
        pmu,
        mask,
        modifiers: Modifiers::plain(),
    }
}

#[test]
fn matching_places_what_first_fit_misses() {
    // 2 GP counters: A may use both, B only counter 1. First fit (counter
    // order, no moves) would give A counter... whichever, and fail B when A
    // sits on 1; the matching moves A.
    let p = Profile::from_pmus("t", vec![PmuDesc::hardware("cpu", 2, &[], 1.0)]);
    let (mut ctx, _) = ctx_for(p);
    let a = ctx.open_event(ev(0, EventName::Branches, 0b11), 0).unwrap();
    let b = ctx.open_event(ev(0, EventName::Cycles, 0b10), 0).unwrap();
    let ga = ctx.add_group(&[a], false).unwrap()[0];
    ctx.sched_in_pending(0);
    assert_eq!(ctx.event_info(a).unwrap().slot, Some(1));
    let gb = ctx.add_group(&[b], false).unwrap()[0];
    ctx.sched_in_pending(10);
    assert_eq!(ctx.group_state(ga), Some(GroupState::Active));
    assert_eq!(ctx.group_state(gb), Some(GroupState::Active));
    assert_eq!(ctx.event_info(a).unwrap().slot, Some(0));
    assert_eq!(ctx.event_info(b).unwrap().slot, Some(1));
    ctx.backend().verify().unwrap();
    // A kept counting across the move.
    assert_eq!(ctx.read_event(a, 100).unwrap().count, 100);
    assert!(!ctx.needs_rotation(0));
}

#[test]
fn group_atomicity_and_packing_past_failures() {
    // 4 counters: a 3-event group, then a 2-event group (does not fit), then
    // a single (fits): the scan goes on past the failure.
    let p = Profile::from_pmus("t", vec![PmuDesc::hardware("cpu", 4, &[], 1.0)]);
    let (mut ctx, _) = ctx_for(p);
    let e: Vec<_> = (0..6)
        .map(|_| ctx.open_event(ev(0, EventName::Cycles, 0xf), 0).unwrap())
        .collect();
    let g3 = ctx.add_group(&e[0..3], false).unwrap()[0];
    let g2 = ctx.add_group(&e[3..5], false).unwrap()[0];
    let g1 = ctx.add_group(&e[5..6], false).unwrap()[0];
    ctx.sched_in_pending(0);
    assert_eq!(ctx.group_state(g3), Some(GroupState::Active));
    assert_eq!(ctx.group_state(g2), Some(GroupState::Inactive));
    assert_eq!(ctx.group_state(g1), Some(GroupState::Active));
    for id in &e[3..5] {
        assert!(ctx.event_info(*id).unwrap().slot.is_none());
    }
    assert!(ctx.needs_rotation(0));
    // A group that can never fit is refused.
    let big: Vec<_> = (0..5)
        .map(|_| ctx.open_event(ev(0, EventName::Cycles, 0xf), 0).unwrap())
        .collect();
    assert!(ctx.add_group(&big, false).is_err());
}

#[test]
fn pinned_before_flexible_and_error_visible() {
    let p = Profile::from_pmus("t", vec![PmuDesc::hardware("cpu", 4, &[], 1.0)]);
    let (mut ctx, _) = ctx_for(p);
    let flex: Vec<_> = (0..4)
        .map(|_| ctx.open_event(ev(0, EventName::Branches, 0xf), 0).unwrap())
        .collect();
    for &f in &flex {
        ctx.add_group(&[f], false).unwrap();
    }
    ctx.sched_in_pending(0);
    assert_eq!(ctx.pmu_context(0).unwrap().counters_used(), 4);
    // Pinned groups added later evict flexible ones.
    let pins: Vec<_> = (0..3)
        .map(|_| ctx.open_event(ev(0, EventName::Cycles, 0xf), 0).unwrap())
        .collect();
    let gp1 = ctx.add_group(&pins[0..2], true).unwrap()[0];
    let gp2 = ctx.add_group(&pins[2..3], true).unwrap()[0];
    ctx.sched_in_pending(5);
    assert_eq!(ctx.group_state(gp1), Some(GroupState::Active));
    assert_eq!(ctx.group_state(gp2), Some(GroupState::Active));
    assert_eq!(ctx.pmu_context(0).unwrap().groups_active(), 3);
    // A pinned group that cannot fit beside other pinned ones: ERROR.
    let more: Vec<_> = (0..2)
        .map(|_| ctx.open_event(ev(0, EventName::Cycles, 0xf), 0).unwrap())
        .collect();
    let gerr = ctx.add_group(&more, true).unwrap()[0];
    ctx.sched_in_pending(6);
    assert_eq!(ctx.group_state(gerr), Some(GroupState::Error));
    let stats = ctx.pmu_stats();
    assert_eq!(stats[0].groups_error, 1);
    assert_eq!(stats[0].kind, PmuKindStat::Simulated);
    // It runs as soon as a pinned group goes away.
    ctx.remove_group(gp1, 7).unwrap();
    ctx.sched_in_pending(7);
    assert_eq!(ctx.group_state(gerr), Some(GroupState::Active));
    ctx.backend().verify().unwrap();
}

#[test]
fn pinned_error_shown_per_counter() {
    let policy = MuxPolicy {
        pin_sampling: true,
        ..MuxPolicy::default()
    };
    let (mut v, _) = vcpu("intel-4gp-3fixed", policy);
    for i in 0..5u8 {
        let mut c = cfg(BRANCHES.0, BRANCHES.1);
        c.overflow_after = Some(1000);
        v.start(CounterIndex::Gp(i), &c);
    }
    v.sched_in_pending(0);
    let s = v.snapshot();
    assert_eq!(
        s.counters
            .iter()
            .filter(|c| c.state == CounterState::Error)
            .count(),
        1
    );
    assert!(s
        .counters
        .iter()
        .all(|c| c.labels.contains(&"pinned".to_string())));
    assert_eq!(s.pmus[0].groups_error, 1);
}

#[test]
fn software_groups_never_rotate() {
    let (mut v, pmus) = vcpu("no-pmu", MuxPolicy::default());
    for i in 0..8u8 {
        v.start(CounterIndex::Gp(i), &cfg(CYCLES.0, CYCLES.1));
    }
    v.start(CounterIndex::Gp(8), &cfg(LLC_MISSES.0, LLC_MISSES.1));
    let now = run_rotations(&mut v, 0, 50, 4 * MS);
    assert_eq!(pmus[0].rotations(), 0);
    assert!(!v.context().needs_rotation(0));
    let s = v.snapshot();
    for c in &s.counters[..8] {
        assert_eq!(c.state, CounterState::Active);
        assert!(c.labels.contains(&"software-emulated".to_string()));
        assert_eq!(c.raw, 3 * now);
    }
    assert_eq!(s.counters[8].state, CounterState::Degraded);
    assert!(s.counters[8].labels.contains(&"unavailable".to_string()));
    assert_eq!(v.drain(CounterIndex::Gp(8)), 0);
    assert_eq!(s.pmus[0].kind, PmuKindStat::Software);
}

#[test]
fn software_members_ride_in_hardware_groups_and_split_across_pmus() {
    let p = Profile::builtin("hybrid").unwrap();
    let core = p.pmu_index("cpu_core").unwrap();
    let atom = p.pmu_index("cpu_atom").unwrap();
    let sw = p.pmu_index("software").unwrap();
    let mut p2 = p.clone();
    p2.pmus[sw] = PmuDesc::software("software", 1.0);
    let (mut ctx, pmus) = ctx_for(p2);
    let c = ctx
        .open_event(ev(core, EventName::Cycles, 0xff), 0)
        .unwrap();
    let a = ctx
        .open_event(ev(atom, EventName::CacheMisses, 0x3f), 0)
        .unwrap();
    let s = ctx.open_event(ev(sw, EventName::Cycles, 0), 0).unwrap();
    let groups = ctx.add_group(&[c, a, s], false).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(ctx.group_of(c), Some(groups[0]));
    assert_eq!(ctx.group_of(s), Some(groups[0]));
    assert_eq!(ctx.group_of(a), Some(groups[1]));
    ctx.sched_in_pending(0);
    assert_eq!(ctx.group_state(groups[0]), Some(GroupState::Active));
    assert_eq!(ctx.group_state(groups[1]), Some(GroupState::Active));
    // Fill cpu_atom beyond capacity: only cpu_atom rotates.
    for _ in 0..9 {
        let e = ctx
            .open_event(ev(atom, EventName::Branches, 0x3f), 0)
            .unwrap();
        ctx.add_group(&[e], false).unwrap();
    }
    ctx.sched_in_pending(0);
    assert!(ctx.needs_rotation(atom));
    assert!(!ctx.needs_rotation(core));
    assert_eq!(ctx.next_rotation_deadline(atom), Some(8 * MS));
    assert_eq!(ctx.tick(8 * MS), 1);
    assert_eq!(pmus[atom].rotations(), 1);
    assert_eq!(pmus[core].rotations(), 0);
    // The software rider counted with its group.
    assert_eq!(ctx.read_event(s, 8 * MS).unwrap().running, 8 * MS);
    ctx.backend().verify().unwrap();
}

#[test]
fn freed_counter_refilled_at_next_entry() {
    let (mut v, pmus) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    for i in 0..6u8 {
        v.start(CounterIndex::Gp(i), &cfg(BRANCHES.0, BRANCHES.1));
    }
    v.sched_in_pending(0);
    assert_eq!(v.context().pmu_context(0).unwrap().groups_waiting(), 2);
    assert!(!v.context().has_pending());
    v.advance(MS);
    v.drain(CounterIndex::Gp(0));
    v.stop(CounterIndex::Gp(0));
    assert!(v.context().has_pending());
    v.sched_in_pending(MS);
    assert_eq!(v.context().pmu_context(0).unwrap().groups_waiting(), 1);
    assert_eq!(v.context().pmu_context(0).unwrap().counters_used(), 4);
    assert_eq!(pmus[0].rotations(), 0);
    assert!(!v.context().has_pending());
}

#[test]
fn rotation_deadlines_follow_the_need_and_the_live_interval() {
    let (mut v, pmus) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    for i in 0..4u8 {
        v.start(CounterIndex::Gp(i), &cfg(BRANCHES.0, BRANCHES.1));
    }
    v.sched_in_pending(0);
    // Everything fits: no deadline, the vCPU timer stays disarmed.
    assert!(!pmus[0].needs_rotation());
    assert_eq!(v.next_rotation_deadline(), None);
    v.start(CounterIndex::Gp(4), &cfg(BRANCHES.0, BRANCHES.1));
    v.sched_in_pending(MS);
    assert!(pmus[0].needs_rotation());
    assert!(v.context().needs_rotation(0));
    // The timer fires at the deadline: the vCPU rotates on its own thread.
    let deadline = v.next_rotation_deadline().unwrap();
    assert_eq!(v.tick(deadline - 1), 0, "not yet due");
    assert_eq!(v.tick(deadline), 1);
    assert_eq!(pmus[0].rotations(), 1);
    // Interval changed live from another thread.
    let p = pmus[0].clone();
    std::thread::spawn(move || p.set_interval_ms(10).unwrap())
        .join()
        .unwrap();
    assert_eq!(v.next_rotation_deadline(), Some(deadline + 10 * MS));
    // Back to fitting: no more rotation needed.
    v.stop(CounterIndex::Gp(4));
    v.sched_in_pending(deadline + MS);
    assert!(!pmus[0].needs_rotation());
    assert!(!v.context().needs_rotation(0));
    assert_eq!(v.next_rotation_deadline(), None);
    v.start(CounterIndex::Gp(5), &cfg(BRANCHES.0, BRANCHES.1));
    v.sched_in_pending(deadline + 2 * MS);
    assert_eq!(pmus[0].rotating_contexts(), 1);
    drop(v);
    assert_eq!(pmus[0].rotating_contexts(), 0);
}

#[test]
fn reprogramming_overflow_keeps_the_host_counter() {
    let (mut v, _) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    let mut c = cfg(BRANCHES.0, BRANCHES.1);
    c.overflow_after = Some(1_000_000);
    v.start(CounterIndex::Gp(0), &c);
    v.sched_in_pending(0);
    // branches at 0.5/ns: 2 ms of run time to overflow.
    assert_eq!(v.next_overflow_deadline(), Some(2 * MS));
    v.advance(MS);
    assert_eq!(v.next_overflow_deadline(), Some(2 * MS));
    assert_eq!(v.drain(CounterIndex::Gp(0)), 500_000);
    let group = v.snapshot().counters[0].group;
    c.overflow_after = Some(100);
    v.start(CounterIndex::Gp(0), &c);
    v.sched_in_pending(MS);
    assert_eq!(v.snapshot().counters[0].group, group);
    assert_eq!(v.next_overflow_deadline(), Some(MS + 200));
    v.advance(MS + 300);
    assert_eq!(v.next_overflow_deadline(), Some(MS + 300));
}

#[test]
fn sampling_counters_are_never_extrapolated() {
    let (mut v, _) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    for i in 0..8u8 {
        let mut c = cfg(BRANCHES.0, BRANCHES.1);
        if i == 0 {
            c.overflow_after = Some(u64::MAX / 2);
        }
        v.start(CounterIndex::Gp(i), &c);
    }
    let now = run_rotations(&mut v, 0, 10, 4 * MS);
    let s = v.snapshot();
    assert!(s.counters[0].labels.contains(&"sampling".to_string()));
    let d0 = v.drain(CounterIndex::Gp(0));
    assert_eq!(d0, s.counters[0].raw);
    assert!(d0 < now / 2 + 1);
    let d1 = v.drain(CounterIndex::Gp(1));
    assert!(d1 > s.counters[1].raw);
}

#[test]
fn stats_roundtrip_serde() {
    let (mut v, _) = vcpu("hybrid", MuxPolicy::default());
    v.start(CounterIndex::Fixed(1), &cfg(0, 0));
    v.start(CounterIndex::Gp(0), &cfg(LLC_MISSES.0, LLC_MISSES.1));
    v.start(CounterIndex::Gp(1), &cfg(0x12, 0x34));
    v.sched_in_pending(0);
    v.advance(MS);
    let s = v.snapshot();
    // Sorted by counter: Gp(0), Gp(1), Fixed(1).
    assert_eq!(s.counters[0].host_pmu.as_deref(), Some("cpu_atom"));
    assert_eq!(s.counters[2].host_pmu.as_deref(), Some("cpu_core"));
    assert_eq!(s.counters[1].event, "raw:0x12/0x34");
    assert_eq!(s.counters[1].state, CounterState::Degraded);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"state\":\"active\""));
    assert!(json.contains("\"kind\":\"simulated\""));
    let back: VcpuStats = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}
