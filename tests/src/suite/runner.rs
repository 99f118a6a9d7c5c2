//! One suite's boots: deadlines, timeouts, crashes and relaunches.
//!
//! Every boot ends with at least one more test decided, so a suite needs at
//! most one boot per test:
//! - a test that outlives its deadline is recorded as TIMEOUT, QEMU is
//!   killed, and the tests not reached are relaunched;
//! - if QEMU exits (or the boot hangs) before a test reports, that test fails
//!   with the console tail and exit status, and the rest get one retry boot;
//! - after the kernel's own `# TIMEOUT` and exit 124, the rest are relaunched.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::{Outcome, RunOptions, Suite, Verdict, CONSOLE_TAIL};
use crate::ktap::{Event, Parser, Status};
use crate::ktests::KTest;
use crate::qemu::{Exit, Qemu};

/// What waiting on a boot produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// A console line, without its newline.
    Line(String),
    /// QEMU closed its console (it is exiting).
    Ended,
    /// The deadline passed first.
    DeadlinePassed,
}

/// A running QEMU.
pub trait Boot {
    /// The next console line, waiting at most until `deadline`.
    fn next(&mut self, deadline: Instant) -> Next;
    /// Kills QEMU.
    fn kill(&mut self);
    /// Waits for QEMU to exit: its exit and what it printed on stderr.
    fn finish(&mut self) -> (Exit, String);
}

/// A way to start QEMU.
pub trait Launcher: Sync {
    fn launch(&self, qemu: &Qemu) -> std::io::Result<Box<dyn Boot>>;
    /// The command line `launch` runs, for reproducing a result by hand.
    fn command_line(&self, qemu: &Qemu) -> String;
}

/// How a boot ended, for the suite loop.
enum BootEnd {
    /// Every test of the boot was decided.
    Complete,
    /// Tests were not reached through no fault of theirs: boot again.
    Relaunch,
    /// QEMU died or hung outside a test: the rest get the one retry.
    Crashed,
}

/// Runs `suite` to the end; one outcome per test, in section order.
pub fn run_suite(suite: &Suite, image: &Path, opts: &RunOptions, launcher: &dyn Launcher) -> Vec<Outcome> {
    let mut results: HashMap<String, Outcome> = HashMap::new();
    let mut retries_left = 1;
    let mut last_command = String::new();
    loop {
        let pending: Vec<&KTest> = suite.tests.iter().filter(|t| !results.contains_key(&t.name)).collect();
        if pending.is_empty() {
            break;
        }
        let names: Vec<&str> = pending.iter().map(|t| t.name.as_str()).collect();
        let mut qemu = suite.qemu(image, &names);
        if !opts.append.is_empty() {
            // First, so a test's own options still win.
            qemu.append = format!("{} {}", opts.append, qemu.append);
        }
        let command = launcher.command_line(&qemu);
        let decided_before = results.len();
        let mut boot = match launcher.launch(&qemu) {
            Ok(boot) => boot,
            Err(e) => {
                let reason = format!("cannot start QEMU ({e}); is qemu-system-arm installed (scripts/setup.sh)?");
                fail_rest(&mut results, &pending, &reason, &command);
                break;
            }
        };
        let mut run = BootRun { pending: &pending, opts, command: &command, results: &mut results };
        let end = run.drive(boot.as_mut());
        last_command = command;
        if let BootEnd::Crashed = end {
            if retries_left == 0 {
                break;
            }
            retries_left -= 1;
        }
        if results.len() == decided_before {
            break; // Cannot happen (every boot decides a test); never loop on it.
        }
    }
    let rest: Vec<&KTest> = suite.tests.iter().filter(|t| !results.contains_key(&t.name)).collect();
    let reason =
        "not run: two boots of this suite crashed or hung before reaching it (see the tests that failed before it)";
    fail_rest(&mut results, &rest, reason, &last_command);
    suite.tests.iter().filter_map(|t| results.remove(&t.name)).collect()
}

fn fail_rest(results: &mut HashMap<String, Outcome>, tests: &[&KTest], reason: &str, command: &str) {
    for t in tests {
        results.insert(t.name.clone(), outcome(&t.name, Verdict::Fail, reason.into(), Vec::new(), command));
    }
}

fn outcome(name: &str, verdict: Verdict, reason: String, console: Vec<String>, command: &str) -> Outcome {
    Outcome { name: name.into(), verdict, reason, console, command: command.into() }
}

/// The state of one boot.
struct BootRun<'a> {
    /// The tests this boot was asked to run, in order.
    pending: &'a [&'a KTest],
    opts: &'a RunOptions,
    command: &'a str,
    results: &'a mut HashMap<String, Outcome>,
}

/// Why the reading loop stopped.
enum Stop {
    AllReported,
    Ended,
    Deadline,
}

impl BootRun<'_> {
    fn position(&self, name: &str) -> Option<usize> {
        self.pending.iter().position(|t| t.name == name)
    }

    fn decided(&self, i: usize) -> bool {
        self.results.contains_key(&self.pending[i].name)
    }

    fn record(&mut self, i: usize, verdict: Verdict, reason: String, console: Vec<String>) {
        let name = &self.pending[i].name;
        self.results.insert(name.clone(), outcome(name, verdict, reason, console, self.command));
    }

    /// Tests before `upto` that the kernel went past without a result.
    fn pass_over(&mut self, upto: usize) {
        for i in 0..upto {
            if !self.decided(i) {
                let reason = format!("the kernel went on to {} without reporting this test", self.pending[upto].name);
                self.record(i, Verdict::Fail, reason, Vec::new());
            }
        }
    }

    fn first_undecided(&self) -> Option<usize> {
        (0..self.pending.len()).find(|&i| !self.decided(i))
    }

    fn drive(&mut self, boot: &mut dyn Boot) -> BootEnd {
        let mut parser = Parser::new();
        let mut console = Vec::new();
        let mut limit = self.opts.boot_timeout();
        let mut deadline = Instant::now() + limit;
        let mut reported_here = Vec::new();
        let stop = loop {
            let line = match boot.next(deadline) {
                Next::Line(line) => line,
                Next::Ended => break Stop::Ended,
                Next::DeadlinePassed => {
                    boot.kill();
                    break Stop::Deadline;
                }
            };
            let event = parser.feed(&line);
            console.push(line);
            match event {
                Event::Start(name) => {
                    let index = self.position(&name);
                    limit =
                        index.map_or(self.opts.boot_timeout(), |i| self.opts.test_timeout(self.pending[i].timeout_s));
                    deadline = Instant::now() + limit;
                    if let Some(i) = index {
                        self.pass_over(i);
                    }
                }
                Event::Result => {
                    let report = parser.reports().last().expect("a result was just parsed").clone();
                    if let Some(i) = self.position(&report.name).filter(|&i| !self.decided(i)) {
                        self.pass_over(i);
                        let (verdict, reason) = match report.status {
                            Status::Pass => (Verdict::Pass, String::new()),
                            Status::Fail { reason } => (Verdict::Fail, reason),
                            Status::Skip { reason } => (Verdict::Skip, reason),
                        };
                        self.record(i, verdict, reason, report.console);
                        reported_here.push(i);
                    }
                    limit = self.opts.boot_timeout();
                    deadline = Instant::now() + limit;
                    if self.first_undecided().is_none() {
                        break Stop::AllReported;
                    }
                }
                _ => {}
            }
        };
        match stop {
            Stop::AllReported => self.epilogue(boot, &mut console, deadline, &reported_here),
            Stop::Deadline => {
                let (exit, stderr) = boot.finish();
                match parser.current().and_then(|(name, lines)| Some((self.position(name)?, lines.to_vec()))) {
                    Some((i, lines)) if !self.decided(i) => {
                        let reason = format!(
                            "no result within {:.0?} (timeout_s = {}, KTEST_TIMEOUT_SCALE = {}); QEMU was killed",
                            limit, self.pending[i].timeout_s, self.opts.timeout_scale
                        );
                        self.record(i, Verdict::Timeout, reason, lines);
                        BootEnd::Relaunch
                    }
                    _ => {
                        let when =
                            if reported_here.is_empty() { "after QEMU started" } else { "after the previous result" };
                        let why = format!("no `# start` line within {limit:.0?} {when}; QEMU was killed ({exit})");
                        self.blame_next(why, &console, &stderr)
                    }
                }
            }
            Stop::Ended => {
                let (exit, stderr) = boot.finish();
                match parser.current().and_then(|(name, _)| self.position(name)) {
                    Some(i) if !self.decided(i) => {
                        let reason = format!("QEMU ended while the test was running: {exit}");
                        self.record(i, Verdict::Fail, reason, tail(&console, &stderr));
                        BootEnd::Crashed
                    }
                    _ => self.blame_next(format!("QEMU ended before this test started: {exit}"), &console, &stderr),
                }
            }
        }
    }

    /// The next test in line fails for a crash or hang outside any test.
    fn blame_next(&mut self, reason: String, console: &[String], stderr: &str) -> BootEnd {
        if let Some(i) = self.first_undecided() {
            self.record(i, Verdict::Fail, reason, tail(console, stderr));
        }
        BootEnd::Crashed
    }

    /// Every test reported: QEMU must now exit, with a status that agrees.
    /// A disagreement fails the boot's last reported test.
    fn epilogue(
        &mut self,
        boot: &mut dyn Boot,
        console: &mut Vec<String>,
        deadline: Instant,
        here: &[usize],
    ) -> BootEnd {
        let exited = loop {
            match boot.next(deadline) {
                Next::Line(line) => console.push(line),
                Next::Ended => break true,
                Next::DeadlinePassed => {
                    boot.kill();
                    break false;
                }
            }
        };
        let (exit, stderr) = boot.finish();
        let failures = here
            .iter()
            .any(|&i| matches!(self.results[&self.pending[i].name].verdict, Verdict::Fail | Verdict::Timeout));
        let problem = if !exited {
            Some(format!("QEMU did not exit within {:.0?} after the last result", self.opts.boot_timeout()))
        } else if !exit.is_clean() {
            Some(format!("QEMU then ended with {exit}"))
        } else if exit == Exit::Failed && !failures {
            Some(format!("the kernel then exited with {exit}, though no test of this boot failed"))
        } else {
            None
        };
        if let (Some(problem), Some(&last)) = (problem, here.last()) {
            let name = self.pending[last].name.clone();
            let previous = self.results.remove(&name).expect("reported tests have results");
            let mut lines = previous.console;
            lines.push("--- after the test: the boot's console tail ---".into());
            lines.extend(tail(console, &stderr));
            let said = if previous.reason.is_empty() { String::new() } else { format!(" ({})", previous.reason) };
            let reason = format!("reported {:?}{said}, but {problem}", previous.verdict);
            self.results.insert(name.clone(), outcome(&name, Verdict::Fail, reason, lines, self.command));
        }
        BootEnd::Complete
    }
}

/// The last console lines and QEMU's stderr, for a crash report.
fn tail(console: &[String], stderr: &str) -> Vec<String> {
    let mut lines: Vec<String> = console[console.len().saturating_sub(CONSOLE_TAIL)..].to_vec();
    if console.len() > CONSOLE_TAIL {
        lines.insert(0, format!("... ({} earlier lines)", console.len() - CONSOLE_TAIL));
    }
    if !stderr.trim().is_empty() {
        lines.push("--- QEMU stderr ---".into());
        lines.extend(stderr.lines().map(str::to_owned));
    }
    lines
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
