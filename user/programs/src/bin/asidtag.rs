//! asidtag: ASID-rollover stress. Maps one page at a fixed address (the
//! same virtual address in every process), then `arg & 0xffff` times
//! (0: 20) writes its own tag there, yields, and checks it reads back only
//! its own tag. If `arg` bit 16 is set, first pins itself to CPU
//! `(arg >> 17) & 7`. Exit 0; 1 mmap, 2 another tag was read, 3 affinity.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering};
use ulib::{abi, sys};
use userland::{arg_or, fail, try_sys};

/// The same page in every process.
const TAG_VA: u64 = 0x2000_0000;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    if arg & (1 << 16) != 0 {
        try_sys!(sys::set_affinity(Some((arg >> 17) & 7)), 3);
    }
    // SAFETY: maps a fresh page at an address nothing else in this
    // program uses; it is accessed only through `word` below.
    try_sys!(unsafe { sys::mmap_raw(TAG_VA, 4096, abi::prot::READ | abi::prot::WRITE, abi::map::FIXED) }, 1);
    // SAFETY: the page is mapped read-write for the rest of the program.
    let word = unsafe { &*(TAG_VA as *const AtomicU64) };
    let tag = 0xa51d_0000_0000_0000 | sys::getpid();
    for i in 0..arg_or(arg & 0xffff, 20) {
        word.store(tag ^ i, Ordering::Relaxed);
        sys::yield_now();
        let seen = word.load(Ordering::Relaxed);
        if seen != tag ^ i {
            fail!(2, "iteration {i}: expected {:#x}, saw {seen:#x}", tag ^ i);
        }
    }
    Ok(())
}
