//! The secondary-MMU devices (`mm::device`) as the kernel runs them: one
//! kernel thread per device, on a CPU of its own (`dev.cpu`, by default
//! the last CPU online), a binding to one process at a time, and a bounded
//! queue of jobs (`abi::nr::DEV_BIND` .. `DEV_WAIT`).
//!
//! **Binding** pins the process's ASID (the device's entries are tagged
//! with it), holds its address space (`UserMm::hold`), and subscribes the
//! device to the mm under the mm lock: an operation either finished its
//! page-table changes before (the device then walks the changed tables) or
//! makes them after and sees the subscriber (it tells the device with its
//! flush). Only then may the device walk. Unbinding undoes it in the other
//! order: the device, between two accesses, forgets the binding and drops
//! its entries first, then the mm is unsubscribed, the ASID unpinned and
//! the hold let go. A process that ends unbinds whatever it bound before
//! its address space is let go of ([`process_exited`]), so the hold never
//! keeps a dead address space.
//!
//! **Jobs** run in the device's thread one access at a time (the lock of
//! `mm::device`, held with interrupts masked for that one access); between
//! two accesses the thread lets others on its CPU run now and then. A job
//! whose binding went away fails with EFAULT at its next access.

use crate::error::SysError;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use super::process::Process;
use super::wait::{shrink_if_empty, WaitQueue};
use super::{sched, Task};
use crate::arch::cpu::{irq_restore, irq_save};
use crate::arch::uaccess::{copy_from_user, copy_to_user};
use crate::mm::device::notify::DEVICES;
use crate::mm::device::{Progress, Run, Work};
use crate::mm::hw::Hw;
use crate::mm::phys::KernelMem;
use crate::mm::user::UserMm;
use crate::sync::IrqMutex;
use abi::device::{self as d, COUNT};

/// The result of a job not finished yet.
const RUNNING: i64 = i64::MIN;
/// Steps (accesses, or retries) between two looks at the CPU's run queue.
const RESCHED_EVERY: u64 = 64;
/// Spins after a retry before the next try (the invalidation that made it
/// retry is being carried out on another CPU).
const RETRY_SPINS: u32 = 100;
/// How long the boot waits for the device threads to start.
const START_WAIT_MS: u32 = 5000;

/// A job submitted to a device.
struct Job {
    id: u64,
    /// The binding it was submitted under.
    gen: u64,
    work: Work,
    /// Taken by the device's thread.
    started: AtomicBool,
    /// A watch stops at its next read (`abi::device::STOP`).
    stop: AtomicBool,
    /// [`RUNNING`], then the result: a value, or `-errno`.
    result: AtomicI64,
    report: spin::Mutex<[u64; d::REPORT_WORDS]>,
}

impl Job {
    fn is_done(&self) -> bool {
        self.result.load(Ordering::Acquire) != RUNNING
    }

    /// Ends the job with `r` unless it ended already.
    fn finish(&self, r: Result<u64, SysError>) {
        // A value is a byte count, a checksum of at most
        // `MAX_COPY_LEN` bytes or a count of reads: never negative.
        let v = r.map_or_else(SysError::errno, |v| v as i64);
        let _ = self.result.compare_exchange(RUNNING, v, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The process a device is bound to.
struct Owner {
    pid: u64,
    mm: Arc<UserMm>,
    gen: u64,
}

struct Ctl {
    owner: Option<Owner>,
    /// The binding's jobs not yet waited for, in submission order (at most
    /// `abi::device::MAX_QUEUE`).
    jobs: VecDeque<Arc<Job>>,
}

/// A device as the kernel runs it (its cache and inbox are
/// `mm::device::notify::DEVICES`).
struct Device {
    ctl: IrqMutex<Ctl>,
    /// The device's thread waits here for a job.
    work: WaitQueue,
    /// `dev_wait` waits here for a job to end.
    done: WaitQueue,
    /// The CPU its thread runs on.
    cpu: AtomicUsize,
}

static DEVS: [Device; COUNT] = [const {
    Device {
        ctl: IrqMutex::new(Ctl { owner: None, jobs: VecDeque::new() }),
        work: WaitQueue::new("device idle"),
        done: WaitQueue::new("dev_wait"),
        cpu: AtomicUsize::new(0),
    }
}; COUNT];

static NEXT_GEN: AtomicU64 = AtomicU64::new(1);
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// The CPUs the devices' threads run on.
pub fn cpus() -> [usize; COUNT] {
    core::array::from_fn(|i| DEVS[i].cpu.load(Ordering::Relaxed))
}

/// Starts each device's thread (at boot) on its CPU: `chosen[i]` for
/// device `i` (`dev.cpu`; one value for all, none for the last of the
/// `online` CPUs). A CPU not online is an error naming the option.
pub fn start(chosen: &[u32], online: usize) -> Result<(), alloc::string::String> {
    for (i, dev) in DEVS.iter().enumerate() {
        let cpu = chosen.get(i).or(chosen.last()).map_or(online - 1, |&c| c as usize);
        if cpu >= online {
            return Err(alloc::format!("dev.cpu: CPU {cpu} (device {i}) is not online ({online} CPUs are)"));
        }
        dev.cpu.store(cpu, Ordering::Relaxed);
        let t = Task::new_kernel("device", device_thread, i).map_err(|_| "no memory for the device threads")?;
        t.affinity.store(cpu as i64, Ordering::Relaxed);
        sched::spawn(t);
    }
    // Until each thread waits for work: what the kernel holds is then what
    // it holds whenever the devices are idle (a leak check's baseline).
    for _ in 0..START_WAIT_MS {
        if DEVS.iter().all(|d| d.work.len() == 1) {
            return Ok(());
        }
        sched::sleep_ns(1_000_000);
    }
    log::warn!(target: "dev", "the device threads did not start within {START_WAIT_MS} ms");
    Ok(())
}

fn device(dev: u64) -> Result<(usize, &'static Device), SysError> {
    let i = usize::try_from(dev).ok().filter(|&i| i < COUNT).ok_or(SysError::Inval)?;
    Ok((i, &DEVS[i]))
}

/// `dev_bind(dev)` for a thread of `p`.
pub fn bind(p: &Arc<Process>, dev: u64) -> Result<u64, SysError> {
    let (i, d) = device(dev)?;
    let mut ctl = d.ctl.lock();
    if ctl.owner.is_some() {
        return Err(SysError::Busy);
    }
    let asid = p.mm.pin_asid().map_err(|_| SysError::Again)?;
    // The caller is a live thread, so the process still holds the contents.
    if !p.mm.hold() {
        p.mm.unpin_asid();
        return Err(SysError::Srch);
    }
    p.mm.with_aspace_polling(&Hw, |_| p.mm.subscribe(i));
    let gen = NEXT_GEN.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `ctl.owner` keeps the mm alive (an `Arc` and a hold) and
    // subscribed until `unbind_owner` has unbound this generation.
    unsafe { DEVICES[i].lock().bind(&p.mm, asid, gen) };
    ctl.owner = Some(Owner { pid: p.pid, mm: p.mm.clone(), gen });
    Ok(0)
}

/// `dev_unbind(dev)` for a thread of `p`.
pub fn unbind(p: &Process, dev: u64) -> Result<u64, SysError> {
    let (i, d) = device(dev)?;
    let mut ctl = d.ctl.lock();
    if ctl.owner.as_ref().is_none_or(|o| o.pid != p.pid) {
        return Err(SysError::Inval);
    }
    unbind_owner(i, &mut ctl);
    Ok(0)
}

/// Ends the binding of device `i` (its lock held, interrupts masked): the
/// device forgets it between two accesses, then the mm is unsubscribed,
/// its ASID unpinned and its hold let go; the binding's jobs end and are
/// forgotten.
fn unbind_owner(i: usize, ctl: &mut Ctl) {
    let Some(o) = ctl.owner.take() else { return };
    DEVICES[i].lock().unbind(o.gen);
    o.mm.with_aspace_polling(&Hw, |_| o.mm.unsubscribe(i));
    o.mm.unpin_asid();
    // Never the last hold: the process (or its teardown, which unbinds
    // first) holds one.
    o.mm.release();
    for j in core::mem::take(&mut ctl.jobs) {
        j.stop.store(true, Ordering::Release);
        j.finish(Err(SysError::Fault));
    }
    shrink_if_empty(&mut ctl.jobs);
    DEVS[i].done.wake_all();
}

/// Process `pid` ends: every device it bound is unbound (before its
/// address space is let go of).
pub fn process_exited(pid: u64) {
    for (i, d) in DEVS.iter().enumerate() {
        let mut ctl = d.ctl.lock();
        if ctl.owner.as_ref().is_some_and(|o| o.pid == pid) {
            unbind_owner(i, &mut ctl);
        }
    }
}

/// `dev_submit(dev, job_ptr)` for a thread of `p`: the job's id.
pub fn submit(p: &Process, dev: u64, ptr: u64) -> Result<u64, SysError> {
    let (_, d) = device(dev)?;
    let mut bytes = [0u8; 8 * d::JOB_WORDS];
    if !copy_from_user(&mut bytes, ptr) {
        return Err(SysError::Fault);
    }
    let words = core::array::from_fn(|i| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8 bytes")));
    let work = Work::parse(&words).map_err(SysError::from_errno)?;
    let id = NEXT_JOB.fetch_add(1, Ordering::Relaxed);
    let mut job = Job {
        id,
        gen: 0,
        work,
        started: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        result: AtomicI64::new(RUNNING),
        report: spin::Mutex::new([0; d::REPORT_WORDS]),
    };
    {
        let mut ctl = d.ctl.lock();
        let Some(o) = ctl.owner.as_ref().filter(|o| o.pid == p.pid) else { return Err(SysError::Inval) };
        if ctl.jobs.len() >= d::MAX_QUEUE {
            return Err(SysError::Again);
        }
        job.gen = o.gen;
        ctl.jobs.push_back(Arc::new(job));
    }
    d.work.wake_all();
    Ok(id)
}

/// `dev_wait(dev, id, report_ptr, flags)` for a thread of `p`.
pub fn wait(p: &Process, dev: u64, id: u64, report: u64, flags: u64) -> Result<u64, SysError> {
    let (_, d) = device(dev)?;
    if flags & !d::WAIT_FLAGS != 0 {
        return Err(SysError::Inval);
    }
    let job = {
        let ctl = d.ctl.lock();
        let mine = ctl.owner.as_ref().is_some_and(|o| o.pid == p.pid);
        ctl.jobs.iter().find(|j| mine && j.id == id).cloned().ok_or(SysError::Srch)?
    };
    if flags & d::STOP != 0 {
        job.stop.store(true, Ordering::Release);
    }
    if flags & d::NOWAIT != 0 && !job.is_done() {
        return Err(SysError::Again);
    }
    d.done.wait_until(|| job.is_done()).map_err(|_| SysError::Intr)?;
    // Of two threads waiting for one job, one gets the result; an unbind
    // meanwhile forgot it.
    let claimed = {
        let mut ctl = d.ctl.lock();
        let at = ctl.jobs.iter().position(|j| Arc::ptr_eq(j, &job));
        let claimed = at.and_then(|at| ctl.jobs.remove(at));
        shrink_if_empty(&mut ctl.jobs);
        claimed
    };
    if claimed.is_none() {
        return Err(SysError::Srch);
    }
    if report != 0 {
        let words = *job.report.lock();
        let bytes: [u8; 8 * d::REPORT_WORDS] = core::array::from_fn(|b| words[b / 8].to_le_bytes()[b % 8]);
        if !copy_to_user(report, &bytes) {
            return Err(SysError::Fault);
        }
    }
    match job.result.load(Ordering::Acquire) {
        r if r < 0 => Err(SysError::from_errno(r)),
        r => Ok(r as u64),
    }
}

/// `stats(DEVICE + dev)`'s words.
pub fn stat_words(dev: usize) -> Option<[u64; d::STAT_COUNT]> {
    Some(DEVICES.get(dev)?.counters.words())
}

/// A device's thread: `arg` is its number.
fn device_thread(i: usize) {
    let d = &DEVS[i];
    loop {
        let mut next = None;
        let _ = d.work.wait_until(|| {
            let ctl = d.ctl.lock();
            next = ctl.jobs.iter().find(|j| !j.started.swap(true, Ordering::AcqRel)).cloned();
            next.is_some()
        });
        let Some(job) = next else { continue };
        let (r, report) = run(i, &job);
        *job.report.lock() = report;
        // Counted before it ends: its waiter may read the counters then.
        DEVICES[i].counters.add(d::JOBS, 1);
        job.finish(r);
        d.done.wake_all();
    }
}

/// Runs `job` on device `i` to its end: its result and report.
fn run(i: usize, job: &Job) -> (Result<u64, SysError>, [u64; d::REPORT_WORDS]) {
    let core = &DEVICES[i];
    let mut r = Run::new(job.work);
    let deadline = match job.work {
        Work::Watch { ns, .. } => {
            let ticks = sched::ns_to_ticks(ns, platform::timer::frequency());
            Some(platform::timer::now().saturating_add(ticks))
        }
        _ => None,
    };
    let mut steps = 0u64;
    let result = loop {
        if deadline.is_some() && job.stop.load(Ordering::Acquire) {
            break Ok(r.reads());
        }
        // One access, with interrupts masked: a CPU waiting for this
        // device's acknowledgement waits for no more than that.
        let daif = irq_save();
        let p = r.step(&mut core.lock(), &KernelMem, job.gen);
        irq_restore(daif);
        match p {
            Progress::More => {}
            Progress::Retry => (0..RETRY_SPINS).for_each(|_| core::hint::spin_loop()),
            Progress::Done(v) => break Ok(v),
            Progress::Failed(e) => break Err(e),
        }
        if deadline.is_some_and(|t| platform::timer::now() >= t) {
            break Ok(r.reads());
        }
        steps += 1;
        if steps.is_multiple_of(RESCHED_EVERY) {
            sched::cond_resched();
        }
    };
    (result.map_err(SysError::from_errno), r.report().words())
}
