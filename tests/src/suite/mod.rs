//! Runs selected in-kernel tests: one QEMU boot per suite of tests that can
//! share a machine, suites in parallel.
//!
//! Tests with the same (cpu, cpus, mem_mb, append, flags without FRESH) share
//! a boot; a FRESH test gets a boot of its own. Each boot's kernel command
//! line is `<append> ktest.run=<name1>,<name2>,...`, and the kernel runs
//! exactly those tests in section order.

mod options;
mod process;
mod runner;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use options::{OptionsError, RunOptions, BOOT_TIMEOUT, CONSOLE_TAIL, DEFAULT_TEST_TIMEOUT, HOST_GRACE};
pub use process::{run_to_end, ProcessLauncher};
pub use runner::{run_suite, Boot, Launcher, Next};

use crate::ktests::{Flags, KTest};
use crate::qemu::{Machine, Qemu};

/// Tests that share one QEMU boot, in section order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suite {
    pub machine: Machine,
    /// The records' extra kernel command line.
    pub append: String,
    pub tests: Vec<KTest>,
}

impl Suite {
    /// The boot that runs `names` (a subset of this suite, in order).
    pub fn qemu(&self, image: &Path, names: &[&str]) -> Qemu {
        let append = format!("{} ktest.run={}", self.append.trim(), names.join(","));
        Qemu {
            machine: self.machine.clone(),
            image: image.into(),
            append: append.trim().to_owned(),
            gdb: false,
            plugin: None,
        }
    }

    /// A short description for progress lines.
    pub fn describe(&self) -> String {
        let m = &self.machine;
        let mut s = format!("-cpu {} -smp {} -m {}M", m.cpu, m.cpus, m.mem_mb);
        if m.el2 {
            s.push_str(" EL2");
        }
        if !self.append.trim().is_empty() {
            s.push_str(&format!(" append={:?}", self.append.trim()));
        }
        s
    }
}

/// Bytes of test names one boot's `ktest.run=` may carry: the kernel reads
/// at most `platform::board::BOOTARGS_MAX` (2048) bytes of command line,
/// and a suite's own options and the separators need the rest.
pub const MAX_NAMES_BYTES: usize = 1700;

/// Groups `tests` into suites, ordered by their first test. Tests that share
/// a machine share a boot, as many as fit one command line.
pub fn group<'a>(tests: impl IntoIterator<Item = &'a KTest>) -> Vec<Suite> {
    let mut tests: Vec<&KTest> = tests.into_iter().collect();
    tests.sort_by_key(|t| t.index);
    let mut suites: Vec<Suite> = Vec::new();
    let mut shared: HashMap<(Machine, String, Flags), usize> = HashMap::new();
    for test in tests {
        let machine = Machine { cpu: test.cpu.clone(), cpus: test.cpus, mem_mb: test.mem_mb, el2: test.flags.el2() };
        let key = (machine.clone(), test.append.clone(), test.flags.without_fresh());
        let slot = if test.flags.fresh() { None } else { shared.get(&key).copied() };
        let fits =
            |s: &Suite| s.tests.iter().map(|t| t.name.len() + 1).sum::<usize>() + test.name.len() <= MAX_NAMES_BYTES;
        let slot = slot.filter(|&i| fits(&suites[i]));
        match slot {
            Some(i) => suites[i].tests.push(test.clone()),
            None => {
                if !test.flags.fresh() {
                    shared.insert(key, suites.len());
                }
                suites.push(Suite { machine, append: test.append.clone(), tests: vec![test.clone()] });
            }
        }
    }
    suites
}

/// How a test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
    Timeout,
}

/// One test's result, with what is needed to understand and reproduce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub verdict: Verdict,
    /// The kernel's reason (`# ...`), or the harness's account of a crash.
    pub reason: String,
    /// The test's console lines (for a crash: the boot's console tail).
    pub console: Vec<String>,
    /// The QEMU command line of the boot that ran it.
    pub command: String,
}

impl Outcome {
    /// The text libtest shows for a failed (or skipped) test.
    pub fn message(&self) -> String {
        let head = match self.verdict {
            Verdict::Pass => "passed",
            Verdict::Fail => "FAILED",
            Verdict::Skip => "SKIPPED",
            Verdict::Timeout => "TIMEOUT",
        };
        let mut msg = format!("{head}: {}\n", if self.reason.is_empty() { "(no reason given)" } else { &self.reason });
        msg.push_str(&format!("--- console ({} lines) ---\n", self.console.len()));
        for line in &self.console {
            msg.push_str(line);
            msg.push('\n');
        }
        msg.push_str("--- reproduce the boot with ---\n");
        msg.push_str(&self.command);
        msg.push_str("\n--- or rerun this test alone with ---\n");
        msg.push_str(&format!("scripts/test.sh -p ktest-harness --test kernel -- --exact {}\n", self.name));
        msg
    }
}

/// Runs `suites` with real QEMU processes, at most `opts.jobs` at once.
/// Returns one outcome per test of every suite.
pub fn run_suites(suites: &[Suite], image: &Path, opts: &RunOptions) -> Vec<Outcome> {
    run_suites_with(suites, image, opts, &ProcessLauncher { program: Qemu::program(), verbose: opts.verbose })
}

/// [`run_suites`] with any way of booting.
pub fn run_suites_with(suites: &[Suite], image: &Path, opts: &RunOptions, launcher: &dyn Launcher) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let workers = opts.jobs.clamp(1, suites.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(suite) = suites.get(i) else { break };
                eprintln!(
                    "ktest: suite {}/{} ({} tests): {}",
                    i + 1,
                    suites.len(),
                    suite.tests.len(),
                    suite.describe()
                );
                let results = run_suite(suite, image, opts, launcher);
                let failed = results.iter().filter(|o| matches!(o.verdict, Verdict::Fail | Verdict::Timeout)).count();
                eprintln!("ktest: suite {}/{} done, {failed} of {} failed", i + 1, suites.len(), results.len());
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).extend(results);
            });
        }
    });
    outcomes.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn ktest(index: usize, name: &str, cpu: &str, cpus: u32, append: &str, flags: u32) -> KTest {
        KTest {
            index,
            record_va: 0x1000 + 72 * index as u64,
            name: name.into(),
            cpu: cpu.into(),
            append: append.into(),
            cpus,
            mem_mb: 1024,
            timeout_s: 10,
            flags: Flags(flags),
        }
    }

    fn names(suite: &Suite) -> Vec<&str> {
        suite.tests.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn grouping() {
        let tests = [
            ktest(0, "a", "max", 4, "", 0),
            ktest(1, "b", "cortex-a72", 4, "", 0),
            ktest(2, "c", "max", 4, "", Flags::FRESH),
            ktest(3, "d", "max", 4, "", 0),
            ktest(4, "e", "max", 4, "", Flags::FRESH | Flags::EL2),
            ktest(5, "f", "max", 4, "", Flags::EL2),
            ktest(6, "g", "max", 2, "", 0),
            ktest(7, "h", "max", 4, "x=1", 0),
            ktest(8, "i", "cortex-a72", 4, "", 0),
        ];
        // Selection order does not matter; section order does.
        let suites = group(tests.iter().rev());
        let got: Vec<_> = suites.iter().map(names).collect();
        assert_eq!(got, [vec!["a", "d"], vec!["b", "i"], vec!["c"], vec!["e"], vec!["f"], vec!["g"], vec!["h"]]);
        assert!(suites[3].machine.el2 && suites[4].machine.el2 && !suites[0].machine.el2);
        assert_eq!(suites[6].append, "x=1");
    }

    #[test]
    fn suite_command_line_and_limits() {
        let suites = group(&[ktest(0, "a::b", "max", 4, " log=trace ", 0), ktest(1, "c", "max", 4, " log=trace ", 0)]);
        let qemu = suites[0].qemu(Path::new("/k.img"), &["a::b", "c"]);
        assert_eq!(qemu.append, "log=trace ktest.run=a::b,c");
        let bare = group(&[ktest(0, "a", "max", 1, "", 0)]);
        assert_eq!(bare[0].qemu(Path::new("/k.img"), &["a"]).append, "ktest.run=a");
        let opts = RunOptions { timeout_scale: 2.0, ..RunOptions::default() };
        assert_eq!(opts.test_timeout(10), Duration::from_secs(20) + HOST_GRACE);
        assert_eq!(opts.test_timeout(0), DEFAULT_TEST_TIMEOUT * 2 + HOST_GRACE);
        assert_eq!(opts.boot_timeout(), BOOT_TIMEOUT * 2);
    }

    #[test]
    fn failure_message_has_console_and_command() {
        let o = Outcome {
            name: "t".into(),
            verdict: Verdict::Timeout,
            reason: "no result within 15 s".into(),
            console: vec!["spinning".into()],
            command: "qemu-system-aarch64 -M virt".into(),
        };
        let msg = o.message();
        assert!(msg.starts_with("TIMEOUT: no result within 15 s\n"));
        assert!(msg.contains("spinning\n") && msg.contains("\nqemu-system-aarch64 -M virt\n"));
        assert!(msg.ends_with("-- --exact t\n"));
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::ktests::Flags;

    #[test]
    fn a_suite_too_long_for_one_command_line_is_split() {
        let t = |i: usize| KTest {
            index: i,
            record_va: 0,
            name: format!("area::a_test_with_a_rather_long_descriptive_name_{i:03}"),
            cpu: "max".into(),
            cpus: 4,
            mem_mb: 1024,
            timeout_s: 60,
            flags: Flags::default(),
            append: String::new(),
        };
        let tests: Vec<KTest> = (0..100).map(t).collect();
        let suites = group(&tests);
        assert!(suites.len() > 1, "100 long names need more than one boot");
        for s in &suites {
            let names: Vec<&str> = s.tests.iter().map(|t| t.name.as_str()).collect();
            let q = s.qemu(Path::new("/k"), &names);
            assert!(q.append.len() < 2048, "command line of {} bytes", q.append.len());
        }
        assert_eq!(suites.iter().map(|s| s.tests.len()).sum::<usize>(), 100);
        assert!(suites.windows(2).all(|w| w[0].tests.last().unwrap().index < w[1].tests[0].index), "in order");
    }
}
