//! `vmm stats`: a client of the statistics API. Prints a summary in the
//! spirit of `perf stat` (or the raw JSON), redraws it every SECS with
//! `--watch` like kvm_stat, and draws the multiplexer's recent rotations as
//! an SVG timeline with `--timeline`.

pub mod client;
pub mod timeline;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::api::model::{Exits, HostPmuInfo, HostPmuList, Timeline, VcpuList, VcpuPmu, VmInfo};
use vpmu::stats::{CounterState, CounterStats, PmuKindStat};

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
                    out.push_str(&render_table(&snap.vm, &snap.vcpus, &snap.host_pmus));
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
                    return crate::exit_status::VMM_ERROR;
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
            return crate::exit_status::VMM_ERROR;
        }
    };
    if let Some(path) = &args.timeline {
        if let Err(e) = write_timeline(&args.api_sock, &snap.host_pmus, path) {
            eprintln!("vmm stats: {e}");
            return crate::exit_status::VMM_ERROR;
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&snap) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("vmm stats: {e}");
                return crate::exit_status::VMM_ERROR;
            }
        }
    } else {
        print!("{}", render_table(&snap.vm, &snap.vcpus, &snap.host_pmus));
    }
    0
}

fn write_timeline(sock: &Path, pmus: &[HostPmuInfo], path: &Path) -> Result<(), String> {
    let timelines = fetch_timelines(sock, pmus).map_err(|e| e.to_string())?;
    timeline::render_svg(path, &timelines)
        .map_err(|e| format!("cannot write timeline {}: {e}", path.display()))
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the value column of a counter shows.
fn value_cell(c: &CounterStats) -> String {
    let unavailable = c.labels.iter().any(|l| l == "unavailable");
    if unavailable || (c.state == CounterState::Degraded && c.host_pmu.is_none()) {
        "<not supported>".into()
    } else if c.state == CounterState::Error || c.running_ns == 0 {
        "<not counted>".into()
    } else {
        thousands(c.scaled)
    }
}

/// One counter line.
fn counter_line(out: &mut String, vcpu: u32, c: &CounterStats) {
    let value = value_cell(c);
    let counted = !value.starts_with('<');
    let _ = write!(
        out,
        "{value:>20}      {:<22} vcpu{vcpu:<3} {:<7} {:<10}",
        c.event,
        c.name,
        c.host_pmu.as_deref().unwrap_or("-"),
    );
    if counted && c.running_pct < 99.995 {
        let _ = write!(out, " ({:.2}%)", c.running_pct);
    }
    if c.state != CounterState::Active && c.state != CounterState::Inactive {
        let _ = write!(out, " {}", crate::api::metrics::state_name(c.state));
    }
    let labels: Vec<&str> = c
        .labels
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "unavailable")
        .collect();
    if !labels.is_empty() {
        let _ = write!(out, " [{}]", labels.join(", "));
    }
    out.push('\n');
}

/// The `perf stat`-like summary; `vmm run --stats` prints the same from
/// in-process data at exit.
pub fn render_table(vm: &VmInfo, vcpus: &[VcpuPmu], host_pmus: &[HostPmuInfo]) -> String {
    let mut out = String::new();
    let c = &vm.config;
    let _ = writeln!(
        out,
        "\n Performance counter stats for VM ({} vCPU{}, vPMU {}, host {}, {}, {}):\n",
        c.vcpus,
        if c.vcpus == 1 { "" } else { "s" },
        if c.vpmu.enabled {
            format!(
                "v{} {}+{}",
                c.vpmu.version, c.vpmu.gp_counters, c.vpmu.fixed_counters
            )
        } else {
            "off".to_string()
        },
        c.host_pmu,
        c.scaling,
        c.grouping
    );
    let mut lines = 0;
    for v in vcpus {
        match (&v.stats, &v.guest) {
            (Some(stats), _) => {
                for cs in &stats.counters {
                    if cs.state == CounterState::Off && cs.raw == 0 && cs.enabled_ns == 0 {
                        continue;
                    }
                    counter_line(&mut out, v.id, cs);
                    lines += 1;
                }
            }
            (None, Some(g)) => {
                // No multiplexer: the guest-visible values are the counts.
                let gp = g.gp.iter().filter(|c| c.enabled || c.value != 0).map(|c| {
                    let ev = c.event_name.clone().unwrap_or_else(|| {
                        let code = c.select.code();
                        format!("raw:0x{:02x}{:02x}", code.umask, code.select)
                    });
                    (c.name.clone(), ev, c.value, c.running)
                });
                let fixed = g
                    .fixed
                    .iter()
                    .filter(|c| c.enabled || c.value != 0)
                    .map(|c| (c.name.clone(), c.event_name.clone(), c.value, c.running));
                for (counter, event, value, running) in gp.chain(fixed) {
                    let _ = writeln!(
                        out,
                        "{:>20}      {:<22} vcpu{:<3} {:<7} {:<10}{}",
                        thousands(value),
                        event,
                        v.id,
                        counter,
                        "-",
                        if running { "" } else { " stopped" }
                    );
                    lines += 1;
                }
            }
            (None, None) => {}
        }
    }
    if lines == 0 {
        out.push_str("     (no guest counter enabled)\n");
    }
    if !host_pmus.is_empty() {
        out.push_str("\n Host PMUs:\n");
        for p in host_pmus {
            let kind = match p.kind {
                PmuKindStat::Hardware => "hardware",
                PmuKindStat::Software => "software",
                PmuKindStat::Simulated => "simulated",
            };
            let cap = if p.capacity.unbounded {
                "unbounded".to_string()
            } else {
                format!("{} gp + {} fixed", p.capacity.gp, p.capacity.fixed)
            };
            let _ = writeln!(
                out,
                "   {:<12} {:<9}  {:<15}  interval {:>5} ms  rotations {:>12}  groups {} active, {} waiting{}",
                p.name,
                kind,
                cap,
                p.mux_interval_ms,
                thousands(p.rotations),
                p.groups_active,
                p.groups_waiting,
                if p.groups_error > 0 {
                    format!(", {} in error", p.groups_error)
                } else {
                    String::new()
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "\n {:>14.3} seconds uptime ({})\n",
        vm.uptime_ms as f64 / 1000.0,
        vm.state
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
