//! User page tables: the TTBR0 half, descriptors from [`super::pte`]. A
//! leaf is a level-3 page (4 KiB), possibly one of a contiguous run
//! ([`Format::cont_entries`] pages with the contiguous bit: 64 KiB), or a
//! level-2 block ([`BLOCK_LEVEL`]: 2 MiB). Generic over
//! the geometry ([`Format`]): the kernel uses the architecture's four levels
//! of 512 entries ([`Arm4k`]), the host model the same code on reduced
//! formats.
//!
//! The tree lives in frames of a [`PhysMem`], the boundary to physical
//! memory: the kernel's hands out buddy-allocator frames reached through
//! the linear map (`mm::phys`), the host tests' boxed pages in a map
//! (`aspace::test_mem::TestMem`), which also counts what is outstanding so
//! tests can prove nothing leaks, and the model's small frames.
//!
//! # Clearing is not freeing
//!
//! A zap ([`ZapCursor`]) clears leaves and unlinks table pages that became
//! empty, but frees nothing itself: it hands every cleared frame and every
//! unlinked table to the [`Gather`], which frees them only after the TLB
//! flush. A table page must outlive that flush *including walk caches*: a
//! CPU may have cached the upper-level entry that pointed at it, and keeps
//! walking through it after we cleared that entry, reading whatever the page
//! holds. Freed and reused, the page's new contents become descriptors: any
//! translation, even a global one that matches every ASID. So unlinking marks
//! the gather `freed_tables`, which makes the flush use the non-leaf TLBI
//! forms (docs/mechanisms.md §3, §5).
//!
//! The caller also says which tables a zap may unlink at all ([`TableFree`]):
//! only where no mapping remains (as Linux's `free_pgtables`), and its flush
//! must then be complete before anything can install a new table in the
//! slot (break-before-make for table descriptors; `mm::space` finishes such
//! a gather under the mm lock).
//!
//! # Concurrent readers
//!
//! Under the mm lock this code is the only writer, but hardware walkers on
//! every CPU (and the secondary-MMU model) read descriptors at any time. So
//! descriptors are accessed as aligned 64-bit atomics (single-copy atomic:
//! no torn entry is ever visible), and a new table is linked with a release
//! store so its zeroed contents are visible before the entry that reaches it
//! (Linux's `smp_wmb()` in `pmd_install`). A walker that misses a new entry
//! faults again and the fault handler finds the entry present ("spurious").

mod cursor;
mod desc;
mod format;
mod phys;
#[cfg(test)]
mod tests;

pub use cursor::{LeafCursor, TableFree, ZapCursor, ZapEdit};
pub use desc::{
    block_desc, desc_pa, el0_can_exec, el0_can_read, el0_can_write, is_block, is_cont, is_swap, is_table, leaf_attrs,
    page_desc, page_in_block, swap_desc, swap_slot, table_desc,
};
pub use format::{Arm4k, Format, Reduced, BLOCK_LEVEL, LEAF_LEVEL};
pub use phys::PhysMem;

use super::gather::{FlushRange, Gather};
use super::pte::{PAGE_SIZE, VALID};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate table (or no root: an empty placeholder).
    OutOfMemory,
    /// A leaf is already present at this address.
    AlreadyMapped { va: u64 },
    /// No leaf is present at this address.
    NotMapped { va: u64 },
    /// The format has no blocks, or the address is not aligned to one.
    NoBlock { va: u64 },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => write!(f, "out of frames for a page table"),
            Self::AlreadyMapped { va } => write!(f, "{va:#x} is already mapped"),
            Self::NotMapped { va } => write!(f, "{va:#x} is not mapped"),
            Self::NoBlock { va } => write!(f, "no block can map {va:#x}"),
        }
    }
}

/// Where [`PageTable::map_hinted`] mapped last: the tree's root, the
/// region one level-3 table covers, and that table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapHint(Option<(u64, u64, u64)>);

impl MapHint {
    /// The level-3 table mapped into last, if any.
    pub fn table(&self) -> Option<u64> {
        self.0.map(|(_, _, t)| t)
    }
}

/// Reads entry `idx` of table `table`.
///
/// `table` is always a table frame of a live tree: every caller got it from
/// the root or from a valid table descriptor, and tables are freed only
/// through a gather after they were unlinked.
fn load(mem: &impl PhysMem, table: u64, idx: usize) -> u64 {
    // SAFETY: `table` is a live table page of `mem` (see above) and every
    // caller derives `idx` from the format's index, below its entries.
    unsafe { mem.load_desc(table, idx) }
}

/// Writes entry `idx` of table `table` (release: see the module docs).
fn store(mem: &impl PhysMem, table: u64, idx: usize, desc: u64) {
    // SAFETY: as in `load`.
    unsafe { mem.store_desc(table, idx, desc) }
}

/// Whether every entry of `table` is invalid (eight entries a round).
fn table_is_empty<F: Format>(fmt: F, mem: &impl PhysMem, table: u64) -> bool {
    let n = fmt.entries();
    let whole = n - n % 8;
    for i in (0..whole).step_by(8) {
        let any = (i..i + 8).fold(0, |acc, j| acc | load(mem, table, j));
        // A swap entry is not valid but holds a page all the same.
        if any != 0 {
            return false;
        }
    }
    (whole..n).all(|i| load(mem, table, i) == 0)
}

/// One address space's user page-table tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageTable<F: Format = Arm4k> {
    /// Root table; `None` only for [`PageTable::empty`].
    root: Option<u64>,
    fmt: F,
}

impl PageTable<Arm4k> {
    /// A new tree in the architecture's format.
    pub fn new(mem: &impl PhysMem) -> Option<Self> {
        Self::new_in(Arm4k, mem)
    }

    /// A placeholder without tables: lookups find nothing, maps fail.
    pub const fn empty() -> Self {
        Self { root: None, fmt: Arm4k }
    }
}

impl<F: Format> PageTable<F> {
    /// A new tree of format `fmt`: an empty root table. `None` when out of
    /// frames.
    pub fn new_in(fmt: F, mem: &impl PhysMem) -> Option<Self> {
        Some(Self { root: Some(mem.alloc_table(fmt.root_level())?), fmt })
    }

    /// A placeholder of format `fmt`.
    pub const fn empty_in(fmt: F) -> Self {
        Self { root: None, fmt }
    }

    pub fn format(&self) -> F {
        self.fmt
    }

    /// Physical address of the root table (for TTBR0), 0 for a placeholder.
    pub fn root(&self) -> u64 {
        self.root.unwrap_or(0)
    }

    /// Maps `va` (page-aligned) with descriptor `desc` ([`page_desc`]),
    /// allocating intermediate tables.
    pub fn map(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Result<(), MapError> {
        let table = self.leaf_table_alloc(mem, va)?;
        self.map_in(mem, table, va, desc)
    }

    /// [`Self::map`] for a run of addresses in order (fork's copy): `hint`
    /// keeps the level-3 table of the last address, so that the next one
    /// in the same table needs no walk from the root. Start with
    /// `MapHint::default()`; a hint is only used with the tree that filled
    /// it, and tables are never unlinked from a tree being mapped into.
    pub fn map_hinted(&mut self, mem: &impl PhysMem, va: u64, desc: u64, hint: &mut MapHint) -> Result<(), MapError> {
        let root = self.root.ok_or(MapError::OutOfMemory)?;
        let region = va / self.fmt.level_size(LEAF_LEVEL - 1);
        let table = match hint.0 {
            Some((r, g, t)) if (r, g) == (root, region) => t,
            _ => {
                let t = self.leaf_table_alloc(mem, va)?;
                hint.0 = Some((root, region, t));
                t
            }
        };
        self.map_in(mem, table, va, desc)
    }

    /// The level-3 table for `va`, allocating the tables on the way.
    fn leaf_table_alloc(&mut self, mem: &impl PhysMem, va: u64) -> Result<u64, MapError> {
        self.table_alloc(mem, va, LEAF_LEVEL)
    }

    /// The table at `level` that holds `va`'s entry, allocating the tables
    /// on the way; `AlreadyMapped` if a block covers `va` above it.
    fn table_alloc(&mut self, mem: &impl PhysMem, va: u64, level: u32) -> Result<u64, MapError> {
        let f = self.fmt;
        let mut table = self.root.ok_or(MapError::OutOfMemory)?;
        for l in f.root_level()..level {
            let idx = f.index(va, l);
            let e = load(mem, table, idx);
            table = if is_table(e) {
                desc_pa(e)
            } else if e & VALID != 0 {
                return Err(MapError::AlreadyMapped { va });
            } else {
                let new = mem.alloc_table(l + 1).ok_or(MapError::OutOfMemory)?;
                store(mem, table, idx, table_desc(new));
                new
            };
        }
        Ok(table)
    }

    /// Maps the block at `va` (aligned to [`Format::block_size`]) with
    /// block descriptor `desc` ([`block_desc`]), allocating the tables
    /// above it; the level-2 slot must be empty (no table, no block).
    pub fn map_block(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Result<(), MapError> {
        match self.fmt.block_size() {
            Some(size) if va.is_multiple_of(size) => {}
            _ => return Err(MapError::NoBlock { va }),
        }
        let table = self.table_alloc(mem, va, BLOCK_LEVEL)?;
        let idx = self.fmt.index(va, BLOCK_LEVEL);
        if load(mem, table, idx) != 0 {
            return Err(MapError::AlreadyMapped { va });
        }
        store(mem, table, idx, desc);
        Ok(())
    }

    /// The level-2 entry whose region holds `va` (a table, a block or 0),
    /// with the table it is in; `None` if the walk does not get there.
    fn block_slot(&self, mem: &impl PhysMem, va: u64) -> Option<(u64, usize, u64)> {
        let f = self.fmt;
        f.block_size()?;
        let mut table = self.root?;
        for l in f.root_level()..BLOCK_LEVEL {
            let e = load(mem, table, f.index(va, l));
            if !is_table(e) {
                return None;
            }
            table = desc_pa(e);
        }
        let idx = f.index(va, BLOCK_LEVEL);
        Some((table, idx, load(mem, table, idx)))
    }

    /// The block mapping `va`, if one does: its first address and
    /// descriptor.
    pub fn block(&self, mem: &impl PhysMem, va: u64) -> Option<(u64, u64)> {
        let size = self.fmt.block_size()?;
        let (_, _, e) = self.block_slot(mem, va)?;
        is_block(e).then_some((va & !(size - 1), e))
    }

    /// Whether nothing at all is in `va`'s level-2 slot (no table, no
    /// block, no swap entry below): a block may be mapped there.
    pub fn block_slot_empty(&self, mem: &impl PhysMem, va: u64) -> bool {
        match self.block_slot(mem, va) {
            Some((_, _, e)) => e == 0,
            // No table on the way: empty, as long as the format has blocks.
            None => self.fmt.block_size().is_some() && self.root.is_some(),
        }
    }

    /// Writes `desc` over the block entry at `va` (a block or 0) and
    /// returns what was there. Changing only permissions needs no
    /// break-before-make; anything else does (write 0, flush, then the
    /// new entry). `None`, changing nothing, if no level-2 table exists.
    pub fn replace_block(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Option<u64> {
        let (table, idx, old) = self.block_slot(mem, va)?;
        debug_assert!(!is_table(old), "replace_block over a table at {va:#x}");
        store(mem, table, idx, desc);
        Some(old)
    }

    /// A new level-3 table, not linked, mapping the same pages as block
    /// descriptor `block` with its attributes, page by page (a split's
    /// replacement). `OutOfMemory` if no frame is free.
    pub fn split_table(&self, mem: &impl PhysMem, block: u64) -> Result<u64, MapError> {
        let table = mem.alloc_table(LEAF_LEVEL).ok_or(MapError::OutOfMemory)?;
        let page = self.fmt.level_size(LEAF_LEVEL);
        for i in 0..self.fmt.entries() {
            store(mem, table, i, page_in_block(block, i as u64 * page));
        }
        Ok(table)
    }

    /// Links level-3 table `table` in the (empty) level-2 slot of `va`,
    /// the second half of a split. The slot must have been cleared and
    /// flushed first (break-before-make), or the CPU must permit the change
    /// of size without it (FEAT_BBM level 2).
    pub fn link_table(&mut self, mem: &impl PhysMem, va: u64, table: u64) {
        let (t, idx, _) = self.block_slot(mem, va).expect("the level-2 table of a block");
        store(mem, t, idx, table_desc(table));
    }

    /// The level-3 table below `va`'s level-2 entry, if it is a table.
    pub fn level3_table(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        let (_, _, e) = self.block_slot(mem, va)?;
        is_table(e).then(|| desc_pa(e))
    }

    /// The level-2 table entry at `va` is a table: unlinks it and returns
    /// it (a collapse's first half). `None` if it is not a table.
    pub fn unlink_table(&mut self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        let (t, idx, e) = self.block_slot(mem, va)?;
        if !is_table(e) {
            return None;
        }
        store(mem, t, idx, 0);
        Some(desc_pa(e))
    }

    /// Whether level-3 table `table` holds a swap entry.
    pub fn has_swap(&self, mem: &impl PhysMem, table: u64) -> bool {
        (0..self.fmt.entries()).any(|i| is_swap(load(mem, table, i)))
    }

    /// A collapse's second half: copies each page level-3 table `table`
    /// (unlinked, and flushed with its walk-cache entries) maps into the
    /// matching frame of the run at `new`, drops the table's reference to
    /// each (freeing those whose last it was) and frees the table. The
    /// table holds no swap entry ([`Self::has_swap`]).
    pub fn drain_detached(&self, mem: &impl PhysMem, table: u64, new: u64) {
        for i in 0..self.fmt.entries() {
            let e = load(mem, table, i);
            if e & VALID == 0 {
                continue;
            }
            let pa = desc_pa(e);
            // SAFETY: `pa` is held by the table's entry (its reference is
            // put only below); `new`'s frames are the caller's, not mapped.
            unsafe { mem.copy_page(new + i as u64 * PAGE_SIZE, pa) };
            if mem.put(pa) {
                mem.free(pa);
            }
        }
        if mem.put(table) {
            mem.free_table(table);
        }
    }

    /// Writes `desc` into every entry of the contiguous run that holds
    /// `va` (the run's first entry gets `desc`, each next one the next
    /// page's address with the same attributes; 0 clears them all).
    /// `None`, changing nothing, if the level-3 table does not exist.
    pub fn set_run(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Option<()> {
        let f = self.fmt;
        let table = self.leaf_table(mem, va)?;
        let n = f.cont_entries();
        let first = f.index(va, LEAF_LEVEL) & !(n - 1);
        let page = f.level_size(LEAF_LEVEL);
        for i in 0..n {
            let d = if desc == 0 { 0 } else { desc + i as u64 * page };
            store(mem, table, first + i, d);
        }
        Some(())
    }

    /// The entries of the contiguous run that holds `va`, first to last
    /// (the first [`Format::cont_entries`] of the array).
    pub fn run_entries(&self, mem: &impl PhysMem, va: u64) -> Option<[u64; 16]> {
        let f = self.fmt;
        let table = self.leaf_table(mem, va)?;
        let n = f.cont_entries();
        let first = f.index(va, LEAF_LEVEL) & !(n - 1);
        let mut out = [0; 16];
        for (i, o) in out.iter_mut().enumerate().take(n) {
            *o = load(mem, table, first + i);
        }
        Some(out)
    }

    /// Writes leaf `desc` for `va` into its level-3 table `table`.
    fn map_in(&mut self, mem: &impl PhysMem, table: u64, va: u64, desc: u64) -> Result<(), MapError> {
        let idx = self.fmt.index(va, LEAF_LEVEL);
        if load(mem, table, idx) != 0 {
            return Err(MapError::AlreadyMapped { va });
        }
        store(mem, table, idx, desc);
        Ok(())
    }

    /// The level-3 table that holds `va`'s leaf, if the walk gets there.
    fn leaf_table(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        leaf_table(self.fmt, mem, self.root?, va)
    }

    /// The level-3 entry for `va` whatever it holds (a swap entry, or 0),
    /// if its table exists.
    pub fn leaf_entry(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        let table = self.leaf_table(mem, va)?;
        Some(load(mem, table, self.fmt.index(va, LEAF_LEVEL)))
    }

    /// The valid leaf descriptor mapping `va`, if any; in a block, the
    /// page descriptor of `va`'s page that the block implies
    /// ([`page_in_block`]).
    pub fn lookup(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        leaf_walk(self.fmt, mem, self.root?, va)
    }

    /// Writes `desc` (0 clears) into the leaf slot of `va` and returns what
    /// was there (possibly an invalid 0); `None`, changing nothing, if the
    /// level-3 table for `va` does not exist (a block maps `va`, say).
    /// Changing only permissions needs
    /// no break-before-make; changing the output address of a valid entry
    /// does: write 0, flush, then the new entry.
    pub fn replace_leaf(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Option<u64> {
        let table = self.leaf_table(mem, va)?;
        let idx = self.fmt.index(va, LEAF_LEVEL);
        let old = load(mem, table, idx);
        store(mem, table, idx, desc);
        Some(old)
    }

    /// The frame mapped at `va`, for an access of `len` bytes at its offset
    /// that must not cross the page's end; `None` if no page is present.
    fn frame_for(&self, mem: &impl PhysMem, va: u64, len: usize) -> Option<(u64, usize)> {
        let off = (va % PAGE_SIZE) as usize;
        assert!(off + len <= PAGE_SIZE as usize, "access at {va:#x} of {len} bytes crosses a page");
        Some((desc_pa(self.lookup(mem, va)?), off))
    }

    /// Copies `buf.len()` bytes from the page mapped at `va` (they must not
    /// cross its end) into `buf`, regardless of permissions. False if no
    /// page is present.
    pub fn read(&self, mem: &impl PhysMem, va: u64, buf: &mut [u8]) -> bool {
        let Some((pa, off)) = self.frame_for(mem, va, buf.len()) else { return false };
        // SAFETY: `pa` is held by a present leaf of this tree, which cannot
        // change while `self` is borrowed; `off + len` is within the page.
        unsafe { mem.read_data(pa, off, buf) };
        true
    }

    /// Writes `data` into the page mapped at `va` (not crossing its end),
    /// regardless of permissions and of sharing: the caller makes sure the
    /// frame is private when it must be. False if no page is present.
    pub fn write(&mut self, mem: &impl PhysMem, va: u64, data: &[u8]) -> bool {
        let Some((pa, off)) = self.frame_for(mem, va, data.len()) else { return false };
        // SAFETY: as in `read`.
        unsafe { mem.write_data(pa, off, data) };
        true
    }

    /// A new frame (reference count 1) holding a copy of the page mapped at
    /// `va`; the caller maps it (or puts and frees it).
    pub fn duplicate(&self, mem: &impl PhysMem, va: u64) -> Result<u64, MapError> {
        let old = self.lookup(mem, va).map(desc_pa).ok_or(MapError::NotMapped { va })?;
        // SAFETY: `old` is held by a present leaf of this tree (borrowed, so
        // unchanged).
        unsafe { mem.alloc_copy(old) }.ok_or(MapError::OutOfMemory)
    }

    /// A new run of frames (each reference count 1) holding a copy of the
    /// block mapped at `va`; the caller maps it (or puts and frees it).
    pub fn duplicate_block(&self, mem: &impl PhysMem, va: u64) -> Result<u64, MapError> {
        let (_, block) = self.block(mem, va).ok_or(MapError::NotMapped { va })?;
        let size = self.fmt.block_size().ok_or(MapError::NoBlock { va })?;
        let pages = size / PAGE_SIZE;
        let new = mem.alloc_contig(pages.trailing_zeros()).ok_or(MapError::OutOfMemory)?;
        let old = desc_pa(block);
        for i in 0..pages {
            // SAFETY: `old`'s frames are held by a present block of this
            // tree (borrowed, so unchanged); `new`'s were just allocated.
            unsafe { mem.copy_page(new + i * PAGE_SIZE, old + i * PAGE_SIZE) };
        }
        Ok(new)
    }

    /// Calls `f(va, desc)` for every present leaf in `[start, end)`, in
    /// address order; `Ok(Some(new))` replaces the leaf (permissions only:
    /// no break-before-make here). Stops at the first error.
    pub fn update_leaves<M: PhysMem, E>(
        &mut self,
        mem: &M,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64) -> Result<Option<u64>, E>,
    ) -> Result<(), E> {
        let mut c = LeafCursor::new(start, end);
        while let Some((va, desc)) = c.next(self, mem) {
            if let Some(new) = f(va, desc)? {
                self.replace_leaf(mem, va, new);
            }
        }
        Ok(())
    }

    /// Clears every leaf in `[start, end)` and unlinks the page-table pages
    /// that became empty where `free` allows (never the root), recording all
    /// of it in `g`. Frees nothing: when `g` fills up, it is flushed through
    /// `flush` and released ([`Gather::flush_partial`]), and the zap goes on.
    /// (The resumable form, one edit a step, is [`ZapCursor`].)
    pub fn zap<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        mem: &M,
        start: u64,
        end: u64,
        free: &TableFree,
        g: &mut Gather,
        flush: &mut Fl,
    ) {
        let mut c = ZapCursor::new(start, end);
        while c.step(self, mem, free, g).is_some() {
            if g.is_full() {
                g.flush_partial(mem, &mut *flush);
            }
        }
    }

    /// Tears the whole tree down: a zap of everything that frees every
    /// table, then the root into the gather. TTBR0 of every CPU must no
    /// longer point at the root when the gather frees it.
    pub fn destroy<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(mut self, mem: &M, g: &mut Gather, flush: &mut Fl) {
        let end = self.fmt.span();
        self.zap(mem, 0, end, &TableFree::All, g, flush);
        if let Some(root) = self.root.take() {
            g.free_root(root);
        }
    }

    /// Gives up the tree, returning its root table (for a teardown that
    /// emptied it step by step and frees the root through its gather).
    pub fn into_root(self) -> Option<u64> {
        self.root
    }

    /// Page-table pages in the tree, the root included.
    pub fn count_tables(&self, mem: &impl PhysMem) -> usize {
        fn count<F: Format>(f: F, mem: &impl PhysMem, table: u64, level: u32) -> usize {
            let below = if level == LEAF_LEVEL {
                0
            } else {
                (0..f.entries())
                    .map(|i| load(mem, table, i))
                    .filter(|&e| is_table(e))
                    .map(|e| count(f, mem, desc_pa(e), level + 1))
                    .sum()
            };
            1 + below
        }
        self.root.map_or(0, |r| count(self.fmt, mem, r, self.fmt.root_level()))
    }
}

/// The level-3 table that holds `va`'s leaf in the tree at `root`, if the
/// walk gets there (not through a block).
fn leaf_table<F: Format>(f: F, mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in f.root_level()..LEAF_LEVEL {
        let e = load(mem, table, f.index(va, level));
        if !is_table(e) {
            return None;
        }
        table = desc_pa(e);
    }
    Some(table)
}

/// The hardware's walk of `va` in the tree at `root`: the valid page
/// descriptor that translates it, a block's implied per page.
fn leaf_walk<F: Format>(f: F, mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in f.root_level()..LEAF_LEVEL {
        let e = load(mem, table, f.index(va, level));
        if is_block(e) {
            return Some(page_in_block(e, va & (f.level_size(level) - 1)));
        }
        if !is_table(e) {
            return None;
        }
        table = desc_pa(e);
    }
    Some(load(mem, table, f.index(va, LEAF_LEVEL))).filter(|d| d & VALID != 0)
}

/// Walks the architecture-format tree at `root` the way the hardware does
/// and returns the valid leaf descriptor for `va`. For other walkers of the
/// same tables (tests, the secondary-MMU model); the owner uses
/// [`PageTable::lookup`].
///
/// # Safety
///
/// `root` is [`PageTable::root`] of a tree in `mem` that is not torn down,
/// and no table of it is freed during the walk (hold the mm lock, or
/// otherwise keep gathers from finishing).
pub unsafe fn walk(mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    // SAFETY: forwarded from the caller.
    unsafe { walk_in(Arm4k, mem, root, va) }
}

/// [`walk`] for a tree of format `f` (the host model's reduced tables).
///
/// # Safety
///
/// As [`walk`].
pub unsafe fn walk_in<F: Format>(f: F, mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    leaf_walk(f, mem, root, va)
}

/// [`walk`] for tests, on the test memory.
#[cfg(test)]
pub fn walk_for_tests(mem: &crate::mm::aspace::test_mem::TestMem, root: u64, va: u64) -> Option<u64> {
    // SAFETY: `TestMem` panics on any access to an address that is not a
    // live frame, so a walk from any root reads valid memory (at worst
    // garbage descriptors, or a panic).
    unsafe { walk(mem, root, va) }
}
