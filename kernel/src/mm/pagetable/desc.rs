//! Descriptors of user tables: a page (level 3) or a table (levels above).

use crate::mm::pte::{ADDR_MASK, AP_EL0, AP_RO, TABLE_OR_PAGE, UXN, VALID};

/// A level-3 page descriptor: `attrs` from [`crate::mm::pte::user_attrs`].
pub const fn page_desc(pa: u64, attrs: u64) -> u64 {
    (pa & ADDR_MASK) | attrs | VALID | TABLE_OR_PAGE
}

/// A table descriptor pointing at the page-table page `pa`.
pub const fn table_desc(pa: u64) -> u64 {
    (pa & ADDR_MASK) | VALID | TABLE_OR_PAGE
}

/// Whether `desc` at a level above the leaf points to a next-level table
/// (no blocks are ever written, so any valid entry there does).
pub const fn is_table(desc: u64) -> bool {
    desc & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE
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
