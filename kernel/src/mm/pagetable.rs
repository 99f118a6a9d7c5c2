//! User page tables: the TTBR0 half, 4 KiB granule, 48-bit VA, four levels
//! (0 = root .. 3 = pages), descriptors from [`super::pte`]. No blocks: every
//! leaf is a level-3 page.
//!
//! The tree lives in frames from a [`PhysMem`], the boundary to physical
//! memory: the kernel's implementation hands out buddy-allocator frames
//! reached through the linear map (`mm::phys`), the host tests' one boxed
//! pages in a map (`aspace::test_mem::TestMem`), which also counts what is
//! outstanding so tests can prove nothing leaks.
//!
//! # Clearing is not freeing
//!
//! [`PageTable::zap`] clears leaves and unlinks table pages that became
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
//! # Concurrent readers
//!
//! Under the mm lock this code is the only writer, but hardware walkers on
//! every CPU (and the secondary-MMU model) read descriptors at any time. So
//! descriptors are accessed as aligned 64-bit atomics (single-copy atomic:
//! no torn entry is ever visible), and a new table is linked with a release
//! store so its zeroed contents are visible before the entry that reaches it
//! (Linux's `smp_wmb()` in `pmd_install`). A walker that misses a new entry
//! faults again and the fault handler finds the entry present ("spurious").

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use super::gather::{FlushRange, Gather};
use super::pte::{
    index, level_size, ADDR_MASK, AP_EL0, AP_RO, ENTRIES, PAGE_SIZE, TABLE_OR_PAGE, UXN, VALID,
};

/// Physical memory as the mm code needs it.
///
/// # Safety
///
/// Implementations promise, for every frame `pa` returned by
/// [`alloc_zeroed`](Self::alloc_zeroed) and not yet passed to
/// [`free`](Self::free):
/// 1. `ptr(pa)` is valid for reads and writes of 4096 bytes and aligned to
///    4096, and stays so until `free(pa)`;
/// 2. the frame is not handed out again, nor accessed by anyone else through
///    Rust references, until `free(pa)`;
/// 3. reference counts start at 1 and change only through `get`/`put`.
///
/// The page-table code dereferences `ptr` on the strength of this, hence the
/// `unsafe` on the trait.
pub unsafe trait PhysMem {
    /// A zeroed 4 KiB frame's physical address, reference count 1.
    fn alloc_zeroed(&self) -> Option<u64>;
    /// Returns a frame whose reference count reached 0.
    fn free(&self, pa: u64);
    /// Where the CPU can read and write the frame's 4096 bytes now.
    fn ptr(&self, pa: u64) -> *mut u8;
    /// One more reference (a page shared copy-on-write).
    fn get(&self, pa: u64);
    /// One reference less; true if it was the last (the caller then frees
    /// the frame, after any TLB flush that covers it).
    fn put(&self, pa: u64) -> bool;
    fn refs(&self, pa: u64) -> u32;
    /// A zeroed frame for a page-table page (reference count 1); the same
    /// as [`alloc_zeroed`](Self::alloc_zeroed) unless the memory counts
    /// table pages apart.
    fn alloc_table(&self) -> Option<u64> {
        self.alloc_zeroed()
    }
    /// Returns a page-table page whose last reference went.
    fn free_table(&self, pa: u64) {
        self.free(pa)
    }
}

/// Level of every leaf this code writes.
pub const LEAF_LEVEL: u32 = 3;

/// A level-3 page descriptor: `attrs` from [`super::pte::user_attrs`].
pub const fn page_desc(pa: u64, attrs: u64) -> u64 {
    (pa & ADDR_MASK) | attrs | VALID | TABLE_OR_PAGE
}

const fn table_desc(pa: u64) -> u64 {
    (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
}

/// The output address of a descriptor.
pub const fn desc_pa(desc: u64) -> u64 {
    desc & ADDR_MASK
}

pub const fn el0_can_read(desc: u64) -> bool {
    desc & (VALID | AP_EL0) == VALID | AP_EL0
}

pub const fn el0_can_write(desc: u64) -> bool {
    el0_can_read(desc) && desc & AP_RO == 0
}

pub const fn el0_can_exec(desc: u64) -> bool {
    el0_can_read(desc) && desc & UXN == 0
}

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

/// Reads entry `idx` of table `table`.
///
/// `table` is always a table frame of a live tree: every caller got it from
/// the root or from a valid table descriptor, and tables are freed only
/// through a gather after they were unlinked.
fn load(mem: &impl PhysMem, table: u64, idx: usize) -> u64 {
    debug_assert!(idx < ENTRIES);
    // SAFETY: 1. `ptr(table)` is valid and 4096-aligned (live table frame,
    // PhysMem contract), so entry `idx < 512` is in bounds and aligned.
    // 2. Descriptors are only accessed atomically: no data race.
    let e = unsafe { AtomicU64::from_ptr(mem.ptr(table).cast::<u64>().add(idx)) };
    e.load(Ordering::Relaxed)
}

/// Writes entry `idx` of table `table` (release: see the module docs).
fn store(mem: &impl PhysMem, table: u64, idx: usize, desc: u64) {
    debug_assert!(idx < ENTRIES);
    // SAFETY: as in `load`.
    let e = unsafe { AtomicU64::from_ptr(mem.ptr(table).cast::<u64>().add(idx)) };
    e.store(desc, Ordering::Release);
}

/// The bytes of frame `pa`, as atomics: user threads on other CPUs may
/// access the same memory at any time, so the kernel's accesses to user
/// frames are atomic (relaxed) and never a data race.
///
/// # Safety
///
/// `pa` is a frame of `mem` that stays allocated for `'a`.
unsafe fn frame_bytes<M: PhysMem>(mem: &M, pa: u64) -> &[AtomicU8] {
    // SAFETY: `ptr(pa)` is valid for 4096 bytes while allocated (caller: for
    // 'a); AtomicU8 has u8's layout; the frame is only accessed atomically.
    unsafe { core::slice::from_raw_parts(mem.ptr(pa).cast::<AtomicU8>(), PAGE_SIZE as usize) }
}

/// Frame `pa` as 512 atomic words (see [`frame_bytes`]).
///
/// # Safety
///
/// As [`frame_bytes`].
unsafe fn frame_words<M: PhysMem>(mem: &M, pa: u64) -> &[AtomicU64] {
    // SAFETY: as in `frame_bytes`; `ptr` is 4096-aligned, so the cast to
    // 8-byte atomics is aligned.
    unsafe { core::slice::from_raw_parts(mem.ptr(pa).cast::<AtomicU64>(), ENTRIES) }
}

fn table_is_empty(mem: &impl PhysMem, table: u64) -> bool {
    (0..ENTRIES).all(|i| load(mem, table, i) & VALID == 0)
}

/// Indices of the entries of a level-`level` table based at `base` that
/// overlap `[start, end)`.
fn span(level: u32, base: u64, start: u64, end: u64) -> core::ops::Range<usize> {
    let size = level_size(level);
    let first = (start.max(base) - base) / size;
    let last = (end - base).div_ceil(size).min(ENTRIES as u64);
    first as usize..last as usize
}

/// One address space's user page-table tree.
#[derive(Debug)]
pub struct PageTable {
    /// Root (level-0) table; `None` only for [`PageTable::empty`].
    root: Option<u64>,
}

impl PageTable {
    /// A new tree: an empty root table. `None` when out of frames.
    pub fn new(mem: &impl PhysMem) -> Option<Self> {
        Some(Self { root: Some(mem.alloc_table()?) })
    }

    /// A placeholder without tables: lookups find nothing, maps fail.
    pub const fn empty() -> Self {
        Self { root: None }
    }

    /// Physical address of the root table (for TTBR0), 0 for a placeholder.
    pub fn root(&self) -> u64 {
        self.root.unwrap_or(0)
    }

    /// Maps `va` (page-aligned) with descriptor `desc` ([`page_desc`]),
    /// allocating intermediate tables.
    pub fn map(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Result<(), MapError> {
        let mut table = self.root.ok_or(MapError::OutOfMemory)?;
        for level in 0..LEAF_LEVEL {
            let idx = index(va, level);
            let e = load(mem, table, idx);
            table = if e & VALID != 0 {
                desc_pa(e)
            } else {
                let new = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                store(mem, table, idx, table_desc(new));
                new
            };
        }
        let idx = index(va, LEAF_LEVEL);
        if load(mem, table, idx) & VALID != 0 {
            return Err(MapError::AlreadyMapped { va });
        }
        store(mem, table, idx, desc);
        Ok(())
    }

    /// The valid leaf descriptor mapping `va`, if any.
    pub fn lookup(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        let table = leaf_table(mem, self.root?, va)?;
        Some(load(mem, table, index(va, LEAF_LEVEL))).filter(|d| d & VALID != 0)
    }

    /// Writes `desc` (0 clears) into the leaf slot of `va` and returns what
    /// was there (possibly an invalid 0); `None`, changing nothing, if the
    /// level-3 table for `va` does not exist. Changing only permissions needs
    /// no break-before-make; changing the output address of a valid entry
    /// does: write 0, flush, then the new entry.
    pub fn replace_leaf(&mut self, mem: &impl PhysMem, va: u64, desc: u64) -> Option<u64> {
        let table = leaf_table(mem, self.root?, va)?;
        let idx = index(va, LEAF_LEVEL);
        let old = load(mem, table, idx);
        store(mem, table, idx, desc);
        Some(old)
    }

    /// The frame mapped at `va`, for as long as `self` is borrowed: the
    /// mapping holds a reference, so the frame cannot be freed meanwhile.
    fn mapped_frame(&self, mem: &impl PhysMem, va: u64) -> Option<u64> {
        self.lookup(mem, va).map(desc_pa)
    }

    /// The bytes of the page mapped at `va`, from `va` on, for an access of
    /// `len` bytes that must not cross the page's end; `None` if no page is
    /// present.
    fn page_bytes<'a, M: PhysMem>(&'a self, mem: &'a M, va: u64, len: usize) -> Option<&'a [AtomicU8]> {
        let off = (va % PAGE_SIZE) as usize;
        assert!(off + len <= PAGE_SIZE as usize, "access at {va:#x} of {len} bytes crosses a page");
        let pa = self.mapped_frame(mem, va)?;
        // SAFETY: `pa` is mapped by a present leaf of this tree, which holds
        // a reference; the tree cannot change while `self` is borrowed.
        let bytes = unsafe { frame_bytes(mem, pa) };
        Some(&bytes[off..])
    }

    /// Copies `buf.len()` bytes from the page mapped at `va` (they must not
    /// cross its end) into `buf`, regardless of permissions. False if no
    /// page is present.
    pub fn read(&self, mem: &impl PhysMem, va: u64, buf: &mut [u8]) -> bool {
        let Some(bytes) = self.page_bytes(mem, va, buf.len()) else { return false };
        for (b, src) in buf.iter_mut().zip(bytes) {
            *b = src.load(Ordering::Relaxed);
        }
        true
    }

    /// Writes `data` into the page mapped at `va` (not crossing its end),
    /// regardless of permissions and of sharing: the caller makes sure the
    /// frame is private when it must be. False if no page is present.
    pub fn write(&mut self, mem: &impl PhysMem, va: u64, data: &[u8]) -> bool {
        let Some(bytes) = self.page_bytes(mem, va, data.len()) else { return false };
        for (dst, &b) in bytes.iter().zip(data) {
            dst.store(b, Ordering::Relaxed);
        }
        true
    }

    /// A new frame (reference count 1) holding a copy of the page mapped at
    /// `va`; the caller maps it (or puts and frees it).
    pub fn duplicate(&self, mem: &impl PhysMem, va: u64) -> Result<u64, MapError> {
        let old = self.mapped_frame(mem, va).ok_or(MapError::NotMapped { va })?;
        let new = mem.alloc_zeroed().ok_or(MapError::OutOfMemory)?;
        // SAFETY: `old` is held by a present leaf of this tree (see `page_bytes`);
        // `new` was just allocated and is ours until we hand it out.
        let (src, dst) = unsafe { (frame_words(mem, old), frame_words(mem, new)) };
        for (d, s) in dst.iter().zip(src) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
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
        match self.root {
            Some(root) if start < end => visit(mem, root, 0, 0, start, end, &mut f),
            _ => Ok(()),
        }
    }

    /// Clears every leaf in `[start, end)` and unlinks page-table pages that
    /// became empty (never the root), recording all of it in `g`. Frees
    /// nothing: when `g` fills up, it is flushed through `flush` and released
    /// ([`Gather::flush_partial`]), and the zap goes on.
    pub fn zap<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        &mut self,
        mem: &M,
        start: u64,
        end: u64,
        g: &mut Gather,
        flush: &mut F,
    ) {
        if let Some(root) = self.root.filter(|_| start < end) {
            zap_table(mem, root, 0, 0, start, end, g, flush);
        }
    }

    /// Tears the whole tree down: [`Self::zap`] of all user space, then the
    /// root into the gather. TTBR0 of every CPU must no longer point at the
    /// root when the gather frees it.
    pub fn destroy<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        mut self,
        mem: &M,
        g: &mut Gather,
        flush: &mut F,
    ) {
        self.zap(mem, 0, abi::USER_END, g, flush);
        if let Some(root) = self.root.take() {
            g.free_root(root);
        }
    }

    /// Page-table pages in the tree, the root included.
    pub fn count_tables(&self, mem: &impl PhysMem) -> usize {
        fn count(mem: &impl PhysMem, table: u64, level: u32) -> usize {
            let below = if level == LEAF_LEVEL {
                0
            } else {
                (0..ENTRIES)
                    .map(|i| load(mem, table, i))
                    .filter(|e| e & VALID != 0)
                    .map(|e| count(mem, desc_pa(e), level + 1))
                    .sum()
            };
            1 + below
        }
        self.root.map_or(0, |r| count(mem, r, 0))
    }
}

/// The level-3 table that holds `va`'s leaf in the tree at `root`, if the
/// walk gets there.
fn leaf_table(mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in 0..LEAF_LEVEL {
        let e = load(mem, table, index(va, level));
        if e & VALID == 0 {
            return None;
        }
        table = desc_pa(e);
    }
    Some(table)
}

/// Walks the tree at `root` the way the hardware does and returns the valid
/// leaf descriptor for `va`. For other walkers of the same tables (tests, the
/// secondary-MMU model); the owner uses [`PageTable::lookup`].
///
/// # Safety
///
/// `root` is [`PageTable::root`] of a tree in `mem` that is not torn down,
/// and no table of it is freed during the walk (hold the mm lock, or
/// otherwise keep gathers from finishing).
pub unsafe fn walk(mem: &impl PhysMem, root: u64, va: u64) -> Option<u64> {
    let table = leaf_table(mem, root, va)?;
    Some(load(mem, table, index(va, LEAF_LEVEL))).filter(|d| d & VALID != 0)
}

/// [`walk`] for tests, on the test memory.
#[cfg(test)]
pub fn walk_for_tests(
    mem: &crate::mm::aspace::test_mem::TestMem,
    root: u64,
    va: u64,
) -> Option<u64> {
    // SAFETY: `TestMem::ptr` panics for any address that is not a live
    // frame, and every live frame is valid memory, so a walk from any root
    // reads valid memory (at worst garbage descriptors, or a panic).
    unsafe { walk(mem, root, va) }
}

fn visit<M: PhysMem, E>(
    mem: &M,
    table: u64,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    f: &mut impl FnMut(u64, u64) -> Result<Option<u64>, E>,
) -> Result<(), E> {
    for idx in span(level, base, start, end) {
        let va = base + idx as u64 * level_size(level);
        let e = load(mem, table, idx);
        if e & VALID == 0 {
            continue;
        }
        if level == LEAF_LEVEL {
            if let Some(new) = f(va, e)? {
                store(mem, table, idx, new);
            }
        } else {
            visit(mem, desc_pa(e), level + 1, va, start, end, f)?;
        }
    }
    Ok(())
}

/// Zaps `[start, end)` within the level-`level` table at `table` covering
/// `base..`; returns whether the table is now entirely empty.
#[allow(clippy::too_many_arguments)]
fn zap_table<M: PhysMem, F: FnMut(Option<FlushRange>)>(
    mem: &M,
    table: u64,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    g: &mut Gather,
    flush: &mut F,
) -> bool {
    for idx in span(level, base, start, end) {
        let va = base + idx as u64 * level_size(level);
        let e = load(mem, table, idx);
        if e & VALID == 0 {
            continue;
        }
        if level == LEAF_LEVEL {
            store(mem, table, idx, 0);
            g.clear_leaf(va, level, desc_pa(e));
        } else if zap_table(mem, desc_pa(e), level + 1, va, start, end, g, flush) {
            // Unlink first; the page itself goes only after the gather's
            // flush (walk caches may still point at it).
            store(mem, table, idx, 0);
            g.clear_table(start.max(va), level, desc_pa(e));
        }
        if g.is_full() {
            g.flush_partial(mem, &mut *flush);
        }
    }
    table_is_empty(mem, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::aspace::test_mem::TestMem;
    use crate::mm::pte::{user_attrs, NG, PXN};
    use abi::prot;

    const RW: u64 = user_attrs(prot::READ | prot::WRITE);

    fn finish(g: Gather, mem: &TestMem) -> Vec<FlushRange> {
        let mut seen = Vec::new();
        g.finish(mem, |r| seen.extend(r));
        seen
    }

    #[test]
    fn user_descriptors() {
        let cases = [
            (prot::READ, true, false, false),
            (prot::READ | prot::WRITE, true, true, false),
            (prot::READ | prot::EXEC, true, false, true),
            (prot::ALL, true, true, true),
            (prot::NONE, false, false, false),
            (prot::WRITE, true, true, false),
        ];
        for (p, r, w, x) in cases {
            let d = page_desc(0x1234_5000, user_attrs(p));
            let seen = (el0_can_read(d), el0_can_write(d), el0_can_exec(d));
            assert_eq!(
                seen,
                (r, w, x),
                "prot {p:#x}: expected (r, w, x) = {:?}, saw {seen:?}",
                (r, w, x)
            );
            assert_eq!(
                d & (NG | PXN | VALID),
                NG | PXN | VALID,
                "prot {p:#x}: user pages are nG, PXN, valid"
            );
            assert_eq!(desc_pa(d), 0x1234_5000);
        }
    }

    #[test]
    fn map_lookup_and_intermediate_tables() {
        let mem = TestMem::new();
        let mut pt = PageTable::new(&mem).unwrap();
        let va = 0x7f_1234_5000;
        assert_eq!(pt.lookup(&mem, va), None);
        let pa = mem.alloc_zeroed().unwrap();
        pt.map(&mem, va, page_desc(pa, RW)).unwrap();
        assert_eq!(pt.lookup(&mem, va), Some(page_desc(pa, RW)));
        assert_eq!(pt.lookup(&mem, va + PAGE_SIZE), None, "neighbour stays unmapped");
        assert_eq!(pt.count_tables(&mem), 4, "root + one table at each of levels 1..=3");
        assert_eq!(pt.map(&mem, va, page_desc(pa, RW)), Err(MapError::AlreadyMapped { va }));
        assert_eq!(mem.outstanding(), 5);
    }

    #[test]
    fn map_out_of_memory_leaves_no_leaf() {
        let mem = TestMem::new();
        let mut pt = PageTable::new(&mem).unwrap();
        mem.set_limit(Some(2)); // root + one table
        assert_eq!(pt.map(&mem, 0x1000, page_desc(0x9000, RW)), Err(MapError::OutOfMemory));
        assert_eq!(pt.lookup(&mem, 0x1000), None);
        mem.set_limit(None);
        let mut g = Gather::new();
        pt.destroy(&mem, &mut g, &mut |_| {});
        finish(g, &mem);
        assert_eq!(mem.outstanding(), 0, "the half-built path is torn down too");
    }

    /// Emptying a whole 2 MiB region unlinks its level-3 table (and the
    /// level-2 and level-1 tables above it when they empty too); the frames
    /// and tables stay allocated until the flush.
    #[test]
    fn zap_frees_tables_only_through_the_gather() {
        let mem = TestMem::new();
        let mut pt = PageTable::new(&mem).unwrap();
        let base = 0x40_0000u64; // 2 MiB-aligned
        let mut pas = Vec::new();
        for i in 0..4 {
            let pa = mem.alloc_zeroed().unwrap();
            pt.map(&mem, base + i * PAGE_SIZE, page_desc(pa, RW)).unwrap();
            pas.push(pa);
        }
        // A page in the next 2 MiB region keeps levels 1 and 2 alive.
        let other = mem.alloc_zeroed().unwrap();
        pt.map(&mem, base + (2 << 20), page_desc(other, RW)).unwrap();
        let tables = pt.count_tables(&mem);

        // Part of the region: no table freed.
        let mut g = Gather::new();
        pt.zap(&mem, base, base + 2 * PAGE_SIZE, &mut g, &mut |_| {
            panic!("no partial flush expected")
        });
        assert!(!g.freed_tables(), "half a table zapped: expected no table freed");
        assert_eq!((g.lowest_level(), g.highest_level()), (Some(3), Some(3)));
        assert_eq!(g.frames(), &pas[..2]);
        finish(g, &mem);
        assert_eq!(pt.count_tables(&mem), tables);

        // The rest of it: its level-3 table goes, via the gather.
        let mut g = Gather::new();
        pt.zap(&mem, base, base + (2 << 20), &mut g, &mut |_| panic!("no partial flush expected"));
        assert!(g.freed_tables(), "2 MiB region emptied: expected freed_tables");
        assert_eq!((g.lowest_level(), g.highest_level()), (Some(2), Some(3)), "levels cleared");
        assert_eq!(g.frames(), &pas[2..]);
        let &[l3] = g.tables() else { panic!("expected one table, saw {:?}", g.tables()) };
        assert!(mem.is_live(l3), "table page must survive until the flush");
        let r = g.flush_range().unwrap();
        assert!(r.tables_freed && r.start <= base + 2 * PAGE_SIZE && r.end > base, "flush {r:?}");
        assert_eq!(finish(g, &mem).len(), 1);
        assert!(!mem.is_live(l3), "table page freed after the flush");
        assert_eq!(pt.count_tables(&mem), tables - 1);
        assert_eq!(pt.lookup(&mem, base + (2 << 20)), Some(page_desc(other, RW)));

        // The last page: levels 3, 2 and 1 all go; the root stays.
        let mut g = Gather::new();
        pt.zap(&mem, 0, abi::USER_END, &mut g, &mut |_| {});
        assert_eq!(
            (g.tables().len(), g.lowest_level()),
            (3, Some(0)),
            "three tables, a level-0 entry cleared"
        );
        finish(g, &mem);
        assert_eq!(pt.count_tables(&mem), 1, "only the root left");
        let mut g = Gather::new();
        pt.destroy(&mem, &mut g, &mut |_| {});
        finish(g, &mem);
        assert_eq!(mem.outstanding(), 0, "leak: {} frames outstanding", mem.outstanding());
    }

    #[test]
    fn update_leaves_visits_present_leaves_in_order() {
        let mem = TestMem::new();
        let mut pt = PageTable::new(&mem).unwrap();
        let vas = [0x1000u64, 0x3000, 0x20_0000, 0x4000_0000];
        for va in vas {
            pt.map(&mem, va, page_desc(mem.alloc_zeroed().unwrap(), RW)).unwrap();
        }
        let mut seen = Vec::new();
        let ro = user_attrs(prot::READ);
        pt.update_leaves::<_, ()>(&mem, 0x2000, 0x4000_0000, |va, d| {
            seen.push(va);
            Ok(Some(page_desc(desc_pa(d), ro)))
        })
        .unwrap();
        assert_eq!(seen, vec![0x3000, 0x20_0000], "leaves in [0x2000, 0x4000_0000)");
        assert!(el0_can_write(pt.lookup(&mem, 0x1000).unwrap()), "outside the range: unchanged");
        assert!(!el0_can_write(pt.lookup(&mem, 0x3000).unwrap()), "inside: now read-only");
        let mut g = Gather::new();
        pt.destroy(&mem, &mut g, &mut |_| {});
        finish(g, &mem);
        assert_eq!(mem.outstanding(), 0);
    }
}
