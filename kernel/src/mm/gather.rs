//! The gather (Linux's `mmu_gather`): what a zap cleared, kept until the TLB
//! flush that covers it.
//!
//! munmap, madvise(DONTNEED), mprotect, fork's write-protect and exit change
//! page-table entries of a live address space. Other CPUs may still hold
//! translations for those entries in their TLBs, and walk caches may still
//! hold upper-level entries that point at page-table pages we unlinked. So a
//! change is done in three steps:
//!
//! 1. change the entries, recording in a [`Gather`] the VA range touched,
//!    the levels of the entries cleared, whether page-table pages were
//!    unlinked (`freed_tables`), the data frames whose mappings went away and
//!    the page-table frames removed;
//! 2. flush: one TLB invalidation covering the whole range ([`FlushRange`],
//!    turned into a [`FlushRequest`] with the mm's ASID *at that moment*),
//!    completed (DSB) on every CPU before the callback returns;
//! 3. only then drop the references and free the frames.
//!
//! Freeing before step 2 is a use-after-free: another CPU can still read or
//! write the frame through a stale TLB entry, or walk a freed (and perhaps
//! reused) table page through a stale walk-cache entry and load garbage as
//! descriptors (docs/mechanisms.md sections 3 and 5). [`Gather::finish`] and
//! [`Gather::flush_partial`] enforce the order: they call the flush first,
//! then release.
//!
//! # References, not frees
//!
//! The gather holds the reference each cleared entry had and drops it after
//! the flush. Dropping it at clear time would be wrong for shared
//! (copy-on-write) frames: if our reference were the second-last, the other
//! mm's next write fault would see a reference count of 1 and make the frame
//! writable in place while our stale read-only entries still map it, letting
//! this mm see the other one's writes. Holding the reference makes that
//! fault copy instead. (Linux likewise drops page references only in
//! `tlb_flush_mmu` after the flush.) A frame is freed when the put after the
//! flush was the last one.
//!
//! # Batches
//!
//! A long zap (a large munmap, exit) would otherwise pin every frame it
//! cleared until the end. After [`BATCH`] frames the zap flushes and releases
//! what it has ([`Gather::flush_partial`]) and goes on with an empty range.
//! Totals survive partial flushes ([`Gather::totals`]).
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::pagetable::{PhysMem, LEAF_LEVEL};
use super::pte::{level_size, PAGE_SIZE};
use super::tlb::FlushRequest;

/// Frames (data and page-table) a gather holds before the zap must flush and
/// release them. Linux keeps up to `MAX_GATHER_BATCH_COUNT` batches of
/// `MAX_GATHER_BATCH` (~510) pages, about 10,000 pages, before it forces a
/// flush: the limit bounds the memory kept unusable until the flush (which
/// matters under memory pressure, when a large exit must give frames back
/// early), the heap the list needs (80 KB here) and the time spent without
/// rescheduling. It is not a speed optimum: a smaller batch splits ordinary
/// munmaps into several flushes (at 512, a 512-page munmap took two), a
/// larger one holds frames longer. `scripts/bench.sh` measures the effect.
pub const BATCH: usize = 10_000;

/// The flush sink for an address space that was never loaded in any TTBR0
/// (the program loader filling a new one, a fork child being undone): no
/// TLB can hold its entries, so nothing needs invalidating. Anywhere else
/// it is a use-after-free waiting to happen.
pub fn no_flush(_: Option<FlushRange>) {}

/// The ASID-free part of a flush: what was cleared. The kernel names the ASID
/// when it flushes ([`FlushRange::request`]), because an mm's ASID may change
/// (rollover) between the zap and the flush; only the value read at flush
/// time, under the ASID allocator's rules, is right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlushRange {
    /// First VA, page-aligned.
    pub start: u64,
    /// First VA after the range; `start < end`.
    pub end: u64,
    /// Size of the entries cleared: a block's when every leaf cleared was
    /// a block (one op per block), else 4 KiB (a 4 KiB stride also covers
    /// the blocks among them, an op hitting any address of one).
    pub stride: u64,
    /// Page-table pages were unlinked: walk caches must go too.
    pub tables_freed: bool,
    /// Level of every leaf cleared, for the TTL hint; `None` when mixed,
    /// when no leaf was cleared, or when tables were freed.
    pub leaf_level: Option<u8>,
}

impl FlushRange {
    pub const fn request(self, asid: u16) -> FlushRequest {
        let Self { start, end, stride, tables_freed, leaf_level } = self;
        FlushRequest { asid, start, end, stride, tables_freed, leaf_level }
    }
}

/// Counts over a gather's whole life, partial flushes included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GatherTotals {
    /// Leaf entries cleared.
    pub cleared: u64,
    /// Leaf entries whose permissions were reduced (need a flush).
    pub protected: u64,
    /// Leaf entries whose permissions were widened (need none: a stale,
    /// stricter entry only causes a spurious fault).
    pub upgraded: u64,
    /// Page-table pages unlinked (the root included at teardown).
    pub tables: u64,
    /// Flush callbacks made (partial ones and the final one).
    pub flushes: u64,
}

/// What a zap cleared and must flush before it frees (see the module
/// documentation). Finish every gather: dropping one leaks the frames it
/// holds (never a use-after-free).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[must_use = "a gather must be finished: it holds frames until its flush"]
pub struct Gather {
    /// Frames and tables held before [`Self::is_full`] (0: [`BATCH`]).
    batch: usize,
    /// `[start, end)` touched since the last flush; `start == end`: none.
    start: u64,
    end: u64,
    /// Bit L: an entry at level L (leaf or table) was cleared.
    cleared_levels: u8,
    /// Bit L: a leaf at level L was cleared or write-/exec-protected.
    leaf_levels: u8,
    freed_tables: bool,
    /// Data frames whose references the cleared entries held.
    frames: Vec<u64>,
    /// Blocks cleared: first frame and order (`2^order` frames, each
    /// holding one reference for the block's entry).
    blocks: Vec<(u64, u32)>,
    /// Size of the blocks cleared or protected (the format's).
    block_size: u64,
    /// Page-table frames unlinked.
    tables: Vec<u64>,
    totals: GatherTotals,
}

impl Gather {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gather that fills at `batch` frames and tables instead of
    /// [`BATCH`] (the host model uses a few, to reach partial flushes).
    pub fn with_batch(batch: usize) -> Self {
        Self { batch, ..Self::default() }
    }

    #[inline(always)]
    fn extend(&mut self, lo: u64, hi: u64) {
        if self.start == self.end {
            (self.start, self.end) = (lo, hi);
        } else {
            self.start = self.start.min(lo);
            self.end = self.end.max(hi);
        }
    }

    /// The leaf at `level` mapping `va` (aligned) to frame `pa` was cleared;
    /// the gather takes over the entry's reference to `pa`.
    #[inline(always)]
    pub fn clear_leaf(&mut self, va: u64, level: u32, pa: u64) {
        self.extend(va, va + level_size(level));
        self.cleared_levels |= 1 << level;
        self.leaf_levels |= 1 << level;
        self.frames.push(pa);
        self.totals.cleared += 1;
    }

    /// The block at `level` (`size` bytes) mapping `va` (aligned) to the
    /// `2^order` frames from `pa` was cleared; the gather takes over the
    /// reference the entry held to each of them.
    pub fn clear_block(&mut self, va: u64, level: u32, size: u64, pa: u64, order: u32) {
        self.extend(va, va + size);
        self.cleared_levels |= 1 << level;
        self.leaf_levels |= 1 << level;
        self.block_size = size;
        self.blocks.push((pa, order));
        self.totals.cleared += 1;
    }

    /// The block at `level` (`size` bytes) mapping `va` lost a permission,
    /// or was cleared by a split, which frees nothing: flush it.
    pub fn protect_block(&mut self, va: u64, level: u32, size: u64) {
        self.extend(va, va + size);
        self.leaf_levels |= 1 << level;
        self.block_size = size;
        self.totals.protected += 1;
    }

    /// [`Self::clear_leaf`] for each `(key, pa)` that `next` yields (keys
    /// ascending, each leaf cleared by `next`; `va_of(key)` its address),
    /// while the gather is not full ([`Self::is_full`] is checked before
    /// each call, as a loop of `clear_leaf` calls would). Returns the last
    /// key, if any.
    #[inline(always)]
    pub fn clear_leaf_run(
        &mut self,
        level: u32,
        va_of: impl Fn(usize) -> u64,
        mut next: impl FnMut() -> Option<(usize, u64)>,
    ) -> Option<usize> {
        let batch = if self.batch == 0 { BATCH } else { self.batch };
        let room = batch.saturating_sub(self.frames.len() + self.blocks.len() + self.tables.len());
        let (mut first, mut last, mut n) = (0, 0, 0);
        while n < room {
            let Some((key, pa)) = next() else { break };
            self.frames.push(pa);
            if n == 0 {
                first = key;
            }
            last = key;
            n += 1;
        }
        if n == 0 {
            return None;
        }
        self.extend(va_of(first), va_of(last) + level_size(level));
        self.cleared_levels |= 1 << level;
        self.leaf_levels |= 1 << level;
        self.totals.cleared += n as u64;
        Some(last)
    }

    /// The table entry at `level` that pointed to page-table page `table` was
    /// cleared; `va` is an address under it inside the zapped range (the
    /// flush must name one so that walk-cache entries for it go). The gather
    /// takes over the table's one reference.
    pub fn clear_table(&mut self, va: u64, level: u32, table: u64) {
        let va = va & !(PAGE_SIZE - 1);
        self.extend(va, va + PAGE_SIZE);
        self.cleared_levels |= 1 << level;
        self.freed_tables = true;
        self.tables.push(table);
        self.totals.tables += 1;
    }

    /// The root table goes (teardown). Nothing points to it but TTBR0: the
    /// caller must have switched every CPU away from it (docs/mechanisms.md §4)
    /// before the gather finishes.
    pub fn free_root(&mut self, root: u64) {
        self.freed_tables = true;
        self.tables.push(root);
        self.totals.tables += 1;
    }

    /// The leaf at `level` mapping `va` lost a permission (write or exec or
    /// all EL0 access): stale entries would still grant it, so flush.
    #[inline]
    pub fn protect_leaf(&mut self, va: u64, level: u32) {
        self.extend(va, va + level_size(level));
        self.leaf_levels |= 1 << level;
        self.totals.protected += 1;
    }

    /// [`Self::protect_leaf`] for `n` leaves at `level`, the lowest mapping
    /// `lo` and the highest `hi` (the same range and counts as the calls one
    /// by one). Nothing when `n` is 0.
    #[inline(always)]
    pub fn protect_leaves(&mut self, lo: u64, hi: u64, level: u32, n: u64) {
        if n == 0 {
            return;
        }
        self.extend(lo, hi + level_size(level));
        self.leaf_levels |= 1 << level;
        self.totals.protected += n;
    }

    /// A leaf gained permissions only: no flush needed (a stale stricter
    /// entry faults, and the fault handler finds the entry already right).
    pub fn upgrade_leaf(&mut self) {
        self.totals.upgraded += 1;
    }

    /// The range touched since the last flush, if any.
    pub fn range(&self) -> Option<(u64, u64)> {
        (self.start < self.end).then_some((self.start, self.end))
    }

    /// Bitmask of levels at which entries were cleared since the last flush.
    pub fn cleared_levels(&self) -> u8 {
        self.cleared_levels
    }

    /// Lowest level (nearest the root) of an entry cleared since the last
    /// flush. Level 2 means a level-2 table entry went: a level-3 table was
    /// freed.
    pub fn lowest_level(&self) -> Option<u32> {
        (self.cleared_levels != 0).then(|| self.cleared_levels.trailing_zeros())
    }

    /// Highest level (nearest the leaves) of an entry cleared since the last
    /// flush.
    pub fn highest_level(&self) -> Option<u32> {
        (self.cleared_levels != 0).then(|| 7 - self.cleared_levels.leading_zeros())
    }

    pub fn freed_tables(&self) -> bool {
        self.freed_tables
    }

    /// Data frames held until the flush.
    pub fn frames(&self) -> &[u64] {
        &self.frames
    }

    /// Blocks held until the flush: first frame and order.
    pub fn blocks(&self) -> &[(u64, u32)] {
        &self.blocks
    }

    /// Page-table frames held until the flush.
    pub fn tables(&self) -> &[u64] {
        &self.tables
    }

    pub fn totals(&self) -> GatherTotals {
        self.totals
    }

    /// The zap must flush and release before it clears more.
    pub fn is_full(&self) -> bool {
        let batch = if self.batch == 0 { BATCH } else { self.batch };
        self.frames.len() + self.blocks.len() + self.tables.len() >= batch
    }

    /// What to flush, or `None` when nothing that needs a flush happened
    /// since the last one.
    pub fn flush_range(&self) -> Option<FlushRange> {
        let (start, end) = self.range()?;
        let single = self.leaf_levels.is_power_of_two();
        let leaf_level = (single && !self.freed_tables).then(|| self.leaf_levels.trailing_zeros() as u8);
        // Only blocks: one op per block. Blocks are aligned to their size,
        // so the range is too.
        let blocks = leaf_level.is_some_and(|l| u32::from(l) < LEAF_LEVEL) && self.block_size != 0;
        let stride = if blocks { self.block_size } else { PAGE_SIZE };
        Some(FlushRange { start, end, stride, tables_freed: self.freed_tables, leaf_level })
    }

    pub fn flush_request(&self, asid: u16) -> Option<FlushRequest> {
        self.flush_range().map(|r| r.request(asid))
    }

    /// Flushes what was gathered so far (the callback must return only when
    /// the invalidation is complete on every CPU), then drops the references
    /// held and frees frames whose last reference that was. The range starts
    /// empty again.
    pub fn flush_partial(&mut self, mem: &impl PhysMem, flush: impl FnOnce(Option<FlushRange>)) {
        flush(self.flush_range());
        self.release(mem);
    }

    /// After the flush of [`Self::flush_range`] completed on every CPU:
    /// drops the references held, frees frames whose last reference that
    /// was, and starts an empty range. (The TLB protocol calls this as its
    /// own step; [`Self::flush_partial`] is flush and release in one.)
    pub fn release(&mut self, mem: &impl PhysMem) {
        self.totals.flushes += 1;
        mem.put_each(&self.frames, |pa| mem.free(pa));
        self.frames.clear();
        for (pa, order) in self.blocks.drain(..) {
            release_block(mem, pa, order);
        }
        for pa in self.tables.drain(..) {
            if mem.put(pa) {
                mem.free_table(pa);
            }
        }
        (self.start, self.end) = (0, 0);
        self.cleared_levels = 0;
        self.leaf_levels = 0;
        self.block_size = 0;
        self.freed_tables = false;
    }

    /// The last flush: calls `flush` first (always, `None` when nothing needs
    /// flushing, so that a strategy can still act), then releases.
    pub fn finish(mut self, mem: &impl PhysMem, flush: impl FnOnce(Option<FlushRange>)) -> GatherTotals {
        self.flush_partial(mem, flush);
        self.totals
    }
}

/// Drops a block entry's reference to each of its `2^order` frames from
/// `pa`: the whole run goes back at once when every put was the last (the
/// block was not shared), else each frame whose last reference it was.
fn release_block(mem: &impl PhysMem, pa: u64, order: u32) {
    debug_assert!(order <= 9, "a block of order {order}");
    let n = 1u64 << order;
    // Which puts were the last: only those frames are this call's to free
    // (a frame another mm put to 0 meanwhile is that mm's to free).
    let mut last = [0u64; 8];
    let mut count = 0;
    for i in 0..n {
        if mem.put(pa + i * PAGE_SIZE) {
            last[(i / 64) as usize] |= 1 << (i % 64);
            count += 1;
        }
    }
    if count == n {
        mem.free_contig(pa, order);
    } else if count != 0 {
        for i in (0..n).filter(|i| last[(i / 64) as usize] & (1 << (i % 64)) != 0) {
            mem.free(pa + i * PAGE_SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::aspace::test_mem::TestMem;
    use core::cell::Cell;

    #[test]
    fn records_range_levels_and_frames() {
        let mem = TestMem::new();
        let (a, b, t) = (mem.alloc_zeroed().unwrap(), mem.alloc_zeroed().unwrap(), mem.alloc_zeroed().unwrap());
        let mut g = Gather::new();
        assert_eq!(g.flush_range(), None, "empty gather: expected no flush");
        g.clear_leaf(0x20_3000, 3, a);
        g.clear_leaf(0x20_1000, 3, b);
        let leaf_only = FlushRange {
            start: 0x20_1000,
            end: 0x20_4000,
            stride: PAGE_SIZE,
            tables_freed: false,
            leaf_level: Some(3),
        };
        assert_eq!(g.flush_range(), Some(leaf_only), "two leaves");
        g.clear_table(0x20_1234, 2, t);
        let want = FlushRange { tables_freed: true, leaf_level: None, ..leaf_only };
        assert_eq!(g.flush_range(), Some(want), "a table freed: walk caches too, no TTL");
        assert_eq!((g.lowest_level(), g.highest_level()), (Some(2), Some(3)));
        assert_eq!((g.frames(), g.tables()), (&[a, b][..], &[t][..]));
        let req = g.flush_request(7).unwrap();
        assert_eq!((req.asid, req.start, req.end, req.tables_freed), (7, 0x20_1000, 0x20_4000, true));
        req.validate().expect("gathered requests are well formed");
        g.finish(&mem, |_| {});
        assert_eq!(mem.outstanding(), 0, "all three frames freed after the flush");
    }

    /// The point of the gather: nothing is freed before the flush returns.
    #[test]
    fn never_frees_before_the_flush() {
        let mem = TestMem::new();
        let pas: Vec<u64> = (0..5).map(|_| mem.alloc_zeroed().unwrap()).collect();
        mem.get(pas[0]); // shared: survives the gather with one reference
        let mut g = Gather::new();
        for (i, &pa) in pas.iter().enumerate() {
            g.clear_leaf(i as u64 * PAGE_SIZE, 3, pa);
        }
        let called = Cell::new(false);
        g.finish(&mem, |r| {
            for &pa in &pas {
                assert!(mem.is_live(pa), "frame {pa:#x} freed before the flush ran");
                assert!(mem.refs(pa) >= 1, "reference of {pa:#x} dropped before the flush");
            }
            assert_eq!(r.map(|r| (r.start, r.end)), Some((0, 5 * PAGE_SIZE)));
            called.set(true);
        });
        assert!(called.get(), "finish must call the flush");
        assert_eq!(mem.outstanding(), 1, "expected only the shared frame left");
        assert_eq!(mem.refs(pas[0]), 1, "shared frame: expected refs 1 after the put");
    }

    #[test]
    fn protect_and_upgrade() {
        let mem = TestMem::new();
        let mut g = Gather::new();
        g.upgrade_leaf();
        assert_eq!(g.flush_range(), None, "an upgrade alone needs no flush");
        g.protect_leaf(0x5000, 3);
        let r = g.flush_range().expect("a downgrade needs a flush");
        assert_eq!((r.start, r.end, r.leaf_level, r.tables_freed), (0x5000, 0x6000, Some(3), false));
        assert_eq!(g.lowest_level(), None, "protecting clears nothing");
        let t = g.finish(&mem, |_| {});
        assert_eq!((t.protected, t.upgraded, t.flushes), (1, 1, 1));
    }

    #[test]
    fn batches_flush_and_restart() {
        let mem = TestMem::new();
        let mut g = Gather::new();
        let mut flushed = Vec::new();
        for i in 0..(BATCH as u64 * 2 + 3) {
            g.clear_leaf(i * PAGE_SIZE, 3, mem.alloc_zeroed().unwrap());
            if g.is_full() {
                let before = mem.outstanding();
                g.flush_partial(&mem, |r| flushed.push(r.unwrap()));
                assert_eq!(mem.outstanding(), before - BATCH, "a partial flush frees its batch");
                assert_eq!(g.range(), None, "after a partial flush the range restarts");
            }
        }
        let t = g.finish(&mem, |r| flushed.push(r.unwrap()));
        let ranges: Vec<_> = flushed.iter().map(|r| (r.start / PAGE_SIZE, r.end / PAGE_SIZE)).collect();
        let b = BATCH as u64;
        assert_eq!(ranges, vec![(0, b), (b, 2 * b), (2 * b, 2 * b + 3)], "batched flush ranges");
        assert_eq!((t.cleared, t.flushes), (2 * b + 3, 3));
        assert_eq!(mem.outstanding(), 0);
    }
}
