//! Whole-page zeroing and copying for the frame allocator and
//! copy-on-write: `DC ZVA` by blocks (64 of them for a page of 64-byte
//! blocks) and 64-byte `LDP`/`STP` rounds.

use core::arch::asm;

/// Bytes in a page.
const PAGE: usize = 4096;

/// Zeroes the 4 KiB page at `va`: with `DC ZVA` when DCZID_EL0 allows it
/// (DZP clear) and its block divides a page, else with `STP XZR` pairs.
///
/// # Safety
/// `va` is 4096-aligned and the page is mapped writable Normal memory
/// (the linear map) that nobody else accesses while it is zeroed.
pub unsafe fn zero(va: *mut u8) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    // BS: log2 of the block size in 4-byte words.
    let block = 4usize << (dczid & 0xf);
    let end = va as usize + PAGE;
    if dczid & 0x10 == 0 && block <= PAGE {
        // SAFETY: the page is writable Normal memory (caller); blocks of
        // `block` bytes tile the aligned page exactly, so every `DC ZVA`
        // zeroes only bytes of it. It writes memory (not `nomem`).
        unsafe {
            asm!(
                "1: dc zva, {p}",
                "add {p}, {p}, {bs}",
                "cmp {p}, {end}",
                "b.lo 1b",
                p = inout(reg) va as usize => _,
                bs = in(reg) block,
                end = in(reg) end,
                options(nostack),
            )
        };
    } else {
        // SAFETY: as above; 64 bytes a round over the aligned page.
        unsafe {
            asm!(
                "1: stp xzr, xzr, [{p}]",
                "stp xzr, xzr, [{p}, #16]",
                "stp xzr, xzr, [{p}, #32]",
                "stp xzr, xzr, [{p}, #48]",
                "add {p}, {p}, #64",
                "cmp {p}, {end}",
                "b.lo 1b",
                p = inout(reg) va as usize => _,
                end = in(reg) end,
                options(nostack),
            )
        };
    }
}

/// Copies the 4 KiB page at `src` to the page at `dst`, 64 bytes a round.
/// The loads are plain 64-bit loads: a user thread writing `src`
/// meanwhile leaves each aligned word old or new, never torn.
///
/// # Safety
/// Both are 4096-aligned pages of mapped Normal memory, `dst` writable and
/// accessed by nobody else, and they do not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8) {
    // SAFETY: both pages are mapped (caller); 64 rounds of 64 bytes stay
    // inside them. Reads and writes memory (not `nomem`).
    unsafe {
        asm!(
            "1: ldp {a}, {b}, [{s}]",
            "ldp {c}, {d}, [{s}, #16]",
            "stp {a}, {b}, [{d0}]",
            "stp {c}, {d}, [{d0}, #16]",
            "ldp {a}, {b}, [{s}, #32]",
            "ldp {c}, {d}, [{s}, #48]",
            "stp {a}, {b}, [{d0}, #32]",
            "stp {c}, {d}, [{d0}, #48]",
            "add {s}, {s}, #64",
            "add {d0}, {d0}, #64",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            s = inout(reg) src as usize => _,
            d0 = inout(reg) dst as usize => _,
            n = inout(reg) PAGE / 64 => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack),
        )
    };
}
