//! What both PMU architectures share: the counter values, the overflow
//! status and pending PMI, and the bookkeeping with the [`CountSource`]
//! (drain a running counter before its value or configuration changes,
//! start/stop it when its effective configuration changes, re-arm an
//! interrupt-enabled counter after it wrapped).
//!
//! The architecture-specific part is the control state, seen through
//! [`Controls::effective`]: what a counter counts right now, if anything.

use crate::arch::msr::GLOBAL_FIXED_SHIFT;
use crate::arch::{FIXED_COUNTER_MASK, GP_COUNTER_MASK};
use crate::config::{MAX_FIXED_COUNTERS, MAX_GP_COUNTERS};
use crate::source::{CountSource, CounterConfig, CounterIndex, EventCode};

pub(crate) const GP_N: usize = MAX_GP_COUNTERS as usize;
pub(crate) const FIXED_N: usize = MAX_FIXED_COUNTERS as usize;

/// Bit of `counter` in the global control/status layout: general-purpose
/// counter i at bit i (Intel `IA32_PERF_GLOBAL_*` and AMD
/// `PerfCntrGlobal*` alike), Intel fixed counter i at bit 32 + i.
pub fn global_bit(counter: CounterIndex) -> u64 {
    match counter {
        CounterIndex::Gp(i) => 1u64 << (i & 31),
        CounterIndex::Fixed(i) => 1u64 << (GLOBAL_FIXED_SHIFT + u32::from(i & 31)),
    }
}

/// The architecture's control state, as the bank needs to see it.
pub(crate) trait Controls {
    /// What `c` counts right now (its value in `bank` gives the overflow
    /// distance), or `None` if it does not count or does not exist.
    fn effective(&self, c: CounterIndex, bank: &Bank) -> Option<CounterConfig>;
}

/// Counter values, overflow status and the pending PMI of one vCPU.
#[derive(Clone, Debug)]
pub(crate) struct Bank {
    gp: [u64; GP_N],
    fixed: [u64; FIXED_N],
    /// Overflow bits in the [`global_bit`] layout.
    pub(crate) status: u64,
    /// Whether a wrap sets the counter's status bit (Intel version 2+, AMD
    /// PerfMonV2).
    status_on_overflow: bool,
    /// Counters whose source arming is stale because an emulated event made
    /// them wrap; re-armed by the next drain.
    rearm: u64,
    pmi_pending: bool,
}

impl Bank {
    pub(crate) fn new(status_on_overflow: bool) -> Self {
        Self {
            gp: [0; GP_N],
            fixed: [0; FIXED_N],
            status: 0,
            status_on_overflow,
            rearm: 0,
            pmi_pending: false,
        }
    }

    /// The value of `c` as of its last drain.
    pub(crate) fn value(&self, c: CounterIndex) -> u64 {
        match c {
            CounterIndex::Gp(i) => self.gp.get(usize::from(i)).copied().unwrap_or(0),
            CounterIndex::Fixed(i) => self.fixed.get(usize::from(i)).copied().unwrap_or(0),
        }
    }

    /// Mask of `c`'s width (48 bits for every counter of both vendors).
    pub(crate) fn width_mask(c: CounterIndex) -> u64 {
        match c {
            CounterIndex::Gp(_) => GP_COUNTER_MASK,
            CounterIndex::Fixed(_) => FIXED_COUNTER_MASK,
        }
    }

    /// Events until `c` wraps, from its current value.
    pub(crate) fn overflow_after(&self, c: CounterIndex) -> u64 {
        (Self::width_mask(c) + 1) - self.value(c)
    }

    fn set_value(&mut self, c: CounterIndex, v: u64) {
        let slot = match c {
            CounterIndex::Gp(i) => self.gp.get_mut(usize::from(i)),
            CounterIndex::Fixed(i) => self.fixed.get_mut(usize::from(i)),
        };
        if let Some(s) = slot {
            *s = v & Self::width_mask(c);
        }
    }

    /// Adds `delta` events to `c`; on a wrap sets its status bit (if the
    /// architecture has one) and, if `int`, raises a PMI. Returns whether it
    /// wrapped.
    fn fold(&mut self, c: CounterIndex, delta: u64, int: bool) -> bool {
        if delta == 0 {
            return false;
        }
        let sum = u128::from(self.value(c)) + u128::from(delta);
        let wrapped = sum > u128::from(Self::width_mask(c));
        self.set_value(c, sum as u64);
        if wrapped {
            if self.status_on_overflow {
                self.status |= global_bit(c);
            }
            if int {
                self.pmi_pending = true;
            }
        }
        wrapped
    }

    /// Folds in the events a running counter counted since the last drain,
    /// re-arming it if it wrapped with its interrupt enabled (or its arming
    /// went stale).
    pub(crate) fn drain(
        &mut self,
        ctl: &impl Controls,
        c: CounterIndex,
        src: &mut dyn CountSource,
    ) {
        let Some(cfg) = ctl.effective(c, self) else {
            return;
        };
        let int = cfg.overflow_after.is_some();
        let delta = src.drain(c);
        let wrapped = self.fold(c, delta, int);
        let bit = global_bit(c);
        if int && (wrapped || self.rearm & bit != 0) {
            if let Some(cfg) = ctl.effective(c, self) {
                src.start(c, &cfg);
            }
        }
        self.rearm &= !bit;
    }

    /// Brings the source in line after `c`'s control state changed; `was` is
    /// its effective configuration before the change.
    pub(crate) fn reconcile(
        &mut self,
        ctl: &impl Controls,
        c: CounterIndex,
        was: Option<CounterConfig>,
        src: &mut dyn CountSource,
    ) {
        if was == ctl.effective(c, self) {
            return;
        }
        if let Some(w) = was {
            let delta = src.drain(c);
            self.fold(c, delta, w.overflow_after.is_some());
        }
        match ctl.effective(c, self) {
            Some(cfg) => src.start(c, &cfg),
            None => src.stop(c),
        }
        self.rearm &= !global_bit(c);
    }

    /// RDMSR of a counter: drains it first if it runs.
    pub(crate) fn read(
        &mut self,
        ctl: &impl Controls,
        c: CounterIndex,
        src: &mut dyn CountSource,
    ) -> u64 {
        self.drain(ctl, c, src);
        self.value(c)
    }

    /// WRMSR of a counter (`v` already truncated to what the MSR takes).
    pub(crate) fn write(
        &mut self,
        ctl: &impl Controls,
        c: CounterIndex,
        v: u64,
        src: &mut dyn CountSource,
    ) {
        match ctl.effective(c, self) {
            None => self.set_value(c, v),
            Some(cfg) => {
                let int = cfg.overflow_after.is_some();
                // Events before the write still count (and may overflow).
                let delta = src.drain(c);
                self.fold(c, delta, int);
                self.set_value(c, v);
                if int {
                    if let Some(cfg) = ctl.effective(c, self) {
                        src.start(c, &cfg);
                    }
                }
                self.rearm &= !global_bit(c);
            }
        }
    }

    /// Counts one instruction the VMM emulated on `c` if it counts `inst`
    /// (plainly: no edge, invert or counter mask) at the privilege level the
    /// instruction ran at. Makes no source call: a counter it makes wrap with
    /// its interrupt enabled is re-armed by the next drain.
    pub(crate) fn retire(
        &mut self,
        ctl: &impl Controls,
        c: CounterIndex,
        inst: EventCode,
        cpl0: bool,
    ) {
        let Some(cfg) = ctl.effective(c, self) else {
            return;
        };
        let m = cfg.modifiers;
        let counts = cfg.event == inst
            && !m.edge
            && !m.inv
            && m.cmask == 0
            && if cpl0 { m.os } else { m.usr };
        if !counts {
            return;
        }
        let int = cfg.overflow_after.is_some();
        if self.fold(c, 1, int) && int {
            self.rearm |= global_bit(c);
        }
    }

    pub(crate) fn take_pmi(&mut self) -> bool {
        std::mem::take(&mut self.pmi_pending)
    }

    pub(crate) fn pmi_pending(&self) -> bool {
        self.pmi_pending
    }
}
