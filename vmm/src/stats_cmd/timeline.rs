//! The SVG timeline of recent rotations (plotters, SVG backend): one lane
//! per host PMU; inside a lane one row per (vCPU, guest counter) seen in
//! the PMU's history, with a bar wherever that guest counter held a counter
//! of the PMU. x is vCPU run time (each vCPU runs on its own clock).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use plotters::prelude::*;

use crate::api::model::Timeline;
use vpmu::config::PmuArch;
use vpmu::guest::counter_name;
use vpmu::source::CounterIndex;

const WIDTH: u32 = 1200;
const ROW_PX: u32 = 18;
const LANE_PAD_ROWS: f64 = 1.5;

fn palette(c: CounterIndex) -> RGBColor {
    let i = match c {
        CounterIndex::Gp(i) => usize::from(i),
        CounterIndex::Fixed(i) => 16 + usize::from(i),
    };
    let p = Palette99::pick(i).to_rgba();
    RGBColor(p.0, p.1, p.2)
}

struct Lane<'a> {
    t: &'a Timeline,
    rows: Vec<(u32, CounterIndex)>,
    /// Top of the lane, in row units from the top of the plot.
    top: f64,
    height: f64,
}

/// Why the SVG could not be drawn or written (plotters' error over the SVG
/// backend's I/O).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TimelineError(#[from] DrawingAreaErrorKind<std::io::Error>);

/// Share of the plot's width left of the first point for the row labels,
/// so they never overlap a bar.
const LABEL_GUTTER: f64 = 0.12;

/// Writes the timeline of `timelines` (one lane each) to `path`; guest
/// counters are named as the `arch` guest PMU names them (`gp0`, `fixed1`,
/// `perf_ctr0`), as in the API, tables and metrics.
pub fn render_svg(path: &Path, timelines: &[Timeline], arch: PmuArch) -> Result<(), TimelineError> {
    // Per vCPU: last time seen anywhere, to close the last interval.
    let mut vcpu_end: BTreeMap<u32, u64> = BTreeMap::new();
    let (mut t_min, mut t_max) = (u64::MAX, 0u64);
    for e in timelines.iter().flat_map(|t| &t.entries) {
        let end = vcpu_end.entry(e.vcpu).or_insert(0);
        *end = (*end).max(e.run_time_ns);
        t_min = t_min.min(e.run_time_ns);
        t_max = t_max.max(e.run_time_ns);
    }
    if t_min > t_max {
        (t_min, t_max) = (0, 1_000_000);
    }
    let max_interval_ns = timelines
        .iter()
        .map(|t| t.mux_interval_ms.saturating_mul(1_000_000))
        .max()
        .unwrap_or(1_000_000)
        .max(1);
    t_max = t_max.saturating_add(max_interval_ns);

    let mut lanes = Vec::new();
    let mut top = 0.0;
    for t in timelines {
        let rows: Vec<(u32, CounterIndex)> = t
            .entries
            .iter()
            .flat_map(|e| e.active.iter().map(move |c| (e.vcpu, *c)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let height = rows.len().max(1) as f64 + LANE_PAD_ROWS;
        lanes.push(Lane {
            t,
            rows,
            top,
            height,
        });
        top += height;
    }
    let total_rows = top.max(1.0);
    let height_px = 120 + (total_rows * f64::from(ROW_PX)) as u32;

    let root = SVGBackend::new(path, (WIDTH, height_px)).into_drawing_area();
    root.fill(&WHITE)?;
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "vPMU multiplexer: guest counters on host counters",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d(
            ms(t_min) - (ms(t_max) - ms(t_min)) * LABEL_GUTTER..ms(t_max),
            total_rows..0.0,
        )?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("vCPU run time (ms)")
        .draw()?;

    // Labels in the gutter, bars from the first point on.
    let x0 = ms(t_min) - (ms(t_max) - ms(t_min)) * LABEL_GUTTER;
    for (li, lane) in lanes.iter().enumerate() {
        let shade = if li % 2 == 0 {
            RGBColor(245, 245, 250)
        } else {
            RGBColor(235, 240, 235)
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, lane.top), (ms(t_max), lane.top + lane.height)],
            shade.filled(),
        )))?;
        let title = format!(
            "lane: {} ({} ms, {} points)",
            lane.t.host_pmu,
            lane.t.mux_interval_ms,
            lane.t.entries.len()
        );
        chart.draw_series(std::iter::once(Text::new(
            title,
            (x0, lane.top + 0.2),
            ("sans-serif", 13).into_font().color(&BLACK),
        )))?;
        if lane.t.entries.is_empty() {
            continue;
        }
        for (ri, (vcpu, counter)) in lane.rows.iter().enumerate() {
            let y = lane.top + LANE_PAD_ROWS + ri as f64;
            let mine: Vec<_> = lane.t.entries.iter().filter(|x| x.vcpu == *vcpu).collect();
            let end_of_vcpu = vcpu_end.get(vcpu).copied().unwrap_or(t_max);
            let mut bars = Vec::new();
            for (k, entry) in mine.iter().enumerate() {
                if !entry.active.contains(counter) {
                    continue;
                }
                let mut end = mine
                    .get(k + 1)
                    .map(|n| n.run_time_ns)
                    .unwrap_or(end_of_vcpu);
                if end <= entry.run_time_ns {
                    end = entry
                        .run_time_ns
                        .saturating_add(lane.t.mux_interval_ms.max(1) * 1_000_000);
                }
                bars.push(Rectangle::new(
                    [(ms(entry.run_time_ns), y + 0.1), (ms(end), y + 0.9)],
                    palette(*counter).filled(),
                ));
            }
            chart.draw_series(bars)?;
            chart.draw_series(std::iter::once(Text::new(
                format!("vcpu{vcpu} {}", counter_name(arch, *counter)),
                (x0, y + 0.15),
                ("sans-serif", 11).into_font().color(&BLACK),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}
