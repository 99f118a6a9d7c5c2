//! Boots QEMU once per point, several at a time, and turns each boot into
//! records, an "unsupported by this kernel" verdict, or a failure.
//!
//! Before measuring, every kernel option the points use is tried once
//! (`workload=none OPTION`, a fraction of a second each): a kernel that
//! rejects it (`command line: unknown kernel option ...`, exit status 2)
//! does not support the configurations that need it, and those are listed
//! instead of measured. A configuration the kernel rejects at run time is
//! treated the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::config::{Config, BASE_ARGS, CPU_RANGE, OPTIONAL_BASE_ARGS};
use super::record::{fmt_count, fmt_insns, fmt_ns, Banner, PluginCounts, Record, RunInfo, PREFIX};
use super::sweep::Point;
use crate::qemu::{Exit, Qemu};
use crate::suite::{Launcher, Next, ProcessLauncher};
use crate::tcg_plugin::{CountMode, Load, Report};
use crate::tlbtrace::{self, Trace};

/// The kernel's exit status for a bad command line.
pub const EXIT_USAGE: i32 = 2;
/// Console lines kept with a failure.
const TAIL: usize = 30;

/// How to run points.
#[derive(Clone, Debug)]
pub struct Runner {
    /// The kernel Image.
    pub image: PathBuf,
    /// Host cores to use: boots run at once while the vCPUs they keep busy
    /// ([`Point::busy_cpus`]) fit.
    pub jobs: usize,
    /// Limit per boot of a point that keeps at most two vCPUs busy; a
    /// point with more gets this × busy vCPUs / 2 ([`Runner::timeout_for`]).
    pub timeout: Duration,
    /// Echo every console line to stderr.
    pub verbose: bool,
    /// Print a line per finished point to stderr.
    pub progress: bool,
    /// The TCG plugin (`crate::tcg_plugin`) to load into every measuring
    /// boot, for instruction counts (and `--verify`); `None`: without it.
    pub plugin: Option<PathBuf>,
    /// How the plugin counts instructions.
    pub plugin_count: CountMode,
    /// Record the kernel's TLB flush decisions in every measuring boot
    /// (`trace=tlb`) and write each as `trace-<point>.json` here
    /// ([`trace_file_name`]); `None`: no trace.
    pub trace_dir: Option<PathBuf>,
}

/// How one point went.
#[derive(Clone, Debug)]
pub enum Outcome {
    Measured(Vec<Record>),
    /// The kernel does not know an option the configuration needs.
    Unsupported {
        option: String,
        message: String,
    },
    Failed {
        reason: String,
        console_tail: Vec<String>,
        qemu: String,
    },
}

#[derive(Clone, Debug)]
pub struct PointResult {
    pub point: Point,
    pub outcome: Outcome,
}

/// What one boot printed and how it ended.
#[derive(Clone, Debug)]
pub struct BootLog {
    pub exit: Exit,
    pub timed_out: bool,
    pub console: Vec<String>,
    pub stderr: String,
    pub seconds: f64,
    pub qemu: String,
    /// What the plugin wrote, if it was loaded (or why there is nothing).
    pub plugin: Option<Result<Report, String>>,
}

impl BootLog {
    /// The kernel's complaint about its command line, if that is why it
    /// stopped: (option, message).
    pub fn rejected_option(&self) -> Option<(String, String)> {
        if self.exit != Exit::from_code(EXIT_USAGE) {
            return None;
        }
        let line = self.console.iter().find(|l| l.contains("command line:"))?;
        let option =
            line.split("kernel option '").nth(1).and_then(|rest| rest.split('\'').next()).unwrap_or("?").to_string();
        Some((option, line.trim_start_matches("kernel: ").to_string()))
    }

    fn tail(&self) -> Vec<String> {
        let skip = self.console.len().saturating_sub(TAIL);
        self.console[skip..].to_vec()
    }
}

/// The options every point's command line starts with: [`BASE_ARGS`] and
/// those of [`OPTIONAL_BASE_ARGS`] the kernel supports.
pub fn base_args(support: &BTreeMap<String, Result<(), String>>) -> Vec<String> {
    let mut args: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
    args.extend(OPTIONAL_BASE_ARGS.iter().filter(|a| matches!(support.get(**a), Some(Ok(())))).map(|s| s.to_string()));
    args
}

/// Every kernel option `points` use, and the optional base options.
pub fn options_to_probe(points: &[Point]) -> Vec<String> {
    let mut words: BTreeSet<String> = OPTIONAL_BASE_ARGS.iter().map(|s| s.to_string()).collect();
    for p in points {
        words.extend(p.config.args());
    }
    words.into_iter().collect()
}

impl Runner {
    /// Boots `config`'s machine with `args` on the command line (and the
    /// plugin, if `plugin`).
    pub fn boot(&self, config: &Config, args: &[String], plugin: bool) -> BootLog {
        let load = match (&self.plugin, plugin) {
            (Some(lib), true) => Some(Load::temporary(lib, self.plugin_count)),
            _ => None,
        };
        let qemu = Qemu {
            machine: config.machine(),
            image: self.image.clone(),
            append: args.join(" "),
            gdb: false,
            plugin: load.clone(),
        };
        let launcher = ProcessLauncher { program: Qemu::program(), verbose: self.verbose };
        let command = launcher.command_line(&qemu);
        let start = Instant::now();
        let mut log = BootLog {
            exit: Exit::Crashed { code: None, signal: None },
            timed_out: false,
            console: Vec::new(),
            stderr: String::new(),
            seconds: 0.0,
            qemu: command,
            plugin: None,
        };
        let mut boot = match launcher.launch(&qemu) {
            Ok(b) => b,
            Err(e) => {
                log.stderr = format!("cannot start {}: {e}; run scripts/setup.sh", Qemu::program().to_string_lossy());
                return log;
            }
        };
        let deadline = start + self.timeout;
        loop {
            match boot.next(deadline) {
                Next::Line(l) => log.console.push(l),
                Next::Ended => break,
                Next::DeadlinePassed => {
                    boot.kill();
                    log.timed_out = true;
                    break;
                }
            }
        }
        (log.exit, log.stderr) = boot.finish();
        log.seconds = start.elapsed().as_secs_f64();
        log.plugin = load.map(|l| l.take_report().map_err(|e| e.to_string()));
        log
    }

    /// Tries each option alone on a minimal boot: `Ok` if the kernel takes
    /// it, else the kernel's complaint.
    pub fn probe(&self, options: &[String]) -> BTreeMap<String, Result<(), String>> {
        let config = Config::new(CPU_RANGE, 1);
        let quiet = Runner { progress: false, ..self.clone() };
        let results = quiet.pool(
            options,
            |_| 1,
            |_, opt| {
                let log = self.boot(&config, &["workload=none".to_string(), opt.clone()], false);
                match (log.exit, log.rejected_option()) {
                    (Exit::Passed, _) => Ok(()),
                    (_, Some((_, message))) => Err(message),
                    (exit, None) => Err(format!("probe boot ended with {exit}")),
                }
            },
            |_, _, _| {},
        );
        options.iter().cloned().zip(results).collect()
    }

    /// Measures `points` with `base` options first on every command line;
    /// points needing an option in `unsupported` are not booted.
    pub fn run(&self, points: &[Point], base: &[String], unsupported: &BTreeMap<String, String>) -> Vec<PointResult> {
        let started = Instant::now();
        let outcomes = self.pool(
            points,
            |p| p.busy_cpus as usize,
            |i, p| {
                if let Some((opt, msg)) = p.config.args().iter().find_map(|a| unsupported.get(a).map(|m| (a, m))) {
                    return Outcome::Unsupported { option: opt.clone(), message: msg.clone() };
                }
                self.measure(i, p, base)
            },
            |done, p, outcome| {
                if self.progress {
                    let elapsed = started.elapsed().as_secs_f64();
                    let eta = elapsed / done as f64 * (points.len() - done) as f64;
                    eprintln!(
                        "[{done:>3}/{}] {:<32} {:<38} {}  (elapsed {}, ~{} left)",
                        points.len(),
                        p.describe(),
                        p.config.label(),
                        summary(outcome),
                        clock(elapsed),
                        clock(eta)
                    );
                }
            },
        );
        points.iter().cloned().zip(outcomes).map(|(point, outcome)| PointResult { point, outcome }).collect()
    }

    /// The limit for a boot of `p`: more busy vCPUs than the host's two
    /// cores share them, and each runs slower.
    pub fn timeout_for(&self, p: &Point) -> Duration {
        self.timeout.mul_f64(f64::from(p.busy_cpus.max(2)) / 2.0)
    }

    /// Boots point number `index` (from 0) and reads its records; writes
    /// its trace if [`Self::trace_dir`] is set.
    pub fn measure(&self, index: usize, p: &Point, base: &[String]) -> Outcome {
        let mut args = base.to_vec();
        args.extend(p.args());
        if self.trace_dir.is_some() {
            args.push(tlbtrace::KERNEL_OPTION.to_string());
        }
        let timeout = self.timeout_for(p);
        let log = Runner { timeout, ..self.clone() }.boot(&p.config, &args, true);
        let fail = |reason: String| Outcome::Failed { reason, console_tail: log.tail(), qemu: log.qemu.clone() };
        if let Some((option, message)) = log.rejected_option() {
            return Outcome::Unsupported { option, message };
        }
        if log.timed_out {
            return fail(format!("no result within {:.0} s", timeout.as_secs_f64()));
        }
        if log.exit != Exit::Passed {
            let stderr = log.stderr.trim();
            return fail(format!("QEMU ended: {}{}{stderr}", log.exit, if stderr.is_empty() { "" } else { ": " }));
        }
        let banner = Banner::parse(log.console.iter().map(String::as_str));
        let cmdline = args.join(" ");
        let lines: Vec<&str> = log.console.iter().map(|l| l.trim_start()).filter(|l| l.starts_with(PREFIX)).collect();
        let plugin = match &log.plugin {
            None => vec![None; lines.len()],
            Some(Err(e)) => return fail(e.clone()),
            Some(Ok(report)) => match plugin_counts(report, lines.len()) {
                Ok(counts) => counts.into_iter().map(Some).collect(),
                Err(e) => return fail(e),
            },
        };
        let mut records = Vec::new();
        for (line, counts) in lines.iter().zip(&plugin) {
            let info = RunInfo {
                point: p,
                cmdline: &cmdline,
                qemu: &log.qemu,
                banner: &banner,
                wall_seconds: log.seconds,
                plugin: counts.as_ref(),
            };
            match Record::new(line, &info) {
                Ok(r) => records.push(r),
                Err(e) => return fail(format!("{e}: {line}")),
            }
        }
        if records.is_empty() {
            return fail("the program printed no BENCH line".into());
        }
        if let Some(dir) = &self.trace_dir {
            if let Err(e) = write_trace(dir, &trace_file_name(index, p), &log.console) {
                return fail(format!("trace: {e:#}"));
            }
        }
        Outcome::Measured(records)
    }

    /// Runs `f` on every item in order, as many at once as their
    /// `weight`s fit in `jobs` (an item heavier than `jobs` runs alone);
    /// `done(count, item, result)` is called as each finishes. Results in
    /// item order.
    fn pool<T: Sync, R: Send>(
        &self,
        items: &[T],
        weight: impl Fn(&T) -> usize + Sync,
        f: impl Fn(usize, &T) -> R + Sync,
        done: impl Fn(usize, &T, &R) + Sync,
    ) -> Vec<R> {
        let capacity = self.jobs.max(1);
        let next = AtomicUsize::new(0);
        let finished = Mutex::new(0usize);
        // Cores in use, and the index whose turn it is to take cores (so
        // that items start in order).
        let cores = (Mutex::new((0usize, 0usize)), Condvar::new());
        let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..capacity.min(items.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let w = weight(item).clamp(1, capacity);
                    {
                        let (lock, cv) = &cores;
                        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while g.1 != i || g.0 + w > capacity {
                            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        *g = (g.0 + w, i + 1);
                        cv.notify_all();
                    }
                    let r = f(i, item);
                    {
                        let (lock, cv) = &cores;
                        lock.lock().unwrap_or_else(|e| e.into_inner()).0 -= w;
                        cv.notify_all();
                    }
                    {
                        let mut n = finished.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        done(*n, item, &r);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|r| r.expect("every item ran"))
            .collect()
    }
}

/// `trace-<NNN>-<workload, size, flags and configuration>.json` for point
/// number `index` (from 0), e.g. `trace-007-mmap-n-64-max-2cpu-broadcast-default.json`.
pub fn trace_file_name(index: usize, p: &Point) -> String {
    let words = format!("{} {}", p.describe(), p.config.label()).to_ascii_lowercase();
    let mut slug = String::new();
    for c in words.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    format!("trace-{:03}-{}.json", index + 1, slug.trim_matches('-'))
}

/// Parses the trace block of `console` and writes it as `dir/name`.
fn write_trace(dir: &std::path::Path, name: &str, console: &[String]) -> anyhow::Result<()> {
    let trace = Trace::parse_lines(console.iter().map(String::as_str))?;
    std::fs::create_dir_all(dir)?;
    trace.write_json(&dir.join(name))?;
    Ok(())
}

/// The plugin's counts for each of `lines` BENCH lines: each line's
/// measurement marks two regions, an outer one and the timed repetitions
/// inside it, all on one vCPU.
fn plugin_counts(report: &Report, lines: usize) -> Result<Vec<PluginCounts>, String> {
    if report.regions.len() != 2 * lines || report.unpaired_markers != 0 {
        return Err(format!(
            "the plugin saw {} marked regions ({} unpaired end markers) for {lines} BENCH lines (2 each)",
            report.regions.len(),
            report.unpaired_markers
        ));
    }
    report
        .regions
        .chunks(2)
        .map(|pair| {
            let (outer, inner) = (&pair[0], &pair[1]);
            let one_vcpu =
                [outer.end_vcpu, inner.end_vcpu, Some(inner.begin_vcpu)].iter().all(|&v| v == Some(outer.begin_vcpu));
            if (outer.depth, inner.depth) != (0, 1) || !one_vcpu {
                return Err(format!(
                    "unexpected regions: outer depth {} on vCPUs {}..{:?}, inner depth {} on vCPUs {}..{:?}",
                    outer.depth, outer.begin_vcpu, outer.end_vcpu, inner.depth, inner.begin_vcpu, inner.end_vcpu
                ));
            }
            Ok(PluginCounts::of_regions(outer, inner, &report.count))
        })
        .collect()
}

/// One progress word for an outcome.
fn summary(o: &Outcome) -> String {
    match o {
        Outcome::Measured(rs) => rs
            .iter()
            .map(|r| {
                format!(
                    "{}/op, {} insns/op, {} TLBI/op",
                    fmt_ns(r.ns_per_op.median),
                    fmt_insns(r.insns_per_op),
                    fmt_count(r.tlbi_ops_per_op)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Outcome::Unsupported { option, .. } => format!("unsupported by this kernel ({option})"),
        Outcome::Failed { reason, .. } => format!("FAILED: {reason}"),
    }
}

/// `m:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(code: i32, console: &[&str]) -> BootLog {
        BootLog {
            exit: Exit::from_code(code),
            timed_out: false,
            console: console.iter().map(|s| s.to_string()).collect(),
            stderr: String::new(),
            seconds: 0.1,
            qemu: "qemu".into(),
            plugin: None,
        }
    }

    #[test]
    fn a_rejected_option_is_recognised() {
        let l = log(2, &["tlbkernel", "kernel: command line: unknown kernel option 'tlb.exit_elide' (known: log)"]);
        let (opt, msg) = l.rejected_option().unwrap();
        assert_eq!(opt, "tlb.exit_elide");
        assert!(msg.starts_with("command line: unknown"), "{msg}");
        let bad = log(2, &["kernel: command line: bad value 'x' for kernel option 'tlb.range': expected on or off"]);
        assert_eq!(bad.rejected_option().unwrap().0, "tlb.range");
        assert!(log(1, &["command line: whatever"]).rejected_option().is_none());
        assert!(log(2, &["panic"]).rejected_option().is_none());
    }

    #[test]
    fn base_args_keep_only_supported_optional_options() {
        let mut support = BTreeMap::new();
        support.insert("mm.poison=off".to_string(), Err("unknown".to_string()));
        assert_eq!(base_args(&support), ["log=warn"]);
        support.insert("mm.poison=off".to_string(), Ok(()));
        assert_eq!(base_args(&support), ["log=warn", "mm.poison=off"]);
    }

    #[test]
    fn the_pool_keeps_item_order() {
        let r = Runner {
            image: "/x".into(),
            jobs: 3,
            timeout: Duration::from_secs(1),
            verbose: false,
            progress: false,
            plugin: None,
            plugin_count: CountMode::Block,
            trace_dir: None,
        };
        let seen = Mutex::new(Vec::new());
        let out = r.pool(
            &[5u64, 1, 3, 2],
            |_| 1,
            |i, &x| {
                std::thread::sleep(Duration::from_millis(x * 5));
                (i, x * 10)
            },
            |n, _, _| seen.lock().unwrap().push(n),
        );
        assert_eq!(out, [(0, 50), (1, 10), (2, 30), (3, 20)]);
        assert_eq!(seen.into_inner().unwrap(), [1, 2, 3, 4]);
        // Weights: never more than `jobs` cores in use at once.
        let busy = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items = [2usize, 1, 1, 3, 1, 2, 1];
        let out = r.pool(
            &items,
            |&w| w,
            |_, &w| {
                let w = w.min(3);
                let now = busy.fetch_add(w, Ordering::SeqCst) + w;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                busy.fetch_sub(w, Ordering::SeqCst);
                w
            },
            |_, _, _| {},
        );
        assert_eq!(out, [2, 1, 1, 3, 1, 2, 1]);
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
        assert_eq!(clock(61.4), "1:01");
    }

    #[test]
    fn trace_files_are_named_by_index_and_point() {
        use crate::bench::config::{Config, CPU_NO_RANGE};
        use crate::bench::sweep::{self, FLAG_A};
        let w = sweep::workload("mmap").unwrap();
        let p = Point::new(w, 64, FLAG_A, 3, 8, Config::new(CPU_NO_RANGE, 2).with_exit_elide(false));
        let name = trace_file_name(6, &p);
        assert!(name.starts_with("trace-007-mmap-n-64-flags-0x1-"), "{name}");
        assert!(name.ends_with(".json") && name.contains("cortex-a72-2cpu-broadcast-default-elide-off"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)), "{name}");
    }
}
