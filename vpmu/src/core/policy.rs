//! Multiplexing policies of a vCPU: how values are reported and how guest
//! counters are grouped.
//!
//! **Scaling.** A multiplexed counter counted only while it held a host
//! counter (`running` of `enabled` time). [`Scaling::Raw`] gives the guest
//! what was counted: exact events, but a counter that ran half the time
//! reads half. [`Scaling::Scaled`] (default) gives `count x enabled /
//! running`, what `perf stat` prints: an estimate of what would have been
//! counted, never decreasing between two reads. Counters that sample
//! (`overflow_after` set) are never extrapolated: a PMI must come after real
//! events.
//!
//! **Grouping.** [`Grouping::PerCounter`] (default) makes every guest counter
//! its own flexible group: the finest rotation, the fairest share of host
//! counters, but counters the guest reads together (cycles and instructions
//! for IPC) may run in different slices, so their ratio mixes phases of the
//! workload. [`Grouping::Packed`] packs the enabled counters, in counter
//! order, into as few groups as fit a host PMU (constraints included), so
//! neighbouring counters always run in the same slices and their ratios are
//! exact; the price is coarser rotation (a group takes several counters at
//! once, so a leftover counter may stay idle) and a regrouping whenever the
//! guest enables or disables a counter.

use std::fmt;
use std::str::FromStr;

/// How values are reported to the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scaling {
    Raw,
    #[default]
    Scaled,
}

/// How guest counters are grouped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grouping {
    #[default]
    PerCounter,
    Packed,
}

/// The multiplexing policy of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxPolicy {
    pub scaling: Scaling,
    pub grouping: Grouping,
    /// Sampling counters (`overflow_after` set) get pinned groups: they
    /// never rotate, and go to ERROR (visible) if they cannot be placed.
    pub pin_sampling: bool,
}

/// Error parsing a policy name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected {expected})")]
pub struct PolicyParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for Scaling {
    type Err = PolicyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Scaling::Raw),
            "scaled" => Ok(Scaling::Scaled),
            _ => Err(PolicyParseError {
                what: "scaling",
                value: s.to_string(),
                expected: "raw, scaled",
            }),
        }
    }
}

impl FromStr for Grouping {
    type Err = PolicyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-counter" => Ok(Grouping::PerCounter),
            "packed" => Ok(Grouping::Packed),
            _ => Err(PolicyParseError {
                what: "grouping",
                value: s.to_string(),
                expected: "per-counter, packed",
            }),
        }
    }
}

impl fmt::Display for Scaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scaling::Raw => "raw",
            Scaling::Scaled => "scaled",
        })
    }
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grouping::PerCounter => "per-counter",
            Grouping::Packed => "packed",
        })
    }
}

/// `count x enabled / running`, saturating; `count` when it never ran.
pub fn scale(count: u64, enabled: u64, running: u64) -> u64 {
    if running == 0 || running >= enabled {
        return count;
    }
    let v = count as u128 * enabled as u128 / running as u128;
    v.min(u64::MAX as u128) as u64
}
