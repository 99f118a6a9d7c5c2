//! The reverse map's per-frame records (docs/mechanisms.md §8): for each data
//! frame, the family of address spaces it was mapped in and the virtual
//! address, one word a frame. A family is an address space and everything
//! forked from it (`AddressSpace::anon`): a frame first mapped at `va` in
//! one of them is mapped, if anywhere, at `va` in some of them (there is no
//! mremap and no shared mapping). `mm::family` finds the address spaces of
//! a family; a record is only a hint until the page tables confirm it.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use super::pte::PAGE_SIZE;

/// Bits of a record that hold the family (the rest hold the page number).
pub const FAMILY_BITS: u32 = 28;
const VPN_BITS: u32 = 64 - FAMILY_BITS;

/// Families are numbered from 1 up to this (0: no record).
pub const MAX_FAMILY: u64 = (1 << FAMILY_BITS) - 1;

/// The record of a frame mapped at `va` in family `anon`.
pub const fn pack(anon: u64, va: u64) -> u64 {
    (anon << VPN_BITS) | (va / PAGE_SIZE)
}

/// (family, VA) of a record; `None` for no record.
pub const fn unpack(rec: u64) -> Option<(u64, u64)> {
    if rec == 0 {
        return None;
    }
    Some((rec >> VPN_BITS, (rec & ((1 << VPN_BITS) - 1)) * PAGE_SIZE))
}

/// One record per frame of `[base_pfn, base_pfn + len)`.
pub struct RmapTable<'a> {
    base_pfn: u64,
    recs: &'a [AtomicU64],
}

impl<'a> RmapTable<'a> {
    pub const fn new(base_pfn: u64, recs: &'a [AtomicU64]) -> Self {
        RmapTable { base_pfn, recs }
    }

    fn rec(&self, pa: u64) -> Option<&AtomicU64> {
        let i = (pa / PAGE_SIZE).checked_sub(self.base_pfn)?;
        self.recs.get(i as usize)
    }

    /// Frames covered.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Frame `pa` was mapped at `va` in family `anon` (0: forget it).
    pub fn set(&self, pa: u64, anon: u64, va: u64) {
        debug_assert!(anon <= MAX_FAMILY && va < 1 << (VPN_BITS + 12));
        if let Some(r) = self.rec(pa) {
            r.store(if anon == 0 { 0 } else { pack(anon, va) }, Ordering::Relaxed);
        }
    }

    /// Where frame `pa` was last recorded mapped.
    pub fn get(&self, pa: u64) -> Option<(u64, u64)> {
        unpack(self.rec(pa)?.load(Ordering::Relaxed))
    }

    /// The `i`-th frame's address and record, if it has one.
    pub fn nth(&self, i: usize) -> Option<(u64, (u64, u64))> {
        let rec = unpack(self.recs.get(i)?.load(Ordering::Relaxed))?;
        Some(((self.base_pfn + i as u64) * PAGE_SIZE, rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_for_every_user_address_and_many_families() {
        for (anon, va) in [(1, 0), (MAX_FAMILY, abi::USER_END - PAGE_SIZE), (77, 0x7fff_0000_0000)] {
            assert_eq!(unpack(pack(anon, va)), Some((anon, va)));
        }
        assert_eq!(unpack(0), None);
    }

    #[test]
    fn the_table_keeps_one_record_per_frame_and_ignores_others() {
        let recs: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let t = RmapTable::new(0x100, &recs);
        let pa = 0x102 * PAGE_SIZE;
        t.set(pa, 5, 0x40_0000);
        assert_eq!(t.get(pa), Some((5, 0x40_0000)));
        assert_eq!(t.nth(2), Some((pa, (5, 0x40_0000))));
        assert_eq!(t.nth(1), None);
        t.set(0x50 * PAGE_SIZE, 5, 0); // outside: no record, no panic
        assert_eq!(t.get(0x50 * PAGE_SIZE), None);
        t.set(pa, 0, 0);
        assert_eq!(t.get(pa), None, "forgotten");
    }
}
