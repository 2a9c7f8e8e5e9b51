//! The Intel architectural PMU of one vCPU (SDM Vol. 3B ch. 20): see the
//! rules in the [module documentation](super).

use super::bank::{global_bit, Bank, Controls, FIXED_N, GP_N};
use super::snapshot::{FixedCounterState, GpCounterState, GpSelect, GuestPmuState};
use super::{counter_name, Gp};
use crate::arch::cpuid;
use crate::arch::events::{self, INSTRUCTIONS_RETIRED};
use crate::arch::msr::{
    evtsel, fixed_ctrl, EventSelect, FixedCtrl, PmuMsr, GLOBAL_FIXED_SHIFT, GLOBAL_INUSE_PMI,
    GLOBAL_STATUS_COND_CHGD, GLOBAL_STATUS_OVF_BUF,
};
use crate::arch::{FIXED_COUNTER_MASK, GP_COUNTER_MASK};
use crate::config::{PmuArch, PmuConfig};
use crate::source::{CountSource, CounterConfig, CounterIndex, Modifiers};

/// The control MSRs: what decides which counters count.
#[derive(Clone, Debug)]
struct IntelControls {
    /// 0 when the vPMU is off.
    version: u8,
    n_gp: u8,
    n_fixed: u8,
    /// `IA32_PERFEVTSELx`.
    evtsel: [u64; GP_N],
    /// `IA32_FIXED_CTR_CTRL`.
    fixed_ctrl: u64,
    /// `IA32_PERF_GLOBAL_CTRL`.
    global_ctrl: u64,
}

impl IntelControls {
    fn exists(&self, c: CounterIndex) -> bool {
        match c {
            CounterIndex::Gp(i) => i < self.n_gp,
            CounterIndex::Fixed(i) => i < self.n_fixed,
        }
    }

    fn globally_enabled(&self, c: CounterIndex) -> bool {
        self.version < 2 || self.global_ctrl & global_bit(c) != 0
    }
}

impl Controls for IntelControls {
    fn effective(&self, c: CounterIndex, bank: &Bank) -> Option<CounterConfig> {
        if !self.exists(c) || !self.globally_enabled(c) {
            return None;
        }
        let any_ok = matches!(self.version, 3 | 4);
        let overflow = |int: bool| int.then(|| bank.overflow_after(c));
        match c {
            CounterIndex::Gp(i) => {
                let s = EventSelect::decode(self.evtsel[usize::from(i)]);
                if !s.en || !(s.usr || s.os) {
                    return None;
                }
                Some(CounterConfig {
                    event: s.code(),
                    modifiers: Modifiers {
                        usr: s.usr,
                        os: s.os,
                        edge: s.edge,
                        inv: s.inv,
                        cmask: s.cmask,
                        any_thread: any_ok && s.any_thread,
                    },
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
                    modifiers: Modifiers {
                        usr: f.usr,
                        os: f.os,
                        edge: false,
                        inv: false,
                        cmask: 0,
                        any_thread: any_ok && f.any_thread,
                    },
                    overflow_after: overflow(f.pmi),
                })
            }
        }
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

/// The guest-visible Intel architectural PMU of one vCPU.
#[derive(Clone, Debug)]
pub struct IntelPmu {
    cfg: PmuConfig,
    perf_capabilities: u64,
    ctl: IntelControls,
    bank: Bank,
}

impl IntelPmu {
    /// A PMU in its reset state. An invalid configuration is clamped to the
    /// architectural limits (callers should [`PmuConfig::validate`] first).
    pub fn new(cfg: PmuConfig) -> Self {
        // Version 0 (invalid) is treated as the vPMU off, as CPUID would show.
        let version = if cfg.enabled && cfg.arch == PmuArch::Intel {
            cfg.version.min(crate::config::MAX_VERSION)
        } else {
            0
        };
        let (n_gp, n_fixed) = if version == 0 {
            (0, 0)
        } else {
            (cfg.effective_gp(), cfg.effective_fixed())
        };
        let mut ctl = IntelControls {
            version,
            n_gp,
            n_fixed,
            evtsel: [0; GP_N],
            fixed_ctrl: 0,
            global_ctrl: 0,
        };
        if version >= 2 {
            ctl.global_ctrl = (1u64 << n_gp) - 1;
        }
        Self {
            cfg,
            perf_capabilities: if version == 0 {
                0
            } else {
                cpuid::perf_capabilities(&cfg)
            },
            ctl,
            bank: Bank::new(version >= 2),
        }
    }

    /// The configuration this PMU was built from.
    pub fn config(&self) -> &PmuConfig {
        &self.cfg
    }

    fn gp_mask(&self) -> u64 {
        (1u64 << self.ctl.n_gp) - 1
    }

    fn fixed_mask(&self) -> u64 {
        ((1u64 << self.ctl.n_fixed) - 1) << GLOBAL_FIXED_SHIFT
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
        if self.ctl.version < 3 {
            r |= evtsel::ANY_THREAD;
        }
        r
    }

    fn fixed_ctrl_reserved(&self) -> u64 {
        let per = if self.ctl.version < 3 {
            fixed_ctrl::OS | fixed_ctrl::USR | fixed_ctrl::PMI
        } else {
            0xF
        };
        let mut ok = 0u64;
        for i in 0..u32::from(self.ctl.n_fixed) {
            ok |= per << (fixed_ctrl::STRIDE * i);
        }
        !ok
    }

    /// What `c` counts right now, or `None` if it does not count.
    pub fn effective(&self, c: CounterIndex) -> Option<CounterConfig> {
        self.ctl.effective(c, &self.bank)
    }

    /// `IA32_PERF_GLOBAL_INUSE`.
    fn inuse(&self) -> u64 {
        let mut v = 0;
        let mut pmi = false;
        for i in 0..self.ctl.n_gp {
            let s = self.ctl.evtsel[usize::from(i)];
            if s & evtsel::EVENT_MASK != 0 {
                v |= 1 << i;
            }
            pmi |= s & evtsel::INT != 0;
        }
        for i in 0..self.ctl.n_fixed {
            let n = FixedCtrl::nibble(self.ctl.fixed_ctrl, i);
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
        if i < self.ctl.n_gp {
            Ok(CounterIndex::Gp(i))
        } else {
            Err(Gp)
        }
    }

    fn fixed_index(&self, i: u8) -> Result<CounterIndex, Gp> {
        if i < self.ctl.n_fixed {
            Ok(CounterIndex::Fixed(i))
        } else {
            Err(Gp)
        }
    }

    fn need_version(&self, v: u8) -> Result<(), Gp> {
        if self.ctl.version >= v {
            Ok(())
        } else {
            Err(Gp)
        }
    }

    fn read_counter(&mut self, c: CounterIndex, src: &mut dyn CountSource) -> u64 {
        self.bank.read(&self.ctl, c, src)
    }

    fn write_counter(&mut self, c: CounterIndex, v: u64, src: &mut dyn CountSource) {
        self.bank.write(&self.ctl, c, v, src)
    }

    /// RDMSR of `index`: its value, or #GP if the MSR does not exist.
    pub fn rdmsr(&mut self, index: u32, src: &mut dyn CountSource) -> Result<u64, Gp> {
        if self.ctl.version == 0 {
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
                Ok(self.ctl.evtsel[usize::from(i)])
            }
            PmuMsr::FixedCtr(i) => {
                let c = self.fixed_index(i)?;
                Ok(self.read_counter(c, src))
            }
            PmuMsr::FixedCtrCtrl => self.need_version(2).map(|_| self.ctl.fixed_ctrl),
            PmuMsr::GlobalStatus => self.need_version(2).map(|_| self.bank.status),
            PmuMsr::GlobalCtrl => self.need_version(2).map(|_| self.ctl.global_ctrl),
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
        if self.ctl.version == 0 {
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
                if self.ctl.evtsel[slot] != value {
                    let was = self.effective(c);
                    self.ctl.evtsel[slot] = value;
                    self.bank.reconcile(&self.ctl, c, was, src);
                }
            }
            PmuMsr::FixedCtrCtrl => {
                self.need_version(2)?;
                if value & self.fixed_ctrl_reserved() != 0 {
                    return Err(Gp);
                }
                if value != self.ctl.fixed_ctrl {
                    let n = usize::from(self.ctl.n_fixed);
                    let mut was = [None; FIXED_N];
                    for (i, w) in was.iter_mut().enumerate().take(n) {
                        *w = self.effective(CounterIndex::Fixed(i as u8));
                    }
                    self.ctl.fixed_ctrl = value;
                    for (i, w) in was.iter().enumerate().take(n) {
                        self.bank
                            .reconcile(&self.ctl, CounterIndex::Fixed(i as u8), *w, src);
                    }
                }
            }
            PmuMsr::GlobalCtrl => {
                self.need_version(2)?;
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                let diff = value ^ self.ctl.global_ctrl;
                if diff != 0 {
                    // GP counters in slots 0..8, fixed counters in 8..12.
                    let mut was = [None; GP_N + FIXED_N];
                    let mut bits = diff;
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        was[slot_of_bit(b)] = self.effective(counter_of_bit(b));
                        bits &= bits - 1;
                    }
                    self.ctl.global_ctrl = value;
                    let mut bits = diff;
                    while bits != 0 {
                        let b = bits.trailing_zeros();
                        self.bank
                            .reconcile(&self.ctl, counter_of_bit(b), was[slot_of_bit(b)], src);
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
                self.bank.status &= !value;
            }
            PmuMsr::GlobalStatusSet => {
                self.need_version(4)?;
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                self.bank.status |= value;
            }
            PmuMsr::GlobalStatus | PmuMsr::GlobalInuse | PmuMsr::PerfCapabilities => {
                return Err(Gp)
            }
        }
        Ok(())
    }

    /// Returns whether a PMI is pending, and clears it.
    pub fn take_pmi(&mut self) -> bool {
        self.bank.take_pmi()
    }

    /// Whether a PMI is pending (without clearing it).
    pub fn pmi_pending(&self) -> bool {
        self.bank.pmi_pending()
    }

    /// Drains every running counter.
    pub fn sync(&mut self, src: &mut dyn CountSource) {
        for i in 0..self.ctl.n_gp {
            self.bank.drain(&self.ctl, CounterIndex::Gp(i), src);
        }
        for i in 0..self.ctl.n_fixed {
            self.bank.drain(&self.ctl, CounterIndex::Fixed(i), src);
        }
    }

    /// Counts one emulated instruction on every counter counting
    /// instructions retired (`IA32_PERFEVTSELx` event C0H umask 00H, and
    /// `IA32_FIXED_CTR0`).
    pub fn retire_emulated_instruction(&mut self, cpl0: bool) {
        if self.ctl.version == 0 {
            return;
        }
        let inst = INSTRUCTIONS_RETIRED.code;
        for i in 0..self.ctl.n_gp {
            self.bank.retire(&self.ctl, CounterIndex::Gp(i), inst, cpl0);
        }
        if self.ctl.n_fixed > 0 {
            self.bank
                .retire(&self.ctl, CounterIndex::Fixed(0), inst, cpl0);
        }
    }

    /// The state as of the last drain, for the statistics API.
    pub fn snapshot(&self) -> GuestPmuState {
        let gp = (0..self.ctl.n_gp)
            .map(|i| {
                let c = CounterIndex::Gp(i);
                let raw = self.ctl.evtsel[usize::from(i)];
                let select = EventSelect::decode(raw);
                GpCounterState {
                    index: i,
                    name: counter_name(PmuArch::Intel, c),
                    value: self.bank.value(c),
                    evtsel: raw,
                    select: GpSelect::Intel(select),
                    event_name: events::lookup(select.code()).map(|e| e.name.to_string()),
                    enabled: select.en,
                    running: self.effective(c).is_some(),
                    overflowed: self.bank.status & global_bit(c) != 0,
                }
            })
            .collect();
        let fixed = (0..self.ctl.n_fixed)
            .map(|i| {
                let c = CounterIndex::Fixed(i);
                let ctrl = FixedCtrl::decode(self.ctl.fixed_ctrl, i);
                FixedCounterState {
                    index: i,
                    name: counter_name(PmuArch::Intel, c),
                    value: self.bank.value(c),
                    ctrl,
                    event_name: events::fixed_event(i)
                        .map(|e| e.name.to_string())
                        .unwrap_or_default(),
                    enabled: ctrl.os || ctrl.usr,
                    running: self.effective(c).is_some(),
                    overflowed: self.bank.status & global_bit(c) != 0,
                }
            })
            .collect();
        GuestPmuState {
            arch: PmuArch::Intel,
            enabled: self.ctl.version != 0,
            version: self.ctl.version,
            perf_capabilities: self.perf_capabilities,
            fixed_ctr_ctrl: self.ctl.fixed_ctrl,
            global_ctrl: self.ctl.global_ctrl,
            global_status: self.bank.status,
            global_inuse: if self.ctl.version >= 4 {
                self.inuse()
            } else {
                0
            },
            pmi_pending: self.bank.pmi_pending(),
            gp,
            fixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_bits_and_slots() {
        for i in 0..8u8 {
            let c = CounterIndex::Gp(i);
            let b = global_bit(c).trailing_zeros();
            assert_eq!(b, u32::from(i));
            assert_eq!(counter_of_bit(b), c);
            assert_eq!(slot_of_bit(b), usize::from(i));
        }
        for i in 0..4u8 {
            let c = CounterIndex::Fixed(i);
            let b = global_bit(c).trailing_zeros();
            assert_eq!(b, 32 + u32::from(i));
            assert_eq!(counter_of_bit(b), c);
            assert_eq!(slot_of_bit(b), 8 + usize::from(i));
        }
    }

    #[test]
    fn unvalidated_config_is_clamped() {
        let p = IntelPmu::new(PmuConfig {
            version: 9,
            gp_counters: 200,
            fixed_counters: 200,
            ..Default::default()
        });
        assert_eq!((p.ctl.version, p.ctl.n_gp, p.ctl.n_fixed), (5, 8, 4));
        let p = IntelPmu::new(PmuConfig {
            version: 0,
            ..Default::default()
        });
        assert_eq!((p.ctl.version, p.ctl.n_gp, p.ctl.n_fixed), (0, 0, 0));
    }

    #[test]
    fn reserved_masks() {
        let p = IntelPmu::new(PmuConfig {
            version: 2,
            fixed_counters: 2,
            ..Default::default()
        });
        assert_eq!(p.fixed_ctrl_reserved(), !0xBB);
        assert_eq!(p.evtsel_reserved(), !0xFFDF_FFFF);
        let p = IntelPmu::new(PmuConfig::default());
        assert_eq!(p.fixed_ctrl_reserved(), !0xFFF);
        assert_eq!(p.evtsel_reserved(), !0xFFFF_FFFF);
        assert_eq!(p.counter_mask(), 0x7_0000_00FF);
    }
}
