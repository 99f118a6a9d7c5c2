//! One CPU's TLB: ASID-tagged leaf entries and walk-cache entries, and what a
//! TLBI removes from it.
//!
//! A leaf entry covers what one walk found: a 4 KiB page, a block (one
//! entry for the whole block, tagged with its level), or a contiguous run
//! (one entry for all the run's pages, built from the one descriptor the
//! walk read: the worst case the architecture allows, as a TLB may cache
//! the run as one entry from any of its descriptors, which is why a run's
//! entries must never disagree while one of them may be cached).
//!
//! Entries leave only through a matching invalidation (the model never
//! evicts: eviction only removes entries, so keeping them is the worst case).
//! Each entry carries the ghost tag of the mm whose TTBR0 was loaded when it
//! was filled; hardware has no such tag, the invariants use it.
#![forbid(unsafe_code)]

use core::hash::{Hash, Hasher};

use super::mem::{Format, MmTag, Pfn};
use kernel::mm::tlb::TlbiOp;

/// The architectural level of a 4 KiB leaf, as FEAT_TTL encodes it.
pub const LEAF_TTL: u8 = 3;

/// A cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entry {
    /// Pages `vpn..vpn + pages` map frames `pfn..pfn + pages` (`writable`:
    /// the descriptor let EL0 write). `level` is the architectural level of
    /// the descriptor the walk read (3 for a page or a contiguous run, 2
    /// for the kernel's blocks): the level a TTL hint names.
    Leaf { asid: u16, vpn: u64, pfn: Pfn, mm: MmTag, writable: bool, level: u8, pages: u8 },
    /// The level-`level` descriptor for the region starting at page `region`
    /// points to the next-level table `table` (a cached upper-level entry).
    Walk { asid: u16, level: u8, region: u64, table: Pfn, mm: MmTag },
}

// Two words per entry: the checker hashes every state it reaches.
impl Hash for Entry {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (a, b) = match *self {
            Entry::Leaf { asid, vpn, pfn, mm, writable, level, pages } => (
                vpn | (level as u64) << 40 | (pages as u64) << 48,
                (asid as u64) << 48 | (pfn as u64) << 16 | (writable as u64) << 15 | mm as u64,
            ),
            Entry::Walk { asid, level, region, table, mm } => {
                (region | 1 << 63, (asid as u64) << 48 | (table as u64) << 16 | (level as u64) << 40 | mm as u64)
            }
        };
        h.write_u64(a);
        h.write_u64(b);
    }
}

impl Entry {
    pub fn asid(&self) -> u16 {
        match *self {
            Entry::Leaf { asid, .. } | Entry::Walk { asid, .. } => asid,
        }
    }

    pub fn mm(&self) -> MmTag {
        match *self {
            Entry::Leaf { mm, .. } | Entry::Walk { mm, .. } => mm,
        }
    }

    /// A 4 KiB page entry.
    pub fn page(asid: u16, vpn: u64, pfn: Pfn, mm: MmTag, writable: bool) -> Self {
        Entry::Leaf { asid, vpn, pfn, mm, writable, level: LEAF_TTL, pages: 1 }
    }

    /// The pages a leaf entry covers (none for a walk-cache entry).
    pub fn span(&self) -> core::ops::Range<u64> {
        match *self {
            Entry::Leaf { vpn, pages, .. } => vpn..vpn + pages as u64,
            Entry::Walk { .. } => 0..0,
        }
    }

    /// What a leaf entry translates page `vpn` to, if it covers it: the
    /// frame and whether EL0 may write.
    pub fn translate(&self, v: u64) -> Option<(Pfn, bool)> {
        match *self {
            Entry::Leaf { vpn, pfn, writable, .. } if self.span().contains(&v) => {
                Some((pfn + (v - vpn) as Pfn, writable))
            }
            _ => None,
        }
    }

    /// Each page a leaf entry covers, with its frame and write permission.
    pub fn pages(&self) -> impl Iterator<Item = (u64, Pfn, bool)> + '_ {
        self.span().filter_map(|v| self.translate(v).map(|(p, w)| (v, p, w)))
    }
}

/// The pages `[lo, hi)` a `TLBI RVA(L)E1` covers: `(num + 1) * 2^(5 * scale + 1)`
/// pages from `base`.
pub fn range_pages(base: u64, num: u8, scale: u8) -> (u64, u64) {
    let lo = base >> 12;
    let pages = (num as u64 + 1) << (5 * scale as u32 + 1);
    (lo, lo.saturating_add(pages))
}

/// A TLB, entries sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tlb {
    entries: Vec<Entry>,
}

impl Tlb {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Add an entry; false if it was there already.
    pub fn insert(&mut self, e: Entry) -> bool {
        match self.entries.binary_search(&e) {
            Ok(_) => false,
            Err(i) => {
                self.entries.insert(i, e);
                true
            }
        }
    }

    /// Apply one invalidation; returns how many entries it removed.
    ///
    /// Per page (`Va`) and per range (`Range`): leaf entries of the ASID
    /// that cover any of the pages (a block or run entry goes whatever page
    /// of it the op names), unless a TTL hint names another level than the
    /// entry's; and, for the non-last-level forms, walk-cache entries of the
    /// ASID whose region meets the pages. `Asid`: every entry of the ASID.
    /// `All`: everything.
    ///
    /// The TTL field (FEAT_TTL, TLBI VALE1IS and the other by-VA forms in
    /// the Arm ARM's system instruction pages, DDI 0595): "Indicates the
    /// level of the page table walk that holds the leaf entry for the
    /// address being invalidated"; 0b00xx: "No information supplied as to
    /// the translation table level. Hardware must assume that the entry can
    /// be from any level." With a level given, an implementation need not
    /// invalidate an entry from another level (as lk's commit 64e2f8a notes
    /// for Arm's fast models, which do not): the model removes none, the
    /// worst case. A contiguous run's entry is from level 3, a block's from
    /// its own level.
    pub fn invalidate(&mut self, op: &TlbiOp, format: Format) -> usize {
        let before = self.entries.len();
        match *op {
            TlbiOp::All => self.entries.clear(),
            TlbiOp::Asid { asid } => self.entries.retain(|e| e.asid() != asid),
            TlbiOp::Va { asid, va, last_level, ttl } => {
                let lo = va >> 12;
                self.retain_outside(asid, lo, lo + 1, last_level, ttl, format);
            }
            TlbiOp::Range { asid, base, num, scale, last_level, ttl } => {
                let (lo, hi) = range_pages(base, num, scale);
                self.retain_outside(asid, lo, hi, last_level, ttl, format);
            }
        }
        before - self.entries.len()
    }

    fn retain_outside(&mut self, asid: u16, lo: u64, hi: u64, last_level: bool, ttl: Option<u8>, format: Format) {
        self.entries.retain(|e| match *e {
            Entry::Leaf { asid: a, vpn, pages, level, .. } => {
                let hit = ttl.is_none_or(|l| l == level);
                !(a == asid && hit && vpn < hi && lo < vpn + pages as u64)
            }
            Entry::Walk { asid: a, level, region, .. } => {
                let end = region + format.span(level);
                !(a == asid && !last_level && region < hi && lo < end)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Format = Format { levels: 3, fanout: 4 };

    fn tlb() -> Tlb {
        let mut t = Tlb::default();
        for (asid, vpn) in [(1, 5), (1, 6), (1, 40), (2, 5)] {
            t.insert(Entry::page(asid, vpn, vpn as Pfn, asid as MmTag, false));
        }
        // Level-1 entry covering pages 4..8 and a root entry covering 0..16.
        t.insert(Entry::Walk { asid: 1, level: 1, region: 4, table: 9, mm: 1 });
        t.insert(Entry::Walk { asid: 1, level: 0, region: 0, table: 8, mm: 1 });
        t
    }

    fn leaves(t: &Tlb) -> Vec<(u16, u64)> {
        let mut v = Vec::new();
        for e in t.entries() {
            if let Entry::Leaf { asid, vpn, .. } = *e {
                v.push((asid, vpn));
            }
        }
        v
    }

    #[test]
    fn per_page_forms_and_walk_cache() {
        let va = |vpn: u64| vpn << 12;
        let mut t = tlb();
        let op = TlbiOp::Va { asid: 1, va: va(5), last_level: true, ttl: None };
        assert_eq!(t.invalidate(&op, F), 1, "VALE1 removes the leaf only");
        assert_eq!(leaves(&t), vec![(1, 6), (1, 40), (2, 5)]);
        let op = TlbiOp::Va { asid: 1, va: va(6), last_level: false, ttl: None };
        assert_eq!(t.invalidate(&op, F), 3, "VAE1 also removes walk entries over the page");
        assert_eq!(t.entries().len(), 2);
        let mut t = tlb();
        let op = TlbiOp::Va { asid: 1, va: va(5), last_level: true, ttl: Some(2) };
        assert_eq!(t.invalidate(&op, F), 0, "a wrong TTL hint may leave the leaf");
    }

    #[test]
    fn range_asid_and_all() {
        let mut t = tlb();
        // num = 0, scale = 0: 2 pages from page 4, i.e. pages 4 and 5.
        let (lo, hi) = range_pages(4 << 12, 0, 0);
        assert_eq!((lo, hi), (4, 6));
        let op = TlbiOp::Range { asid: 1, base: 4 << 12, num: 0, scale: 0, last_level: false, ttl: None };
        assert_eq!(t.invalidate(&op, F), 3);
        assert_eq!(leaves(&t), vec![(1, 6), (1, 40), (2, 5)]);
        // num = 1, scale = 1: 2 * 64 pages covers everything of ASID 1.
        assert_eq!(range_pages(0, 1, 1), (0, 128));
        let mut t = tlb();
        assert_eq!(t.invalidate(&TlbiOp::Asid { asid: 1 }, F), 5);
        assert_eq!(leaves(&t), vec![(2, 5)]);
        assert_eq!(t.invalidate(&TlbiOp::All, F), 1);
        assert!(t.entries().is_empty());
    }

    #[test]
    fn block_and_run_entries_go_by_any_page_and_by_their_level() {
        let block = Entry::Leaf { asid: 1, vpn: 8, pfn: 20, mm: 1, writable: true, level: 2, pages: 4 };
        let run = Entry::Leaf { asid: 1, vpn: 12, pfn: 30, mm: 1, writable: false, level: 3, pages: 2 };
        assert_eq!(block.translate(10), Some((22, true)));
        assert_eq!(block.translate(12), None);
        assert_eq!(run.pages().collect::<Vec<_>>(), vec![(12, 30, false), (13, 31, false)]);
        let mut t = Tlb::default();
        t.insert(block);
        t.insert(run);
        let va = |vpn: u64, ttl| TlbiOp::Va { asid: 1, va: vpn << 12, last_level: true, ttl };
        assert_eq!(t.invalidate(&va(10, Some(3)), F), 0, "a level-3 hint leaves the block");
        assert_eq!(t.invalidate(&va(13, Some(2)), F), 0, "a level-2 hint leaves the run");
        assert_eq!(t.invalidate(&va(10, Some(2)), F), 1, "any page of the block at level 2");
        assert_eq!(t.invalidate(&va(13, None), F), 1, "no hint: any level");
        assert!(t.entries().is_empty());
    }
}
