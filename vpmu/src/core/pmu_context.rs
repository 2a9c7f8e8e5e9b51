//! The `perf_event_pmu_context` analogue: one per (vCPU context, host PMU).
//!
//! It holds the context's pinned and flexible groups for one PMU, the groups
//! currently active, the placement of events on the PMU's counters, and
//! `rotate_necessary`. Scheduling follows `ctx_sched_in()`:
//!
//! 1. pinned groups first, in list order; one that cannot be placed goes to
//!    [`GroupState::Error`] (visible in statistics, retried when counters
//!    free up, where the kernel leaves it in ERROR until re-enabled);
//! 2. flexible groups next, in list order. Unlike the kernel, a group that
//!    does not fit does not end the scan: later (smaller, or differently
//!    constrained) groups are still tried, so the PMU is packed. The scan is
//!    bounded: it ends when no counter is free or after `scan_limit` groups,
//!    so a schedule-in costs the same with 8 or 1024 groups.
//!
//! `rotate_necessary` is "some flexible group is not active". Rotation
//! (`perf_rotate_context()`): schedule the flexible groups out, move to the
//! tail every group that was active (the kernel moves the first one; moving
//! all of them bounds each group's deviation from its fair share to one
//! slice instead of one slice per counter), schedule in again.

use std::sync::Arc;

use super::assign::Assignment;
use super::group::{Event, Group, GroupState};
use super::host_pmu::HostPmu;
use super::list::List;
use crate::backend::{HostBackend, HostError};
use crate::util::slab::Slab;

/// Default bound on the groups one flexible schedule-in visits.
pub const DEFAULT_SCAN_LIMIT: usize = 48;

#[derive(Debug)]
pub struct PmuContext {
    pub(crate) pmu: Arc<HostPmu>,
    pub(crate) pinned: List,
    pub(crate) flexible: List,
    pub(crate) pinned_active: Vec<u32>,
    pub(crate) flexible_active: Vec<u32>,
    pub(crate) assign: Assignment,
    pub(crate) rotate_necessary: bool,
    /// Start of the current rotation period (run time), for the deadline.
    pub(crate) rotation_base: u64,
    pub(crate) rotations: u64,
    pub(crate) scan_limit: usize,
    /// Guest counters active at the last history record.
    pub(crate) history_mask: u64,
}

/// Everything a scheduling step touches besides the pmu_context.
pub(crate) struct Sched<'a, B> {
    pub(crate) groups: &'a mut Slab<Group>,
    pub(crate) events: &'a mut Slab<Event>,
    pub(crate) backend: &'a mut B,
    pub(crate) now: u64,
}

impl PmuContext {
    pub(crate) fn new(pmu: Arc<HostPmu>) -> PmuContext {
        let counters = pmu.capacity().counters();
        PmuContext {
            pmu,
            pinned: List::default(),
            flexible: List::default(),
            pinned_active: Vec::with_capacity(counters as usize),
            flexible_active: Vec::with_capacity(counters as usize),
            assign: Assignment::new(counters),
            rotate_necessary: false,
            rotation_base: 0,
            rotations: 0,
            scan_limit: DEFAULT_SCAN_LIMIT,
            history_mask: 0,
        }
    }

    pub fn pmu(&self) -> &Arc<HostPmu> {
        &self.pmu
    }
    pub fn rotate_necessary(&self) -> bool {
        self.rotate_necessary
    }
    pub fn rotations(&self) -> u64 {
        self.rotations
    }
    /// Groups (pinned + flexible) holding counters.
    pub fn groups_active(&self) -> usize {
        self.pinned_active.len() + self.flexible_active.len()
    }
    /// Flexible groups waiting for counters.
    pub fn groups_waiting(&self) -> usize {
        self.flexible.len() - self.flexible_active.len()
    }
    /// Pinned groups in ERROR.
    pub fn groups_error(&self) -> usize {
        self.pinned.len() - self.pinned_active.len()
    }
    pub fn groups(&self) -> usize {
        self.pinned.len() + self.flexible.len()
    }
    /// Counters in use.
    pub fn counters_used(&self) -> u32 {
        let c = self.pmu.capacity().counters();
        c as u32 - self.assign.free_mask().count_ones()
    }

    /// Recomputes `rotate_necessary`; returns it if it changed.
    pub(crate) fn update_rotate_necessary(&mut self, now: u64) -> Option<bool> {
        let need = !self.pmu.is_software() && self.flexible_active.len() < self.flexible.len();
        if need == self.rotate_necessary {
            return None;
        }
        self.rotate_necessary = need;
        if need {
            self.rotation_base = now;
        }
        Some(need)
    }

    /// Next rotation deadline (run time), if rotation is necessary.
    pub fn next_rotation_deadline(&self) -> Option<u64> {
        self.rotate_necessary
            .then(|| self.rotation_base.saturating_add(self.pmu.interval_ns()))
    }
}

impl<B: HostBackend> Sched<'_, B> {
    /// `group_sched_in()` with a transaction: place every hardware member
    /// (start_txn), program them all (commit_txn), or undo (cancel_txn).
    /// `Ok(false)`: does not fit now.
    pub(crate) fn group_sched_in(
        &mut self,
        pc: &mut PmuContext,
        gid: u32,
    ) -> Result<bool, HostError> {
        let Some(g) = self.groups.get(gid) else {
            return Ok(false);
        };
        let n = g.members.len();
        // start_txn: a saved copy of the placement.
        let saved = pc.assign;
        if !pc.pmu.is_software() {
            for i in 0..n {
                let eid = self.groups.get(gid).map_or(u32::MAX, |g| g.members[i]);
                let Some(ev) = self.events.get(eid) else {
                    continue;
                };
                if ev.software {
                    continue;
                }
                if pc.assign.add(eid, ev.host.mask).is_none() {
                    pc.assign = saved; // cancel_txn
                    return Ok(false);
                }
            }
            // commit_txn, part 1: events of other groups the matching moved.
            for (slot, other) in pc.assign.moved_since(&saved) {
                if let Some(ev) = self.events.get_mut(other) {
                    if ev.group != Some(gid) {
                        ev.slot = Some(slot);
                        self.backend.reassign(ev.handle, slot);
                    }
                }
            }
            for slot in 0..pc.pmu.capacity().counters() {
                if let Some(owner) = pc.assign.owner(slot) {
                    if let Some(ev) = self.events.get_mut(owner) {
                        if ev.group == Some(gid) {
                            ev.slot = Some(slot);
                        }
                    }
                }
            }
        }
        // commit_txn, part 2: program the members.
        for i in 0..n {
            let eid = self.groups.get(gid).map_or(u32::MAX, |g| g.members[i]);
            let Some(ev) = self.events.get(eid) else {
                continue;
            };
            if let Err(e) = self.backend.enable(ev.handle, ev.slot, self.now) {
                self.undo_partial(pc, gid, i, &saved);
                return Err(e);
            }
        }
        let now = self.now;
        if let Some(g) = self.groups.get_mut(gid) {
            g.state = GroupState::Active;
            g.slices += 1;
            for &eid in &g.members {
                if let Some(ev) = self.events.get_mut(eid) {
                    ev.active = true;
                    ev.times.sched_in(now);
                }
            }
        }
        Ok(true)
    }

    /// A backend refused member `failed`: disable the members enabled
    /// before it and restore the placement.
    fn undo_partial(&mut self, pc: &mut PmuContext, gid: u32, failed: usize, saved: &Assignment) {
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        for &eid in &g.members[..failed] {
            if let Some(ev) = self.events.get(eid) {
                let _ = self.backend.disable(ev.handle, self.now);
            }
        }
        for &eid in &g.members {
            if let Some(ev) = self.events.get_mut(eid) {
                ev.slot = None;
            }
        }
        // Moved events of other groups go back to their counters.
        let moved: Vec<(u8, u32)> = pc.assign.moved_since(saved).collect();
        pc.assign = *saved;
        for (_, other) in moved {
            let back = (0..pc.pmu.capacity().counters()).find(|&s| saved.owner(s) == Some(other));
            if let (Some(slot), Some(ev)) = (back, self.events.get_mut(other)) {
                ev.slot = Some(slot);
                self.backend.reassign(ev.handle, slot);
            }
        }
    }

    /// `group_sched_out()`: disable, read, release counters.
    pub(crate) fn group_sched_out(&mut self, pc: &mut PmuContext, gid: u32) {
        let now = self.now;
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if g.state == GroupState::Active {
            g.state = GroupState::Inactive;
        }
        for &eid in &g.members {
            let Some(ev) = self.events.get_mut(eid) else {
                continue;
            };
            if !ev.active {
                continue;
            }
            if let Err(e) = self.backend.disable(ev.handle, now) {
                log::warn!("vpmu: disabling host counter {:?}: {e}", ev.handle);
            }
            match self.backend.read(ev.handle, now) {
                Ok(r) => ev.count = ev.count.max(r.count),
                Err(e) => log::warn!("vpmu: reading host counter {:?}: {e}", ev.handle),
            }
            ev.times.sched_out(now);
            ev.active = false;
            if let Some(s) = ev.slot.take() {
                pc.assign.remove(s);
            }
        }
    }

    /// Schedules out every active flexible group.
    pub(crate) fn sched_out_flexible(&mut self, pc: &mut PmuContext) {
        for i in 0..pc.flexible_active.len() {
            let gid = pc.flexible_active[i];
            self.group_sched_out(pc, gid);
        }
    }

    /// Pinned groups not yet active: place them or mark them ERROR.
    pub(crate) fn sched_in_pinned(&mut self, pc: &mut PmuContext) {
        if pc.pinned_active.len() == pc.pinned.len() {
            return;
        }
        let mut cur = pc.pinned.front();
        while let Some(gid) = cur {
            cur = pc.pinned.next(self.groups, gid);
            let state = self.groups.get(gid).map(|g| g.state);
            if state == Some(GroupState::Active) {
                continue;
            }
            match self.group_sched_in(pc, gid) {
                Ok(true) => pc.pinned_active.push(gid),
                result => {
                    if let Some(g) = self.groups.get_mut(gid) {
                        if g.state != GroupState::Error {
                            log::warn!(
                                "vpmu: pinned group {} cannot be placed on {}{}: ERROR",
                                g.serial,
                                pc.pmu.name(),
                                result.err().map(|e| format!(" ({e})")).unwrap_or_default()
                            );
                        }
                        g.state = GroupState::Error;
                    }
                }
            }
        }
    }

    /// Flexible groups, in list order, into free counters (bounded scan).
    pub(crate) fn sched_in_flexible(&mut self, pc: &mut PmuContext) {
        let hardware = !pc.pmu.is_software();
        let mut budget = if hardware { pc.scan_limit } else { usize::MAX };
        let mut cur = pc.flexible.front();
        while let Some(gid) = cur {
            if budget == 0 || (hardware && pc.assign.free_mask() == 0) {
                break;
            }
            budget -= 1;
            cur = pc.flexible.next(self.groups, gid);
            if self.groups.get(gid).map(|g| g.state) == Some(GroupState::Active) {
                continue;
            }
            match self.group_sched_in(pc, gid) {
                Ok(true) => pc.flexible_active.push(gid),
                Ok(false) => {}
                Err(e) => log::warn!("vpmu: scheduling a group on {}: {e}", pc.pmu.name()),
            }
        }
    }

    /// `ctx_resched()`: flexible out, pinned in, flexible in.
    pub(crate) fn resched(&mut self, pc: &mut PmuContext) {
        self.sched_out_flexible(pc);
        pc.flexible_active.clear();
        self.sched_in_pinned(pc);
        self.sched_in_flexible(pc);
    }

    /// `perf_rotate_context()` for one PMU. Returns whether it rotated.
    pub(crate) fn rotate(&mut self, pc: &mut PmuContext) -> bool {
        if !pc.rotate_necessary {
            return false;
        }
        self.sched_out_flexible(pc);
        // rotate_ctx(): the groups that just ran go to the tail, in order;
        // if none could run, the first one does.
        if pc.flexible_active.is_empty() {
            if let Some(first) = pc.flexible.front() {
                pc.flexible.move_to_tail(self.groups, first);
            }
        }
        for i in 0..pc.flexible_active.len() {
            let gid = pc.flexible_active[i];
            pc.flexible.move_to_tail(self.groups, gid);
        }
        pc.flexible_active.clear();
        self.sched_in_pinned(pc);
        self.sched_in_flexible(pc);
        pc.rotations += 1;
        pc.rotation_base = self.now;
        pc.pmu.count_rotation();
        true
    }
}
