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
    boot_on("max", append)
}

/// [`boot`] on `-cpu cpu`.
fn boot_on(cpu: &str, append: &str) -> (i32, String) {
    let q = Qemu {
        machine: Machine { cpu: cpu.into(), cpus: 4, mem_mb: 1024, el2: false },
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

/// The banner says which repeat-TLBI mode applies, and why: `auto` follows
/// the table of affected cores (`mm::tlb::errata`) for QEMU's MIDR.
#[test]
fn banner_says_which_repeat_tlbi_mode_applies() {
    let line = |out: &str| out.lines().find(|l| l.starts_with("tlb: repeat_tlbi=")).map(str::to_owned);
    let (status, out) = boot_on("cortex-a76", "workload=none");
    assert_eq!(status, 0, "console:\n{out}");
    let want = "tlb: repeat_tlbi=once (auto: Cortex-A76 r4p1, erratum Arm 4193800 (CVE-2025-10263)); \
                local TLBIs are not repeated";
    assert_eq!(line(&out).as_deref(), Some(want), "console:\n{out}");
    let (status, out) = boot("workload=none");
    assert_eq!(status, 0, "console:\n{out}");
    let want = "tlb: repeat_tlbi=off (auto: MIDR 0xf0510 is not an affected core)";
    assert_eq!(line(&out).as_deref(), Some(want), "console:\n{out}");
    let (status, out) = boot("workload=none tlb.repeat_tlbi=each");
    assert_eq!(status, 0, "console:\n{out}");
    let want = "tlb: repeat_tlbi=each (forced; auto would choose off); local TLBIs are not repeated";
    assert_eq!(line(&out).as_deref(), Some(want), "console:\n{out}");
    let (status, out) = boot("tlb.repeat_tlbi=always");
    assert_eq!(status, 2, "a bad value ends the run as the other options' do; console:\n{out}");
    let msg = "bad value 'always' for kernel option 'tlb.repeat_tlbi': expected auto, off, each or once";
    assert!(out.contains(msg), "{out}");
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
    let line =
        out.lines().find(|l| l.contains("panic on CPU")).unwrap_or_else(|| panic!("no panic line; console:\n{out}"));
    assert!(
        line.contains("deliberate") && line.contains("framework.rs"),
        "panic line without its message or location: {line:?}"
    );
}
