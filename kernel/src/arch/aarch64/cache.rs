//! Cache maintenance for code written through the data side (the program
//! loader): clean the data cache to the point of unification, then
//! invalidate the instruction caches.

use core::arch::asm;

/// The smallest data-cache line on this CPU, in bytes (CTR_EL0.DminLine).
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4u64 << ((ctr >> 16) & 0xf)
}

/// Cleans `[va, va + len)` to the point of unification (`DC CVAU` per line),
/// so instruction fetches can see what was written there through the data
/// side once [`invalidate_icache_all`] has run.
///
/// # Safety
/// `[va, va + len)` is mapped in the kernel's address space.
pub unsafe fn clean_dcache_to_pou(va: u64, len: u64) {
    let line = dcache_line();
    let mut a = va & !(line - 1);
    while a < va + len {
        // SAFETY: `a` lies in the mapped range (caller); cleaning a cache
        // line does not change memory contents.
        unsafe { asm!("dc cvau, {}", in(reg) a, options(nostack)) };
        a += line;
    }
}

/// After cleaning: `DSB ISH` (the cleans are complete), invalidates every
/// instruction cache in the inner-shareable domain (`IC IALLUIS`), then
/// `DSB ISH` and `ISB`.
pub fn invalidate_icache_all() {
    // SAFETY: barriers and I-cache invalidation have no memory-safety effect.
    unsafe { asm!("dsb ish", "ic ialluis", "dsb ish", "isb", options(nostack)) };
}
