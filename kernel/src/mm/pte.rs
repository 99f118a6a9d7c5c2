//! Stage-1 translation table descriptors for the 4 KiB granule, 48-bit VA
//! (four levels, 0..=3). Shared by the kernel's own tables and user address
//! spaces, and by the host model.

pub const PAGE_SIZE: u64 = abi::PAGE_SIZE;
pub const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();
pub const ENTRIES: usize = 512;

pub const VALID: u64 = 1 << 0;
/// Table descriptor at levels 0..=2, page descriptor at level 3.
pub const TABLE_OR_PAGE: u64 = 1 << 1;
pub const fn attr_index(idx: u64) -> u64 {
    (idx & 7) << 2
}
/// AP[1]: accessible from EL0.
pub const AP_EL0: u64 = 1 << 6;
/// AP[2]: read-only.
pub const AP_RO: u64 = 1 << 7;
pub const SH_INNER: u64 = 3 << 8;
pub const AF: u64 = 1 << 10;
/// Not global: the entry is tagged with the ASID (user mappings).
pub const NG: u64 = 1 << 11;
/// Contiguous: this entry is one of an aligned run of entries (16 at level
/// 3 with the 4 KiB granule: 64 KiB) that map one physically contiguous,
/// aligned region with identical attributes, so a TLB may hold the whole
/// run as one entry.
pub const CONT: u64 = 1 << 52;
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR_EL1 attribute indices.
pub const MT_DEVICE_NGNRE: u64 = 0;
pub const MT_NORMAL: u64 = 1;
pub const MT_NORMAL_NC: u64 = 2;
pub const MT_DEVICE_NGNRNE: u64 = 3;
/// MAIR_EL1 value matching the indices above.
pub const MAIR_VALUE: u64 = 0x04 | (0xff << 8) | (0x44 << 16);

/// Leaf attributes for kernel mappings (global: nG = 0).
pub const KERNEL_TEXT: u64 = attr_index(MT_NORMAL) | SH_INNER | AF | AP_RO | UXN;
pub const KERNEL_RO: u64 = attr_index(MT_NORMAL) | SH_INNER | AF | AP_RO | UXN | PXN;
pub const KERNEL_RW: u64 = attr_index(MT_NORMAL) | SH_INNER | AF | UXN | PXN;
pub const KERNEL_DEVICE: u64 = attr_index(MT_DEVICE_NGNRE) | AF | UXN | PXN;
/// Identity map used only while turning the MMU on: read-write-execute.
pub const KERNEL_IDMAP: u64 = attr_index(MT_NORMAL) | SH_INNER | AF | UXN;

/// Leaf attributes of a user page with `prot` (`abi::prot` bits), without
/// the address and the VALID / TABLE_OR_PAGE bits: normal inner-shareable
/// memory, not global (nG: tagged with the ASID), AF set (no access-flag
/// faults), never executable at EL1 (PXN). EL0 may read unless `prot` is
/// NONE (then AP[1] = 0: no EL0 access, and the kernel's unprivileged
/// LDTR/STTR fault too); writable only with WRITE; executable only with
/// EXEC. AArch64 without FEAT_S1POE has no write-only or execute-only
/// encoding for EL0 here, so WRITE and EXEC imply READ, as on Linux/arm64.
pub const fn user_attrs(prot: u64) -> u64 {
    let base = attr_index(MT_NORMAL) | SH_INNER | AF | NG | PXN;
    if prot & abi::prot::ALL == abi::prot::NONE {
        return base | AP_RO | UXN;
    }
    let ro = if prot & abi::prot::WRITE == 0 { AP_RO } else { 0 };
    let xn = if prot & abi::prot::EXEC == 0 { UXN } else { 0 };
    base | AP_EL0 | ro | xn
}

/// Index of `va` in the table at `level` (0..=3).
pub const fn index(va: u64, level: u32) -> usize {
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

/// Bytes mapped by one entry at `level` (level 1: 1 GiB, 2: 2 MiB, 3: 4 KiB).
pub const fn level_size(level: u32) -> u64 {
    1 << (39 - 9 * level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_sizes() {
        let va = 0x0000_7fff_ffff_f000u64;
        assert_eq!(index(va, 0), 255);
        assert_eq!(index(va, 1), 511);
        assert_eq!(index(va, 3), 511);
        assert_eq!(index(0x4020_1000, 1), 1);
        assert_eq!(index(0x4020_1000, 2), 1);
        assert_eq!(index(0x4020_1000, 3), 1);
        assert_eq!(level_size(1), 1 << 30);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(3), 4096);
        assert_eq!(KERNEL_TEXT & (PXN | NG), 0, "kernel text must be executable and global");
        assert_ne!(KERNEL_RW & PXN, 0);
    }
}
