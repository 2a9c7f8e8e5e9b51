//! Property tests of the multiplexer's invariants.

mod mux_common;
use mux_common::*;

use std::sync::Arc;

use proptest::prelude::*;
use vpmu::core::{Context, EventId, GroupId, GroupState, HostPmu, MuxPolicy, Scaling};
use vpmu::host::assembly::HostAssembly;
use vpmu::host::profile::{PmuDesc, Profile};
use vpmu::host::sim::SimBackend;
use vpmu::host::{EventName, HostEvent, Modifiers};
use vpmu::source::{CountSource, CounterIndex};

#[derive(Clone, Debug)]
enum Op {
    /// Masks (reduced modulo the PMU's counters), pinned, software rider.
    Add(Vec<u32>, bool, bool),
    Remove(usize),
    Close(usize),
    Run(u64),
    Rotate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec(1u32..u32::MAX, 1..4), prop::bool::weighted(0.15), prop::bool::weighted(0.1))
            .prop_map(|(m, p, s)| Op::Add(m, p, s)),
        1 => (0usize..64).prop_map(Op::Remove),
        1 => (0usize..64).prop_map(Op::Close),
        3 => (1u64..10 * MS).prop_map(Op::Run),
        2 => Just(Op::Rotate),
    ]
}

struct World {
    ctx: Context<SimBackend>,
    events: Vec<EventId>,
    groups: Vec<GroupId>,
    closed_counts: u64,
    now: u64,
    counters: u8,
}

impl World {
    fn new(gp: u8, fixed: u8) -> World {
        let fixed_events = [
            EventName::Instructions,
            EventName::Cycles,
            EventName::RefCycles,
            EventName::TopdownSlots,
        ];
        let p = Profile::from_pmus(
            "prop",
            vec![
                PmuDesc::hardware("cpu", gp, &fixed_events[..fixed as usize], 1.5),
                PmuDesc::software("software", 1.0),
            ],
        );
        let pmus = HostPmu::from_profile(&p);
        World {
            ctx: Context::new(pmus, SimBackend::new(p)),
            events: vec![],
            groups: vec![],
            closed_counts: 0,
            now: 0,
            counters: gp + fixed,
        }
    }

    fn apply(&mut self, op: &Op) {
        let all = (1u32 << self.counters) - 1;
        match op {
            Op::Add(masks, pinned, rider) => {
                let mut members = vec![];
                for m in masks {
                    let mask = (m & all).max(1 << (m % self.counters as u32));
                    let name = EventName::ALL[(*m as usize) % EventName::ALL.len()];
                    let ev = HostEvent {
                        name,
                        pmu: 0,
                        mask,
                        modifiers: Modifiers::plain(),
                    };
                    members.push(self.ctx.open_event(ev, self.now).unwrap());
                }
                if *rider {
                    let ev = HostEvent {
                        name: EventName::Cycles,
                        pmu: 1,
                        mask: 0,
                        modifiers: Modifiers::plain(),
                    };
                    members.push(self.ctx.open_event(ev, self.now).unwrap());
                }
                self.events.extend(&members);
                match self.ctx.add_group(&members, *pinned) {
                    Ok(g) => self.groups.extend(g),
                    Err(_) => {
                        // Can never fit: refused, events stay detached.
                        assert!(!self.ctx.fits(0, &masks_of(masks, all, self.counters)));
                    }
                }
            }
            Op::Remove(i) if !self.groups.is_empty() => {
                let g = self.groups.remove(i % self.groups.len());
                self.ctx.remove_group(g, self.now).unwrap();
            }
            Op::Close(i) if !self.events.is_empty() => {
                let e = self.events.remove(i % self.events.len());
                let group = self.ctx.group_of(e);
                let r = self.ctx.close_event(e, self.now).unwrap();
                self.closed_counts += r.count;
                if let Some(g) = group {
                    if self.ctx.group_state(g).is_none() {
                        self.groups.retain(|&x| x != g);
                    }
                }
            }
            Op::Run(dt) => self.now += dt,
            Op::Rotate => {
                self.ctx.rotate(0, self.now);
            }
            _ => {}
        }
        // Every op is followed by a VM entry.
        self.ctx.sched_in_pending(self.now);
    }

    fn check(&mut self) {
        let now = self.now;
        self.ctx.backend().verify().unwrap();
        let pc = self.ctx.pmu_context(0).unwrap();
        assert!(pc.counters_used() <= self.counters as u32);
        assert_eq!(
            self.ctx.backend().enabled_on(0),
            pc.counters_used() as usize
        );
        for &g in &self.groups {
            let state = self.ctx.group_state(g).unwrap();
            let (_, _, pinned, _) = self.ctx.groups().into_iter().find(|x| x.0 == g).unwrap();
            // Pinned groups are never merely waiting after a schedule-in.
            if pinned {
                assert_ne!(state, GroupState::Inactive);
            }
            // Atomicity: every hardware member holds a counter iff active.
            for e in self.ctx.group_members(g) {
                let info = self.ctx.event_info(e).unwrap();
                if !info.software {
                    assert_eq!(info.slot.is_some(), state == GroupState::Active);
                }
            }
        }
        let mut counted = self.closed_counts;
        for &e in &self.events {
            let r = self.ctx.read_event(e, now).unwrap();
            assert!(r.enabled >= r.running);
            counted += r.count;
        }
        // No count lost: what the host counted is what the events report.
        assert_eq!(counted, self.ctx.backend().total_counted(now));
        // rotate_necessary iff some flexible group waits.
        let pc = self.ctx.pmu_context(0).unwrap();
        assert_eq!(pc.rotate_necessary(), pc.groups_waiting() > 0);
    }
}

fn masks_of(masks: &[u32], all: u32, counters: u8) -> Vec<u32> {
    masks
        .iter()
        .map(|m| (m & all).max(1 << (m % counters as u32)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn scheduling_invariants(gp in 1u8..=8, fixed in 0u8..=4, ops in prop::collection::vec(op(), 1..80)) {
        let mut w = World::new(gp, fixed);
        for op in &ops {
            w.apply(op);
            w.check();
        }
    }

    /// N single-counter flexible groups on C counters, N <= 10 C: over 100
    /// rotations each runs within 10% of its fair share C / N.
    #[test]
    fn fair_share_over_100_rotations(c in 1u8..=8, k in 1u32..=100) {
        let n = (c as u32 + 1 + (k - 1) * (9 * c as u32) / 99).min(10 * c as u32);
        let p = Profile::from_pmus("fair", vec![PmuDesc::hardware("cpu", c, &[], 1.0)]);
        let pmus = HostPmu::from_profile(&p);
        let mut ctx = Context::new(pmus, SimBackend::new(p));
        let mut evs = vec![];
        for _ in 0..n {
            let e = ctx.open_event(HostEvent { name: EventName::Branches, pmu: 0, mask: (1 << c) - 1, modifiers: Modifiers::plain() }, 0).unwrap();
            ctx.add_group(&[e], false).unwrap();
            evs.push(e);
        }
        ctx.sched_in_pending(0);
        let mut now = 0;
        for _ in 0..100 {
            now = ctx.next_rotation_deadline(0).unwrap();
            prop_assert_eq!(ctx.tick(now), 1);
        }
        let fair = c as f64 / n as f64;
        for e in evs {
            let r = ctx.read_event(e, now).unwrap();
            let share = r.running as f64 / r.enabled as f64;
            prop_assert!((share / fair - 1.0).abs() <= 0.10 + 1e-9, "share {} fair {} (n {} c {})", share, fair, n, c);
        }
    }

    /// Through a guest-like sequence of start/stop/reprogram/drain, scaled
    /// totals never go backwards (reported = running maximum of the
    /// estimate) and raw totals equal what the host counted.
    #[test]
    fn guest_values_monotonic_and_complete(
        ops in prop::collection::vec((0u8..8, 0u8..6, 1u64..6 * MS), 1..120),
        raw in any::<bool>(),
    ) {
        let policy = MuxPolicy { scaling: if raw { Scaling::Raw } else { Scaling::Scaled }, ..MuxPolicy::default() };
        let p = Profile::builtin("intel-4gp-3fixed").unwrap();
        let mut v = HostAssembly::sim(Arc::new(p))
            .with_policy(policy)
            .with_sim_phases(vec![(MS, 1.0), (3 * MS, 3.0)])
            .unwrap()
            .sim_vcpu_counters(0)
            .unwrap();
        let events = [CYCLES, INSTRUCTIONS, LLC_REFS, LLC_MISSES, BRANCHES, BRANCH_MISSES];
        let mut totals = [0u64; 8];
        let mut started = [false; 8];
        let mut drained_all = 0u64;
        let mut now = 0;
        for (ctr, action, dt) in ops {
            let idx = CounterIndex::Gp(ctr);
            let d = v.drain(idx);
            drained_all += d;
            totals[ctr as usize] += d;
            match action {
                0 => { v.stop(idx); started[ctr as usize] = false; }
                1..=4 => {
                    let (s, u) = events[(action as usize + ctr as usize) % events.len()];
                    let mut c = cfg(s, u);
                    if action == 4 { c.overflow_after = Some(dt); }
                    v.start(idx, &c);
                    started[ctr as usize] = true;
                }
                _ => {}
            }
            v.sched_in_pending(now);
            now += dt;
            v.advance(now);
            v.tick(now);
            v.sched_in_pending(now);
            v.context().backend().verify().unwrap();
        }
        for ctr in 0..8u8 {
            drained_all += v.drain(CounterIndex::Gp(ctr));
        }
        let counted = v.context().backend().total_counted(now);
        if raw {
            prop_assert_eq!(drained_all, counted);
        } else {
            prop_assert!(drained_all >= counted);
        }
        let s = v.snapshot();
        for c in &s.counters {
            prop_assert!(c.enabled_ns >= c.running_ns);
            prop_assert!(c.scaled >= c.raw);
        }
    }
}
