//! What the `bench_*` programs share: the argument layout, snapshots of the
//! kernel's counters, timed repetitions, and the one-line JSON report that
//! `scripts/bench.sh` (`tests/src/bench/`) parses.
//!
//! # Argument (`run=bench_NAME:ARG`)
//!
//! | bits    | meaning                                                   |
//! |---------|-----------------------------------------------------------|
//! | 0..32   | the workload's size parameter `n` (0: its default)        |
//! | 32..40  | timed repetitions R, at most [`MAX_REPS`] (0: default)    |
//! | 40..56  | operations K per repetition (0: default)                  |
//! | 56..60  | flags of the workload (bit 56 = [`FLAG_A`], 57 = [`FLAG_B`]) |
//! | 60..64  | threads T: CPUs the process runs on (0: default), at most [`MAX_THREADS`] |
//!
//! With T threads the program runs on CPUs 0..T: its measuring thread on
//! CPU 0 and T−1 more threads of the same process, one on each other CPU
//! ([`Team`]), so that the address space is live on T CPUs while it is
//! measured. Most programs keep them spinning in user space; some give
//! them operations of their own (their documentation says which).
//!
//! # Measurement
//!
//! [`measure`] runs K untimed warm-up operations, reads the kernel's
//! counters, runs R repetitions of K operations each timing every
//! repetition with CNTVCT_EL0, and reads the counters again. The report
//! carries the raw totals; the host divides them by `counted_ops`.
//!
//! For the TCG plugin (`tests/qemu-plugin`) it also marks two nested
//! regions with `HINT #abi::marker::BEGIN` / `#END` (`NOP`s without the
//! plugin): the outer one begins just after the kernel's TLBI counters are
//! read and ends just before they are read again, so the plugin counts
//! what the kernel's deltas count; the inner one spans the timed
//! repetitions alone, for instructions per operation. A helper thread
//! ([`measure_with_helper`]) is paused between its operations around both
//! counter reads, so that none of its operations straddles an end of the
//! outer region.
//!
//! # Report
//!
//! One line, written with one WRITE so that nothing interleaves:
//!
//! ```text
//! BENCH {"v":1,"workload":"mmap","arg":N,
//!        "params":{"pages":16,"threads":1},"reps":R,"ops":K,"warmup":W,
//!        "counted_ops":C,"cntfrq":HZ,"cpus":2,"rep_ticks":[..R..],
//!        "tlbi":{"vae1":0,..},"dsb":D,"asid":{"rollovers":0,..},"faults":F,
//!        "events":{"exit_elided":0,..,"ipi_sent":0,..}}
//! ```
//!
//! `rep_ticks[i]` are the ticks of repetition i (K operations); `tlbi`,
//! `dsb`, `asid`, `faults` and `events` are deltas of the kernel's own
//! counters (STATS) over the timed repetitions, which did `counted_ops`
//! operations (R·K, plus what helper threads did meanwhile). `events` has
//! as many words as `STATS(EVENTS)` wrote (the kernel's `mm::tlb::Event`:
//! flush decisions, IPIs sent and received, lazy skips, catch-ups, ...).
//! `tlbi_ttl`, after them when any was issued, counts the by-address
//! TLBIs of `tlbi` again by kind and TTL hint level (`STATS(TLBI_TTL)`:
//! `"vale1is@l2":N`, `"vae1is@none":N`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use ulib::abi::stats;
use ulib::mm::Mapping;
use ulib::sys;
use ulib::thread::{self, JoinHandle};
use ulib::time::{cntfrq, cntvct};

/// Exit statuses shared by every benchmark program.
pub mod status {
    /// Bad argument, too few CPUs, or setup (mmap, fork, thread) failed.
    pub const SETUP: i32 = 1;
    /// An operation failed.
    pub const OP: i32 = 2;
    /// The kernel's counters could not be read, or the report overflowed.
    pub const REPORT: i32 = 3;
}

/// Most timed repetitions (8 bits of the argument).
pub const MAX_REPS: usize = 255;
/// Flag bits of the argument, numbered from bit 56.
pub const FLAG_A: u64 = 1 << 0;
pub const FLAG_B: u64 = 1 << 1;
/// Most threads (argument bits 60..64): the kernel's `MAX_CPUS`.
pub const MAX_THREADS: u64 = 8;

/// TLBI counter names in the order of the words of `STATS(TLBI)`, which is
/// `OpKind`'s order in `kernel/src/mm/tlb/op.rs`; the DSB count follows,
/// then the repeat-TLBI workaround's TLBIs in the same order and its DSBs.
pub use ulib::abi::stats::TLBI_NAMES;
/// The words of `STATS(ASID)`.
pub const ASID_NAMES: [&str; 5] = ["rollovers", "slow", "fast", "rollover_flushes", "pinned"];
/// The words of `STATS(EVENTS)`, named as the kernel names them (the
/// kernel checks at build time that the two lists agree).
pub use ulib::abi::stats::EVENT_NAMES;

/// Words read from `STATS(TLBI)`; more than the kernel writes today.
const TLBI_WORDS: usize = 32;
/// Words read from `STATS(EVENTS)`; more than the kernel writes today.
const EVENT_WORDS: usize = 32;
/// The words of `STATS(DEVICE + 0)`: device 0's counters, as the kernel
/// names them.
pub use ulib::abi::device::STAT_NAMES as DEVICE_NAMES;
const DEVICE_WORDS: usize = ulib::abi::device::STAT_COUNT;
/// Words of `STATS(TLBI_TTL)`.
const TTL_WORDS: usize = 4 * ulib::abi::stats::TTL_KINDS.len();
/// The levels of `STATS(TLBI_TTL)`'s words, in order, as the report
/// names them (`vale1is@l2`).
const TTL_LEVELS: [&str; 4] = ["none", "l1", "l2", "l3"];

/// The decoded argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg {
    pub raw: u64,
    pub n: u64,
    pub reps: u64,
    pub ops: u64,
    pub flags: u64,
    /// Threads T (bits 60..64); 0: the workload's default.
    pub threads: u64,
}

impl Arg {
    /// Decodes `raw`, taking each zero field from `default`.
    pub fn decode(raw: u64, n: u64, reps: u64, ops: u64) -> Arg {
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        use ulib::abi::bench_arg::{get, FLAGS, N, OPS, REPS, THREADS};
        Arg {
            raw,
            n: or(get(raw, N), n),
            reps: or(get(raw, REPS), reps).min(MAX_REPS as u64),
            ops: or(get(raw, OPS), ops),
            flags: get(raw, FLAGS),
            threads: get(raw, THREADS),
        }
    }

    /// Encodes the fields (the inverse of [`Arg::decode`]).
    pub const fn encode(n: u64, reps: u64, ops: u64, flags: u64, threads: u64) -> u64 {
        ulib::abi::bench_arg::encode(n, reps, ops, flags, threads)
    }

    pub fn flag(&self, bit: u64) -> bool {
        self.flags & bit != 0
    }

    /// The threads asked for, or `default` if none were.
    pub fn threads_or(&self, default: u64) -> u64 {
        if self.threads == 0 {
            default
        } else {
            self.threads
        }
    }
}

/// A snapshot (or a difference) of the kernel counters a benchmark reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// `STATS(TLBI)`: one word per TLBI kind, the DSB count, then the
    /// repeat-TLBI workaround's (`abi::stats::TLBI`).
    pub tlbi: [u64; TLBI_WORDS],
    /// How many words the kernel wrote.
    pub tlbi_words: usize,
    pub asid: [u64; 5],
    pub faults: u64,
    /// `STATS(EVENTS)`, one word per [`EVENT_NAMES`] entry.
    pub events: [u64; EVENT_WORDS],
    /// How many words the kernel wrote (0 if it has no such counters).
    pub event_words: usize,
    /// `STATS(DEVICE + 0)`: device 0's counters (the device workload's).
    pub device: [u64; DEVICE_WORDS],
    /// How many words the kernel wrote (0 if it has no devices).
    pub device_words: usize,
    /// `STATS(TLBI_TTL)`: the by-address TLBIs by kind and TTL hint level
    /// (four words per kind of `abi::stats::TTL_KINDS`: no hint, 1, 2, 3).
    pub ttl: [u64; TTL_WORDS],
    /// How many words the kernel wrote (0 if it does not count levels).
    pub ttl_words: usize,
}

impl Counters {
    pub fn read() -> Result<Counters, ulib::Errno> {
        Counters::read_marked(None)
    }

    /// Reads the counters with the plugin's region marker `mark` right
    /// next to the moment the kernel reads its TLBI counters: a begin
    /// marker just after that STATS call returns, an end marker just
    /// before it is made. Between the two, the kernel only copies the
    /// words out to a buffer already written (so no page fault, no TLB
    /// maintenance, can fall between the kernel's read and the marker).
    fn read_marked(mark: Option<region::Mark>) -> Result<Counters, ulib::Errno> {
        let mut c = Counters {
            tlbi: [0; TLBI_WORDS],
            tlbi_words: 0,
            asid: [0; 5],
            faults: 0,
            events: [0; EVENT_WORDS],
            event_words: 0,
            device: [0; DEVICE_WORDS],
            device_words: 0,
            ttl: [0; TTL_WORDS],
            ttl_words: 0,
        };
        if mark == Some(region::Mark::End) {
            region::mark(region::Mark::End, c.tlbi.as_ptr().cast());
        }
        c.tlbi_words = sys::stats(stats::TLBI, &mut c.tlbi)? as usize;
        if mark == Some(region::Mark::Begin) {
            region::mark(region::Mark::Begin, c.tlbi.as_ptr().cast());
        }
        sys::stats(stats::ASID, &mut c.asid)?;
        c.faults = sys::stat(stats::PAGE_FAULTS)?;
        c.event_words = sys::stats(stats::EVENTS, &mut c.events).map_or(0, |n| n as usize);
        c.device_words = sys::stats(stats::DEVICE, &mut c.device).map_or(0, |n| n as usize);
        c.ttl_words = sys::stats(stats::TLBI_TTL, &mut c.ttl).map_or(0, |n| n as usize);
        Ok(c)
    }

    /// `self - earlier`, word by word (counters only grow).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        for (w, e) in d.tlbi.iter_mut().zip(earlier.tlbi) {
            *w = w.wrapping_sub(e);
        }
        for (w, e) in d.asid.iter_mut().zip(earlier.asid) {
            *w = w.wrapping_sub(e);
        }
        d.faults = self.faults.wrapping_sub(earlier.faults);
        for (w, e) in d.events.iter_mut().zip(earlier.events) {
            *w = w.wrapping_sub(e);
        }
        d.event_words = self.event_words.min(earlier.event_words);
        for (w, e) in d.device.iter_mut().zip(earlier.device) {
            *w = w.wrapping_sub(e);
        }
        d.device_words = self.device_words.min(earlier.device_words);
        for (w, e) in d.ttl.iter_mut().zip(earlier.ttl) {
            *w = w.wrapping_sub(e);
        }
        d.ttl_words = self.ttl_words.min(earlier.ttl_words);
        d
    }
}

/// The result of [`measure`].
#[derive(Clone, Debug)]
pub struct Measurement {
    pub rep_ticks: [u64; MAX_REPS],
    pub reps: usize,
    pub ops: u64,
    pub warmup: u64,
    /// Operations done while the counters ran, by every thread.
    pub counted_ops: u64,
    /// Counter deltas over the timed repetitions.
    pub counters: Counters,
}

/// Runs `arg.ops` warm-up operations, then `arg.reps` timed repetitions of
/// `arg.ops` operations; `op(i)` does operation `i` (counting from 0 over
/// the warm-up and the repetitions). `others()` is how many operations
/// other threads have done so far (0 if there are none).
pub fn measure(
    arg: &Arg,
    op: impl FnMut(u64) -> Result<(), i32>,
    others: impl Fn() -> u64,
) -> Result<Measurement, i32> {
    measure_around(arg, op, others, None)
}

/// [`measure`] while the threads of `team` do operations of their own on
/// other CPUs (or spin): their operations are counted (`counted_ops`), and
/// they are paused around the counter reads and region markers.
pub fn measure_with_team(arg: &Arg, op: impl FnMut(u64) -> Result<(), i32>, team: &Team) -> Result<Measurement, i32> {
    measure_around(arg, op, || team.ops(), Some(team))
}

fn measure_around(
    arg: &Arg,
    mut op: impl FnMut(u64) -> Result<(), i32>,
    others: impl Fn() -> u64,
    helper: Option<&Team>,
) -> Result<Measurement, i32> {
    let (reps, ops) = (arg.reps as usize, arg.ops);
    let mut i = 0;
    for _ in 0..ops {
        op(i)?;
        i += 1;
    }
    if let Some(h) = helper {
        h.pause()?;
    }
    // Two nested regions: the outer one spans what the kernel's counter
    // deltas span (for `bench --verify`), the inner one the timed
    // repetitions (for instructions per operation).
    let before = read_counters(region::Mark::Begin)?;
    let others_before = others();
    if let Some(h) = helper {
        h.resume();
    }
    let mut rep_ticks = [0; MAX_REPS];
    region::mark(region::Mark::Begin, core::ptr::null());
    for ticks in &mut rep_ticks[..reps] {
        let start = cntvct();
        for _ in 0..ops {
            op(i)?;
            i += 1;
        }
        *ticks = cntvct() - start;
    }
    region::mark(region::Mark::End, core::ptr::null());
    if let Some(h) = helper {
        h.pause()?;
    }
    let counted_ops = reps as u64 * ops + others().wrapping_sub(others_before);
    let after = read_counters(region::Mark::End)?;
    if let Some(h) = helper {
        h.resume();
    }
    Ok(Measurement { rep_ticks, reps, ops, warmup: ops, counted_ops, counters: after.since(&before) })
}

/// The region markers of the TCG plugin (`abi::marker`).
mod region {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Mark {
        /// `HINT #abi::marker::BEGIN`
        Begin,
        /// `HINT #abi::marker::END`
        End,
    }

    /// Executes the marker; memory at `written` (may be null) has been
    /// written by then, not after.
    #[cfg_attr(not(target_arch = "aarch64"), allow(unused_variables))]
    pub fn mark(mark: Mark, written: *const u8) {
        #[cfg(target_arch = "aarch64")]
        match mark {
            // SAFETY: an unallocated HINT executes as NOP: it reads and
            // writes no register, flag or memory. `written` is only named
            // (in a comment) so that the compiler completes the stores to
            // it before the HINT; the asm is not `nomem`, so the compiler
            // keeps other memory accesses on their side of it as well.
            #[allow(unsafe_code)]
            Mark::Begin => unsafe {
                core::arch::asm!(
                    "hint #{imm} // {p}",
                    imm = const ulib::abi::marker::BEGIN,
                    p = in(reg) written,
                    options(nostack, preserves_flags)
                )
            },
            // SAFETY: as above.
            #[allow(unsafe_code)]
            Mark::End => unsafe {
                core::arch::asm!(
                    "hint #{imm} // {p}",
                    imm = const ulib::abi::marker::END,
                    p = in(reg) written,
                    options(nostack, preserves_flags)
                )
            },
        }
    }
}

fn read_counters(mark: region::Mark) -> Result<Counters, i32> {
    Counters::read_marked(Some(mark)).map_err(|e| {
        ulib::println!("bench: FAIL: reading the kernel's counters: {e}");
        status::REPORT
    })
}

/// Number of CPUs online (`STATS(CPUS)`), or 1 if unknown.
pub fn cpus() -> u64 {
    sys::stat(stats::CPUS).unwrap_or(1).max(1)
}

/// `r`'s value, or [`status::SETUP`] after printing what failed.
pub fn setup<T>(what: &str, r: Result<T, ulib::Errno>) -> Result<T, i32> {
    r.map_err(|e| {
        ulib::println!("bench: FAIL: {what}: {e}");
        status::SETUP
    })
}

/// `r`'s value, or [`status::OP`] after printing what failed.
pub fn op<T>(what: &str, r: Result<T, ulib::Errno>) -> Result<T, i32> {
    r.map_err(|e| {
        ulib::println!("bench: FAIL: {what}: {e}");
        status::OP
    })
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: u64) -> Result<(), i32> {
    sys::set_affinity(Some(cpu)).map(drop).map_err(|e| {
        ulib::println!("bench: FAIL: set_affinity({cpu}): {e}");
        status::SETUP
    })
}

/// The threads a workload runs on: the argument's T, or 2 with `FLAG_A`
/// (a second thread), or 1; [`status::SETUP`] past [`MAX_THREADS`].
pub fn threads(arg: &Arg) -> Result<u64, i32> {
    let t = arg.threads_or(if arg.flag(FLAG_A) { 2 } else { 1 });
    if t > MAX_THREADS {
        ulib::println!("bench: FAIL: {t} threads, at most {MAX_THREADS}");
        return Err(status::SETUP);
    }
    Ok(t)
}

/// The common start of a workload: pin to CPU 0 and keep T−1 more threads
/// of the process ([`threads`]) spinning in user space on CPUs 1..T, so
/// that the mm is live on T CPUs while it is measured.
pub fn pin_with_spinners(arg: &Arg) -> Result<Team, i32> {
    let t = threads(arg)?;
    require_cpus(t)?;
    pin(0)?;
    Team::spinners(t, Spin::User)
}

/// Fails with [`status::SETUP`] unless at least `n` CPUs are online.
pub fn require_cpus(n: u64) -> Result<(), i32> {
    let online = cpus();
    if online < n {
        ulib::println!("bench: FAIL: needs {n} CPUs, {online} online");
        return Err(status::SETUP);
    }
    Ok(())
}

/// A thread of this process on another CPU that repeats `work` until
/// stopped, so that the address space is live on two CPUs while the main
/// thread measures.
#[derive(Debug)]
pub struct Helper {
    /// Words indexed by [`STOP`], [`STARTED`], [`DONE`], [`ENDED`],
    /// [`PAUSE`], [`PAUSED`].
    shared: &'static [AtomicU64],
    handle: JoinHandle,
    /// Its `work` is an operation of the workload (not so for a spinner).
    operates: bool,
}

/// Stop requested.
const STOP: usize = 0;
/// The thread runs on its CPU.
const STARTED: usize = 1;
/// Operations done.
const DONE: usize = 2;
/// Exit status + 1 once the thread ended (early, on a failure, or stopped).
const ENDED: usize = 3;
/// Pause requested.
const PAUSE: usize = 4;
/// The thread is paused between two operations.
const PAUSED: usize = 5;

impl Helper {
    /// Starts the thread, pinned to `cpu`, and waits until it runs there.
    pub fn start<F>(cpu: u64, mut work: F) -> Result<Helper, i32>
    where
        F: FnMut() -> Result<(), i32> + Send + 'static,
    {
        let shared = setup("mmap for a helper thread", Mapping::pages(1))?.leak_atomic();
        let body = move || {
            let status = (|| {
                pin(cpu)?;
                shared[STARTED].store(1, Ordering::Release);
                while shared[STOP].load(Ordering::Acquire) == 0 {
                    if shared[PAUSE].load(Ordering::Acquire) != 0 {
                        shared[PAUSED].store(1, Ordering::Release);
                        while shared[PAUSE].load(Ordering::Acquire) != 0 && shared[STOP].load(Ordering::Acquire) == 0 {
                            core::hint::spin_loop();
                        }
                        shared[PAUSED].store(0, Ordering::Release);
                        continue;
                    }
                    work()?;
                    shared[DONE].fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })()
            .err()
            .unwrap_or(0);
            shared[ENDED].store(status as u64 + 1, Ordering::Release);
            status
        };
        let handle = setup("starting a helper thread", thread::spawn(body))?;
        while shared[STARTED].load(Ordering::Acquire) == 0 {
            if shared[ENDED].load(Ordering::Acquire) != 0 {
                let _ = handle.join();
                return Err(status::SETUP);
            }
            sys::yield_now();
        }
        Ok(Helper { shared, handle, operates: true })
    }

    /// A helper that only spins, as `how` says: it does no operations
    /// ([`Helper::ops`] stays 0).
    pub fn spinner(cpu: u64, how: Spin) -> Result<Helper, i32> {
        let h = match how {
            Spin::User => Helper::start(cpu, || {
                core::hint::spin_loop();
                Ok(())
            }),
            Spin::Syscall => Helper::start(cpu, || {
                sys::getpid();
                Ok(())
            }),
        }?;
        Ok(Helper { operates: false, ..h })
    }

    /// A helper whose `work` keeps the process busy on `cpu` with
    /// something other than the workload's operation: its repetitions are
    /// not counted ([`Helper::ops`] stays 0), so the counters are per
    /// operation of the measuring thread.
    pub fn background<F>(cpu: u64, work: F) -> Result<Helper, i32>
    where
        F: FnMut() -> Result<(), i32> + Send + 'static,
    {
        Ok(Helper { operates: false, ..Helper::start(cpu, work)? })
    }

    /// Operations completed so far: the times `work` did (0 for a
    /// spinner).
    pub fn ops(&self) -> u64 {
        if self.operates {
            self.shared[DONE].load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Returns once the thread is between two operations and waits there
    /// (or fails with [`status::OP`] if it ended).
    pub fn pause(&self) -> Result<(), i32> {
        self.ask_pause();
        self.wait_paused()
    }

    fn ask_pause(&self) {
        self.shared[PAUSE].store(1, Ordering::Release);
    }

    fn wait_paused(&self) -> Result<(), i32> {
        while self.shared[PAUSED].load(Ordering::Acquire) == 0 {
            if self.shared[ENDED].load(Ordering::Acquire) != 0 {
                ulib::println!("bench: FAIL: the helper thread ended while running");
                return Err(status::OP);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Lets a paused thread go on.
    pub fn resume(&self) {
        self.shared[PAUSE].store(0, Ordering::Release);
    }

    /// Stops the thread and waits for it; its failure is this one's.
    pub fn stop(self) -> Result<(), i32> {
        self.shared[STOP].store(1, Ordering::Release);
        match op("joining a helper thread", self.handle.join())? {
            0 => Ok(()),
            code => Err(code),
        }
    }
}

/// How a spinning helper keeps its CPU busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spin {
    /// In user space only: the CPU enters the kernel for interrupts alone.
    User,
    /// Calling GETPID in a loop: the thread returns to user space often,
    /// so it notices at once that its process was killed (a process exit
    /// ends its other threads when they next return to user space).
    Syscall,
}

/// The helper threads of a process: at most [`MAX_THREADS`] − 1, on CPUs
/// 1, 2, ... in the order they were added.
#[derive(Debug)]
pub struct Team {
    helpers: [Option<Helper>; MAX_THREADS as usize - 1],
    len: usize,
}

impl Default for Team {
    fn default() -> Team {
        Team::new()
    }
}

impl Team {
    /// No helpers.
    pub fn new() -> Team {
        Team { helpers: [const { None }; MAX_THREADS as usize - 1], len: 0 }
    }

    /// Helpers spinning as `how` says on CPUs 1..`threads` (none for 1).
    pub fn spinners(threads: u64, how: Spin) -> Result<Team, i32> {
        let mut team = Team::new();
        for cpu in 1..threads {
            team.push(Helper::spinner(cpu, how)?)?;
        }
        Ok(team)
    }

    /// Adds `h` (started on CPU `self.len() + 1`).
    pub fn push(&mut self, h: Helper) -> Result<(), i32> {
        match self.helpers.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(h);
                self.len += 1;
                Ok(())
            }
            None => {
                ulib::println!("bench: FAIL: more than {} helper threads", MAX_THREADS - 1);
                let _ = h.stop();
                Err(status::SETUP)
            }
        }
    }

    /// Helper threads (the process has one more, the measuring one).
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = &Helper> {
        self.helpers[..self.len].iter().flatten()
    }

    /// Operations the helpers have completed so far, together.
    pub fn ops(&self) -> u64 {
        self.iter().map(Helper::ops).sum()
    }

    /// Returns once every helper is paused between two operations.
    pub fn pause(&self) -> Result<(), i32> {
        self.iter().for_each(Helper::ask_pause);
        self.iter().try_for_each(Helper::wait_paused)
    }

    pub fn resume(&self) {
        self.iter().for_each(Helper::resume);
    }

    /// Stops every helper and waits for it; the first failure is returned.
    pub fn stop(self) -> Result<(), i32> {
        let mut result = Ok(());
        for h in self.helpers.into_iter().flatten() {
            let r = h.stop();
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Prints the `BENCH {...}` line of `m` for `workload` (as the host names
/// it) with its parameters.
pub fn report(workload: &str, arg: &Arg, params: &[(&str, u64)], m: &Measurement) -> Result<(), i32> {
    let mut line = Line::new();
    let machine = (cntfrq(), cpus());
    if write_json(&mut line, workload, arg, params, m, machine).is_err() || line.overflow {
        ulib::println!("bench: FAIL: the report does not fit {} bytes", LINE_MAX);
        return Err(status::REPORT);
    }
    let _ = sys::write(line.bytes());
    Ok(())
}

fn write_json(
    w: &mut Line,
    workload: &str,
    arg: &Arg,
    params: &[(&str, u64)],
    m: &Measurement,
    (hz, cpus): (u64, u64),
) -> fmt::Result {
    write!(w, "BENCH {{\"v\":1,\"workload\":\"{workload}\",\"arg\":{},\"params\":{{", arg.raw)?;
    for (i, (k, v)) in params.iter().enumerate() {
        write!(w, "{}\"{k}\":{v}", if i == 0 { "" } else { "," })?;
    }
    write!(
        w,
        "}},\"reps\":{},\"ops\":{},\"warmup\":{},\"counted_ops\":{},\"cntfrq\":{},\"cpus\":{}",
        m.reps, m.ops, m.warmup, m.counted_ops, hz, cpus
    )?;
    w.write_str(",\"rep_ticks\":[")?;
    for (i, t) in m.rep_ticks[..m.reps].iter().enumerate() {
        write!(w, "{}{t}", if i == 0 { "" } else { "," })?;
    }
    let c = &m.counters;
    // `STATS(TLBI)`'s layout (`abi::stats::TLBI`): the kinds, the DSBs,
    // then the repeat-TLBI workaround's TLBIs by kind and its DSBs.
    let kinds = stats::TLBI_KINDS.min(c.tlbi_words);
    w.write_str("],\"tlbi\":{")?;
    for (i, (name, n)) in TLBI_NAMES.iter().zip(&c.tlbi[..kinds]).enumerate() {
        write!(w, "{}\"{name}\":{n}", if i == 0 { "" } else { "," })?;
    }
    write!(w, "}},\"dsb\":{}", c.tlbi[stats::TLBI_DSB])?;
    // The workaround's, when the kernel counts them and it issued any.
    let repeat = &c.tlbi[stats::TLBI_REPEAT..stats::TLBI_REPEAT_DSB + 1];
    if c.tlbi_words >= stats::TLBI_WORDS && repeat.iter().any(|&n| n != 0) {
        w.write_str(",\"repeat\":{")?;
        for (i, (name, n)) in TLBI_NAMES.iter().zip(repeat).enumerate() {
            write!(w, "{}\"{name}\":{n}", if i == 0 { "" } else { "," })?;
        }
        write!(w, "}},\"repeat_dsb\":{}", c.tlbi[stats::TLBI_REPEAT_DSB])?;
    }
    w.write_str(",\"asid\":{")?;
    for (i, (name, n)) in ASID_NAMES.iter().zip(c.asid).enumerate() {
        write!(w, "{}\"{name}\":{n}", if i == 0 { "" } else { "," })?;
    }
    write!(w, "}},\"faults\":{},\"events\":{{", c.faults)?;
    for (i, n) in c.events[..c.event_words].iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        match EVENT_NAMES.get(i) {
            Some(name) => write!(w, "{sep}\"{name}\":{n}")?,
            None => write!(w, "{sep}\"event{i}\":{n}")?,
        }
    }
    w.write_str("}")?;
    // Device 0's counters, when it did anything meanwhile.
    let device = &c.device[..c.device_words];
    if device.iter().any(|&n| n != 0) {
        w.write_str(",\"device\":{")?;
        for (i, (name, n)) in DEVICE_NAMES.iter().zip(device).enumerate() {
            write!(w, "{}\"{name}\":{n}", if i == 0 { "" } else { "," })?;
        }
        w.write_str("}")?;
    }
    // The by-address TLBIs by TTL level, those that were issued.
    let ttl = &c.ttl[..c.ttl_words];
    if ttl.iter().any(|&n| n != 0) {
        w.write_str(",\"tlbi_ttl\":{")?;
        let mut sep = "";
        for (i, &n) in ttl.iter().enumerate().filter(|&(_, &n)| n != 0) {
            let kind = stats::TTL_KINDS.get(i / 4).copied().unwrap_or("op");
            write!(w, "{sep}\"{kind}@{}\":{n}", TTL_LEVELS[i % 4])?;
            sep = ",";
        }
        w.write_str("}")?;
    }
    writeln!(w, "}}")
}

/// Largest report: one WRITE of the kernel takes at most 4096 bytes.
const LINE_MAX: usize = 4096;

struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    overflow: bool,
}

impl Line {
    fn new() -> Line {
        Line { buf: [0; LINE_MAX], len: 0, overflow: false }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflow = true;
                Err(fmt::Error)
            }
        }
    }
}

/// Writes one word in each of the first `pages` pages of `m`.
pub fn touch(m: &mut Mapping, pages: usize, value: u64) {
    let per_page = (ulib::mm::PAGE_SIZE / 8) as usize;
    let words = m.words_mut();
    for p in 0..pages.min(words.len() / per_page) {
        words[p * per_page] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_round_trip() {
        let raw = Arg::encode(4096, 7, 300, FLAG_A, 8);
        let a = Arg::decode(raw, 1, 2, 3);
        assert_eq!((a.n, a.reps, a.ops, a.flags, a.threads), (4096, 7, 300, FLAG_A, 8));
        assert!(a.flag(FLAG_A) && !a.flag(FLAG_B));
        assert_eq!((a.threads_or(1), threads(&a)), (8, Ok(8)));
        let d = Arg::decode(0, 16, 5, 10);
        assert_eq!((d.n, d.reps, d.ops, d.flags, d.threads), (16, 5, 10, 0, 0));
        assert_eq!(threads(&d), Ok(1));
        assert_eq!(threads(&Arg::decode(Arg::encode(1, 1, 1, FLAG_A, 0), 0, 0, 0)), Ok(2));
    }

    #[test]
    fn report_is_one_json_line() {
        let mut c = Counters {
            tlbi: [0; TLBI_WORDS],
            tlbi_words: 13,
            asid: [1, 2, 3, 4, 5],
            faults: 9,
            events: [0; EVENT_WORDS],
            event_words: 16,
            device: [0; DEVICE_WORDS],
            device_words: DEVICE_WORDS,
            ttl: [0; TTL_WORDS],
            ttl_words: TTL_WORDS,
        };
        c.tlbi[6] = 40;
        c.tlbi[12] = 20;
        c.events[7] = 6;
        let mut m =
            Measurement { rep_ticks: [0; MAX_REPS], reps: 2, ops: 10, warmup: 10, counted_ops: 20, counters: c };
        m.rep_ticks[..2].copy_from_slice(&[100, 120]);
        let arg = Arg::decode(Arg::encode(16, 2, 10, 0, 0), 0, 0, 0);
        let mut line = Line::new();
        let params = [("pages", 16), ("threads", 1)];
        write_json(&mut line, "mmap", &arg, &params, &m, (62_500_000, 2)).unwrap();
        let text = core::str::from_utf8(line.bytes()).unwrap();
        let expected = format!(
            "BENCH {{\"v\":1,\"workload\":\"mmap\",\"arg\":{},\
             \"params\":{{\"pages\":16,\"threads\":1}},\"reps\":2,\"ops\":10,\"warmup\":10,\
             \"counted_ops\":20,\"cntfrq\":62500000,\"cpus\":2,\"rep_ticks\":[100,120],\
             \"tlbi\":{{\"vae1\":0,\"vale1\":0,\"rvae1\":0,\"rvale1\":0,\"aside1\":0,\
             \"vmalle1\":0,\"vae1is\":40,\"vale1is\":0,\"rvae1is\":0,\"rvale1is\":0,\
             \"aside1is\":0,\"vmalle1is\":0}},\"dsb\":20,\"asid\":{{\"rollovers\":1,\
             \"slow\":2,\"fast\":3,\"rollover_flushes\":4,\"pinned\":5}},\"faults\":9,\
             \"events\":{{\"exit_elided\":0,\"nested_full_flush\":0,\"racing_full_flush\":0,\
             \"exit_local_flush\":0,\"decide_local\":0,\"decide_ipi\":0,\"decide_broadcast\":0,\
             \"ipi_sent\":6,\"ipi_received\":0,\"lazy_skip\":0,\"lazy_leave\":0,\
             \"catch_up_partial\":0,\"catch_up_full\":0,\"catch_up_none\":0,\"stale_flush\":0,\
             \"ipi_timeout\":0}}}}\n",
            arg.raw
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn the_workarounds_counts_follow_the_dsb_when_there_are_any() {
        let mut c = Counters {
            tlbi: [0; TLBI_WORDS],
            tlbi_words: stats::TLBI_WORDS,
            asid: [0; 5],
            faults: 0,
            events: [0; EVENT_WORDS],
            event_words: 0,
            device: [0; DEVICE_WORDS],
            device_words: 0,
            ttl: [0; TTL_WORDS],
            ttl_words: 0,
        };
        c.tlbi[8] = 10;
        c.tlbi[stats::TLBI_DSB] = 10;
        let mut m = Measurement { rep_ticks: [1; MAX_REPS], reps: 1, ops: 10, warmup: 0, counted_ops: 10, counters: c };
        let arg = Arg::decode(Arg::encode(16, 1, 10, 0, 0), 0, 0, 0);
        let json = |m: &Measurement| {
            let mut line = Line::new();
            write_json(&mut line, "mmap", &arg, &[], m, (1, 1)).unwrap();
            std::string::String::from_utf8(line.bytes().to_vec()).unwrap()
        };
        assert!(!json(&m).contains("repeat"), "none issued: {}", json(&m));
        m.counters.tlbi[stats::TLBI_REPEAT + 7] = 10;
        m.counters.tlbi[stats::TLBI_REPEAT_DSB] = 10;
        let text = json(&m);
        assert!(text.contains("\"rvae1is\":10,\"rvale1is\":0,\"aside1is\":0,\"vmalle1is\":0},\"dsb\":10,"), "{text}");
        assert!(text.contains(",\"repeat\":{\"vae1\":0,"), "{text}");
        assert!(text.contains("\"vale1is\":10,\"rvae1is\":0,"), "{text}");
        assert!(text.contains("\"vmalle1is\":0},\"repeat_dsb\":10,\"asid\":{"), "{text}");
    }

    #[test]
    fn device_and_level_counters_are_reported_when_nonzero() {
        let mut c = Counters {
            tlbi: [0; TLBI_WORDS],
            tlbi_words: 13,
            asid: [0; 5],
            faults: 0,
            events: [0; EVENT_WORDS],
            event_words: 0,
            device: [0; DEVICE_WORDS],
            device_words: DEVICE_WORDS,
            ttl: [0; TTL_WORDS],
            ttl_words: TTL_WORDS,
        };
        c.device[0] = 16;
        c.device[4] = 3;
        // vale1is (the sixth kind) at level 2, rvae1is (the seventh) without a hint.
        c.ttl[4 * 5 + 2] = 2;
        c.ttl[4 * 6] = 1;
        let mut m = Measurement { rep_ticks: [0; MAX_REPS], reps: 1, ops: 1, warmup: 1, counted_ops: 1, counters: c };
        m.rep_ticks[0] = 5;
        let arg = Arg::decode(Arg::encode(16, 1, 1, 0, 0), 0, 0, 0);
        let mut line = Line::new();
        write_json(&mut line, "device", &arg, &[], &m, (1, 3)).unwrap();
        let text = core::str::from_utf8(line.bytes()).unwrap();
        assert!(
            text.ends_with(
                "\"events\":{},\"device\":{\"fills\":16,\"hits\":0,\"retries\":0,\"faults\":0,\
                 \"invals\":3,\"dropped\":0,\"jobs\":0,\"served_by_waiter\":0},\
                 \"tlbi_ttl\":{\"vale1is@l2\":2,\"rvae1is@none\":1}}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_overlong_report_is_an_error_not_a_cut_line() {
        let mut line = Line::new();
        let long = "x".repeat(LINE_MAX + 1);
        assert!(line.write_str(&long).is_err() && line.overflow && line.len == 0);
    }
}
