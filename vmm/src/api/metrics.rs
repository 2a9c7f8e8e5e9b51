//! `GET /metrics`: the statistics in the Prometheus / OpenMetrics text
//! format (prometheus-client), built from one read of the source per scrape.
//! Counter labels: `vcpu`, `counter`, `event`, `host_pmu`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use vpmu::source::CounterIndex;
use vpmu::stats::CounterState;

use super::StatsSource;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, GaugeF> {
    let f = Family::<Labels, GaugeF>::default();
    reg.register(name, help, f.clone());
    f
}

/// `gp0`, `fixed1`: the name of a guest counter in labels and tables.
pub fn counter_name(c: CounterIndex) -> String {
    match c {
        CounterIndex::Gp(i) => format!("gp{i}"),
        CounterIndex::Fixed(i) => format!("fixed{i}"),
    }
}

pub fn state_name(s: CounterState) -> &'static str {
    match s {
        CounterState::Active => "active",
        CounterState::Inactive => "inactive",
        CounterState::Error => "error",
        CounterState::Degraded => "degraded",
        CounterState::Off => "off",
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The exposition text.
pub fn render(source: &dyn StatsSource) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let vm = source.vm();
    let uptime = gauge_family(&mut reg, "vmm_uptime_seconds", "Time since the VM started");
    uptime
        .get_or_create(&Vec::new())
        .set(vm.uptime_ms as f64 / 1000.0);
    let vcpus_g = gauge_family(&mut reg, "vmm_vcpus", "vCPUs of the VM");
    vcpus_g
        .get_or_create(&Vec::new())
        .set(f64::from(vm.config.vcpus));

    let raw = counter_family(
        &mut reg,
        "vpmu_counter_raw",
        "Events the host counted for a guest counter (lifetime)",
    );
    let scaled = counter_family(
        &mut reg,
        "vpmu_counter_scaled",
        "Raw count extrapolated to the enabled time (lifetime)",
    );
    let enabled = counter_family(
        &mut reg,
        "vpmu_counter_enabled_ns",
        "Time the guest counter was enabled, ns of vCPU run time",
    );
    let running = counter_family(
        &mut reg,
        "vpmu_counter_running_ns",
        "Time the guest counter held a host counter, ns of vCPU run time",
    );
    let ratio = gauge_family(
        &mut reg,
        "vpmu_counter_running_ratio",
        "running / enabled (1 when never enabled)",
    );
    let state = gauge_family(
        &mut reg,
        "vpmu_counter_state",
        "1 for the current state of a guest counter",
    );
    let guest_value = gauge_family(
        &mut reg,
        "vpmu_guest_counter_value",
        "Guest-visible counter value (48 bits), as last published",
    );
    for id in source.vcpu_ids() {
        let Some(v) = source.vcpu_pmu(id) else {
            continue;
        };
        let vcpu = id.to_string();
        if let Some(stats) = &v.stats {
            for c in &stats.counters {
                let counter = c.name.clone();
                let pmu = c.host_pmu.clone().unwrap_or_default();
                let labels = l(&[
                    ("vcpu", &vcpu),
                    ("counter", &counter),
                    ("event", &c.event),
                    ("host_pmu", &pmu),
                ]);
                raw.get_or_create(&labels).inc_by(c.raw);
                scaled.get_or_create(&labels).inc_by(c.scaled);
                enabled.get_or_create(&labels).inc_by(c.enabled_ns);
                running.get_or_create(&labels).inc_by(c.running_ns);
                ratio.get_or_create(&labels).set(c.running_pct / 100.0);
                let mut sl = labels.clone();
                sl.push(("state".into(), state_name(c.state).into()));
                state.get_or_create(&sl).set(1.0);
            }
        }
        if let Some(g) = &v.guest {
            for c in &g.gp {
                let event = c.event_name.clone().unwrap_or_default();
                guest_value
                    .get_or_create(&l(&[
                        ("vcpu", &vcpu),
                        ("counter", &c.name),
                        ("event", &event),
                    ]))
                    .set(c.value as f64);
            }
            for c in &g.fixed {
                guest_value
                    .get_or_create(&l(&[
                        ("vcpu", &vcpu),
                        ("counter", &c.name),
                        ("event", &c.event_name),
                    ]))
                    .set(c.value as f64);
            }
        }
    }

    let interval = gauge_family(
        &mut reg,
        "vpmu_host_pmu_mux_interval_ms",
        "Rotation interval of a host PMU",
    );
    let rotations = counter_family(
        &mut reg,
        "vpmu_host_pmu_rotations",
        "Rotations of a host PMU by all vCPU contexts",
    );
    let active = gauge_family(
        &mut reg,
        "vpmu_host_pmu_groups_active",
        "Groups holding counters of a host PMU",
    );
    let waiting = gauge_family(
        &mut reg,
        "vpmu_host_pmu_groups_waiting",
        "Flexible groups waiting for counters of a host PMU",
    );
    for p in source.host_pmus() {
        let labels = l(&[("host_pmu", &p.name)]);
        interval
            .get_or_create(&labels)
            .set(p.mux_interval_ms as f64);
        rotations.get_or_create(&labels).inc_by(p.rotations);
        active.get_or_create(&labels).set(p.groups_active as f64);
        waiting.get_or_create(&labels).set(p.groups_waiting as f64);
    }

    let exits = source.exits();
    let msr = counter_family(
        &mut reg,
        "vmm_msr_exits",
        "Trapped PMU MSR accesses by MSR and direction",
    );
    for m in &exits.msrs {
        for (dir, n) in [("read", m.rdmsr), ("write", m.wrmsr)] {
            if n > 0 {
                msr.get_or_create(&l(&[("msr", &m.name), ("direction", dir)]))
                    .inc_by(n);
            }
        }
    }
    let pmis = counter_family(&mut reg, "vmm_pmis_injected", "PMIs delivered to guests");
    pmis.get_or_create(&Vec::new()).inc_by(exits.pmis_injected);
    let masked = counter_family(
        &mut reg,
        "vmm_pmis_masked",
        "PMIs dropped (LVTPC masked or unusable)",
    );
    masked.get_or_create(&Vec::new()).inc_by(exits.pmis_masked);
    let handling = gauge_family(
        &mut reg,
        "vmm_pmu_exit_handling_ns",
        "Handling time of PMU exits, ns",
    );
    let d = exits.handling_ns;
    for (q, v) in [("0.5", d.p50), ("0.99", d.p99), ("1", d.max)] {
        handling.get_or_create(&l(&[("quantile", q)])).set(v as f64);
    }

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}
