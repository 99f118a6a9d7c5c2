//! The mappings of an address space (VMAs): sorted, non-overlapping,
//! page-aligned ranges of anonymous private memory, each with its protection.
//!
//! The page tables say what is present; the VMAs say what *may* be. A fault
//! at an address no VMA covers is a bad access; inside one, the VMA's
//! protection decides whether it is allowed, and a missing page is simply
//! filled. Every present leaf lies inside a VMA, so removing a range of VMAs
//! and zapping the same range of page tables go together.
//!
//! Kept in a `BTreeMap` keyed by start address. Operations on a range split
//! the VMAs straddling its ends, so a range always consists of whole VMAs;
//! afterwards neighbours with equal protection are merged again, so the set
//! stays minimal (one VMA per maximal run of equal protection).
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Bits of [`Vma::prot`] above the `abi::prot` ones: the page sizes a
/// mapping's faults may use besides 4 KiB.
pub mod size {
    /// 2 MiB blocks.
    pub const BLOCK: u64 = 1 << 8;
    /// 64 KiB contiguous runs.
    pub const CONT: u64 = 1 << 9;
    pub const MASK: u64 = BLOCK | CONT;
}

/// One mapping: `[start, end)` with `abi::prot` bits, and [`size`] bits
/// above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u64,
}

impl Vma {
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The VMAs of one address space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmaSet {
    map: BTreeMap<u64, Vma>,
}

impl VmaSet {
    pub const fn new() -> Self {
        Self { map: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All VMAs in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.map.values()
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.map.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// VMAs overlapping `[start, end)`, in order.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma> {
        let first = self.find(start).map_or(start, |v| v.start);
        self.map.range(first..end).map(|(_, v)| v)
    }

    /// Whether no VMA overlaps `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_none()
    }

    /// Checks that every address of `[start, end)` lies in a VMA for which
    /// `ok` holds; `Err(addr)` names the first one that does not.
    pub fn check(&self, start: u64, end: u64, ok: impl Fn(&Vma) -> bool) -> Result<(), u64> {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at || !ok(v) {
                return Err(at);
            }
            at = v.end;
        }
        if at < end {
            Err(at)
        } else {
            Ok(())
        }
    }

    /// How many of `start` and `end` fall strictly inside a VMA: the splits
    /// a change of `[start, end)` makes, each one VMA more.
    pub fn splits(&self, start: u64, end: u64) -> usize {
        [start, end].iter().filter(|&&a| self.find(a).is_some_and(|v| v.start < a)).count()
    }

    /// Splits the VMA straddling `addr` (if any) into two at `addr`.
    fn split_at(&mut self, addr: u64) {
        if let Some(&v) = self.find(addr).filter(|v| v.start < addr) {
            self.map.insert(v.start, Vma { end: addr, ..v });
            self.map.insert(addr, Vma { start: addr, ..v });
        }
    }

    /// Merges equal-protection neighbours among the VMAs around
    /// `[start, end)` (one before, those inside, one after).
    fn merge_around(&mut self, start: u64, end: u64) {
        let from = self.map.range(..start).next_back().map_or(start, |(&k, _)| k);
        let keys: Vec<u64> = self.map.range(from..=end).map(|(&k, _)| k).collect();
        let mut prev: Option<Vma> = None;
        for k in keys {
            let cur = self.map[&k];
            match prev {
                Some(p) if p.end == cur.start && p.prot == cur.prot => {
                    self.map.remove(&k);
                    let merged = Vma { end: cur.end, ..p };
                    self.map.insert(p.start, merged);
                    prev = Some(merged);
                }
                _ => prev = Some(cur),
            }
        }
    }

    /// Removes `[start, end)` from the set, splitting VMAs at its ends.
    /// Returns whether anything was mapped there.
    pub fn remove(&mut self, start: u64, end: u64) -> bool {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.map.range(start..end).map(|(&k, _)| k).collect();
        for k in &keys {
            self.map.remove(k);
        }
        !keys.is_empty()
    }

    /// Maps `[start, end)` with `prot`, replacing whatever overlapped it.
    pub fn insert(&mut self, start: u64, end: u64, prot: u64) {
        debug_assert!(start < end, "empty VMA {start:#x}..{end:#x}");
        self.remove(start, end);
        self.map.insert(start, Vma { start, end, prot });
        self.merge_around(start, end);
    }

    /// Sets the protection of `[start, end)` (the [`size`] bits stay).
    /// Fails, changing nothing, with the first unmapped address if the
    /// range is not entirely mapped.
    pub fn protect(&mut self, start: u64, end: u64, prot: u64) -> Result<(), u64> {
        self.update(start, end, |p| (p & size::MASK) | (prot & !size::MASK))
    }

    /// Sets (`on`) or clears the [`size`] bits `bits` of `[start, end)`,
    /// as [`Self::protect`].
    pub fn set_sizes(&mut self, start: u64, end: u64, bits: u64, on: bool) -> Result<(), u64> {
        let bits = bits & size::MASK;
        self.update(start, end, |p| if on { p | bits } else { p & !bits })
    }

    fn update(&mut self, start: u64, end: u64, f: impl Fn(u64) -> u64) -> Result<(), u64> {
        self.check(start, end, |_| true)?;
        self.split_at(start);
        self.split_at(end);
        for v in self.map.range_mut(start..end).map(|(_, v)| v) {
            v.prot = f(v.prot);
        }
        self.merge_around(start, end);
        Ok(())
    }

    /// [`Self::find_free`] for an address that is a multiple of `align` (a
    /// power of two).
    pub fn find_free_aligned(&self, len: u64, align: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut at = lo.next_multiple_of(align);
        for v in self.overlapping(lo, hi) {
            if v.start >= at && v.start - at >= len {
                break;
            }
            at = at.max(v.end).next_multiple_of(align);
        }
        (at.checked_add(len)? <= hi).then_some(at)
    }

    /// First-fit: the lowest `addr >= lo` with `[addr, addr + len)` free and
    /// below `hi`.
    pub fn find_free(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        let mut at = lo;
        for v in self.overlapping(lo, hi) {
            if v.start >= at && v.start - at >= len {
                break;
            }
            at = at.max(v.end);
        }
        (at.checked_add(len)? <= hi).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::prot::{READ as R, WRITE as W};

    const RW: u64 = R | W;
    const P: u64 = 0x1000;

    fn list(s: &VmaSet) -> Vec<(u64, u64, u64)> {
        s.iter().map(|v| (v.start / P, v.end / P, v.prot)).collect()
    }

    /// Sorted, non-empty, disjoint, and no two touching VMAs share a prot.
    fn assert_invariants(s: &VmaSet) {
        let v: Vec<&Vma> = s.iter().collect();
        for (k, x) in &s.map {
            assert_eq!(*k, x.start, "key {k:#x} does not match {x:?}");
            assert!(x.start < x.end, "empty {x:?}");
        }
        for w in v.windows(2) {
            assert!(w[0].end <= w[1].start, "overlap: {:?} {:?}", w[0], w[1]);
            assert!(w[0].end < w[1].start || w[0].prot != w[1].prot, "unmerged: {:?} {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn insert_splits_replaces_and_merges() {
        let mut s = VmaSet::new();
        s.insert(10 * P, 20 * P, RW);
        s.insert(14 * P, 16 * P, R);
        assert_eq!(list(&s), vec![(10, 14, RW), (14, 16, R), (16, 20, RW)], "hole punched with R");
        s.insert(12 * P, 18 * P, RW);
        assert_eq!(list(&s), vec![(10, 20, RW)], "re-covered with RW: merged back into one");
        s.insert(20 * P, 22 * P, RW);
        s.insert(8 * P, 10 * P, RW);
        assert_eq!(list(&s), vec![(8, 22, RW)], "touching neighbours with equal prot merge");
        s.insert(30 * P, 31 * P, R);
        assert_eq!(s.find(21 * P).map(|v| v.start), Some(8 * P));
        assert_eq!(s.find(22 * P), None, "end is exclusive");
        assert_eq!(s.find(30 * P).map(|v| v.prot), Some(R));
        assert_invariants(&s);
    }

    #[test]
    fn remove_splits() {
        let mut s = VmaSet::new();
        s.insert(10 * P, 20 * P, RW);
        assert!(s.remove(12 * P, 13 * P));
        assert_eq!(list(&s), vec![(10, 12, RW), (13, 20, RW)]);
        assert!(!s.remove(12 * P, 13 * P), "already unmapped");
        assert!(s.remove(0, 11 * P));
        assert!(s.remove(19 * P, 40 * P));
        assert_eq!(list(&s), vec![(11, 12, RW), (13, 19, RW)]);
        assert_invariants(&s);
    }

    #[test]
    fn protect_needs_a_fully_mapped_range() {
        let mut s = VmaSet::new();
        s.insert(10 * P, 20 * P, RW);
        s.insert(21 * P, 25 * P, RW);
        let before = s.clone();
        assert_eq!(s.protect(15 * P, 22 * P, R), Err(20 * P), "hole at 20: first unmapped address");
        assert_eq!(s, before, "a failed protect changes nothing");
        assert_eq!(s.protect(9 * P, 12 * P, R), Err(9 * P));
        s.protect(12 * P, 14 * P, R).unwrap();
        assert_eq!(list(&s), vec![(10, 12, RW), (12, 14, R), (14, 20, RW), (21, 25, RW)]);
        s.protect(10 * P, 20 * P, RW).unwrap();
        assert_eq!(list(&s), vec![(10, 20, RW), (21, 25, RW)], "merged back");
        assert_eq!(s.check(10 * P, 20 * P, |v| v.prot & W != 0), Ok(()));
        assert_eq!(s.check(10 * P, 22 * P, |_| true), Err(20 * P));
        assert_invariants(&s);
    }

    #[test]
    fn find_free_is_first_fit_within_bounds() {
        let mut s = VmaSet::new();
        let (lo, hi) = (100 * P, 200 * P);
        assert_eq!(s.find_free(5 * P, lo, hi), Some(lo));
        s.insert(100 * P, 110 * P, RW);
        s.insert(113 * P, 120 * P, R);
        assert_eq!(s.find_free(3 * P, lo, hi), Some(110 * P), "gap of exactly 3 pages");
        assert_eq!(s.find_free(4 * P, lo, hi), Some(120 * P), "gap too small: next one");
        assert_eq!(s.find_free(80 * P, lo, hi), Some(120 * P));
        assert_eq!(s.find_free(81 * P, lo, hi), None, "does not fit below hi");
        s.insert(90 * P, 105 * P, RW); // straddles lo
        assert_eq!(s.find_free(3 * P, lo, hi), Some(110 * P));
        assert_eq!(s.find_free(u64::MAX, lo, hi), None, "no overflow");
        assert!(s.is_free(110 * P, 113 * P) && !s.is_free(109 * P, 111 * P));
    }

    /// Random operations against a page-by-page model.
    #[test]
    fn random_against_a_page_model() {
        const SEED: u64 = 0x0005_eed0_fa11;
        let mut x = SEED;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut s = VmaSet::new();
        let mut model = [None::<u64>; 64];
        for step in 0..5000 {
            let a = rnd(64);
            let b = (a + 1 + rnd(8)).min(64);
            let prot = rnd(3);
            match rnd(3) {
                0 => {
                    s.insert(a * P, b * P, prot);
                    model[a as usize..b as usize].fill(Some(prot));
                }
                1 => {
                    s.remove(a * P, b * P);
                    model[a as usize..b as usize].fill(None);
                }
                _ => {
                    let ok = model[a as usize..b as usize].iter().all(Option::is_some);
                    assert_eq!(s.protect(a * P, b * P, prot).is_ok(), ok, "seed {SEED:#x} step {step}");
                    if ok {
                        model[a as usize..b as usize].fill(Some(prot));
                    }
                }
            }
            assert_invariants(&s);
            for (pg, want) in model.iter().enumerate() {
                let seen = s.find(pg as u64 * P).map(|v| v.prot);
                assert_eq!(seen, *want, "seed {SEED:#x} step {step}: page {pg}: expected {want:?}, saw {seen:?}");
            }
        }
    }
}
