//! User page tables: the TTBR0 half, 4 KiB pages, descriptors from
//! [`super::pte`]. No blocks: every leaf is a level-3 page. Generic over
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
//! forms (mechanisms.md §3, §5).
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
    desc_pa, el0_can_exec, el0_can_read, el0_can_write, is_swap, is_table, page_desc, swap_desc, swap_slot, table_desc,
};
pub use format::{Arm4k, Format, Reduced, LEAF_LEVEL};
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
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory => write!(f, "out of frames for a page table"),
            Self::AlreadyMapped { va } => write!(f, "{va:#x} is already mapped"),
            Self::NotMapped { va } => write!(f, "{va:#x} is not mapped"),
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
        let f = self.fmt;
        let mut table = self.root.ok_or(MapError::OutOfMemory)?;
        for level in f.root_level()..LEAF_LEVEL {
            let idx = f.index(va, level);
            let e = load(mem, table, idx);
            table = if e & VALID != 0 {
                desc_pa(e)
            } else {
                let new = mem.alloc_table(level + 1).ok_or(MapError::OutOfMemory)?;
                store(mem, table, idx, table_desc(new));
                new
            };
        }
        Ok(table)
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

    /// The valid leaf descriptor mapping `va`, if any.
    pub fn lookup(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        let table = self.leaf_table(mem, va)?;
        Some(load(mem, table, self.fmt.index(va, LEAF_LEVEL))).filter(|d| d & VALID != 0)
    }

    /// Writes `desc` (0 clears) into the leaf slot of `va` and returns what
    /// was there (possibly an invalid 0); `None`, changing nothing, if the
    /// level-3 table for `va` does not exist. Changing only permissions needs
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
    pub fn destroy<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        mut self,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) {
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
                    .filter(|e| e & VALID != 0)
                    .map(|e| count(f, mem, desc_pa(e), level + 1))
                    .sum()
            };
            1 + below
        }
        self.root.map_or(0, |r| count(self.fmt, mem, r, self.fmt.root_level()))
    }
}

/// The level-3 table that holds `va`'s leaf in the tree at `root`, if the
/// walk gets there.
fn leaf_table<F: Format>(f: F, mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in f.root_level()..LEAF_LEVEL {
        let e = load(mem, table, f.index(va, level));
        if e & VALID == 0 {
            return None;
        }
        table = desc_pa(e);
    }
    Some(table)
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
    let table = leaf_table(f, mem, root, va)?;
    Some(load(mem, table, f.index(va, LEAF_LEVEL))).filter(|d| d & VALID != 0)
}

/// [`walk`] for tests, on the test memory.
#[cfg(test)]
pub fn walk_for_tests(
    mem: &crate::mm::aspace::test_mem::TestMem,
    root: u64,
    va: u64,
) -> Option<u64> {
    // SAFETY: `TestMem` panics on any access to an address that is not a
    // live frame, so a walk from any root reads valid memory (at worst
    // garbage descriptors, or a panic).
    unsafe { walk(mem, root, va) }
}
