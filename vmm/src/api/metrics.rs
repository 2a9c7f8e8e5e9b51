//! `GET /metrics`: the statistics in the OpenMetrics / Prometheus text
//! format (prometheus-client), built from one read of the source per scrape.
//!
//! Conventions: one prefix (`vmm_`), base units (`_seconds`), counters end
//! in `_total`, no series without labels written as `{}`, no series for
//! guest counters without an event. Counter labels: `vcpu`, `counter` (the
//! guest counter's name, `gp0`, `fixed1`, `perf_ctr0`, as in JSON and
//! tables), `event`, `host_pmu` (`none` when no host PMU counts it). The
//! counter state is a state set: every state of every counter, 1 for the
//! current one and 0 for the others (typed gauge, as Prometheus has no
//! state-set type), so series do not appear and vanish at rotations.
//! Exit-handling times are a histogram.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use vpmu::stats::CounterState;

use super::StatsSource;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn seconds_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, CounterF> {
    let f = Family::<Labels, CounterF>::default();
    reg.register_with_unit(name, help, Unit::Seconds, f.clone());
    f
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, GaugeF> {
    let f = Family::<Labels, GaugeF>::default();
    reg.register(name, help, f.clone());
    f
}

/// A histogram given as its cumulative buckets (the exit recorders keep
/// their own finer histogram; this exports it).
#[derive(Debug)]
struct BucketHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, cumulative count), ascending; +Inf is added.
    buckets: Vec<(f64, u64)>,
}

impl TypedMetric for BucketHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for BucketHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // prometheus-client takes per-bucket counts and accumulates them.
        let mut prev = 0;
        let mut per_bucket: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .map(|&(le, cum)| {
                let n = cum.saturating_sub(prev);
                prev = cum;
                (le, n)
            })
            .collect();
        per_bucket.push((f64::INFINITY, self.count.saturating_sub(prev)));
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &per_bucket, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
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

/// Every state a guest counter can be in (the state set's states).
const STATES: [CounterState; 5] = [
    CounterState::Active,
    CounterState::Inactive,
    CounterState::Error,
    CounterState::Degraded,
    CounterState::Off,
];

/// The exposition text.
pub fn render(source: &dyn StatsSource) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("vmm");
    let vm = source.vm();
    let uptime = GaugeF::default();
    uptime.set(vm.uptime_ms as f64 / 1000.0);
    reg.register_with_unit("uptime", "Time since the VM started", Unit::Seconds, uptime);
    let vcpus_g = Gauge::<i64>::default();
    vcpus_g.set(i64::from(vm.config.vcpus));
    reg.register("vcpus", "vCPUs of the VM", vcpus_g);

    let raw = counter_family(
        &mut reg,
        "counter_raw",
        "Events the host counted for a guest counter (lifetime)",
    );
    let scaled = counter_family(
        &mut reg,
        "counter_scaled",
        "Raw count extrapolated to the enabled time (lifetime)",
    );
    let enabled = seconds_family(
        &mut reg,
        "counter_enabled",
        "Time the guest counter was enabled, in vCPU run time",
    );
    let running = seconds_family(
        &mut reg,
        "counter_running",
        "Time the guest counter held a host counter, in vCPU run time",
    );
    let ratio = gauge_family(
        &mut reg,
        "counter_running_ratio",
        "running / enabled (1 when never enabled)",
    );
    let state = gauge_family(
        &mut reg,
        "counter_state",
        "State set of a guest counter: 1 for its current state, 0 for the others",
    );
    let guest_value = gauge_family(
        &mut reg,
        "guest_counter_value",
        "Guest-visible value of a programmed guest counter (48 bits), as last published",
    );
    for id in source.vcpu_ids() {
        let Some(v) = source.vcpu_pmu(id) else {
            continue;
        };
        let vcpu = id.to_string();
        if let Some(stats) = &v.stats {
            for c in stats.counters.iter().filter(|c| !c.event.is_empty()) {
                let pmu = c.host_pmu.as_deref().unwrap_or("none");
                let labels = l(&[
                    ("vcpu", &vcpu),
                    ("counter", &c.name),
                    ("event", &c.event),
                    ("host_pmu", pmu),
                ]);
                raw.get_or_create(&labels).inc_by(c.raw);
                scaled.get_or_create(&labels).inc_by(c.scaled);
                enabled
                    .get_or_create(&labels)
                    .inc_by(c.enabled_ns as f64 / 1e9);
                running
                    .get_or_create(&labels)
                    .inc_by(c.running_ns as f64 / 1e9);
                ratio.get_or_create(&labels).set(c.running_pct / 100.0);
                for s in STATES {
                    let mut sl = labels.clone();
                    sl.push(("state".into(), state_name(s).into()));
                    state
                        .get_or_create(&sl)
                        .set(if s == c.state { 1.0 } else { 0.0 });
                }
            }
        }
        if let Some(g) = &v.guest {
            let gp =
                g.gp.iter()
                    .filter_map(|c| Some((&c.name, c.event_name.as_deref()?, c.value)));
            let fixed = g
                .fixed
                .iter()
                .filter(|c| c.enabled)
                .map(|c| (&c.name, c.event_name.as_str(), c.value));
            for (name, event, value) in gp.chain(fixed) {
                guest_value
                    .get_or_create(&l(&[("vcpu", &vcpu), ("counter", name), ("event", event)]))
                    .set(value as f64);
            }
        }
    }

    let interval = gauge_family(
        &mut reg,
        "host_pmu_mux_interval_seconds",
        "Rotation interval of a host PMU",
    );
    let rotations = counter_family(
        &mut reg,
        "host_pmu_rotations",
        "Rotations of a host PMU by all vCPU contexts",
    );
    let active = gauge_family(
        &mut reg,
        "host_pmu_groups_active",
        "Groups holding counters of a host PMU",
    );
    let waiting = gauge_family(
        &mut reg,
        "host_pmu_groups_waiting",
        "Flexible groups waiting for counters of a host PMU",
    );
    for p in source.host_pmus() {
        let labels = l(&[("host_pmu", &p.name)]);
        interval
            .get_or_create(&labels)
            .set(p.mux_interval_ms as f64 / 1000.0);
        rotations.get_or_create(&labels).inc_by(p.rotations);
        active.get_or_create(&labels).set(p.groups_active as f64);
        waiting.get_or_create(&labels).set(p.groups_waiting as f64);
    }

    let exits = source.exits();
    let msr = counter_family(
        &mut reg,
        "msr_exits",
        "Trapped PMU MSR accesses by MSR and direction",
    );
    for m in &exits.msrs {
        for (dir, n) in [("read", m.rdmsr), ("write", m.wrmsr)] {
            msr.get_or_create(&l(&[("msr", &m.name), ("direction", dir)]))
                .inc_by(n);
        }
    }
    let pmis = Counter::<u64>::default();
    pmis.inc_by(exits.pmis_injected);
    reg.register("pmis_injected", "PMIs delivered to guests", pmis);
    let masked = Counter::<u64>::default();
    masked.inc_by(exits.pmis_masked);
    reg.register(
        "pmis_masked",
        "PMIs dropped (LVTPC masked or unusable)",
        masked,
    );
    let handling = BucketHistogram {
        sum: exits.handling_sum_ns as f64 / 1e9,
        count: exits.handling_ns.count,
        buckets: exits
            .handling_buckets
            .iter()
            .map(|b| (b.le_ns as f64 / 1e9, b.count))
            .collect(),
    };
    reg.register_with_unit(
        "pmu_exit_handling",
        "Handling time of PMU exits, from the exit to the answer",
        Unit::Seconds,
        handling,
    );

    let mut out = String::new();
    encode(&mut out, &reg)?;
    // prometheus-client 0.23 writes the last bucket as `le="inf"`;
    // OpenMetrics (and its parsers) want `+Inf`.
    Ok(out.replace("_bucket{le=\"inf\"}", "_bucket{le=\"+Inf\"}"))
}
