//! Tasks (kernel threads and user threads), the scheduler, processes and
//! system calls.

pub mod device;
pub mod futex;
pub mod ipc;
pub mod jobs;
pub mod loader;
pub mod process;
pub mod reaper;
mod registry;
pub mod sched;
pub mod syscall;
pub mod wait;

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::arch::context::Context;
use crate::arch::exception::{TrapFrame, TRAP_FRAME_BYTES};
use crate::arch::layout::phys_to_virt;
use crate::mm::frame::Frames;
use crate::mm::user::UserMm;

/// Kernel stack per task: 32 KiB.
pub const KSTACK_PAGES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Runnable = 0,
    Running = 1,
    Blocked = 2,
    Dead = 3,
}

pub struct Task {
    pub id: usize,
    pub name: &'static str,
    state: AtomicU8,
    ctx: UnsafeCell<Context>,
    /// True while the task's registers live on a CPU (set when it is switched
    /// in, cleared once its context is saved). Nobody may resume it before.
    pub(crate) on_cpu: AtomicBool,
    /// True while the task sits in a run queue (guards double enqueue).
    pub(crate) queued: AtomicBool,
    /// CPU it must run on, or -1.
    pub affinity: AtomicI64,
    /// CPU it last ran on.
    pub cpu: AtomicUsize,
    /// Virtual-counter deadline while sleeping (0 = not sleeping).
    pub wake_at: AtomicU64,
    kstack: Frames,
    /// User side, for user threads.
    pub user: Option<process::UserThread>,
    /// What the task waits for while Blocked ("" otherwise), for [`dump`].
    waiting: spin::Mutex<&'static str>,
    /// Its slot in the registry [`dump`] reads.
    slot: AtomicUsize,
    /// The user address space a kernel thread adopted ([`Task::adopt`]), as
    /// `Arc::into_raw`; null otherwise.
    adopted: AtomicPtr<UserMm>,
}

// SAFETY: `ctx` is only touched by the scheduler on the CPU switching the
// task out or in, serialised by `on_cpu`; everything else is atomic or
// immutable.
unsafe impl Sync for Task {}
// SAFETY: as above.
unsafe impl Send for Task {}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory;

impl Task {
    fn alloc(name: &'static str, user: Option<process::UserThread>) -> Result<Task, OutOfMemory> {
        let kstack = crate::mm::phys::alloc_frames(KSTACK_PAGES).ok_or(OutOfMemory)?;
        TASKS.fetch_add(1, Ordering::Relaxed);
        Ok(Task {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            state: AtomicU8::new(State::Runnable as u8),
            ctx: UnsafeCell::new(Context::default()),
            on_cpu: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            affinity: AtomicI64::new(-1),
            cpu: AtomicUsize::new(0),
            wake_at: AtomicU64::new(0),
            kstack,
            user,
            waiting: spin::Mutex::new(""),
            slot: AtomicUsize::new(usize::MAX),
            adopted: AtomicPtr::new(core::ptr::null_mut()),
        })
    }

    /// Records what the task waits for ("" when it stops waiting).
    pub fn set_waiting(&self, what: &'static str) {
        *self.waiting.lock() = what;
    }

    pub fn kstack_top(&self) -> u64 {
        phys_to_virt(self.kstack.pa()) + (KSTACK_PAGES as u64) * 4096
    }

    /// A kernel thread that runs `f(arg)` and then exits.
    pub fn new_kernel(name: &'static str, f: fn(usize), arg: usize) -> Result<Arc<Task>, OutOfMemory> {
        let t = Task::alloc(name, None)?;
        {
            // SAFETY: the task is not shared yet.
            let ctx = unsafe { &mut *t.ctx.get() };
            *ctx = Context::kernel_thread(t.kstack_top(), f, arg, sched::task_first_run, sched::task_exit_kernel);
        }
        Ok(registry::register(Arc::new(t)))
    }

    /// A user thread that enters EL0 at `entry` with `sp_el0` and x0 = `arg`.
    pub fn new_user(
        name: &'static str,
        user: process::UserThread,
        entry: u64,
        sp_el0: u64,
        arg: u64,
    ) -> Result<Arc<Task>, OutOfMemory> {
        let t = Task::alloc(name, Some(user))?;
        let frame_addr = t.kstack_top() - TRAP_FRAME_BYTES;
        let mut frame = TrapFrame { elr: entry, sp_el0, spsr: 0, ..TrapFrame::default() };
        frame.x[0] = arg;
        // SAFETY: the frame slot lies at the top of the task's own fresh
        // kernel stack, mapped in the linear map and used by nobody else.
        unsafe { (frame_addr as *mut TrapFrame).write(frame) };
        {
            // SAFETY: the task is not shared yet.
            let ctx = unsafe { &mut *t.ctx.get() };
            *ctx = Context::user_thread(frame_addr, sched::task_first_run);
        }
        Ok(registry::register(Arc::new(t)))
    }

    /// A user thread that resumes from a copy of `parent_frame` with x0 = 0
    /// (the child side of fork).
    pub fn new_user_from_frame(
        name: &'static str,
        user: process::UserThread,
        parent_frame: &TrapFrame,
    ) -> Result<Arc<Task>, OutOfMemory> {
        let t = Task::new_user(name, user, parent_frame.elr, parent_frame.sp_el0, 0)?;
        let frame_addr = t.kstack_top() - TRAP_FRAME_BYTES;
        let mut frame = *parent_frame;
        frame.x[0] = 0;
        // SAFETY: as in `new_user`.
        unsafe { (frame_addr as *mut TrapFrame).write(frame) };
        Ok(t)
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Runnable,
            1 => State::Running,
            2 => State::Blocked,
            _ => State::Dead,
        }
    }

    pub(crate) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    pub(crate) fn cas_state(&self, from: State, to: State) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(crate) fn ctx_ptr(&self) -> *mut Context {
        self.ctx.get()
    }

    pub fn process(&self) -> Option<&Arc<process::Process>> {
        self.user.as_ref().map(|u| &u.process)
    }

    /// The address space this kernel thread adopted, if any.
    pub fn adopted(&self) -> Option<&UserMm> {
        let p = self.adopted.load(Ordering::Acquire);
        // SAFETY: a non-null `adopted` holds an `Arc` of its own until
        // `unadopt` (run by this task, which is not running while the
        // scheduler looks) takes it back.
        unsafe { p.as_ref() }
    }

    /// The current kernel thread works on `mm` (use_mm): the scheduler
    /// loads it with the thread, and it counts as a user of it
    /// (`UserMm::adopt`) until [`Self::unadopt`]. One at a time.
    pub fn adopt(&self, mm: Arc<UserMm>) {
        let daif = crate::arch::cpu::irq_save();
        let raw = Arc::into_raw(mm) as *mut UserMm;
        let old = self.adopted.swap(raw, Ordering::AcqRel);
        assert!(old.is_null(), "task {} adopted two address spaces", self.id);
        // SAFETY: just stored from a live `Arc`, released only by `unadopt`.
        unsafe { &*raw }.adopt();
        crate::arch::cpu::irq_restore(daif);
    }

    /// Ends [`Self::adopt`]: the CPU leaves the address space and the
    /// thread stops counting as its user.
    pub fn unadopt(&self) {
        let daif = crate::arch::cpu::irq_save();
        let raw = self.adopted.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !raw.is_null() {
            // SAFETY: `raw` came from `Arc::into_raw` in `adopt` and is
            // taken back exactly once (the swap above).
            let mm = unsafe { Arc::from_raw(raw) };
            mm.unadopt();
        }
        crate::arch::cpu::irq_restore(daif);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        registry::unregister(self);
        crate::mm::phys::free_frames(self.kstack);
        TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub use registry::dump;

/// Tasks whose kernel stack is allocated.
pub static TASKS: AtomicUsize = AtomicUsize::new(0);

/// The kernel resources in use now, indexed by `abi::resources`: what leak
/// tests compare against a baseline (through `stats(RESOURCES)` from user
/// space, or directly in kernel tests).
pub fn resources() -> [u64; abi::resources::COUNT] {
    use abi::resources as r;
    let heap = crate::mm::heap::HEAP.stats();
    let mut w = [0u64; r::COUNT];
    w[r::FREE_FRAMES] = crate::mm::frame::free_frames() as u64;
    w[r::PT_PAGES] = crate::mm::phys::PT_PAGES.load(Ordering::Relaxed) as u64;
    w[r::HEAP_BYTES] = heap.in_use as u64;
    w[r::PROCESSES] = process::count() as u64;
    w[r::TASKS] = TASKS.load(Ordering::Relaxed) as u64;
    w[r::THREADS] = process::THREADS.load(Ordering::Relaxed) as u64;
    w[r::MMS] = crate::mm::user::MMS.load(Ordering::Relaxed) as u64;
    w[r::ENDPOINTS] = ipc::count() as u64;
    w[r::ASIDS] = crate::mm::user::MMS_WITH_ASID.load(Ordering::Relaxed) as u64;
    w[r::HEAP_TOTAL] = heap.total as u64;
    w[r::HEAP_REFUSALS] = crate::mm::heap::HEAP_REFUSALS.load(Ordering::Relaxed) as u64;
    w[r::FRAME_LIST_BYTES] = heap.frame_meta as u64;
    let (swap_used, swap_total) = crate::mm::phys::swap_slots();
    w[r::SWAP_SLOTS] = swap_used as u64;
    w[r::SWAP_TOTAL] = swap_total as u64;
    w
}

/// The differences between two [`resources`] snapshots in the words that
/// must come back to baseline, as "name: before -> after" text; empty when
/// there are none.
pub fn resource_leaks(
    before: &[u64; abi::resources::COUNT],
    after: &[u64; abi::resources::COUNT],
) -> alloc::string::String {
    use core::fmt::Write;
    let mut s = alloc::string::String::new();
    for &i in &abi::resources::LEVELS {
        if before[i] != after[i] {
            let _ = write!(
                s,
                "{}{}: {} -> {}",
                if s.is_empty() { "" } else { ", " },
                abi::resources::NAMES[i],
                before[i],
                after[i]
            );
        }
    }
    s
}
