//! scanner: looks for `secret`'s tag in every page it has mapped: its
//! image, its stack, and fresh mmap'd pages (which land at the addresses
//! where `secret` keeps its pages), in 4 passes that each map new pages.
//! A word whose high half is 0x5EC2E7 means another process's memory
//! leaked in. Fresh pages must also read as zeros.
//! arg bit 0: afterwards read a kernel address, which must kill it
//! (status KILLED_BASE + cause::KERNEL_ADDRESS).
//! Exit 0 clean; 1 found the tag; 2 survived the kernel read; 3 mmap;
//! 4 a fresh page was not zeroed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::black_box;

use ulib::abi::USER_STACK_TOP;
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::{println, sys};
use userland::{fail, try_sys, KERNEL_ADDR, SECRET_TAG_HI};

const PASSES: usize = 4;
const PAGES: u64 = 64;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    // Opaque, so the tag is never a constant in this program's own image.
    let tag = black_box(SECRET_TAG_HI);
    let (image_start, image_end) = ulib::rt::image();
    let here = 0u8;
    let stack_bottom = core::ptr::addr_of!(here) as u64 & !(PAGE_SIZE - 1);
    let mut pages = 0;
    for pass in 0..PASSES {
        for (what, start, end) in [("image", image_start, image_end), ("stack", stack_bottom, USER_STACK_TOP)] {
            // SAFETY: both ranges are mapped readable (image per user.ld, stack
            // from this frame up); the scan only reads, with no live `&mut`.
            if let Some((addr, w)) = unsafe { scan(start, end, tag) } {
                fail!(1, "{what} word at {addr:#x} holds {w:#x}: another process's secret");
            }
            pages += (end - start) / PAGE_SIZE;
        }
        let mut fresh = try_sys!(Mapping::pages(PAGES), 3);
        let base = fresh.addr();
        for page in 0..PAGES as usize {
            // Writing one word gives the page a frame of its own; the rest
            // of the frame must be zero.
            let words = fresh.page_mut(page);
            words[0] = pass as u64 + 1;
            if let Some(i) = words[1..].iter().position(|&w| w != 0) {
                let (addr, w) = (base + page as u64 * PAGE_SIZE + (i as u64 + 1) * 8, words[i + 1]);
                if w >> 32 == tag {
                    fail!(1, "fresh page word at {addr:#x} holds {w:#x}: another process's secret");
                }
                fail!(4, "fresh page word at {addr:#x}: expected 0, saw {w:#x}");
            }
        }
        pages += PAGES;
        drop(fresh);
        sys::yield_now();
    }
    println!("scanner: {pages} pages read in {PASSES} passes, no secret");
    if arg & 1 != 0 {
        println!("scanner: reading kernel address {KERNEL_ADDR:#x}, expecting to be killed");
        // SAFETY: deliberately faults; the kernel kills this process at the
        // load, so nothing after it runs.
        let w = unsafe { core::ptr::read_volatile(KERNEL_ADDR as *const u64) };
        fail!(2, "read {w:#x} from kernel address {KERNEL_ADDR:#x} and survived");
    }
    Ok(())
}

/// The first word in `[start, end)` whose high half is `tag`.
///
/// # Safety
/// `[start, end)` must be mapped readable and 8-byte aligned.
unsafe fn scan(start: u64, end: u64, tag: u64) -> Option<(u64, u64)> {
    (start..end).step_by(8).find_map(|addr| {
        // SAFETY: `addr` is in the range the caller vouches for.
        let w = unsafe { core::ptr::read_volatile(addr as *const u64) };
        (w >> 32 == tag).then_some((addr, w))
    })
}
