//! Processes: an address space (mm) shared by threads, a parent, children,
//! an exit status; spawn, fork, exit, wait and kill.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::sched::{self, current};
use super::wait::WaitQueue;
use super::{ipc, loader, OutOfMemory, Task};
use crate::arch::aarch64::cpu::{self, cpu_id};
use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::aarch64::tlbi;
use crate::mm::aspace::{Access, AddressSpace};
use crate::mm::gather::FlushRange;
use crate::mm::tlb::{FlushStrategy, RangePolicy};
use crate::mm::asid::{AsidAllocator, AsidHw, MmContext};
use crate::mm::gather::Gather;
use crate::mm::phys::KernelMem;
use crate::mm::tlb::{Event, Scope, TlbiOp, TLB_STATS};
use crate::mm::tlb::trace::{hook as trace, Cause};
use crate::percpu::MAX_CPUS;
use crate::sync::IrqMutex;
use abi::errno::*;

/// An address space and who uses it.
pub struct Mm {
    pub id: u64,
    pub aspace: IrqMutex<AddressSpace>,
    pub root_pa: u64,
    pub ctx: MmContext,
    /// Threads (and kernel threads that adopted it) using this mm.
    pub users: AtomicUsize,
    /// CPUs whose TTBR0 holds this mm's tables now (bit per CPU).
    pub cpus: AtomicU64,
    /// Set once the mm was loaded on any CPU: before that no TLB can hold
    /// its entries and changes need no invalidation.
    pub ever_active: AtomicBool,
    /// Zapping gathers in flight (Linux's `tlb_flush_pending`): a gather
    /// that finishes while another is in flight cannot know what the other
    /// cleared or freed, so it flushes the whole ASID (mechanisms.md §5).
    pub flush_pending: AtomicUsize,
    /// The allocator gave this mm an ASID (counted in [`MMS_WITH_ASID`]).
    has_asid: AtomicBool,
}

static NEXT_MM: AtomicU64 = AtomicU64::new(1);
/// Address spaces allocated now.
pub static MMS: AtomicUsize = AtomicUsize::new(0);
/// Address spaces that hold an ASID now.
pub static MMS_WITH_ASID: AtomicUsize = AtomicUsize::new(0);

impl Mm {
    fn from_aspace(a: AddressSpace) -> Arc<Mm> {
        MMS.fetch_add(1, Ordering::Relaxed);
        Arc::new(Mm {
            id: NEXT_MM.fetch_add(1, Ordering::Relaxed),
            root_pa: a.root_pa(),
            aspace: IrqMutex::new(a),
            ctx: MmContext::new(),
            users: AtomicUsize::new(0),
            cpus: AtomicU64::new(0),
            ever_active: AtomicBool::new(false),
            flush_pending: AtomicUsize::new(0),
            has_asid: AtomicBool::new(false),
        })
    }

    /// Counts this mm in [`MMS_WITH_ASID`] once it got an ASID.
    fn note_asid(&self) {
        if !self.has_asid.swap(true, Ordering::Relaxed) {
            MMS_WITH_ASID.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn new() -> Result<Arc<Mm>, i64> {
        let a = AddressSpace::new(&KernelMem).map_err(|_| -ENOMEM)?;
        Ok(Mm::from_aspace(a))
    }

    /// Invalidates `r` of this mm on every CPU, as the flush policy says;
    /// returns when the invalidation is complete. An mm that was never
    /// loaded in a TTBR0 has no TLB entries anywhere: nothing to do.
    pub fn flush(&self, r: Option<FlushRange>) {
        let Some(r) = r else { return };
        if !self.ever_active.load(Ordering::Acquire) {
            TLB_STATS.record_event(cpu_id(), Event::NeverActiveSkipped);
            trace::never_active(r.start, r.end);
            return;
        }
        let Some(asid) = self.ctx.asid() else { return };
        let (policy, feat) = policy();
        match policy.plan(&r.request(asid), feat) {
            Ok(plan) => {
                trace::plan(policy, &r.request(asid), &plan);
                tlbi::run(plan.ops(), plan.scope())
            }
            Err(e) => {
                log::error!(target: "tlb", "bad flush request {r:?}: {e}; flushing ASID {asid}");
                trace::bad_request(asid);
                tlbi::run(&[TlbiOp::Asid { asid }], Scope::Broadcast);
            }
        }
    }

    /// Invalidates every entry of this mm's ASID, walk caches included.
    pub fn flush_whole_asid(&self) {
        if !self.ever_active.load(Ordering::Acquire) {
            return;
        }
        if let Some(asid) = self.ctx.asid() {
            trace::whole_asid(asid);
            tlbi::run(&[TlbiOp::Asid { asid }], Scope::Broadcast);
        }
    }

    /// Flushes what `g` gathered, then frees it.
    pub fn finish_gather(&self, g: Gather) {
        g.finish(&KernelMem, |r| self.flush(r));
    }

    /// Finishes the gather of a call that holds the mm lock throughout
    /// (mprotect, mmap with FIXED, fork). A zap in flight (its entries
    /// cleared under the lock, its flush not done yet) may have cleared
    /// entries this call then found empty, so the call's own range proves
    /// nothing: flush the whole ASID, as `finish_zap` does for nested zaps.
    /// Found by the host model (`locked_calls_racing_a_zap_need_the_nested_fix`).
    pub fn finish_locked(&self, g: Gather) {
        let _t = trace::cause(Cause::Locked);
        let racing = self.flush_pending.load(Ordering::Acquire) > 0;
        self.finish_flushing_all_if(g, racing);
    }

    /// Marks a zapping gather (munmap, madvise, reaper) as in flight; call
    /// before clearing any entry, and [`Self::finish_zap`] after.
    pub fn begin_zap(&self) {
        self.flush_pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Finishes a zapping gather, possibly outside the mm lock. If another
    /// zap of this mm is in flight, the range we gathered proves nothing
    /// (the other may have cleared our PTEs first and not flushed yet, or
    /// freed tables), so the whole ASID is flushed, walk caches included —
    /// unless `tlb.nested_fix=off`, which exists only to show the bug.
    pub fn finish_zap(&self, g: Gather) {
        let _t = trace::cause(Cause::Zap);
        let nested = self.flush_pending.load(Ordering::Acquire) > 1;
        self.finish_flushing_all_if(g, nested);
        self.flush_pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Finishes `g`; if `racing` (and `tlb.nested_fix` is on) the whole ASID
    /// is flushed instead of the gathered range, and counted.
    fn finish_flushing_all_if(&self, g: Gather, racing: bool) {
        let fix = crate::OPTIONS.get().is_none_or(|o| o.nested_fix);
        g.finish(&KernelMem, |r| {
            if racing && fix {
                TLB_STATS.record_event(cpu_id(), Event::NestedFullFlush);
                self.flush_whole_asid();
            } else {
                self.flush(r)
            }
        });
    }

    /// Tears the whole address space down when its last thread has exited
    /// (exit mode, mechanisms.md §4).
    ///
    /// Why no TLBI is needed, even though page-table pages are freed:
    /// 1. Every thread of the mm switched its CPU's TTBR0 to the empty table
    ///    before counting itself out (`exit_thread`), and kernel threads in
    ///    this kernel never run on a user mm lazily: they load the empty
    ///    table. So no CPU has this mm's tables or ASID in TTBR0 (checked
    ///    below), and no CPU can walk with this ASID — speculatively or not
    ///    — into the tables we are about to free.
    /// 2. Entries tagged with the dead ASID may stay in TLBs and walk caches,
    ///    but they can only be used by a CPU whose TTBR0 holds that ASID.
    ///    The allocator never hands the ASID to another mm in this
    ///    generation (`release` keeps it taken), and a rollover makes every
    ///    CPU flush its local TLB before it runs any new-generation ASID.
    ///
    /// Linux still flushes the ASID here because its exiting CPU may keep
    /// the dead mm in TTBR0 (and lazy CPUs may too) while tables are freed.
    /// With `tlb.exit_elide=off` the teardown issues one whole-ASID flush
    /// instead, for comparison.
    fn teardown_exit(&self) {
        let _t = trace::cause(Cause::Exit);
        if self.aspace.lock().root_pa() == 0 {
            return; // torn down already
        }
        let loaded = self.cpus.load(Ordering::Acquire);
        if loaded != 0 {
            // Cannot happen (see 1.). If it did, no flush would make freeing
            // safe: a live TTBR0 can walk into (and refill from) any table
            // we free. Leak the whole address space instead, loudly.
            log::error!(target: "tlb", "mm {} still loaded on CPUs {loaded:#x} at exit: leaking it", self.id);
            LEAKED_MMS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let elide = crate::OPTIONS.get().is_none_or(|o| o.exit_elide);
        let (mut flushed, mut counted) = (false, false);
        let mut sink = |r: Option<FlushRange>| {
            if r.is_none() || !self.ever_active.load(Ordering::Acquire) {
                return;
            }
            if elide {
                if !counted {
                    TLB_STATS.record_event(cpu_id(), Event::ExitElided);
                    trace::exit_elided(self.ctx.asid());
                    counted = true;
                }
            } else if !flushed {
                // One flush suffices: no CPU can create new entries for this
                // ASID, so later batches have nothing left to invalidate.
                self.flush_whole_asid();
                flushed = true;
            }
        };
        let a = core::mem::replace(&mut *self.aspace.lock(), AddressSpace::empty());
        let mut g = Gather::new();
        a.teardown(&KernelMem, &mut g, &mut sink);
        g.finish(&KernelMem, sink);
    }

    /// The reaper's teardown: the process was killed but its threads may
    /// still run on other CPUs until they notice. Not exit mode: every
    /// batch is flushed before its frames are freed, so a thread still
    /// running faults (and dies) instead of touching a freed frame.
    ///
    /// `kill` runs under the mm lock before the zap: the victim's threads
    /// learn they were killed only once the reaper holds the address space,
    /// so they cannot tear it down first, and those still running on other
    /// CPUs keep running while their memory is taken.
    pub fn reap(&self, kill: impl FnOnce()) {
        let _t = trace::cause(Cause::Reaper);
        self.begin_zap();
        let mut g = Gather::new();
        {
            let mut a = self.aspace.lock();
            kill();
            let ranges: Vec<(u64, u64)> = a.vmas().iter().map(|v| (v.start, v.end)).collect();
            for (start, end) in ranges {
                let _ = a.munmap(start, end - start, &KernelMem, &mut g, &mut |r| self.flush(r));
            }
        }
        self.finish_zap(g);
    }

    /// Resolves a page fault at `va`; `Err(cause)` if the access is not
    /// allowed (the process is then killed with that cause).
    pub fn fault(&self, va: u64, write: bool, exec: bool) -> Result<(), i64> {
        let _t = trace::cause(Cause::Fault);
        let access = if exec {
            Access::Exec
        } else if write {
            Access::Write
        } else {
            Access::Read
        };
        let r = {
            let mut a = self.aspace.lock();
            a.handle_fault(va, access, &KernelMem, &mut |r| self.flush(r))
        };
        match r {
            Ok(f) => {
                crate::task::syscall::PAGE_FAULTS.fetch_add(1, Ordering::Relaxed);
                if f.local_invalidate() {
                    if let Some(asid) = self.ctx.asid() {
                        let op = TlbiOp::Va { asid, va: f.va, last_level: true, ttl: None };
                        trace::fault_local(&op, Scope::Local);
                        tlbi::run(&[op], Scope::Local);
                    }
                }
                Ok(())
            }
            Err(e) => Err(e.cause()),
        }
    }
}

/// The last reference is gone. An mm whose process never ran (a spawn or
/// fork that failed half-way) still holds its tables and pages: they go now,
/// through the same exit-mode teardown (which flushes nothing for an mm that
/// was never loaded, and leaks rather than frees one still loaded).
impl Drop for Mm {
    fn drop(&mut self) {
        self.teardown_exit();
        if let Some(alloc) = ASIDS.get() {
            alloc.release(&Hw, &self.ctx);
        }
        if self.has_asid.load(Ordering::Relaxed) {
            MMS_WITH_ASID.fetch_sub(1, Ordering::Relaxed);
        }
        MMS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Address spaces leaked because they were still loaded at exit (always 0
/// unless an invariant broke).
pub static LEAKED_MMS: AtomicU64 = AtomicU64::new(0);

/// The flush strategy (the policy parameters come from the command line).
/// Built once, with the features the policy needs, off the flush path.
static POLICY: spin::Once<(RangePolicy, crate::mm::tlb::CpuFeatures)> = spin::Once::new();

pub fn policy() -> &'static (RangePolicy, crate::mm::tlb::CpuFeatures) {
    POLICY.call_once(|| {
        let params = crate::OPTIONS.get().map(|o| o.tlb).unwrap_or_default();
        let f = crate::FEATURES.get().copied().unwrap_or_else(crate::arch::aarch64::cpu::CpuFeatures::detect);
        (RangePolicy::new(params), f.tlb())
    })
}

/// The kernel's ASID allocator.
pub static ASIDS: spin::Once<AsidAllocator> = spin::Once::new();

struct Hw;
impl AsidHw for Hw {
    fn cpu_id(&self) -> usize {
        cpu_id()
    }
    fn flush_local_tlb_all(&self) {
        trace::rollover();
        crate::arch::aarch64::tlbi::local_flush_all();
    }
}

/// Mm id loaded in each CPU's TTBR0 (0 = the empty table).
static LOADED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Loads `mm` into this CPU's TTBR0 (with its ASID).
pub fn activate(mm: &Mm) {
    let c = cpu_id();
    let alloc = ASIDS.get().expect("ASID allocator");
    // Park TTBR0 on the empty table first. During `switch_in` this CPU's
    // `active` ASID already names the next mm; if a rollover on another CPU
    // happened while TTBR0 still held the previous mm (tables and ASID), the
    // previous mm could get a new ASID elsewhere whose TLBIs miss this CPU,
    // which would keep walking the previous mm's tables under the old one.
    // Found by the host model (`previous_mm_in_ttbr0_during_switch_is_caught`);
    // 32-bit Linux does the same ("to avoid speculative page table walking
    // with the wrong TTBR").
    crate::mm::kernel::enter_empty_ttbr0_no_flush();
    let asid = alloc.switch_in(&Hw, &mm.ctx);
    mm.note_asid();
    mm.ever_active.store(true, Ordering::Release);
    mm.cpus.fetch_or(1 << c, Ordering::AcqRel);
    cpu::set_ttbr0(mm.root_pa, asid);
    LOADED[c].store(mm.id, Ordering::Release);
}

/// Points this CPU's TTBR0 at the empty table.
pub fn deactivate(mm: Option<&Mm>) {
    let c = cpu_id();
    crate::mm::kernel::enter_empty_ttbr0_no_flush();
    if let Some(mm) = mm {
        mm.cpus.fetch_and(!(1 << c), Ordering::AcqRel);
    }
    LOADED[c].store(0, Ordering::Release);
}

/// Called by the scheduler before switching from `prev` to `next`.
pub fn switch_mm(prev: &Arc<Task>, next: &Arc<Task>) {
    let c = cpu_id();
    let loaded = LOADED[c].load(Ordering::Acquire);
    match next.process() {
        Some(p) if p.mm.id == loaded => {}
        Some(p) => {
            // Load the new tables first, then drop the old mm's CPU bit: the
            // bit never says "not here" while TTBR0 still holds its tables.
            activate(&p.mm);
            if let Some(pp) = prev.process() {
                if pp.mm.id == loaded {
                    pp.mm.cpus.fetch_and(!(1 << c), Ordering::AcqRel);
                }
            }
        }
        None if loaded != 0 => deactivate(prev.process().map(|p| &*p.mm).filter(|m| m.id == loaded)),
        None => {}
    }
}

pub struct UserThread {
    pub process: Arc<Process>,
    pub tid: u64,
}

impl UserThread {
    /// The thread half of a user task: counts itself in [`THREADS`] until
    /// the task is dropped.
    fn new(process: Arc<Process>, tid: u64) -> UserThread {
        THREADS.fetch_add(1, Ordering::Relaxed);
        UserThread { process, tid }
    }
}

impl Drop for UserThread {
    fn drop(&mut self) {
        THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// User threads whose task still exists.
pub static THREADS: AtomicUsize = AtomicUsize::new(0);

pub struct Process {
    pub pid: u64,
    pub name: &'static str,
    pub parent: u64,
    pub mm: Arc<Mm>,
    /// Threads, live or exited and not joined yet (bounded by
    /// `abi::limits::MAX_THREADS`).
    threads: IrqMutex<BTreeMap<u64, ThreadSlot>>,
    live: AtomicUsize,
    next_tid: AtomicU64,
    killed: AtomicBool,
    /// Handed to the reaper already (a second kill queues nothing).
    reap_queued: AtomicBool,
    exit_status: IrqMutex<Option<i64>>,
    exited: AtomicBool,
    children: IrqMutex<Vec<u64>>,
    /// Woken when a child of this process exits.
    pub child_wq: WaitQueue,
    /// Woken when a thread of this process exits.
    pub join_wq: WaitQueue,
    pub pending_calls: IrqMutex<BTreeMap<u64, Arc<ipc::Call>>>,
    /// Endpoints this process created and has open.
    pub endpoints: AtomicUsize,
    /// User PC to resume at after a fault instead of dying (0: die).
    pub fault_resume: AtomicU64,
}

/// A thread of the process. The task reference is dropped when the thread
/// exits (the task holds its process, so keeping it would be a cycle).
struct ThreadSlot {
    task: Option<Arc<Task>>,
    exit_code: Option<i64>,
}

static PROCS: IrqMutex<BTreeMap<u64, Arc<Process>>> = IrqMutex::new(BTreeMap::new());
static NEXT_PID: AtomicU64 = AtomicU64::new(1);
/// Process objects alive (registered or not, reaped or still referenced):
/// what `abi::limits::MAX_PROCESSES` bounds.
static PROCESS_OBJECTS: AtomicUsize = AtomicUsize::new(0);
/// Woken when any process whose parent is the kernel exits.
pub static KERNEL_CHILD_WQ: WaitQueue = WaitQueue::new("wait (kernel)");

pub fn lookup(pid: u64) -> Option<Arc<Process>> {
    PROCS.lock().get(&pid).cloned()
}

/// Processes alive or not yet reaped.
pub fn count() -> usize {
    PROCS.lock().len()
}

/// A place for one more process under `abi::limits::MAX_PROCESSES`, taken
/// before anything is allocated for it; given back when dropped unless a
/// [`Process`] took it over.
struct ProcessSlot(());

impl ProcessSlot {
    fn take() -> Result<ProcessSlot, i64> {
        PROCESS_OBJECTS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < abi::limits::MAX_PROCESSES).then_some(n + 1))
            .map(|_| ProcessSlot(()))
            .map_err(|_| -EAGAIN)
    }
}

impl Drop for ProcessSlot {
    fn drop(&mut self) {
        PROCESS_OBJECTS.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Process {
    /// A process object owning `mm`, not yet visible to anyone: failures
    /// after this just drop it (and the mm with it, see `Drop for Mm`).
    fn create(slot: ProcessSlot, name: &'static str, parent: u64, mm: Arc<Mm>) -> Arc<Process> {
        core::mem::forget(slot); // released by `Drop for Process`
        Arc::new(Process {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name,
            parent,
            mm,
            threads: IrqMutex::new(BTreeMap::new()),
            live: AtomicUsize::new(0),
            next_tid: AtomicU64::new(1),
            killed: AtomicBool::new(false),
            reap_queued: AtomicBool::new(false),
            exit_status: IrqMutex::new(None),
            exited: AtomicBool::new(false),
            children: IrqMutex::new(Vec::new()),
            child_wq: WaitQueue::new("wait"),
            join_wq: WaitQueue::new("join"),
            pending_calls: IrqMutex::new(BTreeMap::new()),
            endpoints: AtomicUsize::new(0),
            fault_resume: AtomicU64::new(0),
        })
    }

    /// Makes the process visible: lookups, its parent's `wait`.
    fn register(self: &Arc<Self>) {
        PROCS.lock().insert(self.pid, self.clone());
        if let Some(pp) = lookup(self.parent) {
            pp.children.lock().push(self.pid);
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
    }

    pub fn exit_status(&self) -> Option<i64> {
        *self.exit_status.lock()
    }

    /// Adds a thread entering EL0 at `entry`; returns its tid.
    pub fn add_thread(self: &Arc<Self>, entry: u64, sp: u64, arg: u64) -> Result<u64, i64> {
        self.add_thread_on(entry, sp, arg, None)
    }

    fn add_thread_on(self: &Arc<Self>, entry: u64, sp: u64, arg: u64, cpu: Option<usize>) -> Result<u64, i64> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let ut = UserThread::new(self.clone(), tid);
        let t = Task::new_user(self.name, ut, entry, sp, arg).map_err(|OutOfMemory| -ENOMEM)?;
        if let Some(c) = cpu {
            t.affinity.store(c as i64, Ordering::Relaxed);
        }
        self.start_thread(tid, t)?;
        Ok(tid)
    }

    /// Registers `t` as thread `tid` and starts it, unless the process
    /// already holds `abi::limits::MAX_THREADS` threads (live or unjoined):
    /// EAGAIN, and `t` is dropped unstarted.
    fn start_thread(&self, tid: u64, t: Arc<Task>) -> Result<(), i64> {
        {
            let mut threads = self.threads.lock();
            if threads.len() >= abi::limits::MAX_THREADS {
                drop(threads);
                drop(t);
                return Err(-EAGAIN);
            }
            self.live.fetch_add(1, Ordering::AcqRel);
            self.mm.users.fetch_add(1, Ordering::AcqRel);
            threads.insert(tid, ThreadSlot { task: Some(t.clone()), exit_code: None });
        }
        sched::spawn(t);
        Ok(())
    }

    /// Marks the process killed with `status` (first cause wins) and wakes
    /// its blocked threads so they notice (see `wait.rs` for the ordering).
    pub fn kill(&self, status: i64) {
        {
            let mut s = self.exit_status.lock();
            if s.is_none() {
                *s = Some(status);
            }
        }
        self.killed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let tasks: Vec<Arc<Task>> = self.threads.lock().values().filter_map(|s| s.task.clone()).collect();
        for t in &tasks {
            sched::wake(t);
        }
    }

    /// Hands the process to the reaper unless that happened already.
    pub fn claim_for_reaper(&self) -> bool {
        !self.reap_queued.swap(true, Ordering::AcqRel)
    }

    /// Waits for thread `tid` of this process to end and returns its exit
    /// code. `caller` is the calling thread's tid (EDEADLK if equal). Of
    /// two threads joining one, one gets the code, the other ESRCH.
    pub fn join(&self, tid: u64, caller: u64) -> Result<i64, i64> {
        if tid == caller {
            return Err(-EDEADLK);
        }
        self.join_wq
            .wait_for(|| {
                let mut threads = self.threads.lock();
                match threads.get(&tid).map(|s| s.exit_code) {
                    None => Some(Err(-ESRCH)),
                    Some(None) => None,
                    Some(Some(code)) => {
                        threads.remove(&tid);
                        Some(Ok(code))
                    }
                }
            })
            .map_err(|_| -EINTR)?
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        PROCESS_OBJECTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Pins `mm`'s ASID (it then survives rollovers) and returns it.
pub fn pin_asid(mm: &Mm) -> Result<u16, crate::mm::asid::AsidError> {
    let asid = ASIDS.get().expect("ASID allocator").pin(&Hw, &mm.ctx)?;
    mm.note_asid();
    Ok(asid)
}

pub fn unpin_asid(mm: &Mm) {
    ASIDS.get().expect("ASID allocator").unpin(&Hw, &mm.ctx)
}

/// Starts built-in program `name` with `arg` as a child of `parent` (0 =
/// the kernel).
pub fn spawn(name: &str, arg: u64, parent: u64) -> Result<Arc<Process>, i64> {
    spawn_on(name, arg, parent, None)
}

/// Like [`spawn`], with the main thread pinned to `cpu` from the start.
/// Any failure leaves nothing behind: the address space is torn down and
/// no process is registered.
pub fn spawn_on(name: &str, arg: u64, parent: u64, cpu: Option<usize>) -> Result<Arc<Process>, i64> {
    let (pname, elf) = loader::find(name).ok_or(-ENOENT)?;
    let slot = ProcessSlot::take()?;
    let mm = Mm::new()?;
    let entry = {
        let mut a = mm.aspace.lock();
        loader::load(&mut a, elf).map_err(|e| {
            log::debug!(target: "proc", "cannot load {name}: {e}");
            -ENOMEM
        })?
    };
    let p = Process::create(slot, pname, parent, mm);
    let tid = p.next_tid.fetch_add(1, Ordering::Relaxed);
    let t = Task::new_user(pname, UserThread::new(p.clone(), tid), entry, abi::USER_STACK_TOP, arg)
        .map_err(|OutOfMemory| -ENOMEM)?;
    if let Some(c) = cpu {
        t.affinity.store(c as i64, Ordering::Relaxed);
    }
    p.register();
    if let Err(e) = p.start_thread(tid, t) {
        unregister(&p);
        return Err(e);
    }
    Ok(p)
}

/// fork(): a copy-on-write child whose one thread resumes from `frame`.
/// A failure at any step leaves no child behind.
pub fn fork(parent: &Arc<Process>, frame: &TrapFrame) -> Result<u64, i64> {
    let slot = ProcessSlot::take()?;
    let mut g = Gather::new();
    let child_as = {
        let mut a = parent.mm.aspace.lock();
        let r = a.fork(&KernelMem, &mut g);
        // The parent's writable pages became read-only: the flush completes
        // before the lock is released (and even if the fork failed half-way).
        parent.mm.finish_locked(g);
        r
    };
    let child_as = child_as.map_err(|e| e.errno())?;
    let child = Process::create(slot, parent.name, parent.pid, Mm::from_aspace(child_as));
    let tid = child.next_tid.fetch_add(1, Ordering::Relaxed);
    let t = Task::new_user_from_frame(parent.name, UserThread::new(child.clone(), tid), frame)
        .map_err(|OutOfMemory| -ENOMEM)?;
    child.register();
    if let Err(e) = child.start_thread(tid, t) {
        unregister(&child);
        return Err(e);
    }
    Ok(child.pid)
}

/// Undoes [`Process::register`] for a process none of whose threads ran.
fn unregister(p: &Arc<Process>) {
    p.exited.store(true, Ordering::SeqCst);
    reap(p.pid);
}

/// Ends the current user thread with `code`; the last one out tears the
/// process down. The caller holds no reference it would leak: this never
/// returns, so nothing on the caller's stack is ever dropped.
pub fn exit_thread(code: i64) -> ! {
    // No rescheduling from here on: once this CPU has left the mm's tables
    // it must not load them again (see `Mm::teardown_exit`).
    crate::arch::aarch64::cpu::irq_save();
    let me = current();
    let p = me.process().expect("user thread").clone();
    let tid = me.user.as_ref().map_or(0, |u| u.tid);
    // First stop walking the mm's tables on this CPU, then count ourselves
    // out: when the last thread tears the tables down, no other thread's CPU
    // still has them in TTBR0.
    deactivate(Some(&p.mm));
    if let Some(s) = p.threads.lock().get_mut(&tid) {
        s.exit_code = Some(code);
        s.task = None;
    }
    p.join_wq.wake_all();
    p.mm.users.fetch_sub(1, Ordering::AcqRel);
    if p.live.fetch_sub(1, Ordering::AcqRel) == 1 {
        teardown(&p);
    }
    drop(p);
    drop(me);
    sched::exit_current()
}

/// exit(): the whole process ends with `status`.
pub fn exit_process(status: i64) -> ! {
    let me = current();
    let p = me.process().expect("user thread").clone();
    p.kill(status);
    drop(p);
    drop(me);
    exit_thread(status)
}

fn teardown(p: &Arc<Process>) {
    ipc::process_exited(p);
    p.mm.teardown_exit();
    if let Some(alloc) = ASIDS.get() {
        alloc.release(&Hw, &p.mm.ctx);
    }
    {
        let mut s = p.exit_status.lock();
        if s.is_none() {
            *s = Some(0);
        }
    }
    // `exited` and the parent's state are a Dekker pair with the parent's
    // own teardown (SeqCst on both sides): of a parent and a child exiting
    // at once, at least one sees the other exited, so an exited child is
    // always reaped by someone.
    p.exited.store(true, Ordering::SeqCst);
    // Orphans are reaped when they exit.
    let kids = core::mem::take(&mut *p.children.lock());
    for k in kids {
        if lookup(k).is_some_and(|c| c.has_exited()) {
            reap(k);
        }
    }
    match lookup(p.parent) {
        Some(pp) if !pp.has_exited() => pp.child_wq.wake_all(),
        _ if p.parent == 0 => KERNEL_CHILD_WQ.wake_all(),
        _ => reap(p.pid),
    }
}

fn reap(pid: u64) {
    let p = {
        let mut procs = PROCS.lock();
        let p = procs.remove(&pid);
        if procs.is_empty() {
            // An empty map keeps no node: a quiet kernel's heap use does
            // not depend on how many processes once lived.
            *procs = BTreeMap::new();
        }
        p
    };
    if let Some(p) = p {
        if let Some(pp) = lookup(p.parent) {
            let mut kids = pp.children.lock();
            kids.retain(|&c| c != pid);
            if kids.is_empty() {
                *kids = Vec::new();
            }
        }
    }
}

/// wait(): for a child (`pid` > 0) or any child (`pid` == -1) to exit.
/// The child is claimed under the parent's child list lock, so of two
/// waiters for one child exactly one gets it; the other sees ECHILD once no
/// child it could wait for is left.
pub fn wait_child(me: &Arc<Process>, pid: i64) -> Result<(u64, i64), i64> {
    let matches = |c: u64| pid == -1 || c as i64 == pid;
    let claimed = me
        .child_wq
        .wait_for(|| {
            let mut kids = me.children.lock();
            if !kids.iter().any(|&c| matches(c)) {
                return Some(Err(-ECHILD));
            }
            let i = kids.iter().position(|&c| matches(c) && lookup(c).is_some_and(|p| p.has_exited()))?;
            let claimed = kids.swap_remove(i);
            if kids.is_empty() {
                *kids = Vec::new(); // see `reap`
            }
            Some(Ok(claimed))
        })
        .map_err(|_| -EINTR)??;
    let status = lookup(claimed).and_then(|c| c.exit_status()).unwrap_or(0);
    reap(claimed);
    Ok((claimed, status))
}

/// For kernel tests: waits until process `pid` (a child of the kernel) has
/// exited, reaps it and returns its status.
pub fn wait_from_kernel(p: &Arc<Process>) -> i64 {
    let _ = KERNEL_CHILD_WQ.wait_until(|| p.has_exited());
    let s = p.exit_status().unwrap_or(0);
    reap(p.pid);
    s
}

/// For kernel tests: like [`wait_from_kernel`], but gives up after `ms`
/// milliseconds: then the process is killed (and reaped) and `None` comes
/// back, so a test can fail on a hang instead of hanging.
pub fn wait_from_kernel_for(p: &Arc<Process>, ms: u64) -> Option<i64> {
    let deadline = platform::timer::now()
        .saturating_add(sched::ns_to_ticks(ms.saturating_mul(1_000_000), platform::timer::frequency()));
    while !p.has_exited() {
        if platform::timer::now() >= deadline {
            super::reaper::kill(p);
            wait_from_kernel(p);
            return None;
        }
        sched::sleep_ns(1_000_000);
    }
    Some(wait_from_kernel(p))
}

/// Whether `p` is process `ancestor` or descends from it (through parents
/// that are not reaped yet): what `kill` allows.
pub fn is_self_or_descendant(p: &Arc<Process>, ancestor: u64) -> bool {
    let mut pid = p.pid;
    let mut parent = p.parent;
    // Parents have smaller pids than their children: the walk ends.
    loop {
        if pid == ancestor {
            return true;
        }
        if parent == 0 || parent >= pid {
            return false;
        }
        pid = parent;
        parent = match lookup(pid) {
            Some(pp) => pp.parent,
            None => return false,
        };
    }
}

/// Kills the current process because of `cause` and ends this thread.
pub fn kill_current(cause: i64) -> ! {
    let me = current();
    let p = me.process().expect("user thread").clone();
    p.kill(abi::KILLED_BASE + cause);
    drop(p);
    drop(me);
    exit_thread(abi::KILLED_BASE + cause)
}
