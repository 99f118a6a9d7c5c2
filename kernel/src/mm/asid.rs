//! ASID generation allocator (docs/mechanisms.md section 1).
//!
//! # What it does
//!
//! Every user address space (`MmContext`) needs an ASID in TTBR0 so that its
//! non-global TLB entries are told apart from other address spaces' and a
//! context switch needs no flush. ASIDs are few (down to 3 usable ones with
//! `bits = 2`), so they are recycled in *generations*:
//!
//! * An mm's `id` is one 64-bit word: bits 63:16 hold the generation it was
//!   allocated in, bits 15:0 the ASID (whatever the usable width). `0` means
//!   "never allocated". The global `generation` counter holds the current
//!   generation in the same layout (ASID field zero).
//! * `map` marks the ASIDs taken in the current generation. ASID 0 is never
//!   handed out: it tags the reserved, empty TTBR0 the kernel loads while no
//!   user mm runs.
//! * `active[cpu]` is the id the CPU switched to most recently in the current
//!   generation, or 0 once a rollover has passed since. `reserved[cpu]` is the
//!   id the CPU was running when the last rollover happened.
//!
//! **Fast path.** If the mm's id carries the current generation and this CPU's
//! `active` is non-zero, one compare-and-swap of `active[cpu]` from the value
//! just read to the mm's id switches it in: no lock, no TLBI.
//!
//! **Slow path** (under `lock`). If the id is stale, the mm keeps its old ASID
//! when (a) some CPU was running that id at the last rollover (it is
//! *reserved*), (b) it is pinned, or (c) nobody took the ASID in this
//! generation yet. Otherwise it gets a free ASID from `map`. If there is none,
//! it **rolls over**: bump the generation, rebuild `map` from the pinned ASIDs
//! plus every CPU's `active` (swapped to 0) or, where that is already 0, its
//! `reserved` id, and mark every CPU as owing a local full TLB flush. A CPU
//! pays that flush in its next slow path, before it stores a new `active`.
//!
//! **Pinning.** `pin` gives an mm an ASID that never changes (a secondary MMU
//! caches it); pinned ASIDs are kept in `pinned_map`, which seeds `map` at every
//! rollover. At most `usable - ncpus - 1` ASIDs may be pinned, so a rollover
//! always leaves one free ASID after the reserved and pinned ones.
//!
//! # Invariants
//!
//! Two live mms never hold the same ASID in one generation; no CPU runs a
//! new-generation ASID before flushing its TLB after a rollover; a running
//! task's ASID is never handed to another mm; the fast path and a
//! concurrent rollover never lose an update. Why each holds:
//! `docs/asid.md`. The host checker (`kernel/model`) checks them over every
//! interleaving of small systems.
//!
//! # Memory ordering
//!
//! Every access to the words the lock-free path shares with the slow path
//! (`generation`, `active`, `MmContext::id`, the lock word) is `SeqCst`, so the
//! executions are exactly the sequentially consistent interleavings the host
//! checker explores. Linux uses relaxed accesses and argues from the total
//! order of read-modify-writes on one location; we pay a few acquire/release
//! instructions on a path that ends in a TTBR0 write and an ISB anyway, and
//! need no argument about store ordering between `active` and `id`. Words
//! touched only under the lock are `Relaxed`; the lock orders them.
//!
//! # Written as resumable steps
//!
//! `switch_in`, `pin`, `unpin` and `release` run an [`AsidOp`] to completion.
//! Each step of an `AsidOp` makes at most one access to a shared word that the
//! lock-free path can observe (plus lock-protected bookkeeping), so the host
//! checker can interleave steps of different CPUs at every point where the
//! interleaving matters, while running exactly this code. The lock is a word
//! rather than a `spin::Mutex` because it is held across steps.
//!
//! # Contract with the caller
//!
//! * Call with interrupts masked (and so without preemption): `hw.cpu_id()`
//!   must stay valid and no second `switch_in` may start on the same CPU.
//! * **Load the reserved TTBR0 (empty table, ASID 0) and ISB before
//!   `switch_in`**; after it returns, write TTBR0 with the mm's tables and the
//!   returned ASID, then ISB. Why: once `switch_in` has moved `active[cpu]` to
//!   the next mm, a rollover elsewhere reserves the *next* mm's ASID for this
//!   CPU, not the previous one's. If TTBR0 still held the previous mm, its
//!   ASID could go to another mm and the previous mm could get a new ASID on
//!   another CPU while this CPU still walks its tables under the old one; the
//!   mm's TLBIs (by its new ASID) then miss this CPU, which can walk
//!   speculatively through cached table entries into freed page-table pages.
//!   The host model finds exactly this interleaving when the reserved TTBR0
//!   is left out (`previous_mm_in_ttbr0_during_switch_is_caught`). Linux's
//!   32-bit ARM `check_and_switch_context` starts with
//!   `cpu_set_reserved_ttbr0()` ("to avoid speculative page table walking
//!   with the wrong TTBR"); arm64 does so only with CnP (and with software
//!   PAN, TTBR0 is the reserved table whenever the kernel runs). The TLA+
//!   model notes the race ("active_asids update is racy with the TTBR0 one")
//!   but its invariants skip CPUs inside a switch and look only at an mm's
//!   current ASID, so they cannot see it.
//! * `AsidHw::flush_local_tlb_all` must be complete when it returns
//!   (`TLBI VMALLE1; DSB NSH; ISB`). It runs while TTBR0 is the reserved
//!   table, so nothing can be refilled behind it.
//! * A TLBI for an mm uses `MmContext::asid()` read at the time of the TLBI.
//! * `2^bits - 1 > ncpus` (the TLA+ model's `Cardinality(CPUS) < ASIDS - 1`):
//!   a rollover reserves one ASID per CPU and must leave one free, so 2-bit
//!   ASIDs allow at most 2 CPUs and `new` rejects more.
//! * `Bugs` injects the two mistakes the checker must catch. Test/demo only.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use super::tlb::stats::MAX_CPUS;

mod checker_support;
mod step;
#[cfg(test)]
mod tests;

pub use step::{AsidOp, Phase, Request, Step};

/// Width of the ASID field of an id (TTBR0_EL1[63:48] is 16 bits wide).
const ASID_FIELD: u32 = 16;
const ASID_MASK: u64 = (1 << ASID_FIELD) - 1;
/// One generation step; also the first generation (so no valid id is 0).
const GEN_ONE: u64 = 1 << ASID_FIELD;

/// Narrowest usable width: 3 user ASIDs, enough to force a rollover every
/// few processes.
pub const MIN_ASID_BITS: u32 = 2;
/// Widest: 16-bit ASIDs (ID_AA64MMFR0_EL1.ASIDBits = 0b0010, TCR_EL1.AS = 1).
pub const MAX_ASID_BITS: u32 = 16;

/// The ASID of an id.
pub const fn asid_of(id: u64) -> u16 {
    (id & ASID_MASK) as u16
}

/// The generation of an id (in id layout: ASID field zero).
pub const fn generation_of(id: u64) -> u64 {
    id & !ASID_MASK
}

/// The two things the allocator needs from the CPU it runs on.
pub trait AsidHw {
    /// Index of the calling CPU, `< ncpus`.
    fn cpu_id(&self) -> usize;
    /// Invalidate every stage-1 EL1&0 entry in this CPU's TLB and wait for
    /// completion (`TLBI VMALLE1; DSB NSH; ISB`).
    fn flush_local_tlb_all(&self);
}

/// Deliberate bugs, for tests and demonstrations that the checker catches
/// them. Never set in a real kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    /// The slow path does not pay the local flush a rollover left owing.
    pub skip_rollover_flush: bool,
    /// A rollover forgets what CPUs are running: `map` is rebuilt from the
    /// pinned ASIDs only and a stale mm is never matched against `reserved`.
    pub ignore_reserved: bool,
}

impl Bugs {
    /// The real allocator.
    pub const NONE: Bugs = Bugs { skip_rollover_flush: false, ignore_reserved: false };
}

/// Errors of the ASID allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AsidError {
    /// `bits` outside `MIN_ASID_BITS..=MAX_ASID_BITS`.
    BadWidth { bits: u32 },
    /// `ncpus` is 0 or above `MAX_CPUS`.
    BadCpuCount { ncpus: usize },
    /// A rollover must leave a free ASID after one reserved per CPU:
    /// `2^bits - 1 > ncpus` is required.
    TooFewAsids { bits: u32, ncpus: usize },
    /// Pinning another mm would leave a rollover without a free ASID.
    TooManyPinned { max: usize },
}

impl fmt::Display for AsidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AsidError::BadWidth { bits } => write!(f, "ASID width {bits} outside {MIN_ASID_BITS}..={MAX_ASID_BITS}"),
            AsidError::BadCpuCount { ncpus } => {
                write!(f, "CPU count {ncpus} outside 1..={MAX_CPUS}")
            }
            AsidError::TooFewAsids { bits, ncpus } => write!(
                f,
                "{bits}-bit ASIDs give {} user ASIDs, need more than {ncpus} (one per CPU)",
                (1u32 << bits) - 1
            ),
            AsidError::TooManyPinned { max } => write!(f, "at most {max} ASIDs may be pinned"),
        }
    }
}

/// The ASID state of one address space.
pub struct MmContext {
    /// generation | ASID, 0 = none yet. Written only under the allocator lock.
    id: AtomicU64,
    /// Pin count. Written only under the allocator lock.
    pinned: AtomicU32,
}

impl MmContext {
    pub const fn new() -> Self {
        Self { id: AtomicU64::new(0), pinned: AtomicU32::new(0) }
    }

    /// The ASID this mm was last given, or `None` before its first
    /// `switch_in`/`pin`. This is the ASID a TLBI for the mm must use.
    pub fn asid(&self) -> Option<u16> {
        match self.id.load(SeqCst) {
            0 => None,
            id => Some(asid_of(id)),
        }
    }

    /// The raw generation | ASID word (diagnostics).
    pub fn id(&self) -> u64 {
        self.id.load(SeqCst)
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Relaxed) != 0
    }
}

impl Default for MmContext {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot of the allocator's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsidStats {
    /// Generation bumps.
    pub rollovers: u64,
    /// Switches done by the lock-free compare-and-swap.
    pub fast_switches: u64,
    /// Switches that took the lock.
    pub slow_switches: u64,
    /// Fresh ASIDs taken from the bitmap (not kept from a previous generation).
    pub allocations: u64,
    /// Local full TLB flushes paid because of a rollover.
    pub rollover_flushes: u64,
    /// mms pinned right now.
    pub pinned: u64,
}

#[derive(Default)]
struct Counters {
    rollovers: AtomicU64,
    fast: AtomicU64,
    slow: AtomicU64,
    allocations: AtomicU64,
    flushes: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// The generation-based ASID allocator. See the module documentation.
pub struct AsidAllocator {
    bits: u32,
    ncpus: usize,
    max_pinned: usize,
    bugs: Bugs,
    /// Current generation (id layout). Written only under the lock.
    generation: AtomicU64,
    /// Per CPU: id switched to in this generation, 0 after a rollover.
    active: [AtomicU64; MAX_CPUS],
    /// 0 = free, else owning CPU + 1.
    lock: AtomicUsize,
    // Everything below is accessed only with `lock` held.
    reserved: [AtomicU64; MAX_CPUS],
    /// Bit per CPU: owes a local flush before running a new-generation id.
    flush_pending: AtomicU32,
    /// ASIDs taken in the current generation.
    map: Vec<AtomicU64>,
    /// Pinned ASIDs.
    pinned_map: Vec<AtomicU64>,
    nr_pinned: AtomicUsize,
    /// Where the next search for a free ASID starts.
    cur_idx: AtomicU32,
    counters: Counters,
}

impl AsidAllocator {
    /// An allocator handing out `bits`-bit ASIDs to `ncpus` CPUs.
    pub fn new(bits: u32, ncpus: usize, bugs: Bugs) -> Result<Self, AsidError> {
        if !(MIN_ASID_BITS..=MAX_ASID_BITS).contains(&bits) {
            return Err(AsidError::BadWidth { bits });
        }
        if ncpus == 0 || ncpus > MAX_CPUS {
            return Err(AsidError::BadCpuCount { ncpus });
        }
        let usable = (1usize << bits) - 1;
        if usable <= ncpus {
            return Err(AsidError::TooFewAsids { bits, ncpus });
        }
        let words = (1usize << bits).div_ceil(64);
        let zeroed = || (0..words).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Ok(Self {
            bits,
            ncpus,
            max_pinned: usable - ncpus - 1,
            bugs,
            generation: AtomicU64::new(GEN_ONE),
            active: [const { AtomicU64::new(0) }; MAX_CPUS],
            lock: AtomicUsize::new(0),
            reserved: [const { AtomicU64::new(0) }; MAX_CPUS],
            flush_pending: AtomicU32::new(0),
            map: zeroed(),
            pinned_map: zeroed(),
            nr_pinned: AtomicUsize::new(0),
            cur_idx: AtomicU32::new(1),
            counters: Counters::default(),
        })
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    /// Most mms that may be pinned at once: `2^bits - 1 - ncpus - 1`.
    pub fn max_pinned(&self) -> usize {
        self.max_pinned
    }

    /// The current generation, in id layout.
    pub fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    /// Make `mm` current on the calling CPU and return the ASID to write
    /// into TTBR0. Any flush the CPU owes has been done when this returns.
    pub fn switch_in(&self, hw: &impl AsidHw, mm: &MmContext) -> u16 {
        match self.run(Request::Switch, hw, mm) {
            Ok(id) => asid_of(id),
            Err(e) => unreachable!("switch_in cannot fail: {e}"),
        }
    }

    /// Pin `mm`'s ASID (allocating one if needed): it will not change until
    /// the matching `unpin`. Pins nest. `hw` only identifies the caller.
    pub fn pin(&self, hw: &impl AsidHw, mm: &MmContext) -> Result<u16, AsidError> {
        self.run(Request::Pin, hw, mm).map(asid_of)
    }

    /// Drop one pin of `mm`. Unbalanced calls are ignored.
    pub fn unpin(&self, hw: &impl AsidHw, mm: &MmContext) {
        let _ = self.run(Request::Unpin, hw, mm);
    }

    /// Forget `mm` at destruction. Drops any pins left; the ASID itself stays
    /// taken until the next rollover, so other CPUs' stale entries tagged with
    /// it can never match another mm (which is why exit needs no TLBI).
    pub fn release(&self, hw: &impl AsidHw, mm: &MmContext) {
        if mm.is_pinned() {
            let _ = self.run(Request::Release, hw, mm);
        }
    }

    pub fn stats(&self) -> AsidStats {
        let c = &self.counters;
        AsidStats {
            rollovers: c.rollovers.load(Relaxed),
            fast_switches: c.fast.load(Relaxed),
            slow_switches: c.slow.load(Relaxed),
            allocations: c.allocations.load(Relaxed),
            rollover_flushes: c.flushes.load(Relaxed),
            pinned: self.nr_pinned.load(Relaxed) as u64,
        }
    }

    fn run(&self, req: Request, hw: &impl AsidHw, mm: &MmContext) -> Result<u64, AsidError> {
        let mut op = AsidOp::new(req);
        loop {
            match self.step(&mut op, hw, mm) {
                Step::Done(res) => return res,
                Step::Blocked => core::hint::spin_loop(),
                Step::Ran => {}
            }
        }
    }
}
