//! The kernel's virtual address layout (upper half, TTBR1, 48-bit VA).
//!
//! | range                         | what                                  |
//! |-------------------------------|---------------------------------------|
//! | `0xffff_0000_0000_0000 + pa`  | linear map of all RAM and the devices |
//! | `0xffff_7f00_0000_0000`       | the device tree blob, read-only       |
//! | `0xffff_8000_0000_0000`       | the kernel image (link address)       |
//!
//! TTBR0 (the lower half) belongs to user address spaces; when none is
//! loaded it points at an empty table.

pub const LINEAR_BASE: u64 = 0xffff_0000_0000_0000;
pub const DTB_VA: u64 = 0xffff_7f00_0000_0000;
pub const KIMAGE_VBASE: u64 = 0xffff_8000_0000_0000;
/// Linux caps the device tree at 2 MiB; so do we.
pub const DTB_MAX: u64 = 2 << 20;

/// Virtual address of physical `pa` in the linear map.
#[inline]
pub const fn phys_to_virt(pa: u64) -> u64 {
    pa + LINEAR_BASE
}
