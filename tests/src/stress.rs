//! The stress run (`scripts/stress.sh`): one boot on 4 CPUs with 4-bit
//! ASIDs (a rollover every few processes) that runs the `fuzz` program
//! (random system calls, with churn alongside) and the `churn` program
//! (process lifecycles on every CPU) at once. The kernel checks after
//! them that every resource is back at its baseline (`run: resources back
//! to baseline` or `run: LEAK: ...`); this module parses the console and
//! sums it up in one line:
//!
//! ```text
//! stress: 1000000 calls, 100000 lifecycles, 0 panics, 0 leaks (wall 1234 s)
//! ```

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::qemu::{Machine, Qemu};
use crate::suite::{Launcher, Next, ProcessLauncher};

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Fuzzer calls (the fuzzer rounds to thousands).
    pub calls: u64,
    /// Lifecycles of the `churn` program (the fuzzer's own churn adds some).
    pub lifecycles: u64,
    pub seed: u32,
    /// Time limit of the boot.
    pub timeout: Duration,
}

impl Plan {
    /// The long form: at least 10^6 calls and 10^5 lifecycles.
    pub fn long(seed: u32) -> Plan {
        Plan { calls: 1_000_000, lifecycles: 100_000, seed, timeout: Duration::from_secs(4 * 3600) }
    }

    /// The quick form, inside `scripts/test.sh`.
    pub fn quick(seed: u32) -> Plan {
        Plan { calls: 50_000, lifecycles: 5_000, seed, timeout: Duration::from_secs(600) }
    }

    /// The kernel command line.
    pub fn append(&self) -> String {
        let fuzz_arg = (self.calls.div_ceil(1000) << 32) | u64::from(self.seed);
        // Bit 63 of churn's argument: the fuzzer may kill its children.
        let churn_arg = self.lifecycles | 1 << 63;
        format!("log=warn asid_bits=4 mm.poison=on run=fuzz:{fuzz_arg:#x},churn:{churn_arg:#x}")
    }

    pub fn qemu(&self, image: &Path) -> Qemu {
        Qemu {
            machine: Machine { cpu: "max".into(), cpus: 4, mem_mb: 1024, el2: false },
            image: image.to_path_buf(),
            append: self.append(),
            gdb: false,
            plugin: None,
        }
    }
}

/// What one stress boot showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Calls the fuzzer made.
    pub calls: u64,
    /// Lifecycles: the `churn` program's and the fuzzer's churn's.
    pub lifecycles: u64,
    /// Kernel panics or unexpected exceptions (the run ends at the first).
    pub panics: u64,
    /// Resources not back at their baseline, as the kernel listed them.
    pub leaks: Vec<String>,
    /// Lines of the programs that report a failure (`FAIL`), and a
    /// summary that is missing.
    pub failures: Vec<String>,
    /// QEMU's exit status.
    pub status: i32,
    pub wall: Duration,
    /// The kernel's own line on resources (heap before and after).
    pub resources: Option<String>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.panics == 0 && self.leaks.is_empty() && self.failures.is_empty() && self.status == 0
    }

    /// Reads the console of a stress boot.
    pub fn parse(console: &str, status: i32, wall: Duration) -> Summary {
        let mut s = Summary { status, wall, ..Summary::default() };
        let (mut fuzz_seen, mut churn_seen) = (false, false);
        for line in console.lines() {
            if line.contains("panic on CPU") || line.contains("kernel: unrecoverable exception") {
                s.panics += 1;
            }
            if let Some(rest) = line.strip_prefix("fuzz: seed ") {
                fuzz_seen = true;
                s.calls += number_before(rest, " calls").unwrap_or(0);
                s.lifecycles += number_before(rest, " lifecycles alongside").unwrap_or(0);
            }
            if let Some(rest) = line.strip_prefix("churn: ") {
                if let Some(n) = number_before(rest, " lifecycles") {
                    churn_seen = true;
                    s.lifecycles += n;
                }
            }
            if let Some(rest) = line.strip_prefix("run: LEAK: ") {
                s.leaks.extend(rest.split(", ").map(String::from));
            }
            if line.starts_with("run: resources back to baseline") {
                s.resources = Some(line.trim_start_matches("run: ").to_string());
            }
            if line.contains(": FAIL") {
                s.failures.push(line.to_string());
            }
        }
        if !fuzz_seen {
            s.failures.push("the fuzzer printed no summary".into());
        }
        if !churn_seen {
            s.failures.push("the churn printed no summary".into());
        }
        if s.resources.is_none() && s.leaks.is_empty() && s.panics == 0 {
            s.failures.push("the kernel printed no resource check".into());
        }
        s
    }
}

/// The integer that ends right before `suffix` in `text`.
fn number_before(text: &str, suffix: &str) -> Option<u64> {
    let end = text.find(suffix)?;
    let start = text[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    text[start..end].parse().ok()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stress: {} calls, {} lifecycles, {} panics, {} leaks (wall {} s)",
            self.calls,
            self.lifecycles,
            self.panics,
            self.leaks.len(),
            self.wall.as_secs()
        )
    }
}

/// Boots `plan` on `image`; `echo` prints console lines as they come.
pub fn run(plan: &Plan, image: &Path, echo: bool) -> std::io::Result<(Summary, String)> {
    let q = plan.qemu(image);
    let launcher = ProcessLauncher { program: Qemu::program(), verbose: false };
    let started = Instant::now();
    let mut boot = launcher.launch(&q)?;
    let deadline = started + plan.timeout;
    let mut console = String::new();
    let mut timed_out = false;
    loop {
        match boot.next(deadline) {
            Next::Line(l) => {
                if echo {
                    eprintln!("{l}");
                }
                console.push_str(&l);
                console.push('\n');
            }
            Next::Ended => break,
            Next::DeadlinePassed => {
                boot.kill();
                timed_out = true;
                break;
            }
        }
    }
    let (exit, stderr) = boot.finish();
    console.push_str(&stderr);
    let mut s = Summary::parse(&console, exit.code(), started.elapsed());
    if timed_out {
        s.failures.push(format!("no end within {} s", plan.timeout.as_secs()));
    }
    Ok((s, launcher.command_line(&q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
tlbkernel 0.1.0
fuzz: seed 7: 20112 calls, 20 workers (3 died), 1000 lifecycles alongside (62 killed)
fuzz:   mmap          ok 10 EINVAL 3
churn: 2000 lifecycles (125 killed), 0 forks refused
run: fuzz (pid 1) exited with status 0
run: resources back to baseline (heap 1 bytes before and after)
";

    #[test]
    fn a_clean_run_sums_up() {
        let s = Summary::parse(GOOD, 0, Duration::from_secs(61));
        assert!(s.passed(), "{s:?}");
        assert_eq!((s.calls, s.lifecycles, s.panics), (20112, 3000, 0));
        assert_eq!(s.to_string(), "stress: 20112 calls, 3000 lifecycles, 0 panics, 0 leaks (wall 61 s)");
    }

    #[test]
    fn panics_leaks_and_failures_are_seen() {
        let leak = GOOD.replace(
            "run: resources back to baseline (heap 1 bytes before and after)",
            "run: LEAK: tasks: 9 -> 10, heap bytes: 5 -> 6",
        );
        let s = Summary::parse(&leak, 1, Duration::ZERO);
        assert_eq!(s.leaks, ["tasks: 9 -> 10", "heap bytes: 5 -> 6"]);
        assert!(!s.passed());
        let s = Summary::parse("fuzz: seed 1: 5 calls, \npanic on CPU 2 at x.rs:1:1: oops\n", 3, Duration::ZERO);
        assert_eq!(s.panics, 1);
        assert!(s.failures.iter().any(|f| f.contains("churn printed no summary")), "{s:?}");
        let s = Summary::parse(&GOOD.replace("churn: 2000", "churn: FAIL: lane 1: x\nchurn: 2000"), 1, Duration::ZERO);
        assert_eq!(s.failures.len(), 1, "{s:?}");
        assert!(!s.passed());
    }

    #[test]
    fn the_long_form_asks_for_a_million_calls_under_4_bit_asids() {
        let p = Plan::long(3);
        assert!(p.append().contains("asid_bits=4"));
        assert!(p.append().contains("run=fuzz:0x3e800000003,churn:0x80000000000186a0"), "{}", p.append());
        assert_eq!(p.qemu(Path::new("/k")).machine.cpus, 4);
    }
}
