//! Walks of a tree that stop after every step and resume where they
//! stopped: [`ZapCursor`] (one page-table write a step) and [`LeafCursor`]
//! (one present leaf a step). The kernel runs them to the end in one go;
//! the host model runs one step at a time and lets anything else happen in
//! between (other CPUs, hardware walks). Both are plain values (`Clone`,
//! `Hash`) so a model state can hold one.
//!
//! A cursor keeps the path from the root to where it stands, as the
//! recursive walk's stack would: per level the table, the first address it
//! covers, and the next entry to look at. The tree may change between two
//! steps only as the cursor's own caller changes it (everything runs under
//! the mm lock), so the path stays valid.

use super::{
    desc_pa, is_block, is_swap, load, store, swap_slot, table_is_empty, Format, PageTable, PhysMem, LEAF_LEVEL,
};
use crate::mm::gather::Gather;
use crate::mm::pte::{AP_RO, VALID};

/// Which emptied page-table pages a zap may unlink.
#[derive(Clone, Copy)]
pub enum TableFree<'a> {
    /// None (madvise: the mappings stay, and a fault may fill the range
    /// again at any moment).
    Never,
    /// Those whose whole region holds no mapping: `mapped(start, end)` says
    /// whether any remains in `[start, end)` (as Linux's `free_pgtables`
    /// frees only between the remaining VMAs).
    Unmapped(&'a dyn Fn(u64, u64) -> bool),
    /// Every emptied one (teardown of a whole address space).
    All,
}

impl TableFree<'_> {
    fn allows(&self, start: u64, end: u64) -> bool {
        match self {
            TableFree::Never => false,
            TableFree::All => true,
            TableFree::Unmapped(mapped) => !mapped(start, end),
        }
    }
}

impl core::fmt::Debug for TableFree<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TableFree::Never => "Never",
            TableFree::Unmapped(_) => "Unmapped",
            TableFree::All => "All",
        })
    }
}

/// What one zap step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZapEdit {
    /// Cleared the leaf mapping `va`.
    Leaf { va: u64 },
    /// Unlinked the emptied table below the level-`level` entry covering `va`.
    Table { va: u64, level: u32 },
}

/// One level of a cursor's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Frame {
    table: u64,
    level: u32,
    base: u64,
    /// First entry in range, next entry to look at, and one past the last
    /// in range.
    first: usize,
    idx: usize,
    end: usize,
    /// A zap left a valid entry in range behind (a table below it that
    /// was not unlinked).
    kept: bool,
}

impl Frame {
    /// Moves `idx` past the empty entries in range (tight loops, eight
    /// entries a round first: most entries of a sparse tree are empty). It
    /// stops at swap entries too: invalid, but not empty.
    #[inline(always)]
    fn skip_invalid(&mut self, mem: &impl PhysMem) {
        let (table, end) = (self.table, self.end);
        let mut i = self.idx;
        if i < end && load(mem, table, i) != 0 {
            return; // a dense table: the next entry is in use
        }
        let eight = |i: usize| (i..i + 8).fold(0, |acc, j| acc | load(mem, table, j));
        while i + 8 <= end && eight(i) == 0 {
            i += 8;
        }
        while i < end && load(mem, table, i) == 0 {
            i += 1;
        }
        self.idx = i;
    }
}

/// Indices of the entries of a level-`level` table based at `base` that
/// overlap `[start, end)`.
fn span<F: Format>(f: F, level: u32, base: u64, start: u64, end: u64) -> (usize, usize) {
    let size = f.level_size(level);
    let first = (start.max(base) - base) / size;
    let last = (end - base).div_ceil(size).min(f.entries() as u64);
    (first as usize, last as usize)
}

/// The path of a walk, at most one frame per level.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Path {
    frames: [Option<Frame>; 4],
    depth: usize,
}

impl Path {
    const fn new() -> Self {
        Path { frames: [None; 4], depth: 0 }
    }

    fn top(&mut self) -> Option<&mut Frame> {
        self.depth.checked_sub(1).and_then(|i| self.frames[i].as_mut())
    }

    fn push(&mut self, f: Frame) {
        self.frames[self.depth] = Some(f);
        self.depth += 1;
    }

    fn pop(&mut self) -> Option<Frame> {
        self.depth = self.depth.checked_sub(1)?;
        self.frames[self.depth].take()
    }

    /// Starts a walk of `[start, end)` from `root`; false when there is
    /// nothing to walk (no tables, or an empty range).
    fn begin<F: Format>(&mut self, f: F, root: Option<u64>, start: u64, end: u64) -> bool {
        match root {
            Some(root) if start < end => {
                self.enter(f, root, f.root_level(), 0, start, end);
                true
            }
            _ => false,
        }
    }

    fn enter<F: Format>(&mut self, f: F, table: u64, level: u32, base: u64, start: u64, end: u64) {
        let (idx, end_idx) = span(f, level, base, start, end);
        self.push(Frame { table, level, base, first: idx, idx, end: end_idx, kept: false });
    }
}

/// A zap of `[start, end)` in progress: each [`Self::step`] clears one leaf
/// or unlinks one emptied table (post-order: a table goes once everything
/// below it in range is cleared), records it in the gather, and stops.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZapCursor {
    start: u64,
    end: u64,
    path: Path,
    started: bool,
}

impl ZapCursor {
    pub const fn new(start: u64, end: u64) -> Self {
        ZapCursor { start, end, path: Path::new(), started: false }
    }

    /// Makes the next page-table write of the zap, or `None` when the zap
    /// is done. `free` says which emptied tables may be unlinked.
    pub fn step<F: Format, M: PhysMem>(
        &mut self,
        pt: &mut PageTable<F>,
        mem: &M,
        free: &TableFree,
        g: &mut Gather,
    ) -> Option<ZapEdit> {
        self.step_inner(pt, mem, free, g, false)
    }

    /// As [`Self::step`], but a leaf cleared goes on with the rest of its
    /// table's present leaves in range, as the steps after it would, until
    /// the gather is full ([`Gather::is_full`]); the edit returned is the
    /// last leaf cleared. For callers that run a zap to the end anyway.
    pub fn step_run<F: Format, M: PhysMem>(
        &mut self,
        pt: &mut PageTable<F>,
        mem: &M,
        free: &TableFree,
        g: &mut Gather,
    ) -> Option<ZapEdit> {
        self.step_inner(pt, mem, free, g, true)
    }

    #[inline(always)]
    fn step_inner<F: Format, M: PhysMem>(
        &mut self,
        pt: &mut PageTable<F>,
        mem: &M,
        free: &TableFree,
        g: &mut Gather,
        run: bool,
    ) -> Option<ZapEdit> {
        let f = pt.format();
        if !self.started {
            self.started = true;
            if !self.path.begin(f, pt.root, self.start, self.end) {
                return None;
            }
        }
        loop {
            let top = self.path.top()?;
            top.skip_invalid(mem);
            if top.idx >= top.end {
                // Everything of this table in range is cleared.
                let done = self.path.pop()?;
                let parent = self.path.top()?; // the root: the zap is over
                let size = f.level_size(parent.level);
                let va = parent.base + parent.idx as u64 * size;
                let slot = parent.idx;
                parent.idx += 1;
                // A table whose every entry was in range and none kept is
                // empty without looking.
                let cleared = done.first == 0 && done.end == f.entries() && !done.kept;
                if free.allows(va, va + size) && (cleared || table_is_empty(f, mem, done.table)) {
                    // Unlink first; the page itself goes only after the
                    // gather's flush (walk caches may still point at it).
                    let level = parent.level;
                    store(mem, parent.table, slot, 0);
                    g.clear_table(self.start.max(va), level, done.table);
                    return Some(ZapEdit::Table { va, level });
                }
                parent.kept = true;
                continue;
            }
            let size = f.level_size(top.level);
            let va = top.base + top.idx as u64 * size;
            let e = load(mem, top.table, top.idx);
            if e & VALID == 0 {
                if top.level == LEAF_LEVEL && is_swap(e) {
                    // No walker ever uses a swap entry: nothing to flush.
                    store(mem, top.table, top.idx, 0);
                    mem.swap_free(swap_slot(e));
                }
                top.idx += 1;
                continue;
            }
            if is_block(e) {
                // A block goes whole: a call that cuts one splits it first
                // (`mm::space`), so one only part in range is a bug.
                assert!(
                    va >= self.start && va + size <= self.end,
                    "zap of {:#x}..{:#x} cuts the block at {va:#x}",
                    self.start,
                    self.end
                );
                store(mem, top.table, top.idx, 0);
                top.idx += 1;
                let order = (size / f.level_size(LEAF_LEVEL)).trailing_zeros();
                g.clear_block(va, top.level, size, desc_pa(e), order);
                return Some(ZapEdit::Leaf { va });
            }
            if top.level == LEAF_LEVEL {
                store(mem, top.table, top.idx, 0);
                top.idx += 1;
                g.clear_leaf(va, LEAF_LEVEL, desc_pa(e));
                let mut last = va;
                if run {
                    // The rest of the table's present leaves, while the
                    // gather has room (checked before each entry).
                    let (table, end, base) = (top.table, top.end, top.base);
                    let mut i = top.idx;
                    let va_of = |j: usize| base + j as u64 * size;
                    let run_last = g.clear_leaf_run(LEAF_LEVEL, va_of, || {
                        while i < end {
                            let (j, e) = (i, load(mem, table, i));
                            i += 1;
                            if e & VALID != 0 {
                                store(mem, table, j, 0);
                                return Some((j, desc_pa(e)));
                            }
                            if is_swap(e) {
                                store(mem, table, j, 0);
                                mem.swap_free(swap_slot(e));
                            }
                        }
                        None
                    });
                    if let Some(j) = run_last {
                        last = va_of(j);
                    }
                    top.idx = i;
                }
                return Some(ZapEdit::Leaf { va: last });
            }
            // Descend; this frame's index stays on the entry until the
            // table below is done.
            let level = top.level + 1;
            self.path.enter(f, desc_pa(e), level, va, self.start, self.end);
        }
    }
}

/// The present leaves of `[start, end)` in address order, one a step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeafCursor {
    start: u64,
    end: u64,
    path: Path,
    started: bool,
}

impl LeafCursor {
    pub const fn new(start: u64, end: u64) -> Self {
        LeafCursor { start, end, path: Path::new(), started: false }
    }

    /// The next present leaf: its address and descriptor. A block
    /// ([`super::is_block`]) is one leaf, returned with its first address
    /// even when only part of it is in range.
    #[inline(always)]
    pub fn next<F: Format, M: PhysMem>(&mut self, pt: &PageTable<F>, mem: &M) -> Option<(u64, u64)> {
        let f = pt.format();
        if let Some(leaf) = self.next_in_table(f, mem) {
            return Some(leaf);
        }
        self.next_slow(f, pt, mem, false)
    }

    /// [`Self::next`] if the next present leaf is in the level-3 table the
    /// cursor stands in (the common case: the general loop's first round,
    /// without its bookkeeping); `None` says only that it is not.
    #[inline(always)]
    pub fn next_in_table<F: Format, M: PhysMem>(&mut self, f: F, mem: &M) -> Option<(u64, u64)> {
        self.next_entry_in_table(f, mem, false)
    }

    /// [`Self::next_in_table`], swap entries included when `swapped`.
    #[inline(always)]
    fn next_entry_in_table<F: Format, M: PhysMem>(&mut self, f: F, mem: &M, swapped: bool) -> Option<(u64, u64)> {
        let top = self.path.top().filter(|t| t.level == LEAF_LEVEL)?;
        loop {
            top.skip_invalid(mem);
            if top.idx >= top.end {
                return None;
            }
            let i = top.idx;
            top.idx += 1;
            let e = load(mem, top.table, i);
            if e & VALID != 0 || (swapped && is_swap(e)) {
                return Some((top.base + i as u64 * f.level_size(LEAF_LEVEL), e));
            }
        }
    }

    /// As [`Self::next`], and the swap entries as well (fork copies them).
    pub fn next_or_swap<F: Format, M: PhysMem>(&mut self, pt: &PageTable<F>, mem: &M) -> Option<(u64, u64)> {
        let f = pt.format();
        if let Some(leaf) = self.next_entry_in_table(f, mem, true) {
            return Some(leaf);
        }
        self.next_slow(f, pt, mem, true)
    }

    fn next_slow<F: Format, M: PhysMem>(
        &mut self,
        f: F,
        pt: &PageTable<F>,
        mem: &M,
        swapped: bool,
    ) -> Option<(u64, u64)> {
        if !self.started {
            self.started = true;
            if !self.path.begin(f, pt.root, self.start, self.end) {
                return None;
            }
        }
        loop {
            let top = self.path.top()?;
            top.skip_invalid(mem);
            if top.idx >= top.end {
                self.path.pop();
                if let Some(parent) = self.path.top() {
                    parent.idx += 1;
                }
                continue;
            }
            let va = top.base + top.idx as u64 * f.level_size(top.level);
            let e = load(mem, top.table, top.idx);
            if e & VALID == 0 {
                top.idx += 1;
                if swapped && top.level == LEAF_LEVEL && is_swap(e) {
                    return Some((va, e));
                }
                continue;
            }
            if top.level == LEAF_LEVEL || is_block(e) {
                top.idx += 1;
                return Some((va, e));
            }
            let level = top.level + 1;
            self.path.enter(f, desc_pa(e), level, va, self.start, self.end);
        }
    }

    /// Fork's share of the rest of the level-3 table the cursor stands in
    /// (the leaves [`Self::next_in_table`] would return, one by one): each
    /// present leaf goes read-only into the same slot of `child_table` (the
    /// child's level-3 table for the same region) with one more reference
    /// to its frame, and one that was writable becomes read-only in place,
    /// recorded in `g`; each swap entry is copied with one more reference
    /// to its slot. `pt` is the tree the cursor walks. `Err(va)`: the
    /// child's slot for `va` was taken; the cursor stands past it (as after
    /// `next`) and the leaves before it are done. Nothing if the cursor is
    /// not in a level-3 table.
    #[inline(always)]
    pub fn share_rest<F: Format, M: PhysMem>(
        &mut self,
        pt: &mut PageTable<F>,
        mem: &M,
        child_table: u64,
        g: &mut Gather,
    ) -> Result<(), u64> {
        let size = pt.format().level_size(LEAF_LEVEL);
        let Some(top) = self.path.top().filter(|t| t.level == LEAF_LEVEL) else { return Ok(()) };
        let (table, base, end) = (top.table, top.base, top.end);
        let (mut lo, mut hi, mut n) = (0, 0, 0u64);
        let mut i = top.idx;
        let mut taken = None;
        while i < end {
            let (j, desc) = (i, load(mem, table, i));
            i += 1;
            if desc & VALID == 0 {
                if is_swap(desc) {
                    if load(mem, child_table, j) != 0 {
                        taken = Some(j);
                        break;
                    }
                    // The child gets its own reference to the slot.
                    store(mem, child_table, j, desc);
                    mem.swap_dup(swap_slot(desc));
                }
                continue;
            }
            if load(mem, child_table, j) != 0 {
                taken = Some(j);
                break;
            }
            let ro = desc | AP_RO;
            store(mem, child_table, j, ro);
            mem.get(desc_pa(desc));
            if ro != desc {
                store(mem, table, j, ro);
                if n == 0 {
                    lo = j;
                }
                hi = j;
                n += 1;
            }
        }
        top.idx = i;
        let va_of = |j: usize| base + j as u64 * size;
        g.protect_leaves(va_of(lo), va_of(hi), LEAF_LEVEL, n);
        taken.map_or(Ok(()), |j| Err(va_of(j)))
    }

    /// Writes `desc` over the leaf [`Self::next`] returned last (in the
    /// table the cursor stands in: no walk from the root), returning what
    /// was there. `pt` is the tree the cursor walks, unchanged since.
    pub fn replace_last<F: Format, M: PhysMem>(&mut self, pt: &mut PageTable<F>, mem: &M, desc: u64) -> u64 {
        let _ = pt; // borrowed mutably: the caller may write the tree
        let top = self.path.top().expect("a leaf returned by next");
        assert!(top.level == LEAF_LEVEL && top.idx > 0, "replace_last without a leaf from next");
        let (table, slot) = (top.table, top.idx - 1);
        let old = load(mem, table, slot);
        store(mem, table, slot, desc);
        old
    }
}
