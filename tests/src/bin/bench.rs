//! `bench`: the benchmark suite (`scripts/bench.sh`). Builds the kernel,
//! boots QEMU once per measurement (several at a time), and writes
//! `records.jsonl`, `records.csv`, `summary.md` and SVG plots into a
//! results directory (default `results/<timestamp>/`).
//!
//! - `bench [--quick] [--workload NAME]... [--sweep configs|strategies]... [--out DIR] [--jobs N]
//!   [--verify] [--no-plugin] [--trace]`
//! - `bench --list [--quick] [--workload NAME]... [--sweep NAME]...`: what a run would measure;
//! - `bench --table-only`: a short table of a few measurements on stdout
//!   (what `scripts/run.sh` prints at its end); writes nothing.
//!
//! Every measuring boot loads the TCG plugin (`tests/qemu-plugin`, built
//! here with cargo) for guest instructions per operation; `--verify`
//! compares the kernel's TLBI and DSB counters with the plugin's counts.
//! `--trace` keeps the kernel's TLB decision trace of every measurement as
//! `trace-<point>.json` in the results directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use ktest_harness::bench::config::{POLICIES, STRATEGIES};
use ktest_harness::bench::runner::Runner;
use ktest_harness::bench::sweep::{self, Depth, Sweep, Workload, WORKLOADS};
use ktest_harness::bench::{self, report, verify};
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::tcg_plugin::{self, CountMode};

#[derive(Parser)]
#[command(about = "Benchmark the kernel's TLB flush strategies under QEMU")]
struct Cli {
    /// Fewer sizes, repetitions and configurations (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Only this workload (repeatable): mmap, mprotect, madvise, fork, exit,
    /// mprotect-threads, reclaim, pingpong, asid-pressure, device,
    /// pages-mmap, pages-madvise, pages-split.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Only this sweep (repeatable; default all three): configs (each
    /// workload's sizes and configurations under the default strategy),
    /// strategies (every flush strategy × the CPUs the address space runs
    /// on: 1, 2, 4 with --quick, else 1, 2, 4, 8) or repeat (the
    /// repeat-TLBI workaround's modes × strategies × CPUs, on cortex-a76).
    #[arg(
        long = "sweep",
        value_name = "configs|strategies|repeat",
        value_parser = ["configs", "strategies", "repeat"]
    )]
    sweeps: Vec<String>,
    /// Results directory (default: results/<timestamp>/ in the workspace).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// QEMU boots at once (default: the host's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the measurements a run would make, and exit.
    #[arg(long)]
    list: bool,
    /// Print only a short table of a few measurements; write nothing.
    #[arg(long)]
    table_only: bool,
    /// Echo every console line to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Check every record: the kernel's TLBI counters per kind and its DSB
    /// counter must equal the TCG plugin's counts over the same region;
    /// fail with a diff otherwise.
    #[arg(long)]
    verify: bool,
    /// Measure without the TCG plugin: no instruction counts, and times
    /// without the plugin's overhead.
    #[arg(long, conflicts_with = "verify")]
    no_plugin: bool,
    /// How the plugin counts instructions: per translation block (tb) or
    /// per instruction (insn, slower; see the README).
    #[arg(long, value_name = "tb|insn", default_value = "tb", value_parser = ["tb", "insn"])]
    plugin_count: String,
    /// Boot every measurement with the kernel's TLB decision trace
    /// (`trace=tlb`) and keep it as Chrome/Perfetto trace JSON,
    /// `trace-<point>.json` in the results directory.
    #[arg(long, conflicts_with = "table_only")]
    trace: bool,
    /// Test only: take the kernel's COUNTER (a TLBI kind, or dsb) as one
    /// more than it was before --verify compares, to show that a wrong
    /// counter fails.
    #[arg(long, value_name = "COUNTER", requires = "verify", hide = true)]
    verify_corrupt: Option<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workloads(names: &[String]) -> anyhow::Result<Vec<&'static Workload>> {
    names
        .iter()
        .map(|n| match sweep::workload(n) {
            Some(w) => Ok(w),
            None => {
                let known: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
                bail!("no workload named {n:?}; known: {}", known.join(", "))
            }
        })
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let depth = if cli.quick { Depth::Quick } else { Depth::Full };
    let chosen = workloads(&cli.workloads)?;
    let sweeps: Vec<Sweep> = cli.sweeps.iter().filter_map(|s| Sweep::parse(s)).collect();
    let points = if cli.table_only { bench::table_points() } else { sweep::plan(depth, &chosen, &sweeps) };
    if points.is_empty() {
        bail!("these workloads have no point in these sweeps");
    }
    if cli.list {
        list(&points);
        return Ok(ExitCode::SUCCESS);
    }
    let jobs = cli.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let root = build::workspace_root();
    eprintln!("bench: building the kernel and the bench_* programs");
    // The table follows another command's output (scripts/run.sh): keep
    // cargo quiet unless the build fails.
    let output = if cli.table_only { CargoOutput::Capture } else { CargoOutput::Stream };
    let kernel = build::build_kernel(&root, output)?;
    let plugin = if cli.no_plugin { None } else { Some(tcg_plugin::build(&root, output)?) };
    if cli.table_only {
        eprintln!("bench: {} short measurements for the table (scripts/bench.sh --quick measures more)", points.len());
        print!("{}", bench::quick_table(&kernel.image, plugin.as_deref(), jobs, false));
        return Ok(ExitCode::SUCCESS);
    }
    let out_dir = cli.out.unwrap_or_else(|| bench::default_out_dir(&root));
    let runner = Runner {
        image: kernel.image,
        jobs,
        timeout: bench::scaled(bench::BOOT_TIMEOUT),
        verbose: cli.verbose,
        progress: true,
        plugin,
        plugin_count: match cli.plugin_count.as_str() {
            "insn" => CountMode::Each,
            _ => CountMode::Block,
        },
        trace_dir: cli.trace.then(|| out_dir.clone()),
    };
    let mode = if cli.quick { "quick" } else { "full" };
    let mut out = bench::measure(&runner, &points, mode);
    if cli.verify {
        out.verification = Some(verify::verify(&out.records, cli.verify_corrupt.as_deref())?);
    }
    bench::write_results(&out_dir, &mut out)?;
    print!("{}", report::short_table(&out.results));
    let verified = match &out.verification {
        Some(v) => {
            eprint!("{}", v.text());
            v.passed()
        }
        None => true,
    };
    if cli.trace {
        eprintln!("bench: one TLB decision trace per measurement: {}/trace-*.json", out_dir.display());
    }
    eprintln!(
        "bench: {} records, {} unsupported, {} failed in {:.0} s; results in {}",
        out.records.len(),
        out.unsupported_points(),
        out.failures(),
        out.meta.seconds,
        out_dir.display()
    );
    Ok(if out.failures() == 0 && verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints the plan (ignoring a closed stdout, as in `bench --list | head`).
fn list(points: &[sweep::Point]) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{} measurements (one QEMU boot each):", points.len());
    for (i, p) in points.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4} {:<28} -cpu {:<10} -smp {}  {:<44} {}",
            i + 1,
            p.describe(),
            p.config.cpu,
            p.config.cpus,
            p.config.label(),
            p.args().join(" ")
        );
    }
    let strategies: Vec<String> = STRATEGIES.iter().map(|s| format!("{} ({})", s.name, s.about)).collect();
    let _ = writeln!(s, "\nstrategies: {}\npolicies:", strategies.join("; "));
    for p in POLICIES {
        let _ = writeln!(s, "  {:<16} {:<42} {}", p.name, p.args.join(" "), p.about);
    }
    let _ = std::io::stdout().write_all(s.as_bytes());
}
