//! The per-vCPU counting front: [`VcpuCounters`] implements
//! [`CountSource`] for the guest PMU model over a [`Context`].
//!
//! - `start` translates the guest configuration into a host event (the
//!   [`EventTable`] says which host PMU counts it, on which counters) and
//!   opens it; an event no host PMU counts is *unavailable*: it counts zero
//!   and says so in statistics. Re-programming that changes only the
//!   overflow point keeps the host counter (and its place in the rotation).
//! - `stop` closes the host counter; the freed counter is refilled at the
//!   next schedule-in point.
//! - `drain` returns what was counted since the last drain, raw or scaled
//!   per [`MuxPolicy`].
//!
//! Time: the VMM calls [`VcpuCounters::advance`] with the vCPU's run time
//! after each KVM_RUN returns, and [`VcpuCounters::sched_in_pending`] before
//! each entry. The `CountSource` calls in between use that time.

use std::sync::Arc;

use super::context::{Context, CoreError};
use super::group::{EventId, EventReading, GroupState};
use super::host_pmu::HostPmu;
use super::policy::{scale, Grouping, MuxPolicy, Scaling};
use crate::backend::{EventMapping, HostBackend};
use crate::config::PmuArch;
use crate::event::{EventName, HostEvent, Modifiers};
use crate::source::{CountSource, CounterConfig, CounterIndex};
use crate::stats::{CounterState, CounterStats, VcpuStats};

/// Which host PMU counts each generic event, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTable {
    map: [Option<EventMapping>; EventName::ALL.len()],
}

impl EventTable {
    /// The table where `map` says where each event is counted (a host
    /// profile: [`crate::host::profile::Profile::map`]).
    pub fn new(map: impl FnMut(EventName) -> Option<EventMapping>) -> EventTable {
        EventTable {
            map: EventName::ALL.map(map),
        }
    }

    pub fn get(&self, event: EventName) -> Option<EventMapping> {
        self.map[event.index()]
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    raw: u64,
    scaled: u64,
    enabled: u64,
    running: u64,
}

#[derive(Debug)]
struct GuestCounter {
    index: CounterIndex,
    config: CounterConfig,
    name: Option<EventName>,
    mapping: Option<EventMapping>,
    event: Option<EventId>,
    started: bool,
    /// Count of the host event at the last `start` (overflow accounting).
    base_count: u64,
    reported_raw: u64,
    reported_scaled: u64,
    /// Lifetime totals of host events already closed.
    closed: Totals,
    /// Run time the current host event was opened (its enabled time starts).
    opened_at: u64,
    /// Truth (simulated backends) over the enabled time of closed events.
    closed_truth: Option<u64>,
    /// The host refused a counter for it and that was logged: one line
    /// per degraded guest counter, not one per reprogramming.
    warned: bool,
}

impl GuestCounter {
    fn sampling(&self) -> bool {
        self.started && self.config.overflow_after.is_some()
    }
}

fn bit(pmu: usize) -> u64 {
    if pmu < 64 {
        1 << pmu
    } else {
        0
    }
}

/// The counting front of one vCPU.
#[derive(Debug)]
pub struct VcpuCounters<B> {
    vcpu: u32,
    ctx: Context<B>,
    table: EventTable,
    policy: MuxPolicy,
    /// Sorted by counter index.
    counters: Vec<GuestCounter>,
    now: u64,
    /// Bit per PMU: events to (re)group at the next schedule-in point.
    regroup: u64,
    /// Whose event encoding the guest's counter configurations use.
    guest_arch: PmuArch,
}

impl<B: HostBackend> VcpuCounters<B> {
    pub fn new(
        vcpu: u32,
        pmus: Vec<Arc<HostPmu>>,
        table: EventTable,
        backend: B,
        policy: MuxPolicy,
    ) -> Self {
        let mut ctx = Context::new(pmus, backend);
        ctx.set_history_vcpu(vcpu);
        VcpuCounters {
            vcpu,
            ctx,
            table,
            policy,
            counters: Vec::with_capacity(16),
            now: 0,
            regroup: 0,
            guest_arch: PmuArch::Intel,
        }
    }

    /// Counters for a guest PMU of architecture `arch` (default Intel): the
    /// guest's event selects are decoded in that vendor's encoding.
    pub fn with_guest_arch(mut self, arch: PmuArch) -> Self {
        self.guest_arch = arch;
        self
    }

    pub fn context(&self) -> &Context<B> {
        &self.ctx
    }
    pub fn context_mut(&mut self) -> &mut Context<B> {
        &mut self.ctx
    }
    pub fn policy(&self) -> MuxPolicy {
        self.policy
    }
    /// vCPU run time as last advanced.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The vCPU has run until `now` ns of run time (monotonic; earlier
    /// values are ignored).
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    /// Schedule-in point before VM entry: groups counters started since the
    /// last entry, refills freed counters. O(1) when nothing is pending.
    pub fn sched_in_pending(&mut self, now: u64) {
        self.advance(now);
        if self.regroup != 0 {
            self.regroup_now();
        }
        self.ctx.sched_in_pending(self.now)
    }

    /// Rotates the PMUs whose run-time deadline passed (the VMM calls it
    /// when the vCPU's timer fired). Returns rotations performed.
    pub fn tick(&mut self, now: u64) -> u32 {
        self.advance(now);
        self.ctx.tick(self.now)
    }

    /// Earliest run-time rotation deadline, if any PMU needs rotation.
    pub fn next_rotation_deadline(&self) -> Option<u64> {
        self.ctx.next_deadline()
    }

    /// Run time at which the first running sampling counter reaches its
    /// overflow (estimated from the event's rate on the host PMU), so the
    /// VMM can arm a timer and drain then. `Some(now)` if one is due.
    pub fn next_overflow_deadline(&mut self) -> Option<u64> {
        let now = self.now;
        let mut best: Option<u64> = None;
        for i in 0..self.counters.len() {
            let c = &self.counters[i];
            let (Some(n), Some(e), Some(m)) = (c.config.overflow_after, c.event, c.mapping) else {
                continue;
            };
            if !c.started {
                continue;
            }
            let base = c.base_count;
            let Ok(r) = self.ctx.read_event(e, now) else {
                continue;
            };
            let remaining = n.saturating_sub(r.count.saturating_sub(base));
            let at = if remaining == 0 {
                now
            } else {
                let active =
                    self.ctx.event_info(e).and_then(|i| i.state) == Some(GroupState::Active);
                if !active || m.rate_per_ns <= 0.0 {
                    continue;
                }
                now.saturating_add((remaining as f64 / m.rate_per_ns).ceil() as u64)
            };
            best = Some(best.map_or(at, |b| b.min(at)));
        }
        best
    }

    fn find(&self, index: CounterIndex) -> Result<usize, usize> {
        self.counters.binary_search_by(|c| c.index.cmp(&index))
    }

    fn close_event(&mut self, i: usize) {
        let now = self.now;
        let truth = self.truth_of_open_event(i, now);
        let Some(e) = self.counters[i].event.take() else {
            return;
        };
        let pmu = self.ctx.event_info(e).map(|i| i.pmu);
        match self.ctx.close_event(e, now) {
            Ok(r) => {
                let c = &mut self.counters[i];
                c.closed_truth = add_truth(c.closed_truth, truth);
                c.closed.raw += r.count;
                c.closed.scaled += scale(r.count, r.enabled, r.running).max(c.reported_scaled);
                c.closed.enabled += r.enabled;
                c.closed.running += r.running;
            }
            Err(err) => log::warn!(
                "vpmu: closing host counter of {:?}: {err}",
                self.counters[i].index
            ),
        }
        if let (Some(p), Grouping::Packed) = (pmu, self.policy.grouping) {
            self.regroup |= bit(p);
        }
    }

    fn pinned(&self, c: &GuestCounter) -> bool {
        self.policy.pin_sampling && c.sampling()
    }

    /// Puts started, ungrouped events (Packed: all events of the PMU) into
    /// groups.
    fn regroup_now(&mut self) {
        let bits = std::mem::take(&mut self.regroup);
        let now = self.now;
        for pmu in 0..64 {
            if bits & bit(pmu) == 0 {
                continue;
            }
            let on_pmu: Vec<usize> = (0..self.counters.len())
                .filter(|&i| {
                    let c = &self.counters[i];
                    c.started && c.event.is_some() && c.mapping.is_some_and(|m| m.pmu == pmu)
                })
                .collect();
            if self.policy.grouping == Grouping::Packed {
                for &i in &on_pmu {
                    let pinned = self.pinned(&self.counters[i]);
                    if let Some(g) = self.counters[i].event.and_then(|e| self.ctx.group_of(e)) {
                        if !pinned {
                            let _ = self.ctx.remove_group(g, now);
                        }
                    }
                }
            }
            let mut pack: Vec<EventId> = Vec::new();
            let mut masks: Vec<u32> = Vec::new();
            for &i in &on_pmu {
                let c = &self.counters[i];
                let (Some(e), Some(m)) = (c.event, c.mapping) else {
                    continue;
                };
                if self.ctx.group_of(e).is_some() {
                    continue;
                }
                let pinned = self.pinned(c);
                if self.policy.grouping == Grouping::PerCounter || pinned {
                    self.add_group(&[e], pinned);
                    continue;
                }
                masks.push(m.mask);
                if !pack.is_empty() && !self.ctx.fits(pmu, &masks) {
                    self.add_group(&pack, false);
                    pack.clear();
                    masks.clear();
                    masks.push(m.mask);
                }
                pack.push(e);
            }
            if !pack.is_empty() {
                self.add_group(&pack, false);
            }
        }
    }

    fn add_group(&mut self, members: &[EventId], pinned: bool) {
        if let Err(e) = self.ctx.add_group(members, pinned) {
            log::warn!("vpmu: vCPU {}: cannot group counters: {e}", self.vcpu);
        }
    }

    /// What the open host event of guest counter `i` really counted since
    /// it was opened, where the backend knows (simulated hosts).
    fn truth_of_open_event(&self, i: usize, now: u64) -> Option<u64> {
        let c = &self.counters[i];
        let (e, name) = (c.event?, c.name?);
        let pmu = self.ctx.event_info(e)?.pmu;
        self.ctx.backend().truth(pmu, name, c.opened_at, now)
    }

    /// Tells the host event when its guest counter overflows, so a backend
    /// that can (perf) notifies the vCPU then.
    fn arm_overflow(&mut self, e: EventId, counter: CounterIndex, after: Option<u64>) {
        if let Err(err) = self.ctx.set_overflow(e, after) {
            log::warn!(
                "vpmu: vCPU {}: {counter:?}: overflow notification: {err}",
                self.vcpu
            );
        }
    }

    fn reading(&mut self, e: EventId) -> Result<EventReading, CoreError> {
        self.ctx.read_event(e, self.now)
    }

    /// Statistics of this vCPU as of its current run time.
    pub fn snapshot(&mut self) -> VcpuStats {
        let simulated = self.ctx.backend().kind() == "simulated";
        let mut counters = Vec::with_capacity(self.counters.len());
        for i in 0..self.counters.len() {
            let event = self.counters[i].event;
            let r = event.and_then(|e| self.reading(e).ok()).unwrap_or_default();
            let info = event.and_then(|e| self.ctx.event_info(e));
            let c = &self.counters[i];
            let raw = c.closed.raw + r.count;
            // `reported_scaled` belongs to the open host event; once it is
            // closed its total is in `closed` already.
            let open_scaled = match event {
                Some(_) => scale(r.count, r.enabled, r.running).max(c.reported_scaled),
                None => 0,
            };
            let scaled = c.closed.scaled + open_scaled;
            let enabled = c.closed.enabled + r.enabled;
            let running = c.closed.running + r.running;
            let unavailable = c.started && c.event.is_none();
            let state = if !c.started {
                CounterState::Off
            } else if unavailable {
                CounterState::Degraded
            } else {
                match info.and_then(|i| i.state) {
                    Some(GroupState::Active) => CounterState::Active,
                    Some(GroupState::Error) => CounterState::Error,
                    _ => CounterState::Inactive,
                }
            };
            let mut labels = Vec::new();
            if simulated {
                labels.push("simulated".to_string());
            }
            // By where the counter maps, so a stopped counter keeps it.
            let on_software_pmu = c
                .mapping
                .and_then(|m| self.ctx.pmu_context(m.pmu))
                .is_some_and(|p| p.pmu().is_software());
            if info.is_some_and(|i| i.software) || on_software_pmu {
                labels.push("software-emulated".to_string());
            }
            if unavailable {
                labels.push("unavailable".to_string());
            }
            if simulated && Modifiers::of(&c.config).is_exotic() {
                labels.push("approximate".to_string());
            }
            if c.sampling() {
                labels.push("sampling".to_string());
            }
            if c.started && self.pinned(c) {
                labels.push("pinned".to_string());
            }
            let event_name = match c.name {
                Some(n) => n.as_str().to_string(),
                None => format!(
                    "raw:{:#04x}/{:#04x}",
                    c.config.event.select, c.config.event.umask
                ),
            };
            counters.push(CounterStats {
                counter: c.index,
                name: crate::guest::counter_name(self.guest_arch, c.index),
                event: event_name,
                host_pmu: c
                    .mapping
                    .and_then(|m| self.ctx.pmu_context(m.pmu))
                    .map(|pc| pc.pmu().name().to_string()),
                group: info.and_then(|i| i.group),
                state,
                labels,
                raw,
                scaled: if self.policy.scaling == Scaling::Raw {
                    raw.max(scaled)
                } else {
                    scaled
                },
                enabled_ns: enabled,
                running_ns: running,
                running_pct: if enabled == 0 {
                    100.0
                } else {
                    running as f64 * 100.0 / enabled as f64
                },
                simulated_truth: add_truth(
                    self.counters[i].closed_truth,
                    self.truth_of_open_event(i, self.now),
                ),
            });
        }
        VcpuStats {
            vcpu: self.vcpu,
            run_time_ns: self.now,
            scaling: self.policy.scaling.to_string(),
            grouping: self.policy.grouping.to_string(),
            counters,
            pmus: self.ctx.pmu_stats(),
        }
    }
}

/// Sums two optional truths: known if either is.
fn add_truth(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

impl<B: HostBackend> CountSource for VcpuCounters<B> {
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig) {
        let name = EventName::of_guest_counter(self.guest_arch, counter, config);
        let mods = Modifiers::of(config);
        let i = match self.find(counter) {
            Ok(i) => i,
            Err(i) => {
                self.counters.insert(
                    i,
                    GuestCounter {
                        index: counter,
                        config: *config,
                        name,
                        mapping: None,
                        event: None,
                        started: false,
                        base_count: 0,
                        reported_raw: 0,
                        reported_scaled: 0,
                        closed: Totals::default(),
                        opened_at: 0,
                        closed_truth: None,
                        warned: false,
                    },
                );
                i
            }
        };
        let c = &self.counters[i];
        let same_host_event =
            c.started && c.event.is_some() && c.name == name && Modifiers::of(&c.config) == mods;
        if same_host_event {
            let was_pinned = self.pinned(c);
            let e = c.event;
            let base = e.and_then(|e| self.reading(e).ok()).map_or(0, |r| r.count);
            let c = &mut self.counters[i];
            c.config = *config;
            c.base_count = base;
            if let Some(e) = e {
                self.arm_overflow(e, counter, config.overflow_after);
            }
            let now_pinned = self.pinned(&self.counters[i]);
            if was_pinned != now_pinned {
                if let (Some(e), Some(m)) = (e, self.counters[i].mapping) {
                    let _ = self.ctx.detach_event(e, self.now);
                    self.regroup |= bit(m.pmu);
                }
            }
            return;
        }
        self.close_event(i);
        let mapping = name.and_then(|n| self.table.get(n));
        let event = match (name, mapping) {
            (Some(n), Some(m)) => {
                let host = HostEvent {
                    name: n,
                    pmu: m.pmu,
                    mask: m.mask,
                    modifiers: mods,
                };
                match self.ctx.open_event(host, self.now) {
                    Ok(e) => {
                        self.ctx
                            .set_event_tag(e, super::history::counter_bit(counter));
                        self.regroup |= bit(m.pmu);
                        if config.overflow_after.is_some() {
                            self.arm_overflow(e, counter, config.overflow_after);
                        }
                        Some(e)
                    }
                    Err(err) => {
                        if !self.counters[i].warned {
                            self.counters[i].warned = true;
                            log::warn!(
                                "vpmu: vCPU {}: {counter:?} ({n}) degraded, counts nothing: {err}",
                                self.vcpu
                            );
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        let c = &mut self.counters[i];
        c.config = *config;
        c.name = name;
        c.mapping = mapping;
        c.event = event;
        c.opened_at = self.now;
        c.started = true;
        c.base_count = 0;
        c.reported_raw = 0;
        c.reported_scaled = 0;
    }

    fn stop(&mut self, counter: CounterIndex) {
        let Ok(i) = self.find(counter) else { return };
        self.close_event(i);
        self.counters[i].started = false;
    }

    fn drain(&mut self, counter: CounterIndex) -> u64 {
        let Ok(i) = self.find(counter) else { return 0 };
        let Some(e) = self.counters[i].event else {
            return 0;
        };
        let Ok(r) = self.reading(e) else { return 0 };
        let scaled = scale(r.count, r.enabled, r.running);
        let raw_mode = self.policy.scaling == Scaling::Raw || self.counters[i].sampling();
        let c = &mut self.counters[i];
        let delta = if raw_mode {
            r.count.saturating_sub(c.reported_raw)
        } else {
            scaled.saturating_sub(c.reported_scaled)
        };
        c.reported_raw = c.reported_raw.max(r.count);
        c.reported_scaled = c.reported_scaled.max(scaled);
        delta
    }
}
