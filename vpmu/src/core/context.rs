//! The `perf_event_context` analogue: one per vCPU (the vCPU is the task).
//!
//! A context owns its events, its groups, one [`PmuContext`] per host PMU
//! and the host backend of its vCPU. It is mutated only on its vCPU thread;
//! what other threads see goes through
//! the [`super::HostPmu`] atomics (interval, rotation counts, contexts
//! needing rotation).
//!
//! Schedule-in points: [`Context::sched_in_pending`] runs before every VM
//! entry. It is one integer test when nothing is pending; otherwise it
//! places new groups, refills counters freed since the last slice (rather
//! than waiting a whole rotation interval) and reschedules PMUs where a
//! pinned group was added or is in ERROR.
//!
//! Rotation: [`Context::tick`] rotates every PMU whose run-time deadline
//! ([`Context::next_deadline`]) has passed. The VMM calls it from the
//! vCPU thread when its per-vCPU timer (`VcpuTimer`, armed for that
//! deadline) kicks the vCPU out of the guest.

use std::sync::Arc;

use super::assign::Assignment;
use super::group::{
    Event, EventId, EventInfo, EventReading, Group, GroupId, GroupState, MAX_GROUP_EVENTS,
};
use super::history::HistoryKind;
use super::host_pmu::HostPmu;
use super::pmu_context::{PmuContext, Sched};
use super::time::EventTimes;
use crate::backend::{HostBackend, HostError};
use crate::event::HostEvent;
use crate::util::slab::Slab;

/// Errors of context operations.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no such event {0:?}")]
    NoEvent(EventId),
    #[error("no such group {0:?}")]
    NoGroup(GroupId),
    #[error("no host PMU #{0}")]
    NoPmu(usize),
    #[error("event {0:?} is already in a group")]
    EventBusy(EventId),
    #[error("empty group")]
    EmptyGroup,
    #[error("group can never fit host PMU `{0}` (too many events or conflicting constraints)")]
    GroupTooLarge(String),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The multiplexing context of one vCPU.
#[derive(Debug)]
pub struct Context<B> {
    pmus: Vec<PmuContext>,
    groups: Slab<Group>,
    events: Slab<Event>,
    backend: B,
    /// Bit per PMU: free counters may be refilled / new groups placed.
    pending_fill: u64,
    /// Bit per PMU: full reschedule (pinned group added or in ERROR).
    pending_resched: u64,
    next_serial: u64,
    /// vCPU named in the rotation history.
    vcpu: u32,
}

fn bit(pmu: usize) -> u64 {
    if pmu < 64 {
        1 << pmu
    } else {
        0
    }
}

impl<B: HostBackend> Context<B> {
    /// A context over `pmus` (index = position, as in the profile) counting
    /// with `backend`. At most 64 PMUs are scheduled.
    pub fn new(pmus: Vec<Arc<HostPmu>>, backend: B) -> Context<B> {
        Context {
            pmus: pmus.into_iter().take(64).map(PmuContext::new).collect(),
            groups: Slab::default(),
            events: Slab::default(),
            backend,
            pending_fill: 0,
            pending_resched: 0,
            next_serial: 0,
            vcpu: 0,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
    pub fn pmu_contexts(&self) -> &[PmuContext] {
        &self.pmus
    }
    pub fn pmu_context(&self, pmu: usize) -> Option<&PmuContext> {
        self.pmus.get(pmu)
    }
    /// The vCPU this context's rotation-history records name.
    pub fn set_history_vcpu(&mut self, vcpu: u32) {
        self.vcpu = vcpu;
    }

    /// Names the guest counter `id` counts for in the rotation history
    /// ([`super::history::counter_bit`]).
    pub fn set_event_tag(&mut self, id: EventId, bit: u8) {
        if let Some(ev) = self.events.get_mut(id.0) {
            ev.tag = (bit < 64).then_some(bit);
        }
    }

    /// Records who holds `pmu`'s counters in its history, if that changed
    /// since the last record or `kind` is a rotation. No allocation.
    fn record_history(&mut self, pmu: usize, now: u64, kind: HistoryKind) {
        let Some(pc) = self.pmus.get_mut(pmu) else {
            return;
        };
        let mut mask = 0u64;
        for &gid in pc.pinned_active.iter().chain(pc.flexible_active.iter()) {
            if let Some(g) = self.groups.get(gid) {
                for &e in &g.members {
                    if let Some(bit) = self.events.get(e).and_then(|ev| ev.tag) {
                        mask |= 1 << bit;
                    }
                }
            }
        }
        if mask == pc.history_mask && kind != HistoryKind::Rotation {
            return;
        }
        pc.history_mask = mask;
        pc.pmu.history().record(self.vcpu, now, kind, mask);
    }

    fn split(&mut self, pmu: usize, now: u64) -> Option<(&mut PmuContext, Sched<'_, B>)> {
        let pc = self.pmus.get_mut(pmu)?;
        Some((
            pc,
            Sched {
                groups: &mut self.groups,
                events: &mut self.events,
                backend: &mut self.backend,
                now,
            },
        ))
    }

    /// Opens a host counter for `event`; its enabled time starts at `now`.
    /// It counts once it is in a group and the group is scheduled.
    pub fn open_event(&mut self, event: HostEvent, now: u64) -> Result<EventId, CoreError> {
        let pmu = self
            .pmus
            .get(event.pmu)
            .ok_or(CoreError::NoPmu(event.pmu))?;
        let software = pmu.pmu.is_software();
        let handle = self.backend.open(&event)?;
        let id = self.events.insert(Event {
            host: event,
            handle,
            software,
            group: None,
            slot: None,
            active: false,
            times: EventTimes::enabled_at(now),
            count: 0,
            tag: None,
        });
        Ok(EventId(id))
    }

    /// Tells the backend when the guest counter behind `id` overflows
    /// (`None`: it does not sample); see [`HostBackend::set_overflow`].
    pub fn set_overflow(&mut self, id: EventId, after: Option<u64>) -> Result<(), CoreError> {
        let ev = self.events.get(id.0).ok_or(CoreError::NoEvent(id))?;
        self.backend.set_overflow(ev.handle, after)?;
        Ok(())
    }

    /// Closes an event (removing it from its group first) and returns its
    /// final reading.
    pub fn close_event(&mut self, id: EventId, now: u64) -> Result<EventReading, CoreError> {
        self.detach_event(id, now)?;
        let reading = self.read_event(id, now)?;
        if let Some(ev) = self.events.remove(id.0) {
            self.backend.close(ev.handle)?;
        }
        Ok(reading)
    }

    /// Removes an event from its group (the rest of the group stays; an
    /// emptied group is removed). The freed counter is refilled at the next
    /// schedule-in point.
    pub fn detach_event(&mut self, id: EventId, now: u64) -> Result<(), CoreError> {
        let ev = self.events.get(id.0).ok_or(CoreError::NoEvent(id))?;
        let Some(gid) = ev.group else { return Ok(()) };
        let Some(g) = self.groups.get(gid) else {
            return Ok(());
        };
        if g.members.len() == 1 {
            return self.remove_group(GroupId(gid), now);
        }
        let pmu = g.pmu;
        if let Some(ev) = self.events.get_mut(id.0) {
            if ev.active {
                let _ = self.backend.disable(ev.handle, now);
                if let Ok(r) = self.backend.read(ev.handle, now) {
                    ev.count = ev.count.max(r.count);
                }
                ev.times.sched_out(now);
                ev.active = false;
                if let (Some(s), Some(pc)) = (ev.slot.take(), self.pmus.get_mut(pmu)) {
                    pc.assign.remove(s);
                }
            }
            ev.group = None;
        }
        if let Some(g) = self.groups.get_mut(gid) {
            g.members.retain(|&m| m != id.0);
        }
        self.counters_freed(pmu);
        Ok(())
    }

    /// Adds a group of detached events. Members on two hardware PMUs are
    /// split into one group per PMU (software members ride with the first);
    /// returns the groups made. Each group must fit its PMU when alone. The
    /// groups are placed at the next schedule-in point.
    pub fn add_group(
        &mut self,
        members: &[EventId],
        pinned: bool,
    ) -> Result<Vec<GroupId>, CoreError> {
        if members.is_empty() {
            return Err(CoreError::EmptyGroup);
        }
        let mut parts: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut riders: Vec<u32> = Vec::new();
        for &m in members {
            let ev = self.events.get(m.0).ok_or(CoreError::NoEvent(m))?;
            if ev.group.is_some() {
                return Err(CoreError::EventBusy(m));
            }
            if ev.software {
                riders.push(m.0);
            } else if let Some(p) = parts.iter_mut().find(|(p, _)| *p == ev.host.pmu) {
                p.1.push(m.0);
            } else {
                parts.push((ev.host.pmu, vec![m.0]));
            }
        }
        match parts.first_mut() {
            Some(first) => first.1.extend_from_slice(&riders),
            None => {
                let pmu = self.events.get(riders[0]).map_or(0, |e| e.host.pmu);
                parts.push((pmu, riders));
            }
        }
        for (pmu, m) in &parts {
            let pc = self.pmus.get(*pmu).ok_or(CoreError::NoPmu(*pmu))?;
            let fits = pc.pmu.is_software()
                || (m.len() <= MAX_GROUP_EVENTS
                    && Assignment::fits_empty(
                        pc.pmu.capacity().counters(),
                        m.iter()
                            .filter_map(|&e| self.events.get(e))
                            .filter(|e| !e.software)
                            .map(|e| e.host.mask),
                    ));
            if !fits || m.len() > MAX_GROUP_EVENTS {
                return Err(CoreError::GroupTooLarge(pc.pmu.name().to_string()));
            }
        }
        let mut ids = Vec::with_capacity(parts.len());
        for (pmu, m) in parts {
            let serial = self.next_serial;
            self.next_serial += 1;
            let gid = self.groups.insert(Group {
                serial,
                pmu,
                members: m,
                pinned,
                state: GroupState::Inactive,
                link: Default::default(),
                slices: 0,
            });
            if let Some(g) = self.groups.get(gid) {
                for &e in &g.members {
                    if let Some(ev) = self.events.get_mut(e) {
                        ev.group = Some(gid);
                    }
                }
            }
            let pc = &mut self.pmus[pmu];
            if pinned {
                pc.pinned.push_back(&mut self.groups, gid);
                self.pending_resched |= bit(pmu);
            } else {
                pc.flexible.push_back(&mut self.groups, gid);
                self.pending_fill |= bit(pmu);
            }
            ids.push(GroupId(gid));
        }
        // rotate_necessary is published at the schedule-in point, so adding
        // several groups in a row wakes no timer for nothing.
        Ok(ids)
    }

    /// Removes a group; its events stay open, detached.
    pub fn remove_group(&mut self, gid: GroupId, now: u64) -> Result<(), CoreError> {
        let g = self.groups.get(gid.0).ok_or(CoreError::NoGroup(gid))?;
        let (pmu, pinned) = (g.pmu, g.pinned);
        let Some((pc, mut s)) = self.split(pmu, now) else {
            return Err(CoreError::NoPmu(pmu));
        };
        s.group_sched_out(pc, gid.0);
        if pinned {
            pc.pinned.remove(s.groups, gid.0);
            pc.pinned_active.retain(|&g| g != gid.0);
        } else {
            pc.flexible.remove(s.groups, gid.0);
            pc.flexible_active.retain(|&g| g != gid.0);
        }
        if let Some(g) = self.groups.remove(gid.0) {
            for e in g.members {
                if let Some(ev) = self.events.get_mut(e) {
                    ev.group = None;
                }
            }
        }
        self.counters_freed(pmu);
        Ok(())
    }

    /// Counters were freed on `pmu`: refill them (and publish the new
    /// `rotate_necessary`) at the next schedule-in point.
    fn counters_freed(&mut self, pmu: usize) {
        if let Some(pc) = self.pmus.get(pmu) {
            if pc.groups_error() > 0 {
                self.pending_resched |= bit(pmu);
            }
            self.pending_fill |= bit(pmu);
        }
    }

    /// Is anything to do at the next schedule-in point?
    pub fn has_pending(&self) -> bool {
        (self.pending_fill | self.pending_resched) != 0
    }

    /// The schedule-in point before each VM entry: places new groups and
    /// refills freed counters. O(1) when nothing is pending.
    pub fn sched_in_pending(&mut self, now: u64) {
        if (self.pending_fill | self.pending_resched) == 0 {
            return;
        }
        let resched = std::mem::take(&mut self.pending_resched);
        let fill = std::mem::take(&mut self.pending_fill) & !resched;
        for pmu in 0..self.pmus.len() {
            let b = bit(pmu);
            if (resched | fill) & b == 0 {
                continue;
            }
            if let Some((pc, mut s)) = self.split(pmu, now) {
                if resched & b != 0 {
                    s.resched(pc);
                } else {
                    s.sched_in_flexible(pc);
                }
            }
            self.record_history(pmu, now, HistoryKind::SchedIn);
            self.publish_rotation(pmu, now);
        }
    }

    /// Rotates `pmu` now, if it needs rotation. Returns whether it rotated.
    pub fn rotate(&mut self, pmu: usize, now: u64) -> bool {
        let Some((pc, mut s)) = self.split(pmu, now) else {
            return false;
        };
        let done = s.rotate(pc);
        if done {
            self.record_history(pmu, now, HistoryKind::Rotation);
        }
        self.publish_rotation(pmu, now);
        done
    }

    /// Rotates every PMU whose deadline (in run time) has passed. Returns
    /// rotations performed.
    pub fn tick(&mut self, now: u64) -> u32 {
        let mut n = 0;
        for pmu in 0..self.pmus.len() {
            if self.pmus[pmu]
                .next_rotation_deadline()
                .is_some_and(|d| d <= now)
                && self.rotate(pmu, now)
            {
                n += 1;
            }
        }
        n
    }

    /// Does this context need rotation on `pmu`?
    pub fn needs_rotation(&self, pmu: usize) -> bool {
        self.pmus.get(pmu).is_some_and(|pc| pc.rotate_necessary)
    }

    /// Run-time deadline of the next rotation of `pmu`, if it needs one.
    pub fn next_rotation_deadline(&self, pmu: usize) -> Option<u64> {
        self.pmus.get(pmu)?.next_rotation_deadline()
    }

    /// Earliest rotation deadline over all PMUs.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pmus
            .iter()
            .filter_map(|pc| pc.next_rotation_deadline())
            .min()
    }

    fn publish_rotation(&mut self, pmu: usize, now: u64) {
        let Some(pc) = self.pmus.get_mut(pmu) else {
            return;
        };
        if let Some(need) = pc.update_rotate_necessary(now) {
            pc.pmu.rotation_needed_changed(need);
        }
    }

    /// Count and times of an event as of `now` (reads the host counter only
    /// while it is active).
    pub fn read_event(&mut self, id: EventId, now: u64) -> Result<EventReading, CoreError> {
        let ev = self.events.get_mut(id.0).ok_or(CoreError::NoEvent(id))?;
        if ev.active {
            let r = self.backend.read(ev.handle, now)?;
            ev.count = ev.count.max(r.count);
        }
        Ok(EventReading {
            count: ev.count,
            enabled: ev.times.enabled(now),
            running: ev.times.running(now),
        })
    }

    /// Where an event stands.
    pub fn event_info(&self, id: EventId) -> Option<EventInfo> {
        let ev = self.events.get(id.0)?;
        let g = ev.group.and_then(|g| self.groups.get(g));
        Some(EventInfo {
            pmu: ev.host.pmu,
            group: g.map(|g| g.serial),
            state: g.map(|g| g.state),
            software: ev.software,
            slot: ev.slot,
        })
    }

    /// The group an event is in.
    pub fn group_of(&self, id: EventId) -> Option<GroupId> {
        self.events.get(id.0)?.group.map(GroupId)
    }

    /// State of a group.
    pub fn group_state(&self, gid: GroupId) -> Option<GroupState> {
        self.groups.get(gid.0).map(|g| g.state)
    }

    /// Slices a group got so far.
    pub fn group_slices(&self, gid: GroupId) -> Option<u64> {
        self.groups.get(gid.0).map(|g| g.slices)
    }

    /// Members of a group.
    pub fn group_members(&self, gid: GroupId) -> Vec<EventId> {
        self.groups
            .get(gid.0)
            .map(|g| g.members.iter().map(|&e| EventId(e)).collect())
            .unwrap_or_default()
    }

    /// Groups of the context: id, PMU, pinned, state.
    pub fn groups(&self) -> Vec<(GroupId, usize, bool, GroupState)> {
        self.groups
            .iter()
            .map(|(i, g)| (GroupId(i), g.pmu, g.pinned, g.state))
            .collect()
    }

    /// Would events with these counter masks fit `pmu` together, alone?
    pub fn fits(&self, pmu: usize, masks: &[u32]) -> bool {
        self.pmus.get(pmu).is_some_and(|pc| {
            pc.pmu.is_software()
                || Assignment::fits_empty(pc.pmu.capacity().counters(), masks.iter().copied())
        })
    }

    /// Statistics of every host PMU as seen by this context.
    pub fn pmu_stats(&self) -> Vec<crate::stats::PmuStats> {
        let backend = self.backend.kind();
        self.pmus
            .iter()
            .map(|pc| crate::stats::PmuStats::of(pc, backend))
            .collect()
    }
}

impl<B> Drop for Context<B> {
    fn drop(&mut self) {
        for pc in &self.pmus {
            if pc.rotate_necessary {
                pc.pmu.rotation_needed_changed(false);
            }
        }
    }
}
