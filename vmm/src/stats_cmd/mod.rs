//! `vmm stats`: a client of the statistics API. Prints a summary in the
//! spirit of `perf stat` (or the raw JSON), redraws it every SECS with
//! `--watch` like kvm_stat, and draws the multiplexer's recent rotations as
//! an SVG timeline with `--timeline`. The table is [`crate::report`]'s, the
//! same `vmm run --stats` prints.

pub mod client;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::api::model::{Exits, HostPmuInfo, HostPmuList, Timeline, VcpuList, VcpuPmu, VmInfo};

use crate::report;

/// `vmm stats` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The API socket of a running `vmm run --api-sock PATH`.
    #[arg(long, value_name = "PATH")]
    pub api_sock: PathBuf,
    /// Print the raw JSON (VM, vCPUs, host PMUs, exits) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Redraw every SECS seconds until SIGINT or until the VM goes away.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
    /// Write an SVG timeline of the last rotations of every host PMU.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
}

/// Everything one refresh reads.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub vm: VmInfo,
    pub vcpus: Vec<VcpuPmu>,
    pub host_pmus: Vec<HostPmuInfo>,
    pub exits: Exits,
}

/// Reads a [`Snapshot`] from the API.
pub fn fetch(sock: &Path) -> std::io::Result<Snapshot> {
    let vm: VmInfo = client::get_json(sock, "/v1/vm")?;
    let vcpus: VcpuList = client::get_json(sock, "/v1/vcpus")?;
    let pmus: HostPmuList = client::get_json(sock, "/v1/host-pmus")?;
    let exits: Exits = client::get_json(sock, "/v1/exits")?;
    Ok(Snapshot {
        vm,
        vcpus: vcpus.vcpus,
        host_pmus: pmus.host_pmus,
        exits,
    })
}

/// Reads the timelines of every host PMU.
pub fn fetch_timelines(sock: &Path, pmus: &[HostPmuInfo]) -> std::io::Result<Vec<Timeline>> {
    pmus.iter()
        .map(|p| client::get_json(sock, &format!("/v1/host-pmus/{}/timeline", p.name)))
        .collect()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_sigint() {
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Runs `vmm stats`; returns the exit status (0 ok, 1 API unreachable or
/// failing, 2 bad arguments).
pub fn main(args: &StatsArgs) -> u8 {
    let watch = match args.watch {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("vmm stats: --watch must be a positive number of seconds, got {s}");
            return crate::exit_status::CONFIG;
        }
    };
    let Some(every) = watch else {
        return once(args);
    };
    catch_sigint();
    let mut first = true;
    loop {
        match fetch(&args.api_sock) {
            Ok(snap) => {
                let mut out = String::new();
                if args.json {
                    out.push_str(&serde_json::to_string(&snap).unwrap_or_default());
                    out.push('\n');
                } else {
                    // kvm_stat style: clear and redraw.
                    out.push_str("\x1b[H\x1b[2J");
                    out.push_str(&report::render_table(
                        &snap.vm,
                        &snap.vcpus,
                        &snap.host_pmus,
                    ));
                }
                print!("{out}");
                if let Some(path) = &args.timeline {
                    if let Err(e) = write_timeline(&args.api_sock, &snap.host_pmus, path) {
                        eprintln!("vmm stats: {e}");
                    }
                }
            }
            Err(e) => {
                if first {
                    eprintln!("vmm stats: {}: {e}", args.api_sock.display());
                    return crate::exit_status::STATS_UNREACHABLE;
                }
                // The VM went away.
                eprintln!("vmm stats: VM gone ({e})");
                return 0;
            }
        }
        first = false;
        let until = Instant::now() + every;
        while Instant::now() < until {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return 0;
        }
    }
}

fn once(args: &StatsArgs) -> u8 {
    let snap = match fetch(&args.api_sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm stats: {}: {e}", args.api_sock.display());
            return crate::exit_status::STATS_UNREACHABLE;
        }
    };
    if let Some(path) = &args.timeline {
        if let Err(e) = write_timeline(&args.api_sock, &snap.host_pmus, path) {
            eprintln!("vmm stats: {e}");
            return crate::exit_status::STATS_UNREACHABLE;
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&snap) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vmm stats: {e}");
                return crate::exit_status::STATS_UNREACHABLE;
            }
        }
    } else {
        print!(
            "{}",
            report::render_table(&snap.vm, &snap.vcpus, &snap.host_pmus)
        );
    }
    0
}

/// Why `--timeline` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TimelineFileError {
    #[error(transparent)]
    Api(#[from] std::io::Error),
    #[error("cannot write timeline {}: {source}", path.display())]
    Render {
        path: PathBuf,
        source: timeline::TimelineError,
    },
}

fn write_timeline(sock: &Path, pmus: &[HostPmuInfo], path: &Path) -> Result<(), TimelineFileError> {
    let timelines = fetch_timelines(sock, pmus)?;
    timeline::render_svg(path, &timelines).map_err(|source| TimelineFileError::Render {
        path: path.to_path_buf(),
        source,
    })
}
