//! Smoke test of the benchmark suite: builds the kernel, boots a few tiny
//! measurements under real QEMU (one of them a strategy-sweep point: the
//! ipi strategy with the mm on two CPUs, and one a device job while the
//! process churns the device's source), and checks that the records are
//! valid, complete and agree with the counters the kernel reported, that
//! an option the kernel does not know is reported as unsupported, and that
//! the results directory has its files, tables and plots. Not a timed
//! benchmark.

use std::time::Duration;

use ktest_harness::bench::config::{self, Config, Strategy, CPU_RANGE};
use ktest_harness::bench::record::{BenchLine, Record};
use ktest_harness::bench::runner::{Outcome, Runner};
use ktest_harness::bench::sweep::{self, Point, Sweep};
use ktest_harness::bench::{self, report};
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::tcg_plugin::{self, CountMode};

/// A strategy whose option no kernel knows.
static BOGUS: Strategy =
    Strategy { name: "bogus", args: &["bench.smoke_unknown_option=1"], about: "an option the kernel rejects" };

fn points() -> Vec<Point> {
    let w = |name| sweep::workload(name).expect("known workload");
    let max = Config::new(CPU_RANGE, 2);
    let ipi = max.clone().with_strategy(config::strategy("ipi").unwrap());
    vec![
        Point::new(w("mmap"), 4, 0, 3, 8, max.clone()),
        Point::new(w("mmap"), 32, 0, 3, 8, max.clone()),
        Point::new(w("mprotect"), 16, 0, 3, 8, ipi).with_threads(2).in_sweep(Sweep::Strategies),
        Point::new(w("mmap"), 4, 0, 3, 8, max.with_strategy(&BOGUS)),
        Point::new(w("device"), 16, sweep::FLAG_B, 3, 4, Config::new(CPU_RANGE, 3)),
    ]
}

#[test]
fn a_tiny_benchmark_end_to_end() {
    let root = build::workspace_root();
    let kernel =
        build::build_kernel(&root, CargoOutput::Capture).unwrap_or_else(|e| panic!("building the kernel: {e}"));
    let plugin =
        tcg_plugin::build(&root, CargoOutput::Capture).unwrap_or_else(|e| panic!("building the TCG plugin: {e}"));
    let runner = Runner {
        image: kernel.image,
        jobs: 2,
        timeout: bench::scaled(Duration::from_secs(60)),
        verbose: false,
        progress: true,
        plugin: Some(plugin),
        plugin_count: CountMode::Block,
        trace_dir: None,
    };
    let points = points();
    let mut out = bench::measure(&runner, &points, "smoke");

    for r in &out.results {
        if let Outcome::Failed { reason, console_tail, qemu } = &r.outcome {
            panic!("{} failed: {reason}\n{qemu}\n{}", r.point.describe(), console_tail.join("\n"));
        }
    }
    match &out.results[3].outcome {
        Outcome::Unsupported { option, message } => {
            assert!(option.starts_with("bench.smoke_unknown_option"), "option {option:?}, message {message:?}");
        }
        other => {
            panic!("a configuration with an unknown option: expected Unsupported, saw {other:?}")
        }
    }
    assert_eq!(out.records.len(), 4, "one record per supported point: {:#?}", out.records);

    for (r, p) in out.records[..3].iter().zip(&points) {
        check_record(r, p);
    }
    check_device_record(&out.records[3], &points[4]);
    let mprotect = &out.records[2];
    assert!(
        mprotect.tlbi_ops_per_op >= 1.0,
        "making written pages read-only must be flushed: {} TLBI/op ({})",
        mprotect.tlbi_ops_per_op,
        mprotect.raw
    );
    // The ipi strategy with the mm on two CPUs: a local flush here and one
    // IPI, served by a local flush there, per flush.
    assert_eq!(
        (mprotect.sweep.as_str(), mprotect.strategy.as_str(), mprotect.mm_cpus),
        ("strategies", "ipi", 2),
        "{}",
        mprotect.raw
    );
    assert_eq!(mprotect.param("threads"), Some(2), "{}", mprotect.raw);
    assert!(
        mprotect.ipis_counted
            && mprotect.ipis_per_op >= 1.0
            && mprotect.ipis_received_per_op == mprotect.ipis_per_op
            && mprotect.events_per_op.get("decide_ipi") >= 1.0,
        "{}",
        mprotect.raw
    );
    let names: Vec<&str> = mprotect.events_total.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, report::EVENT_NAMES, "the kernel's events, in its order");
    assert!(
        mprotect.tlbi_per_op.get("rvale1") >= 2.0 && mprotect.tlbi_per_op.get("rvale1is") == 0.0,
        "local range TLBIs only: {}",
        mprotect.tlbi_breakdown()
    );
    for r in &out.records[..2] {
        assert_eq!((r.sweep.as_str(), r.strategy.as_str(), r.mm_cpus), ("configs", "broadcast", 1));
        assert_eq!(r.ipis_per_op, 0.0, "the default strategy broadcasts");
    }

    let dir = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    bench::write_results(&dir, &mut out).expect("writing the results");
    let back = report::read_jsonl(&dir.join("records.jsonl")).expect("records.jsonl parses");
    assert_eq!(back, out.records, "records.jsonl round trip");
    let csv = std::fs::read_to_string(dir.join("records.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 rows:\n{csv}");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("## mmap") && summary.contains("### mprotect (pages=16)"), "{summary}");
    assert!(summary.contains("## Flush strategies") && summary.contains("| ipi | 2 |"), "{summary}");
    assert!(summary.contains("## device") && summary.contains("| kib=16 churn=2 | max 3cpu"), "{summary}");
    assert!(
        summary.contains("Unsupported by this kernel") && summary.contains("bench.smoke_unknown_option"),
        "{summary}"
    );
    assert_eq!(out.plots, ["mmap_time.svg", "mmap_tlbi.svg", "mmap_insns.svg"], "plots drawn");
    for plot in &out.plots {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<text") && svg.contains("pages"),
            "{plot}: not an SVG with text"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The device workload's record: counters per job (the churning thread's
/// repetitions are not operations), the churn's invalidations sent to the
/// device, and the device's own counters.
fn check_device_record(r: &Record, p: &Point) {
    let ctx = format!("{} ({})", p.describe(), r.raw);
    r.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!((r.param("kib"), r.param("churn")), (Some(16), Some(2)), "{ctx}");
    assert_eq!(r.counted_ops, u64::from(p.reps * p.ops), "{ctx}: jobs only");
    assert!(r.events_per_op.get("sec_inval") > 0.0, "{ctx}: the churn tells the device");
    assert!(r.device_per_op.get("hits") > 0.0, "{ctx}: the device's cache");
    assert_eq!(r.device_per_op.get("jobs"), 1.0, "{ctx}: one device job per operation");
}

/// A record agrees with its point, with itself, and with the line the
/// program printed from the kernel's counters.
fn check_record(r: &Record, p: &Point) {
    let ctx = format!("{} ({})", p.describe(), r.raw);
    r.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let line = BenchLine::parse(&r.raw).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(line.arg, p.arg(), "{ctx}: the program saw another argument");
    assert_eq!((r.workload.as_str(), r.program.as_str()), (p.workload, p.program), "{ctx}");
    assert_eq!(r.param("pages"), Some(p.n), "{ctx}");
    assert_eq!((r.repetitions, r.ops_per_rep, r.warmup_ops), (p.reps, u64::from(p.ops), u64::from(p.ops)), "{ctx}");
    assert_eq!(r.counted_ops, u64::from(p.reps * p.ops), "{ctx}: one thread: counted = reps × ops");
    assert_eq!((r.cpus, r.cpu_model.as_str()), (p.config.cpus, p.config.cpu), "{ctx}");
    assert_eq!(r.cpu_name.as_deref(), Some("qemu-max"), "{ctx}: the banner names the CPU");
    assert!(r.ns_per_op.min > 0.0 && r.ns_per_op.median < 1e9, "{ctx}: {:?}", r.ns_per_op);
    let kinds: Vec<&str> = r.tlbi_total.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, report::TLBI_KINDS, "{ctx}: one counter per TLBI kind, in the kernel's order");
    for (k, total) in &r.tlbi_total.0 {
        let per_op = r.tlbi_per_op.get(k);
        assert_eq!(per_op * r.counted_ops as f64, *total as f64, "{ctx}: {k}");
    }
    assert!(r.dsb_total >= 1, "{ctx}: flushing written pages completes with a DSB");
    if r.workload == "mmap" {
        assert!(r.page_faults_per_op >= 1.0, "{ctx}: fresh pages are written, so they fault");
    }
    let insns = r.insns_per_op.unwrap_or_else(|| panic!("{ctx}: no instruction count"));
    assert!(insns > 100.0 && insns < 1e7, "{ctx}: {insns} guest instructions per operation");
    assert!(r.cmdline.contains(&format!("run={}:{:#x}", p.program, p.arg())), "{ctx}: {}", r.cmdline);
}
