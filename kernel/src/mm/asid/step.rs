//! The allocator's operations as resumable steps (see "Written as resumable
//! steps" in the parent module): the fast path, the locked slow path with its
//! rollover, pinning, and the bitmap helpers.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::{asid_of, bump, generation_of, AsidAllocator, AsidError, AsidHw, MmContext, GEN_ONE};

/// What an [`AsidOp`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
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
    ReadActive {
        id: u64,
    },
    /// Fast path: read the generation.
    ReadGen {
        id: u64,
        old: u64,
    },
    /// Fast path: `active[cpu]` from `old` to `id`.
    Cas {
        id: u64,
        old: u64,
    },
    Lock,
    /// Under the lock: decide what the request needs.
    Locked,
    /// Rollover: new generation, `map` := pinned ASIDs, every CPU owes a flush.
    Bump,
    /// Rollover: take CPU `cpu`'s running id into `reserved` and `map`.
    Reserve {
        cpu: u8,
    },
    /// Rollover done: take a free ASID.
    AllocAfterRollover,
    StoreId {
        id: u64,
    },
    /// Pay a pending rollover flush.
    Flush {
        id: u64,
    },
    StoreActive {
        id: u64,
    },
    PinCommit {
        id: u64,
    },
    Unlock {
        res: Result<u64, AsidError>,
    },
    Done {
        res: Result<u64, AsidError>,
    },
}

/// One switch/pin/unpin/release in progress, resumable step by step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AsidOp {
    req: Request,
    pc: Pc,
}

/// Where an [`AsidOp`] stands, coarsely (for the checker's coverage counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
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
pub enum Step {
    Ran,
    /// Waiting for the lock; nothing changed.
    Blocked,
    /// Finished with this result (an id; for switches and pins, the mm's id).
    Done(Result<u64, AsidError>),
}

impl AsidOp {
    pub const fn new(req: Request) -> Self {
        let pc = match req {
            Request::Switch => Pc::ReadId,
            _ => Pc::Lock,
        };
        Self { req, pc }
    }

    pub fn request(&self) -> Request {
        self.req
    }

    pub fn phase(&self) -> Phase {
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
    pub fn next_step_is_private(&self, cpu: usize) -> bool {
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
    /// True if `op`'s next step would only wait for the lock.
    pub fn would_block(&self, op: &AsidOp) -> bool {
        op.pc == Pc::Lock && self.lock.load(SeqCst) != 0
    }

    /// Run one step of `op` on the CPU `hw` stands for. `mm` must be the same
    /// context on every step of one op.
    pub fn step(&self, op: &mut AsidOp, hw: &impl AsidHw, mm: &MmContext) -> Step {
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
