//! The AMD64 PMU of one vCPU (APM Vol. 2 §13.2): legacy counters, PerfCtrCore
//! and PerfMonV2, with the rules in the [module documentation](super).

use super::bank::{global_bit, Bank, Controls, GP_N};
use super::snapshot::{GpCounterState, GpSelect, GuestPmuState};
use super::{counter_name, Gp};
use crate::arch::amd::events::{self, RETIRED_INSTRUCTIONS};
use crate::arch::amd::msr::perf_ctl;
use crate::arch::amd::{AmdPmuMsr, PerfCtl};
use crate::arch::GP_COUNTER_MASK;
use crate::config::{PmuArch, PmuConfig, MAX_AMD_VERSION};
use crate::source::{CountSource, CounterConfig, CounterIndex, Modifiers};

/// The control MSRs: what decides which counters count.
#[derive(Clone, Debug)]
struct AmdControls {
    /// 0 legacy, 1 PerfCtrCore, 2 PerfMonV2.
    version: u8,
    n_gp: u8,
    /// `PERF_CTLn` (the legacy `PerfEvtSeln` alias the first four).
    ctl: [u64; GP_N],
    /// `PerfCntrGlobalCtl` (PerfMonV2).
    global_ctl: u64,
}

impl Controls for AmdControls {
    fn effective(&self, c: CounterIndex, bank: &Bank) -> Option<CounterConfig> {
        let CounterIndex::Gp(i) = c else {
            return None;
        };
        if i >= self.n_gp || (self.version >= 2 && self.global_ctl & global_bit(c) == 0) {
            return None;
        }
        let s = PerfCtl::decode(self.ctl[usize::from(i)]);
        if !s.en || !(s.usr || s.os) || !s.counts_without_svm() {
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
                any_thread: false,
            },
            overflow_after: s.int.then(|| bank.overflow_after(c)),
        })
    }
}

/// The guest-visible AMD64 PMU of one vCPU.
#[derive(Clone, Debug)]
pub struct AmdPmu {
    cfg: PmuConfig,
    /// The vPMU is on (an AMD PMU of version 0 still has counters).
    enabled: bool,
    ctl: AmdControls,
    bank: Bank,
}

impl AmdPmu {
    /// A PMU in its reset state: every counter and control 0, and with
    /// PerfMonV2 `PerfCntrGlobalCtl` enabling every counter (as KVM resets
    /// it, so that software which only knows `EN` keeps working). An invalid
    /// configuration is clamped (callers should [`PmuConfig::validate`]
    /// first).
    pub fn new(cfg: PmuConfig) -> Self {
        let enabled = cfg.enabled && cfg.arch == PmuArch::Amd;
        let version = cfg.version.min(MAX_AMD_VERSION);
        let n_gp = if enabled { cfg.effective_gp() } else { 0 };
        let global_ctl = if version >= 2 { (1u64 << n_gp) - 1 } else { 0 };
        Self {
            cfg,
            enabled,
            ctl: AmdControls {
                version,
                n_gp,
                ctl: [0; GP_N],
                global_ctl,
            },
            bank: Bank::new(version >= 2),
        }
    }

    /// The configuration this PMU was built from.
    pub fn config(&self) -> &PmuConfig {
        &self.cfg
    }

    /// Bits of the counters that exist, in the `PerfCntrGlobal*` layout.
    pub fn counter_mask(&self) -> u64 {
        (1u64 << self.ctl.n_gp) - 1
    }

    /// What `c` counts right now, or `None` if it does not count.
    pub fn effective(&self, c: CounterIndex) -> Option<CounterConfig> {
        self.ctl.effective(c, &self.bank)
    }

    /// Counter `i` if the configured PMU has it; the PerfCtrCore MSRs
    /// (`core`) only from version 1.
    fn counter(&self, i: u8, core: bool) -> Result<u8, Gp> {
        if i < self.ctl.n_gp && (!core || self.ctl.version >= 1) {
            Ok(i)
        } else {
            Err(Gp)
        }
    }

    fn need_v2(&self) -> Result<(), Gp> {
        if self.ctl.version >= 2 {
            Ok(())
        } else {
            Err(Gp)
        }
    }

    /// The role of `index` in this PMU: #GP for MSRs it does not have.
    fn decode(&self, index: u32) -> Result<AmdPmuMsr, Gp> {
        if !self.enabled {
            return Err(Gp);
        }
        let m = AmdPmuMsr::decode(index).ok_or(Gp)?;
        match m {
            AmdPmuMsr::PerfEvtSel(i) | AmdPmuMsr::PerfCtrLegacy(i) => self.counter(i, false)?,
            AmdPmuMsr::PerfCtl(i) | AmdPmuMsr::PerfCtr(i) => self.counter(i, true)?,
            AmdPmuMsr::GlobalStatus
            | AmdPmuMsr::GlobalCtl
            | AmdPmuMsr::GlobalStatusClr
            | AmdPmuMsr::GlobalStatusSet => {
                self.need_v2()?;
                0
            }
        };
        Ok(m)
    }

    /// RDMSR of `index`: its value, or #GP if the MSR does not exist.
    pub fn rdmsr(&mut self, index: u32, src: &mut dyn CountSource) -> Result<u64, Gp> {
        Ok(match self.decode(index)? {
            AmdPmuMsr::PerfEvtSel(i) | AmdPmuMsr::PerfCtl(i) => self.ctl.ctl[usize::from(i)],
            AmdPmuMsr::PerfCtrLegacy(i) | AmdPmuMsr::PerfCtr(i) => {
                self.bank.read(&self.ctl, CounterIndex::Gp(i), src)
            }
            AmdPmuMsr::GlobalStatus => self.bank.status,
            AmdPmuMsr::GlobalCtl => self.ctl.global_ctl,
            AmdPmuMsr::GlobalStatusClr | AmdPmuMsr::GlobalStatusSet => 0,
        })
    }

    /// WRMSR of `value` to `index`, or #GP (state unchanged) if the MSR does
    /// not exist, is read-only, or `value` sets reserved bits.
    pub fn wrmsr(&mut self, index: u32, value: u64, src: &mut dyn CountSource) -> Result<(), Gp> {
        match self.decode(index)? {
            AmdPmuMsr::PerfEvtSel(i) | AmdPmuMsr::PerfCtl(i) => {
                if value & !perf_ctl::DEFINED != 0 {
                    return Err(Gp);
                }
                let slot = usize::from(i);
                if self.ctl.ctl[slot] != value {
                    let c = CounterIndex::Gp(i);
                    let was = self.effective(c);
                    self.ctl.ctl[slot] = value;
                    self.bank.reconcile(&self.ctl, c, was, src);
                }
            }
            AmdPmuMsr::PerfCtrLegacy(i) | AmdPmuMsr::PerfCtr(i) => {
                // 48 bits wide; higher bits are dropped, as KVM does (Linux
                // writes `-left & mask`).
                let v = value & GP_COUNTER_MASK;
                self.bank.write(&self.ctl, CounterIndex::Gp(i), v, src);
            }
            AmdPmuMsr::GlobalStatus => return Err(Gp),
            AmdPmuMsr::GlobalCtl => {
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                let diff = value ^ self.ctl.global_ctl;
                if diff != 0 {
                    let mut was = [None; GP_N];
                    for (i, w) in was.iter_mut().enumerate() {
                        if diff & (1 << i) != 0 {
                            *w = self.effective(CounterIndex::Gp(i as u8));
                        }
                    }
                    self.ctl.global_ctl = value;
                    for (i, w) in was.iter().enumerate() {
                        if diff & (1 << i) != 0 {
                            self.bank
                                .reconcile(&self.ctl, CounterIndex::Gp(i as u8), *w, src);
                        }
                    }
                }
            }
            AmdPmuMsr::GlobalStatusClr => {
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                self.bank.status &= !value;
            }
            AmdPmuMsr::GlobalStatusSet => {
                if value & !self.counter_mask() != 0 {
                    return Err(Gp);
                }
                self.bank.status |= value;
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
    }

    /// Counts one emulated instruction on every counter counting retired
    /// instructions (PMCx0C0).
    pub fn retire_emulated_instruction(&mut self, cpl0: bool) {
        for i in 0..self.ctl.n_gp {
            self.bank.retire(
                &self.ctl,
                CounterIndex::Gp(i),
                RETIRED_INSTRUCTIONS.code,
                cpl0,
            );
        }
    }

    /// The state as of the last drain, for the statistics API.
    pub fn snapshot(&self) -> GuestPmuState {
        let gp = (0..self.ctl.n_gp)
            .map(|i| {
                let c = CounterIndex::Gp(i);
                let raw = self.ctl.ctl[usize::from(i)];
                let select = PerfCtl::decode(raw);
                GpCounterState {
                    index: i,
                    name: counter_name(PmuArch::Amd, c),
                    value: self.bank.value(c),
                    evtsel: raw,
                    select: GpSelect::Amd(select),
                    event_name: events::lookup(select.code()).map(|e| e.name.to_string()),
                    enabled: select.en,
                    running: self.effective(c).is_some(),
                    overflowed: self.bank.status & global_bit(c) != 0,
                }
            })
            .collect();
        GuestPmuState {
            arch: PmuArch::Amd,
            enabled: self.enabled,
            version: self.ctl.version,
            perf_capabilities: 0,
            fixed_ctr_ctrl: 0,
            global_ctrl: self.ctl.global_ctl,
            global_status: self.bank.status,
            global_inuse: 0,
            pmi_pending: self.bank.pmi_pending(),
            gp,
            fixed: Vec::new(),
        }
    }
}
