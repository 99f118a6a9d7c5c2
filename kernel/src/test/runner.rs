//! Runs the selected tests and reports KTAP; recovers from failures.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

use super::{all, KTest};
use crate::arch::recover::{try_call, JmpBuf};
use crate::cmdline::TestSelection;
use crate::percpu;
use platform::semihost;

/// Why the current test stopped early: the first failure message wins.
struct FailureBuf {
    buf: [u8; 512],
    len: usize,
    skip: bool,
}

static FAILURE: Mutex<FailureBuf> = Mutex::new(FailureBuf { buf: [0; 512], len: 0, skip: false });
/// Set when any CPU reported a failure since the current test started.
static FAILED: AtomicBool = AtomicBool::new(false);

impl Write for FailureBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Records why the current test failed (from a panic or exception on any CPU).
pub fn record_failure(args: fmt::Arguments) {
    FAILED.store(true, Ordering::Release);
    if let Some(mut f) = FAILURE.try_lock() {
        if f.len == 0 {
            let _ = f.write_fmt(args);
        }
    }
}

fn take_failure() -> (String, bool) {
    let mut f = FAILURE.lock();
    let s = String::from_utf8_lossy(&f.buf[..f.len]).replace('\n', " ");
    let skip = f.skip;
    f.len = 0;
    f.skip = false;
    (s, skip)
}

/// How a function run under [`catch`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

/// Runs `f` on this CPU; a panic or unexpected exception inside it (or a
/// failure reported by another CPU meanwhile) becomes `Outcome::Failed`.
pub fn catch<F: FnMut()>(f: F) -> Outcome {
    let _ = take_failure();
    FAILED.store(false, Ordering::Release);
    let mut jb = JmpBuf::default();
    let me = percpu::this();
    let prev = me.recovery.swap(&mut jb, Ordering::AcqRel);
    let returned = try_call(&mut jb, f);
    percpu::this().recovery.store(prev, Ordering::Release);
    let (msg, skip) = take_failure();
    // Always consume the flag, so a failure caught here does not leak into
    // an enclosing `catch`.
    let failed_elsewhere = FAILED.swap(false, Ordering::AcqRel);
    if skip {
        Outcome::Skipped(msg)
    } else if !returned || failed_elsewhere {
        Outcome::Failed(if msg.is_empty() { String::from("failed without a message") } else { msg })
    } else {
        Outcome::Passed
    }
}

/// Ends the current test as skipped.
pub fn skip(reason: &str) -> ! {
    {
        let mut f = FAILURE.lock();
        f.len = 0;
        let _ = f.write_str(reason);
        f.skip = true;
    }
    let jb = percpu::this().recovery.load(Ordering::Acquire);
    assert!(!jb.is_null(), "skip() outside a test");
    // SAFETY: `catch` published `jb` on this CPU and is still running.
    unsafe { crate::arch::recover::jump(jb) }
}

/// Prints the list of tests (`ktest.list`).
pub fn list() {
    for t in all() {
        crate::kprintln!(
            "{} cpu={} cpus={} mem={} timeout={} flags={} append={:?}",
            t.name.as_str(),
            t.cpu.as_str(),
            t.cpus,
            t.mem_mb,
            t.timeout_s,
            t.flags,
            t.append.as_str()
        );
    }
}

/// Runs the selected tests and ends the run with the KTAP exit status.
pub fn run(sel: &TestSelection) -> ! {
    let tests: Vec<&KTest> = match sel {
        TestSelection::None => Vec::new(),
        TestSelection::All => all().iter().collect(),
        TestSelection::Named(names) => all().iter().filter(|t| names.iter().any(|n| n == t.name.as_str())).collect(),
    };
    let unknown: Vec<&String> = match sel {
        TestSelection::Named(names) => {
            names.iter().filter(|n| !all().iter().any(|t| t.name.as_str() == n.as_str())).collect()
        }
        _ => Vec::new(),
    };
    crate::kprintln!("KTAP version 1");
    crate::kprintln!("1..{}", tests.len() + unknown.len());
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, t) in tests.iter().enumerate() {
        let name = t.name.as_str();
        crate::kprintln!("# start {name}");
        match catch(t.func) {
            Outcome::Passed => {
                passed += 1;
                crate::kprintln!("ok {} {name}", i + 1);
            }
            Outcome::Failed(msg) => {
                failed += 1;
                crate::kprintln!("not ok {} {name} # {msg}", i + 1);
            }
            Outcome::Skipped(msg) => {
                skipped += 1;
                crate::kprintln!("ok {} {name} # SKIP {msg}", i + 1);
            }
        }
    }
    for (j, n) in unknown.iter().enumerate() {
        failed += 1;
        crate::kprintln!("not ok {} {n} # no such test", tests.len() + j + 1);
    }
    crate::kprintln!("# {passed} passed, {failed} failed, {skipped} skipped");
    let status = if failed > 0 {
        semihost::EXIT_FAIL
    } else if passed == 0 && skipped > 0 {
        semihost::EXIT_SKIP
    } else {
        semihost::EXIT_PASS
    };
    semihost::exit(status)
}
