//! The page-fault handler, and kernel-side access to user memory through
//! the page tables.
//!
//! A fault is resolved by looking at the VMA first (is the access allowed
//! at all?) and the leaf second:
//!
//! * no leaf: first touch of anonymous memory, map a zeroed frame (reads
//!   and writes alike; there is no shared zero page);
//! * a swap entry (reclaim took the page): read it back into a new frame,
//!   private to this address space, and drop the entry's reference to the
//!   slot;
//! * a leaf that already allows the access: *spurious*. Another thread
//!   resolved it first, or this CPU still caches an older, stricter entry
//!   (after an mprotect upgrade or a copy-on-write reuse, which flush
//!   nothing). The kernel invalidates the VA locally and returns;
//! * a write to a read-only leaf in a writable VMA: copy-on-write. If this
//!   mm holds the only reference, make the leaf writable in place (a
//!   permission upgrade: no break-before-make, no flush). Otherwise copy the
//!   frame and point the leaf at the copy. That changes the output address
//!   of a live entry, so the architecture requires break-before-make: clear
//!   the entry, flush it from every TLB, then write the new one. Writing the
//!   new entry over the old would let a TLB hold both translations for one
//!   VA (a TLB conflict abort, or reads from the old frame after writes to
//!   the new). The reference to the old frame is dropped only after that
//!   flush, for the reason given in [`crate::mm::gather`].
#![forbid(unsafe_code)]

use super::{desc_allows, leaf_for, prot_allows, AddressSpace, FaultError, MmError, Split};
use crate::mm::gather::FlushRange;
use crate::mm::pagetable::{
    block_desc, desc_pa, is_swap, leaf_attrs, page_desc, swap_slot, Format, PhysMem, BLOCK_LEVEL, LEAF_LEVEL,
};
use crate::mm::pte::{user_attrs, CONT, PAGE_SIZE};
use crate::mm::vma::size;
use abi::USER_END;

/// What the faulting access tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// How a fault was resolved (for the kernel's counters and follow-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// First touch: a zeroed frame was mapped.
    ZeroFill,
    /// The page came back from swap into a new frame.
    SwapIn,
    /// Copy-on-write of a shared frame: copied, the old entry flushed
    /// (through the handler's `flush`) before the new one was written.
    CowCopy,
    /// Copy-on-write with no other sharer left: made writable in place.
    CowReuse,
    /// The entry already allowed the access (or was only missing a
    /// permission the mapping grants): nothing to allocate.
    Spurious,
}

/// A resolved fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: FaultKind,
    /// The page that faulted.
    pub va: u64,
    /// The frame mapped there now.
    pub pa: u64,
}

impl Fault {
    /// This CPU may still cache an older, stricter entry for [`Self::va`]:
    /// invalidate it locally (`TLBI VALE1` with the mm's ASID) before
    /// returning to user space, or the access may fault again.
    pub fn local_invalidate(&self) -> bool {
        matches!(self.kind, FaultKind::CowReuse | FaultKind::Spurious)
    }
}

/// What resolving a fault takes, decided under the lock before anything
/// changes (so the TLB protocol can flush first when it must).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPlan {
    /// First touch: map a zeroed frame at `page` ([`AddressSpace::zero_fill`]).
    ZeroFill { page: u64, prot: u64 },
    /// Write `desc` at `page` in place: only permissions change (or nothing,
    /// when `kind` is spurious): no break-before-make.
    InPlace { page: u64, desc: u64, kind: FaultKind },
    /// Copy-on-write copy of a shared frame: [`AddressSpace::duplicate`],
    /// then break (clear, flush), make (map the copy), put the old frame.
    Copy { page: u64, prot: u64 },
    /// Read swap slot `slot` back into a new frame at `page`
    /// ([`AddressSpace::swap_in`]).
    SwapIn { page: u64, slot: u64, prot: u64 },
    /// First touch in a block-aligned region of a mapping that may use
    /// blocks, wholly inside it and empty: map a zeroed block at `base`
    /// ([`AddressSpace::zero_fill_block`]; a plain page at `page` when no
    /// contiguous run of frames is free).
    ZeroFillBlock { base: u64, page: u64, prot: u64 },
    /// As [`Self::ZeroFillBlock`] for a contiguous run.
    ZeroFillRun { base: u64, page: u64, prot: u64 },
    /// The page's entry must change alone, but it is part of a block or a
    /// run: split that first (break-before-make), then decide again.
    Split(Split),
    /// Copy-on-write of a shared block as a whole: a copy of the block,
    /// then break, make and put as for a page (`mm.block_cow=copy`; the
    /// caller turns it into [`Self::Split`] otherwise).
    CopyBlock { base: u64, prot: u64 },
}

impl<F: Format> AddressSpace<F> {
    /// Decides how to resolve a fault at `va` for `access` (see the module
    /// docs); changes nothing.
    pub fn fault_plan(&self, va: u64, access: Access, mem: &impl PhysMem) -> Result<FaultPlan, FaultError> {
        if va >= USER_END {
            return Err(FaultError::KernelAddress);
        }
        let vma = *self.vmas.find(va).ok_or(FaultError::Unmapped)?;
        if !prot_allows(vma.prot, access) {
            return Err(FaultError::Protection);
        }
        let page = va & !(PAGE_SIZE - 1);
        let Some(old) = self.pt.lookup(mem, page) else {
            if let Some(e) = self.pt.leaf_entry(mem, page).filter(|&e| is_swap(e)) {
                return Ok(FaultPlan::SwapIn { page, slot: swap_slot(e), prot: vma.prot });
            }
            let f = self.pt.format();
            let inside = |base: u64, len: u64| vma.start <= base && base + len <= vma.end;
            if let Some(b) = f.block_size().filter(|_| vma.prot & size::BLOCK != 0) {
                let base = page & !(b - 1);
                if inside(base, b) && self.pt.block_slot_empty(mem, base) {
                    return Ok(FaultPlan::ZeroFillBlock { base, page, prot: vma.prot });
                }
            }
            if vma.prot & size::CONT != 0 {
                let cs = f.cont_size();
                let base = page & !(cs - 1);
                let empty = || match self.pt.run_entries(mem, base) {
                    Some(e) => e[..f.cont_entries()].iter().all(|&d| d == 0),
                    None => self.pt.block(mem, base).is_none(),
                };
                if inside(base, cs) && empty() {
                    return Ok(FaultPlan::ZeroFillRun { base, page, prot: vma.prot });
                }
            }
            return Ok(FaultPlan::ZeroFill { page, prot: vma.prot });
        };
        if desc_allows(old, access) {
            return Ok(FaultPlan::InPlace { page, desc: old, kind: FaultKind::Spurious });
        }
        let want = leaf_for(mem, desc_pa(old), vma.prot);
        if let Some(split) = self.split_for(mem, page) {
            // A block whose frames are all ours only changes permissions,
            // as one entry; anything else changes one page alone. (All of
            // them: a fork's child that split its copy of the block and
            // copied a page leaves that frame ours alone, the others
            // still shared.)
            return Ok(match split {
                Split::Block { base } => {
                    let (_, block) = self.pt.block(mem, base).expect("the block");
                    let size = self.pt.format().block_size().expect("a block in this format");
                    let whole = super::block_for(mem, desc_pa(block), size, vma.prot);
                    let want = page_desc(desc_pa(old), leaf_attrs(whole));
                    if desc_allows(want, access) {
                        let kind = if access == Access::Write { FaultKind::CowReuse } else { FaultKind::Spurious };
                        FaultPlan::InPlace { page, desc: want, kind }
                    } else {
                        FaultPlan::CopyBlock { base, prot: vma.prot }
                    }
                }
                Split::Run { .. } => FaultPlan::Split(split),
            });
        }
        if desc_allows(want, access) {
            // Only permissions change: the frame is ours alone, or the entry
            // lacked a read/exec permission the VMA grants (not expected:
            // mprotect updates present leaves).
            let kind = if access == Access::Write { FaultKind::CowReuse } else { FaultKind::Spurious };
            return Ok(FaultPlan::InPlace { page, desc: want, kind });
        }
        Ok(FaultPlan::Copy { page, prot: vma.prot })
    }

    /// Maps a zeroed frame at `page` (no leaf there). Returns the frame.
    pub fn zero_fill(&mut self, mem: &impl PhysMem, page: u64, prot: u64) -> Result<u64, FaultError> {
        let pa = mem.alloc_zeroed().ok_or(FaultError::OutOfMemory)?;
        if self.pt.map(mem, page, page_desc(pa, user_attrs(prot))).is_err() {
            // Only OutOfMemory is possible: the leaf was absent.
            mem.put(pa);
            mem.free(pa);
            return Err(FaultError::OutOfMemory);
        }
        mem.rmap_set(pa, self.anon, page);
        Ok(pa)
    }

    /// Reads swap slot `slot` (the entry at `page`) back into a new frame
    /// mapped there with `prot`, and drops the entry's reference to the
    /// slot. Returns the frame. `SwapBusy`, changing nothing, while the
    /// slot's contents are not written yet.
    pub fn swap_in(&mut self, mem: &impl PhysMem, page: u64, slot: u64, prot: u64) -> Result<u64, FaultError> {
        let pa = mem.alloc_zeroed().ok_or(FaultError::OutOfMemory)?;
        if !mem.swap_read(slot, pa) {
            mem.put(pa);
            mem.free(pa);
            return Err(FaultError::SwapBusy);
        }
        // The swap entry sits in the leaf slot: its table exists. No TLB
        // holds an entry for an invalid one: no break-before-make.
        self.pt.replace_leaf(mem, page, page_desc(pa, user_attrs(prot)));
        mem.swap_free(slot);
        mem.rmap_set(pa, self.anon, page);
        Ok(pa)
    }

    /// Maps a zeroed block at `base` (its level-2 slot empty). Returns the
    /// first frame; `OutOfMemory` when no contiguous run of frames (or no
    /// frame for a table above it) is free, nothing changed.
    pub fn zero_fill_block(&mut self, mem: &impl PhysMem, base: u64, prot: u64) -> Result<u64, FaultError> {
        let f = self.pt.format();
        let size = f.block_size().ok_or(FaultError::OutOfMemory)?;
        let order = (size / PAGE_SIZE).trailing_zeros();
        let pa = mem.alloc_contig(order).ok_or(FaultError::OutOfMemory)?;
        if self.pt.map_block(mem, base, block_desc(pa, user_attrs(prot))).is_err() {
            free_run(mem, pa, order);
            return Err(FaultError::OutOfMemory);
        }
        self.large = true;
        Ok(pa)
    }

    /// Maps a zeroed contiguous run at `base` (its entries empty), as
    /// [`Self::zero_fill_block`].
    pub fn zero_fill_run(&mut self, mem: &impl PhysMem, base: u64, prot: u64) -> Result<u64, FaultError> {
        let f = self.pt.format();
        let order = f.cont_entries().trailing_zeros();
        let pa = mem.alloc_contig(order).ok_or(FaultError::OutOfMemory)?;
        // The table may not exist yet: map the first page, then the run.
        let first = page_desc(pa, user_attrs(prot)) | CONT;
        if self.pt.map(mem, base, first).is_err() {
            free_run(mem, pa, order);
            return Err(FaultError::OutOfMemory);
        }
        self.pt.set_run(mem, base, first);
        self.large = true;
        for i in 0..1u64 << order {
            mem.rmap_set(pa + i * PAGE_SIZE, self.anon, base + i * PAGE_SIZE);
        }
        Ok(pa)
    }

    /// A private copy of the block at `base`, not mapped yet: its first
    /// frame. `OutOfMemory` when no contiguous run of frames is free.
    pub fn duplicate_block(&self, mem: &impl PhysMem, base: u64) -> Result<u64, FaultError> {
        self.pt.duplicate_block(mem, base).map_err(|_| FaultError::OutOfMemory)
    }

    /// Break of a block copy-on-write: clears the block at `base`; returns
    /// its first frame (each frame still referenced: [`Self::put_old_block`]
    /// after the flush).
    pub fn cow_break_block(&mut self, mem: &impl PhysMem, base: u64) -> u64 {
        desc_pa(self.pt.replace_block(mem, base, 0).expect("the block was present"))
    }

    /// Make of a block copy-on-write: maps the copy `new` at `base`.
    pub fn cow_make_block(&mut self, mem: &impl PhysMem, base: u64, new: u64, prot: u64) {
        self.pt.replace_block(mem, base, block_desc(new, user_attrs(prot)));
    }

    /// Drops the old block's reference to each of its frames after the
    /// flush.
    pub fn put_old_block(&self, mem: &impl PhysMem, old: u64) {
        let size = self.pt.format().block_size().expect("a block in this format");
        for i in 0..size / PAGE_SIZE {
            Self::put_old(mem, old + i * PAGE_SIZE);
        }
    }

    /// Writes `desc` at `page` in place (a [`FaultPlan::InPlace`]); in a
    /// block, the block gets `desc`'s attributes (only permissions change).
    pub fn set_leaf(&mut self, mem: &impl PhysMem, page: u64, desc: u64) {
        if let Some((base, block)) = self.pt.block(mem, page) {
            self.pt.replace_block(mem, base, block_desc(desc_pa(block), leaf_attrs(desc)));
            return;
        }
        self.pt.replace_leaf(mem, page, desc);
    }

    /// A private copy of the frame at `page`, not mapped yet.
    pub fn duplicate(&self, mem: &impl PhysMem, page: u64) -> Result<u64, FaultError> {
        self.pt.duplicate(mem, page).map_err(|_| FaultError::OutOfMemory)
    }

    /// Break: clears the leaf at `page`; returns the frame it mapped (still
    /// referenced: [`Self::put_old`] after the flush).
    pub fn cow_break(&mut self, mem: &impl PhysMem, page: u64) -> u64 {
        desc_pa(self.pt.replace_leaf(mem, page, 0).expect("the leaf was present"))
    }

    /// Make: maps the copy `new` at `page`.
    pub fn cow_make(&mut self, mem: &impl PhysMem, page: u64, new: u64, prot: u64) {
        self.pt.replace_leaf(mem, page, page_desc(new, user_attrs(prot)));
        mem.rmap_set(new, self.anon, page);
    }

    /// The flush a block copy-on-write needs between its break and make.
    pub fn cow_flush_block_range(&self, base: u64) -> FlushRange {
        self.split_flush_range(Split::Block { base })
    }

    /// The flush break-before-make needs between [`Self::cow_break`] and
    /// [`Self::cow_make`]: the one page, leaf only.
    pub fn cow_flush_range(page: u64) -> FlushRange {
        FlushRange {
            start: page,
            end: page + PAGE_SIZE,
            stride: PAGE_SIZE,
            tables_freed: false,
            leaf_level: Some(LEAF_LEVEL as u8),
        }
    }

    /// Level of a block's entry (for the TTL hint of its flush).
    pub const BLOCK_LEVEL: u32 = BLOCK_LEVEL;

    /// Drops the old frame's reference after the flush (it is freed if the
    /// other sharers went meanwhile).
    pub fn put_old(mem: &impl PhysMem, old: u64) {
        if mem.put(old) {
            mem.free(old);
        }
    }

    /// Resolves a fault at `va` for `access` (the plan run to the end).
    /// `flush` is called at most once, for the one page of a copy-on-write
    /// copy, and must complete the invalidation on every CPU before it
    /// returns. On any error nothing has changed.
    pub fn handle_fault<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        va: u64,
        access: Access,
        mem: &M,
        flush: &mut Fl,
    ) -> Result<Fault, FaultError> {
        match self.fault_plan(va, access, mem)? {
            FaultPlan::ZeroFill { page, prot } => {
                let pa = self.zero_fill(mem, page, prot)?;
                Ok(Fault { kind: FaultKind::ZeroFill, va: page, pa })
            }
            FaultPlan::InPlace { page, desc, kind } => {
                self.set_leaf(mem, page, desc);
                Ok(Fault { kind, va: page, pa: desc_pa(desc) })
            }
            FaultPlan::Copy { page, prot } => {
                let new = self.cow_copy(mem, page, prot, flush)?;
                Ok(Fault { kind: FaultKind::CowCopy, va: page, pa: new })
            }
            FaultPlan::SwapIn { page, slot, prot } => {
                let pa = self.swap_in(mem, page, slot, prot)?;
                Ok(Fault { kind: FaultKind::SwapIn, va: page, pa })
            }
            FaultPlan::ZeroFillBlock { base, page, prot } => {
                let pa = match self.zero_fill_block(mem, base, prot) {
                    Ok(pa) => pa + (page - base),
                    Err(_) => self.zero_fill(mem, page, prot)?,
                };
                Ok(Fault { kind: FaultKind::ZeroFill, va: page, pa })
            }
            FaultPlan::ZeroFillRun { base, page, prot } => {
                let pa = match self.zero_fill_run(mem, base, prot) {
                    Ok(pa) => pa + (page - base),
                    Err(_) => self.zero_fill(mem, page, prot)?,
                };
                Ok(Fault { kind: FaultKind::ZeroFill, va: page, pa })
            }
            FaultPlan::Split(s) => {
                self.split_now(mem, s, flush)?;
                self.handle_fault(va, access, mem, flush)
            }
            FaultPlan::CopyBlock { base, .. } => {
                self.split_now(mem, Split::Block { base }, flush)?;
                self.handle_fault(va, access, mem, flush)
            }
        }
    }

    /// A split run to the end, with `flush` between its halves.
    fn split_now<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        mem: &M,
        s: Split,
        flush: &mut Fl,
    ) -> Result<(), FaultError> {
        let made = self.split_break(mem, s, false).map_err(|_| FaultError::OutOfMemory)?;
        flush(Some(self.split_flush_range(s)));
        self.split_make(mem, s, made);
        Ok(())
    }

    /// Replaces the shared frame at `page` by a private copy, with
    /// break-before-make. Returns the new frame.
    fn cow_copy<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        mem: &M,
        page: u64,
        prot: u64,
        flush: &mut Fl,
    ) -> Result<u64, FaultError> {
        let new = self.duplicate(mem, page)?;
        let old = self.cow_break(mem, page);
        flush(Some(Self::cow_flush_range(page)));
        self.cow_make(mem, page, new, prot);
        Self::put_old(mem, old);
        Ok(new)
    }

    /// Makes sure the page at `page` (in a VMA with `prot`) is present and
    /// private to this mm, without granting permissions: for kernel writes.
    /// A shared page of a block or run is split out first.
    fn private_frame<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        mem: &M,
        page: u64,
        prot: u64,
        flush: &mut Fl,
    ) -> Result<(), FaultError> {
        match self.pt.lookup(mem, page) {
            None => self.zero_fill(mem, page, prot).map(drop),
            Some(d) if mem.refs(desc_pa(d)) > 1 => {
                if let Some(s) = self.split_for(mem, page) {
                    self.split_now(mem, s, flush)?;
                }
                self.cow_copy(mem, page, prot, flush).map(drop)
            }
            Some(_) => Ok(()),
        }
    }

    /// Kernel-side write of `data` at user address `va`, through the page
    /// tables: missing pages are filled, shared ones copied, regardless of
    /// the mappings' protection (the program loader writes read-only text;
    /// for copies on a process's behalf check [`Self::check_user_range`]
    /// first). Every page must lie in a mapping.
    pub fn write_bytes<M: PhysMem, Fl: FnMut(Option<FlushRange>)>(
        &mut self,
        va: u64,
        data: &[u8],
        mem: &M,
        flush: &mut Fl,
    ) -> Result<(), FaultError> {
        let mut done = 0;
        while done < data.len() {
            let at = va.checked_add(done as u64).filter(|&a| a < USER_END).ok_or(FaultError::KernelAddress)?;
            let page = at & !(PAGE_SIZE - 1);
            let n = ((page + PAGE_SIZE - at) as usize).min(data.len() - done);
            let prot = self.vmas.find(at).ok_or(FaultError::Unmapped)?.prot;
            self.private_frame(mem, page, prot, flush)?;
            let wrote = self.pt.write(mem, at, &data[done..done + n]);
            debug_assert!(wrote, "page {page:#x} was just made present");
            done += n;
        }
        Ok(())
    }

    /// Kernel-side read of user memory at `va` into `buf`, regardless of
    /// protection; pages not yet touched read as zeroes. Every page must lie
    /// in a mapping (EFAULT otherwise).
    pub fn read_bytes(&self, va: u64, buf: &mut [u8], mem: &impl PhysMem) -> Result<(), MmError> {
        let end = va.checked_add(buf.len() as u64).filter(|&e| e <= USER_END);
        let end = end.ok_or(MmError::BadUserAddress { addr: va })?;
        self.vmas.check(va, end, |_| true).map_err(|addr| MmError::BadUserAddress { addr: addr.max(va) })?;
        let mut done = 0;
        while done < buf.len() {
            let at = va + done as u64;
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            if !self.pt.read(mem, at, chunk) {
                chunk.fill(0);
            }
            done += n;
        }
        Ok(())
    }

    /// The 8-byte word at `va` (8-aligned) if its page is present: what a
    /// load through the current translation would read. For tests.
    pub fn read_u64(&self, va: u64, mem: &impl PhysMem) -> Option<u64> {
        assert_eq!(va % 8, 0, "read_u64 at unaligned {va:#x}");
        let mut b = [0; 8];
        self.pt.read(mem, va, &mut b).then(|| u64::from_le_bytes(b))
    }

    /// Stores `val` at `va` (8-aligned) through the current translation,
    /// like a store that hit a valid entry: no fault handling, no
    /// copy-on-write, no permission check. False if no page is present. For
    /// tests that model the CPU (they check [`super::desc_allows`] first).
    pub fn write_u64(&mut self, va: u64, val: u64, mem: &impl PhysMem) -> bool {
        assert_eq!(va % 8, 0, "write_u64 at unaligned {va:#x}");
        self.pt.write(mem, va, &val.to_le_bytes())
    }
}

/// Frees a run of `2^order` frames from `pa` that was never mapped.
fn free_run(mem: &impl PhysMem, pa: u64, order: u32) {
    for i in 0..1u64 << order {
        mem.put(pa + i * PAGE_SIZE);
    }
    mem.free_contig(pa, order);
}
