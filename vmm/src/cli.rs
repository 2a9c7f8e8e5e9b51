//! The `vmm` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::vm::{self, Kernel, StopReason, VmConfig};
use crate::{exit_status, guests, stats_cmd};
use vpmu::config::PmuConfig;
use vpmu::core::host_pmu::parse_mux_interval;
use vpmu::core::policy::{Grouping, MuxPolicy, Scaling};

use crate::pmu::host::{parse_errno, parse_sim_phases, HostPmuChoice};

#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    about = "A KVM VMM with a virtual Intel architectural PMU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest and run it until it exits.
    Run(RunArgs),
    /// Show a running VM's counter statistics (through its --api-sock).
    Stats(stats_cmd::StatsArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Guest image (ELF64 or Multiboot v1). Default: the built-in guest perf
    /// demo, followed by the host-side summary (as with --stats).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 2)]
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
    /// Virtual PMU on or off (off: CPUID leaf 0xA is zero, PMU MSRs #GP).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub vpmu: OnOff,
    /// Architectural performance monitoring version, 1..=5.
    #[arg(long, default_value_t = 4)]
    pub pmu_version: u8,
    /// General-purpose counters per vCPU, 1..=8 (independent of the host).
    #[arg(long, default_value_t = 8)]
    pub gp_counters: u8,
    /// Fixed-function counters, 0..=4 (4 needs version 5). Default: 3, or 0
    /// with --pmu-version 1, which has none.
    #[arg(long)]
    pub fixed_counters: Option<u8>,
    /// Full-width counter writes (IA32_A_PMCx, PERF_CAPABILITIES.FW_WRITE).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub full_width_writes: OnOff,
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
    /// Serve the statistics API (HTTP/1.1, JSON) on this Unix socket.
    #[arg(long, value_name = "PATH")]
    pub api_sock: Option<PathBuf>,
    /// Print the host-side statistics summary (as `vmm stats`) when the VM
    /// stops.
    #[arg(long)]
    pub stats: bool,
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
        let pmu = PmuConfig {
            enabled: self.vpmu.on(),
            arch: vpmu::config::PmuArch::Intel,
            version: self.pmu_version,
            gp_counters: self.gp_counters,
            fixed_counters: self.fixed_counters.unwrap_or(if self.pmu_version == 1 {
                0
            } else {
                3
            }),
            full_width_writes: self.full_width_writes.on(),
        };
        let config = |e: String| crate::VmError::Config(e);
        let host = HostPmuChoice::parse(&self.host_pmu).map_err(config)?;
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
            .map_err(config)?;
        let sim_phases = self
            .sim_phases
            .as_deref()
            .map(parse_sim_phases)
            .transpose()
            .map_err(config)?
            .unwrap_or_default();
        Ok(VmConfig {
            kernel,
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
            api_sock: self.api_sock.clone(),
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
            // One line: clap's first line names the problem.
            let msg = e.to_string();
            eprintln!("{}", msg.lines().next().unwrap_or("invalid arguments"));
            return exit_status::CONFIG;
        }
    };
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Stats(args) => stats_cmd::main(&args),
    }
}

fn run(args: &RunArgs) -> u8 {
    let result = args.to_config().and_then(|cfg| vm::run(&cfg));
    match result {
        Err(e) => {
            eprintln!("vmm: {e}");
            e.exit_status()
        }
        Ok(StopReason::GuestExit(status)) => status,
        Ok(StopReason::Timeout) => {
            eprintln!("vmm: timeout: guest stopped");
            exit_status::TIMEOUT
        }
        Ok(StopReason::GuestCrash(what)) => {
            eprintln!("vmm: guest crashed: {what}");
            exit_status::GUEST_CRASH
        }
        Ok(StopReason::Signal(sig)) => {
            eprintln!("vmm: stopped by signal {sig}");
            exit_status::SIGNAL_BASE.wrapping_add(sig as u8)
        }
        Ok(StopReason::VmmError(what)) => {
            eprintln!("vmm: {what}");
            exit_status::VMM_ERROR
        }
    }
}
