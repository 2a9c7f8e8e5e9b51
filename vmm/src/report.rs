//! The final statistics table, in the spirit of `perf stat`: one line per
//! guest counter, then the host PMUs. `vmm stats` renders it from the API's
//! answers, `vmm run --stats` from the VM's own [`StatsSource`] when the VM
//! stops; both render the same API model types here.

use std::fmt::Write as _;

use vpmu::stats::{CounterState, CounterStats};

use crate::api::metrics::state_name;
use crate::api::model::{HostPmuInfo, VcpuPmu, VmInfo};
use crate::api::StatsSource;

/// The table of everything `source` published last.
pub fn of_source(source: &dyn StatsSource) -> String {
    let vcpus: Vec<VcpuPmu> = source
        .vcpu_ids()
        .into_iter()
        .filter_map(|id| source.vcpu_pmu(id))
        .collect();
    render_table(&source.vm(), &vcpus, &source.host_pmus())
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
        let _ = write!(out, " {}", state_name(c.state));
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

/// The `perf stat`-like summary of `vm`, its vCPUs and the host PMUs.
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
            let kind = p.kind.as_str();
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
