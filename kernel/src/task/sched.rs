//! The SMP scheduler: per-CPU run queues, wake-ups, sleep, affinity,
//! migration, stealing for load balance, and preemption of user code on the
//! timer tick. Kernel code is not preempted: it yields or blocks.
//!
//! Lifecycle of a switch: `schedule` picks `next`, waits until `next` is no
//! longer live on another CPU (`on_cpu`), switches TTBR0 if the address
//! space changes, and switches stacks; `finish_switch` then runs on `next`'s
//! stack and re-queues or drops `prev`. Every scheduler lock is an
//! [`IrqMutex`], so the tick handler can wake tasks.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::wait::Block;
use super::{State, Task};
use crate::arch::context::switch_context;
use crate::arch::cpu::{cpu_id, irq_restore, irq_save, wfi};
use crate::percpu::{self, MAX_CPUS};
use crate::sync::IrqMutex;
use platform::{gic, timer};

/// SGI that tells a CPU to look at its run queue.
pub const SGI_RESCHED: u32 = 3;

/// Run-queue and sleeper-list slots each CPU keeps allocated. A queue that
/// grew beyond them gives the extra back once it is empty again, so the
/// heap a quiet kernel uses does not depend on past load (leak tests
/// compare it exactly) and the common case never allocates.
const RQ_KEEP: usize = 32;
const SLEEPERS_KEEP: usize = 16;

fn trim_queue<T>(q: &mut VecDeque<T>, keep: usize) {
    if q.is_empty() && q.capacity() > keep {
        q.shrink_to(keep);
    }
}

struct CpuSched {
    rq: IrqMutex<VecDeque<Arc<Task>>>,
    sleepers: IrqMutex<Vec<Arc<Task>>>,
    need_resched: AtomicBool,
    /// Only touched by the owning CPU with IRQs masked.
    current: UnsafeCell<Option<Arc<Task>>>,
    prev: UnsafeCell<Option<Arc<Task>>>,
    /// `schedule` turned `prev` from Running into Runnable (preempted,
    /// yielded, migrating): `finish_switch` must queue it. A task that
    /// blocked is queued by whoever wakes it, never here.
    requeue_prev: AtomicBool,
    idle: UnsafeCell<Option<Arc<Task>>>,
    switches: AtomicU64,
    steals: AtomicU64,
}

// SAFETY: the UnsafeCells are only accessed by the CPU that owns this entry,
// with IRQs masked; the rest is locks and atomics.
unsafe impl Sync for CpuSched {}

#[allow(clippy::declare_interior_mutable_const)]
const CPU_SCHED: CpuSched = CpuSched {
    rq: IrqMutex::new(VecDeque::new()),
    sleepers: IrqMutex::new(Vec::new()),
    need_resched: AtomicBool::new(false),
    current: UnsafeCell::new(None),
    prev: UnsafeCell::new(None),
    requeue_prev: AtomicBool::new(false),
    idle: UnsafeCell::new(None),
    switches: AtomicU64::new(0),
    steals: AtomicU64::new(0),
};

static CPUS: [CpuSched; MAX_CPUS] = [CPU_SCHED; MAX_CPUS];

fn me() -> &'static CpuSched {
    &CPUS[cpu_id()]
}

/// Context switches performed on `cpu`.
pub fn switches(cpu: usize) -> u64 {
    CPUS[cpu].switches.load(Ordering::Relaxed)
}

/// Tasks this CPU took from another CPU's queue.
pub fn steals(cpu: usize) -> u64 {
    CPUS[cpu].steals.load(Ordering::Relaxed)
}

/// The task running on this CPU.
pub fn current() -> Arc<Task> {
    let daif = irq_save();
    // SAFETY: own CPU's entry, IRQs masked.
    let t = unsafe { (*me().current.get()).clone() }.expect("scheduler initialised on this CPU");
    irq_restore(daif);
    t
}

fn is_idle(cs: &CpuSched, t: &Arc<Task>) -> bool {
    // SAFETY: own CPU's entry, IRQs masked by the caller.
    unsafe { (*cs.idle.get()).as_ref().is_some_and(|i| Arc::ptr_eq(i, t)) }
}

/// Makes the running context of this CPU a task. `idle` says whether it is
/// this CPU's idle loop (secondaries) or a real thread (the boot CPU's main
/// thread, which gets a separate idle task).
pub fn init_cpu(cpu: usize, name: &'static str, idle: bool) {
    let t = Task::new_kernel(name, |_| {}, 0).expect("memory for the boot task");
    t.set_state(State::Running);
    t.on_cpu.store(true, Ordering::Relaxed);
    t.affinity.store(cpu as i64, Ordering::Relaxed);
    t.cpu.store(cpu, Ordering::Relaxed);
    let daif = irq_save();
    let cs = &CPUS[cpu];
    cs.rq.lock().reserve_exact(RQ_KEEP);
    cs.sleepers.lock().reserve_exact(SLEEPERS_KEEP);
    // SAFETY: own CPU's entry, IRQs masked.
    unsafe {
        *cs.current.get() = Some(t.clone());
        if idle {
            *cs.idle.get() = Some(t);
        } else {
            let idle = Task::new_kernel("idle", |_| idle_loop(), 0).expect("memory for the idle task");
            idle.affinity.store(cpu as i64, Ordering::Relaxed);
            *cs.idle.get() = Some(idle);
        }
    }
    irq_restore(daif);
    if let Err(e) = gic::enable_private(SGI_RESCHED, cpu) {
        log::error!(target: "sched", "cannot enable the reschedule SGI on CPU {cpu}: {e}");
    }
}

/// The idle loop: wait for an interrupt, run whatever became runnable.
pub fn idle_loop() -> ! {
    loop {
        let daif = irq_save();
        if has_work(cpu_id()) {
            schedule();
        } else {
            wfi();
        }
        irq_restore(daif);
        crate::arch::cpu::irq_enable();
    }
}

fn may_run_on(t: &Task, cpu: usize) -> bool {
    let a = t.affinity.load(Ordering::Relaxed);
    a < 0 || a as usize == cpu
}

fn has_work(cpu: usize) -> bool {
    if !CPUS[cpu].rq.lock().is_empty() {
        return true;
    }
    (0..MAX_CPUS).any(|c| c != cpu && CPUS[c].rq.lock().iter().any(|t| may_run_on(t, cpu)))
}

/// Takes the next task for `cpu`: its own queue first, then one stolen from
/// the longest other queue.
fn pick(cpu: usize) -> Option<Arc<Task>> {
    {
        let mut q = CPUS[cpu].rq.lock();
        if let Some(t) = q.pop_front() {
            trim_queue(&mut q, RQ_KEEP);
            t.queued.store(false, Ordering::Release);
            return Some(t);
        }
    }
    let mut best: Option<(usize, usize)> = None;
    for c in (0..MAX_CPUS).filter(|&c| c != cpu) {
        let len = CPUS[c].rq.lock().len();
        if len > 0 && best.is_none_or(|(_, l)| len > l) {
            best = Some((c, len));
        }
    }
    let (victim, _) = best?;
    let mut q = CPUS[victim].rq.lock();
    let pos = q.iter().position(|t| may_run_on(t, cpu))?;
    let t = q.remove(pos)?;
    trim_queue(&mut q, RQ_KEEP);
    t.queued.store(false, Ordering::Release);
    CPUS[cpu].steals.fetch_add(1, Ordering::Relaxed);
    Some(t)
}

/// Puts a runnable task on a run queue: its pinned CPU, else the shortest
/// queue among online CPUs (its last CPU on ties), and kicks that CPU.
#[track_caller]
pub fn enqueue(t: Arc<Task>) {
    assert_ne!(
        t.state(),
        State::Dead,
        "enqueue of dead task {} ({}) from {}",
        t.id,
        t.name,
        core::panic::Location::caller()
    );
    if t.queued.swap(true, Ordering::AcqRel) {
        return;
    }
    let a = t.affinity.load(Ordering::Relaxed);
    let target = if a >= 0 {
        a as usize
    } else {
        let last = t.cpu.load(Ordering::Relaxed);
        let mut best = (last, CPUS[last].rq.lock().len());
        for c in 0..MAX_CPUS {
            if percpu::get(c).online.load(Ordering::Acquire) {
                let len = CPUS[c].rq.lock().len();
                if len < best.1 {
                    best = (c, len);
                }
            }
        }
        best.0
    };
    CPUS[target].rq.lock().push_back(t);
    CPUS[target].need_resched.store(true, Ordering::Release);
    if target != cpu_id() {
        let _ = gic::send_sgi(SGI_RESCHED, percpu::get(target).mpidr.load(Ordering::Relaxed));
    }
}

/// Makes a blocked task runnable.
pub fn wake(t: &Arc<Task>) {
    if t.cas_state(State::Blocked, State::Runnable) {
        enqueue(t.clone());
    }
}

/// Gives up the CPU; returns when this task is picked again.
pub fn schedule() {
    let daif = irq_save();
    let cpu = cpu_id();
    let cs = &CPUS[cpu];
    cs.need_resched.store(false, Ordering::Relaxed);
    let prev = current();
    let prev_state = prev.state();
    let runnable_here = prev_state == State::Running && may_run_on(&prev, cpu) && !is_idle(cs, &prev);
    let next = match pick(cpu) {
        Some(t) => t,
        None if runnable_here => {
            irq_restore(daif);
            return;
        }
        None if is_idle(cs, &prev) && prev_state == State::Running => {
            irq_restore(daif);
            return;
        }
        // SAFETY: own CPU's entry, IRQs masked.
        None => unsafe { (*cs.idle.get()).clone() }.expect("idle task"),
    };
    if Arc::ptr_eq(&next, &prev) {
        assert_ne!(prev_state, State::Dead, "dead task {} ({}) picked itself", prev.id, prev.name);
        prev.set_state(State::Running);
        irq_restore(daif);
        return;
    }
    let requeue = prev_state == State::Running && !is_idle(cs, &prev);
    if prev_state == State::Running {
        prev.set_state(State::Runnable);
    }
    cs.requeue_prev.store(requeue, Ordering::Relaxed);
    assert_ne!(next.state(), State::Dead, "dead task {} ({}) in a run queue", next.id, next.name);
    while next.on_cpu.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    next.on_cpu.store(true, Ordering::Release);
    next.set_state(State::Running);
    next.cpu.store(cpu, Ordering::Relaxed);
    super::process::switch_mm(&prev, &next);
    cs.switches.fetch_add(1, Ordering::Relaxed);
    let (pctx, nctx) = (prev.ctx_ptr(), next.ctx_ptr());
    // SAFETY: own CPU's entry, IRQs masked; the Arcs stored here keep both
    // tasks alive across the switch.
    unsafe {
        *cs.prev.get() = Some(prev);
        *cs.current.get() = Some(next);
        switch_context(pctx, nctx);
    }
    finish_switch();
    irq_restore(daif);
}

/// Runs on the new task right after a switch (also first thing in a new
/// task): releases the previous task.
fn finish_switch() {
    let cs = me();
    // SAFETY: own CPU's entry, IRQs masked (we are inside `schedule` or at
    // the start of a new task, entered from `schedule`).
    let Some(prev) = (unsafe { (*cs.prev.get()).take() }) else { return };
    // Only whoever makes a task Runnable queues it: `schedule` for a task it
    // preempted (flag set above), `wake` for a task that blocked. Deciding
    // from `prev.state()` here would race with a waker that queued `prev`
    // and another CPU that already runs it: the task would sit in a queue
    // while running and be resumed again after it died. Queue before
    // releasing `on_cpu`: a CPU that pops `prev` waits for it.
    if cs.requeue_prev.swap(false, Ordering::Relaxed) {
        enqueue(prev.clone());
    }
    prev.on_cpu.store(false, Ordering::Release);
    // A Dead task's last reference may drop here, freeing its stack: we are
    // on another stack now.
}

/// The first thing a new task runs (see `arch::context`).
pub(super) extern "C" fn task_first_run() {
    finish_switch();
}

/// The end of a kernel thread.
pub(super) extern "C" fn task_exit_kernel() -> ! {
    exit_current();
}

/// Ends the current task; it never runs again.
pub fn exit_current() -> ! {
    irq_save();
    let me = current();
    me.set_state(State::Dead);
    let id = me.id;
    drop(me);
    schedule();
    let t = current();
    panic!(
        "dead task {id} resumed on CPU {}: current is {} ({}) state {:?} queued {} on_cpu {}",
        cpu_id(),
        t.id,
        t.name,
        t.state(),
        t.queued.load(Ordering::Relaxed),
        t.on_cpu.load(Ordering::Relaxed)
    );
}

/// Lets other runnable tasks run.
pub fn yield_now() {
    schedule();
}

/// Blocks the current task until the virtual counter reaches `deadline`,
/// it is woken earlier (callers loop), or its process is killed.
pub fn sleep_until(deadline: u64) {
    let t = current();
    let cpu = cpu_id();
    t.wake_at.store(deadline, Ordering::Relaxed);
    t.set_waiting("sleep");
    match super::wait::block_unless_killed(&t) {
        Block::Blocked => CPUS[cpu].sleepers.lock().push(t.clone()),
        Block::Killed { woken } => {
            if woken {
                schedule();
            }
            t.set_waiting("");
            return;
        }
    }
    schedule();
    // Woken by the tick (which took us off the list), by a kill, or by
    // anything else that wakes Blocked tasks: leave the list either way,
    // or the list keeps the task (and its stack) alive until the deadline,
    // which may be never.
    let mut s = CPUS[cpu].sleepers.lock();
    s.retain(|x| !Arc::ptr_eq(x, &t));
    trim_vec(&mut s, SLEEPERS_KEEP);
    drop(s);
    t.set_waiting("");
}

fn trim_vec<T>(v: &mut Vec<T>, keep: usize) {
    if v.is_empty() && v.capacity() > keep {
        v.shrink_to(keep);
    }
}

/// Counter ticks in `ns` nanoseconds at frequency `hz`, saturating (a
/// sleep of `u64::MAX` ns at 1 GHz is `u64::MAX` ticks, not an overflow).
pub fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    u64::try_from(ns as u128 * hz as u128 / 1_000_000_000).unwrap_or(u64::MAX)
}

/// Sleeps `ns` nanoseconds, or until the process is killed.
pub fn sleep_ns(ns: u64) {
    let deadline = timer::now().saturating_add(ns_to_ticks(ns, timer::frequency()));
    while timer::now() < deadline {
        if current().process().is_some_and(|p| p.is_killed()) {
            return;
        }
        sleep_until(deadline);
    }
}

/// Timer tick (IRQ context): wakes expired sleepers, asks for preemption.
pub fn tick() {
    let cs = me();
    let now = timer::now();
    {
        // Woken in place, under the list's lock (the run-queue locks nest
        // inside it; nothing takes them in the other order): collecting the
        // expired tasks first would allocate in every tick that wakes one.
        let mut s = cs.sleepers.lock();
        s.retain(|t| {
            let due = t.wake_at.load(Ordering::Relaxed) <= now;
            if due {
                wake(t);
            }
            !due
        });
        trim_vec(&mut s, SLEEPERS_KEEP);
    }
    if !cs.rq.lock().is_empty() {
        cs.need_resched.store(true, Ordering::Release);
    }
}

/// After an interrupt: switch if this CPU was asked to and it may preempt
/// here (user code, or the idle loop).
pub fn maybe_preempt(from_user: bool) {
    let cs = me();
    if !cs.need_resched.load(Ordering::Acquire) {
        return;
    }
    let cur = current();
    if from_user || is_idle(cs, &cur) {
        schedule();
    }
}

/// For a long loop in a kernel thread, which is never preempted: lets the
/// tasks queued on this CPU run first, if there are any. Unlike
/// [`yield_now`] it does not go looking for work in other CPUs' queues, so
/// a kernel thread keeps its CPU while nobody waits for it.
pub fn cond_resched() {
    let daif = irq_save();
    let waiting = !me().rq.lock().is_empty();
    irq_restore(daif);
    if waiting {
        schedule();
    }
}

/// Moves the current task to `cpu` (or lets it run anywhere with `None`).
pub fn set_affinity(cpu: Option<usize>) {
    let t = current();
    t.affinity.store(cpu.map_or(-1, |c| c as i64), Ordering::Relaxed);
    if let Some(c) = cpu {
        if c != cpu_id() {
            schedule();
        }
    }
}

/// Starts a new task.
pub fn spawn(t: Arc<Task>) {
    t.set_state(State::Runnable);
    enqueue(t);
}
