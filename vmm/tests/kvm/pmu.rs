//! The guest-visible PMU on real KVM: the `pmu-conformance` guest across the
//! configuration matrix of the issue, and PMI-driven sampling.

use crate::harness::run_guest;
use crate::KvmTest;

/// One configuration: `vmm` flags and the matching guest command line.
struct Config {
    vpmu: bool,
    version: u8,
    gp: u8,
    fixed: u8,
    full_width: bool,
    vcpus: u8,
}

impl Config {
    fn run(&self) -> Result<(), String> {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let (version, gp, fixed, vcpus) = (
            self.version.to_string(),
            self.gp.to_string(),
            self.fixed.to_string(),
            self.vcpus.to_string(),
        );
        let cmdline = format!(
            "vpmu={} version={} gp={} fixed={} fw={}",
            on_off(self.vpmu),
            self.version,
            self.gp,
            self.fixed,
            u8::from(self.full_width)
        );
        let args = [
            "--cpu-vendor",
            "intel",
            "--vpmu",
            on_off(self.vpmu),
            "--pmu-version",
            &version,
            "--gp-counters",
            &gp,
            "--fixed-counters",
            &fixed,
            "--full-width-writes",
            on_off(self.full_width),
            "--vcpus",
            &vcpus,
            "--cmdline",
            &cmdline,
            "--timeout",
            "60",
        ];
        run_suite(&args, &format!("{cmdline} vcpus={vcpus}"), self.vpmu)
    }
}

/// Runs `pmu-conformance` with `args`; it must exit 0 with no failed check
/// and at least 60 passed (30 with the vPMU off, where it checks the no-PMU
/// behaviour instead: CPUID, PDCM, #GP on every PMU MSR).
fn run_suite(args: &[&str], what: &str, vpmu: bool) -> Result<(), String> {
    let run = run_guest("pmu-conformance.elf", args)?;
    run.expect_status(0).map_err(|e| format!("{what}: {e}"))?;
    let last = run
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let (passed, failed) =
        parse_summary(last).ok_or_else(|| format!("{what}: no summary line, last `{last}`"))?;
    let least = if vpmu { 60 } else { 30 };
    if failed != 0 || passed < least {
        return Err(format!(
            "{what}: `{last}` (want >= {least} passed, 0 failed)\n{}",
            run.stdout
        ));
    }
    Ok(())
}

/// Parses the guest's final `N passed, M failed` line.
fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (p, rest) = line.trim().split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

/// Every version 1..=5 (v1 has no fixed counters; v5 with 4 fixed too),
/// full-width writes on and off, 1 and 8 GP counters, 1 and 4 vCPUs, and
/// the vPMU off.
fn matrix() -> Vec<Config> {
    let mut m = Vec::new();
    for version in 1..=5u8 {
        let fixed_choices: &[u8] = match version {
            1 => &[0],
            5 => &[3, 4],
            _ => &[3],
        };
        for &fixed in fixed_choices {
            for full_width in [true, false] {
                for gp in [1u8, 8] {
                    m.push(Config {
                        vpmu: true,
                        version,
                        gp,
                        fixed,
                        full_width,
                        vcpus: 1,
                    });
                }
            }
            m.push(Config {
                vpmu: true,
                version,
                gp: 8,
                fixed,
                full_width: true,
                vcpus: 4,
            });
        }
    }
    for vcpus in [1, 4] {
        m.push(Config {
            vpmu: false,
            version: 4,
            gp: 8,
            fixed: 3,
            full_width: true,
            vcpus,
        });
    }
    m
}

fn conformance_matrix() -> Result<(), String> {
    let failures: Vec<String> = matrix().iter().filter_map(|c| c.run().err()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

/// One AMD configuration: the guest sees `AuthenticAMD` and the AMD PMU of
/// `version` with `gp` counters, on host side `host`.
struct AmdConfig {
    vpmu: bool,
    version: u8,
    gp: u8,
    vcpus: u8,
    host: &'static str,
}

impl AmdConfig {
    fn run(&self) -> Result<(), String> {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let (version, gp, vcpus) = (
            self.version.to_string(),
            self.gp.to_string(),
            self.vcpus.to_string(),
        );
        let cmdline = format!(
            "vpmu={} arch=amd amd_version={} gp={}",
            on_off(self.vpmu),
            self.version,
            self.gp
        );
        let args = [
            "--cpu-vendor",
            "amd",
            "--vpmu",
            on_off(self.vpmu),
            "--amd-pmu-version",
            &version,
            "--gp-counters",
            &gp,
            "--host-pmu",
            self.host,
            "--vcpus",
            &vcpus,
            "--cmdline",
            &cmdline,
            "--timeout",
            "60",
        ];
        let what = format!("{cmdline} vcpus={vcpus} host={}", self.host);
        run_suite(&args, &what, self.vpmu)
    }
}

/// AMD PMU versions 0, 1 and 2 with 4 and 6 counters (version 0 has at
/// most 4), 1 and 4 vCPUs, on the perf backend and on `sim:amd-zen4`, and
/// the vPMU off.
fn amd_matrix() -> Vec<AmdConfig> {
    let mut m = Vec::new();
    for version in 0..=2u8 {
        let gps: &[u8] = if version == 0 { &[1, 4] } else { &[4, 6] };
        for &gp in gps {
            for host in ["auto", "sim:amd-zen4"] {
                m.push(AmdConfig {
                    vpmu: true,
                    version,
                    gp,
                    vcpus: 1,
                    host,
                });
            }
        }
        m.push(AmdConfig {
            vpmu: true,
            version,
            gp: if version == 0 { 4 } else { 6 },
            vcpus: 4,
            host: "auto",
        });
    }
    for vcpus in [1, 4] {
        m.push(AmdConfig {
            vpmu: false,
            version: 2,
            gp: 6,
            vcpus,
            host: "auto",
        });
    }
    m
}

fn amd_conformance_matrix() -> Result<(), String> {
    let failures: Vec<String> = amd_matrix().iter().filter_map(|c| c.run().err()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

pub const TESTS: &[(&str, KvmTest)] = &[
    ("pmu::conformance_matrix", conformance_matrix),
    ("pmu::amd_conformance_matrix", amd_conformance_matrix),
];
