//! Processes: an address space (mm) shared by threads, a parent, children,
//! an exit status; spawn, fork, exit, wait and kill. Which address space a
//! CPU has loaded follows the running task ([`switch_mm`]).

use crate::error::SysError;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::sched::{self, current};
use super::wait::WaitQueue;
use super::{ipc, loader, OutOfMemory, Task};
use crate::arch::exception::TrapFrame;
use crate::mm::user::{self, UserMm};
use crate::sync::IrqMutex;

/// The kernel's address space type.
pub type Mm = UserMm;

/// Called by the scheduler before switching from `prev` to `next`: `next`'s
/// address space (its process's, or the one a kernel thread adopted) goes
/// into TTBR0, lazily kept for a kernel thread (see `mm::user::switch_to`).
pub fn switch_mm(_prev: &Arc<Task>, next: &Arc<Task>) {
    match next.process() {
        Some(p) => user::switch_to(Some(&p.mm)),
        None => user::switch_to(next.adopted()),
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
    fn take() -> Result<ProcessSlot, SysError> {
        PROCESS_OBJECTS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < abi::limits::MAX_PROCESSES).then_some(n + 1))
            .map(|_| ProcessSlot(()))
            .map_err(|_| SysError::Again)
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
    pub fn add_thread(self: &Arc<Self>, entry: u64, sp: u64, arg: u64) -> Result<u64, SysError> {
        self.add_thread_on(entry, sp, arg, None)
    }

    fn add_thread_on(self: &Arc<Self>, entry: u64, sp: u64, arg: u64, cpu: Option<usize>) -> Result<u64, SysError> {
        let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        let ut = UserThread::new(self.clone(), tid);
        let t = Task::new_user(self.name, ut, entry, sp, arg).map_err(|OutOfMemory| SysError::NoMem)?;
        if let Some(c) = cpu {
            t.affinity.store(c as i64, Ordering::Relaxed);
        }
        self.start_thread(tid, t)?;
        Ok(tid)
    }

    /// Registers `t` as thread `tid` and starts it, unless the process
    /// already holds `abi::limits::MAX_THREADS` threads (live or unjoined):
    /// EAGAIN, and `t` is dropped unstarted.
    fn start_thread(&self, tid: u64, t: Arc<Task>) -> Result<(), SysError> {
        {
            let mut threads = self.threads.lock();
            if threads.len() >= abi::limits::MAX_THREADS {
                drop(threads);
                drop(t);
                return Err(SysError::Again);
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
    pub fn join(&self, tid: u64, caller: u64) -> Result<i64, SysError> {
        if tid == caller {
            return Err(SysError::Deadlk);
        }
        self.join_wq
            .wait_for(|| {
                let mut threads = self.threads.lock();
                match threads.get(&tid).map(|s| s.exit_code) {
                    None => Some(Err(SysError::Srch)),
                    Some(None) => None,
                    Some(Some(code)) => {
                        threads.remove(&tid);
                        Some(Ok(code))
                    }
                }
            })
            .map_err(|_| SysError::Intr)?
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        PROCESS_OBJECTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts built-in program `name` with `arg` as a child of `parent` (0 =
/// the kernel).
pub fn spawn(name: &str, arg: u64, parent: u64) -> Result<Arc<Process>, SysError> {
    spawn_on(name, arg, parent, None)
}

/// Like [`spawn`], with the main thread pinned to `cpu` from the start.
/// Any failure leaves nothing behind: the address space is torn down and
/// no process is registered.
pub fn spawn_on(name: &str, arg: u64, parent: u64, cpu: Option<usize>) -> Result<Arc<Process>, SysError> {
    let (pname, elf) = loader::find(name).ok_or(SysError::NoEnt)?;
    let slot = ProcessSlot::take()?;
    let mm = Mm::new().map_err(SysError::from)?;
    let entry = mm.with_aspace(|a| loader::load(a, elf)).map_err(|e| {
        log::debug!(target: "proc", "cannot load {name}: {e}");
        SysError::NoMem
    })?;
    let p = Process::create(slot, pname, parent, mm);
    let tid = p.next_tid.fetch_add(1, Ordering::Relaxed);
    let t = Task::new_user(pname, UserThread::new(p.clone(), tid), entry, abi::USER_STACK_TOP, arg)
        .map_err(|OutOfMemory| SysError::NoMem)?;
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
pub fn fork(parent: &Arc<Process>, frame: &TrapFrame) -> Result<u64, SysError> {
    let slot = ProcessSlot::take()?;
    // The parent's writable pages become read-only; the flush completes
    // before the mm lock is released (even if the fork failed half-way).
    let child_mm = parent.mm.fork().map_err(SysError::from)?;
    let child = Process::create(slot, parent.name, parent.pid, child_mm);
    let tid = child.next_tid.fetch_add(1, Ordering::Relaxed);
    let t = Task::new_user_from_frame(parent.name, UserThread::new(child.clone(), tid), frame)
        .map_err(|OutOfMemory| SysError::NoMem)?;
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
    // it must not load them again (see `space::switch::leave_dying`).
    crate::arch::cpu::irq_save();
    let me = current();
    let p = me.process().expect("user thread").clone();
    let tid = me.user.as_ref().map_or(0, |u| u.tid);
    // First stop walking the mm's tables on this CPU, then count ourselves
    // out: when the last thread tears the tables down, no other thread's CPU
    // still has them in TTBR0. A thread of a process that is ending leaves
    // with its CPU's entries of the ASID dropped (`leave_dying`).
    if p.is_killed() || p.live.load(Ordering::Acquire) == 1 {
        p.mm.leave_dying();
    } else {
        p.mm.leave();
    }
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
    // Jobs still running stop at their next step; the address space goes
    // once the last of them lets go of it (at once if none runs).
    super::jobs::process_exited(p.pid);
    // Devices it bound let go of the address space first (their holds
    // would keep it otherwise).
    super::device::process_exited(p.pid);
    p.mm.release();
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
pub fn wait_child(me: &Arc<Process>, pid: i64) -> Result<(u64, i64), SysError> {
    let matches = |c: u64| pid == -1 || c as i64 == pid;
    let claimed = me
        .child_wq
        .wait_for(|| {
            let mut kids = me.children.lock();
            if !kids.iter().any(|&c| matches(c)) {
                return Some(Err(SysError::Child));
            }
            let i = kids.iter().position(|&c| matches(c) && lookup(c).is_some_and(|p| p.has_exited()))?;
            let claimed = kids.swap_remove(i);
            if kids.is_empty() {
                *kids = Vec::new(); // see `reap`
            }
            Some(Ok(claimed))
        })
        .map_err(|_| SysError::Intr)??;
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
