//! The `vmm` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cpuid::CpuVendor;
use crate::vm::{self, Kernel, StopReason, VmConfig};
use crate::{exit_status, guests, runtime, stats_cmd};
use vpmu::config::{PmuArch, PmuConfig};
use vpmu::core::host_pmu::parse_mux_interval;
use vpmu::core::policy::{Grouping, MuxPolicy, Scaling};

use crate::pmu::host::{parse_errno, parse_sim_phases, HostPmuChoice};

#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    about = "A KVM VMM with a virtual PMU (Intel architectural or AMD64)",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest and run it until it exits.
    Run(Box<RunArgs>),
    /// Show a running VM's counter statistics (through its API socket).
    Stats(stats_cmd::StatsArgs),
    /// List the running VMs (PID, uptime, vCPUs, PMU, API socket).
    List,
    /// Print a shell completion script (e.g. `vmm completions bash >
    /// /etc/bash_completion.d/vmm`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `vmm manpage | man -l -`.
    Manpage,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Guest image (ELF64 or Multiboot v1). Default: the built-in guest perf
    /// demo, followed by the host-side summary (as with --stats).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(vm::MAX_VCPUS)))]
    pub vcpus: u8,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u64,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    pub cmdline: String,
    /// Stop the guest after this many seconds (exit status 124).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Virtual PMU on or off (off: CPUID advertises no PMU of either vendor
    /// and every PMU MSR of both vendors raises #GP).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub vpmu: OnOff,
    /// The CPU vendor string guests see in CPUID (as QEMU's `vendor=`):
    /// `host` passes the host's through.
    #[arg(long, value_enum, default_value_t = VendorArg::Host)]
    pub cpu_vendor: VendorArg,
    /// The PMU interface guests see: `auto` follows the CPU vendor guests see
    /// (real guests pick their PMU driver by vendor).
    #[arg(long, value_enum, default_value_t = PmuArchArg::Auto)]
    pub pmu_arch: PmuArchArg,
    /// Intel architectural performance monitoring version, 1..=5 (default 4).
    #[arg(long)]
    pub pmu_version: Option<u8>,
    /// AMD PMU generation: 0 = the four legacy counters, 1 = PerfCtrCore
    /// (six counters), 2 = PerfMonV2 (global control and status; default).
    #[arg(long)]
    pub amd_pmu_version: Option<u8>,
    /// General-purpose counters per vCPU (independent of the host): Intel
    /// 1..=8 (default 8), AMD 1..=6 (1..=4 with --amd-pmu-version 0; default
    /// the most the version has).
    #[arg(long)]
    pub gp_counters: Option<u8>,
    /// Intel fixed-function counters, 0..=4 (4 needs version 5). Default: 3,
    /// or 0 with --pmu-version 1, which has none. AMD has none.
    #[arg(long)]
    pub fixed_counters: Option<u8>,
    /// Intel full-width counter writes (IA32_A_PMCx,
    /// PERF_CAPABILITIES.FW_WRITE). Default: on.
    #[arg(long, value_enum)]
    pub full_width_writes: Option<OnOff>,
    /// Host side of the guest counters: `auto` = `perf` (Linux perf events
    /// on the vCPU thread; where the host has no hardware PMU, cycles come
    /// from task-clock), `sim:PROFILE` (a simulated host PMU:
    /// resources/pmus/PROFILE.toml or a path to a profile file), or
    /// `thread-clock` (cycles from the vCPU thread's CPU time, no
    /// multiplexer).
    #[arg(long, default_value = "auto")]
    pub host_pmu: String,
    /// What the guest reads for a counter that did not run all the time:
    /// `raw` counts or counts `scaled` by enabled/running time.
    #[arg(long, default_value = "scaled")]
    pub scaling: String,
    /// `per-counter`: every guest counter is its own group; `packed`: a
    /// vCPU's counters are packed into as few groups as fit a host PMU.
    #[arg(long, default_value = "per-counter")]
    pub grouping: String,
    /// Rotation interval of one host PMU, `PMU=MS` (1..=10000); repeatable.
    #[arg(long, value_name = "PMU=MS")]
    pub mux_interval_ms: Vec<String>,
    /// Write every vCPU's final counter statistics as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Testing aid: every host perf_event_open fails with this errno
    /// (ENOENT, EOPNOTSUPP, EACCES, ENOSPC or EMFILE); the affected guest
    /// counters are degraded and the guest keeps running.
    #[arg(long, value_name = "ERRNO")]
    pub inject_host_fault: Option<String>,
    /// Simulated hosts: a workload that changes phase, `MS:MULT,...` (each
    /// phase MS ms of vCPU run time at MULT times the profile's rates,
    /// repeated), to measure the multiplexer's error when rates change.
    #[arg(long, value_name = "MS:MULT,...")]
    pub sim_phases: Option<String>,
    /// Serve the statistics API (HTTP/1.1, JSON) on this Unix socket
    /// instead of the default PID.sock in the runtime directory
    /// ($XDG_RUNTIME_DIR/vmm, /run/vmm for root); `none`: no API.
    #[arg(long, value_name = "PATH")]
    pub api_sock: Option<PathBuf>,
    /// Write the guest's serial output to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub serial: Option<PathBuf>,
    /// Print the host-side statistics summary (as `vmm stats`) when the VM
    /// stops.
    #[arg(long)]
    pub stats: bool,
    /// Seccomp filters on the vCPU, event-loop and API threads (a syscall
    /// outside a thread's list kills the VMM with SIGSYS); `off` for
    /// debugging only.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub seccomp: OnOff,
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

/// `--cpu-vendor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VendorArg {
    Host,
    Intel,
    Amd,
}

/// `--pmu-arch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PmuArchArg {
    Auto,
    Intel,
    Amd,
}

/// The guest's CPU vendor and PMU from the vendor, architecture and PMU
/// options; `host` is the host's vendor, if known.
fn guest_cpu(args: &RunArgs, host: Option<CpuVendor>) -> Result<(CpuVendor, PmuConfig), String> {
    let vendor = match args.cpu_vendor {
        VendorArg::Intel => CpuVendor::Intel,
        VendorArg::Amd => CpuVendor::Amd,
        VendorArg::Host => host.ok_or(
            "the host CPU is neither GenuineIntel nor AuthenticAMD: choose --cpu-vendor intel or amd",
        )?,
    };
    let arch = match args.pmu_arch {
        PmuArchArg::Auto => vendor.pmu_arch(),
        PmuArchArg::Intel => PmuArch::Intel,
        PmuArchArg::Amd => PmuArch::Amd,
    };
    let pmu = match arch {
        PmuArch::Intel => {
            if args.amd_pmu_version.is_some() {
                return Err(format!(
                    "--amd-pmu-version applies to the AMD PMU, but the guest gets the Intel PMU \
                     (--cpu-vendor {}, --pmu-arch {}): use --pmu-version, or --pmu-arch amd",
                    vendor.as_str(),
                    arch
                ));
            }
            let version = args.pmu_version.unwrap_or(4);
            PmuConfig {
                enabled: args.vpmu.on(),
                arch,
                version,
                gp_counters: args.gp_counters.unwrap_or(8),
                fixed_counters: args
                    .fixed_counters
                    .unwrap_or(if version == 1 { 0 } else { 3 }),
                full_width_writes: args.full_width_writes.unwrap_or(OnOff::On).on(),
            }
        }
        PmuArch::Amd => {
            let intel_only = [
                ("--pmu-version", args.pmu_version.is_some()),
                ("--full-width-writes", args.full_width_writes.is_some()),
            ];
            if let Some((opt, _)) = intel_only.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{opt} applies to the Intel PMU, but the guest gets the AMD PMU \
                     (--cpu-vendor {}, --pmu-arch {}): use --amd-pmu-version, or --pmu-arch intel",
                    vendor.as_str(),
                    arch
                ));
            }
            let version = args.amd_pmu_version.unwrap_or(2);
            let gp = args
                .gp_counters
                .unwrap_or(PmuConfig::amd_max_counters(version));
            PmuConfig {
                enabled: args.vpmu.on(),
                fixed_counters: args.fixed_counters.unwrap_or(0),
                ..PmuConfig::amd(version, gp)
            }
        }
    };
    if args.vpmu.on() && arch != vendor.pmu_arch() {
        log::warn!(
            "the guest sees a {} CPU with the {arch} PMU: guests that pick their PMU driver by \
             vendor (Linux, kvm-unit-tests) will not find it",
            vendor.as_str()
        );
    }
    Ok((vendor, pmu))
}

impl RunArgs {
    fn to_config(&self) -> Result<VmConfig, crate::VmError> {
        let timeout = match self.timeout {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(crate::VmError::Config(format!(
                    "--timeout must be a positive number of seconds, got {t}"
                )))
            }
        };
        let kernel = match &self.kernel {
            Some(p) => Kernel::Path(p.clone()),
            None => Kernel::Builtin(guests::DEFAULT),
        };
        let config = |e: String| crate::VmError::Config(e);
        let host_config =
            |e: crate::pmu::host::HostSideError| crate::VmError::Config(e.to_string());
        let (vendor, pmu) = guest_cpu(self, CpuVendor::host()).map_err(config)?;
        let host = HostPmuChoice::parse(&self.host_pmu).map_err(host_config)?;
        let scaling = self
            .scaling
            .parse::<Scaling>()
            .map_err(|e| config(format!("--scaling: {e}")))?;
        let grouping = self
            .grouping
            .parse::<Grouping>()
            .map_err(|e| config(format!("--grouping: {e}")))?;
        let policy = MuxPolicy {
            scaling,
            grouping,
            ..MuxPolicy::default()
        };
        let mux_intervals = self
            .mux_interval_ms
            .iter()
            .map(|a| {
                parse_mux_interval(a).map_err(|e| config(format!("--mux-interval-ms {a}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host_fault = self
            .inject_host_fault
            .as_deref()
            .map(parse_errno)
            .transpose()
            .map_err(host_config)?;
        let sim_phases = self
            .sim_phases
            .as_deref()
            .map(parse_sim_phases)
            .transpose()
            .map_err(host_config)?
            .unwrap_or_default();
        Ok(VmConfig {
            kernel,
            vendor,
            vcpus: self.vcpus,
            mem_mib: self.memory,
            cmdline: self.cmdline.clone(),
            timeout,
            pmu,
            host,
            policy,
            mux_intervals,
            host_fault,
            sim_phases,
            stats_json: self.stats_json.clone(),
            serial: self.serial.clone(),
            api_sock: self.api_sock.clone(),
            seccomp: self.seccomp.on(),
            // The built-in demo always ends with the host-side view.
            stats: self.stats || self.kernel.is_none(),
            host_arg: self.host_pmu.clone(),
        })
    }
}

/// Runs the CLI and returns the process exit status.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return 0;
            }
            // clap's whole message: the problem, possible values, usage.
            eprint!("{e}");
            return exit_status::CONFIG;
        }
    };
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Stats(args) => stats_cmd::main(&args),
        Command::List => stats_cmd::list(),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "vmm", &mut std::io::stdout());
            0
        }
        Command::Manpage => match manpage(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("vmm manpage: {e}");
                exit_status::VMM_ERROR
            }
        },
    }
}

/// The man page of `vmm` and its subcommands, from the clap definitions.
pub fn manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("vmm-{}", sub.get_name());
        let sub = sub.clone().name(name);
        clap_mangen::Man::new(sub).render(out)?;
    }
    Ok(())
}

/// Where the API is served: `--api-sock PATH`, nowhere with `none`, or by
/// default `PID.sock` in the runtime directory (stale sockets of VMs gone
/// are removed there first). A default that cannot be set up leaves the VM
/// without API, with a warning; a path that does not fit `sun_path` is a
/// configuration error.
fn api_socket(arg: Option<&std::path::Path>) -> Result<Option<PathBuf>, crate::VmError> {
    let path = match arg {
        Some(p) if p == std::path::Path::new("none") => return Ok(None),
        Some(p) => p.to_path_buf(),
        None => match runtime::ensure_dir() {
            Ok(dir) => {
                runtime::running_in(&dir);
                dir.join(format!("{}.sock", std::process::id()))
            }
            Err(e) => {
                log::warn!("{e}: the VM runs without statistics API (give --api-sock PATH)");
                return Ok(None);
            }
        },
    };
    crate::api::check_socket_path(&path).map_err(crate::VmError::Config)?;
    Ok(Some(path))
}

fn run(args: &RunArgs) -> u8 {
    let result = args.to_config().and_then(|mut cfg| {
        cfg.api_sock = api_socket(args.api_sock.as_deref())?;
        vm::run(&cfg)
    });
    match result {
        Err(e) => {
            eprintln!("vmm: {e}");
            e.exit_status()
        }
        Ok(reason) => {
            match &reason {
                StopReason::GuestExit(_) => {}
                StopReason::Timeout => eprintln!("vmm: timeout: guest stopped"),
                StopReason::GuestCrash(what) => eprintln!("vmm: guest crashed: {what}"),
                StopReason::Signal(sig) => eprintln!("vmm: stopped by signal {sig}"),
                StopReason::VmmError(what) => eprintln!("vmm: {what}"),
            }
            reason.exit_status()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(args: &[&str]) -> Result<(CpuVendor, PmuConfig), String> {
        let argv = ["vmm", "run"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            return Err("not run".into());
        };
        guest_cpu(&run, Some(CpuVendor::Amd))
    }

    #[test]
    fn the_pmu_follows_the_vendor_guests_see() {
        let (v, pmu) = guest(&[]).unwrap();
        assert_eq!(
            (v, pmu.arch, pmu.version, pmu.gp_counters),
            (CpuVendor::Amd, PmuArch::Amd, 2, 6)
        );
        let (v, pmu) = guest(&["--cpu-vendor", "intel"]).unwrap();
        assert_eq!(
            (v, pmu.arch, pmu.version, pmu.gp_counters),
            (CpuVendor::Intel, PmuArch::Intel, 4, 8)
        );
        assert_eq!(pmu.fixed_counters, 3);
        let (v, pmu) = guest(&["--cpu-vendor", "intel", "--pmu-arch", "amd"]).unwrap();
        assert_eq!((v, pmu.arch), (CpuVendor::Intel, PmuArch::Amd));
        let (_, pmu) = guest(&["--amd-pmu-version", "0"]).unwrap();
        assert_eq!(
            (pmu.version, pmu.gp_counters, pmu.fixed_counters),
            (0, 4, 0)
        );
        assert_eq!(pmu.validate(), Ok(()));
        let (_, pmu) = guest(&["--amd-pmu-version", "1", "--gp-counters", "3"]).unwrap();
        assert_eq!((pmu.version, pmu.gp_counters), (1, 3));
        let (_, pmu) = guest(&["--cpu-vendor", "intel", "--pmu-version", "1"]).unwrap();
        assert_eq!(pmu.fixed_counters, 0);
        let (_, pmu) = guest(&["--vpmu", "off"]).unwrap();
        assert!(!pmu.enabled);
    }

    #[test]
    fn options_of_the_other_vendor_are_refused() {
        let e = guest(&["--pmu-version", "5"]).unwrap_err();
        assert!(e.contains("--pmu-version applies to the Intel PMU"), "{e}");
        let e = guest(&["--full-width-writes", "off"]).unwrap_err();
        assert!(e.contains("--full-width-writes"), "{e}");
        let e = guest(&["--cpu-vendor", "intel", "--amd-pmu-version", "1"]).unwrap_err();
        assert!(
            e.contains("--amd-pmu-version applies to the AMD PMU"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let e = guest(&["--cpu-vendor", "via"]).unwrap_err();
        assert!(e.contains("invalid value"), "{e}");
        // Out-of-range counts are the configuration's to refuse.
        let (_, pmu) = guest(&["--amd-pmu-version", "0", "--gp-counters", "6"]).unwrap();
        assert!(pmu.validate().unwrap_err().to_string().contains("1 to 4"));
        let (_, pmu) = guest(&["--fixed-counters", "3"]).unwrap();
        assert!(pmu.validate().is_err());
    }

    #[test]
    fn completions_and_man_page_come_from_the_definitions() {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "vmm", &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["api-sock", "interval-ms", "list", "vcpus"] {
                assert!(text.contains(word), "{shell}: {word}");
            }
        }
        let mut man = Vec::new();
        manpage(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie"), "roff");
        for word in [".TH vmm", ".TH vmm-run", ".TH vmm-stats", "api\\-sock"] {
            assert!(man.contains(word), "{word}");
        }
        assert!(Cli::try_parse_from(["vmm", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn clap_messages_are_whole() {
        let e = Cli::try_parse_from(["vmm"]).unwrap_err().to_string();
        assert!(
            e.contains("Usage: vmm <COMMAND>") && e.contains("list"),
            "{e}"
        );
        let e = Cli::try_parse_from(["vmm", "run", "--vpmu", "maybe"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[possible values: on, off]"), "{e}");
        let e = Cli::try_parse_from(["vmm", "run", "--vcpus", "300"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1..=16"), "{e}");
        assert!(Cli::try_parse_from(["vmm", "run", "--vcpus", "0"]).is_err());
        assert!(Cli::try_parse_from(["vmm", "run", "--vcpus", "16"]).is_ok());
    }

    #[test]
    fn api_socket_none_long_and_explicit() {
        assert_eq!(
            api_socket(Some(std::path::Path::new("none"))).unwrap(),
            None
        );
        let p = std::path::Path::new("/tmp/x.sock");
        assert_eq!(api_socket(Some(p)).unwrap(), Some(p.to_path_buf()));
        let long = PathBuf::from(format!("/tmp/{}.sock", "a".repeat(100)));
        let e = api_socket(Some(&long)).unwrap_err();
        assert_eq!(e.exit_status(), exit_status::CONFIG);
        assert!(e.to_string().contains("sun_path"), "{e}");
    }

    #[test]
    fn an_unknown_host_vendor_needs_an_explicit_one() {
        let cli = Cli::try_parse_from(["vmm", "run"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let e = guest_cpu(&run, None).unwrap_err();
        assert!(e.contains("--cpu-vendor intel or amd"), "{e}");
    }
}
