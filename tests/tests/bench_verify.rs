//! `bench --verify` end to end: on real measurements (workloads that issue
//! broadcast, range and local TLBIs, with a second thread doing its own
//! operations on another CPU, and the ipi strategy, whose IPI targets flush
//! locally on another CPU) the kernel's TLBI and DSB counters equal the
//! TCG plugin's counts, and a counter made wrong on purpose
//! (`--verify-corrupt`) makes verification fail with a diff, through the
//! library and through the `bench` binary.

use std::process::Command;
use std::time::Duration;

use ktest_harness::bench::config::{self, Config, CPU_NO_RANGE, CPU_RANGE};
use ktest_harness::bench::runner::{Outcome, Runner};
use ktest_harness::bench::sweep::{self, Point, FLAG_A};
use ktest_harness::bench::verify::{self, DSB};
use ktest_harness::bench::{self};
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::tcg_plugin::{self, CountMode};

fn points() -> Vec<Point> {
    let w = |name| sweep::workload(name).expect("known workload");
    let max = Config::new(CPU_RANGE, 2);
    let ipi = max.clone().with_strategy(config::strategy("ipi").unwrap());
    vec![
        Point::new(w("mmap"), 4, 0, 3, 8, max.clone()),
        Point::new(w("mprotect"), 64, 0, 3, 4, Config::new(CPU_NO_RANGE, 2)),
        Point::new(w("fork"), 16, 0, 3, 4, max.clone()),
        Point::new(w("madvise"), 256, FLAG_A, 3, 3, max.with_nested_fix(true)),
        Point::new(w("mmap"), 16, 0, 3, 8, ipi).with_threads(2),
    ]
}

#[test]
fn verify_passes_on_real_runs_and_fails_on_a_wrong_counter() {
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
    let out = bench::measure(&runner, &points(), "verify test");
    for r in &out.results {
        if let Outcome::Failed { reason, console_tail, qemu } = &r.outcome {
            panic!("{} failed: {reason}\n{qemu}\n{}", r.point.describe(), console_tail.join("\n"));
        }
    }
    assert_eq!(out.records.len(), 5);
    let ipi = &out.records[4];
    assert!(ipi.ipis_per_op >= 1.0, "the ipi strategy sends IPIs: {}", ipi.raw);
    let kinds: Vec<&str> = out
        .records
        .iter()
        .flat_map(|r| r.tlbi_total.0.iter().filter(|(_, n)| *n > 0).map(|(k, _)| k.as_str()))
        .collect();
    for kind in ["rvae1is", "rvale1is", "vale1is", "vale1", "aside1is", "rvale1"] {
        assert!(kinds.contains(&kind), "no {kind} in these runs: {kinds:?}");
    }

    let v = verify::verify(&out.records, None).expect("every record has plugin counts");
    assert!(v.passed(), "{}", v.text());
    assert_eq!(v.checked, 5);

    for counter in [DSB, "vale1is", "vmalle1is"] {
        let v = verify::verify(&out.records, Some(counter)).unwrap();
        assert_eq!(v.mismatches.len(), 5, "{counter}: every record must fail:\n{}", v.text());
        for m in &v.mismatches {
            assert_eq!(m.diffs.len(), 1, "{counter}: {m:?}");
            let d = &m.diffs[0];
            assert_eq!(d.counter, counter);
            assert_eq!(d.kernel, d.plugin + 1, "{m:?}");
        }
        let text = v.text();
        assert!(text.contains("differ") && text.contains(counter), "{text}");
    }
}

/// The `bench` binary: `--verify` exits 0 on a real run and 1, with the
/// diff, when a counter is corrupted.
#[test]
fn the_bench_tool_fails_verification_with_a_diff() {
    let run = |extra: &[&str]| {
        let dir = std::env::temp_dir().join(format!("bench-verify-{}-{}", std::process::id(), extra.len()));
        let out = Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(["--quick", "--workload", "pingpong", "--jobs", "2", "--verify", "--out"])
            .arg(&dir)
            .args(extra)
            .output()
            .expect("running bench");
        let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), summary)
    };
    let (code, stderr, summary) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("counters match the plugin's counts"), "{stderr}");
    assert!(summary.contains("## Verification"), "{summary}");

    let (code, stderr, summary) = run(&["--verify-corrupt", "dsb"]);
    assert_eq!(code, Some(1), "a wrong counter must fail: {stderr}");
    assert!(stderr.contains("differ from the plugin's counts") && stderr.contains("    dsb "), "{stderr}");
    assert!(summary.contains("deliberately"), "{summary}");
}
