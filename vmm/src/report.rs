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
    render(&source.vm(), &vcpus, &source.host_pmus(), false)
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

/// One guest counter of one vCPU, from the multiplexer's statistics or,
/// without a multiplexer, from the guest-visible state.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub vcpu: u32,
    /// `gp0`, `fixed1`, `perf_ctr0`.
    pub counter: String,
    pub event: String,
    pub host_pmu: Option<String>,
    /// `<not supported>` / `<not counted>`, or `None` when counted.
    pub status: Option<&'static str>,
    /// Scaled count (the guest-visible value without a multiplexer).
    pub value: u64,
    pub enabled_ns: u64,
    pub running_ns: u64,
    /// Not active or inactive: `error`, `degraded`, `off`, `stopped`.
    pub state: Option<&'static str>,
    pub labels: Vec<String>,
}

impl Row {
    /// running / enabled x 100 (100 when never enabled).
    pub fn running_pct(&self) -> f64 {
        pct(self.running_ns, self.enabled_ns)
    }
}

fn pct(running: u64, enabled: u64) -> f64 {
    if enabled == 0 {
        100.0
    } else {
        running as f64 * 100.0 / enabled as f64
    }
}

/// What the value column of a counter shows when it has no count.
fn status_of(c: &CounterStats) -> Option<&'static str> {
    let unavailable = c.labels.iter().any(|l| l == "unavailable");
    if unavailable || (c.state == CounterState::Degraded && c.host_pmu.is_none()) {
        Some("<not supported>")
    } else if c.state == CounterState::Error || c.running_ns == 0 {
        Some("<not counted>")
    } else {
        None
    }
}

/// The rows of every vCPU: the counters the guest enabled or that counted.
pub fn rows(vcpus: &[VcpuPmu]) -> Vec<Row> {
    let mut out = Vec::new();
    for v in vcpus {
        match (&v.stats, &v.guest) {
            (Some(stats), _) => {
                for c in &stats.counters {
                    if c.state == CounterState::Off && c.raw == 0 && c.enabled_ns == 0 {
                        continue;
                    }
                    out.push(Row {
                        vcpu: v.id,
                        counter: c.name.clone(),
                        event: c.event.clone(),
                        host_pmu: c.host_pmu.clone(),
                        status: status_of(c),
                        value: c.scaled,
                        enabled_ns: c.enabled_ns,
                        running_ns: c.running_ns,
                        state: match c.state {
                            CounterState::Active | CounterState::Inactive => None,
                            s => Some(state_name(s)),
                        },
                        labels: c
                            .labels
                            .iter()
                            .filter(|l| *l != "unavailable")
                            .cloned()
                            .collect(),
                    });
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
                    out.push(Row {
                        vcpu: v.id,
                        counter,
                        event,
                        host_pmu: None,
                        status: None,
                        value,
                        enabled_ns: 0,
                        running_ns: 0,
                        state: (!running).then_some("stopped"),
                        labels: Vec::new(),
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// The change of every row of `cur` since `prev` (matched by vCPU and
/// counter; a row new in `cur` counts from zero). Counts that went
/// backwards (the guest wrote its counter) give 0.
pub fn deltas(prev: &[Row], cur: &[Row]) -> Vec<Row> {
    cur.iter()
        .map(|r| {
            let p = prev
                .iter()
                .find(|p| p.vcpu == r.vcpu && p.counter == r.counter && p.event == r.event);
            let (v, e, run) = p.map_or((0, 0, 0), |p| (p.value, p.enabled_ns, p.running_ns));
            let running_ns = r.running_ns.saturating_sub(run);
            let enabled_ns = r.enabled_ns.saturating_sub(e);
            Row {
                value: r.value.saturating_sub(v),
                enabled_ns,
                running_ns,
                // Counted before but not in this interval.
                status: r
                    .status
                    .or((r.enabled_ns > 0 && running_ns == 0 && enabled_ns > 0)
                        .then_some("<not counted>")),
                ..r.clone()
            }
        })
        .collect()
}

/// Rows summed per event across vCPUs, as `perf stat` sums CPUs: in the
/// order events first appear; counted only where some counter counted.
pub fn aggregate(rows: &[Row]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|a| a.event == r.event) {
            Some(a) => {
                if r.status.is_none() {
                    a.value += r.value;
                    a.status = None;
                }
                a.enabled_ns += r.enabled_ns;
                a.running_ns += r.running_ns;
                if a.host_pmu != r.host_pmu {
                    a.host_pmu = None;
                }
                for l in &r.labels {
                    if !a.labels.contains(l) {
                        a.labels.push(l.clone());
                    }
                }
            }
            None => out.push(Row {
                vcpu: 0,
                counter: String::new(),
                value: if r.status.is_none() { r.value } else { 0 },
                state: None,
                ..r.clone()
            }),
        }
    }
    out
}

/// A ratio of two counted events: the value and its unit, as perf's
/// `# 1.23  insn per cycle` (`rows` are one vCPU's, or aggregated).
pub fn metric(rows: &[Row], r: &Row) -> Option<(f64, &'static str)> {
    let count = |event: &str| {
        rows.iter()
            .find(|x| x.event == event && x.vcpu == r.vcpu && x.status.is_none())
            .map(|x| x.value)
            .filter(|v| *v > 0)
    };
    if r.status.is_some() {
        return None;
    }
    let (base, scale, unit) = match r.event.as_str() {
        "instructions" => ("cycles", 1.0, "insn per cycle"),
        "branch-misses" => ("branches", 100.0, "% of all branches"),
        "cache-misses" => ("cache-references", 100.0, "% of all cache refs"),
        _ => return None,
    };
    let b = count(base)?;
    Some((r.value as f64 * scale / b as f64, unit))
}

/// `#  1.23  insn per cycle`, or nothing.
fn metric_cell(rows: &[Row], r: &Row) -> String {
    match metric(rows, r) {
        Some((v, unit)) if unit.starts_with('%') => format!("#  {v:>6.2}{unit}"),
        Some((v, unit)) => format!("#  {v:>6.2}  {unit}"),
        None => String::new(),
    }
}

/// One line of the table: `per_vcpu` shows the vCPU, counter and host PMU;
/// the running percentage ends the line when the counter did not run all
/// the time, as in `perf stat`.
pub fn line(rows: &[Row], r: &Row, per_vcpu: bool) -> String {
    let mut out = String::new();
    let value = r.status.map_or_else(|| thousands(r.value), String::from);
    let _ = write!(out, "{value:>20}      {:<22}", r.event);
    if per_vcpu {
        let _ = write!(
            out,
            " vcpu{:<3} {:<9} {:<10}",
            r.vcpu,
            r.counter,
            r.host_pmu.as_deref().unwrap_or("-")
        );
    }
    let m = metric_cell(rows, r);
    if !m.is_empty() {
        let _ = write!(out, " {m:<28}");
    }
    if let Some(st) = r.state {
        let _ = write!(out, " {st}");
    }
    if !r.labels.is_empty() {
        let _ = write!(out, " [{}]", r.labels.join(", "));
    }
    let p = r.running_pct();
    if r.status.is_none() && r.enabled_ns > 0 && p < 99.995 {
        let _ = write!(out, "  ({p:.2}%)");
    }
    out.trim_end().to_string()
}

/// One CSV record as `perf stat -x SEP`: [vcpuN, counter,] value, unit
/// (empty), event, running ns, running %, metric value, metric unit.
pub fn csv_line(rows: &[Row], r: &Row, per_vcpu: bool, sep: &str) -> String {
    let mut f: Vec<String> = Vec::new();
    if per_vcpu {
        f.push(format!("vcpu{}", r.vcpu));
        f.push(r.counter.clone());
    }
    f.push(r.status.map_or_else(|| r.value.to_string(), String::from));
    f.push(String::new());
    f.push(r.event.clone());
    f.push(r.running_ns.to_string());
    f.push(format!("{:.2}", r.running_pct()));
    match metric(rows, r) {
        Some((v, unit)) => {
            f.push(format!("{v:.2}"));
            f.push(unit.trim_start_matches('%').trim().to_string());
        }
        None => {
            f.push(String::new());
            f.push(String::new());
        }
    }
    f.join(sep)
}

/// The lines of `rows`, aggregated per event unless `per_vcpu`.
pub fn lines(rows: &[Row], per_vcpu: bool, csv: Option<&str>) -> Vec<String> {
    let shown = if per_vcpu {
        rows.to_vec()
    } else {
        aggregate(rows)
    };
    shown
        .iter()
        .map(|r| match csv {
            Some(sep) => csv_line(&shown, r, per_vcpu, sep),
            None => line(&shown, r, per_vcpu),
        })
        .collect()
}

/// `vmm stats --watch`, as kvm_stat: every event's total and its rate per
/// second since the last refresh (`since`: seconds and the rows then;
/// `-` on the first refresh).
pub fn render_rates(
    vm: &VmInfo,
    cur: &[Row],
    since: Option<(f64, &[Row])>,
    per_vcpu: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        " VM: {} vCPU{}, uptime {:.1} s ({})\n",
        vm.config.vcpus,
        if vm.config.vcpus == 1 { "" } else { "s" },
        vm.uptime_ms as f64 / 1000.0,
        vm.state
    );
    let group = |rows: &[Row]| {
        if per_vcpu {
            rows.to_vec()
        } else {
            aggregate(rows)
        }
    };
    let totals = group(cur);
    let rates: Option<Vec<Row>> = since.map(|(_, prev)| group(&deltas(prev, cur)));
    let who = if per_vcpu { " vCPU    counter" } else { "" };
    let _ = writeln!(
        out,
        " {:<22}{who} {:>20} {:>18}",
        "Event", "Total", "Current/s"
    );
    for (i, t) in totals.iter().enumerate() {
        let total = t.status.map_or_else(|| thousands(t.value), String::from);
        let rate = match (&rates, since) {
            (Some(r), Some((secs, _))) if secs > 0.0 => r
                .get(i)
                .filter(|d| d.status.is_none())
                .map_or_else(|| "-".into(), |d| thousands((d.value as f64 / secs) as u64)),
            _ => "-".into(),
        };
        let who = if per_vcpu {
            format!(" vcpu{:<3} {:<7}", t.vcpu, t.counter)
        } else {
            String::new()
        };
        let _ = writeln!(out, " {:<22}{who} {total:>20} {rate:>18}", t.event);
    }
    if totals.is_empty() {
        out.push_str("     (no guest counter enabled)\n");
    }
    out
}

/// The per-vCPU table (`vmm stats -A`): one line per guest counter.
pub fn render_table(vm: &VmInfo, vcpus: &[VcpuPmu], host_pmus: &[HostPmuInfo]) -> String {
    render(vm, vcpus, host_pmus, true)
}

/// The `perf stat`-like summary of `vm`, its vCPUs and the host PMUs:
/// counts summed per event across vCPUs, or one line per guest counter
/// with `per_vcpu`.
pub fn render(vm: &VmInfo, vcpus: &[VcpuPmu], host_pmus: &[HostPmuInfo], per_vcpu: bool) -> String {
    let mut out = String::new();
    let c = &vm.config;
    let _ = writeln!(
        out,
        "\n Performance counter stats for VM ({} vCPU{}, vPMU {}, host {}, {}, {}):\n",
        c.vcpus,
        if c.vcpus == 1 { "" } else { "s" },
        c.vpmu.summary(),
        c.host_pmu,
        c.scaling,
        c.grouping
    );
    let all = rows(vcpus);
    if all.is_empty() {
        out.push_str("     (no guest counter enabled)\n");
    }
    for l in lines(&all, per_vcpu, None) {
        out.push_str(&l);
        out.push('\n');
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

    fn row(vcpu: u32, counter: &str, event: &str, value: u64, run: u64, en: u64) -> Row {
        Row {
            vcpu,
            counter: counter.into(),
            event: event.into(),
            host_pmu: Some("cpu".into()),
            status: None,
            value,
            enabled_ns: en,
            running_ns: run,
            state: None,
            labels: Vec::new(),
        }
    }

    fn sample() -> Vec<Row> {
        vec![
            row(0, "gp0", "cycles", 1000, 50, 100),
            row(0, "gp1", "instructions", 500, 100, 100),
            row(1, "gp0", "cycles", 3000, 100, 100),
            row(1, "gp1", "instructions", 3500, 100, 100),
            Row {
                status: Some("<not supported>"),
                ..row(1, "gp2", "branch-misses", 7, 0, 100)
            },
        ]
    }

    #[test]
    fn aggregation_sums_per_event_across_vcpus() {
        let a = aggregate(&sample());
        let names: Vec<&str> = a.iter().map(|r| r.event.as_str()).collect();
        assert_eq!(names, ["cycles", "instructions", "branch-misses"]);
        assert_eq!(
            (a[0].value, a[0].running_ns, a[0].enabled_ns),
            (4000, 150, 200)
        );
        assert_eq!(a[1].value, 4000);
        // Not counted anywhere: stays not counted, its value is not added.
        assert_eq!((a[2].status, a[2].value), (Some("<not supported>"), 0));
        // IPC over the sums: 4000 / 4000.
        assert_eq!(metric(&a, &a[1]), Some((1.0, "insn per cycle")));
        assert_eq!(metric(&a, &a[0]), None);
        let l = line(&a, &a[0], false);
        assert!(l.trim_start().starts_with("4,000      cycles"), "{l}");
        // The running percentage ends the line, as in perf stat.
        assert!(l.ends_with("(75.00%)"), "{l}");
        let l = line(&a, &a[1], false);
        assert!(l.contains("#    1.00  insn per cycle"), "{l}");
        assert!(!l.contains('%'), "ran all the time: {l}");
    }

    #[test]
    fn per_vcpu_lines_keep_each_counter_and_its_own_ratio() {
        let rows = sample();
        let l = lines(&rows, true, None);
        assert_eq!(l.len(), 5);
        assert!(l[0].contains("vcpu0") && l[0].contains("gp0") && l[0].ends_with("(50.00%)"));
        // vCPU 0: 500 instructions / 1000 cycles.
        assert!(l[1].contains("#    0.50  insn per cycle"), "{}", l[1]);
        assert!(l[3].contains("#    1.17  insn per cycle"), "{}", l[3]);
        assert!(l[4].contains("<not supported>"));
    }

    #[test]
    fn csv_fields_as_perf_stat_x() {
        let rows = sample();
        let l = lines(&rows, false, Some(","));
        assert_eq!(l[0], "4000,,cycles,150,75.00,,");
        assert_eq!(l[1], "4000,,instructions,200,100.00,1.00,insn per cycle");
        assert_eq!(l[2], "<not supported>,,branch-misses,0,0.00,,");
        let l = lines(&rows, true, Some(";"));
        assert_eq!(
            l[1],
            "vcpu0;gp1;500;;instructions;100;100.00;0.50;insn per cycle"
        );
    }

    #[test]
    fn deltas_are_per_counter_since_the_last_sample() {
        let prev = sample();
        let mut cur = sample();
        cur[0].value += 250;
        cur[0].running_ns += 10;
        cur[0].enabled_ns += 20;
        cur[2].value = 10; // went backwards: the guest wrote it
        cur.push(row(1, "gp3", "branches", 40, 5, 5));
        let d = deltas(&prev, &cur);
        assert_eq!(
            (d[0].value, d[0].running_ns, d[0].enabled_ns),
            (250, 10, 20)
        );
        assert_eq!(d[0].running_pct(), 50.0);
        assert_eq!(d[1].value, 0);
        assert_eq!(d[2].value, 0);
        assert_eq!(d[5].value, 40, "a new counter counts from zero");
    }

    #[test]
    fn watch_shows_totals_and_rates_per_second() {
        let vm: VmInfo = serde_json::from_value(serde_json::json!({
            "config": {"vcpus": 2, "memory_mib": 256, "vpmu": {"enabled": true,
                "cpu_vendor": "intel", "arch": "intel", "version": 4, "gp_counters": 8,
                "fixed_counters": 3, "full_width_writes": true},
                "host_pmu": "auto", "scaling": "scaled", "grouping": "per-counter"},
            "state": "running", "uptime_ms": 1500
        }))
        .unwrap();
        let prev = sample();
        let mut cur = sample();
        cur[0].value += 1000;
        cur[2].value += 3000;
        let first = render_rates(&vm, &prev, None, false);
        assert!(first.contains("Current/s"), "{first}");
        let cycles = |t: &str| {
            t.lines()
                .find(|l| l.trim_start().starts_with("cycles"))
                .unwrap()
                .to_string()
        };
        assert!(cycles(&first).ends_with(" -"), "{first}");
        // 4000 more cycles (8000 in all) over a quarter second.
        let t = render_rates(&vm, &cur, Some((0.25, &prev)), false);
        let l = cycles(&t);
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f, ["cycles", "8,000", "16,000"], "{t}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
