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
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatsArgs {
    /// The API socket of a running VM. Default: the only VM running (see
    /// `vmm list`).
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    pub api_sock: Option<PathBuf>,
    /// The VM run by process PID (its socket in the runtime directory).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print the raw JSON (VM, vCPUs, host PMUs, exits) instead of a table;
    /// with --interval-ms or --watch, one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// One line per guest counter of each vCPU instead of counts summed
    /// per event across vCPUs (as `perf stat -A`).
    #[arg(short = 'A', long)]
    pub per_vcpu: bool,
    /// Print the counts of every MS milliseconds, with timestamps, until
    /// SIGINT or until the VM goes away (as `perf stat -I`).
    #[arg(short = 'I', long, value_name = "MS", conflicts_with = "watch",
          value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub interval_ms: Option<u64>,
    /// Stop after N intervals (with --interval-ms).
    #[arg(long, value_name = "N", requires = "interval_ms")]
    pub interval_count: Option<u64>,
    /// CSV output with this field separator (as `perf stat -x`): [time,]
    /// [vcpuN, counter,] value, unit, event, running ns, running %, metric
    /// value, metric unit.
    #[arg(
        short = 'x',
        long = "field-separator",
        value_name = "SEP",
        conflicts_with = "json"
    )]
    pub field_separator: Option<String>,
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

/// What `--stats-json` writes: the `vmm stats --json` snapshot of the
/// stopped VM, plus why it stopped (`StatsFile` in the OpenAPI file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatsFile {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    pub exit: ExitInfo,
}

/// Why the VM stopped, and `vmm run`'s exit status.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    /// `guest-exit`, `timeout`, `guest-crash`, `signal` or `vmm-error`.
    pub reason: String,
    pub status: u8,
    /// The crash or error, or the signal number, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl StatsFile {
    /// The final snapshot of `source` and why the VM stopped.
    pub fn of(source: &dyn crate::api::StatsSource, reason: &crate::shared::StopReason) -> Self {
        use crate::shared::StopReason;
        let vcpus = source
            .vcpu_ids()
            .into_iter()
            .filter_map(|id| source.vcpu_pmu(id))
            .collect();
        let detail = match reason {
            StopReason::GuestExit(_) | StopReason::Timeout => None,
            StopReason::GuestCrash(w) | StopReason::VmmError(w) => Some(w.clone()),
            StopReason::Signal(sig) => Some(sig.to_string()),
        };
        StatsFile {
            snapshot: Snapshot {
                vm: source.vm(),
                vcpus,
                host_pmus: source.host_pmus(),
                exits: source.exits(),
            },
            exit: ExitInfo {
                reason: reason.kind().to_string(),
                status: reason.exit_status(),
                detail,
            },
        }
    }
}

/// Why `vmm stats` found no VM to attach to.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no running VM in {0} (is `vmm run` running? else give --api-sock PATH)")]
    NoVm(String),
    #[error("{0} VMs running: choose one with --pid N or --api-sock PATH (see `vmm list`)")]
    Several(usize),
    #[error("no VM of PID {0} in {1}")]
    NoSuchPid(u32, String),
}

impl AttachError {
    /// 1 when there is nothing to attach to, 2 when the choice is the user's.
    pub fn exit_status(&self) -> u8 {
        match self {
            AttachError::Several(_) => crate::exit_status::CONFIG,
            _ => crate::exit_status::STATS_UNREACHABLE,
        }
    }
}

/// The socket `vmm stats` talks to: `--api-sock`, `--pid`'s, or the only
/// running VM's.
pub fn target(api_sock: Option<&Path>, pid: Option<u32>) -> Result<PathBuf, AttachError> {
    if let Some(p) = api_sock {
        return Ok(p.to_path_buf());
    }
    let dir = crate::runtime::dir();
    let running = crate::runtime::running_in(&dir);
    if let Some(pid) = pid {
        return running
            .into_iter()
            .find(|e| e.pid == pid)
            .map(|e| e.socket)
            .ok_or_else(|| AttachError::NoSuchPid(pid, dir.display().to_string()));
    }
    match running.as_slice() {
        [] => Err(AttachError::NoVm(dir.display().to_string())),
        [one] => Ok(one.socket.clone()),
        many => {
            eprint!("{}", list_table(many));
            Err(AttachError::Several(many.len()))
        }
    }
}

/// The `vmm list` table of `entries`: each VM asked for its configuration
/// and uptime (`-` where it does not answer).
pub fn list_table(entries: &[crate::runtime::Entry]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{:>8}  {:>10}  {:>5}  {:<16}  {}\n",
        "PID", "UPTIME", "VCPUS", "PMU", "SOCKET"
    );
    for e in entries {
        let (uptime, vcpus, pmu) = match client::get_json::<VmInfo>(&e.socket, "/v1/vm") {
            Ok(vm) => {
                let pmu = vm.config.vpmu.summary();
                (
                    format!("{:.1}s", vm.uptime_ms as f64 / 1000.0),
                    vm.config.vcpus.to_string(),
                    pmu,
                )
            }
            Err(_) => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:>8}  {uptime:>10}  {vcpus:>5}  {pmu:<16}  {}",
            e.pid,
            e.socket.display()
        );
    }
    out
}

/// `vmm list`: the running VMs of this user's runtime directory.
pub fn list() -> u8 {
    let running = crate::runtime::running();
    if running.is_empty() {
        eprintln!(
            "vmm list: no running VM in {}",
            crate::runtime::dir().display()
        );
        return 0;
    }
    print!("{}", list_table(&running));
    0
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
    let sock = match target(args.api_sock.as_deref(), args.pid) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm stats: {e}");
            return e.exit_status();
        }
    };
    if let Some(ms) = args.interval_ms {
        return interval(args, &sock, Duration::from_millis(ms));
    }
    let Some(every) = watch else {
        return once(args, &sock);
    };
    catch_sigint();
    let mut first = true;
    let mut prev: Option<(Instant, Vec<report::Row>)> = None;
    loop {
        match fetch(&sock) {
            Ok(snap) => {
                let now = Instant::now();
                let rows = report::rows(&snap.vcpus);
                let mut out = String::new();
                if args.json {
                    out.push_str(&serde_json::to_string(&snap).unwrap_or_default());
                    out.push('\n');
                } else {
                    // kvm_stat style: clear and redraw, totals and rates.
                    out.push_str("\x1b[H\x1b[2J");
                    let since = prev
                        .as_ref()
                        .map(|(t, r)| (now.duration_since(*t).as_secs_f64(), r.as_slice()));
                    out.push_str(&report::render_rates(&snap.vm, &rows, since, args.per_vcpu));
                }
                prev = Some((now, rows));
                print!("{out}");
                if let Some(path) = &args.timeline {
                    if let Err(e) = write_timeline(&sock, &snap.vm, &snap.host_pmus, path) {
                        eprintln!("vmm stats: {e}");
                    }
                }
            }
            Err(e) => {
                if first {
                    eprintln!("vmm stats: {}: {e}", sock.display());
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

/// One line of `--interval-ms --json`: the snapshot and when it was taken.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IntervalSnapshot {
    /// Seconds since `vmm stats` started.
    pub time_s: f64,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// Sleeps until `until`; false when interrupted.
fn sleep_until(until: Instant) -> bool {
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(until - now));
    }
}

/// `--interval-ms`: counts of each interval (deltas), timestamped, as
/// `perf stat -I`; JSON lines of the cumulative snapshots with `--json`.
fn interval(args: &StatsArgs, sock: &Path, every: Duration) -> u8 {
    use std::io::Write as _;
    catch_sigint();
    let start = Instant::now();
    let mut prev = match fetch(sock) {
        Ok(s) => report::rows(&s.vcpus),
        Err(e) => {
            eprintln!("vmm stats: {}: {e}", sock.display());
            return crate::exit_status::STATS_UNREACHABLE;
        }
    };
    let sep = args.field_separator.as_deref();
    if !args.json && sep.is_none() {
        println!(
            "#{:>14} {:>20}      {}",
            "time",
            "counts",
            if args.per_vcpu {
                "event                  vCPU    counter   host PMU"
            } else {
                "event"
            }
        );
    }
    let mut n = 0u64;
    let mut next = start + every;
    loop {
        if args.interval_count.is_some_and(|c| n >= c) || !sleep_until(next) {
            return 0;
        }
        next += every;
        let snap = match fetch(sock) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vmm stats: VM gone ({e})");
                return 0;
            }
        };
        let t = start.elapsed().as_secs_f64();
        let cur = report::rows(&snap.vcpus);
        let mut out = String::new();
        if args.json {
            let line = IntervalSnapshot {
                time_s: t,
                snapshot: snap,
            };
            out.push_str(&serde_json::to_string(&line).unwrap_or_default());
            out.push('\n');
        } else {
            for l in report::lines(&report::deltas(&prev, &cur), args.per_vcpu, sep) {
                match sep {
                    Some(sep) => out.push_str(&format!("{t:.6}{sep}{l}\n")),
                    None => out.push_str(&format!("{t:>15.6} {l}\n")),
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (a closed pipe).
            return 0;
        }
        prev = cur;
        n += 1;
    }
}

fn once(args: &StatsArgs, sock: &Path) -> u8 {
    let snap = match fetch(sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm stats: {}: {e}", sock.display());
            return crate::exit_status::STATS_UNREACHABLE;
        }
    };
    if let Some(path) = &args.timeline {
        if let Err(e) = write_timeline(sock, &snap.vm, &snap.host_pmus, path) {
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
    } else if let Some(sep) = &args.field_separator {
        for l in report::lines(&report::rows(&snap.vcpus), args.per_vcpu, Some(sep)) {
            println!("{l}");
        }
    } else {
        print!(
            "{}",
            report::render(&snap.vm, &snap.vcpus, &snap.host_pmus, args.per_vcpu)
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

/// `--timeline`: one lane per host PMU that rotates (a PMU of unbounded
/// capacity never does, and would only add an empty lane).
fn write_timeline(
    sock: &Path,
    vm: &VmInfo,
    pmus: &[HostPmuInfo],
    path: &Path,
) -> Result<(), TimelineFileError> {
    let rotating: Vec<HostPmuInfo> = pmus
        .iter()
        .filter(|p| !p.capacity.unbounded)
        .cloned()
        .collect();
    let timelines = fetch_timelines(sock, &rotating)?;
    timeline::render_svg(path, &timelines, vm.config.vpmu.arch).map_err(|source| {
        TimelineFileError::Render {
            path: path.to_path_buf(),
            source,
        }
    })
}
