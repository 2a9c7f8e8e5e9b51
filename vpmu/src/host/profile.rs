//! Host PMU profiles for the simulated backend (`--host-pmu sim:PROFILE`).
//!
//! A profile is a TOML file in `resources/pmus/`: a list of host PMUs, each
//! with its kind, its general-purpose counters, its fixed counters and the
//! event each one is bound to, per-event counter constraints (a mask of the
//! general-purpose counters the event may use), its multiplexing interval,
//! and per-event rates in events per nanosecond of vCPU run time. An event
//! with a rate is an event the PMU can count.
//!
//! Which PMU counts an event: the first *hardware* PMU, in profile order,
//! that has a rate for it; otherwise the first software PMU that has one;
//! otherwise nobody, and the guest counter is reported unavailable. On a
//! hybrid profile this models a vCPU thread running on the first PMU's cores,
//! with events only the second PMU can count (the way uncore events live on
//! their own PMU) landing there.
//!
//! The built-in profiles are embedded in the binary ([`Profile::builtin`]), so
//! a binary works without the resources directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::backend::{EventMapping, PmuKind};
use crate::event::EventName;

/// Largest profile file read (the built-in ones are about 1 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Built-in profiles: name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "intel-4gp-3fixed",
        include_str!("../../../resources/pmus/intel-4gp-3fixed.toml"),
    ),
    (
        "intel-4gp",
        include_str!("../../../resources/pmus/intel-4gp.toml"),
    ),
    (
        "intel-8gp-4fixed",
        include_str!("../../../resources/pmus/intel-8gp-4fixed.toml"),
    ),
    (
        "hybrid",
        include_str!("../../../resources/pmus/hybrid.toml"),
    ),
    (
        "no-pmu",
        include_str!("../../../resources/pmus/no-pmu.toml"),
    ),
    (
        "amd-zen4",
        include_str!("../../../resources/pmus/amd-zen4.toml"),
    ),
    (
        "amd-4gp",
        include_str!("../../../resources/pmus/amd-4gp.toml"),
    ),
];

/// Largest number of counters (general purpose + fixed) of one PMU.
pub const MAX_COUNTERS: usize = 32;

/// Errors loading a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown host PMU profile `{name}` (looked in {searched}; built-in: {builtin})")]
    Unknown {
        name: String,
        searched: String,
        builtin: String,
    },
    #[error("cannot read profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: crate::util::file::FileError,
    },
    #[error("profile {origin} is not UTF-8")]
    NotUtf8 { origin: String },
    #[error("profile {origin}: {source}")]
    Toml {
        origin: String,
        source: toml::de::Error,
    },
    #[error("profile {origin}: {reason}")]
    Malformed { origin: String, reason: String },
}

/// One host PMU of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct PmuDesc {
    pub name: String,
    pub kind: PmuKind,
    /// General-purpose counters.
    pub gp: u8,
    /// Fixed counters, each bound to one event.
    pub fixed: Vec<EventName>,
    pub mux_interval_ms: u64,
    rates: [Option<f64>; EventName::ALL.len()],
    gp_masks: [u32; EventName::ALL.len()],
}

impl PmuDesc {
    /// A hardware PMU with `gp` general-purpose counters, the given fixed
    /// counters, and `rate` events/ns for every generic event (tests, benches).
    pub fn hardware(name: &str, gp: u8, fixed: &[EventName], rate: f64) -> PmuDesc {
        PmuDesc {
            name: name.to_string(),
            kind: PmuKind::Hardware,
            gp,
            fixed: fixed.to_vec(),
            mux_interval_ms: super::sysfs::DEFAULT_MUX_INTERVAL_MS,
            rates: [Some(rate); EventName::ALL.len()],
            gp_masks: [all_bits(gp); EventName::ALL.len()],
        }
    }

    /// A software PMU counting every generic event at `rate` events/ns.
    pub fn software(name: &str, rate: f64) -> PmuDesc {
        PmuDesc {
            kind: PmuKind::Software,
            ..PmuDesc::hardware(name, 0, &[], rate)
        }
    }

    /// Restricts `event` to the general-purpose counters in `gp_mask`.
    pub fn with_constraint(mut self, event: EventName, gp_mask: u32) -> PmuDesc {
        self.gp_masks[event.index()] = gp_mask & all_bits(self.gp);
        self
    }

    /// Counters in total.
    pub fn counters(&self) -> u8 {
        self.gp.saturating_add(self.fixed.len() as u8)
    }

    /// Events per ns of run time, if the PMU counts `event`.
    pub fn rate(&self, event: EventName) -> Option<f64> {
        self.rates[event.index()]
    }

    /// Counters `event` may use (general purpose first, then fixed).
    pub fn mask(&self, event: EventName) -> u32 {
        let mut mask = self.gp_masks[event.index()];
        for (i, e) in self.fixed.iter().enumerate() {
            if *e == event {
                mask |= 1 << (self.gp as usize + i);
            }
        }
        mask
    }
}

fn all_bits(n: u8) -> u32 {
    if n as usize >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// A host PMU profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub pmus: Vec<PmuDesc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    #[serde(rename = "pmu")]
    pmus: Vec<RawPmu>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPmu {
    name: String,
    kind: String,
    #[serde(default)]
    gp_counters: u8,
    #[serde(default)]
    fixed_counters: Vec<String>,
    #[serde(default)]
    mux_interval_ms: Option<u64>,
    #[serde(default)]
    rates: BTreeMap<String, f64>,
    #[serde(default)]
    constraints: BTreeMap<String, u32>,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
}

impl Profile {
    /// A profile made of the given PMUs (tests, benches).
    pub fn from_pmus(name: &str, pmus: Vec<PmuDesc>) -> Profile {
        Profile {
            name: name.to_string(),
            description: String::new(),
            pmus,
        }
    }

    /// Resolves `spec` (`sim:NAME`, `NAME`, or a path to a `.toml` file):
    /// a path is read as is; a name is looked up as
    /// `<resources>/pmus/NAME.toml`, then among the built-in profiles.
    pub fn load(spec: &str, resources: Option<&Path>) -> Result<Profile, ProfileError> {
        let name = spec.strip_prefix("sim:").unwrap_or(spec);
        if name.contains('/') || name.ends_with(".toml") {
            return Profile::read(Path::new(name));
        }
        let mut searched = Vec::new();
        if let Some(dir) = resources {
            let path = dir.join("pmus").join(format!("{name}.toml"));
            if path.is_file() {
                return Profile::read(&path);
            }
            searched.push(path.display().to_string());
        }
        searched.push("built-in profiles".to_string());
        Profile::builtin(name).map_err(|_| ProfileError::Unknown {
            name: name.to_string(),
            searched: searched.join(", "),
            builtin: builtin_names(),
        })
    }

    /// A profile embedded in the binary.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let name = name.strip_prefix("sim:").unwrap_or(name);
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ProfileError::Unknown {
                name: name.to_string(),
                searched: "built-in profiles".to_string(),
                builtin: builtin_names(),
            })
            .and_then(|(n, text)| Profile::parse(text, &format!("built-in `{n}`")))
    }

    fn read(path: &Path) -> Result<Profile, ProfileError> {
        let bytes = crate::util::file::read_regular(path, MAX_PROFILE_BYTES).map_err(|source| {
            ProfileError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let origin = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|_| ProfileError::NotUtf8 {
            origin: origin.clone(),
        })?;
        Profile::parse(&text, &origin)
    }

    /// Parses and validates profile text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|source| ProfileError::Toml {
            origin: origin.to_string(),
            source,
        })?;
        let bad = |reason: String| ProfileError::Malformed {
            origin: origin.to_string(),
            reason,
        };
        if raw.pmus.is_empty() {
            return Err(bad("no [[pmu]]".into()));
        }
        if raw.pmus.len() > 64 {
            return Err(bad("more than 64 PMUs".into()));
        }
        let mut pmus: Vec<PmuDesc> = Vec::with_capacity(raw.pmus.len());
        for p in raw.pmus {
            if p.name.is_empty() || pmus.iter().any(|q| q.name == p.name) {
                return Err(bad(format!("PMU name `{}` empty or repeated", p.name)));
            }
            let kind = match p.kind.as_str() {
                "hardware" => PmuKind::Hardware,
                "software" => PmuKind::Software,
                k => {
                    return Err(bad(format!(
                        "PMU `{}`: kind `{k}` is not hardware/software",
                        p.name
                    )))
                }
            };
            let parse_event = |s: &str| {
                s.parse::<EventName>()
                    .map_err(|e| bad(format!("PMU `{}`: {e}", p.name)))
            };
            let fixed = p
                .fixed_counters
                .iter()
                .map(|s| parse_event(s))
                .collect::<Result<Vec<_>, _>>()?;
            if kind == PmuKind::Software && (p.gp_counters != 0 || !fixed.is_empty()) {
                return Err(bad(format!("software PMU `{}` has counters", p.name)));
            }
            if p.gp_counters as usize + fixed.len() > MAX_COUNTERS {
                return Err(bad(format!(
                    "PMU `{}` has more than {MAX_COUNTERS} counters",
                    p.name
                )));
            }
            let interval = p
                .mux_interval_ms
                .unwrap_or(super::sysfs::DEFAULT_MUX_INTERVAL_MS);
            if !(1..=10_000).contains(&interval) {
                return Err(bad(format!(
                    "PMU `{}`: mux_interval_ms {interval} not in 1..=10000",
                    p.name
                )));
            }
            let mut desc = PmuDesc {
                name: p.name.clone(),
                kind,
                gp: p.gp_counters,
                fixed,
                mux_interval_ms: interval,
                rates: [None; EventName::ALL.len()],
                gp_masks: [all_bits(p.gp_counters); EventName::ALL.len()],
            };
            for (event, rate) in &p.rates {
                let e = parse_event(event)?;
                if !rate.is_finite() || *rate < 0.0 || *rate > 1000.0 {
                    return Err(bad(format!(
                        "PMU `{}`: rate {rate} of `{event}` not in 0..=1000",
                        p.name
                    )));
                }
                desc.rates[e.index()] = Some(*rate);
            }
            for (event, mask) in &p.constraints {
                let e = parse_event(event)?;
                if mask & !all_bits(desc.gp) != 0 {
                    return Err(bad(format!(
                        "PMU `{}`: constraint {mask:#x} of `{event}` names missing counters",
                        p.name
                    )));
                }
                desc.gp_masks[e.index()] = *mask;
            }
            for e in EventName::ALL {
                if kind == PmuKind::Hardware && desc.rate(e).is_some() && desc.mask(e) == 0 {
                    return Err(bad(format!("PMU `{}`: no counter may count `{e}`", p.name)));
                }
            }
            for e in &desc.fixed {
                if desc.rate(*e).is_none() {
                    return Err(bad(format!(
                        "PMU `{}`: fixed counter event `{e}` has no rate",
                        p.name
                    )));
                }
            }
            pmus.push(desc);
        }
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            pmus,
        })
    }

    /// Where `event` is counted (see the module documentation), if anywhere.
    pub fn map(&self, event: EventName) -> Option<EventMapping> {
        let pick = |kind: PmuKind| {
            self.pmus.iter().enumerate().find_map(|(i, p)| {
                let rate = p.rate(event)?;
                (p.kind == kind).then_some(EventMapping {
                    pmu: i,
                    mask: p.mask(event),
                    rate_per_ns: rate,
                    software: kind == PmuKind::Software,
                })
            })
        };
        pick(PmuKind::Hardware).or_else(|| pick(PmuKind::Software))
    }

    /// Index of the PMU called `name`.
    pub fn pmu_index(&self, name: &str) -> Option<usize> {
        self.pmus.iter().position(|p| p.name == name)
    }
}

fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(p.name, *name);
        }
        let p = Profile::builtin("sim:intel-4gp-3fixed").unwrap();
        let cpu = &p.pmus[0];
        assert_eq!((cpu.gp, cpu.fixed.len()), (4, 3));
        assert_eq!(cpu.mask(EventName::Cycles), 0b10_1111);
        let h = Profile::builtin("hybrid").unwrap();
        assert_eq!(h.pmus.len(), 3);
        let n = Profile::builtin("no-pmu").unwrap();
        assert!(n.map(EventName::Cycles).unwrap().software);
        assert!(n.map(EventName::CacheMisses).is_none());
    }

    #[test]
    fn unknown_and_malformed() {
        assert!(matches!(
            Profile::builtin("nope"),
            Err(ProfileError::Unknown { .. })
        ));
        assert!(matches!(
            Profile::load("sim:nope", Some(Path::new("/nonexistent"))),
            Err(ProfileError::Unknown { .. })
        ));
        assert!(matches!(
            Profile::parse("name = 1", "t"),
            Err(ProfileError::Toml { .. })
        ));
        let bad = "name='x'\n[[pmu]]\nname='cpu'\nkind='hardware'\ngp_counters=2\n[pmu.rates]\ncycles=1.0\n[pmu.constraints]\ncycles=4\n";
        assert!(matches!(
            Profile::parse(bad, "t"),
            Err(ProfileError::Malformed { .. })
        ));
        let bad = "name='x'\n[[pmu]]\nname='cpu'\nkind='quantum'\n";
        assert!(matches!(
            Profile::parse(bad, "t"),
            Err(ProfileError::Malformed { .. })
        ));
        let bad = "name='x'\n[[pmu]]\nname='cpu'\nkind='hardware'\ngp_counters=2\n[pmu.rates]\nflops=1.0\n";
        assert!(matches!(
            Profile::parse(bad, "t"),
            Err(ProfileError::Malformed { .. })
        ));
    }

    #[test]
    fn load_from_resources_dir() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources");
        let p = Profile::load("sim:intel-8gp-4fixed", Some(&dir)).unwrap();
        assert_eq!(p.pmus[0].gp, 8);
    }
}
