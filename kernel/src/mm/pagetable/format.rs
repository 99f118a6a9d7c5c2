//! Page-table geometry: how many levels, how many entries a table holds.
//!
//! The kernel's user tables are the architecture's 4 KiB-granule, 48-bit
//! format ([`Arm4k`]: four levels of 512 entries). The host model runs the
//! same page-table code on reduced formats ([`Reduced`]: fewer levels of a
//! few entries each) so that its state space stays small. Levels are
//! numbered as the architecture numbers them, leaf last: the leaf is always
//! level 3 and a format with `n` levels starts at level `4 - n`, so gathers,
//! flush requests and TTL hints mean the same thing in both.

use crate::mm::pte::PAGE_SHIFT;

/// Level of every page (a 4 KiB page descriptor).
pub const LEAF_LEVEL: u32 = 3;
/// Level of a block: one entry of a level-2 table maps its whole region
/// (2 MiB in the architecture's format).
pub const BLOCK_LEVEL: u32 = 2;

pub trait Format: Copy + core::fmt::Debug {
    /// Levels of tables, 1..=4.
    fn levels(&self) -> u32;
    /// Index bits per level: a table holds `2^bits` entries.
    fn bits(&self) -> u32;

    /// Entries per table.
    fn entries(&self) -> usize {
        1 << self.bits()
    }

    /// Level of the root table.
    fn root_level(&self) -> u32 {
        LEAF_LEVEL + 1 - self.levels()
    }

    /// Bytes one entry at `level` maps.
    fn level_size(&self, level: u32) -> u64 {
        1 << (PAGE_SHIFT + self.bits() * (LEAF_LEVEL - level))
    }

    /// Index of `va` in the table at `level`.
    fn index(&self, va: u64, level: u32) -> usize {
        ((va >> (PAGE_SHIFT + self.bits() * (LEAF_LEVEL - level))) as usize) & (self.entries() - 1)
    }

    /// Bytes of virtual address space the tree covers.
    fn span(&self) -> u64 {
        self.level_size(self.root_level()) << self.bits()
    }

    /// Bytes one block maps ([`BLOCK_LEVEL`]); `None` when the format has
    /// no level 2 below its root (a two-level tree has no blocks).
    fn block_size(&self) -> Option<u64> {
        (self.root_level() < BLOCK_LEVEL).then(|| self.level_size(BLOCK_LEVEL))
    }

    /// Entries of a contiguous run at level 3 (a power of two, at most a
    /// table's entries).
    fn cont_entries(&self) -> usize {
        16.min(self.entries())
    }

    /// Bytes one contiguous run maps.
    fn cont_size(&self) -> u64 {
        self.cont_entries() as u64 * self.level_size(LEAF_LEVEL)
    }
}

/// The architecture's format: 4 KiB granule, 48-bit VA, levels 0..=3 of 512
/// entries (a zero-sized type, so the kernel pays nothing for the genericity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Arm4k;

impl Format for Arm4k {
    #[inline(always)]
    fn levels(&self) -> u32 {
        4
    }
    #[inline(always)]
    fn bits(&self) -> u32 {
        9
    }
}

/// A reduced format for the host model: `levels` levels of `2^bits`
/// entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reduced {
    pub levels: u32,
    pub bits: u32,
}

impl Format for Reduced {
    fn levels(&self) -> u32 {
        self.levels
    }
    fn bits(&self) -> u32 {
        self.bits
    }
    /// Runs of two entries: the smallest run that can go stale in part.
    fn cont_entries(&self) -> usize {
        2.min(self.entries())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::pte::{index, level_size};

    #[test]
    fn arm4k_is_the_architecture_format() {
        let f = Arm4k;
        for va in [0u64, 0x1000, 0x4020_1000, 0x7fff_ffff_f000, 0x0000_ffff_ffff_f000] {
            for level in 0..=3 {
                assert_eq!(f.index(va, level), index(va, level), "va {va:#x} level {level}");
                assert_eq!(f.level_size(level), level_size(level));
            }
        }
        assert_eq!((f.root_level(), f.entries(), f.span()), (0, 512, 1 << 48));
    }

    #[test]
    fn reduced_formats_end_at_the_leaf_level() {
        let f = Reduced { levels: 3, bits: 1 };
        assert_eq!(f.root_level(), 1);
        assert_eq!(f.span(), 8 * 4096, "3 levels of 2 entries: 8 pages");
        assert_eq!((f.index(5 * 4096, 1), f.index(5 * 4096, 2), f.index(5 * 4096, 3)), (1, 0, 1));
        assert_eq!(f.level_size(2), 2 * 4096);
    }
}
