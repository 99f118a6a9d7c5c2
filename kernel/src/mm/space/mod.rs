//! The TLB protocol of an address space: [`Mm`] and the operations on it
//! ([`Op`]), written once, run by the kernel and by the host model.
//!
//! An operation (munmap, madvise, mprotect, mmap, fork, a page fault, the
//! reaper's teardown, the exit teardown) is a resumable sequence of steps:
//! take the mm lock, change the mappings, one page-table write, issue the
//! flush, complete it with a DSB on this CPU, free what the flush covered,
//! drop the lock. The kernel runs an operation to the end ([`Mm::run`]);
//! the host model runs one step at a time and interleaves them with other
//! CPUs' steps, user accesses and hardware walks. Everything an operation
//! does to the hardware goes through [`MmHw`]; physical memory through
//! [`PhysMem`].
//!
//! # The rules the steps keep
//!
//! * **Free after the flush** (docs/mechanisms.md §3): what a gather holds is
//!   released only after the flush that covers it completed, on the CPU
//!   that issued it.
//! * **Concurrent zaps** (§5, seed 001): munmap and madvise finish their
//!   flush after dropping the lock, so two zaps of one mm can overlap. Each
//!   counts itself in `pending` for its whole length; one that finishes
//!   while another is in flight flushes the whole ASID, walk caches
//!   included, since it cannot know what the other cleared or freed.
//!   Calls that finish under the lock (mprotect, mmap with FIXED, fork) do
//!   the same when a zap is in flight, and so does a fault before it
//!   installs an entry: the in-flight zap may have cleared entries it has
//!   not flushed yet, and a new valid entry must not meet a stale one
//!   (break-before-make).
//! * **Break-before-make for tables** (§3): a zap unlinks an emptied table
//!   only where no mapping remains, and a gather that freed tables is
//!   flushed *before* the lock is dropped, so no fault or mmap can install a
//!   new table in a slot whose old table walk caches may still hold.
//! * **Exit** (§4, seed 000): the last thread's teardown elides its flush;
//!   why that is safe is argued at [`switch::leave_dying`].
//! * **Where a flush goes** (§6–7, seeds 002 and 003): [`shootdown`] picks
//!   broadcast, local or IPI flushes (`tlb.strategy`); a flush that does
//!   not reach every CPU bumps the mm's generation first, and a CPU behind
//!   it flushes before it walks the tables again. Nothing is released
//!   before every IPI target acknowledged.
//! * **Secondary MMUs** (§8, seed 004, [`notifier`]): an operation that
//!   changes entries of an mm with subscribers opens an invalidate-range
//!   before its first change and closes it when done; each flush tells the
//!   devices the same range, and nothing it covers is freed before they
//!   acknowledged. The exit teardown tells them even when it elides its own
//!   flush.
//! * **Reclaim** (§8, [`reclaim`]): a page's leaf becomes a swap entry and
//!   its TLBI is issued without a DSB; the batch completes all of them with
//!   one DSB on the issuing CPU before any page is written to swap or
//!   freed. A call that changes entries of an mm with a batch pending
//!   flushes its ASID first.

mod hw;
pub mod notifier;
mod op;
pub mod reclaim;
pub mod repeat;
pub mod shootdown;
pub mod switch;
#[cfg(test)]
mod tests;

pub use hw::MmHw;
pub use notifier::{DevAccess, DevEntry, DevTlb, Invalidation};
pub use op::{AfterUnlock, Call, Hook, Next, Op, OpError, Outcome, Pc, Step, Then};
pub use shootdown::{Route, Served, Shootdown, Strategy};

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::asid::MmContext;
use super::aspace::AddressSpace;
use super::pagetable::{Arm4k, Format, PhysMem};
use super::tlb::stats::MAX_CPUS;
use super::tlb::{PolicyParams, RepeatTlbi, TlbFeatures};

/// How the protocol flushes: the policy and what the CPU has, and the
/// switches users may set on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbConfig {
    pub params: PolicyParams,
    pub features: TlbFeatures,
    /// Whole-ASID flush for a zap racing another (`tlb.nested_fix`; off
    /// only to demonstrate the bug of §5).
    pub nested_fix: bool,
    /// Elide the exit teardown's flush (`tlb.exit_elide`; off: one
    /// whole-ASID flush, for comparison).
    pub exit_elide: bool,
    /// Frames a gather holds before it flushes a batch (0: the kernel's
    /// `gather::BATCH`; the model uses a few).
    pub batch: usize,
    /// One [`Op::step`] makes every page-table write of a zap, an
    /// mprotect or a fork's sharing up to the gather's next flush (the
    /// kernel, which runs operations to the end anyway: this saves a
    /// step's dispatch per page). Off (the default, and the host model):
    /// one write a step, so anything may happen between two of them.
    pub run_walks: bool,
    /// How flushes reach other CPUs (`tlb.strategy`, [`shootdown`]).
    pub strategy: Strategy,
    /// `auto`: IPIs up to this many CPUs (`tlb.ipi_max`,
    /// [`shootdown::IPI_MAX`]).
    pub ipi_max: u32,
    /// The repeat-TLBI errata workaround ([`repeat`], `tlb.repeat_tlbi`
    /// resolved for this CPU).
    pub repeat_tlbi: RepeatTlbi,
    /// An adopter counts itself in `Mm::users` (`tlb.use_mm_mmget`; off
    /// only to demonstrate the bug of seed 002).
    pub use_mm_mmget: bool,
    /// Kernel threads keep the last user mm loaded (`tlb.lazy`; off: they
    /// load the reserved table, as before lazy TLB).
    pub lazy: bool,
    /// Secondary MMUs are invalidated after the pages the flush covered
    /// were freed, not before (`mmu.notifier=late`; only to demonstrate
    /// the bug [`notifier`] prevents).
    pub notifier_late: bool,
    /// A reclaim batch's completing DSB runs on another CPU than the one
    /// that issued its TLBIs (`reclaim.dsb=remote`; only to demonstrate
    /// that such a DSB completes nothing).
    pub reclaim_dsb_remote: bool,
    /// Reclaim batches its TLBIs: issued without waiting, one DSB per batch
    /// (`reclaim.batch`; off: each page is flushed and waited for on its
    /// own, for comparison).
    pub reclaim_batch: bool,
    /// Which mappings may use blocks and contiguous runs (`mm.thp`).
    pub thp: Thp,
    /// A write fault on a shared block copies the whole block
    /// (`mm.block_cow=copy`); by default it splits the block and copies
    /// the one page, as Linux does since 5.8: a 2 MiB copy on one write
    /// costs latency and memory for pages that may never be written.
    pub block_cow_copy: bool,
    /// Splits write the smaller entries over the block or run at once and
    /// flush after, without the break (`mm.bbm`: what FEAT_BBM level 2
    /// permits; the kernel sets it by default only on cores known not to
    /// raise TLB conflict aborts for it).
    pub split_no_break: bool,
    pub bugs: Bugs,
}

/// Which mappings may use blocks (2 MiB) and contiguous runs (64 KiB),
/// as Linux's transparent huge pages setting (`mm.thp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Thp {
    /// Every anonymous mapping, as if mapped with `map::HUGE | map::CONT`.
    Always,
    /// Only mappings asked for with `map::HUGE` / `map::CONT` or
    /// `madvise(HUGEPAGE)`.
    #[default]
    Madvise,
    /// None: the flags and advice are accepted and do nothing.
    Never,
}

impl Thp {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(Thp::Always),
            "madvise" => Some(Thp::Madvise),
            "never" => Some(Thp::Never),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Thp::Always => "always",
            Thp::Madvise => "madvise",
            Thp::Never => "never",
        }
    }

    /// mmap flags as this setting makes them.
    pub const fn flags(self, flags: u64) -> u64 {
        let sizes = abi::map::HUGE | abi::map::CONT;
        match self {
            Thp::Always => flags | sizes,
            Thp::Madvise => flags,
            Thp::Never => flags & !sizes,
        }
    }
}

impl TlbConfig {
    pub const fn new(params: PolicyParams, features: TlbFeatures) -> Self {
        TlbConfig {
            params,
            features,
            nested_fix: true,
            exit_elide: true,
            batch: 0,
            run_walks: false,
            strategy: Strategy::Broadcast,
            ipi_max: shootdown::IPI_MAX,
            repeat_tlbi: RepeatTlbi::Off,
            use_mm_mmget: true,
            lazy: true,
            notifier_late: false,
            reclaim_dsb_remote: false,
            reclaim_batch: true,
            thp: Thp::Madvise,
            block_cow_copy: false,
            split_no_break: false,
            bugs: Bugs::NONE,
        }
    }
}

/// Deliberate bugs, for the host model to show that its checks catch each
/// one. Never set in a real kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    /// Flushes use the leaf-only forms even after freeing tables.
    pub leaf_only_after_free: bool,
    /// No TLBI at all.
    pub skip_flush: bool,
    /// A gather that freed tables is flushed after the lock is dropped, as
    /// a leaf-only one is (the table break-before-make hole).
    pub table_flush_after_unlock: bool,
    /// madvise unlinks the tables it empties, as munmap does.
    pub madvise_frees_tables: bool,
    /// Locked calls (mprotect, mmap FIXED, fork) and faults ignore a zap in
    /// flight.
    pub no_racing_fix: bool,
    /// The exiting CPU keeps the dying mm in TTBR0 (and clears its `cpus`
    /// bit as if it had left).
    pub exit_keeps_ttbr0: bool,
    /// A zap reads the mm's ASID when it takes the lock, before its
    /// page-table writes, not after them: an mm with no ASID yet skips the
    /// flush even if a CPU activated it (and filled its TLB) in between.
    pub asid_read_early: bool,
    /// A local or IPI flush does not bump the generation, nor mark the lazy
    /// CPUs it skips: CPUs it did not reach are not marked stale
    /// (`tlb.stale_mark=off`).
    pub no_stale_mark: bool,
    /// A CPU behind by any number of generations flushes only the range of
    /// the request in hand, and a CPU going back to an mm (activation, or
    /// lazy to running) does not compare generations (`tlb.gen_check=off`).
    pub partial_any_gen: bool,
    /// Freeing tables skips lazy CPUs as other flushes do.
    pub lazy_skip_on_free: bool,
    /// A CPU behind catches up after loading TTBR0, not before (a
    /// speculative walk may meet stale walk-cache entries meanwhile).
    pub catch_up_after_load: bool,
    /// munmap, madvise, mprotect, mmap FIXED and fork ignore a reclaim
    /// batch still pending on the mm (no `flush_tlb_batched_pending`).
    pub no_batched_pending: bool,
    /// Operations send secondary MMUs no invalidation with their flushes,
    /// nor the teardown's release (a reclaim batch's own are still sent).
    pub no_secondary: bool,
    /// A block's flush names 4 KiB pages at level 3 (stride and TTL hint),
    /// as a flush written before blocks existed would: the hint then
    /// skips the level-2 entry.
    pub block_page_stride: bool,
    /// The nested-zap fix flushes the zap's own range as 4 KiB pages at
    /// level 3 instead of everything (seed 001: another zap may have
    /// cleared blocks, or tables, there).
    pub nested_pages_only: bool,
}

impl Bugs {
    pub const NONE: Bugs = Bugs {
        leaf_only_after_free: false,
        skip_flush: false,
        table_flush_after_unlock: false,
        madvise_frees_tables: false,
        no_racing_fix: false,
        exit_keeps_ttbr0: false,
        asid_read_early: false,
        no_stale_mark: false,
        partial_any_gen: false,
        lazy_skip_on_free: false,
        catch_up_after_load: false,
        no_batched_pending: false,
        no_secondary: false,
        block_page_stride: false,
        nested_pages_only: false,
    };
}

/// An address space and who uses it: the state the protocol's steps share.
pub struct Mm<F: Format = Arm4k> {
    pub id: u64,
    /// The mm lock: every change of the mappings and the tables happens
    /// under it (taken by an operation's `Lock` step, or [`Mm::with_aspace`]).
    locked: AtomicBool,
    aspace: UnsafeCell<AddressSpace<F>>,
    pub ctx: MmContext,
    /// Threads (and kernel threads that adopted it) using this mm.
    pub users: AtomicUsize,
    /// CPUs whose TTBR0 holds this mm's tables now (bit per CPU), lazy ones
    /// included.
    pub cpus: AtomicU64,
    /// CPUs in `cpus` that run a kernel thread on these tables (lazy TLB,
    /// [`shootdown`]).
    pub lazy: AtomicU64,
    /// Flushes that did not reach every CPU (x86's `tlb_gen`).
    pub tlb_gen: AtomicU64,
    /// CPUs a flush skipped while they were lazy here, until they flush
    /// everything (`shootdown::flush_behind`).
    pub skipped: AtomicU64,
    /// The generation each CPU's TLB is clean up to for this mm (written by
    /// that CPU only).
    pub cpu_gen: [AtomicU64; MAX_CPUS],
    /// Zapping gathers in flight (Linux's `tlb_flush_pending`).
    pending: AtomicUsize,
    /// The secondary MMUs bound to this mm, a bit per device: the mmu
    /// notifier's subscribers ([`notifier`]).
    secondary: AtomicU64,
    /// invalidate-range starts not yet ended.
    invalidating: AtomicUsize,
    /// Bumped at every start and end (the interval notifier's sequence).
    notifier_seq: AtomicU64,
    /// A reclaim batch issued TLBIs for this mm that a DSB on its CPU may
    /// not have completed yet (Linux's `tlb_flush_batched`). Read and
    /// written only under the mm lock, which orders it.
    pub batched: AtomicBool,
    /// The tables' format (for walkers other than the owner).
    pub fmt: F,
    /// The root table's physical address, fixed from creation until the
    /// teardown takes the tables (then 0): read without the lock, so a
    /// context switch never waits for an operation that holds it.
    root: AtomicU64,
}

// SAFETY: `aspace` is reached only with `locked` held (taken with Acquire,
// released with Release); everything else is atomic or immutable.
unsafe impl<F: Format + Send> Sync for Mm<F> {}
// SAFETY: as above; the address space owns only plain data.
unsafe impl<F: Format + Send> Send for Mm<F> {}

impl<F: Format> Mm<F> {
    pub fn new(id: u64, aspace: AddressSpace<F>) -> Self {
        let root = AtomicU64::new(aspace.root_pa());
        let fmt = aspace.page_table().format();
        Mm {
            root,
            fmt,
            id,
            locked: AtomicBool::new(false),
            aspace: UnsafeCell::new(aspace),
            ctx: MmContext::new(),
            users: AtomicUsize::new(0),
            cpus: AtomicU64::new(0),
            lazy: AtomicU64::new(0),
            tlb_gen: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            cpu_gen: [const { AtomicU64::new(0) }; MAX_CPUS],
            pending: AtomicUsize::new(0),
            secondary: AtomicU64::new(0),
            invalidating: AtomicUsize::new(0),
            notifier_seq: AtomicU64::new(0),
            batched: AtomicBool::new(false),
        }
    }

    /// Physical address of the root table (for TTBR0); 0 once torn down.
    pub fn root_pa(&self) -> u64 {
        self.root.load(Ordering::Acquire)
    }

    fn try_lock(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// The address space, for a step that holds the lock.
    ///
    /// # Safety
    /// The caller holds the lock (its `Lock` step succeeded and its
    /// `Unlock` step has not run), and drops the reference before that.
    #[allow(clippy::mut_from_ref)]
    unsafe fn aspace(&self) -> &mut AddressSpace<F> {
        // SAFETY: the lock gives exclusive access (caller).
        unsafe { &mut *self.aspace.get() }
    }

    /// Runs `f` on the address space under the lock (spinning for it):
    /// for callers outside an operation (the program loader, tests).
    pub fn with_aspace<R>(&self, f: impl FnOnce(&mut AddressSpace<F>) -> R) -> R {
        self.locked_with(|| {}, f)
    }

    /// [`Self::with_aspace`] for a CPU that may be sent IPIs while it spins
    /// (the kernel, interrupts masked): it serves them meanwhile, as
    /// [`Self::run`] does, so a holder that waits for this CPU's
    /// acknowledgement under the lock finishes.
    pub fn with_aspace_polling<H: MmHw, R>(&self, hw: &H, f: impl FnOnce(&mut AddressSpace<F>) -> R) -> R {
        self.locked_with(|| hw.poll(), f)
    }

    /// Spins for the lock, calling `wait` each round, then runs `f`.
    fn locked_with<R>(&self, mut wait: impl FnMut(), f: impl FnOnce(&mut AddressSpace<F>) -> R) -> R {
        while !self.try_lock() {
            wait();
            core::hint::spin_loop();
        }
        // SAFETY: the lock is held until `unlock` below; the reference does
        // not escape `f`.
        let r = f(unsafe { self.aspace() });
        self.unlock();
        r
    }

    /// Zaps in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Runs `op` to the end on this CPU, spinning while another holds the
    /// lock, and calls `hook` at its hook points (see [`Hook`]).
    pub fn run<H: MmHw, M: PhysMem>(
        &self,
        op: &mut Op<F>,
        cfg: &TlbConfig,
        hw: &H,
        mem: &M,
        mut hook: impl FnMut(Hook),
    ) {
        loop {
            match op.step(self, cfg, hw, mem) {
                Step::Ran => {}
                Step::Blocked => {
                    // Another CPU may hold the lock while it waits for this
                    // one to acknowledge an IPI.
                    hw.poll();
                    core::hint::spin_loop()
                }
                Step::Hook(h) => hook(h),
                Step::Done => return,
            }
        }
    }

    /// A copy holding the same values, the lock state included: for the
    /// host model, whose states hold whole address spaces.
    ///
    /// # Safety
    /// No other thread uses this mm meanwhile (the model is
    /// single-threaded; an operation in progress is part of its state).
    pub unsafe fn snapshot(&self) -> Self {
        Mm {
            id: self.id,
            locked: AtomicBool::new(self.locked.load(Ordering::Relaxed)),
            // SAFETY: nothing else accesses the address space (caller).
            aspace: UnsafeCell::new(unsafe { (*self.aspace.get()).clone() }),
            ctx: self.ctx.clone(),
            users: AtomicUsize::new(self.users.load(Ordering::Relaxed)),
            cpus: AtomicU64::new(self.cpus.load(Ordering::Relaxed)),
            lazy: AtomicU64::new(self.lazy.load(Ordering::Relaxed)),
            tlb_gen: AtomicU64::new(self.tlb_gen.load(Ordering::Relaxed)),
            skipped: AtomicU64::new(self.skipped.load(Ordering::Relaxed)),
            cpu_gen: core::array::from_fn(|c| AtomicU64::new(self.cpu_gen[c].load(Ordering::Relaxed))),
            pending: AtomicUsize::new(self.pending.load(Ordering::Relaxed)),
            secondary: AtomicU64::new(self.secondary.load(Ordering::Relaxed)),
            invalidating: AtomicUsize::new(self.invalidating.load(Ordering::Relaxed)),
            notifier_seq: AtomicU64::new(self.notifier_seq.load(Ordering::Relaxed)),
            batched: AtomicBool::new(self.batched.load(Ordering::Relaxed)),
            fmt: self.fmt,
            root: AtomicU64::new(self.root.load(Ordering::Relaxed)),
        }
    }

    /// Hashes the protocol state (for the host model's state space).
    ///
    /// # Safety
    /// As [`Self::snapshot`].
    pub unsafe fn hash_state<Hs: core::hash::Hasher>(&self, h: &mut Hs)
    where
        F: core::hash::Hash,
    {
        use core::hash::Hash;
        self.locked.load(Ordering::Relaxed).hash(h);
        // SAFETY: as in `snapshot`.
        unsafe { (*self.aspace.get()).hash(h) };
        self.ctx.id().hash(h);
        self.users.load(Ordering::Relaxed).hash(h);
        self.cpus.load(Ordering::Relaxed).hash(h);
        self.lazy.load(Ordering::Relaxed).hash(h);
        self.tlb_gen.load(Ordering::Relaxed).hash(h);
        self.skipped.load(Ordering::Relaxed).hash(h);
        for g in &self.cpu_gen {
            g.load(Ordering::Relaxed).hash(h);
        }
        self.pending.load(Ordering::Relaxed).hash(h);
        self.secondary.load(Ordering::Relaxed).hash(h);
        self.invalidating.load(Ordering::Relaxed).hash(h);
        // Not the notifier's sequence: a fill compares it within one step.
        self.batched.load(Ordering::Relaxed).hash(h);
        self.root.load(Ordering::Relaxed).hash(h);
    }

    /// The address space without taking the lock: for the host model,
    /// whose checks look at an address space while an operation in
    /// progress holds its lock.
    ///
    /// # Safety
    /// No thread changes this address space while the reference lives (the
    /// model is single-threaded and steps nothing meanwhile).
    pub unsafe fn peek(&self) -> &AddressSpace<F> {
        // SAFETY: nothing writes it while the reference lives (caller).
        unsafe { &*self.aspace.get() }
    }

    /// Whether the lock is held (for the model's checks).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}
