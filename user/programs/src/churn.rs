//! Process lifecycle churn, shared by the `churn` program and the fuzzer:
//! fork a child that maps fresh memory, checks that it reads zero, fills it
//! with a pattern no other process writes and checks it back, then exits;
//! every `KILL_EVERY`th child instead starts threads that keep writing and
//! is killed by the parent while they run.

use core::sync::atomic::{AtomicU64, Ordering};

use ulib::abi::cause;
use ulib::mm::Mapping;
use ulib::sys::{self, Fork};
use ulib::{thread, Errno};

use crate::killed;
use crate::pattern;

/// Pages each child maps and fills.
pub const PAGES: u64 = 4;
/// One child in this many is multi-threaded and killed while it runs.
pub const KILL_EVERY: u64 = 16;
/// Threads the killed children run besides their main thread.
pub const KILLED_THREADS: usize = 3;

/// Counts of one churn run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Children that exited by themselves with the right status.
    pub exited: u64,
    /// Children killed while their threads ran.
    pub killed: u64,
    /// Forks refused for lack of memory or a process slot (EAGAIN, ENOMEM).
    pub refused: u64,
    /// Children another process killed (only with `others_kill`).
    pub killed_by_others: u64,
}

impl Counts {
    pub fn lifecycles(&self) -> u64 {
        self.exited + self.killed
    }
}

/// Why a churn run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChurnError {
    /// A child found its fresh memory not zero, or its pattern changed:
    /// exit status 2 or 3 of the child.
    Memory { pid: u64, status: i64 },
    /// A child ended with an unexpected status.
    Status { pid: u64, expected: i64, status: i64 },
    /// A call failed that should not have.
    Call(Errno),
}

impl core::fmt::Display for ChurnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ChurnError::Memory { pid, status: 2 } => write!(f, "child {pid} found its fresh memory not zero"),
            ChurnError::Memory { pid, status } => write!(f, "child {pid}'s pattern changed (status {status})"),
            ChurnError::Status { pid, expected, status } => {
                write!(f, "child {pid} ended with status {status:#x}, expected {expected:#x}")
            }
            ChurnError::Call(e) => write!(f, "a call failed: {e}"),
        }
    }
}

/// The pattern seed of process `pid`: unique to it.
fn seed_of(pid: u64) -> u64 {
    0xc4a2_0000_0000_0000 | pid << 16
}

/// The exit status of a child that found its memory right: 64..128, so
/// never one of the failure statuses below.
fn good_status(pid: u64) -> i64 {
    (64 + (pid & 0x3f)) as i64
}

/// The child's side: fresh memory must read zero, then hold our pattern.
/// Exit status 2: not zero; 3: pattern changed; 1: no memory.
fn child_work(threads: bool) -> ! {
    let pid = sys::getpid();
    let Ok(mut m) = Mapping::pages(PAGES) else { sys::exit(1) };
    if m.words().iter().any(|&w| w != 0) {
        sys::exit(2);
    }
    pattern::fill(m.words_mut(), seed_of(pid));
    if pattern::check(m.words(), seed_of(pid)).is_err() {
        sys::exit(3);
    }
    if threads {
        static SPIN: AtomicU64 = AtomicU64::new(0);
        for _ in 0..KILLED_THREADS {
            let _ = thread::spawn(|| loop {
                SPIN.fetch_add(1, Ordering::Relaxed);
                sys::yield_now();
            });
        }
        // Keep writing our own pattern until the parent kills us.
        loop {
            pattern::fill(m.words_mut(), seed_of(pid));
            if pattern::check(m.words(), seed_of(pid)).is_err() {
                sys::exit(3);
            }
            sys::yield_now();
        }
    }
    sys::exit(good_status(pid) as i32)
}

/// Runs `n` lifecycles (or until `stop()` says so); `Err` at the first
/// child that saw wrong memory or ended wrongly. With `others_kill` set,
/// other processes may kill our children too (the fuzzer does): a child
/// killed is then not an error, a child that saw wrong memory still is.
pub fn run(n: u64, others_kill: bool, mut stop: impl FnMut() -> bool) -> Result<Counts, ChurnError> {
    let mut c = Counts::default();
    let mut i = 0;
    while i < n && !stop() {
        let kill = i % KILL_EVERY == KILL_EVERY - 1;
        let pid = match sys::fork() {
            Ok(Fork::Child) => child_work(kill),
            Ok(Fork::Parent(pid)) => pid,
            Err(Errno::EAGAIN) | Err(Errno::ENOMEM) => {
                c.refused += 1;
                let _ = sys::sleep_ms(1);
                continue;
            }
            Err(e) => return Err(ChurnError::Call(e)),
        };
        let expected = if kill {
            // Let its threads start, then kill it while they run.
            let _ = sys::sleep_ms(1);
            match sys::kill(pid) {
                Ok(_) => {}
                // Someone else killed it first, and it is gone.
                Err(Errno::ESRCH) if others_kill => {}
                Err(e) => return Err(ChurnError::Call(e)),
            }
            killed(cause::KILLED)
        } else {
            good_status(pid)
        };
        let (_, status) = sys::wait(Some(pid)).map_err(ChurnError::Call)?;
        match status {
            2 | 3 => return Err(ChurnError::Memory { pid, status }),
            s if s == expected => {}
            s if others_kill && s == killed(cause::KILLED) => c.killed_by_others += 1,
            s => return Err(ChurnError::Status { pid, expected, status: s }),
        }
        if kill {
            c.killed += 1;
        } else {
            c.exited += 1;
        }
        i += 1;
    }
    Ok(c)
}
