//! The TLB decision trace (`trace=tlb`) end to end: boots known workloads
//! with it, parses the console and checks the decisions the kernel
//! recorded (one range-op munmap on `-cpu max`, one whole-ASID munmap on
//! `-cpu cortex-a72`, an elided or a flushing exit after the exiting
//! thread's local flush, the fault, fork, rollover and reaper reasons, a
//! ring that overflows); that the JSON is
//! valid with one track per CPU; that bad options exit 2; and that
//! `ktool run --trace` and the benchmark runner's trace files work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ktest_harness::bench::config::{Config, CPU_RANGE};
use ktest_harness::bench::runner::{trace_file_name, Outcome, Runner};
use ktest_harness::bench::sweep::{self, Point};
use ktest_harness::build::{self, CargoOutput, Kernel};
use ktest_harness::qemu::{Machine, Qemu};
use ktest_harness::suite::run_to_end;
use ktest_harness::tcg_plugin::CountMode;
use ktest_harness::tlbtrace::{Range, Trace};
use serde_json::Value;

fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| build::build_kernel(&build::workspace_root(), CargoOutput::Capture).expect("kernel build"))
}

/// Boots `-cpu cpu -smp cpus` with `append`; returns (exit status,
/// console, QEMU command line). Kills QEMU after 30 s.
fn boot(cpu: &str, cpus: u32, append: &str) -> (i32, String, String) {
    let q = Qemu {
        machine: Machine { cpu: cpu.into(), cpus, mem_mb: 1024, el2: false },
        image: kernel().image.clone(),
        append: append.into(),
        gdb: false,
        plugin: None,
    };
    let (exit, text) = run_to_end(&q, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    (exit.code(), text, q.command_line())
}

/// Boots with `trace=tlb` and returns the trace; the run must end with
/// `status`.
fn traced(cpu: &str, cpus: u32, append: &str, status: i32) -> (Trace, String) {
    let (got, console, qemu) = boot(cpu, cpus, &format!("{append} trace=tlb"));
    assert_eq!(got, status, "exit status of {qemu}; console:\n{console}");
    let t = Trace::parse(&console).unwrap_or_else(|e| panic!("{e}\n{qemu}\nconsole:\n{console}"));
    assert_eq!(t.cpus, cpus, "one ring per CPU; console:\n{console}");
    (t, console)
}

fn reasons(t: &Trace) -> BTreeMap<String, u64> {
    t.by_reason().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// The TLBI counts `munmap_ops` printed for its munmap (`name=count`).
fn printed_ops(console: &str) -> Vec<(String, u64)> {
    let line = console.lines().find(|l| l.starts_with("munmap_ops: pages=")).expect("munmap_ops printed its counts");
    line.split_whitespace()
        .skip(2)
        .map(|w| {
            let (k, n) = w.split_once('=').expect("name=count");
            (k.to_string(), n.parse().expect("a count"))
        })
        .collect()
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tlb-trace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The trace written as JSON and read back: the JSON must parse and hold
/// one track per CPU and one event per decision, on those tracks.
fn check_json(t: &Trace, name: &str) -> Value {
    let path = scratch(name).join("trace.json");
    t.write_json(&path).expect("write the JSON");
    let text = std::fs::read_to_string(&path).expect("read it back");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()));
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let mut tracks: Vec<u64> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["tid"].as_u64().expect("tid"))
        .collect();
    tracks.sort();
    assert_eq!(tracks, (0..u64::from(t.cpus)).collect::<Vec<_>>(), "one track per CPU");
    let decisions: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
    assert_eq!(decisions.len(), t.events.len(), "one event per decision");
    for d in &decisions {
        assert_eq!(d["pid"], 0);
        assert!(d["tid"].as_u64().is_some_and(|c| c < u64::from(t.cpus)), "event off the CPU tracks: {d}");
        assert!(d["ts"].as_f64().is_some() && d["args"]["reason"].is_string() && d["args"]["ops"].is_string(), "{d}");
    }
    v
}

#[test]
fn munmap_of_512_pages_on_max_is_one_range_decision() {
    let (t, console) = traced("max", 2, "run=munmap_ops:512", 1);
    assert_eq!(reasons(&t), expect(&[("range", 1), ("exit_local", 1), ("exit_elided", 1)]), "console:\n{console}");
    let m = t.with_reason("range").next().unwrap();
    assert_eq!(
        (m.pages, m.policy.as_deref(), m.strategy.as_deref()),
        (Some(512), Some("range"), Some("range")),
        "{m:?}"
    );
    assert!(matches!(m.range, Range::Va { start, end } if end - start == 512 * 4096), "{m:?}");
    assert_eq!(m.ops, printed_ops(&console), "the decision's ops are the TLBIs the program counted");
    assert!(m.ops.len() == 1 && m.ops[0].0.starts_with("rva") && m.ops[0].1 == 1, "one range op: {m:?}");
    let local = t.with_reason("exit_local").next().unwrap();
    assert_eq!(
        (local.asid, local.range, local.ops_text().as_str()),
        (m.asid, Range::WholeAsid, "aside1:1"),
        "the exiting thread's CPU drops the ASID locally: {local:?}"
    );
    let exit = t.with_reason("exit_elided").next().unwrap();
    assert_eq!(
        (exit.asid, exit.range, exit.tlbis()),
        (m.asid, Range::WholeAsid, 0),
        "the process's exit, no TLBI: {exit:?}"
    );
    assert!(m.t_ns < local.t_ns && local.t_ns < exit.t_ns, "munmap, the thread leaves, the teardown");
    let v = check_json(&t, "max");
    assert_eq!(v["otherData"]["dropped"], 0);
}

#[test]
fn munmap_of_512_pages_on_cortex_a72_is_one_whole_asid_decision() {
    let (t, console) = traced("cortex-a72", 2, "run=munmap_ops:512", 1);
    assert_eq!(
        reasons(&t),
        expect(&[("whole_asid_no_range", 1), ("exit_local", 1), ("exit_elided", 1)]),
        "console:\n{console}"
    );
    let m = t.with_reason("whole_asid_no_range").next().unwrap();
    assert_eq!((m.pages, m.ops_text().as_str()), (Some(512), "aside1is:1"), "{m:?}");
    assert_eq!(m.ops, printed_ops(&console));
    check_json(&t, "a72");
    // Within the per-page limit, the same program gives per-page ops.
    let (t, console) = traced("cortex-a72", 2, "run=munmap_ops:4", 1);
    let m = t.with_reason("per_page").next().unwrap_or_else(|| panic!("no per_page decision; console:\n{console}"));
    assert_eq!((m.pages, m.tlbis()), (Some(4), 4), "{m:?}");
    assert_eq!(m.ops, printed_ops(&console));
}

#[test]
fn an_exit_is_elided_or_one_whole_asid_flush() {
    let (t, console) = traced("max", 2, "run=exit_pages:64", 0);
    assert_eq!(reasons(&t), expect(&[("exit_local", 1), ("exit_elided", 1)]), "console:\n{console}");
    let (t, console) = traced("max", 2, "run=exit_pages:64 tlb.exit_elide=off", 0);
    assert_eq!(reasons(&t), expect(&[("exit_local", 1), ("exit_flush", 1)]), "console:\n{console}");
    let e = t.with_reason("exit_flush").next().unwrap();
    assert_eq!((e.range, e.ops_text().as_str(), e.policy.as_deref()), (Range::WholeAsid, "aside1is:1", None), "{e:?}");
}

#[test]
fn fork_faults_rollovers_and_the_reaper_have_their_reasons() {
    // forkexit: fork write-protects (a per-page plan of the locked call),
    // children break copy-on-write and fault locally; 3-bit ASIDs roll
    // over. churn kills some children while they run: the reaper.
    let (t, console) = traced("max", 2, "run=forkexit:8,churn:64 asid_bits=3", 0);
    let seen = reasons(&t);
    for r in ["per_page", "cow_bbm", "fault_local", "asid_rollover", "exit_local", "exit_elided", "reaper"] {
        assert!(seen.contains_key(r), "no {r} decision: {seen:?}\nconsole:\n{console}");
    }
    let cow = t.with_reason("cow_bbm").next().unwrap();
    assert_eq!((cow.pages, cow.policy.as_deref(), cow.tlbis()), (Some(1), Some("per_page"), 1), "{cow:?}");
    let roll = t.with_reason("asid_rollover").next().unwrap();
    assert_eq!((roll.asid, roll.range, roll.ops_text().as_str()), (None, Range::All, "vmalle1:1"), "{roll:?}");
    let local = t.with_reason("fault_local").next().unwrap();
    assert_eq!((local.pages, local.ops_text().as_str()), (Some(1), "vale1:1"), "{local:?}");
    assert!(t.events.iter().all(|e| e.ipi.is_none()), "no strategy sends IPIs yet");
    check_json(&t, "reasons");
}

#[test]
fn a_small_ring_keeps_the_newest_and_counts_the_dropped() {
    let (t, console) = traced("max", 2, "run=forkexit:8 trace.size=2", 0);
    assert_eq!(t.size, 2);
    assert!(t.events.len() <= 4, "at most 2 per CPU: {:?}", t.events);
    assert!(t.dropped() > 0, "8 forks make more than 4 decisions; console:\n{console}");
    let v = check_json(&t, "small");
    assert_eq!(v["otherData"]["dropped"].as_u64(), Some(t.dropped()));
    // The newest are kept: the last decision is the parent's exit.
    assert_eq!(t.events.last().map(|e| e.reason.as_str()), Some("exit_elided"), "console:\n{console}");
}

#[test]
fn bad_trace_options_exit_2_naming_the_option() {
    for (append, option) in
        [("trace=tlb trace.size=0", "trace.size"), ("trace.size=20000", "trace.size"), ("trace=everything", "trace")]
    {
        let (status, console, _) = boot("max", 1, &format!("workload=none {append}"));
        assert_eq!(status, 2, "{append}: console:\n{console}");
        assert!(console.contains(&format!("kernel option '{option}'")), "{append}: console:\n{console}");
    }
    let (status, console, _) = boot("max", 1, "workload=none");
    assert_eq!(status, 0);
    assert!(!console.contains("TRACE"), "off by default: console:\n{console}");
    let (t, _) = traced("max", 1, "workload=none", 0);
    assert!(t.events.is_empty() && t.dropped() == 0, "{t:?}");
}

#[test]
fn ktool_run_trace_writes_json_and_prints_a_summary() {
    kernel();
    let path = scratch("ktool").join("t.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktool"))
        .args(["run", "--cpus", "2", "--trace"])
        .arg(&path)
        .args(["--", "run=munmap_ops:512"])
        .output()
        .expect("run ktool");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "QEMU's status (munmap_ops exits non-zero)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("trace=tlb"), "ktool adds the kernel option: {stderr}");
    assert!(
        stdout.contains("munmap_ops: pages=512") && !stdout.contains("TRACE cpu="),
        "console echoed without the trace lines:\n{stdout}"
    );
    assert!(stdout.contains("TLB decision trace: 3 decisions on 2 CPUs"), "summary:\n{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("range "))
        .unwrap_or_else(|| panic!("no range line:\n{stdout}"));
    assert_eq!(line.split_whitespace().take(3).collect::<Vec<_>>(), ["range", "1", "1"], "{line}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the JSON file")).expect("valid JSON");
    assert_eq!(v["otherData"]["events"], 3);
    // A kernel that stops before the end leaves no trace: ktool says so and
    // passes the kernel's status on.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ktool"))
        .args(["run", "--cpus", "1", "--trace"])
        .arg(path.with_file_name("none.json"))
        .args(["--", "trace.size=0"])
        .output()
        .expect("run ktool");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no trace written"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!path.with_file_name("none.json").exists());
}

#[test]
fn the_benchmark_runner_keeps_one_trace_per_measurement() {
    let dir = scratch("bench");
    let runner = Runner {
        image: kernel().image.clone(),
        jobs: 1,
        timeout: Duration::from_secs(30),
        verbose: false,
        progress: false,
        plugin: None,
        plugin_count: CountMode::Block,
        trace_dir: Some(dir.clone()),
    };
    let p = Point::new(sweep::workload("mmap").expect("mmap"), 4, 0, 2, 4, Config::new(CPU_RANGE, 2));
    match runner.measure(0, &p, &["log=warn".to_string()]) {
        Outcome::Measured(_) => {}
        other => panic!("expected a measurement, saw {other:?}"),
    }
    let file = dir.join(trace_file_name(0, &p));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    let munmaps = v["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .iter()
        .filter(|e| e["ph"] == "i" && e["args"]["pages"] == 4)
        .count();
    // Warm-up and timed repetitions: (1 + 2) * 4 munmaps of 4 pages.
    assert_eq!(munmaps, 12, "{text}");
}
