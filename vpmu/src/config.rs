//! The user's vPMU configuration: which PMU architecture (Intel architectural
//! or AMD64), which version and how many counters the guest sees.
//!
//! Rules (checked by [`PmuConfig::validate`], independent of `enabled`, so a
//! configuration file is either valid or not). For the Intel architectural
//! PMU ([`PmuArch::Intel`]):
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
//! For the AMD64 PMU ([`PmuArch::Amd`], AMD APM vol. 2 §13.2), `version`
//! names the generation of the counter interface (AMD has no version number in
//! CPUID; these are this project's names, see [`crate::arch::amd`]):
//!
//! - `version` 0: the four legacy counters `PerfEvtSel0-3`/`PerfCtr0-3` only,
//!   `gp_counters` 1..=4;
//! - `version` 1: PerfCtrCore (`CPUID 8000_0001h:ECX[23]`), six
//!   `PERF_CTL`/`PERF_CTR` pairs, `gp_counters` 1..=6;
//! - `version` 2: PerfMonV2 (`CPUID 8000_0022h:EAX[0]`), the global
//!   control/status MSRs, `gp_counters` 1..=6;
//! - no fixed counters (`fixed_counters` 0).
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
/// Highest AMD PMU generation this model implements (PerfMonV2).
pub const MAX_AMD_VERSION: u8 = 2;
/// Most core counters an AMD PMU has (PerfCtrCore: `PERF_CTL0-5`).
pub const MAX_AMD_CORE_COUNTERS: u8 = 6;
/// Counters of the legacy AMD interface (`PerfEvtSel0-3`).
pub const AMD_LEGACY_COUNTERS: u8 = 4;
/// Width in bits of every general-purpose counter (`CPUID.0AH:EAX[23:16]`;
/// AMD's `PerfCtr` are 48 bits wide too).
pub const GP_COUNTER_WIDTH: u8 = 48;
/// Width in bits of every fixed-function counter (`CPUID.0AH:EDX[12:5]`).
pub const FIXED_COUNTER_WIDTH: u8 = 48;

/// Which vendor's PMU interface the guest sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PmuArch {
    /// The Intel architectural PMU (SDM Vol. 3B ch. 20, CPUID leaf 0AH).
    #[default]
    Intel,
    /// The AMD64 PMU (APM Vol. 2 §13.2: legacy, PerfCtrCore, PerfMonV2).
    Amd,
}

impl PmuArch {
    /// Lower-case name, as on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PmuArch::Intel => "intel",
            PmuArch::Amd => "amd",
        }
    }
}

impl std::fmt::Display for PmuArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guest-visible PMU of every vCPU of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PmuConfig {
    /// vPMU on. Off: every PMU MSR of either vendor raises #GP and CPUID
    /// advertises no PMU.
    pub enabled: bool,
    /// The vendor interface the guest sees.
    pub arch: PmuArch,
    /// Intel: architectural performance monitoring version, 1..=5. AMD: 0
    /// (legacy), 1 (PerfCtrCore) or 2 (PerfMonV2).
    pub version: u8,
    /// Number of general-purpose counters: Intel `IA32_PMCx` 1..=8, AMD
    /// `PERF_CTRx` 1..=6 (1..=4 for AMD version 0).
    pub gp_counters: u8,
    /// Number of fixed-function counters `IA32_FIXED_CTRx`, 0..=4 (Intel
    /// only: AMD has none).
    pub fixed_counters: u8,
    /// `IA32_PERF_CAPABILITIES.FW_WRITE`: the `IA32_A_PMCx` aliases exist.
    pub full_width_writes: bool,
}

impl Default for PmuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            arch: PmuArch::Intel,
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
    #[error("--amd-pmu-version {0} is out of range: supported versions are 0, 1 and 2")]
    AmdVersion(u8),
    #[error(
        "--gp-counters {count} is out of range for --amd-pmu-version {version}: \
         1 to {max} counters"
    )]
    AmdGpCounters { count: u8, version: u8, max: u8 },
    #[error("the AMD PMU has no fixed-function counters: it needs --fixed-counters 0, got {0}")]
    AmdHasNoFixed(u8),
}

impl PmuConfig {
    /// A configuration with the vPMU off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The AMD64 PMU of generation `version` with `gp_counters` counters.
    pub fn amd(version: u8, gp_counters: u8) -> Self {
        Self {
            enabled: true,
            arch: PmuArch::Amd,
            version,
            gp_counters,
            fixed_counters: 0,
            full_width_writes: false,
        }
    }

    /// Most counters AMD PMU generation `version` has.
    pub fn amd_max_counters(version: u8) -> u8 {
        if version == 0 {
            AMD_LEGACY_COUNTERS
        } else {
            MAX_AMD_CORE_COUNTERS
        }
    }

    /// Checks every rule of the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.arch == PmuArch::Amd {
            return self.validate_amd();
        }
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

    fn validate_amd(&self) -> Result<(), ConfigError> {
        if self.version > MAX_AMD_VERSION {
            return Err(ConfigError::AmdVersion(self.version));
        }
        let max = Self::amd_max_counters(self.version);
        if !(1..=max).contains(&self.gp_counters) {
            return Err(ConfigError::AmdGpCounters {
                count: self.gp_counters,
                version: self.version,
                max,
            });
        }
        if self.fixed_counters != 0 {
            return Err(ConfigError::AmdHasNoFixed(self.fixed_counters));
        }
        Ok(())
    }

    /// General-purpose counters the guest sees (0 when the vPMU is off).
    /// Clamped to the architecture's maximum so an unvalidated configuration
    /// cannot index out of range.
    pub fn effective_gp(&self) -> u8 {
        if !self.enabled {
            return 0;
        }
        match self.arch {
            PmuArch::Intel => self.gp_counters.min(MAX_GP_COUNTERS),
            PmuArch::Amd => self
                .gp_counters
                .min(Self::amd_max_counters(self.version.min(MAX_AMD_VERSION))),
        }
    }

    /// Fixed counters the guest sees (0 when the vPMU is off, Intel version
    /// 1, or AMD).
    pub fn effective_fixed(&self) -> u8 {
        if self.enabled && self.arch == PmuArch::Intel && self.version >= 2 {
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
    fn amd_ranges() {
        for v in 0..=3u8 {
            for g in 0..=7u8 {
                let max = if v == 0 { 4 } else { 6 };
                let ok = v <= 2 && (1..=max).contains(&g);
                assert_eq!(PmuConfig::amd(v, g).validate().is_ok(), ok, "v{v} gp{g}");
            }
        }
        let e = PmuConfig::amd(0, 6).validate().unwrap_err();
        assert!(e.to_string().contains("1 to 4"), "{e}");
        let c = PmuConfig {
            fixed_counters: 3,
            ..PmuConfig::amd(2, 6)
        };
        assert_eq!(c.validate(), Err(ConfigError::AmdHasNoFixed(3)));
        assert_eq!(PmuConfig::amd(2, 6).effective_fixed(), 0);
        assert_eq!(PmuConfig::amd(0, 9).effective_gp(), 4);
        assert_eq!(PmuConfig::amd(2, 9).effective_gp(), 6);
    }

    #[test]
    fn serde_defaults() {
        let c: PmuConfig = toml::from_str("version = 5\nfixed_counters = 4").unwrap();
        assert_eq!(c.version, 5);
        assert_eq!(c.gp_counters, 8);
        assert!(c.enabled);
        assert!(toml::from_str::<PmuConfig>("bogus = 1").is_err());
        let c: PmuConfig = toml::from_str("arch = \"amd\"\nversion = 2\ngp_counters = 6").unwrap();
        assert_eq!(c.arch, PmuArch::Amd);
    }
}
