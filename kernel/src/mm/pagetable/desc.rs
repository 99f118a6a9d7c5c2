//! Descriptors of user tables: a page (level 3), a block (level 2: one
//! entry maps a whole level-2 region) or a table (levels above).

use crate::mm::pte::{ADDR_MASK, AP_EL0, AP_RO, CONT, TABLE_OR_PAGE, UXN, VALID};

/// A level-3 page descriptor: `attrs` from [`crate::mm::pte::user_attrs`].
pub const fn page_desc(pa: u64, attrs: u64) -> u64 {
    (pa & ADDR_MASK) | attrs | VALID | TABLE_OR_PAGE
}

/// A table descriptor pointing at the page-table page `pa`.
pub const fn table_desc(pa: u64) -> u64 {
    (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
}

/// A block descriptor (level 2): the region `pa` starts, aligned to the
/// level's size, with `attrs` from [`crate::mm::pte::user_attrs`].
pub const fn block_desc(pa: u64, attrs: u64) -> u64 {
    (pa & ADDR_MASK) | (attrs & !CONT) | VALID
}

/// Whether `desc` at a level above the leaf points to a next-level table.
pub const fn is_table(desc: u64) -> bool {
    desc & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE
}

/// Whether `desc`, read at a level above the leaf, is a block (valid, and
/// bit 1 clear). At level 3 the same bits are a reserved encoding this
/// code never writes, so a leaf with bit 1 clear is always a block.
pub const fn is_block(desc: u64) -> bool {
    desc & (VALID | TABLE_OR_PAGE) == VALID
}

/// Whether `desc` is a page in a contiguous run ([`CONT`]).
pub const fn is_cont(desc: u64) -> bool {
    desc & (VALID | TABLE_OR_PAGE | CONT) == VALID | TABLE_OR_PAGE | CONT
}

/// The attributes of a page or block descriptor: everything but the
/// output address and the type bits.
pub const fn leaf_attrs(desc: u64) -> u64 {
    desc & !(ADDR_MASK | VALID | TABLE_OR_PAGE)
}

/// The page descriptor for the 4 KiB page at byte offset `off` of the
/// block `block` maps: what a walk of `va` in the block translates to.
pub const fn page_in_block(block: u64, off: u64) -> u64 {
    page_desc(desc_pa(block) + (off & !0xfff), leaf_attrs(block) & !CONT)
}

/// The output address of a descriptor.
pub const fn desc_pa(desc: u64) -> u64 {
    desc & ADDR_MASK
}

/// Marks an invalid level-3 entry that names a swap slot (bit 0, valid,
/// clear: no walker uses it; the other bits are the software's).
const SWAP: u64 = 1 << 1;

/// The invalid leaf for a page whose contents are in swap slot `slot`.
pub const fn swap_desc(slot: u64) -> u64 {
    (slot << 12) | SWAP
}

/// Whether `desc` is a [`swap_desc`].
pub const fn is_swap(desc: u64) -> bool {
    desc & (VALID | SWAP) == SWAP
}

/// The slot a [`swap_desc`] names.
pub const fn swap_slot(desc: u64) -> u64 {
    desc >> 12
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
