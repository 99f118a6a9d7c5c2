//! The kernel's user address spaces: the TLB protocol of [`super::space`]
//! run on this CPU's hardware ([`super::hw::Hw`]), with the kernel's
//! frames ([`KernelMem`]) and the flush configuration of the command line;
//! the ASID allocator; and the counts `stats(RESOURCES)` reports. One call
//! here per system call: the callers know nothing of the locking or the
//! flushes.

use alloc::sync::Arc;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::asid::{AsidAllocator, AsidError};
use super::aspace::{Access, AddressSpace, Fault, FaultError, MmError};
use super::family;
use super::hw::Hw;
use super::pagetable::Arm4k;
use super::phys::KernelMem;
use super::space::{self, Call, Hook, Mm, Op, OpError, Outcome, TlbConfig};
use super::tlb::stats::MAX_CPUS;
use super::tlb::RangePolicy;
use crate::arch::cpu::cpu_id;

/// The kernel's ASID allocator.
pub static ASIDS: spin::Once<AsidAllocator> = spin::Once::new();

/// Address spaces allocated now.
pub static MMS: AtomicUsize = AtomicUsize::new(0);
/// Address spaces that hold an ASID now.
pub static MMS_WITH_ASID: AtomicUsize = AtomicUsize::new(0);
/// Address spaces leaked because they were still loaded at exit (always 0
/// unless an invariant broke).
pub static LEAKED_MMS: AtomicU64 = AtomicU64::new(0);

static NEXT_MM: AtomicU64 = AtomicU64::new(1);

/// Reclaim rounds one page fault may start when it finds no frame, each
/// reclaiming a batch (`space::reclaim::BATCH` pages) unless memory and
/// swap are exhausted; past them the process dies of out-of-memory. A
/// bound, not a tuning: other CPUs may take the frames a round frees.
const MAX_RECLAIMS_PER_FAULT: u32 = 64;

/// The flush configuration: policy parameters and switches from the command
/// line, the CPU's TLB features. Built once, off the flush path.
pub fn config() -> &'static TlbConfig {
    static CONFIG: spin::Once<TlbConfig> = spin::Once::new();
    CONFIG.call_once(|| {
        let o = crate::OPTIONS.get();
        let params = o.map(|o| o.tlb).unwrap_or_default();
        let features = crate::FEATURES.get().copied().unwrap_or_else(crate::arch::cpu::CpuFeatures::detect);
        let mut c = TlbConfig::new(params, features.tlb());
        c.nested_fix = o.is_none_or(|o| o.nested_fix);
        c.exit_elide = o.is_none_or(|o| o.exit_elide);
        c.run_walks = true;
        c.repeat_tlbi = o.map(|o| o.repeat_tlbi).unwrap_or_default().resolve(features.midr);
        if let Some(o) = o {
            c.reclaim_batch = o.reclaim_batch;
            c.reclaim_dsb_remote = o.reclaim_dsb_remote;
            c.strategy = o.strategy;
            c.ipi_max = o.ipi_max;
            c.use_mm_mmget = o.use_mm_mmget;
            c.lazy = o.lazy_tlb;
            c.bugs.no_stale_mark = !o.stale_mark;
            c.bugs.partial_any_gen = !o.gen_check;
            c.notifier_late = o.notifier_late;
            c.thp = o.thp;
            c.block_cow_copy = o.block_cow_copy;
            c.split_no_break = match o.bbm {
                crate::cmdline::Bbm::Auto => features.bbml2_noabort(),
                crate::cmdline::Bbm::Off => false,
                crate::cmdline::Bbm::Force => true,
            };
        } else {
            c.split_no_break = features.bbml2_noabort();
        }
        c
    })
}

/// The range policy the configuration describes (for tests and tools that
/// want to know what a flush would issue).
pub fn policy() -> (RangePolicy, super::tlb::TlbFeatures) {
    let c = config();
    (RangePolicy::new(c.params), c.features)
}

fn alloc() -> &'static AsidAllocator {
    ASIDS.get().expect("the ASID allocator is set up at boot")
}

/// A user address space of the kernel. `repr(C)` with the protocol's `Mm`
/// first: a shootdown names the `Mm`, and [`forget`] compares it with the
/// `UserMm` this CPU records.
#[repr(C)]
pub struct UserMm {
    mm: Mm,
    /// The allocator gave it an ASID (counted in [`MMS_WITH_ASID`]).
    has_asid: AtomicBool,
    /// Who keeps the contents: the process (one hold for all its threads,
    /// given back by the last one to exit) and each asynchronous job
    /// (`task::jobs`), whose worker may outlive the threads. The last to let
    /// go tears the address space down ([`Self::release`]; Linux's
    /// `mm_users` and `mmput`, apart from `Mm::users`, which counts for the
    /// flush decision).
    holders: AtomicUsize,
    /// The reverse map's family (`AddressSpace::anon`, fixed): registered
    /// in `mm::family` for the life of this value.
    anon: u64,
}

impl core::ops::Deref for UserMm {
    type Target = Mm;
    fn deref(&self) -> &Mm {
        &self.mm
    }
}

impl UserMm {
    /// A user address space of `a`: in `a`'s reverse-map family (a fork
    /// child's is its parent's), or a new one if it has none.
    pub fn from_aspace(mut a: AddressSpace) -> Arc<UserMm> {
        MMS.fetch_add(1, Ordering::Relaxed);
        let id = NEXT_MM.fetch_add(1, Ordering::Relaxed);
        if a.anon() == 0 {
            a.set_anon(family::new_family());
        }
        let anon = a.anon();
        let holders = AtomicUsize::new(1);
        let mm = Arc::new(UserMm { mm: Mm::new(id, a), has_asid: AtomicBool::new(false), holders, anon });
        family::register(anon, id, &mm);
        mm
    }

    /// An empty address space.
    pub fn new() -> Result<Arc<UserMm>, MmError> {
        Ok(Self::from_aspace(AddressSpace::new(&KernelMem)?))
    }

    /// Runs `call` to the end on this CPU and returns what `then` takes
    /// from the finished operation (which stays where it was built: it is
    /// large enough that moving it costs more than most steps).
    fn run<R>(&self, call: Call, hook: impl FnMut(Hook), then: impl FnOnce(&mut Op<Arm4k>) -> R) -> R {
        let cfg = config();
        let mut op = Op::new(call, cfg);
        self.mm.run(&mut op, cfg, &Hw, &KernelMem, hook);
        then(&mut op)
    }

    /// Runs `call` to the end; its outcome.
    fn outcome(&self, call: Call) -> Result<Outcome, OpError> {
        self.run(call, |_| {}, |op| op.outcome())
    }

    fn done(outcome: Result<Outcome, OpError>) -> Result<Outcome, MmError> {
        outcome.map_err(|e| match e {
            OpError::Mm(e) => e,
            other => unreachable!("{other:?} from a system call"),
        })
    }

    pub fn mmap(&self, addr: u64, len: u64, prot: u64, flags: u64) -> Result<u64, MmError> {
        match Self::done(self.outcome(Call::Mmap { addr, len, prot, flags }))? {
            Outcome::Addr(a) => Ok(a),
            other => unreachable!("mmap returned {other:?}"),
        }
    }

    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), MmError> {
        Self::done(self.outcome(Call::Munmap { addr, len })).map(drop)
    }

    pub fn mprotect(&self, addr: u64, len: u64, prot: u64) -> Result<(), MmError> {
        Self::done(self.outcome(Call::Mprotect { addr, len, prot })).map(drop)
    }

    pub fn madvise(&self, addr: u64, len: u64, advice: u64) -> Result<(), MmError> {
        if advice == abi::advice::PAGEOUT {
            return super::reclaim::pageout(self, addr, len);
        }
        Self::done(self.outcome(Call::Madvise { addr, len, advice })).map(drop)
    }

    /// Reclaim's unmap of `va` if it still maps frame `pa`: the leaf
    /// becomes a swap entry for `slot`, the page's TLBI is issued and, when
    /// reclaim batches (`reclaim.batch`), not waited for. True if it did.
    pub fn reclaim_unmap(&self, va: u64, pa: u64, slot: u64) -> bool {
        self.outcome(Call::Reclaim { va, pa, slot }).is_ok()
    }

    /// Runs `f` on the address space under its lock, serving IPIs while it
    /// waits for the lock.
    pub fn with_aspace<R>(&self, f: impl FnOnce(&mut AddressSpace) -> R) -> R {
        self.mm.with_aspace_polling(&Hw, f)
    }

    /// fork: a copy-on-write child address space (never loaded yet).
    pub fn fork(&self) -> Result<Arc<UserMm>, MmError> {
        let (outcome, child) = self.run(Call::Fork, |_| {}, |op| (op.outcome(), op.take_child()));
        Self::done(outcome)?;
        Ok(Self::from_aspace(child.expect("a fork's child")))
    }

    /// Resolves a page fault at `va`. A fault that finds no frame reclaims
    /// pages and tries again, while reclaim finds pages to take (bounded,
    /// so that CPUs taking each other's freed frames cannot keep it going
    /// for ever). `Err` if the access is not allowed or memory and swap are
    /// exhausted (the process is then killed with [`FaultError::cause`]),
    /// or [`FaultError::SwapBusy`]: the page's reclaim batch, on another
    /// CPU, has not written it to swap yet; the caller lets that CPU go on
    /// and calls again (never kills for it).
    pub fn fault(&self, va: u64, write: bool, exec: bool) -> Result<Fault, FaultError> {
        let access = if exec {
            Access::Exec
        } else if write {
            Access::Write
        } else {
            Access::Read
        };
        let mut reclaims = 0;
        loop {
            match self.outcome(Call::Fault { va, access }) {
                Ok(Outcome::Fault(f)) => return Ok(f),
                Err(OpError::Fault(FaultError::OutOfMemory))
                    if reclaims < MAX_RECLAIMS_PER_FAULT && super::reclaim::under_pressure() > 0 =>
                {
                    reclaims += 1;
                }
                Err(OpError::Fault(e)) => return Err(e),
                other => unreachable!("a fault returned {other:?}"),
            }
        }
    }

    /// The reaper's teardown: the process was killed but its threads may
    /// still run on other CPUs until they notice. Not exit mode: every batch
    /// is flushed before its frames are freed, so a thread still running
    /// faults (and dies) instead of touching a freed frame. `kill` runs
    /// under the mm lock before the zap: the victim's threads learn they
    /// were killed only once the reaper holds the address space, so they
    /// cannot tear it down first.
    pub fn reap(&self, kill: impl FnOnce()) {
        let mut kill = Some(kill);
        self.run(
            Call::Reap,
            |h| match h {
                Hook::Reaping => {
                    if let Some(k) = kill.take() {
                        k()
                    }
                }
            },
            |_| (),
        );
    }

    /// One more holder of the contents (an asynchronous job), unless the
    /// last one let go already: then false, and the contents are gone.
    pub fn hold(&self) -> bool {
        self.holders.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then_some(n + 1)).is_ok()
    }

    /// A holder lets go; the last one tears the address space down
    /// ([`Self::teardown_exit`]). It no longer runs on its CPU (its threads
    /// left, an adopter unadopted), and interrupts are masked.
    pub fn release(&self) {
        if self.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.teardown_exit();
        }
    }

    /// The last user left: everything goes, flush elided (exit mode; see
    /// `space::switch::leave_dying` for why that is safe).
    pub fn teardown_exit(&self) {
        if let Err(OpError::StillLoaded { cpus }) = self.outcome(Call::Teardown) {
            log::error!(target: "tlb", "mm {} still loaded on CPUs {cpus:#x} at exit: leaking it", self.id);
            LEAKED_MMS.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn note_asid(&self) {
        if !self.has_asid.swap(true, Ordering::Relaxed) {
            MMS_WITH_ASID.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Loads this address space into this CPU's TTBR0 (through
    /// [`switch_to`], which keeps the per-CPU record).
    fn activate(&self) {
        space::switch::activate(&self.mm, alloc(), config(), &Hw);
        self.note_asid();
    }

    /// This CPU leaves the address space for the reserved table (a thread
    /// of it exits while others live on).
    pub fn leave(&self) {
        space::switch::deactivate(Some(&self.mm), &Hw);
        LOADED[cpu_id()].store(0, Ordering::Relaxed);
    }

    /// This CPU leaves the address space for good: its thread is exiting.
    pub fn leave_dying(&self) {
        space::switch::leave_dying(&self.mm, config(), &Hw);
        LOADED[cpu_id()].store(0, Ordering::Relaxed);
    }

    /// A kernel thread starts working on this address space on this CPU
    /// (use_mm): it counts as a user (mmget; `tlb.use_mm_mmget=off` skips
    /// the count, to show seed 002's bug), with a full barrier between the
    /// count and the loading, and then loads it. Its task must name this mm
    /// to the scheduler meanwhile (`Task::adopt`), and interrupts are masked.
    pub fn adopt(&self) {
        if config().use_mm_mmget {
            self.mm.users.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        switch_to(Some(self));
    }

    /// The adopter is done: this CPU leaves the address space, then (full
    /// barrier) it stops counting as a user.
    pub fn unadopt(&self) {
        self.leave();
        fence(Ordering::SeqCst);
        if config().use_mm_mmget {
            self.mm.users.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Pins the ASID (it then survives rollovers) and returns it.
    pub fn pin_asid(&self) -> Result<u16, AsidError> {
        let asid = alloc().pin(&Hw, &self.mm.ctx)?;
        self.note_asid();
        Ok(asid)
    }

    pub fn unpin_asid(&self) {
        alloc().unpin(&Hw, &self.mm.ctx)
    }
}

/// The user address space each CPU's TTBR0 holds (a `UserMm` address; 0:
/// the reserved table), lazily or not (`Mm::lazy` says which).
static LOADED: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// The address space this CPU's TTBR0 holds, if any.
///
/// # Safety
/// The reference is used only while this CPU holds the mm's `cpus` bit,
/// with interrupts masked. That keeps it alive: a running thread's task
/// holds its process and so its mm, an adopter holds its mm, and the last
/// reference's drop makes every lazy holder leave first (`Op` at `Take`),
/// waiting for this CPU to acknowledge, which it does only once interrupts
/// are unmasked or it spins in an mm operation, never in between.
unsafe fn loaded<'a>() -> Option<&'a UserMm> {
    let p = LOADED[cpu_id()].load(Ordering::Relaxed) as *const UserMm;
    // SAFETY: alive while this CPU holds it (caller).
    unsafe { p.as_ref() }
}

/// The scheduler is about to run a task whose address space is `next` (its
/// process's, or the one a kernel thread adopted; `None`: a kernel thread).
/// Interrupts are masked.
///
/// * the same mm: nothing, unless this CPU held it lazily: then it catches
///   up with the mm's flush generation (`space::switch::leave_lazy`);
/// * another mm: loaded (catching up before TTBR0 holds it), and the
///   previous one, lazy or not, dropped;
/// * a kernel thread: the mm stays loaded and this CPU is lazy on it
///   (`tlb.lazy`, default on), or leaves it for the reserved table.
pub fn switch_to(next: Option<&UserMm>) {
    let c = cpu_id();
    // SAFETY: this CPU holds `cur`'s `cpus` bit until `drop_bits` or
    // `deactivate` below, the last uses; interrupts are masked (caller).
    let cur = unsafe { loaded() };
    let me = 1u64 << c;
    match (next, cur) {
        (Some(n), Some(cur)) if core::ptr::eq(n, cur) => {
            if n.mm.lazy.load(Ordering::Relaxed) & me != 0 {
                space::switch::leave_lazy(&n.mm, config(), &Hw);
            }
        }
        (Some(n), cur) => {
            n.activate();
            LOADED[c].store(n as *const UserMm as usize, Ordering::Relaxed);
            if let Some(cur) = cur {
                // TTBR0 holds `n` now (and no walk of `cur` is in flight).
                space::switch::drop_bits(&cur.mm, &Hw);
            }
        }
        (None, Some(cur)) if cur.mm.lazy.load(Ordering::Relaxed) & me != 0 => {}
        (None, Some(cur)) if config().lazy => space::switch::enter_lazy(&cur.mm, &Hw),
        (None, Some(cur)) => {
            space::switch::deactivate(Some(&cur.mm), &Hw);
            LOADED[c].store(0, Ordering::Relaxed);
        }
        (None, None) => {}
    }
}

/// A shootdown made this CPU leave the mm at `mm` (`Served::Left`): it no
/// longer holds it.
pub fn forget(mm: usize) {
    let slot = &LOADED[cpu_id()];
    if slot.load(Ordering::Relaxed) == mm {
        slot.store(0, Ordering::Relaxed);
    }
}

/// The last reference is gone. An mm whose process never ran (a spawn or
/// fork that failed half-way) still holds its tables and pages: they go now,
/// through the same exit-mode teardown (which flushes nothing for an mm that
/// never had an ASID, and leaks rather than frees one still loaded).
impl Drop for UserMm {
    fn drop(&mut self) {
        family::unregister(self.anon, self.mm.id);
        self.teardown_exit();
        if let Some(a) = ASIDS.get() {
            a.release(&Hw, &self.mm.ctx);
        }
        if self.has_asid.load(Ordering::Relaxed) {
            MMS_WITH_ASID.fetch_sub(1, Ordering::Relaxed);
        }
        MMS.fetch_sub(1, Ordering::Relaxed);
    }
}
