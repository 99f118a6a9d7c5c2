//! The benchmark suite (`scripts/bench.sh`, `src/bin/bench.rs`): boots the
//! kernel under QEMU once per measurement, runs one `bench_*` user program
//! there, and turns the `BENCH {...}` line it prints into a record.
//!
//! - [`config`]: kernel configurations (machine, strategy, policy, exit
//!   elision, nested fix, ASID width); strategies and policies are tables;
//! - [`sweep`]: the workloads and the points a run measures: each
//!   workload's configs sweep, and the strategy sweep (every flush strategy
//!   × the CPUs the workload's address space runs on);
//! - [`runner`]: option probing, parallel boots, progress;
//! - [`record`]: the program's line and the host's record of it;
//! - [`report`], [`plot`]: JSON Lines, CSV, Markdown and SVG;
//! - [`verify`]: the kernel's counters against the TCG plugin's (`--verify`).
//!
//! The user programs time with CNTVCT_EL0 and read the kernel's own
//! counters (STATS) before and after; the host computes medians and
//! per-operation counts. The TCG plugin (`crate::tcg_plugin`), loaded into
//! every measuring boot, counts the guest instructions, TLBIs and DSBs
//! between the markers the programs execute around their timed
//! repetitions.

pub mod config;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;
pub mod sweep;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use config::{Config, CPU_RANGE};
use record::Record;
use report::RunMeta;
use runner::{Outcome, PointResult, Runner};
use sweep::{Point, FLAG_A};

/// Limit per boot (multiplied by `KTEST_TIMEOUT_SCALE`).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub results: Vec<PointResult>,
    pub records: Vec<Record>,
    /// Plot files written (names inside the results directory).
    pub plots: Vec<String>,
    /// Options the kernel rejected: option → its message.
    pub unsupported: BTreeMap<String, String>,
    pub meta: RunMeta,
    /// The result of `--verify`, if asked for.
    pub verification: Option<verify::Verification>,
}

impl RunOutput {
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count()
    }

    pub fn unsupported_points(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, Outcome::Unsupported { .. })).count()
    }
}

/// Probes the options `points` need, measures every point with `runner`,
/// and returns the results (nothing is written).
pub fn measure(runner: &Runner, points: &[Point], mode: &str) -> RunOutput {
    let started = Instant::now();
    let started_at = timestamp(SystemTime::now());
    let load_before = host_load();
    if runner.progress {
        eprintln!(
            "bench: checking which of {} kernel options this kernel knows",
            runner::options_to_probe(points).len()
        );
    }
    let support = runner.probe(&runner::options_to_probe(points));
    let unsupported: BTreeMap<String, String> =
        support.iter().filter_map(|(k, v)| v.as_ref().err().map(|m| (k.clone(), m.clone()))).collect();
    if runner.progress {
        for (opt, msg) in &unsupported {
            eprintln!("bench: {opt}: unsupported by this kernel ({msg}); configurations that need it are skipped");
        }
        eprintln!("bench: {} measurements, {} boots at a time", points.len(), runner.jobs);
    }
    let base = runner::base_args(&support);
    let results = runner.run(points, &base, &unsupported);
    let records = report::records_of(&results);
    let meta = RunMeta {
        mode: mode.to_string(),
        started: started_at,
        seconds: started.elapsed().as_secs_f64(),
        jobs: runner.jobs,
        kernel: kernel_identity(&runner.image),
        base_args: base,
        host: host_identity(),
        plugin: runner.plugin.as_ref().map(|p| format!("{},count={}", p.display(), runner.plugin_count.arg())),
        load: load_before.zip(host_load()),
    };
    RunOutput { results, records, plots: Vec::new(), unsupported, meta, verification: None }
}

/// Writes `records.jsonl`, `records.csv`, the plots and `summary.md` into
/// `dir` (created if needed); fills in `out.plots`.
pub fn write_results(dir: &Path, out: &mut RunOutput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    report::write_jsonl(&dir.join("records.jsonl"), &out.records).context("records.jsonl")?;
    std::fs::write(dir.join("records.csv"), report::csv(&out.records)).context("records.csv")?;
    out.plots = plot::draw_all(dir, &out.records)?;
    std::fs::write(
        dir.join("summary.md"),
        report::summary(&out.results, &out.meta, &out.plots, out.verification.as_ref()),
    )
    .context("summary.md")?;
    Ok(())
}

/// The points of the short table `scripts/run.sh` prints: munmap cost with
/// and without range ops, exit with and without elision, one IPC round
/// trip. About ten boots of a second or two.
pub fn table_points() -> Vec<Point> {
    let w = |name| sweep::workload(name).expect("a workload of WORKLOADS");
    let p = |name, n, flags, ops, config| Point::new(w(name), n, flags, 5, ops, config);
    let max = Config::new(CPU_RANGE, 2);
    let mut points = Vec::new();
    for policy in ["default", "no-range"] {
        for (n, ops) in [(1, 40), (64, 16), (4096, 2)] {
            points.push(p("mmap", n, 0, ops, max.clone().with_policy(policy)));
        }
    }
    points.push(p("mmap", 64, FLAG_A, 16, max.clone()));
    for elide in [true, false] {
        points.push(p("exit", 512, 0, 4, max.clone().with_exit_elide(elide)));
    }
    points.push(p("pingpong", 0, 0, 200, max));
    points
}

/// Runs [`table_points`] on the kernel Image `image` (with the TCG plugin
/// `plugin`, if any) and returns the short table (for `scripts/run.sh`).
pub fn quick_table(image: &Path, plugin: Option<&Path>, jobs: usize, progress: bool) -> String {
    let runner = Runner {
        image: image.to_path_buf(),
        jobs,
        timeout: scaled(BOOT_TIMEOUT),
        verbose: false,
        progress,
        plugin: plugin.map(Path::to_path_buf),
        plugin_count: crate::tcg_plugin::CountMode::Block,
        trace_dir: None,
    };
    let out = measure(&runner, &table_points(), "table");
    report::short_table(&out.results)
}

/// `d` × `KTEST_TIMEOUT_SCALE` (if set and valid).
pub fn scaled(d: Duration) -> Duration {
    let scale = std::env::var("KTEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0);
    d.mul_f64(scale)
}

/// `results/<timestamp>` under `root`.
pub fn default_out_dir(root: &Path) -> PathBuf {
    root.join("results").join(timestamp(SystemTime::now()).replace(':', ""))
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The git commit of the workspace (with `-dirty`), and the Image path.
fn kernel_identity(image: &Path) -> String {
    let root = crate::build::workspace_root();
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown commit".into());
    format!("{git} ({})", image.display())
}

/// The host's one-minute load average (`/proc/loadavg`), if known.
fn host_load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn host_identity() -> String {
    let name = std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{name} ({cores} cores)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = |s| timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(t(1_763_706_792), "2025-11-21T06:33:12Z");
        assert!(default_out_dir(Path::new("/ws")).starts_with("/ws/results"));
    }

    #[test]
    fn the_table_is_small() {
        let points = table_points();
        assert!(points.len() <= 12);
        assert!(points.iter().any(|p| p.config.exit_elide == Some(false)));
    }
}
