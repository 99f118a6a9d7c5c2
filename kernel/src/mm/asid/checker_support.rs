//! Support for the host model (`tlbmodel`), which clones whole system
//! states and hashes them. Counters are copied but not hashed (they would make every
//! path a distinct state).

use core::hash::{Hash, Hasher};
use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use super::{AsidAllocator, Counters, MmContext};

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
    pub fn active_id(&self, cpu: usize) -> u64 {
        self.active[cpu].load(SeqCst)
    }
    pub fn reserved_id(&self, cpu: usize) -> u64 {
        self.reserved[cpu].load(Relaxed)
    }
    pub fn is_taken(&self, asid: u16) -> bool {
        self.map[asid as usize / 64].load(Relaxed) & (1 << (asid % 64)) != 0
    }
    pub fn lock_held(&self) -> bool {
        self.lock.load(SeqCst) != 0
    }
}
