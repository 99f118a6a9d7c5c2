//! The kernel's [`PhysMem`]: frames from the buddy allocator, reached
//! through the linear map, with a reference count per frame (copy-on-write
//! sharing after fork).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Once;

use super::frame::{Frames, FRAMES};
use super::pagetable::PhysMem;
use super::pte::PAGE_SIZE;
use crate::arch::aarch64::layout::phys_to_virt;

struct RefTable {
    base_pfn: u64,
    refs: Vec<AtomicU32>,
}

static REFS: Once<RefTable> = Once::new();

/// Sizes the reference-count table to cover all RAM (called at boot).
pub fn init(ram_start: u64, ram_end: u64) {
    REFS.call_once(|| {
        let base_pfn = ram_start / PAGE_SIZE;
        let n = (ram_end.div_ceil(PAGE_SIZE) - base_pfn) as usize;
        RefTable { base_pfn, refs: (0..n).map(|_| AtomicU32::new(0)).collect() }
    });
}

fn slot(pa: u64) -> &'static AtomicU32 {
    let t = REFS.get().expect("phys::init at boot");
    &t.refs[(pa / PAGE_SIZE - t.base_pfn) as usize]
}

/// Frames handed to user address spaces and page tables that are live now.
pub fn user_frames_in_use() -> usize {
    REFS.get().map_or(0, |t| t.refs.iter().filter(|r| r.load(Ordering::Relaxed) != 0).count())
}

#[derive(Clone, Copy, Default)]
pub struct KernelMem;

// SAFETY: `ptr` returns the linear-map address of a frame, valid for 4 KiB
// for as long as the frame is allocated; frames come from and return to the
// buddy allocator exactly once each (the reference counts decide when).
unsafe impl PhysMem for KernelMem {
    fn alloc_zeroed(&self) -> Option<u64> {
        let f = FRAMES.lock().alloc(1)?;
        let pa = f.pa();
        // SAFETY: a freshly allocated frame, mapped in the linear map, owned
        // by nobody else yet.
        unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, PAGE_SIZE as usize) };
        slot(pa).store(1, Ordering::Release);
        Some(pa)
    }

    fn free(&self, pa: u64) {
        slot(pa).store(0, Ordering::Release);
        FRAMES.lock().free(Frames { pfn: (pa / PAGE_SIZE) as usize, count: 1 });
    }

    fn ptr(&self, pa: u64) -> *mut u8 {
        phys_to_virt(pa) as *mut u8
    }

    fn get(&self, pa: u64) {
        slot(pa).fetch_add(1, Ordering::AcqRel);
    }

    fn put(&self, pa: u64) -> bool {
        slot(pa).fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn refs(&self, pa: u64) -> u32 {
        slot(pa).load(Ordering::Acquire)
    }
}
