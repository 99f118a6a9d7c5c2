//! The suite runner against scripted fake boots.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;
use crate::suite::{group, tests::ktest};

/// How long a deadline leaves from now.
fn remaining(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// One step of a fake boot's console.
#[derive(Clone, Debug)]
enum Step {
    Line(&'static str),
    /// Nothing more arrives: the next wait reaches its deadline.
    Hang,
    /// QEMU exits with this status.
    Exit(i32),
}
use Step::{Exit as Quit, Hang, Line};

struct FakeBoot {
    steps: VecDeque<Step>,
    exit: Option<Exit>,
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Boot for FakeBoot {
    fn next(&mut self, deadline: Instant) -> Next {
        match self.steps.pop_front() {
            Some(Line(l)) => Next::Line(l.into()),
            Some(Hang) => {
                self.log.lock().unwrap().push(format!("hang after {}s", remaining(deadline).as_secs_f64().round()));
                Next::DeadlinePassed
            }
            Some(Quit(code)) => {
                self.exit = Some(Exit::from_code(code));
                Next::Ended
            }
            None => {
                self.exit.get_or_insert(Exit::Passed);
                Next::Ended
            }
        }
    }

    fn kill(&mut self) {
        self.log.lock().unwrap().push("kill".into());
        self.exit = Some(Exit::Crashed { code: None, signal: Some(9) });
    }

    fn finish(&mut self) -> (Exit, String) {
        (self.exit.expect("finish after the end"), "qemu: fake stderr\n".into())
    }
}

/// Hands out one script per launch and records each boot's `-append`.
struct FakeLauncher {
    boots: Mutex<VecDeque<Vec<Step>>>,
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl FakeLauncher {
    fn new(boots: Vec<Vec<Step>>) -> Self {
        FakeLauncher { boots: Mutex::new(boots.into()), log: Default::default() }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Launcher for FakeLauncher {
    fn launch(&self, qemu: &Qemu) -> std::io::Result<Box<dyn Boot>> {
        self.log.lock().unwrap().push(qemu.append.clone());
        let steps = self.boots.lock().unwrap().pop_front().ok_or(std::io::ErrorKind::NotFound)?;
        Ok(Box::new(FakeBoot { steps: steps.into(), exit: None, log: self.log.clone() }))
    }

    fn command_line(&self, qemu: &Qemu) -> String {
        format!("fake-qemu -append '{}'", qemu.append)
    }
}

fn suite_abc() -> Suite {
    let tests = [ktest(0, "a", "max", 4, "", 0), ktest(1, "b", "max", 4, "", 0), ktest(2, "c", "max", 4, "", 0)];
    group(&tests).remove(0)
}

fn run(boots: Vec<Vec<Step>>) -> (Vec<Outcome>, Vec<String>) {
    let launcher = FakeLauncher::new(boots);
    let out = run_suite(&suite_abc(), Path::new("/k.img"), &RunOptions::default(), &launcher);
    assert_eq!(out.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    (out, launcher.log())
}

fn verdicts(out: &[Outcome]) -> Vec<Verdict> {
    out.iter().map(|o| o.verdict.clone()).collect()
}

const HEAD: [Step; 3] = [Line("[boot] hello"), Line("KTAP version 1"), Line("1..3")];

fn boot(steps: &[Step]) -> Vec<Step> {
    HEAD.iter().chain(steps).cloned().collect()
}

#[test]
fn one_clean_boot() {
    let (out, log) = run(vec![boot(&[
        Line("# start a"),
        Line("ok 1 a"),
        Line("# start b"),
        Line("b says hi"),
        Line("ok 2 b # SKIP no FEAT_X"),
        Line("# start c"),
        Line("not ok 3 c # expected 1, got 2"),
        Quit(1),
    ])]);
    assert_eq!(log, ["ktest.run=a,b,c"]);
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Skip, Verdict::Fail]);
    assert_eq!(out[1].console, ["b says hi"]);
    assert_eq!(out[1].reason, "no FEAT_X");
    assert_eq!(out[2].reason, "expected 1, got 2");
    assert_eq!(out[2].command, "fake-qemu -append 'ktest.run=a,b,c'");
}

#[test]
fn host_timeout_kills_and_relaunches_the_rest() {
    let (out, log) = run(vec![
        boot(&[Line("# start a"), Line("ok 1 a"), Line("# start b"), Line("spinning"), Hang]),
        boot(&[Line("# start c"), Line("ok 1 c")]),
    ]);
    // b's limit: timeout_s 10 + HOST_GRACE 5.
    assert_eq!(log, ["ktest.run=a,b,c", "hang after 15s", "kill", "ktest.run=c"]);
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Timeout, Verdict::Pass]);
    assert!(out[1].message().starts_with("TIMEOUT: no result within 15s"), "{}", out[1].message());
    assert_eq!(out[1].console, ["spinning"]);
    assert!(out[1].message().contains("ktest.run=a,b,c"));
}

#[test]
fn crash_fails_the_running_test_and_retries_once() {
    let (out, log) = run(vec![
        boot(&[Line("# start a"), Line("ok 1 a"), Line("# start b"), Line("Synchronous exception at EL1"), Quit(3)]),
        boot(&[Line("# start c"), Line("ok 1 c")]),
    ]);
    assert_eq!(log, ["ktest.run=a,b,c", "ktest.run=c"]);
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Fail, Verdict::Pass]);
    assert!(out[1].reason.contains("exit status 3"), "{}", out[1].reason);
    assert!(out[1].console.iter().any(|l| l.contains("Synchronous exception")));
    assert!(out[1].console.iter().any(|l| l == "qemu: fake stderr"));
}

#[test]
fn second_crash_gives_up_on_the_rest() {
    let (out, log) = run(vec![boot(&[Quit(3)]), boot(&[Line("# start b"), Quit(3)])]);
    assert_eq!(log, ["ktest.run=a,b,c", "ktest.run=b,c"]);
    assert_eq!(verdicts(&out), [Verdict::Fail, Verdict::Fail, Verdict::Fail]);
    assert!(out[0].reason.contains("before this test started"), "{}", out[0].reason);
    assert!(out[1].reason.contains("while the test was running"), "{}", out[1].reason);
    assert!(out[2].reason.starts_with("not run"), "{}", out[2].reason);
}

#[test]
fn boot_hang_blames_the_first_test() {
    let (out, log) = run(vec![
        vec![Line("[boot] stuck"), Hang],
        boot(&[Line("# start b"), Line("ok 1 b"), Line("# start c"), Line("ok 2 c")]),
    ]);
    assert_eq!(log, ["ktest.run=a,b,c", "hang after 60s", "kill", "ktest.run=b,c"]);
    assert_eq!(verdicts(&out), [Verdict::Fail, Verdict::Pass, Verdict::Pass]);
    assert!(out[0].reason.contains("no `# start`"), "{}", out[0].reason);
    assert!(out[0].console.iter().any(|l| l == "[boot] stuck"));
}

#[test]
fn skipped_over_test_fails() {
    let (out, log) = run(vec![boot(&[Line("# start a"), Line("ok 1 a"), Line("# start c"), Line("ok 2 c")])]);
    assert_eq!(log, ["ktest.run=a,b,c"]);
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Fail, Verdict::Pass]);
    assert!(out[1].reason.contains("went on to c"));
}

#[test]
fn bad_exit_after_all_reported_fails_the_last_test() {
    let (out, _) = run(vec![boot(&[
        Line("# start a"),
        Line("ok 1 a"),
        Line("# start b"),
        Line("ok 2 b"),
        Line("# start c"),
        Line("ok 3 c"),
        Line("panic in shutdown"),
        Quit(1),
    ])]);
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Pass, Verdict::Fail]);
    assert!(out[2].reason.contains("exit status 1"), "{}", out[2].reason);
    assert!(out[2].console.iter().any(|l| l == "panic in shutdown"));

    let (out, log) = run(vec![boot(&[Line("ok 1 a"), Line("ok 2 b"), Line("ok 3 c"), Hang])]);
    assert_eq!(log[1..], ["hang after 60s", "kill"]);
    assert!(out[2].reason.contains("did not exit"), "{}", out[2].reason);
}

#[test]
fn qemu_missing_fails_everything() {
    let (out, _) = run(vec![]);
    assert_eq!(verdicts(&out), [Verdict::Fail, Verdict::Fail, Verdict::Fail]);
    assert!(out[0].reason.contains("cannot start QEMU"));
}

#[test]
fn suites_run_in_parallel_and_all_report() {
    let tests = [ktest(0, "a", "max", 4, "", 0), ktest(1, "b", "max", 4, "", Flags::FRESH)];
    let suites = group(&tests);
    // Which suite takes which script depends on the threads, so both fit either.
    let launcher = FakeLauncher::new(vec![vec![Line("ok 1 a"), Line("ok 1 b")]; 2]);
    let opts = RunOptions { jobs: 2, ..RunOptions::default() };
    let mut out = crate::suite::run_suites_with(&suites, Path::new("/k.img"), &opts, &launcher);
    out.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(verdicts(&out), [Verdict::Pass, Verdict::Pass]);
}

use crate::ktests::Flags;
