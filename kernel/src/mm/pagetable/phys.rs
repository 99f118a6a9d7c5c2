//! [`PhysMem`]: physical memory as the page-table code needs it.

/// Frames, their reference counts, and access to what they hold.
///
/// Implementations: the kernel's (`mm::phys::KernelMem`: buddy-allocator
/// frames through the linear map), the host tests' (`aspace::test_mem`,
/// boxed pages that panic on any access to a frame not allocated), and the
/// host model's (small frames in a model memory).
///
/// Contents are reached only through these methods (descriptors as
/// single-copy-atomic words, data as bytes), never through references, so
/// an implementation may store frames however it likes. The accessors are
/// `unsafe`: an implementation may reach a frame through a raw pointer, and
/// relies on the caller to name only frames it allocated and has not freed.
pub trait PhysMem {
    /// A zeroed data frame, reference count 1.
    fn alloc_zeroed(&self) -> Option<u64>;
    /// A zeroed page-table page for a table at `level`, reference count 1.
    fn alloc_table(&self, level: u32) -> Option<u64> {
        let _ = level;
        self.alloc_zeroed()
    }
    /// `2^order` zeroed data frames, physically contiguous and aligned to
    /// their size (for a block or a contiguous run), each with reference
    /// count 1; `None` when no such run is free. A memory without
    /// contiguous runs (the default) has none to give.
    fn alloc_contig(&self, order: u32) -> Option<u64> {
        let _ = order;
        None
    }
    /// Returns `2^order` frames from `pa` whose reference counts all
    /// reached 0 (a whole block's frames). By default one by one.
    fn free_contig(&self, pa: u64, order: u32) {
        for i in 0..1u64 << order {
            self.free(pa + i * crate::mm::pte::PAGE_SIZE);
        }
    }
    /// Returns a data frame whose reference count reached 0.
    fn free(&self, pa: u64);
    /// Returns a page-table page whose last reference went.
    fn free_table(&self, pa: u64) {
        self.free(pa)
    }
    /// One more reference (a page shared copy-on-write).
    fn get(&self, pa: u64);
    /// One reference less; true if it was the last (the caller then frees
    /// the frame, after any TLB flush that covers it).
    fn put(&self, pa: u64) -> bool;
    /// [`Self::put`] for each of `pas` in order, calling `last` with each
    /// frame whose last reference that was (before the next put).
    fn put_each(&self, pas: &[u64], mut last: impl FnMut(u64))
    where
        Self: Sized,
    {
        for &pa in pas {
            if self.put(pa) {
                last(pa);
            }
        }
    }
    fn refs(&self, pa: u64) -> u32;

    /// A swap slot for one page's contents, its reference count 1 (the
    /// caller's), nothing written to it yet; `None` when the swap area is
    /// full. A memory with no swap area (the default) has none to give.
    fn swap_alloc(&self) -> Option<u64> {
        None
    }
    /// Copies data frame `pa` into `slot`: from now on [`Self::swap_read`]
    /// of it succeeds.
    fn swap_write(&self, slot: u64, pa: u64) {
        let _ = pa;
        unreachable!("swap slot {slot} in a memory without swap")
    }
    /// Copies `slot` into data frame `pa`; false (nothing copied) while the
    /// slot has not been written.
    fn swap_read(&self, slot: u64, pa: u64) -> bool {
        let _ = pa;
        unreachable!("swap slot {slot} in a memory without swap")
    }
    /// One more reference to `slot` (a swap entry copied by fork).
    fn swap_dup(&self, slot: u64) {
        unreachable!("swap slot {slot} in a memory without swap")
    }
    /// One reference to `slot` less; the last frees it.
    fn swap_free(&self, slot: u64) {
        unreachable!("swap slot {slot} in a memory without swap")
    }
    /// Records that data frame `pa` was mapped at `va` in an address space
    /// of family `anon` (the reverse map: fork children share their
    /// parent's family and addresses). Nothing by default.
    fn rmap_set(&self, pa: u64, anon: u64, va: u64) {
        let _ = (pa, anon, va);
    }

    /// Descriptor `idx` of table `table` (a relaxed, single-copy-atomic
    /// 64-bit load: hardware walkers read it concurrently).
    ///
    /// # Safety
    /// `table` is a page-table page of this memory, allocated and not freed,
    /// and `idx` is below the format's entries per table.
    unsafe fn load_desc(&self, table: u64, idx: usize) -> u64;

    /// Writes descriptor `idx` of table `table` (a release store, so that a
    /// newly linked table's zeroed contents are visible before the entry
    /// that reaches it).
    ///
    /// # Safety
    /// As [`Self::load_desc`].
    unsafe fn store_desc(&self, table: u64, idx: usize, desc: u64);

    /// Copies `buf.len()` bytes at offset `off` of data frame `pa` into
    /// `buf` (relaxed atomic loads: user threads may write it meanwhile).
    ///
    /// # Safety
    /// `pa` is a data frame of this memory, allocated and not freed, and
    /// `off + buf.len()` is at most the page size.
    unsafe fn read_data(&self, pa: u64, off: usize, buf: &mut [u8]);

    /// Writes `data` at offset `off` of data frame `pa` (relaxed atomic
    /// stores).
    ///
    /// # Safety
    /// As [`Self::read_data`].
    unsafe fn write_data(&self, pa: u64, off: usize, data: &[u8]);

    /// Copies data frame `src` into data frame `dst` (a copy-on-write copy).
    ///
    /// # Safety
    /// Both are data frames of this memory, allocated and not freed.
    unsafe fn copy_page(&self, dst: u64, src: u64);

    /// A new data frame, reference count 1, holding a copy of data frame
    /// `src`. The kernel's skips zeroing a frame it overwrites at once.
    ///
    /// # Safety
    /// As [`Self::copy_page`] for `src`.
    unsafe fn alloc_copy(&self, src: u64) -> Option<u64> {
        let new = self.alloc_zeroed()?;
        // SAFETY: `new` was just allocated; `src` is live (caller).
        unsafe { self.copy_page(new, src) };
        Some(new)
    }
}
