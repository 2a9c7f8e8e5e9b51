//! The guest-visible PMU of one vCPU: what RDMSR and WRMSR of every PMU MSR
//! return or raise, which counters count, overflow into the global status and
//! PMIs. [`GuestPmu`] is the Intel architectural PMU ([`IntelPmu`]) or the
//! AMD64 PMU ([`AmdPmu`]), as the configuration's [`PmuArch`] says; both
//! keep their counters in one shared bank (`bank.rs`) that talks to the
//! [`CountSource`]. A vCPU's guest PMU answers the other vendor's PMU MSRs
//! with #GP, as that vendor's hardware does.
//!
//! # Intel: SDM rules and the decisions taken where the SDM leaves room
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
//! # AMD: APM rules and the decisions taken where the APM and KVM differ
//!
//! - **Existence.** With the vPMU off every PMU MSR raises #GP. Legacy
//!   `PerfEvtSeln`/`PerfCtrn` exist for n < counters; the PerfCtrCore pairs
//!   `PERF_CTLn`/`PERF_CTRn` from version 1 for n < counters (the legacy MSRs
//!   alias the first four); `PerfCntrGlobal{Status,Ctl,StatusClr,StatusSet}`
//!   from version 2 (PerfMonV2).
//! - **Reserved bits.** `PERF_CTL` bits 19, 21, 39:36 and 63:42 raise #GP,
//!   as the APM's rule for reserved MSR bits says. KVM's AMD PMU instead
//!   drops them silently; we follow the APM so a guest learns of its
//!   mistake. `PerfCntrGlobalCtl`/`StatusClr`/`StatusSet` bits of absent
//!   counters raise #GP (as KVM).
//! - **Counter writes** keep bits 47:0 (the counters are 48 bits wide, as KVM
//!   does; Linux writes `-left & mask`). Reads return the 48-bit value.
//! - **Read-only / write-only.** WRMSR of `PerfCntrGlobalStatus` raises #GP;
//!   `StatusClr` and `StatusSet` read as 0 (as KVM).
//! - **Reset values.** Everything 0 except `PerfCntrGlobalCtl`, whose
//!   counter bits are set (as KVM: software that only knows `EN` keeps
//!   working).
//! - **Counting.** A counter counts when `EN`, at least one of `USR`/`OS`
//!   (the PPR's `OsUserMode` 00b counts nothing), with PerfMonV2 its
//!   `PerfCntrGlobalCtl` bit, and `HostOnly` = `GuestOnly` (the guest never
//!   enables SVM, and with `EFER.SVME` = 0 a counter with exactly one of the
//!   two set counts nothing on hardware).
//! - **Overflow.** Wrapping past 2^48 sets the counter's
//!   `PerfCntrGlobalStatus` bit (PerfMonV2) and, with `INT`, raises a PMI.
//!   Without PerfMonV2 there is no status: a guest sees overflow from the
//!   counter value (Linux checks bit 47).
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

mod amd;
mod bank;
mod intel;
mod snapshot;

pub use amd::AmdPmu;
pub use bank::global_bit;
pub use intel::IntelPmu;
pub use snapshot::{FixedCounterState, GpCounterState, GpSelect, GuestPmuState};

use crate::config::{PmuArch, PmuConfig};
use crate::source::{CountSource, CounterConfig, CounterIndex};

/// The guest must get a #GP(0) for this access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("#GP(0)")]
pub struct Gp;

/// The name a guest counter goes by in the statistics, the API and the
/// metrics: `gp0`, `fixed1` (Intel), `perf_ctr0` (AMD).
pub fn counter_name(arch: PmuArch, counter: CounterIndex) -> String {
    match (arch, counter) {
        (PmuArch::Intel, CounterIndex::Gp(i)) => format!("gp{i}"),
        (PmuArch::Amd, CounterIndex::Gp(i)) => format!("perf_ctr{i}"),
        (_, CounterIndex::Fixed(i)) => format!("fixed{i}"),
    }
}

/// The guest-visible PMU of one vCPU, of the configured architecture.
#[derive(Clone, Debug)]
pub enum GuestPmu {
    /// The Intel architectural PMU.
    Intel(IntelPmu),
    /// The AMD64 PMU.
    Amd(AmdPmu),
}

/// Forwards a call to the architecture's model.
macro_rules! dispatch {
    ($self:expr, $pmu:ident => $call:expr) => {
        match $self {
            GuestPmu::Intel($pmu) => $call,
            GuestPmu::Amd($pmu) => $call,
        }
    };
}

impl GuestPmu {
    /// A PMU in its reset state, of the architecture `cfg.arch` names. An
    /// invalid configuration is clamped to the architecture's limits
    /// (callers should [`PmuConfig::validate`] first).
    pub fn new(cfg: PmuConfig) -> Self {
        match cfg.arch {
            PmuArch::Intel => GuestPmu::Intel(IntelPmu::new(cfg)),
            PmuArch::Amd => GuestPmu::Amd(AmdPmu::new(cfg)),
        }
    }

    /// The vendor interface this PMU implements.
    pub fn arch(&self) -> PmuArch {
        match self {
            GuestPmu::Intel(_) => PmuArch::Intel,
            GuestPmu::Amd(_) => PmuArch::Amd,
        }
    }

    /// The configuration this PMU was built from.
    pub fn config(&self) -> &PmuConfig {
        dispatch!(self, p => p.config())
    }

    /// Bits of the counters that exist, in the global control/status layout.
    pub fn counter_mask(&self) -> u64 {
        dispatch!(self, p => p.counter_mask())
    }

    /// What `c` counts right now, or `None` if it does not count.
    pub fn effective(&self, c: CounterIndex) -> Option<CounterConfig> {
        dispatch!(self, p => p.effective(c))
    }

    /// Whether `c` is counting.
    pub fn is_running(&self, c: CounterIndex) -> bool {
        self.effective(c).is_some()
    }

    /// RDMSR of `index`: its value, or #GP if the MSR does not exist.
    pub fn rdmsr(&mut self, index: u32, src: &mut dyn CountSource) -> Result<u64, Gp> {
        dispatch!(self, p => p.rdmsr(index, src))
    }

    /// WRMSR of `value` to `index`, or #GP (state unchanged) if the MSR does
    /// not exist, is read-only, or `value` sets reserved bits.
    pub fn wrmsr(&mut self, index: u32, value: u64, src: &mut dyn CountSource) -> Result<(), Gp> {
        dispatch!(self, p => p.wrmsr(index, value, src))
    }

    /// Returns whether a PMI is pending, and clears it. The vCPU delivers it
    /// through the guest's LAPIC LVTPC entry.
    pub fn take_pmi(&mut self) -> bool {
        dispatch!(self, p => p.take_pmi())
    }

    /// Whether a PMI is pending (without clearing it).
    pub fn pmi_pending(&self) -> bool {
        dispatch!(self, p => p.pmi_pending())
    }

    /// Drains every running counter (after the vCPU was kicked for an
    /// overflow, before it re-enters the guest), updating status bits and
    /// PMIs and re-arming interrupt-enabled counters that wrapped.
    pub fn sync(&mut self, src: &mut dyn CountSource) {
        dispatch!(self, p => p.sync(src))
    }

    /// Counts one instruction the VMM emulated (a trapped RDMSR, WRMSR or port
    /// access), as KVM does for the instructions it emulates: +1 on every
    /// running counter that counts instructions retired (Intel event C0H
    /// umask 00H and `IA32_FIXED_CTR0`; AMD PMCx0C0) without edge, invert or
    /// counter mask, at the privilege level the instruction ran at (`cpl0`:
    /// CPL 0, counted by `OS`; otherwise by `USR`). Makes no source call: a
    /// counter it makes wrap with its interrupt enabled is re-armed by the
    /// next [`Self::sync`].
    pub fn retire_emulated_instruction(&mut self, cpl0: bool) {
        dispatch!(self, p => p.retire_emulated_instruction(cpl0))
    }

    /// The state as of the last drain, for the statistics API.
    pub fn snapshot(&self) -> GuestPmuState {
        dispatch!(self, p => p.snapshot())
    }
}
