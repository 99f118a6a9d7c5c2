//! The bookkeeping of the swap area: which slots are in use, how many
//! references each has (swap entries, and the reclaim batch that is writing
//! it), and whether its contents were written yet. Where the contents live
//! is the caller's business (the kernel keeps them in RAM reserved at boot:
//! `mm::phys`).
//!
//! Slots are numbered from 1 (a swap entry is never all zero anyway, but a
//! slot 0 would read as "none" in too many places).
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A slot's reference count shares its word with this flag: the contents
/// were written ([`SwapSlots::mark_written`]).
const WRITTEN: u32 = 1 << 31;

/// The slots of a swap area of fixed size.
pub struct SwapSlots {
    /// Per slot (index `slot - 1`): references, and [`WRITTEN`].
    refs: Vec<AtomicU32>,
    /// Free slots, the next to hand out last. Its capacity is the area's
    /// size from the start, so pushing never allocates.
    free: spin::Mutex<Vec<u32>>,
    used: AtomicUsize,
}

impl SwapSlots {
    /// An area of `n` slots, all free.
    pub fn new(n: usize) -> Self {
        assert!(n < WRITTEN as usize, "{n} swap slots");
        SwapSlots {
            refs: (0..n).map(|_| AtomicU32::new(0)).collect(),
            free: spin::Mutex::new((1..=n as u32).rev().collect()),
            used: AtomicUsize::new(0),
        }
    }

    /// Slots in the area.
    pub fn total(&self) -> usize {
        self.refs.len()
    }

    /// Slots in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn word(&self, slot: u64) -> &AtomicU32 {
        match slot.checked_sub(1).and_then(|i| self.refs.get(i as usize)) {
            Some(w) => w,
            None => panic!("swap slot {slot} outside the area of {} slots", self.refs.len()),
        }
    }

    /// A free slot with one reference and nothing written; `None` when all
    /// are in use.
    pub fn alloc(&self) -> Option<u64> {
        let slot = self.free.lock().pop()?;
        let prev = self.word(slot as u64).swap(1, Ordering::AcqRel);
        assert_eq!(prev, 0, "free swap slot {slot} had references");
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(slot as u64)
    }

    /// One more reference to `slot`, which is in use (its holder copies
    /// it: fork copying a swap entry).
    pub fn dup(&self, slot: u64) {
        let prev = self.word(slot).fetch_add(1, Ordering::AcqRel);
        assert_ne!(prev & !WRITTEN, 0, "dup of free swap slot {slot}");
    }

    /// One reference less; the last frees the slot (true). Nobody can dup
    /// a slot concurrently with its last put: a dup comes from a holder.
    pub fn put(&self, slot: u64) -> bool {
        let w = self.word(slot);
        let prev = w.fetch_sub(1, Ordering::AcqRel);
        assert_ne!(prev & !WRITTEN, 0, "put of free swap slot {slot}");
        if prev & !WRITTEN != 1 {
            return false;
        }
        w.store(0, Ordering::Release);
        self.used.fetch_sub(1, Ordering::Relaxed);
        self.free.lock().push(slot as u32);
        true
    }

    /// The slot's contents are written: readers may copy them from now on
    /// (Release: the copy happens before).
    pub fn mark_written(&self, slot: u64) {
        self.word(slot).fetch_or(WRITTEN, Ordering::Release);
    }

    /// Whether the contents were written (Acquire: a copy after this sees
    /// them).
    pub fn is_written(&self, slot: u64) -> bool {
        self.word(slot).load(Ordering::Acquire) & WRITTEN != 0
    }

    /// References to `slot` (0: free).
    pub fn refs(&self, slot: u64) -> u32 {
        self.word(slot).load(Ordering::Acquire) & !WRITTEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_shared_and_freed_by_the_last_put() {
        let s = SwapSlots::new(2);
        assert_eq!((s.total(), s.used()), (2, 0));
        let a = s.alloc().unwrap();
        assert_eq!(a, 1, "numbered from 1");
        assert!(!s.is_written(a));
        s.mark_written(a);
        s.dup(a);
        assert_eq!(s.refs(a), 2);
        assert!(s.is_written(a), "the flag does not count as a reference");
        let b = s.alloc().unwrap();
        assert_eq!(s.alloc(), None, "full");
        assert_eq!(s.used(), 2);
        assert!(!s.put(a));
        assert!(s.put(a), "the last reference frees it");
        assert_eq!((s.refs(a), s.used()), (0, 1));
        assert!(!s.is_written(a), "a freed slot forgets its contents");
        assert_eq!(s.alloc(), Some(a), "and comes back");
        assert!(s.put(b) && s.put(a));
        assert_eq!(s.used(), 0);
    }

    #[test]
    fn an_empty_area_has_nothing_to_give() {
        let s = SwapSlots::new(0);
        assert_eq!(s.alloc(), None);
    }

    #[test]
    #[should_panic(expected = "put of free swap slot")]
    fn a_put_of_a_free_slot_is_a_bug() {
        let s = SwapSlots::new(1);
        s.put(1);
    }

    #[test]
    #[should_panic(expected = "outside the area")]
    fn slot_zero_is_no_slot() {
        SwapSlots::new(1).dup(0);
    }
}
