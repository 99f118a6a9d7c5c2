//! ASID generation allocator (mechanisms.md section 1).
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
//! # Invariants, and why they hold
//!
//! 1. *Two live mms never hold the same ASID in one generation*: an ASID is
//!    handed out only when its `map` bit was clear, and the bit stays set for
//!    the rest of the generation. Nothing is freed at mm destruction (see
//!    `release`), which is also what lets exit skip the TLBI (section 4).
//! 2. *No CPU runs a new-generation ASID before flushing its TLB after the
//!    rollover*: a rollover zeroes every `active`; the fast path needs a
//!    non-zero `active`, so the first switch after a rollover takes the slow
//!    path, which flushes while it holds the lock (no rollover can intervene).
//! 3. *A running task's ASID is never handed to another mm*: what a CPU runs is
//!    in its `active`, or in `reserved` after a rollover; the rollover marks
//!    both in the new `map`, and `reserved` ids are carried over to the new
//!    generation for their own mm only (exact id match), on every CPU that
//!    holds them.
//! 4. *The fast path and a concurrent rollover never lose an update*: both
//!    touch `active[cpu]` only with read-modify-writes, which are totally
//!    ordered. If the fast path's CAS comes first, the rollover's swap sees its
//!    id and reserves it; if the swap comes first, the CAS finds 0 and fails,
//!    and the slow path waits for the lock and sees the new generation. The
//!    expected value of the CAS is non-zero and only this CPU writes non-zero
//!    values to its `active`, so there is no ABA.
//!
//! The host checker (`mm::model`) checks these, and the TLB-level invariants of
//! Catalin Marinas's TLA+ model, over every interleaving of small systems.
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
//! * TTBR0 may still hold the previous mm (or the reserved table) during
//!   `switch_in`; the previous mm's ASID stays reserved, so entries the CPU
//!   refills for it after the flush remain that mm's. Write TTBR0 with the
//!   returned ASID after `switch_in` returns, then ISB.
//! * `AsidHw::flush_local_tlb_all` must be complete when it returns
//!   (`TLBI VMALLE1; DSB NSH; ISB`).
//! * `Bugs` injects the two mistakes the checker must catch. Test/demo only.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use super::tlb::stats::MAX_CPUS;

#[cfg(test)]
mod tests;

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
            AsidError::BadWidth { bits } => write!(
                f,
                "ASID width {bits} outside {MIN_ASID_BITS}..={MAX_ASID_BITS}"
            ),
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

/// What an [`AsidOp`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Request {
    Switch,
    Pin,
    Unpin,
    Release,
}

/// Where an [`AsidOp`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pc {
    /// Fast path: read the mm's id.
    ReadId,
    /// Fast path: read this CPU's `active`.
    ReadActive { id: u64 },
    /// Fast path: read the generation.
    ReadGen { id: u64, old: u64 },
    /// Fast path: `active[cpu]` from `old` to `id`.
    Cas { id: u64, old: u64 },
    Lock,
    /// Under the lock: decide what the request needs.
    Locked,
    /// Rollover: new generation, `map` := pinned ASIDs, every CPU owes a flush.
    Bump,
    /// Rollover: take CPU `cpu`'s running id into `reserved` and `map`.
    Reserve { cpu: u8 },
    /// Rollover done: take a free ASID.
    AllocAfterRollover,
    StoreId { id: u64 },
    /// Pay a pending rollover flush.
    Flush { id: u64 },
    StoreActive { id: u64 },
    PinCommit { id: u64 },
    Unlock { res: Result<u64, AsidError> },
    Done { res: Result<u64, AsidError> },
}

/// One switch/pin/unpin/release in progress, resumable step by step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AsidOp {
    req: Request,
    pc: Pc,
}

/// Where an [`AsidOp`] stands, coarsely (for the checker's coverage counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    FastPath,
    /// Between the fast path's reads and its compare-and-swap.
    FastCas,
    WaitLock,
    Locked,
    Rollover,
    Done,
}

/// Result of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Ran,
    /// Waiting for the lock; nothing changed.
    Blocked,
    /// Finished with this result (an id; for switches and pins, the mm's id).
    Done(Result<u64, AsidError>),
}

impl AsidOp {
    pub(crate) const fn new(req: Request) -> Self {
        let pc = match req {
            Request::Switch => Pc::ReadId,
            _ => Pc::Lock,
        };
        Self { req, pc }
    }

    pub(crate) fn request(&self) -> Request {
        self.req
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.pc {
            Pc::ReadId | Pc::ReadActive { .. } | Pc::ReadGen { .. } => Phase::FastPath,
            Pc::Cas { .. } => Phase::FastCas,
            Pc::Lock => Phase::WaitLock,
            Pc::Bump | Pc::Reserve { .. } | Pc::AllocAfterRollover => Phase::Rollover,
            Pc::Done { .. } => Phase::Done,
            _ => Phase::Locked,
        }
    }
}

impl AsidOp {
    /// True if the next step on `cpu` touches nothing another CPU may access
    /// before this op ends: only words guarded by the lock (which this op
    /// holds), this CPU's own `active` (others touch it only under the lock),
    /// this CPU's TLB, or the lock release (nobody else can act on the lock
    /// word while it is held). Such a step commutes with every step of every
    /// other CPU, so a checker may run it together with the step before it
    /// without losing any behaviour (a partial-order reduction).
    pub(crate) fn next_step_is_private(&self, cpu: usize) -> bool {
        match self.pc {
            Pc::Locked
            | Pc::AllocAfterRollover
            | Pc::Flush { .. }
            | Pc::StoreActive { .. }
            | Pc::PinCommit { .. }
            | Pc::Unlock { .. } => true,
            Pc::Reserve { cpu: c } => c as usize == cpu,
            _ => false,
        }
    }
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

    /// True if `op`'s next step would only wait for the lock.
    pub(crate) fn would_block(&self, op: &AsidOp) -> bool {
        op.pc == Pc::Lock && self.lock.load(SeqCst) != 0
    }

    /// Run one step of `op` on the CPU `hw` stands for. `mm` must be the same
    /// context on every step of one op.
    pub(crate) fn step(&self, op: &mut AsidOp, hw: &impl AsidHw, mm: &MmContext) -> Step {
        let cpu = hw.cpu_id();
        assert!(cpu < self.ncpus, "cpu {cpu} >= ncpus {}", self.ncpus);
        op.pc = match op.pc {
            Pc::ReadId => Pc::ReadActive { id: mm.id.load(SeqCst) },
            Pc::ReadActive { id } => match self.active[cpu].load(SeqCst) {
                0 => Pc::Lock,
                old => Pc::ReadGen { id, old },
            },
            Pc::ReadGen { id, old } => {
                if id != 0 && generation_of(id) == self.generation.load(SeqCst) {
                    Pc::Cas { id, old }
                } else {
                    Pc::Lock
                }
            }
            Pc::Cas { id, old } => {
                // Fails only if a rollover zeroed `active[cpu]` since we read it.
                if self.active[cpu].compare_exchange(old, id, SeqCst, SeqCst).is_ok() {
                    bump(&self.counters.fast);
                    Pc::Done { res: Ok(id) }
                } else {
                    Pc::Lock
                }
            }
            Pc::Lock => {
                if self.lock.compare_exchange(0, cpu + 1, SeqCst, SeqCst).is_err() {
                    return Step::Blocked;
                }
                Pc::Locked
            }
            Pc::Locked => match op.req {
                Request::Switch => self.switch_locked(mm),
                Request::Pin => self.pin_locked(mm),
                Request::Unpin => self.unpin_locked(mm, false),
                Request::Release => self.unpin_locked(mm, true),
            },
            Pc::Bump => {
                self.generation.fetch_add(GEN_ONE, SeqCst);
                for (w, p) in self.map.iter().zip(self.pinned_map.iter()) {
                    w.store(p.load(Relaxed), Relaxed);
                }
                self.flush_pending.store((1u32 << self.ncpus) - 1, Relaxed);
                bump(&self.counters.rollovers);
                Pc::Reserve { cpu: 0 }
            }
            Pc::Reserve { cpu: c } => {
                self.reserve(c as usize);
                if (c as usize) + 1 < self.ncpus {
                    Pc::Reserve { cpu: c + 1 }
                } else {
                    Pc::AllocAfterRollover
                }
            }
            Pc::AllocAfterRollover => {
                // Usable ASIDs > ncpus + pinned, so one is free.
                let asid = self.take_free(1).expect("rollover left no free ASID");
                Pc::StoreId { id: self.generation.load(SeqCst) | asid as u64 }
            }
            Pc::StoreId { id } => {
                mm.id.store(id, SeqCst);
                match op.req {
                    Request::Pin => Pc::PinCommit { id },
                    _ => Pc::Flush { id },
                }
            }
            Pc::Flush { id } => {
                let bit = 1u32 << cpu;
                if self.flush_pending.load(Relaxed) & bit != 0 {
                    self.flush_pending.fetch_and(!bit, Relaxed);
                    if !self.bugs.skip_rollover_flush {
                        hw.flush_local_tlb_all();
                        bump(&self.counters.flushes);
                    }
                }
                Pc::StoreActive { id }
            }
            Pc::StoreActive { id } => {
                self.active[cpu].store(id, SeqCst);
                Pc::Unlock { res: Ok(id) }
            }
            Pc::PinCommit { id } => {
                self.nr_pinned.fetch_add(1, Relaxed);
                set_bit(&self.pinned_map, asid_of(id));
                mm.pinned.store(1, Relaxed);
                Pc::Unlock { res: Ok(id) }
            }
            Pc::Unlock { res } => {
                self.lock.store(0, SeqCst);
                Pc::Done { res }
            }
            Pc::Done { res } => return Step::Done(res),
        };
        match op.pc {
            Pc::Done { res } => Step::Done(res),
            _ => Step::Ran,
        }
    }

    /// Switch, lock held: keep a current id, else find one.
    fn switch_locked(&self, mm: &MmContext) -> Pc {
        bump(&self.counters.slow);
        let id = mm.id.load(SeqCst);
        let generation = self.generation.load(SeqCst);
        if id != 0 && generation_of(id) == generation {
            return Pc::Flush { id };
        }
        match self.new_context(mm, id, generation) {
            Some(id) => Pc::StoreId { id },
            None => Pc::Bump,
        }
    }

    fn pin_locked(&self, mm: &MmContext) -> Pc {
        let id = mm.id.load(SeqCst);
        let pins = mm.pinned.load(Relaxed);
        if pins != 0 {
            mm.pinned.store(pins + 1, Relaxed);
            return Pc::Unlock { res: Ok(id) };
        }
        if self.nr_pinned.load(Relaxed) >= self.max_pinned {
            return Pc::Unlock { res: Err(AsidError::TooManyPinned { max: self.max_pinned }) };
        }
        let generation = self.generation.load(SeqCst);
        if id != 0 && generation_of(id) == generation {
            return Pc::PinCommit { id };
        }
        match self.new_context(mm, id, generation) {
            Some(id) => Pc::StoreId { id },
            None => Pc::Bump,
        }
    }

    fn unpin_locked(&self, mm: &MmContext, all: bool) -> Pc {
        let id = mm.id.load(SeqCst);
        let pins = mm.pinned.load(Relaxed);
        if pins != 0 {
            let left = if all { 0 } else { pins - 1 };
            mm.pinned.store(left, Relaxed);
            if left == 0 {
                // The ASID stays taken in `map` until the next rollover.
                clear_bit(&self.pinned_map, asid_of(id));
                self.nr_pinned.fetch_sub(1, Relaxed);
            }
        }
        Pc::Unlock { res: Ok(id) }
    }

    /// A new-generation id for `mm` (whose id is `id`, stale or 0), or `None`
    /// if the generation has no free ASID left. Lock held.
    fn new_context(&self, mm: &MmContext, id: u64, generation: u64) -> Option<u64> {
        if id != 0 {
            let kept = generation | asid_of(id) as u64;
            // Running somewhere at the last rollover: its ASID was reserved.
            if !self.bugs.ignore_reserved && self.update_reserved(id, kept) {
                return Some(kept);
            }
            // Pinned: its ASID is in `map` from `pinned_map`.
            if mm.pinned.load(Relaxed) != 0 {
                return Some(kept);
            }
            // Nobody took it in this generation yet.
            if !test_and_set_bit(&self.map, asid_of(id)) {
                return Some(kept);
            }
        }
        let start = self.cur_idx.load(Relaxed) as u16;
        self.take_free(start).map(|asid| generation | asid as u64)
    }

    /// Carry `old` over as `new` in every CPU's `reserved` that holds it.
    fn update_reserved(&self, old: u64, new: u64) -> bool {
        let mut hit = false;
        for r in &self.reserved[..self.ncpus] {
            if r.load(Relaxed) == old {
                r.store(new, Relaxed);
                hit = true;
            }
        }
        hit
    }

    /// Rollover, for CPU `c`: what it runs stays its own into the new generation.
    fn reserve(&self, c: usize) {
        let mut id = self.active[c].swap(0, SeqCst);
        if id == 0 {
            // No switch since the previous rollover: it still runs that id.
            id = self.reserved[c].load(Relaxed);
        }
        if id != 0 && !self.bugs.ignore_reserved {
            set_bit(&self.map, asid_of(id));
        }
        self.reserved[c].store(id, Relaxed);
    }

    /// Take the first free ASID at or after `start`, wrapping to 1.
    fn take_free(&self, start: u16) -> Option<u16> {
        let end = 1u32 << self.bits;
        let start = (start as u32).clamp(1, end - 1);
        let asid = find_zero(&self.map, start, end).or_else(|| find_zero(&self.map, 1, start))?;
        set_bit(&self.map, asid);
        self.cur_idx.store(asid as u32, Relaxed);
        bump(&self.counters.allocations);
        Some(asid)
    }
}

fn set_bit(map: &[AtomicU64], bit: u16) {
    map[bit as usize / 64].fetch_or(1 << (bit % 64), Relaxed);
}

fn clear_bit(map: &[AtomicU64], bit: u16) {
    map[bit as usize / 64].fetch_and(!(1 << (bit % 64)), Relaxed);
}

/// Set `bit`; return whether it was set before.
fn test_and_set_bit(map: &[AtomicU64], bit: u16) -> bool {
    let mask = 1 << (bit % 64);
    map[bit as usize / 64].fetch_or(mask, Relaxed) & mask != 0
}

/// First clear bit in `from..to`.
fn find_zero(map: &[AtomicU64], from: u32, to: u32) -> Option<u16> {
    let mut i = from;
    while i < to {
        let word = map[i as usize / 64].load(Relaxed) | ((1u64 << (i % 64)) - 1);
        if word != u64::MAX {
            let bit = (i / 64) * 64 + word.trailing_ones();
            return (bit < to).then_some(bit as u16);
        }
        i = (i / 64 + 1) * 64;
    }
    None
}

// The host checker clones whole system states and hashes them; these impls
// exist only for it. Counters are copied but not hashed (they would make every
// path a distinct state).
#[cfg(test)]
mod checker_support {
    use super::*;
    use core::hash::{Hash, Hasher};

    fn copy(a: &AtomicU64) -> AtomicU64 {
        AtomicU64::new(a.load(Relaxed))
    }

    impl Clone for MmContext {
        fn clone(&self) -> Self {
            Self { id: copy(&self.id), pinned: AtomicU32::new(self.pinned.load(Relaxed)) }
        }
    }

    impl Hash for MmContext {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.id.load(Relaxed).hash(h);
            self.pinned.load(Relaxed).hash(h);
        }
    }

    impl Clone for AsidAllocator {
        fn clone(&self) -> Self {
            let c = &self.counters;
            Self {
                bits: self.bits,
                ncpus: self.ncpus,
                max_pinned: self.max_pinned,
                bugs: self.bugs,
                generation: copy(&self.generation),
                active: core::array::from_fn(|i| copy(&self.active[i])),
                lock: AtomicUsize::new(self.lock.load(Relaxed)),
                reserved: core::array::from_fn(|i| copy(&self.reserved[i])),
                flush_pending: AtomicU32::new(self.flush_pending.load(Relaxed)),
                map: self.map.iter().map(copy).collect(),
                pinned_map: self.pinned_map.iter().map(copy).collect(),
                nr_pinned: AtomicUsize::new(self.nr_pinned.load(Relaxed)),
                cur_idx: AtomicU32::new(self.cur_idx.load(Relaxed)),
                counters: Counters {
                    rollovers: copy(&c.rollovers),
                    fast: copy(&c.fast),
                    slow: copy(&c.slow),
                    allocations: copy(&c.allocations),
                    flushes: copy(&c.flushes),
                },
            }
        }
    }

    impl Hash for AsidAllocator {
        fn hash<H: Hasher>(&self, h: &mut H) {
            let load = |a: &AtomicU64| a.load(Relaxed);
            self.generation.load(Relaxed).hash(h);
            for c in 0..self.ncpus {
                load(&self.active[c]).hash(h);
                load(&self.reserved[c]).hash(h);
            }
            self.lock.load(Relaxed).hash(h);
            self.flush_pending.load(Relaxed).hash(h);
            self.map.iter().map(load).for_each(|w| w.hash(h));
            self.pinned_map.iter().map(load).for_each(|w| w.hash(h));
            self.nr_pinned.load(Relaxed).hash(h);
            self.cur_idx.load(Relaxed).hash(h);
        }
    }

    /// Read-only views for the checker's invariants.
    impl AsidAllocator {
        pub(crate) fn active_id(&self, cpu: usize) -> u64 {
            self.active[cpu].load(SeqCst)
        }
        pub(crate) fn reserved_id(&self, cpu: usize) -> u64 {
            self.reserved[cpu].load(Relaxed)
        }
        pub(crate) fn is_taken(&self, asid: u16) -> bool {
            self.map[asid as usize / 64].load(Relaxed) & (1 << (asid % 64)) != 0
        }
        pub(crate) fn lock_held(&self) -> bool {
            self.lock.load(SeqCst) != 0
        }
    }
}
