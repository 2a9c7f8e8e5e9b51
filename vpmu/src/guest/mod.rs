//! The guest-visible architectural PMU of one vCPU: what RDMSR and WRMSR of
//! every PMU MSR return or raise, which counters count, overflow into
//! `IA32_PERF_GLOBAL_STATUS` and PMIs.
//!
//! # SDM rules and the decisions taken where the SDM leaves room
//!
//! - **Existence.** With the vPMU off every PMU MSR raises #GP. Otherwise an
//!   MSR exists if the configured version and counts have it:
//!   `IA32_PMCx`/`IA32_PERFEVTSELx` for x < general-purpose counters;
//!   `IA32_A_PMCx` additionally needs `IA32_PERF_CAPABILITIES.FW_WRITE`;
//!   `IA32_FIXED_CTRx` for x < fixed counters (version 2+);
//!   `IA32_FIXED_CTR_CTRL`, `IA32_PERF_GLOBAL_{STATUS,CTRL,OVF_CTRL}` from
//!   version 2; `IA32_PERF_GLOBAL_STATUS_SET` and `IA32_PERF_GLOBAL_INUSE`
//!   from version 4; `IA32_PERF_CAPABILITIES` whenever `CPUID.01H:ECX.PDCM` is
//!   set, i.e. whenever the vPMU is on ([`crate::arch::cpuid::pdcm`]).
//! - **Counter writes.** `IA32_PMCx` takes bits 31:0 of the value and
//!   sign-extends bit 31 to the 48-bit width (bits 63:32 of the value are
//!   ignored, as on hardware without full-width writes). `IA32_A_PMCx` and
//!   `IA32_FIXED_CTRx` take the full 48 bits; a value with bits above the
//!   width set raises #GP. Reads return the 48-bit value.
//! - **Reserved bits** raise #GP: `IA32_PERFEVTSELx[63:32]`; `AnyThread`
//!   (`IA32_PERFEVTSELx[21]`, nibble bit 2 of `IA32_FIXED_CTR_CTRL`) before
//!   version 3; nibbles of absent fixed counters; `GLOBAL_CTRL` bits of absent
//!   counters; `GLOBAL_OVF_CTRL`/`STATUS_RESET` bits other than the counters'
//!   and `ClrOvfBuf` (62) / `ClrCondChgd` (63) (accepted, no effect: those
//!   conditions never occur); `STATUS_SET` bits other than the counters' (no
//!   PEBS, LBR or Intel PT to set status for).
//! - **AnyThread.** Reserved in versions 1 and 2; a valid bit passed to the
//!   source in versions 3 and 4; in version 5 `CPUID.0AH:EDX[15]` (AnyThread
//!   deprecation) is set and the bit is accepted and read back but has no
//!   effect (not passed to the source).
//! - **Read-only.** `IA32_PERF_GLOBAL_STATUS`, `IA32_PERF_GLOBAL_INUSE` and
//!   `IA32_PERF_CAPABILITIES`: WRMSR raises #GP. `GLOBAL_OVF_CTRL` /
//!   `STATUS_RESET` and `STATUS_SET` read as 0.
//! - **Reset values.** Everything 0 except `IA32_PERF_GLOBAL_CTRL`, whose
//!   general-purpose enable bits are set from version 2 (SDM: so that
//!   version 1 software, which only knows `EN`, keeps working; KVM does the
//!   same). Fixed-counter enable bits are clear.
//! - **Counting.** A counter counts when locally enabled (`EN` and at least one
//!   of `USR`/`OS`; a fixed counter's `ENi` non-zero) and, from version 2,
//!   globally enabled. Privilege filtering is the source's job.
//! - **Overflow.** Wrapping past 2^48 sets the counter's `GLOBAL_STATUS` bit
//!   (version 2+) and, with `INT`/`PMI` set, raises a PMI ([`GuestPmu::take_pmi`]),
//!   also in version 1. `STATUS_SET` sets bits without a PMI.
//! - **INUSE** (version 4): bit n = `IA32_PERFEVTSELn[7:0] != 0`; bit 32+n =
//!   `ENn` field of `IA32_FIXED_CTR_CTRL` non-zero; bit 63 (`PMI_InUse`) = any
//!   `INT` or fixed `PMI` bit set.
//!
//! # Calls into the source
//!
//! The source is called only when something on the host side must happen:
//! `drain` when a running counter is read, rewritten, reconfigured or
//! stopped; `start`/`stop` when a counter's effective configuration changes
//! (or an interrupt-enabled counter must be re-armed). Everything else (a
//! write of the same value, an event select of a counter that stays stopped,
//! reading control MSRs or a stopped counter) touches only this struct. Nothing
//! on the MSR path allocates.
//!
//! `CounterConfig::overflow_after` counts from the `start` call: the number of
//! events after which the counter wraps. Reads in between drain but do not
//! re-arm.

mod snapshot;

pub use snapshot::{FixedCounterState, GpCounterState, GuestPmuState};

use crate::arch::cpuid;
use crate::arch::events::{self, INSTRUCTIONS_RETIRED};
use crate::arch::msr::{
    evtsel, fixed_ctrl, EventSelect, FixedCtrl, PmuMsr, GLOBAL_FIXED_SHIFT, GLOBAL_INUSE_PMI,
    GLOBAL_STATUS_COND_CHGD, GLOBAL_STATUS_OVF_BUF,
};
use crate::arch::{FIXED_COUNTER_MASK, GP_COUNTER_MASK};
use crate::config::{PmuConfig, MAX_FIXED_COUNTERS, MAX_GP_COUNTERS};
use crate::source::{CountSource, CounterConfig, CounterIndex, EventCode};

const GP_N: usize = MAX_GP_COUNTERS as usize;
const FIXED_N: usize = MAX_FIXED_COUNTERS as usize;

/// The guest must get a #GP(0) for this access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("#GP(0)")]
pub struct Gp;

/// The guest-visible PMU of one vCPU.
#[derive(Clone, Debug)]
pub struct GuestPmu {
    cfg: PmuConfig,
    /// 0 when the vPMU is off.
    version: u8,
    n_gp: u8,
    n_fixed: u8,
    perf_capabilities: u64,
    /// `IA32_PERFEVTSELx`.
    evtsel: [u64; GP_N],
    /// `IA32_PMCx` as of the last drain.
    pmc: [u64; GP_N],
    /// `IA32_FIXED_CTR_CTRL`.
    fixed_ctrl: u64,
    /// `IA32_FIXED_CTRx` as of the last drain.
    fixed: [u64; FIXED_N],
    global_ctrl: u64,
    global_status: u64,
    /// Counters (global-register bit layout) whose source arming is stale
    /// because an emulated event made them overflow; re-armed by `sync`.
    rearm: u64,
    pmi_pending: bool,
}

/// Bit of `counter` in the `IA32_PERF_GLOBAL_*` layout.
pub fn global_bit(counter: CounterIndex) -> u64 {
    match counter {
        CounterIndex::Gp(i) => 1u64 << (i & 31),
        CounterIndex::Fixed(i) => 1u64 << (GLOBAL_FIXED_SHIFT + u32::from(i & 31)),
    }
}

fn counter_of_bit(bit: u32) -> CounterIndex {
    if bit >= GLOBAL_FIXED_SHIFT {
        CounterIndex::Fixed((bit - GLOBAL_FIXED_SHIFT) as u8)
    } else {
        CounterIndex::Gp(bit as u8)
    }
}

/// Slot of a counter bit (known to exist) in a per-counter array.
fn slot_of_bit(bit: u32) -> usize {
    if bit >= GLOBAL_FIXED_SHIFT {
        GP_N + (bit - GLOBAL_FIXED_SHIFT) as usize % FIXED_N
    } else {
        bit as usize % GP_N
    }
}

impl GuestPmu {
    /// A PMU in its reset state. An invalid configuration is clamped to the
    /// architectural limits (callers should [`PmuConfig::validate`] first).
    pub fn new(cfg: PmuConfig) -> Self {
        // Version 0 (invalid) is treated as the vPMU off, as CPUID would show.
        let version = if cfg.enabled {
            cfg.version.min(crate::config::MAX_VERSION)
        } else {
            0
        };
        let (n_gp, n_fixed) = if version == 0 {
            (0, 0)
        } else {
            (cfg.effective_gp(), cfg.effective_fixed())
        };
        let mut pmu = Self {
            cfg,
            version,
            n_gp,
            n_fixed,
            perf_capabilities: if version == 0 {
                0
            } else {
                cpuid::perf_capabilities(&cfg)
            },
            evtsel: [0; GP_N],
            pmc: [0; GP_N],
            fixed_ctrl: 0,
            fixed: [0; FIXED_N],
            global_ctrl: 0,
            global_status: 0,
            rearm: 0,
            pmi_pending: false,
        };
        if version >= 2 {
            pmu.global_ctrl = pmu.gp_mask();
        }
        pmu
    }

    /// The configuration this PMU was built from.
    pub fn config(&self) -> &PmuConfig {
        &self.cfg
    }

    fn gp_mask(&self) -> u64 {
        (1u64 << self.n_gp) - 1
    }

    fn fixed_mask(&self) -> u64 {
        ((1u64 << self.n_fixed) - 1) << GLOBAL_FIXED_SHIFT
    }

    /// Bits of the counters that exist, in the `IA32_PERF_GLOBAL_*` layout.
    pub fn counter_mask(&self) -> u64 {
        self.gp_mask() | self.fixed_mask()
    }

    fn fw_write(&self) -> bool {
        self.perf_capabilities & crate::arch::msr::PERF_CAP_FW_WRITE != 0
    }

    fn evtsel_reserved(&self) -> u64 {
        let mut r = !evtsel::DEFINED;
        if self.version < 3 {
            r |= evtsel::ANY_THREAD;
        }
        r
    }

    fn fixed_ctrl_reserved(&self) -> u64 {
        let per = if self.version < 3 {
            fixed_ctrl::OS | fixed_ctrl::USR | fixed_ctrl::PMI
        } else {
            0xF
        };
        let mut ok = 0u64;
        for i in 0..u32::from(self.n_fixed) {
            ok |= per << (fixed_ctrl::STRIDE * i);
        }
        !ok
    }

    fn exists(&self, c: CounterIndex) -> bool {
        match c {
            CounterIndex::Gp(i) => i < self.n_gp,
            CounterIndex::Fixed(i) => i < self.n_fixed,
        }
    }

    fn value(&self, c: CounterIndex) -> u64 {
        match c {
            CounterIndex::Gp(i) => self.pmc.get(usize::from(i)).copied().unwrap_or(0),
            CounterIndex::Fixed(i) => self.fixed.get(usize::from(i)).copied().unwrap_or(0),
        }
    }

    fn set_value(&mut self, c: CounterIndex, v: u64) {
        match c {
            CounterIndex::Gp(i) => {
                if let Some(s) = self.pmc.get_mut(usize::from(i)) {
                    *s = v & GP_COUNTER_MASK;
                }
            }
            CounterIndex::Fixed(i) => {
                if let Some(s) = self.fixed.get_mut(usize::from(i)) {
                    *s = v & FIXED_COUNTER_MASK;
                }
            }
        }
    }

    fn width_mask(c: CounterIndex) -> u64 {
        match c {
            CounterIndex::Gp(_) => GP_COUNTER_MASK,
            CounterIndex::Fixed(_) => FIXED_COUNTER_MASK,
        }
    }

    fn globally_enabled(&self, c: CounterIndex) -> bool {
        self.version < 2 || self.global_ctrl & global_bit(c) != 0
    }

    /// What `c` counts right now, or `None` if it does not count.
    pub fn effective(&self, c: CounterIndex) -> Option<CounterConfig> {
        if !self.exists(c) || !self.globally_enabled(c) {
            return None;
        }
        let any_ok = matches!(self.version, 3 | 4);
        let overflow = |int: bool| int.then(|| (Self::width_mask(c) + 1) - self.value(c));
        match c {
            CounterIndex::Gp(i) => {
                let s = EventSelect::decode(self.evtsel[usize::from(i)]);
                if !s.en || !(s.usr || s.os) {
                    return None;
                }
                Some(CounterConfig {
                    event: s.code(),
                    usr: s.usr,
                    os: s.os,
                    edge: s.edge,
                    inv: s.inv,
                    cmask: s.cmask,
                    any_thread: any_ok && s.any_thread,
                    overflow_after: overflow(s.int),
                })
            }
            CounterIndex::Fixed(i) => {
                let f = FixedCtrl::decode(self.fixed_ctrl, i);
                if !(f.os || f.usr) {
                    return None;
                }
                let event = events::fixed_event(i)?.code;
                Some(CounterConfig {
                    event,
                    usr: f.usr,
                    os: f.os,
                    edge: false,
                    inv: false,
                    cmask: 0,
                    any_thread: any_ok && f.any_thread,
                    overflow_after: overflow(f.pmi),
                })
            }
        }
    }

    /// Whether `c` is counting.
    pub fn is_running(&self, c: CounterIndex) -> bool {
        self.effective(c).is_some()
    }

    /// Adds `delta` events to `c`; on a wrap sets its status bit (version
    /// 2+) and, if `int`, raises a PMI. Returns whether it wrapped.
    fn fold(&mut self, c: CounterIndex, delta: u64, int: bool) -> bool {
        if delta == 0 {
            return false;
        }
        let sum = u128::from(self.value(c)) + u128::from(delta);
        let wrapped = sum > u128::from(Self::width_mask(c));
        self.set_value(c, sum as u64);
        if wrapped {
            if self.version >= 2 {
                self.global_status |= global_bit(c);
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
    fn drain_one(&mut self, c: CounterIndex, src: &mut dyn CountSource) {
        let Some(cfg) = self.effective(c) else {
            return;
        };
        let int = cfg.overflow_after.is_some();
        let delta = src.drain(c);
        let wrapped = self.fold(c, delta, int);
        let bit = global_bit(c);
        if int && (wrapped || self.rearm & bit != 0) {
            if let Some(cfg) = self.effective(c) {
                src.start(c, &cfg);
            }
        }
        self.rearm &= !bit;
    }

    /// Brings the source in line after `c`'s control state changed; `was` is
    /// its effective configuration before the change.
    fn reconcile(
        &mut self,
        c: CounterIndex,
        was: Option<CounterConfig>,
        src: &mut dyn CountSource,
    ) {
        if was == self.effective(c) {
            return;
        }
        if let Some(w) = was {
            let delta = src.drain(c);
            self.fold(c, delta, w.overflow_after.is_some());
        }
        match self.effective(c) {
            Some(cfg) => src.start(c, &cfg),
            None => src.stop(c),
        }
        self.rearm &= !global_bit(c);
    }

    fn read_counter(&mut self, c: CounterIndex, src: &mut dyn CountSource) -> u64 {
        self.drain_one(c, src);
        self.value(c)
    }

    fn write_counter(&mut self, c: CounterIndex, v: u64, src: &mut dyn CountSource) {
        match self.effective(c) {
            None => self.set_value(c, v),
            Some(cfg) => {
                let int = cfg.overflow_after.is_some();
                // Events before the write still count (and may overflow).
                let delta = src.drain(c);
                self.fold(c, delta, int);
                self.set_value(c, v);
                if int {
                    if let Some(cfg) = self.effective(c) {
                        src.start(c, &cfg);
                    }
                }
                self.rearm &= !global_bit(c);
            }
        }
    }

    /// `IA32_PERF_GLOBAL_INUSE`.
    fn inuse(&self) -> u64 {
        let mut v = 0;
        let mut pmi = false;
        for i in 0..self.n_gp {
            let s = self.evtsel[usize::from(i)];
            if s & evtsel::EVENT_MASK != 0 {
                v |= 1 << i;
            }
            pmi |= s & evtsel::INT != 0;
        }
        for i in 0..self.n_fixed {
            let n = FixedCtrl::nibble(self.fixed_ctrl, i);
            if n & fixed_ctrl::EN_MASK != 0 {
                v |= 1 << (GLOBAL_FIXED_SHIFT + u32::from(i));
            }
            pmi |= n & fixed_ctrl::PMI != 0;
        }
        if pmi {
            v |= GLOBAL_INUSE_PMI;
        }
        v
    }

    fn gp_index(&self, i: u8) -> Result<CounterIndex, Gp> {
        if i < self.n_gp {
            Ok(CounterIndex::Gp(i))
        } else {
            Err(Gp)
        }
    }

    fn fixed_index(&self, i: u8) -> Result<CounterIndex, Gp> {
        if i < self.n_fixed {
            Ok(CounterIndex::Fixed(i))
        } else {
            Err(Gp)
        }
    }

    fn need_version(&self, v: u8) -> Result<(), Gp> {
        if self.version >= v {
            Ok(())
        } else {
            Err(Gp)
        }
    }

    /// RDMSR of `index`: its value, or #GP if the MSR does not exist.
    pub fn rdmsr(&mut self, index: u32, src: &mut dyn CountSource) -> Result<u64, Gp> {
        if self.version == 0 {
            return Err(Gp);
        }
        match PmuMsr::decode(index).ok_or(Gp)? {
            PmuMsr::Pmc(i) => {
                let c = self.gp_index(i)?;
                Ok(self.read_counter(c, src))
            }
            PmuMsr::APmc(i) => {
                if !self.fw_write() {
                    return Err(Gp);
                }
                let c = self.gp_index(i)?;
                Ok(self.read_counter(c, src))
            }
            PmuMsr::EvtSel(i) => {
                self.gp_index(i)?;
                Ok(self.evtsel[usize::from(i)])
            }
            PmuMsr::FixedCtr(i) => {
                let c = self.fixed_index(i)?;
                Ok(self.read_counter(c, src))
            }
            PmuMsr::FixedCtrCtrl => self.need_version(2).map(|_| self.fixed_ctrl),
            PmuMsr::GlobalStatus => self.need_version(2).map(|_| self.global_status),
            PmuMsr::GlobalCtrl => self.need_version(2).map(|_| self.global_ctrl),
            PmuMsr::GlobalOvfCtrl => self.need_version(2).map(|_| 0),
            PmuMsr::GlobalStatusSet => self.need_version(4).map(|_| 0),
            PmuMsr::GlobalInuse => self.need_version(4).map(|_| self.inuse()),
            PmuMsr::PerfCapabilities => {
                if cpuid::pdcm(&self.cfg) {
                    Ok(self.perf_capabilities)
                } else {
                    Err(Gp)
                }
            }
        }
    }

    /// WRMSR of `value` to `index`, or #GP (state unchanged) if the MSR does
    /// not exist, is read-only, or `value` sets reserved bits.
    pub fn wrmsr(&mut self, index: u32, value: u64, src: &mut dyn CountSource) -> Result<(), Gp> {
        if self.version == 0 {
            return Err(Gp);
        }
        match PmuMsr::decode(index).ok_or(Gp)? {
            PmuMsr::Pmc(i) => {
                let c = self.gp_index(i)?;
                // Legacy alias: bits 31:0, sign-extended from bit 31.
                let v = (value as u32 as i32 as i64 as u64) & GP_COUNTER_MASK;
                self.write_counter(c, v, src);
            }
            PmuMsr::APmc(i) => {
                if !self.fw_write() || value & !GP_COUNTER_MASK != 0 {
                    return Err(Gp);
                }
                let c = self.gp_index(i)?;
                self.write_counter(c, value, src);
            }
            PmuMsr::FixedCtr(i) => {
                let c = self.fixed_index(i)?;
                if value & !FIXED_COUNTER_MASK != 0 {
                    return Err(Gp);
                }
                self.write_counter(c, value, src);
            }
            PmuMsr::EvtSel(i) => {
                let c = self.gp_index(i)?;
                if value & self.evtsel_reserved() != 0 {
                    return Err(Gp);
                }
                let slot = usize::from(i);
                if self.evtsel[slot] != value {
                    let was = self.effective(c);
                    self.evtsel[slot] = value;
                    self.reconcile(c, was, src);
                }
            }
            PmuMsr::FixedCtrCtrl => {
                self.need_version(2)?;
                if value & self.fixed_ctrl_reserved() != 0 {
                    return Err(Gp);
                }
                if value != self.fixed_ctrl {
                    let mut was = [None; FIXED_N];
                    for (i, w) in was.iter_mut().enumerate().take(usize::from(self.n_fixed)) {
                        *w = self.effective(CounterIndex::Fixed(i as u8));
                    }
                    self.fixed_ctrl = value;
                    for (i, w) in was.iter().enumerate().take(usize::from(self.n_fixed)) {
                        self.reconcile(CounterIndex::Fixed(i as u8), *w, src);
                    }
                }
            }
            PmuMsr::GlobalCtrl => {
                self.need_version(2)?;
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                let diff = value ^ self.global_ctrl;
                if diff != 0 {
                    // GP counters in slots 0..8, fixed counters in 8..12.
                    let mut was = [None; GP_N + FIXED_N];
                    let mut bits = diff;
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        was[slot_of_bit(b)] = self.effective(counter_of_bit(b));
                        bits &= bits - 1;
                    }
                    self.global_ctrl = value;
                    let mut bits = diff;
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        self.reconcile(counter_of_bit(b), was[slot_of_bit(b)], src);
                        bits &= bits - 1;
                    }
                }
            }
            PmuMsr::GlobalOvfCtrl => {
                self.need_version(2)?;
                let ok = self.counter_mask() | GLOBAL_STATUS_OVF_BUF | GLOBAL_STATUS_COND_CHGD;
                if value & !ok != 0 {
                    return Err(Gp);
                }
                self.global_status &= !value;
            }
            PmuMsr::GlobalStatusSet => {
                self.need_version(4)?;
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                self.global_status |= value;
            }
            PmuMsr::GlobalStatus | PmuMsr::GlobalInuse | PmuMsr::PerfCapabilities => {
                return Err(Gp)
            }
        }
        Ok(())
    }

    /// Returns whether a PMI is pending, and clears it. The vCPU delivers it
    /// through the guest's LAPIC LVTPC entry.
    pub fn take_pmi(&mut self) -> bool {
        std::mem::take(&mut self.pmi_pending)
    }

    /// Whether a PMI is pending (without clearing it).
    pub fn pmi_pending(&self) -> bool {
        self.pmi_pending
    }

    /// Drains every running counter (after the vCPU was kicked for an
    /// overflow, before it re-enters the guest), updating status bits and
    /// PMIs and re-arming interrupt-enabled counters that wrapped.
    pub fn sync(&mut self, src: &mut dyn CountSource) {
        for i in 0..self.n_gp {
            self.drain_one(CounterIndex::Gp(i), src);
        }
        for i in 0..self.n_fixed {
            self.drain_one(CounterIndex::Fixed(i), src);
        }
    }

    /// Counts one instruction the VMM emulated (a trapped RDMSR, WRMSR or port
    /// access), as KVM does for the instructions it emulates: +1 on every
    /// running counter that counts instructions retired (`IA32_PERFEVTSELx`
    /// event C0H umask 00H without edge, invert or counter mask, and
    /// `IA32_FIXED_CTR0`) at the privilege level the instruction ran at
    /// (`cpl0`: CPL 0, counted by `OS`; otherwise by `USR`). Makes no source
    /// call: a counter it makes wrap with its interrupt enabled is re-armed by
    /// the next [`Self::sync`].
    pub fn retire_emulated_instruction(&mut self, cpl0: bool) {
        if self.version == 0 {
            return;
        }
        let inst: EventCode = INSTRUCTIONS_RETIRED.code;
        for i in 0..self.n_gp {
            self.retire_one(CounterIndex::Gp(i), inst, cpl0);
        }
        if self.n_fixed > 0 {
            self.retire_one(CounterIndex::Fixed(0), inst, cpl0);
        }
    }

    fn retire_one(&mut self, c: CounterIndex, inst: EventCode, cpl0: bool) {
        let Some(cfg) = self.effective(c) else {
            return;
        };
        let counts = cfg.event == inst
            && !cfg.edge
            && !cfg.inv
            && cfg.cmask == 0
            && if cpl0 { cfg.os } else { cfg.usr };
        if !counts {
            return;
        }
        let int = cfg.overflow_after.is_some();
        if self.fold(c, 1, int) && int {
            self.rearm |= global_bit(c);
        }
    }

    /// The state as of the last drain, for the statistics API.
    pub fn snapshot(&self) -> GuestPmuState {
        let gp = (0..self.n_gp)
            .map(|i| {
                let c = CounterIndex::Gp(i);
                let raw = self.evtsel[usize::from(i)];
                let select = EventSelect::decode(raw);
                GpCounterState {
                    index: i,
                    value: self.value(c),
                    evtsel: raw,
                    select,
                    event_name: events::lookup(select.code()).map(|e| e.name.to_string()),
                    enabled: select.en,
                    running: self.is_running(c),
                    overflowed: self.global_status & global_bit(c) != 0,
                }
            })
            .collect();
        let fixed = (0..self.n_fixed)
            .map(|i| {
                let c = CounterIndex::Fixed(i);
                let ctrl = FixedCtrl::decode(self.fixed_ctrl, i);
                FixedCounterState {
                    index: i,
                    value: self.value(c),
                    ctrl,
                    event_name: events::fixed_event(i)
                        .map(|e| e.name.to_string())
                        .unwrap_or_default(),
                    enabled: ctrl.os || ctrl.usr,
                    running: self.is_running(c),
                    overflowed: self.global_status & global_bit(c) != 0,
                }
            })
            .collect();
        GuestPmuState {
            enabled: self.version != 0,
            version: self.version,
            perf_capabilities: self.perf_capabilities,
            fixed_ctr_ctrl: self.fixed_ctrl,
            global_ctrl: self.global_ctrl,
            global_status: self.global_status,
            global_inuse: if self.version >= 4 { self.inuse() } else { 0 },
            pmi_pending: self.pmi_pending,
            gp,
            fixed,
        }
    }
}

#[cfg(test)]
mod tests;
