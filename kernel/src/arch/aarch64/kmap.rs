//! Builds the kernel's own translation tables (TTBR1 and the boot identity
//! map). Runs both with the MMU off (physical addresses are pointers) and on
//! (through `p2v`), so it never panics, allocates only from a static pool and
//! uses no data containing absolute addresses.

use crate::mm::pte::*;

/// Why a kernel mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmapError {
    OutOfTables,
    /// A block or page is already mapped with different attributes.
    Conflict {
        va: u64,
    },
    Unaligned,
}

impl core::fmt::Display for KmapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KmapError::OutOfTables => f.write_str("kernel page-table pool exhausted"),
            KmapError::Conflict { va } => write!(f, "conflicting kernel mapping at {va:#x}"),
            KmapError::Unaligned => f.write_str("unaligned kernel mapping"),
        }
    }
}

/// Translation table pages for the kernel's own mappings: the tables live in
/// the image's BSS so they exist before any allocator does.
pub const POOL_PAGES: usize = 64;

#[repr(C, align(4096))]
pub struct TablePool(pub [[u64; ENTRIES]; POOL_PAGES]);

pub static mut TABLE_POOL: TablePool = TablePool([[0; ENTRIES]; POOL_PAGES]);

/// Hands out zeroed pages of [`TABLE_POOL`] by physical address.
pub struct PoolAlloc {
    pub pool_pa: u64,
    pub used: usize,
}

impl PoolAlloc {
    fn alloc(&mut self) -> Option<u64> {
        if self.used >= POOL_PAGES {
            return None;
        }
        let pa = self.pool_pa + (self.used as u64) * PAGE_SIZE;
        self.used += 1;
        Some(pa)
    }
}

/// Maps `[va, va + size)` to `[pa, pa + size)` with leaf attributes `attrs`
/// under the level-0 table at `root_pa`. Uses 1 GiB / 2 MiB blocks where
/// `blocks` is set and alignment allows. `p2v` turns a table's physical
/// address into a pointer the CPU can use right now.
#[allow(clippy::too_many_arguments)] // one per descriptor field and table level
pub fn map_range(
    root_pa: u64,
    mut va: u64,
    mut pa: u64,
    size: u64,
    attrs: u64,
    blocks: bool,
    pool: &mut PoolAlloc,
    p2v: &impl Fn(u64) -> *mut u64,
) -> Result<(), KmapError> {
    if (va | pa | size) & (PAGE_SIZE - 1) != 0 {
        return Err(KmapError::Unaligned);
    }
    let end = va.wrapping_add(size);
    while va != end {
        let remaining = end.wrapping_sub(va);
        let mut table = root_pa;
        let mut level = 0;
        loop {
            let slot = p2v(table).wrapping_add(index(va, level));
            let lsize = level_size(level);
            let leaf_here = level == 3 || (blocks && level >= 1 && (va | pa) & (lsize - 1) == 0 && remaining >= lsize);
            // SAFETY: `slot` points into a live, page-aligned translation table
            // page (from the pool, reachable through `p2v`), and `index` is < 512.
            let entry = unsafe { slot.read_volatile() };
            if leaf_here {
                let desc = pa | attrs | VALID | if level == 3 { TABLE_OR_PAGE } else { 0 };
                if entry & VALID != 0 && entry != desc {
                    return Err(KmapError::Conflict { va });
                }
                // SAFETY: as above; the entry was invalid (or identical), so no
                // break-before-make sequence is needed.
                unsafe { slot.write_volatile(desc) };
                va = va.wrapping_add(lsize);
                pa = pa.wrapping_add(lsize);
                break;
            }
            if entry & VALID == 0 {
                let next = pool.alloc().ok_or(KmapError::OutOfTables)?;
                // SAFETY: `slot` is a valid entry slot (see above); the new
                // table page is zeroed BSS.
                unsafe { slot.write_volatile(next | VALID | TABLE_OR_PAGE) };
                table = next;
            } else if entry & TABLE_OR_PAGE == 0 {
                return Err(KmapError::Conflict { va });
            } else {
                table = entry & ADDR_MASK;
            }
            level += 1;
        }
    }
    Ok(())
}

/// Walks the tables under `root_pa` for `va`; returns the leaf descriptor and
/// its level.
pub fn lookup(root_pa: u64, va: u64, p2v: &impl Fn(u64) -> *mut u64) -> Option<(u64, u32)> {
    let mut table = root_pa;
    for level in 0..4 {
        // SAFETY: `table` is a translation table page reachable through `p2v`;
        // the index is < 512.
        let entry = unsafe { p2v(table).add(index(va, level)).read_volatile() };
        if entry & VALID == 0 {
            return None;
        }
        if level == 3 || entry & TABLE_OR_PAGE == 0 {
            return Some((entry, level));
        }
        table = entry & ADDR_MASK;
    }
    None
}
