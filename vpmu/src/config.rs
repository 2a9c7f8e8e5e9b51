//! The user's vPMU configuration: which architectural PMU version and how many
//! counters the guest sees.
//!
//! Rules (checked by [`PmuConfig::validate`], independent of `enabled`, so a
//! configuration file is either valid or not):
//!
//! - `version` is 1..=5 (`CPUID.0AH:EAX[7:0]`);
//! - `gp_counters` is 1..=8 (`CPUID.0AH:EAX[15:8]`; the architectural MSR
//!   space `IA32_PERFEVTSEL0..7` holds 8);
//! - `fixed_counters` is 0..=4 (`CPUID.0AH:EDX[4:0]`);
//! - a 4th fixed counter (`IA32_FIXED_CTR3`, topdown slots) needs version 5;
//! - version 1 has no fixed counters at all (they appear with version 2), so
//!   version 1 needs `fixed_counters == 0`. Silently dropping the default 3
//!   fixed counters would hide a mistake, so this is an error, not a clamp.
//!
//! `full_width_writes` sets `IA32_PERF_CAPABILITIES.FW_WRITE` (bit 13), which
//! makes the full-width counter aliases `IA32_A_PMCx` exist. It is valid with
//! every version: `IA32_PERF_CAPABILITIES` is enumerated by `CPUID.01H:ECX.PDCM`,
//! not by the PMU version (see [`crate::arch::cpuid::pdcm`]).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Highest architectural PMU version this model implements.
pub const MAX_VERSION: u8 = 5;
/// Most general-purpose counters the architectural MSR map has room for.
pub const MAX_GP_COUNTERS: u8 = 8;
/// Most fixed-function counters this model implements (`IA32_FIXED_CTR0..3`).
pub const MAX_FIXED_COUNTERS: u8 = 4;
/// Width in bits of every general-purpose counter (`CPUID.0AH:EAX[23:16]`).
pub const GP_COUNTER_WIDTH: u8 = 48;
/// Width in bits of every fixed-function counter (`CPUID.0AH:EDX[12:5]`).
pub const FIXED_COUNTER_WIDTH: u8 = 48;

/// The guest-visible PMU of every vCPU of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PmuConfig {
    /// vPMU on. Off: `CPUID.0AH` is all zero and every PMU MSR raises #GP.
    pub enabled: bool,
    /// Architectural performance monitoring version, 1..=5.
    pub version: u8,
    /// Number of general-purpose counters `IA32_PMCx`, 1..=8.
    pub gp_counters: u8,
    /// Number of fixed-function counters `IA32_FIXED_CTRx`, 0..=4.
    pub fixed_counters: u8,
    /// `IA32_PERF_CAPABILITIES.FW_WRITE`: the `IA32_A_PMCx` aliases exist.
    pub full_width_writes: bool,
}

impl Default for PmuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            version: 4,
            gp_counters: 8,
            fixed_counters: 3,
            full_width_writes: true,
        }
    }
}

/// A violated [`PmuConfig`] rule. Messages name the command-line options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("--pmu-version {0} is out of range: supported versions are 1 to 5")]
    Version(u8),
    #[error("--gp-counters {0} is out of range: 1 to 8 general-purpose counters")]
    GpCounters(u8),
    #[error("--fixed-counters {0} is out of range: 0 to 4 fixed counters")]
    FixedCounters(u8),
    #[error(
        "--fixed-counters 4 needs --pmu-version 5 (IA32_FIXED_CTR3 is a version 5 counter), \
         got --pmu-version {0}"
    )]
    FourthFixedNeedsV5(u8),
    #[error(
        "--pmu-version 1 has no fixed-function counters: it needs --fixed-counters 0, \
         got --fixed-counters {0}"
    )]
    V1HasNoFixed(u8),
}

impl PmuConfig {
    /// A configuration with the vPMU off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Checks every rule of the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_VERSION).contains(&self.version) {
            return Err(ConfigError::Version(self.version));
        }
        if !(1..=MAX_GP_COUNTERS).contains(&self.gp_counters) {
            return Err(ConfigError::GpCounters(self.gp_counters));
        }
        if self.fixed_counters > MAX_FIXED_COUNTERS {
            return Err(ConfigError::FixedCounters(self.fixed_counters));
        }
        if self.version == 1 && self.fixed_counters != 0 {
            return Err(ConfigError::V1HasNoFixed(self.fixed_counters));
        }
        if self.fixed_counters == 4 && self.version < 5 {
            return Err(ConfigError::FourthFixedNeedsV5(self.version));
        }
        Ok(())
    }

    /// General-purpose counters the guest sees (0 when the vPMU is off).
    /// Clamped to the architectural maximum so an unvalidated configuration
    /// cannot index out of range.
    pub fn effective_gp(&self) -> u8 {
        if self.enabled {
            self.gp_counters.min(MAX_GP_COUNTERS)
        } else {
            0
        }
    }

    /// Fixed counters the guest sees (0 when the vPMU is off or version 1).
    pub fn effective_fixed(&self) -> u8 {
        if self.enabled && self.version >= 2 {
            self.fixed_counters.min(MAX_FIXED_COUNTERS)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_v4_8gp_3fixed_fw() {
        let c = PmuConfig::default();
        assert!(c.enabled && c.full_width_writes);
        assert_eq!((c.version, c.gp_counters, c.fixed_counters), (4, 8, 3));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn ranges() {
        for v in 0..=7u8 {
            let c = PmuConfig {
                version: v,
                fixed_counters: if v == 1 { 0 } else { 3 },
                ..Default::default()
            };
            assert_eq!(c.validate().is_ok(), (1..=5).contains(&v), "version {v}");
        }
        for g in 0..=10u8 {
            let c = PmuConfig {
                gp_counters: g,
                ..Default::default()
            };
            assert_eq!(c.validate().is_ok(), (1..=8).contains(&g), "gp {g}");
        }
        let c = PmuConfig {
            fixed_counters: 5,
            version: 5,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::FixedCounters(5)));
    }

    #[test]
    fn fourth_fixed_needs_v5() {
        let mut c = PmuConfig {
            fixed_counters: 4,
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e, ConfigError::FourthFixedNeedsV5(4));
        assert!(e
            .to_string()
            .contains("--fixed-counters 4 needs --pmu-version 5"));
        c.version = 5;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn v1_needs_zero_fixed() {
        let mut c = PmuConfig {
            version: 1,
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e, ConfigError::V1HasNoFixed(3));
        assert!(e.to_string().contains("needs --fixed-counters 0"));
        c.fixed_counters = 0;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn effective_counts() {
        assert_eq!(PmuConfig::disabled().effective_gp(), 0);
        assert_eq!(PmuConfig::disabled().effective_fixed(), 0);
        let c = PmuConfig {
            version: 1,
            ..Default::default()
        };
        assert_eq!(c.effective_fixed(), 0);
        assert_eq!(PmuConfig::default().effective_fixed(), 3);
    }

    #[test]
    fn serde_defaults() {
        let c: PmuConfig = toml::from_str("version = 5\nfixed_counters = 4").unwrap();
        assert_eq!(c.version, 5);
        assert_eq!(c.gp_counters, 8);
        assert!(c.enabled);
        assert!(toml::from_str::<PmuConfig>("bogus = 1").is_err());
    }
}
