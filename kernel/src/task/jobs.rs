//! Asynchronous jobs on a process's memory: `copy_async` copies between two
//! of its ranges, `watch_async` samples one of its words for a while and
//! logs what it read, `copy_wait` returns a job's outcome (`abi::nr`).
//!
//! Each job runs in a kernel thread of its own, pinned to the CPU the
//! caller named (or anywhere), which adopts the caller's address space
//! (`Task::adopt`, Linux's `use_mm`) and reaches it with the user-copy
//! routines, so every access is checked against the user's permissions and
//! a fault ends the job with EFAULT instead of hurting the kernel. While it
//! works it counts as a user of the address space (`UserMm::adopt`: the
//! local flush strategy then never takes the owner for alone, seed 002;
//! `tlb.use_mm_mmget=off` leaves the count out, to show the bug), and it
//! holds the address space's contents (`UserMm::hold`): a process
//! whose threads all exit keeps its memory until its jobs let go.
//!
//! Jobs are bounded per process and in total (`abi::limits`). A job done
//! stays in the table until `copy_wait` collects it or its process ends;
//! a process that ends cancels its running jobs (they stop at their next
//! step) and drops the others.

use crate::error::SysError;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, Ordering};

use super::process::Process;
use super::wait::WaitQueue;
use super::{sched, OutOfMemory, Task};
use crate::arch::cpu::{irq_restore, irq_save};
use crate::arch::uaccess::{copy_from_user, copy_to_user};
use crate::mm::user::UserMm;
use crate::sync::IrqMutex;
use abi::copy::{LOG_MIN, LOG_RECORDED, LOG_SAMPLES, LOG_VALUES, NOWAIT};
use abi::limits::{MAX_COPY_LEN, MAX_JOBS, MAX_JOBS_TOTAL, MAX_WATCH_NS};

/// Bytes a copy moves per step (through the worker's stack).
const CHUNK: usize = 512;
/// Samples a watch takes between two looks at its CPU's run queue.
const RESCHED_EVERY: u64 = 64;
/// The result of a job still running.
const RUNNING: i64 = i64::MIN;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// `len` bytes from `src` to `dst`.
    Copy { dst: u64, src: u64, len: u64 },
    /// Samples the word at `src` for `ns` nanoseconds into the log at `log`
    /// (room for `values` values; layout in `abi::copy`).
    Watch { log: u64, src: u64, values: u64, ns: u64 },
}

/// `len` bytes at `addr` lie in user space.
fn user_range(addr: u64, len: u64) -> Result<(), SysError> {
    match addr.checked_add(len) {
        Some(end) if end <= abi::USER_END => Ok(()),
        _ => Err(SysError::Fault),
    }
}

impl Work {
    /// A copy, checked as `nr::COPY_ASYNC` says.
    pub fn copy(dst: u64, src: u64, len: u64) -> Result<Work, SysError> {
        if len > MAX_COPY_LEN {
            return Err(SysError::Inval);
        }
        user_range(dst, len)?;
        user_range(src, len)?;
        if len > 0 && dst < src + len && src < dst + len {
            return Err(SysError::Inval);
        }
        Ok(Work::Copy { dst, src, len })
    }

    /// A watch, checked as `nr::WATCH_ASYNC` says.
    pub fn watch(log: u64, src: u64, log_len: u64, ns: u64) -> Result<Work, SysError> {
        let aligned = log.is_multiple_of(8) && src.is_multiple_of(8) && log_len.is_multiple_of(8);
        if !aligned || !(LOG_MIN..=MAX_COPY_LEN).contains(&log_len) || ns > MAX_WATCH_NS {
            return Err(SysError::Inval);
        }
        user_range(src, 8)?;
        user_range(log, log_len)?;
        Ok(Work::Watch { log, src, values: log_len / 8 - LOG_VALUES as u64, ns })
    }
}

struct Job {
    ticket: u64,
    pid: u64,
    work: Work,
    /// Held (`UserMm::hold`) from the submission until the worker is done.
    mm: Arc<UserMm>,
    /// The process ended: the worker stops at its next step.
    cancelled: AtomicBool,
    /// [`RUNNING`], then the outcome: a value, or `-errno`.
    result: AtomicI64,
}

impl Job {
    fn is_done(&self) -> bool {
        self.result.load(Ordering::Acquire) != RUNNING
    }

    fn outcome(&self) -> Result<u64, SysError> {
        match self.result.load(Ordering::Acquire) {
            r if r < 0 => Err(SysError::from_errno(r)),
            r => Ok(r as u64),
        }
    }

    fn cancelled(&self) -> Result<(), SysError> {
        if self.cancelled.load(Ordering::Acquire) {
            Err(SysError::Intr)
        } else {
            Ok(())
        }
    }
}

/// Every job not yet collected, by ticket.
static JOBS: IrqMutex<BTreeMap<u64, Arc<Job>>> = IrqMutex::new(BTreeMap::new());
/// Woken when a job is done.
static DONE: WaitQueue = WaitQueue::new("copy_wait");
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);
/// Jobs whose worker has not finished yet (for tests).
pub static RUNNING_JOBS: AtomicU64 = AtomicU64::new(0);

/// An empty table keeps no node (leak tests compare the heap exactly).
fn shrink(jobs: &mut BTreeMap<u64, Arc<Job>>) {
    if jobs.is_empty() {
        *jobs = BTreeMap::new();
    }
}

/// Lets go of a job's hold on its address space (interrupts masked: the
/// last holder's teardown sends shootdowns).
fn release(mm: &UserMm) {
    let daif = irq_save();
    mm.release();
    irq_restore(daif);
}

/// Starts `work` on `p`'s memory in a worker on `cpu` (`u64::MAX`: any);
/// returns its ticket.
pub fn submit(p: &Arc<Process>, work: Work, cpu: u64) -> Result<u64, SysError> {
    let pin = match cpu {
        u64::MAX => None,
        c if c < crate::percpu::online_count() as u64 => Some(c as usize),
        _ => return Err(SysError::Inval),
    };
    // The caller is a live thread, so the process still holds the contents.
    if !p.mm.hold() {
        return Err(SysError::Srch);
    }
    let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
    let job = Arc::new(Job {
        ticket,
        pid: p.pid,
        work,
        mm: p.mm.clone(),
        cancelled: AtomicBool::new(false),
        result: AtomicI64::new(RUNNING),
    });
    {
        let mut jobs = JOBS.lock();
        let mine = jobs.values().filter(|j| j.pid == p.pid).count();
        if mine >= MAX_JOBS || jobs.len() >= MAX_JOBS_TOTAL {
            drop(jobs);
            release(&p.mm);
            return Err(SysError::Again);
        }
        jobs.insert(ticket, job.clone());
    }
    let name = match work {
        Work::Copy { .. } => "copy job",
        Work::Watch { .. } => "watch job",
    };
    let raw = Arc::into_raw(job) as usize;
    let t = match Task::new_kernel(name, worker, raw) {
        Ok(t) => t,
        Err(OutOfMemory) => {
            // SAFETY: `raw` came from `Arc::into_raw` above and no task took it.
            drop(unsafe { Arc::from_raw(raw as *const Job) });
            let job = JOBS.lock().remove(&ticket);
            drop(job);
            release(&p.mm);
            return Err(SysError::NoMem);
        }
    };
    if let Some(c) = pin {
        t.affinity.store(c as i64, Ordering::Relaxed);
    }
    RUNNING_JOBS.fetch_add(1, Ordering::Relaxed);
    sched::spawn(t);
    Ok(ticket)
}

/// `copy_wait(ticket, flags)` for a thread of `p`.
pub fn wait(p: &Process, ticket: u64, flags: u64) -> Result<u64, SysError> {
    if flags & !abi::copy::ALL != 0 {
        return Err(SysError::Inval);
    }
    let job = JOBS.lock().get(&ticket).filter(|j| j.pid == p.pid).cloned().ok_or(SysError::Srch)?;
    if flags & NOWAIT != 0 && !job.is_done() {
        return Err(SysError::Again);
    }
    DONE.wait_until(|| job.is_done()).map_err(|_| SysError::Intr)?;
    // Of two threads waiting for one ticket, one gets the outcome.
    let claimed = {
        let mut jobs = JOBS.lock();
        let claimed = jobs.remove(&ticket);
        shrink(&mut jobs);
        claimed
    };
    match claimed {
        Some(_) => job.outcome(),
        None => Err(SysError::Srch),
    }
}

/// Process `pid` ended: its running jobs are cancelled, and no job of it
/// stays in the table.
pub fn process_exited(pid: u64) {
    loop {
        let job = {
            let mut jobs = JOBS.lock();
            let ticket = jobs.values().find(|j| j.pid == pid).map(|j| j.ticket);
            let job = ticket.and_then(|t| jobs.remove(&t));
            shrink(&mut jobs);
            job
        };
        let Some(job) = job else { return };
        job.cancelled.store(true, Ordering::Release);
    }
}

/// A worker: `arg` is its job (`Arc::into_raw`).
fn worker(arg: usize) {
    // SAFETY: `submit` handed this task the `Arc::into_raw` of its job, and
    // it is taken back exactly once, here.
    let job = unsafe { Arc::from_raw(arg as *const Job) };
    let me = sched::current();
    me.adopt(job.mm.clone());
    let r = match job.work {
        Work::Copy { dst, src, len } => copy(&job, dst, src, len),
        Work::Watch { log, src, values, ns } => watch(&job, log, src, values, ns),
    };
    me.unadopt();
    drop(me);
    release(&job.mm);
    // A value is at most `MAX_COPY_LEN` bytes or a count of samples: never
    // negative, so never taken for `-errno` or `RUNNING`.
    job.result.store(r.unwrap_or_else(SysError::errno), Ordering::Release);
    DONE.wake_all();
    RUNNING_JOBS.fetch_sub(1, Ordering::Relaxed);
}

fn copy(job: &Job, dst: u64, src: u64, len: u64) -> Result<i64, SysError> {
    let mut buf = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        job.cancelled()?;
        let n = (len - done).min(CHUNK as u64) as usize;
        if !copy_from_user(&mut buf[..n], src + done) || !copy_to_user(dst + done, &buf[..n]) {
            return Err(SysError::Fault);
        }
        done += n as u64;
        sched::cond_resched();
    }
    Ok(len as i64)
}

fn read_word(addr: u64) -> Result<u64, SysError> {
    let mut b = [0u8; 8];
    if !copy_from_user(&mut b, addr) {
        return Err(SysError::Fault);
    }
    Ok(u64::from_le_bytes(b))
}

fn write_word(addr: u64, v: u64) -> Result<(), SysError> {
    if !copy_to_user(addr, &v.to_le_bytes()) {
        return Err(SysError::Fault);
    }
    Ok(())
}

/// Reads the word at `src` until `ns` nanoseconds have passed (at least
/// once); returns the samples taken.
fn watch(job: &Job, log: u64, src: u64, values: u64, ns: u64) -> Result<i64, SysError> {
    let freq = platform::timer::frequency();
    let deadline = platform::timer::now().saturating_add(sched::ns_to_ticks(ns, freq));
    let word = |i: usize| log + 8 * i as u64;
    let (mut samples, mut recorded, mut last) = (0u64, 0u64, None);
    loop {
        job.cancelled()?;
        let v = read_word(src)?;
        samples += 1;
        if last != Some(v) && recorded < values {
            write_word(word(LOG_VALUES) + 8 * recorded, v)?;
            recorded += 1;
            // The value before the count that includes it.
            fence(Ordering::Release);
            write_word(word(LOG_RECORDED), recorded)?;
        }
        last = Some(v);
        fence(Ordering::Release);
        write_word(word(LOG_SAMPLES), samples)?;
        if platform::timer::now() >= deadline {
            return Ok(samples as i64);
        }
        if samples % RESCHED_EVERY == 0 {
            sched::cond_resched();
        }
    }
}
