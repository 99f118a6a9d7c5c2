//! A user address space: page tables ([`PageTable`]) plus the mappings
//! that say what may be there ([`VmaSet`]), and the operations the system
//! calls and the page-fault handler need. Architecture-independent apart
//! from the descriptor format; the kernel supplies physical memory
//! ([`PhysMem`]), the lock, the ASID and the TLB flush.
//!
//! Memory is anonymous and private. `mmap` only records a VMA; the first
//! touch of a page faults and maps a zeroed frame. `fork` shares every
//! present frame read-only with the child (copy-on-write); the first write
//! on either side copies, or, when the other side has gone meanwhile
//! (reference count 1), makes the page writable in place.
//!
//! # What the caller does around each call
//!
//! Every `&mut self` method runs under the mm's lock. Calls that clear or
//! write-protect entries record them in a [`Gather`]; the kernel finishes it
//! ([`Gather::finish`]) with a flush of the mm's current ASID. Finish fork's
//! and mprotect's gathers *before* dropping the lock: otherwise another
//! thread's copy-on-write fault could copy a frame that a stale writable TLB
//! entry is still writing to, and lose the write. Zaps that may fill the
//! gather take `flush` too, for batches ([`Gather::flush_partial`]); the
//! fault handler takes it for the one flush break-before-make requires.
//! `flush(Some(range))` must invalidate `range.request(asid)` on every CPU
//! that may hold the ASID and wait for completion; `flush(None)` means
//! nothing was cleared.
//!
//! Each call comes in two forms. The pieces (`*_vmas`, [`Self::zap_step`],
//! [`Self::protect_step`], [`Self::fork_begin`] / [`Self::fork_step`], the
//! fault's plan) are what the TLB protocol (`mm::space`) steps through, one
//! page-table write at a time, with its flushes and lock around them; the
//! whole calls (`mmap`, `munmap`, ...) run the same pieces to the end with a
//! flush callback, for the program loader and the tests.
//!
//! No unsafe code here: frame memory is reached only through
//! [`PageTable`]'s methods. (`deny`, not `forbid`, so that the test-only
//! [`PhysMem`] in `test_mem` may implement the unsafe trait.)
#![deny(unsafe_code)]

mod error;
mod fault;
#[cfg(test)]
pub mod test_mem;
#[cfg(test)]
mod tests;

pub use error::{FaultError, MmError};
pub use fault::{Access, Fault, FaultKind, FaultPlan};

use abi::{advice, map, prot, MMAP_BASE, USER_END, USER_STACK_SIZE, USER_STACK_TOP};

use super::gather::{no_flush, FlushRange, Gather};
use super::pagetable::{
    block_desc, desc_pa, el0_can_exec, el0_can_read, el0_can_write, is_block, is_cont, is_swap, leaf_attrs, page_desc,
    swap_desc, swap_slot, Arm4k, Format, LeafCursor, MapHint, PageTable, PhysMem, TableFree, ZapCursor, ZapEdit,
    BLOCK_LEVEL, LEAF_LEVEL,
};
use super::pte::{user_attrs, AP_RO, CONT, PAGE_SIZE};
use super::vma::{size, Vma, VmaSet};

/// Free space left below the main thread's stack: non-fixed mappings stay
/// this far away from it, so a stack overflow faults instead of running into
/// a mapping.
pub const STACK_GAP: u64 = 1 << 20;
/// Non-fixed mmap allocates in `[MMAP_BASE, MMAP_END)`.
pub const MMAP_END: u64 = USER_STACK_TOP - USER_STACK_SIZE - STACK_GAP;

/// Whether a mapping with `prot` allows `access` (WRITE and EXEC imply READ,
/// see [`super::pte::user_attrs`]).
pub const fn prot_allows(prot: u64, access: Access) -> bool {
    match access {
        Access::Read => prot & prot::ALL != 0,
        Access::Write => prot & prot::WRITE != 0,
        Access::Exec => prot & prot::EXEC != 0,
    }
}

/// Whether an installed descriptor lets EL0 do `access`.
pub const fn desc_allows(desc: u64, access: Access) -> bool {
    match access {
        Access::Read => el0_can_read(desc),
        Access::Write => el0_can_write(desc),
        Access::Exec => el0_can_exec(desc),
    }
}

/// Fails unless `grow` more VMAs fit under `abi::limits::MAX_MAPPINGS`.
fn room_for(vmas: &VmaSet, grow: usize) -> Result<(), MmError> {
    if vmas.len() + grow > abi::limits::MAX_MAPPINGS {
        return Err(MmError::TooManyMappings);
    }
    Ok(())
}

/// `[addr, addr + len rounded up to pages)`, checked.
fn user_range(addr: u64, len: u64) -> Result<(u64, u64), MmError> {
    if len == 0 {
        return Err(MmError::ZeroLength);
    }
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Unaligned { addr });
    }
    let end = page_round(len).and_then(|l| addr.checked_add(l));
    match end {
        Some(end) if end <= USER_END => Ok((addr, end)),
        _ => Err(MmError::BadRange { addr, len }),
    }
}

fn page_round(len: u64) -> Option<u64> {
    Some(len.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

/// A block or contiguous run that an operation must split into plain
/// pages before it changes part of it (see `mm::space`'s split steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The block at `base`.
    Block { base: u64 },
    /// The contiguous run at `base`.
    Run { base: u64 },
}

/// Which tables a zap of an address space may unlink (see
/// [`TableFree`]); the unmapped test reads the VMAs at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZapTables {
    Never,
    Unmapped,
    All,
}

/// A user address space. Must end in [`AddressSpace::teardown`]: dropping
/// it leaks its frames.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddressSpace<F: Format = Arm4k> {
    pt: PageTable<F>,
    vmas: VmaSet,
    /// The reverse map's family (0: none): an address space and the
    /// children forked from it share one, and a frame first mapped at `va`
    /// in any of them is mapped, if anywhere, at `va` in some of them.
    anon: u64,
    /// A block or a contiguous run was ever mapped here (calls then look
    /// for ones their ends cut).
    large: bool,
}

impl AddressSpace<Arm4k> {
    /// An empty address space (one root table).
    pub fn new(mem: &impl PhysMem) -> Result<Self, MmError> {
        Self::new_in(Arm4k, mem)
    }

    /// A placeholder with no tables, to move a real one out from under a
    /// lock (`mem::replace`). Faults in it fail with OutOfMemory.
    pub const fn empty() -> Self {
        Self { pt: PageTable::empty(), vmas: VmaSet::new(), anon: 0, large: false }
    }
}

impl<F: Format> AddressSpace<F> {
    /// An empty address space of page-table format `fmt`.
    pub fn new_in(fmt: F, mem: &impl PhysMem) -> Result<Self, MmError> {
        let pt = PageTable::new_in(fmt, mem).ok_or(MmError::OutOfMemory)?;
        Ok(Self { pt, vmas: VmaSet::new(), anon: 0, large: false })
    }

    /// A placeholder of format `fmt` (see [`AddressSpace::empty`]).
    pub const fn empty_in(fmt: F) -> Self {
        Self { pt: PageTable::empty_in(fmt), vmas: VmaSet::new(), anon: 0, large: false }
    }

    /// Puts this address space in reverse-map family `anon` (fork children
    /// inherit it).
    pub fn set_anon(&mut self, anon: u64) {
        self.anon = anon;
    }

    pub fn anon(&self) -> u64 {
        self.anon
    }

    /// Whether a block or a contiguous run was ever mapped here.
    pub fn has_large(&self) -> bool {
        self.large
    }

    /// Reclaim's unmap of `va` if it still maps frame `pa`: the leaf
    /// becomes a swap entry for `slot` (one more reference to the slot),
    /// and the frame's reference the leaf held passes to the caller, who
    /// puts it after the flush. False, changing nothing, otherwise.
    /// Pages of blocks and contiguous runs are not reclaimed (one page's
    /// entry cannot change alone there): false for them too.
    pub fn reclaim_unmap(&mut self, mem: &impl PhysMem, va: u64, pa: u64, slot: u64) -> bool {
        match self.pt.leaf_entry(mem, va) {
            Some(d) if d & super::pte::VALID != 0 && !is_cont(d) && desc_pa(d) == pa => {
                mem.swap_dup(slot);
                self.pt.replace_leaf(mem, va, swap_desc(slot));
                true
            }
            _ => false,
        }
    }

    /// The root table's physical address, for TTBR0 (0 for a placeholder).
    pub fn root_pa(&self) -> u64 {
        self.pt.root()
    }

    pub fn vmas(&self) -> &VmaSet {
        &self.vmas
    }

    pub fn page_table(&self) -> &PageTable<F> {
        &self.pt
    }

    /// The present leaf descriptor mapping `va`, if any.
    pub fn translate(&self, va: u64, mem: &impl PhysMem) -> Option<u64> {
        self.pt.lookup(mem, va & !(PAGE_SIZE - 1))
    }

    // The pieces the TLB protocol steps through.

    /// mmap's mapping change: anonymous private memory of `len` bytes
    /// (rounded up to pages). With `map::FIXED` exactly at `addr`, replacing
    /// what was there: returns the range whose pages must then be zapped
    /// ([`ZapTables::Never`]: it is mapped again at once). Otherwise `addr`,
    /// if not 0, is a hint used when that range is free; else the lowest
    /// free range in `[MMAP_BASE, MMAP_END)`. A hint must itself be a valid
    /// range (EINVAL otherwise; Linux ignores bad hints).
    pub fn map_vmas(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
    ) -> Result<(u64, Option<(u64, u64)>), MmError> {
        if prot & !prot::ALL != 0 {
            return Err(MmError::BadProt(prot));
        }
        if flags & !map::ALL != 0 {
            return Err(MmError::BadFlags(flags));
        }
        if len == 0 {
            return Err(MmError::ZeroLength);
        }
        let sizes =
            if flags & map::HUGE != 0 { size::BLOCK } else { 0 } | if flags & map::CONT != 0 { size::CONT } else { 0 };
        let vprot = prot | sizes;
        if flags & map::FIXED != 0 {
            if addr == 0 {
                return Err(MmError::FixedAtZero);
            }
            let (start, end) = user_range(addr, len)?;
            room_for(&self.vmas, self.vmas.splits(start, end) + 1)?;
            self.vmas.remove(start, end);
            self.vmas.insert(start, end, vprot);
            return Ok((start, Some((start, end))));
        }
        room_for(&self.vmas, 1)?;
        if addr != 0 {
            let (start, end) = user_range(addr, len)?;
            if self.vmas.is_free(start, end) {
                self.vmas.insert(start, end, vprot);
                return Ok((start, None));
            }
        }
        let rounded = page_round(len).ok_or(MmError::NoSpace { len })?;
        // A mapping that may hold blocks starts on one, when it is big
        // enough for one (as Linux aligns anonymous THP mappings).
        let block = self.pt.format().block_size().filter(|&b| sizes & size::BLOCK != 0 && rounded >= b);
        let aligned = block.and_then(|b| self.vmas.find_free_aligned(rounded, b, MMAP_BASE, MMAP_END));
        let start =
            aligned.or_else(|| self.vmas.find_free(rounded, MMAP_BASE, MMAP_END)).ok_or(MmError::NoSpace { len })?;
        self.vmas.insert(start, start + rounded, vprot);
        Ok((start, None))
    }

    /// munmap's mapping change: removes the mappings in the range (holes
    /// are fine); returns the range to zap ([`ZapTables::Unmapped`]).
    pub fn unmap_vmas(&mut self, addr: u64, len: u64) -> Result<(u64, u64), MmError> {
        let (start, end) = user_range(addr, len)?;
        room_for(&self.vmas, self.vmas.splits(start, end))?;
        self.vmas.remove(start, end);
        Ok((start, end))
    }

    /// madvise's check: only `DONTNEED`, and the whole range must be mapped
    /// (else ENOMEM and nothing happens; Linux drops the mapped parts and
    /// still says ENOMEM). Returns the range to zap ([`ZapTables::Never`]:
    /// the mappings stay, so a fault may refill it at any moment).
    pub fn dontneed_range(&self, addr: u64, len: u64, advice: u64) -> Result<(u64, u64), MmError> {
        if advice != advice::DONTNEED {
            return Err(MmError::BadAdvice(advice));
        }
        let (start, end) = user_range(addr, len)?;
        self.vmas.check(start, end, |_| true).map_err(|addr| MmError::NotMapped { addr })?;
        Ok((start, end))
    }

    /// `[addr, addr + len)` rounded to pages, if it is a valid user range.
    pub fn range_of(addr: u64, len: u64) -> Option<(u64, u64)> {
        user_range(addr, len).ok()
    }

    /// madvise `HUGEPAGE` / `NOHUGEPAGE`: the range's mappings may (or may
    /// no longer) use blocks and contiguous runs for new faults. The whole
    /// range must be mapped (ENOMEM otherwise, nothing changed).
    pub fn advise_sizes(&mut self, addr: u64, len: u64, on: bool) -> Result<(), MmError> {
        let (start, end) = user_range(addr, len)?;
        room_for(&self.vmas, self.vmas.splits(start, end))?;
        self.vmas.set_sizes(start, end, size::MASK, on).map_err(|addr| MmError::NotMapped { addr })
    }

    /// madvise `COLLAPSE`'s check: the whole range must be mapped. Returns
    /// the block-aligned regions wholly inside it, first and end (none if
    /// the format has no blocks).
    pub fn collapse_range(&self, addr: u64, len: u64) -> Result<(u64, u64), MmError> {
        let (start, end) = user_range(addr, len)?;
        self.vmas.check(start, end, |_| true).map_err(|addr| MmError::NotMapped { addr })?;
        let Some(b) = self.pt.format().block_size() else { return Ok((start, start)) };
        let (lo, hi) = (start.next_multiple_of(b), end & !(b - 1));
        Ok(if lo < hi { (lo, hi) } else { (start, start) })
    }

    /// A collapse's first half for the block-aligned region at `region`:
    /// if it holds a level-3 table without swap entries and lies in one
    /// mapping, a zeroed run of frames for the block is taken and the
    /// table unlinked (the caller flushes the region, walk caches
    /// included, then [`Self::collapse_make`]). `Ok(None)`: nothing to
    /// collapse there. `OutOfMemory` when no contiguous frames are free.
    pub fn collapse_begin(&mut self, mem: &impl PhysMem, region: u64) -> Result<Option<(u64, u64)>, MmError> {
        let f = self.pt.format();
        let Some(b) = f.block_size() else { return Ok(None) };
        let Some(vma) = self.vmas.find(region).filter(|v| v.end >= region + b) else { return Ok(None) };
        let _ = vma;
        let Some(table) = self.pt.level3_table(mem, region) else { return Ok(None) };
        if self.pt.has_swap(mem, table) {
            return Ok(None);
        }
        let new = mem.alloc_contig((b / PAGE_SIZE).trailing_zeros()).ok_or(MmError::OutOfMemory)?;
        self.pt.unlink_table(mem, region);
        Ok(Some((table, new)))
    }

    /// A collapse's second half, after the flush: the pages go into the
    /// block's frames, the block is mapped with the mapping's protection,
    /// and the old frames and table are released.
    pub fn collapse_make(&mut self, mem: &impl PhysMem, region: u64, table: u64, new: u64) {
        self.pt.drain_detached(mem, table, new);
        let prot = self.vmas.find(region).map_or(0, |v| v.prot);
        self.pt.replace_block(mem, region, block_desc(new, user_attrs(prot)));
        self.large = true;
    }

    /// The flush a collapse needs: the region's pages and the walk-cache
    /// entries of its unlinked table.
    pub fn collapse_flush_range(&self, region: u64) -> FlushRange {
        let b = self.pt.format().block_size().expect("a block in this format");
        FlushRange { start: region, end: region + b, stride: PAGE_SIZE, tables_freed: true, leaf_level: None }
    }

    /// The block or contiguous run that `at` falls strictly inside of (a
    /// range starting or ending at `at` cuts it), if any.
    pub fn straddler(&self, mem: &impl PhysMem, at: u64) -> Option<Split> {
        if let Some((base, _)) = self.pt.block(mem, at) {
            return (base < at).then_some(Split::Block { base });
        }
        let cs = self.pt.format().cont_size();
        let base = at & !(cs - 1);
        let e = self.pt.leaf_entry(mem, at)?;
        (base < at && is_cont(e)).then_some(Split::Run { base })
    }

    /// The split that a fault at `page` needs before it may change the
    /// page's entry alone (the page is in a block or a contiguous run).
    pub fn split_for(&self, mem: &impl PhysMem, page: u64) -> Option<Split> {
        if let Some((base, _)) = self.pt.block(mem, page) {
            return Some(Split::Block { base });
        }
        let base = page & !(self.pt.format().cont_size() - 1);
        self.pt.leaf_entry(mem, page).filter(|&e| is_cont(e)).map(|_| Split::Run { base })
    }

    /// What a split clears and must flush: the block (one entry, level 2)
    /// or every page of the run.
    pub fn split_flush_range(&self, s: Split) -> FlushRange {
        let f = self.pt.format();
        match s {
            Split::Block { base } => {
                let size = f.block_size().expect("a block in this format");
                FlushRange { start: base, end: base + size, stride: size, tables_freed: false, leaf_level: Some(2) }
            }
            Split::Run { base } => FlushRange {
                start: base,
                end: base + f.cont_size(),
                stride: PAGE_SIZE,
                tables_freed: false,
                leaf_level: Some(LEAF_LEVEL as u8),
            },
        }
    }

    /// A split's first half. Prepares the replacement (a block's level-3
    /// table, filled: ENOMEM without a frame for it, nothing changed), then
    /// either clears the entries (break-before-make: the caller flushes
    /// [`Self::split_flush_range`], then [`Self::split_make`]), or with
    /// `no_break` (FEAT_BBM level 2) writes the replacement over them at
    /// once (the caller still flushes: the old entry may be cached). Returns
    /// what `split_make` needs: the table, or the run's first entry.
    pub fn split_break(&mut self, mem: &impl PhysMem, s: Split, no_break: bool) -> Result<u64, MmError> {
        match s {
            Split::Block { base } => {
                let (_, block) = self.pt.block(mem, base).expect("the block to split");
                let table = self.pt.split_table(mem, block).map_err(|_| MmError::OutOfMemory)?;
                // Its pages are plain pages from now on: the reverse map
                // learns them (reclaim takes plain pages only).
                let page = self.pt.format().level_size(LEAF_LEVEL);
                for i in 0..self.pt.format().entries() as u64 {
                    mem.rmap_set(desc_pa(block) + i * page, self.anon, base + i * page);
                }
                if no_break {
                    self.pt.link_table(mem, base, table);
                } else {
                    self.pt.replace_block(mem, base, 0);
                }
                Ok(table)
            }
            Split::Run { base } => {
                let first = self.pt.leaf_entry(mem, base).filter(|&e| is_cont(e)).expect("the run to unfold");
                let plain = first & !CONT;
                self.pt.set_run(mem, base, if no_break { plain } else { 0 });
                Ok(plain)
            }
        }
    }

    /// A split's second half, after the flush: links the table, or writes
    /// the run's pages back without the contiguous bit. Nothing after a
    /// `no_break` split.
    pub fn split_make(&mut self, mem: &impl PhysMem, s: Split, made: u64) {
        match s {
            Split::Block { base } => self.pt.link_table(mem, base, made),
            Split::Run { base } => {
                self.pt.set_run(mem, base, made);
            }
        }
    }

    /// mprotect's mapping change: the whole range must be mapped (else
    /// ENOMEM and nothing changes; Linux may change a prefix). Returns the
    /// range whose present leaves [`Self::protect_step`] then updates.
    pub fn protect_vmas(&mut self, addr: u64, len: u64, prot: u64) -> Result<(u64, u64), MmError> {
        if prot & !prot::ALL != 0 {
            return Err(MmError::BadProt(prot));
        }
        let (start, end) = user_range(addr, len)?;
        self.vmas.check(start, end, |_| true).map_err(|addr| MmError::NotMapped { addr })?;
        room_for(&self.vmas, self.vmas.splits(start, end))?;
        self.vmas.protect(start, end, prot).map_err(|addr| MmError::NotMapped { addr })?;
        Ok((start, end))
    }

    /// One page-table write of a zap (see [`ZapCursor`]), unlinking emptied
    /// tables as `tables` allows; `None` when the zap is done. With `run`,
    /// a leaf cleared goes on with its table's next ones
    /// ([`ZapCursor::step_run`]).
    pub fn zap_step<M: PhysMem>(
        &mut self,
        c: &mut ZapCursor,
        tables: ZapTables,
        mem: &M,
        g: &mut Gather,
        run: bool,
    ) -> Option<ZapEdit> {
        let vmas = &self.vmas;
        let mapped = |s: u64, e: u64| !vmas.is_free(s, e);
        let free = match tables {
            ZapTables::Never => TableFree::Never,
            ZapTables::Unmapped => TableFree::Unmapped(&mapped),
            ZapTables::All => TableFree::All,
        };
        if run {
            c.step_run(&mut self.pt, mem, &free, g)
        } else {
            c.step(&mut self.pt, mem, &free, g)
        }
    }

    /// One leaf of an mprotect to `prot`: the next present leaf of the
    /// cursor gets the new permissions. Entries that lose a permission are
    /// recorded in `g` as needing a flush; entries that only gain are counted
    /// as upgrades and need none: a CPU with the old, stricter entry cached
    /// takes a fault and the fault handler reports it spurious. A page still
    /// shared copy-on-write stays read-only even when the range becomes
    /// writable. `false` when no leaf is left.
    ///
    /// A block (wholly in range: the call split those its ends cut) gets
    /// the new permissions as one entry. The pages of a contiguous run get
    /// them all at its first page, the same for each (writable only if no
    /// page of the run is shared): a run's entries must never differ, or
    /// the TLB may keep either.
    pub fn protect_step<M: PhysMem>(&mut self, c: &mut LeafCursor, prot: u64, mem: &M, g: &mut Gather) -> bool {
        let Some((va, old)) = c.next(&self.pt, mem) else { return false };
        let f = self.pt.format();
        if is_block(old) {
            let size = f.block_size().expect("a block in this format");
            let new = block_for(mem, desc_pa(old), size, prot);
            if new != old {
                if lost_permission(old, new) {
                    g.protect_block(va, BLOCK_LEVEL, size);
                } else {
                    g.upgrade_leaf();
                }
                self.pt.replace_block(mem, va, new);
            }
            return true;
        }
        if is_cont(old) {
            let cs = f.cont_size();
            if va % cs != 0 {
                return true; // done with the run's first page
            }
            let n = f.cont_entries();
            let entries = self.pt.run_entries(mem, va).expect("the run's table");
            let shared = entries[..n].iter().any(|&e| mem.refs(desc_pa(e)) > 1);
            let mut new = page_desc(desc_pa(old), user_attrs(prot)) | CONT;
            if shared && el0_can_write(new) {
                new |= AP_RO;
            }
            if new != old {
                if lost_permission(old, new) {
                    g.protect_leaves(va, va + cs - PAGE_SIZE, LEAF_LEVEL, n as u64);
                } else {
                    g.upgrade_leaf();
                }
                self.pt.set_run(mem, va, new);
            }
            return true;
        }
        let new = leaf_for(mem, desc_pa(old), prot);
        if new != old {
            if lost_permission(old, new) {
                g.protect_leaf(va, LEAF_LEVEL);
            } else {
                g.upgrade_leaf();
            }
            self.pt.replace_leaf(mem, va, new);
        }
        true
    }

    /// fork's start: a child with the same mappings and an empty tree.
    pub fn fork_begin(&self, mem: &impl PhysMem) -> Result<AddressSpace<F>, MmError> {
        let mut child = AddressSpace::new_in(self.pt.format(), mem)?;
        child.vmas = self.vmas.clone();
        child.anon = self.anon;
        child.large = self.large;
        Ok(child)
    }

    /// One page of a fork: the next present leaf is shared with `child`
    /// (one more reference; `hint` keeps the child's table it went into),
    /// read-only in both (a swap entry is copied, one more reference to
    /// its slot); a leaf that was writable is
    /// recorded in `g`: the parent's stale writable entries must be flushed
    /// before the lock drops and before the child runs. `Ok(false)` when no
    /// leaf is left. Out of frames for the child's tables: ENOMEM (the
    /// caller discards the child; parent pages already write-protected stay
    /// so, and their next write fault finds them unshared and makes them
    /// writable in place).
    pub fn fork_step<M: PhysMem>(
        &mut self,
        child: &mut AddressSpace<F>,
        c: &mut LeafCursor,
        hint: &mut MapHint,
        mem: &M,
        g: &mut Gather,
    ) -> Result<bool, MmError> {
        self.fork_steps(child, c, hint, mem, g, false)
    }

    /// [`Self::fork_step`], and with `run` the present leaves after it in
    /// the same level-3 table too, as the steps after it would (for
    /// callers that run the fork to the end anyway). `Ok(true)` when
    /// leaves may remain.
    #[inline(always)]
    pub fn fork_steps<M: PhysMem>(
        &mut self,
        child: &mut AddressSpace<F>,
        c: &mut LeafCursor,
        hint: &mut MapHint,
        mem: &M,
        g: &mut Gather,
        run: bool,
    ) -> Result<bool, MmError> {
        let Some((va, desc)) = c.next_or_swap(&self.pt, mem) else { return Ok(false) };
        if is_block(desc) {
            // Shared read-only as a whole: one more reference to each frame.
            let f = self.pt.format();
            let size = f.block_size().expect("a block in this format");
            let ro = desc | AP_RO;
            child.pt.map_block(mem, va, ro).map_err(|_| MmError::OutOfMemory)?;
            let pa = desc_pa(desc);
            for i in 0..size / PAGE_SIZE {
                mem.get(pa + i * PAGE_SIZE);
            }
            if ro != desc {
                g.protect_block(va, BLOCK_LEVEL, size);
                self.pt.replace_block(mem, va, ro);
            }
            return Ok(true);
        }
        if is_swap(desc) {
            // The child gets its own reference to the slot.
            child.pt.map_hinted(mem, va, desc, hint).map_err(|_| MmError::OutOfMemory)?;
            mem.swap_dup(swap_slot(desc));
            return Ok(true);
        }
        let ro = desc | AP_RO;
        child.pt.map_hinted(mem, va, ro, hint).map_err(|_| MmError::OutOfMemory)?;
        mem.get(desc_pa(desc));
        if ro != desc {
            g.protect_leaf(va, LEAF_LEVEL);
            c.replace_last(&mut self.pt, mem, ro);
        }
        if run {
            // The rest of this level-3 table goes into the child's table
            // that the hint now holds (the same region).
            let table = hint.table().expect("map_hinted filled the hint");
            c.share_rest(&mut self.pt, mem, table, g).map_err(|_| MmError::OutOfMemory)?;
        }
        Ok(true)
    }

    /// Tears down an address space that no TLB can hold entries of (never
    /// loaded): nothing to flush, so everything goes at once.
    pub fn discard(self, mem: &impl PhysMem) {
        let mut g = Gather::new();
        self.teardown(mem, &mut g, &mut no_flush);
        let _ = g.finish(mem, no_flush);
    }

    // Whole calls, for the loader and the tests.

    /// mmap ([`Self::map_vmas`], then the zap of a fixed mapping).
    #[allow(clippy::too_many_arguments)]
    pub fn mmap<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) -> Result<u64, MmError> {
        if flags & map::FIXED != 0 {
            self.split_edges(addr, len, mem, flush)?;
        }
        let (start, zap) = self.map_vmas(addr, len, prot, flags)?;
        if let Some((s, e)) = zap {
            self.zap_all(s, e, ZapTables::Never, mem, g, flush);
        }
        Ok(start)
    }

    /// munmap ([`Self::unmap_vmas`], then the zap).
    pub fn munmap<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) -> Result<(), MmError> {
        self.split_edges(addr, len, mem, flush)?;
        let (s, e) = self.unmap_vmas(addr, len)?;
        self.zap_all(s, e, ZapTables::Unmapped, mem, g, flush);
        Ok(())
    }

    /// mprotect ([`Self::protect_vmas`], then every leaf).
    /// Blocks and runs its ends cut are split first, flushed through
    /// `flush`.
    pub fn mprotect<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) -> Result<(), MmError> {
        self.split_edges(addr, len, mem, flush)?;
        let (s, e) = self.protect_vmas(addr, len, prot)?;
        let mut c = LeafCursor::new(s, e);
        while self.protect_step(&mut c, prot, mem, g) {}
        Ok(())
    }

    /// madvise ([`Self::dontneed_range`], then the zap).
    #[allow(clippy::too_many_arguments)]
    pub fn madvise<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        advice: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) -> Result<(), MmError> {
        let (s, e) = self.dontneed_range(addr, len, advice)?;
        self.split_edges(addr, len, mem, flush)?;
        self.zap_all(s, e, ZapTables::Never, mem, g, flush);
        Ok(())
    }

    /// fork ([`Self::fork_begin`], then every leaf; the child is undone on
    /// failure).
    pub fn fork(&mut self, mem: &impl PhysMem, g: &mut Gather) -> Result<AddressSpace<F>, MmError> {
        let mut child = self.fork_begin(mem)?;
        let mut c = LeafCursor::new(0, self.pt.format().span());
        let mut hint = MapHint::default();
        loop {
            match self.fork_step(&mut child, &mut c, &mut hint, mem, g) {
                Ok(true) => {}
                Ok(false) => return Ok(child),
                Err(e) => {
                    child.discard(mem);
                    return Err(e);
                }
            }
        }
    }

    /// Splits the blocks and runs the ends of `[addr, addr + len)` cut,
    /// each flushed through `flush` between its halves (the whole calls'
    /// form of the protocol's split steps). Nothing for a bad range: the
    /// call reports it.
    fn split_edges<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        mem: &M,
        flush: &mut Fl,
    ) -> Result<(), MmError> {
        let Some((s, e)) = Self::range_of(addr, len) else { return Ok(()) };
        while let Some(at) = self.straddler(mem, s).or_else(|| self.straddler(mem, e)) {
            let made = self.split_break(mem, at, false)?;
            flush(Some(self.split_flush_range(at)));
            self.split_make(mem, at, made);
        }
        Ok(())
    }

    /// A zap of `[start, end)` run to the end, flushing through `flush`
    /// when the gather fills.
    fn zap_all<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        start: u64,
        end: u64,
        tables: ZapTables,
        mem: &M,
        g: &mut Gather,
        flush: &mut Fl,
    ) {
        let mut c = ZapCursor::new(start, end);
        while self.zap_step(&mut c, tables, mem, g, false).is_some() {
            if g.is_full() {
                g.flush_partial(mem, &mut *flush);
            }
        }
    }

    /// For the kernel's user-copy routines: every byte of `[va, va + len)`
    /// lies in a mapping that allows reading (or writing). Pages need not be
    /// present: the copy's faults fill them. Length 0 is always fine.
    pub fn check_user_range(&self, va: u64, len: u64, write: bool) -> Result<(), MmError> {
        if len == 0 {
            return Ok(());
        }
        let end = va.checked_add(len).filter(|&e| e <= USER_END).ok_or(MmError::BadUserAddress { addr: va })?;
        let access = if write { Access::Write } else { Access::Read };
        let ok = |v: &Vma| prot_allows(v.prot, access);
        self.vmas.check(va, end, ok).map_err(|addr| MmError::BadUserAddress { addr: addr.max(va) })
    }

    /// exit: clears every page and frees every page-table page, the root
    /// included, through `g` (batches flush through `flush`). Before `g`
    /// finishes, every CPU must have switched TTBR0 away from
    /// [`Self::root_pa`] (docs/mechanisms.md §4): the root is referenced by
    /// nothing else the flush could cover.
    pub fn teardown<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(self, mem: &M, g: &mut Gather, flush: &mut Fl) {
        self.pt.destroy(mem, g, flush);
    }

    /// The reaper's mapping change: every mapping goes; returns the whole
    /// range to zap ([`ZapTables::Unmapped`]: every emptied table goes but
    /// the root, which the process keeps until it exits).
    pub fn unmap_all(&mut self) -> (u64, u64) {
        self.vmas = VmaSet::new();
        (0, self.pt.format().span())
    }

    /// Takes the page table out for a teardown run step by step (the
    /// address space is left a placeholder).
    pub fn take_tables(&mut self) -> PageTable<F> {
        self.vmas = VmaSet::new();
        let fmt = self.pt.format();
        core::mem::replace(&mut self.pt, PageTable::empty_in(fmt))
    }
}

/// Whether going from leaf `old` to `new` takes away a permission EL0 had
/// (then stale entries must be flushed).
fn lost_permission(old: u64, new: u64) -> bool {
    let (old, new) = (as_page(old), as_page(new));
    [Access::Read, Access::Write, Access::Exec].iter().any(|&a| desc_allows(old, a) && !desc_allows(new, a))
}

/// A block descriptor read as the page descriptor with its attributes
/// (permission checks read the same bits); pages unchanged.
fn as_page(desc: u64) -> u64 {
    if is_block(desc) {
        page_desc(desc_pa(desc), leaf_attrs(desc))
    } else {
        desc
    }
}

/// The block descriptor for the `size` bytes of frames from `pa` in a
/// mapping with `prot`: writable only if no one else holds a reference to
/// any of its frames (after fork each frame has its own count: one side's
/// split and copy of a page leaves the other frames shared).
pub(crate) fn block_for(mem: &impl PhysMem, pa: u64, size: u64, prot: u64) -> u64 {
    let desc = block_desc(pa, user_attrs(prot));
    let shared = (0..size / PAGE_SIZE).any(|i| mem.refs(pa + i * PAGE_SIZE) > 1);
    if el0_can_write(desc | super::pte::TABLE_OR_PAGE) && shared {
        desc | AP_RO
    } else {
        desc
    }
}

/// The leaf for frame `pa` in a mapping with `prot`: writable only if no one
/// else holds a reference (a shared frame is copy-on-write).
fn leaf_for(mem: &impl PhysMem, pa: u64, prot: u64) -> u64 {
    let desc = page_desc(pa, user_attrs(prot));
    if el0_can_write(desc) && mem.refs(pa) > 1 {
        desc | AP_RO
    } else {
        desc
    }
}
