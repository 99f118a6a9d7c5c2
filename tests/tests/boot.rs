//! Whole-boot behaviour that cannot be an in-kernel test because the kernel
//! ends the run before any test would start: command-line errors, the
//! default workload, and `run=` programs' exit statuses.

use std::sync::OnceLock;
use std::time::Duration;

use ktest_harness::build::{self, CargoOutput, Kernel};
use ktest_harness::qemu::{Machine, Qemu};
use ktest_harness::suite::run_to_end;

fn kernel() -> &'static Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    K.get_or_init(|| build::build_kernel(&build::workspace_root(), CargoOutput::Capture).expect("kernel build"))
}

/// Boots with `append`; returns (exit status, console). Kills QEMU after 60 s.
fn boot(append: &str) -> (i32, String) {
    let q = Qemu {
        machine: Machine { cpu: "max".into(), cpus: 4, mem_mb: 1024, el2: false },
        image: kernel().image.clone(),
        append: append.into(),
        gdb: false,
        plugin: None,
    };
    let (exit, text) = run_to_end(&q, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    (exit.code(), text)
}

#[test]
fn unknown_option_is_named_and_exits_2() {
    let (status, out) = boot("log=info frobnicate=7");
    assert_eq!(status, 2, "exit status for an unknown option; console:\n{out}");
    assert!(out.contains("unknown kernel option 'frobnicate'"), "console:\n{out}");
}

#[test]
fn bad_value_is_named_and_exits_2() {
    let (status, out) = boot("asid_bits=99");
    assert_eq!(status, 2, "console:\n{out}");
    assert!(out.contains("bad value '99' for kernel option 'asid_bits'"), "console:\n{out}");
    let (status, out) = boot("tlb.range=sideways");
    assert_eq!(status, 2, "console:\n{out}");
    assert!(out.contains("'tlb.range'"), "console:\n{out}");
}

#[test]
fn default_workload_prints_banner_and_passes() {
    let (status, out) = boot("");
    assert_eq!(status, 0, "console:\n{out}");
    assert!(out.contains("cpus: 4 online of 4 listed"), "console:\n{out}");
    assert!(out.contains("features: tlbi-range=1 ttl=1"), "console:\n{out}");
    assert!(!out.contains("FAIL"), "self-check failed:\n{out}");
}

#[test]
fn run_reports_program_status() {
    let (status, out) = boot("run=exiter:3");
    assert_eq!(status, 1, "a program exiting non-zero fails the run; console:\n{out}");
    assert!(out.contains("exiter (pid 1) exited with status 3"), "console:\n{out}");
    let (status, out) = boot("run=counters:4");
    assert_eq!(status, 0, "console:\n{out}");
    let (status, out) = boot("run=nonexistent");
    assert_eq!(status, 2, "console:\n{out}");
    assert!(out.contains("cannot start 'nonexistent'"), "console:\n{out}");
}

#[test]
fn panic_line_carries_the_message() {
    // The framework test panics on purpose ("deliberate") and catches it:
    // the console line the panic handler prints must carry the message,
    // not only the location.
    let (status, out) = boot("ktest.run=framework::panic_is_caught_as_failure");
    assert_eq!(status, 0, "console:\n{out}");
    let line = out.lines().find(|l| l.contains("panic on CPU")).unwrap_or_else(|| panic!("no panic line; console:\n{out}"));
    assert!(line.contains("deliberate") && line.contains("framework.rs"), "panic line without its message or location: {line:?}");
}
