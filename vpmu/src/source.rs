//! The boundary between the guest-visible PMU ([`crate::guest`]) and whatever
//! counts events for it (a run-time clock, the multiplexer over a simulated or
//! perf-backed host PMU).
//!
//! The guest PMU owns the architectural state (counter values, status bits).
//! A [`CountSource`] only reports how many events a running counter counted
//! since it was last asked. The guest PMU calls [`CountSource::start`] /
//! [`CountSource::stop`] only when a counter's effective configuration
//! changes, so accesses that change nothing on the host side reach no source
//! at all.
//!
//! What the source is told is a [`CounterConfig`]: the event code, the
//! [`Modifiers`] (privilege filter, edge/threshold, AnyThread; the host
//! event carries the same value) and the distance to overflow.

use serde::{Deserialize, Serialize};

/// One guest counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CounterIndex {
    /// General-purpose counter `IA32_PMCx` programmed by `IA32_PERFEVTSELx`.
    Gp(u8),
    /// Fixed-function counter `IA32_FIXED_CTRx` programmed by a nibble of
    /// `IA32_FIXED_CTR_CTRL`.
    Fixed(u8),
}

/// An event as the guest's event select encodes it: event select and unit
/// mask. Intel event selects are 8 bits; AMD's are 12 (`EventSelect[11:8]`
/// in `PERF_CTL[35:32]`). Which vendor's encoding it is follows from the
/// guest PMU architecture ([`crate::config::PmuArch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventCode {
    pub select: u16,
    pub umask: u8,
}

/// What a counting guest counter counts, decoded from `IA32_PERFEVTSELx`, or
/// for a fixed counter, its architectural event and its control nibble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterConfig {
    pub event: EventCode,
    /// Privilege filter, edge/threshold and AnyThread bits (serialized
    /// inline, as fields of the configuration).
    #[serde(flatten)]
    pub modifiers: Modifiers,
    /// `Some(n)`: the counter has its interrupt enabled (`INT`, bit 20) and
    /// wraps after `n` more events; the source should arrange to be polled
    /// (kick the vCPU) when that many events have been counted.
    pub overflow_after: Option<u64>,
}

impl CounterConfig {
    /// `event` counted at every privilege level, with no edge detect,
    /// inversion, counter mask, AnyThread or interrupt.
    pub const fn counting(event: EventCode) -> Self {
        CounterConfig {
            event,
            modifiers: Modifiers::plain(),
            overflow_after: None,
        }
    }
}

/// Privilege and edge/threshold modifiers of a guest counter, as
/// `IA32_PERFEVTSELx` / AMD `PERF_CTLx` (or a fixed counter's control
/// nibble) encodes them. The perf backend encodes them in
/// `perf_event_attr` (`exclude_user`, `exclude_kernel`, raw `config` bits);
/// the simulated backend honours only "counts at no privilege level" (counts
/// zero) and labels the rest approximate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Modifiers {
    /// Count at CPL > 0 (`USR`, bit 16).
    pub usr: bool,
    /// Count at CPL 0 (`OS`, bit 17).
    pub os: bool,
    /// Edge detect (bit 18).
    pub edge: bool,
    /// Invert counter mask (bit 23).
    pub inv: bool,
    /// Counter mask (bits 31:24).
    pub cmask: u8,
    /// AnyThread (bit 21; fixed nibble bit 2), where the version allows it.
    pub any_thread: bool,
}

impl Modifiers {
    /// Counting at both privilege levels with no edge/threshold tricks.
    pub const fn plain() -> Modifiers {
        Modifiers {
            usr: true,
            os: true,
            edge: false,
            inv: false,
            cmask: 0,
            any_thread: false,
        }
    }

    /// Anything beyond a privilege filter.
    pub fn is_exotic(&self) -> bool {
        self.edge || self.inv || self.cmask != 0 || self.any_thread
    }
}

/// Something that counts events for running guest counters.
pub trait CountSource {
    /// `counter` starts counting with `config`, or its configuration changed.
    /// Events counted under the previous configuration were drained before.
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig);
    /// `counter` stops counting. Its events were drained before.
    fn stop(&mut self, counter: CounterIndex);
    /// Events `counter` counted since the last call (or since `start`).
    fn drain(&mut self, counter: CounterIndex) -> u64;
}

/// A source that counts nothing: the guest sees counters that never move.
#[derive(Debug, Default)]
pub struct NullSource;

impl CountSource for NullSource {
    fn start(&mut self, _: CounterIndex, _: &CounterConfig) {}
    fn stop(&mut self, _: CounterIndex) {}
    fn drain(&mut self, _: CounterIndex) -> u64 {
        0
    }
}
