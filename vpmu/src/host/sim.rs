//! The simulated host backend (`--host-pmu sim:PROFILE`). Everything it
//! reports is labelled *simulated*.
//!
//! A simulated counter counts `rate x multiplier(t)` events per nanosecond of
//! vCPU run time while it holds a host counter (between `enable` and
//! `disable`); `rate` comes from the [`Profile`], the multiplier from a
//! [`Workload`] (1.0 unless a test sets phases). The truth for a guest
//! counter is the same integral over the whole time it was *enabled*
//! ([`SimBackend::truth`]), so the multiplexer's extrapolation error is
//! measurable exactly.
//!
//! Counts are integer fixed point (rate in 2^-20 events/ns, multiplier in
//! 2^-10), cumulative per counter, so they never go backwards and never lose
//! an event to rounding between slices.
//!
//! Simulated guest time is all CPL 0, as with task-clock cycles on the perf
//! backend (this project's guests run in ring 0): a counter without `OS`
//! counts nothing.
//!
//! The backend also checks the scheduler: it refuses to enable a counter on a
//! slot its constraint forbids or that another counter holds, and
//! [`SimBackend::verify`] checks capacity after constraint-solving moves.

use super::profile::{PmuKind, Profile};
use super::{EventName, HostBackend, HostError, HostEvent, HostHandle, HostReading};
use crate::util::slab::Slab;

const RATE_SHIFT: u32 = 20;
const MULT_ONE: u64 = 1 << 10;
const TOTAL_SHIFT: u32 = RATE_SHIFT + 10;

/// A piecewise-constant, periodic multiplier of the profile's rates.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// (duration ns, multiplier in 2^-10) per phase.
    phases: Vec<(u64, u64)>,
    period: u64,
    /// Integral of one whole period.
    period_integral: u128,
}

impl Workload {
    /// A steady workload: the profile's rates.
    pub fn steady() -> Workload {
        Workload::phases(&[(1, 1.0)])
    }

    /// Phases of `(duration_ns, multiplier)`, repeated forever. Phases with
    /// zero duration are dropped; an empty list means steady.
    pub fn phases(phases: &[(u64, f64)]) -> Workload {
        let mut v: Vec<(u64, u64)> = phases
            .iter()
            .filter(|(d, _)| *d > 0)
            .map(|&(d, m)| (d, (m.clamp(0.0, 1e6) * MULT_ONE as f64).round() as u64))
            .collect();
        if v.is_empty() {
            v.push((1, MULT_ONE));
        }
        let period = v.iter().map(|(d, _)| *d).sum();
        let period_integral = v.iter().map(|&(d, m)| d as u128 * m as u128).sum();
        Workload {
            phases: v,
            period,
            period_integral,
        }
    }

    /// Integral of the multiplier over `[0, t)`, in 2^-10 x ns.
    fn integral(&self, t: u64) -> u128 {
        let mut total = (t / self.period) as u128 * self.period_integral;
        let mut rest = t % self.period;
        for &(d, m) in &self.phases {
            let step = rest.min(d);
            total += step as u128 * m as u128;
            rest -= step;
            if rest == 0 {
                break;
            }
        }
        total
    }
}

#[derive(Debug)]
struct SimCounter {
    event: HostEvent,
    rate_q: u64,
    /// Counts nothing (no privilege level selected).
    silent: bool,
    enabled_at: Option<u64>,
    slot: Option<u8>,
    /// Integral of the multiplier over the enabled intervals that ended.
    acc: u128,
    time_running: u64,
}

/// The simulated backend of one vCPU.
#[derive(Debug)]
pub struct SimBackend {
    profile: Profile,
    counters: Slab<SimCounter>,
    /// Per PMU, per counter: how many enabled host counters claim it.
    occupancy: Vec<[u8; super::profile::MAX_COUNTERS]>,
    workloads: Vec<Workload>,
    /// Events counted by counters already closed.
    closed_total: u64,
}

impl SimBackend {
    /// A backend for `profile` with a steady workload.
    pub fn new(profile: Profile) -> SimBackend {
        let n = profile.pmus.len();
        SimBackend {
            profile,
            counters: Slab::default(),
            occupancy: vec![[0; super::profile::MAX_COUNTERS]; n],
            workloads: vec![Workload::steady(); EventName::ALL.len()],
            closed_total: 0,
        }
    }

    /// The profile simulated.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Sets the workload of every event.
    pub fn set_workload(&mut self, w: Workload) {
        self.workloads = vec![w; EventName::ALL.len()];
    }

    /// Sets the workload of one event.
    pub fn set_event_workload(&mut self, event: EventName, w: Workload) {
        self.workloads[event.index()] = w;
    }

    /// What `event` really did on `pmu` over `[from, to)` of run time.
    pub fn truth(&self, pmu: usize, event: EventName, from: u64, to: u64) -> u64 {
        let Some(rate) = self.profile.pmus.get(pmu).and_then(|p| p.rate(event)) else {
            return 0;
        };
        let w = &self.workloads[event.index()];
        let g = w.integral(to.max(from)) - w.integral(from);
        ((rate_q(rate) as u128 * g) >> TOTAL_SHIFT) as u64
    }

    /// Events counted by every counter ever opened (open ones as of `now`).
    pub fn total_counted(&self, now: u64) -> u64 {
        let open: u64 = self
            .counters
            .iter()
            .map(|(_, c)| c)
            .map(|c| self.count_of(c, now))
            .sum();
        self.closed_total + open
    }

    /// Open counters, and how many are enabled.
    pub fn open_counters(&self) -> (usize, usize) {
        let open = self.counters.iter().count();
        let enabled = self
            .counters
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.enabled_at.is_some())
            .count();
        (open, enabled)
    }

    /// Enabled counters of hardware PMU `pmu`.
    pub fn enabled_on(&self, pmu: usize) -> usize {
        self.counters
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.enabled_at.is_some() && c.event.pmu == pmu)
            .count()
    }

    /// Checks that no hardware counter is claimed twice, that every enabled
    /// hardware counter sits on a counter its constraint allows, and that no
    /// PMU runs more counters than it has.
    pub fn verify(&self) -> Result<(), String> {
        for (i, occ) in self.occupancy.iter().enumerate() {
            if let Some(slot) = occ.iter().position(|&n| n > 1) {
                return Err(format!(
                    "PMU {i} counter {slot} claimed {} times",
                    occ[slot]
                ));
            }
        }
        for c in self.counters.iter().map(|(_, c)| c) {
            if c.enabled_at.is_none() {
                continue;
            }
            let pmu = &self.profile.pmus[c.event.pmu];
            if pmu.kind == PmuKind::Hardware {
                match c.slot {
                    Some(s) if c.event.mask & (1 << s) != 0 && s < pmu.counters() => {}
                    s => return Err(format!("{} on forbidden counter {s:?}", c.event.name)),
                }
            }
        }
        for (i, p) in self.profile.pmus.iter().enumerate() {
            if p.kind == PmuKind::Hardware && self.enabled_on(i) > p.counters() as usize {
                return Err(format!("PMU {} over capacity", p.name));
            }
        }
        Ok(())
    }

    fn count_of(&self, c: &SimCounter, now: u64) -> u64 {
        if c.silent {
            return 0;
        }
        let mut acc = c.acc;
        if let Some(t0) = c.enabled_at {
            let w = &self.workloads[c.event.name.index()];
            acc += w.integral(now.max(t0)) - w.integral(t0);
        }
        ((c.rate_q as u128 * acc) >> TOTAL_SHIFT) as u64
    }

    fn get(&self, h: HostHandle) -> Result<&SimCounter, HostError> {
        self.counters.get(h.0).ok_or(HostError::BadHandle(h))
    }

    fn get_mut(&mut self, h: HostHandle) -> Result<&mut SimCounter, HostError> {
        self.counters.get_mut(h.0).ok_or(HostError::BadHandle(h))
    }
}

fn rate_q(rate: f64) -> u64 {
    (rate * (1u64 << RATE_SHIFT) as f64).round() as u64
}

impl HostBackend for SimBackend {
    fn open(&mut self, event: &HostEvent) -> Result<HostHandle, HostError> {
        let pmu = self
            .profile
            .pmus
            .get(event.pmu)
            .ok_or(HostError::UnknownPmu(event.pmu))?;
        let rate = pmu.rate(event.name).ok_or_else(|| HostError::Unsupported {
            pmu: pmu.name.clone(),
            event: event.name,
        })?;
        let c = SimCounter {
            event: *event,
            rate_q: rate_q(rate),
            silent: !event.modifiers.os,
            enabled_at: None,
            slot: None,
            acc: 0,
            time_running: 0,
        };
        Ok(HostHandle(self.counters.insert(c)))
    }

    fn enable(&mut self, h: HostHandle, slot: Option<u8>, now: u64) -> Result<(), HostError> {
        let c = self.get(h)?;
        if c.enabled_at.is_some() {
            return Err(HostError::AlreadyEnabled(h));
        }
        let (pmu_idx, mask) = (c.event.pmu, c.event.mask);
        let pmu = &self.profile.pmus[pmu_idx];
        if pmu.kind == PmuKind::Hardware {
            let busy = |s: u8| {
                s >= pmu.counters()
                    || mask & (1 << s) == 0
                    || self.occupancy[pmu_idx][s as usize] != 0
            };
            match slot {
                None => {
                    return Err(HostError::NoCounter {
                        pmu: pmu.name.clone(),
                    })
                }
                Some(s) if busy(s) => {
                    return Err(HostError::SlotUnavailable {
                        pmu: pmu.name.clone(),
                        slot: s,
                    })
                }
                Some(s) => self.occupancy[pmu_idx][s as usize] += 1,
            }
        }
        let c = self.get_mut(h)?;
        c.enabled_at = Some(now);
        c.slot = slot;
        Ok(())
    }

    fn disable(&mut self, h: HostHandle, now: u64) -> Result<(), HostError> {
        let c = self.get(h)?;
        let Some(t0) = c.enabled_at else {
            return Ok(());
        };
        let w = &self.workloads[c.event.name.index()];
        let g = w.integral(now.max(t0)) - w.integral(t0);
        let (pmu, slot) = (c.event.pmu, c.slot);
        if let Some(s) = slot {
            let o = &mut self.occupancy[pmu][s as usize];
            *o = o.saturating_sub(1);
        }
        let c = self.get_mut(h)?;
        c.acc += g;
        c.time_running += now.saturating_sub(t0);
        c.enabled_at = None;
        c.slot = None;
        Ok(())
    }

    fn reassign(&mut self, h: HostHandle, slot: u8) {
        let Ok(c) = self.get(h) else { return };
        let (pmu, old) = (c.event.pmu, c.slot);
        if c.enabled_at.is_none() {
            return;
        }
        if let Some(s) = old {
            let o = &mut self.occupancy[pmu][s as usize];
            *o = o.saturating_sub(1);
        }
        if let Some(o) = self.occupancy[pmu].get_mut(slot as usize) {
            *o += 1;
        }
        if let Ok(c) = self.get_mut(h) {
            c.slot = Some(slot);
        }
    }

    fn read(&mut self, h: HostHandle, now: u64) -> Result<HostReading, HostError> {
        let c = self.get(h)?;
        let running = c.time_running + c.enabled_at.map_or(0, |t0| now.saturating_sub(t0));
        Ok(HostReading {
            count: self.count_of(c, now),
            time_enabled: running,
            time_running: running,
        })
    }

    fn close(&mut self, h: HostHandle) -> Result<(), HostError> {
        // The scheduler always disables first; a counter closed while
        // enabled keeps only what it counted in the slices that ended.
        let c = self.get(h)?;
        if let (Some(_), Some(s)) = (c.enabled_at, c.slot) {
            let pmu = c.event.pmu;
            let o = &mut self.occupancy[pmu][s as usize];
            *o = o.saturating_sub(1);
        }
        let c = self.get(h)?;
        let final_count = if c.silent {
            0
        } else {
            ((c.rate_q as u128 * c.acc) >> TOTAL_SHIFT) as u64
        };
        self.closed_total += final_count;
        self.counters.remove(h.0);
        Ok(())
    }

    fn truth(&self, pmu: usize, event: EventName, from: u64, to: u64) -> Option<u64> {
        Some(SimBackend::truth(self, pmu, event, from, to))
    }

    fn kind(&self) -> &'static str {
        "simulated"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Modifiers;

    fn ev(profile: &Profile, name: EventName) -> HostEvent {
        let m = profile.map(name).unwrap();
        HostEvent {
            name,
            pmu: m.pmu,
            mask: m.mask,
            modifiers: Modifiers::plain(),
        }
    }

    #[test]
    fn counts_rate_times_running() {
        let p = Profile::builtin("intel-4gp-3fixed").unwrap();
        let mut b = SimBackend::new(p.clone());
        let h = b.open(&ev(&p, EventName::Cycles)).unwrap();
        b.enable(h, Some(0), 100).unwrap();
        b.disable(h, 1100).unwrap();
        b.enable(h, Some(5), 5000).unwrap();
        let r = b.read(h, 6000).unwrap();
        assert_eq!(r.count, 6000);
        assert_eq!(r.time_running, 2000);
        assert_eq!(b.truth(0, EventName::Cycles, 0, 1000), 3000);
        // Slot 2 is forbidden for ref-cycles; slot 0 is taken.
        let h2 = b.open(&ev(&p, EventName::RefCycles)).unwrap();
        assert!(b.enable(h2, Some(2), 0).is_err());
        let h3 = b.open(&ev(&p, EventName::Branches)).unwrap();
        assert!(b.enable(h3, Some(5), 0).is_err());
        assert!(b.verify().is_ok());
    }

    #[test]
    fn phases_integrate() {
        let w = Workload::phases(&[(10, 1.0), (10, 3.0)]);
        assert_eq!(w.integral(20), 40 * MULT_ONE as u128);
        assert_eq!(w.integral(25), 45 * MULT_ONE as u128);
    }
}
