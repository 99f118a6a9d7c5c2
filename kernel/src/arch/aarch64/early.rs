//! The first Rust code: builds the boot translation tables with the MMU off.
//!
//! Runs at the physical load address, so it must not use anything holding an
//! absolute address (no `&dyn`, no formatting, no panics); symbol addresses
//! are taken PC-relative and therefore come out physical.

use super::boot::{BootParams, BOOT_PARAMS};
use super::kmap::{map_range, PoolAlloc, TABLE_POOL};
use super::layout::{DTB_MAX, DTB_VA, KIMAGE_VBASE};
use crate::mm::pte::*;

extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
}

/// What the boot path learnt before the MMU was on.
#[repr(C)]
pub struct BootInfo {
    pub image_pa: u64,
    pub image_size: u64,
    pub dtb_pa: u64,
    pub dtb_size: u64,
    /// Exception level the kernel was entered at (1 or 2).
    pub entry_el: u64,
    pub ttbr1_root: u64,
    pub idmap_root: u64,
    /// Pool pages used by the boot tables (the linear map continues after).
    pub pool_used: u64,
    /// Non-zero if building the boot tables failed (the kernel reports it as
    /// soon as it can print).
    pub error: u64,
}

pub static mut BOOT_INFO: BootInfo = BootInfo {
    image_pa: 0,
    image_size: 0,
    dtb_pa: 0,
    dtb_size: 0,
    entry_el: 0,
    ttbr1_root: 0,
    idmap_root: 0,
    pool_used: 0,
    error: 0,
};

// RES1 bits, less SPAN (bit 23): with FEAT_PAN, exception entry to EL1 sets
// PSTATE.PAN, so the kernel never touches user memory by accident.
const SCTLR_MMU_ON: u64 = (0x30d0_0800 & !(1 << 23))
    | (1 << 0) // M: MMU
    | (1 << 2) // C: data cache
    | (1 << 3) // SA: SP alignment check
    | (1 << 4) // SA0
    | (1 << 12); // I: instruction cache

fn read_mmfr0() -> u64 {
    let v: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, id_aa64mmfr0_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// TCR_EL1 for 48-bit VAs, 4 KiB granule, inner-shareable write-back walks,
/// 16-bit ASIDs when implemented.
fn tcr_value() -> u64 {
    let mmfr0 = read_mmfr0();
    let parange = (mmfr0 & 0xf).min(5);
    let asid16 = (mmfr0 >> 4) & 0xf == 2;
    let walk = (1 << 8) | (1 << 10) | (3 << 12); // IRGN0/ORGN0 WBWA, SH0 inner
    16 | walk
        | (16 << 16)
        | (walk << 16) // IRGN1/ORGN1/SH1
        | (2 << 30) // TG1 = 4 KiB
        | (parange << 32)
        | if asid16 { 1 << 36 } else { 0 }
}

/// Called from `primary_entry` with the MMU off.
#[no_mangle]
extern "C" fn boot_build_tables(image_pa: u64, dtb_pa: u64, current_el: u64) {
    let p2v = |pa: u64| pa as *mut u64;
    let sym = |s: *const u8| s as u64;
    // PC-relative: these are physical addresses while the MMU is off.
    let start = sym(&raw const __image_start);
    let text_end = sym(&raw const __text_end);
    let rodata_end = sym(&raw const __rodata_end);
    let end = sym(&raw const __image_end);
    let pool_pa = sym(&raw const TABLE_POOL as *const u8);
    let mut pool = PoolAlloc { pool_pa, used: 2 };
    let ttbr1_root = pool_pa;
    let idmap_root = pool_pa + PAGE_SIZE;
    let va = |pa: u64| pa - start + KIMAGE_VBASE;

    let mut err = 0u64;
    let mut step = |r: Result<(), super::kmap::KmapError>, code: u64| {
        if r.is_err() && err == 0 {
            err = code;
        }
    };
    step(map_range(ttbr1_root, va(start), start, text_end - start, KERNEL_TEXT, false, &mut pool, &p2v), 1);
    step(map_range(ttbr1_root, va(text_end), text_end, rodata_end - text_end, KERNEL_RO, false, &mut pool, &p2v), 2);
    step(map_range(ttbr1_root, va(rodata_end), rodata_end, end - rodata_end, KERNEL_RW, false, &mut pool, &p2v), 3);
    step(map_range(idmap_root, start, start, end - start, KERNEL_IDMAP, false, &mut pool, &p2v), 4);

    // The device tree, read-only, at a fixed address.
    let mut dtb_size = 0;
    if dtb_pa != 0 && dtb_pa & 7 == 0 {
        // SAFETY: the boot protocol hands us the DTB's physical address in
        // x0; the header's totalsize is a big-endian u32 at offset 4.
        let total = u32::from_be(unsafe { ((dtb_pa + 4) as *const u32).read_volatile() }) as u64;
        dtb_size = total.min(DTB_MAX);
        let base = dtb_pa & !(PAGE_SIZE - 1);
        let len = (dtb_pa + dtb_size - base + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        step(map_range(ttbr1_root, DTB_VA, base, len, KERNEL_RO, false, &mut pool, &p2v), 5);
    }

    let info = BootInfo {
        image_pa,
        image_size: end - start,
        dtb_pa,
        dtb_size,
        entry_el: (current_el >> 2) & 3,
        ttbr1_root,
        idmap_root,
        pool_used: pool.used as u64,
        error: err,
    };
    let params =
        BootParams { mair: MAIR_VALUE, tcr: tcr_value(), ttbr0: idmap_root, ttbr1: ttbr1_root, sctlr: SCTLR_MMU_ON };
    // SAFETY: single-threaded boot; nothing else references these statics yet.
    unsafe {
        (&raw mut BOOT_INFO).write_volatile(info);
        (&raw mut BOOT_PARAMS).write_volatile(params);
    }
}
