//! SVG plots of the records, drawn with plotters' SVG backend. It writes
//! text as SVG `<text>` elements and, built without plotters' font
//! features, needs no system fonts (the viewer picks the font).
//!
//! [`PLOTS`] draws the configs sweep; [`draw_strategies`] draws the
//! strategy sweep: per workload, TLBIs, IPIs and time per operation against
//! the number of CPUs the address space runs on, one line per strategy.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::config::STRATEGIES;
use super::record::Record;
use super::sweep::{Sweep, WORKLOADS};

/// What a plot's y axis shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Median time per operation (log scale), with min–max bars.
    NsPerOp,
    /// TLBI instructions per operation, all kinds together.
    TlbiPerOp,
    /// Guest instructions per operation (log scale; `Record::insns_scope`);
    /// records without instruction counts are left out.
    InsnsPerOp,
    /// Shootdown IPIs sent per operation; records of a kernel that does
    /// not report them are left out.
    IpisPerOp,
}

impl Metric {
    /// A record's value: (value, min, max), or `None` to leave it out.
    fn of(self, r: &Record) -> Option<(f64, f64, f64)> {
        match self {
            Metric::NsPerOp => Some((r.ns_per_op.median, r.ns_per_op.min, r.ns_per_op.max)),
            Metric::TlbiPerOp => Some((r.tlbi_ops_per_op, r.tlbi_ops_per_op, r.tlbi_ops_per_op)),
            Metric::InsnsPerOp => r.insns_per_op.map(|n| (n, n, n)),
            Metric::IpisPerOp => r.ipis_counted.then_some((r.ipis_per_op, r.ipis_per_op, r.ipis_per_op)),
        }
    }

    /// A linear y axis from 0 (counts), or a log one (times, instructions).
    fn linear(self) -> bool {
        matches!(self, Metric::TlbiPerOp | Metric::IpisPerOp)
    }
}

/// One plot: which records, which x, which series.
pub struct PlotSpec {
    pub file: &'static str,
    pub title: &'static str,
    pub workload: &'static str,
    pub x_label: &'static str,
    pub metric: Metric,
    /// The x value of a record, or `None` to leave it out.
    pub x: fn(&Record) -> Option<f64>,
    /// The series (line) a record belongs to, or `None` to leave it out.
    pub series: fn(&Record) -> Option<String>,
    pub log_x: bool,
}

fn pages(r: &Record) -> Option<f64> {
    r.param("pages").map(|p| p as f64)
}

/// Range-size sweeps: one line per policy configuration; a second thread
/// spinning gets its own line.
fn by_config(r: &Record) -> Option<String> {
    let threads = r.param("threads").unwrap_or(1);
    Some(if threads > 1 { format!("{} +spinning thread", r.config) } else { r.config.clone() })
}

fn by_elision(r: &Record) -> Option<String> {
    let elide = match r.exit_elide {
        Some(true) => "elision on",
        Some(false) => "elision off",
        None => "kernel default",
    };
    Some(format!("{} {}cpu {}/{}: {elide}", r.cpu_model, r.cpus, r.strategy, r.policy))
}

fn asid_bits(r: &Record) -> Option<f64> {
    r.asid_bits.map(f64::from)
}

fn by_asid_mode(r: &Record) -> Option<String> {
    Some(match r.param("create") {
        Some(1) => format!("{}: create and exit", r.strategy),
        _ => format!("{}: switch among {} processes", r.strategy, r.param("processes").unwrap_or(0)),
    })
}

/// Every plot a run draws (those with data).
pub const PLOTS: &[PlotSpec] = &[
    PlotSpec {
        file: "mmap_time.svg",
        title: "mmap + touch + munmap: time per operation",
        workload: "mmap",
        x_label: "pages",
        metric: Metric::NsPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "mmap_tlbi.svg",
        title: "mmap + touch + munmap: TLBI instructions per operation",
        workload: "mmap",
        x_label: "pages",
        metric: Metric::TlbiPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "mmap_insns.svg",
        title: "mmap + touch + munmap: guest instructions per operation",
        workload: "mmap",
        x_label: "pages",
        metric: Metric::InsnsPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "mprotect_time.svg",
        title: "mprotect read-only and back + touch: time per operation",
        workload: "mprotect",
        x_label: "pages",
        metric: Metric::NsPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "mprotect_tlbi.svg",
        title: "mprotect read-only and back + touch: TLBI instructions per operation",
        workload: "mprotect",
        x_label: "pages",
        metric: Metric::TlbiPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "mprotect_insns.svg",
        title: "mprotect read-only and back + touch: guest instructions per operation",
        workload: "mprotect",
        x_label: "pages",
        metric: Metric::InsnsPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "exit_elision.svg",
        title: "fork + touch + exit + wait: time per operation, exit flush elided or not",
        workload: "exit",
        x_label: "pages touched by the child",
        metric: Metric::NsPerOp,
        x: pages,
        series: by_elision,
        log_x: true,
    },
    PlotSpec {
        file: "exit_insns.svg",
        title: "fork + touch + exit + wait: guest instructions per operation, exit flush elided or not",
        workload: "exit",
        x_label: "pages touched by the child",
        metric: Metric::InsnsPerOp,
        x: pages,
        series: by_elision,
        log_x: true,
    },
    PlotSpec {
        file: "reclaim_time.svg",
        title: "reclaim (swap-in + PAGEOUT): time per page, batched or not",
        workload: "reclaim",
        x_label: "pages per PAGEOUT",
        metric: Metric::NsPerOp,
        x: pages,
        series: by_config,
        log_x: true,
    },
    PlotSpec {
        file: "asid_pressure.svg",
        title: "ASID pressure: time per operation against the ASID width",
        workload: "asid-pressure",
        x_label: "asid_bits",
        metric: Metric::NsPerOp,
        x: asid_bits,
        series: by_asid_mode,
        log_x: false,
    },
];

/// One point of a series: x, the value, and its min–max.
type Sample = (f64, f64, f64, f64);

/// Named series.
type Series = Vec<(String, Vec<Sample>)>;

/// The series of `spec` in `records` (of the configs sweep), each sorted
/// by x.
pub fn series(spec: &PlotSpec, records: &[Record]) -> Vec<(String, Vec<Sample>)> {
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.workload == spec.workload && r.sweep == Sweep::Configs.name()) {
        let (Some(x), Some(name)) = ((spec.x)(r), (spec.series)(r)) else {
            continue;
        };
        let Some((v, lo, hi)) = spec.metric.of(r) else {
            continue;
        };
        out.entry(name).or_default().push((x, v, lo, hi));
    }
    let mut v: Vec<(String, Vec<Sample>)> = out.into_iter().collect();
    for (_, pts) in &mut v {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    v
}

/// The panels of a strategy plot, top to bottom.
pub const STRATEGY_PANELS: [(Metric, &str); 3] = [
    (Metric::TlbiPerOp, "TLBI instructions per operation"),
    (Metric::IpisPerOp, "shootdown IPIs sent per operation"),
    (Metric::NsPerOp, "time per operation"),
];

/// The file of `workload`'s strategy plot.
pub fn strategy_file(workload: &str) -> String {
    format!("strategies_{workload}.svg")
}

/// `workload`'s strategy-sweep records as series of `metric` against the
/// CPUs the address space ran on, one per strategy (in [`STRATEGIES`]
/// order), each sorted by x.
pub fn strategy_series(workload: &str, metric: Metric, records: &[Record]) -> Vec<(String, Vec<Sample>)> {
    let mut out: Vec<(String, Vec<Sample>)> = Vec::new();
    let rank = |name: &str| STRATEGIES.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
    for r in records.iter().filter(|r| r.workload == workload && r.sweep == Sweep::Strategies.name()) {
        let Some((v, lo, hi)) = metric.of(r) else {
            continue;
        };
        let sample = (f64::from(r.mm_cpus), v, lo, hi);
        match out.iter_mut().find(|(n, _)| *n == r.strategy) {
            Some((_, pts)) => pts.push(sample),
            None => out.push((r.strategy.clone(), vec![sample])),
        }
    }
    out.sort_by_key(|(n, _)| rank(n));
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draws one strategy plot per workload whose strategy-sweep records have
/// at least two CPU counts into `dir`; returns the files written.
pub fn draw_strategies(dir: &Path, records: &[Record]) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for w in WORKLOADS {
        let panels: Vec<_> =
            STRATEGY_PANELS.iter().map(|&(m, title)| (m, title, strategy_series(w.name, m, records))).collect();
        if distinct_x(&panels[0].2) < 2 {
            continue;
        }
        let file = strategy_file(w.name);
        draw_panels(&dir.join(&file), w.name, &panels).map_err(|e| anyhow::anyhow!("plot {file}: {e}"))?;
        files.push(file);
    }
    Ok(files)
}

fn distinct_x(data: &[(String, Vec<Sample>)]) -> usize {
    data.iter().flat_map(|(_, p)| p.iter().map(|s| s.0.to_bits())).collect::<std::collections::BTreeSet<_>>().len()
}

/// One SVG of stacked panels with the CPUs the address space runs on as x
/// (log scale: 1, 2, 4, 8 evenly spaced).
fn draw_panels(
    path: &Path,
    workload: &str,
    panels: &[(Metric, &str, Series)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 480 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, (metric, what, data)) in areas.iter().zip(panels) {
        let title = format!("{workload}: {what}, by strategy");
        let axes = Axes { title: &title, x_label: "CPUs the address space runs on", metric: *metric };
        let all = || data.iter().flat_map(|(_, p)| p.iter());
        let (x_lo, x_hi) = bounds(all().map(|s| s.0));
        let (y_lo, y_hi) = bounds(all().flat_map(|s| [s.1, s.2, s.3]));
        let x = (x_lo / 1.3..x_hi * 1.3).log_scale();
        if metric.linear() {
            chart(area, &axes, data, x, 0.0..(y_hi * 1.1).max(1.0))?;
        } else {
            chart(area, &axes, data, x, (y_lo / 1.5..y_hi * 1.5).log_scale())?;
        }
    }
    root.present()?;
    Ok(())
}

/// Draws every plot of [`PLOTS`] that has at least two x values, then the
/// strategy plots ([`draw_strategies`]), into `dir`; returns the files
/// written.
pub fn draw_all(dir: &Path, records: &[Record]) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for spec in PLOTS {
        let data = series(spec, records);
        if distinct_x(&data) < 2 {
            continue;
        }
        draw(&dir.join(spec.file), spec, &data).map_err(|e| anyhow::anyhow!("plot {}: {e}", spec.file))?;
        files.push(spec.file.to_string());
    }
    files.extend(draw_strategies(dir, records)?);
    Ok(files)
}

/// Draws one plot.
pub fn draw(path: &Path, spec: &PlotSpec, data: &[(String, Vec<Sample>)]) -> Result<(), Box<dyn std::error::Error>> {
    let all = || data.iter().flat_map(|(_, p)| p.iter());
    let (x_lo, x_hi) = bounds(all().map(|s| s.0));
    let (y_lo, y_hi) = bounds(all().flat_map(|s| [s.1, s.2, s.3]));
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_pad = if spec.log_x { (x_lo / 1.5, x_hi * 1.5) } else { (x_lo - 1.0, x_hi + 1.0) };
    let axes = Axes { title: spec.title, x_label: spec.x_label, metric: spec.metric };
    let (linear, log) = (0.0..(y_hi * 1.1).max(1.0), (y_lo / 1.5..y_hi * 1.5).log_scale());
    match (spec.log_x, spec.metric.linear()) {
        (true, false) => chart(&root, &axes, data, (x_pad.0..x_pad.1).log_scale(), log),
        (true, true) => chart(&root, &axes, data, (x_pad.0..x_pad.1).log_scale(), linear),
        (false, false) => chart(&root, &axes, data, x_pad.0..x_pad.1, log),
        (false, true) => chart(&root, &axes, data, x_pad.0..x_pad.1, linear),
    }?;
    root.present()?;
    Ok(())
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() && lo > 0.0 {
        (lo, hi)
    } else {
        (1.0, hi.max(2.0))
    }
}

/// A chart's title, x label and metric.
struct Axes<'a> {
    title: &'a str,
    x_label: &'a str,
    metric: Metric,
}

fn chart<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    spec: &Axes<'_>,
    data: &[(String, Vec<Sample>)],
    x: X,
    y: Y,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(spec.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    let y_desc = match spec.metric {
        Metric::NsPerOp => "time per operation (µs, median; bars: min–max)",
        Metric::TlbiPerOp => "TLBI instructions per operation",
        Metric::InsnsPerOp => "guest instructions per operation",
        Metric::IpisPerOp => "IPIs sent per operation",
    };
    let y_fmt = |v: &f64| match spec.metric {
        Metric::NsPerOp => trim(v / 1e3),
        Metric::TlbiPerOp | Metric::InsnsPerOp | Metric::IpisPerOp => trim(*v),
    };
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(y_desc)
        .x_label_formatter(&|v| trim(*v))
        .y_label_formatter(&y_fmt)
        .draw()?;
    for (i, (name, pts)) in data.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // Earlier series are drawn wider, so that lines on top of each
        // other (equal counts) stay visible as outlines.
        let width = 2 + (data.len() - 1 - i) as u32;
        chart
            .draw_series(LineSeries::new(pts.iter().map(|s| (s.0, s.1)), color.stroke_width(width)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(pts.iter().map(|s| Circle::new((s.0, s.1), 3, color.filled())))?;
        if spec.metric == Metric::NsPerOp {
            chart.draw_series(pts.iter().map(|s| PathElement::new(vec![(s.0, s.2), (s.0, s.3)], color)))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A tick label: integers plainly, others with up to three significant
/// decimals.
fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::tests::{plugin_counts, record, record_with_plugin, LINE};

    #[test]
    fn plots_are_svg_with_text() {
        let mut rs = Vec::new();
        for pages in [1u64, 16, 512] {
            for (cfg, threads) in [
                ("max 2cpu broadcast/default", 1),
                ("max 2cpu broadcast/no-range", 1),
                ("max 2cpu broadcast/default", 2),
            ] {
                let line =
                    LINE.replace("\"pages\":16,\"threads\":1", &format!("\"pages\":{pages},\"threads\":{threads}"));
                // The two-thread runs were measured without the plugin.
                let mut r = if threads == 1 { record_with_plugin(&line, &plugin_counts()) } else { record(&line) };
                r.config = cfg.into();
                rs.push(r);
            }
        }
        let data = series(&PLOTS[0], &rs);
        assert_eq!(data.len(), 3, "{data:?}");
        assert!(data.iter().any(|(n, _)| n.ends_with("+spinning thread")));
        assert_eq!(data[0].1.iter().map(|s| s.0).collect::<Vec<_>>(), [1.0, 16.0, 512.0]);
        let dir = std::env::temp_dir().join(format!("bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = draw_all(&dir, &rs).unwrap();
        assert_eq!(files, ["mmap_time.svg", "mmap_tlbi.svg", "mmap_insns.svg"]);
        let insns = series(&PLOTS[2], &rs);
        assert_eq!(insns.len(), 2, "records without instruction counts are left out");
        let svg = std::fs::read_to_string(dir.join("mmap_time.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text") && svg.contains("time per operation"),
            "{}",
            &svg[..200]
        );
        assert!(svg.contains("+spinning thread"));
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!((trim(2.0), trim(0.25), trim(1.23456)), ("2".into(), "0.25".into(), "1.235".into()));
    }

    #[test]
    fn strategy_plots_have_a_line_per_strategy_and_three_panels() {
        let line = LINE.replace(r#""faults":480}"#, r#""faults":480,"events":{"ipi_sent":60,"ipi_received":60}}"#);
        let mut rs = Vec::new();
        for strategy in ["local", "broadcast", "ipi"] {
            for cpus in [4, 1, 2] {
                let mut r = record_with_plugin(&line, &plugin_counts());
                (r.sweep, r.strategy, r.mm_cpus) = ("strategies".into(), strategy.into(), cpus);
                rs.push(r);
            }
        }
        // A configs-sweep record stays out of the strategy plot, and the
        // strategy records out of the configs plots.
        rs.push(record_with_plugin(&line, &plugin_counts()));
        let data = strategy_series("mmap", Metric::IpisPerOp, &rs);
        let names: Vec<&str> = data.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["broadcast", "ipi", "local"], "STRATEGIES order");
        assert_eq!(data[0].1.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), [(1.0, 2.0), (2.0, 2.0), (4.0, 2.0)]);
        assert_eq!(series(&PLOTS[0], &rs).iter().map(|(_, p)| p.len()).sum::<usize>(), 1);
        let dir = std::env::temp_dir().join(format!("bench-strategy-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = draw_all(&dir, &rs).unwrap();
        assert_eq!(files, [strategy_file("mmap")]);
        let svg = std::fs::read_to_string(dir.join(&files[0])).unwrap();
        for (_, what) in STRATEGY_PANELS {
            assert!(svg.contains(what), "{what}");
        }
        assert!(svg.contains("CPUs the address space runs on") && svg.contains("broadcast"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
