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
pub use fault::{Access, Fault, FaultKind};

use core::convert::Infallible;

use abi::{advice, map, prot, MMAP_BASE, USER_END, USER_STACK_SIZE, USER_STACK_TOP};

use super::gather::{no_flush, FlushRange, Gather};
use super::pagetable::{
    desc_pa, el0_can_exec, el0_can_read, el0_can_write, page_desc, PageTable, PhysMem, TableFree,
    LEAF_LEVEL,
};
use super::pte::{user_attrs, AP_RO, PAGE_SIZE};
use super::vma::{Vma, VmaSet};

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

/// A user address space. Must end in [`AddressSpace::teardown`]: dropping
/// it leaks its frames.
#[derive(Debug)]
pub struct AddressSpace {
    pt: PageTable,
    vmas: VmaSet,
}

impl AddressSpace {
    /// An empty address space (one root table).
    pub fn new(mem: &impl PhysMem) -> Result<Self, MmError> {
        let pt = PageTable::new(mem).ok_or(MmError::OutOfMemory)?;
        Ok(Self { pt, vmas: VmaSet::new() })
    }

    /// A placeholder with no tables, to move a real one out from under a
    /// lock (`mem::replace`). Faults in it fail with OutOfMemory.
    pub const fn empty() -> Self {
        Self { pt: PageTable::empty(), vmas: VmaSet::new() }
    }

    /// The root table's physical address, for TTBR0 (0 for a placeholder).
    pub fn root_pa(&self) -> u64 {
        self.pt.root()
    }

    pub fn vmas(&self) -> &VmaSet {
        &self.vmas
    }

    /// The present leaf descriptor mapping `va`, if any.
    pub fn translate(&self, va: u64, mem: &impl PhysMem) -> Option<u64> {
        self.pt.lookup(mem, va & !(PAGE_SIZE - 1))
    }

    /// mmap: anonymous private memory of `len` bytes (rounded up to pages).
    /// With `map::FIXED` exactly at `addr`, replacing what was there (its
    /// pages are zapped into `g`). Otherwise `addr`, if not 0, is a hint used
    /// when that range is free; else the lowest free range in
    /// `[MMAP_BASE, MMAP_END)`. A hint must itself be a valid range (EINVAL
    /// otherwise; Linux ignores bad hints).
    #[allow(clippy::too_many_arguments)]
    pub fn mmap<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut F,
    ) -> Result<u64, MmError> {
        if prot & !prot::ALL != 0 {
            return Err(MmError::BadProt(prot));
        }
        if flags & !map::ALL != 0 {
            return Err(MmError::BadFlags(flags));
        }
        if len == 0 {
            return Err(MmError::ZeroLength);
        }
        if flags & map::FIXED != 0 {
            if addr == 0 {
                return Err(MmError::FixedAtZero);
            }
            let (start, end) = user_range(addr, len)?;
            room_for(&self.vmas, self.vmas.splits(start, end) + 1)?;
            self.vmas.remove(start, end);
            // The range is mapped again at once: its tables stay.
            self.pt.zap(mem, start, end, &TableFree::Never, g, flush);
            self.vmas.insert(start, end, prot);
            return Ok(start);
        }
        room_for(&self.vmas, 1)?;
        if addr != 0 {
            let (start, end) = user_range(addr, len)?;
            if self.vmas.is_free(start, end) {
                self.vmas.insert(start, end, prot);
                return Ok(start);
            }
        }
        let rounded = page_round(len).ok_or(MmError::NoSpace { len })?;
        let start =
            self.vmas.find_free(rounded, MMAP_BASE, MMAP_END).ok_or(MmError::NoSpace { len })?;
        self.vmas.insert(start, start + rounded, prot);
        Ok(start)
    }

    /// munmap: removes the mappings in the range (holes are fine) and zaps
    /// their pages into `g`; page-table pages that become empty go too.
    pub fn munmap<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut F,
    ) -> Result<(), MmError> {
        let (start, end) = user_range(addr, len)?;
        room_for(&self.vmas, self.vmas.splits(start, end))?;
        self.vmas.remove(start, end);
        let vmas = &self.vmas;
        let mapped = |s: u64, e: u64| !vmas.is_free(s, e);
        self.pt.zap(mem, start, end, &TableFree::Unmapped(&mapped), g, flush);
        Ok(())
    }

    /// mprotect: the whole range must be mapped (else ENOMEM and nothing
    /// changes; Linux may change a prefix). Present pages get the new
    /// permissions at once. Entries that lose a permission are recorded in
    /// `g` as needing a flush; entries that only gain are counted as
    /// upgrades and need none: a CPU with the old, stricter entry cached
    /// takes a fault and [`Self::handle_fault`] reports it spurious. A page
    /// still shared copy-on-write stays read-only even when the range
    /// becomes writable.
    pub fn mprotect(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        mem: &impl PhysMem,
        g: &mut Gather,
    ) -> Result<(), MmError> {
        if prot & !prot::ALL != 0 {
            return Err(MmError::BadProt(prot));
        }
        let (start, end) = user_range(addr, len)?;
        self.vmas.check(start, end, |_| true).map_err(|addr| MmError::NotMapped { addr })?;
        room_for(&self.vmas, self.vmas.splits(start, end))?;
        self.vmas.protect(start, end, prot).map_err(|addr| MmError::NotMapped { addr })?;
        let Ok(()) = self.pt.update_leaves::<_, Infallible>(mem, start, end, |va, old| {
            let new = leaf_for(mem, desc_pa(old), prot);
            if new == old {
                return Ok(None);
            }
            let lost = [Access::Read, Access::Write, Access::Exec]
                .iter()
                .any(|&a| desc_allows(old, a) && !desc_allows(new, a));
            if lost {
                g.protect_leaf(va, LEAF_LEVEL);
            } else {
                g.upgrade_leaf();
            }
            Ok(Some(new))
        });
        Ok(())
    }

    /// madvise. Only `DONTNEED`: drops the pages of the range (into `g`) and
    /// keeps the mappings, so the next touch reads zeroes. The whole range
    /// must be mapped (else ENOMEM and nothing happens; Linux drops the
    /// mapped parts and still says ENOMEM).
    #[allow(clippy::too_many_arguments)]
    pub fn madvise<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        &mut self,
        addr: u64,
        len: u64,
        advice: u64,
        mem: &M,
        g: &mut Gather,
        flush: &mut F,
    ) -> Result<(), MmError> {
        if advice != advice::DONTNEED {
            return Err(MmError::BadAdvice(advice));
        }
        let (start, end) = user_range(addr, len)?;
        self.vmas.check(start, end, |_| true).map_err(|addr| MmError::NotMapped { addr })?;
        // The mappings stay: a fault may fill the range again at any moment,
        // so no table goes (mechanisms.md §3).
        self.pt.zap(mem, start, end, &TableFree::Never, g, flush);
        Ok(())
    }

    /// For the kernel's user-copy routines: every byte of `[va, va + len)`
    /// lies in a mapping that allows reading (or writing). Pages need not be
    /// present: the copy's faults fill them. Length 0 is always fine.
    pub fn check_user_range(&self, va: u64, len: u64, write: bool) -> Result<(), MmError> {
        if len == 0 {
            return Ok(());
        }
        let end = va
            .checked_add(len)
            .filter(|&e| e <= USER_END)
            .ok_or(MmError::BadUserAddress { addr: va })?;
        let access = if write { Access::Write } else { Access::Read };
        let ok = |v: &Vma| prot_allows(v.prot, access);
        self.vmas.check(va, end, ok).map_err(|addr| MmError::BadUserAddress { addr: addr.max(va) })
    }

    /// fork: a child with the same mappings sharing every present frame
    /// (one more reference each). Pages that were writable become read-only
    /// in both, recorded in `g`: the parent's stale writable entries must be
    /// flushed before the lock drops and before the child runs. The child
    /// was never loaded in a TTBR0, so it needs no flush. Out of frames for
    /// the child's tables: ENOMEM, the child is undone; parent pages already
    /// write-protected stay so (their next write fault finds them unshared
    /// and makes them writable in place).
    pub fn fork(&mut self, mem: &impl PhysMem, g: &mut Gather) -> Result<AddressSpace, MmError> {
        let mut child = AddressSpace::new(mem)?;
        child.vmas = self.vmas.clone();
        for v in self.vmas.iter() {
            let shared = self.pt.update_leaves(mem, v.start, v.end, |va, desc| {
                let ro = desc | AP_RO;
                child.pt.map(mem, va, ro).map_err(|_| MmError::OutOfMemory)?;
                mem.get(desc_pa(desc));
                if ro == desc {
                    return Ok(None);
                }
                g.protect_leaf(va, LEAF_LEVEL);
                Ok(Some(ro))
            });
            if let Err(e) = shared {
                child.discard(mem);
                return Err(e);
            }
        }
        Ok(child)
    }

    /// Tears down an address space that no TLB can hold entries of (never
    /// loaded): nothing to flush, so everything goes at once.
    fn discard(self, mem: &impl PhysMem) {
        let mut g = Gather::new();
        self.teardown(mem, &mut g, &mut no_flush);
        let _ = g.finish(mem, no_flush);
    }

    /// exit: clears every page and frees every page-table page, the root
    /// included, through `g` (batches flush through `flush`). Before `g`
    /// finishes, every CPU must have switched TTBR0 away from
    /// [`Self::root_pa`] (mechanisms.md §4): the root is referenced by
    /// nothing else the flush could cover.
    pub fn teardown<M: PhysMem, F: FnMut(Option<FlushRange>)>(
        self,
        mem: &M,
        g: &mut Gather,
        flush: &mut F,
    ) {
        self.pt.destroy(mem, g, flush);
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
