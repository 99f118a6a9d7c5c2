//! mmtest: (a) a child that unmaps 8 pages and reads them is killed with
//! KILLED_BASE + UNMAPPED, and the parent's copy is unaffected; (b) a child
//! that makes them read-only and writes is killed with KILLED_BASE +
//! PROTECTION, and the parent can still write its copy; (c) after
//! madvise(DONTNEED) the pages read as zeros. Exit 0 if all hold;
//! 1 mmap, 2 fork/wait, 3 (a) status, 4 (a) parent's copy, 5 (b) status,
//! 6 (b) parent's copy, 7 madvise, 8 (c) not zero; a child that survives
//! its fault exits 20 (a) or 21 (b).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::ptr::{read_volatile, write_volatile};

use ulib::abi::{cause, prot};
use ulib::mm::Mapping;
use ulib::{println, sys};
use userland::pattern::{check, fill};
use userland::{check_eq, fail, in_child, killed, try_sys};

const PAGES: u64 = 8;
const SEED: u64 = 0x3333_0000_0000_0000;

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let mut m = try_sys!(Mapping::pages(PAGES), 1);
    fill(m.words_mut(), SEED);
    let (addr, len) = (m.addr(), m.len());

    // (a) Access after munmap.
    let status = try_sys!(
        in_child(|| {
            // SAFETY: only this child unmaps (its copy of) `m`, and it exits
            // right after without using `m` again; the read deliberately faults.
            let w = unsafe {
                let _ = sys::munmap(addr, len);
                read_volatile(addr as *const u64)
            };
            println!("mmtest: FAIL: child read {w:#x} after munmap");
            20
        }),
        2
    );
    check_eq!(3, "status of the child reading after munmap", killed(cause::UNMAPPED), status);
    if let Err(bad) = check(m.words(), SEED) {
        fail!(4, "parent's pages after the child unmapped its copy: {bad}");
    }

    // (b) Write after mprotect(READ).
    let status = try_sys!(
        in_child(|| {
            if let Err(e) = m.protect(prot::READ) {
                println!("mmtest: FAIL: mprotect failed in child: {e}");
                return 22;
            }
            // SAFETY: `m` is ours; the store deliberately faults (read-only).
            unsafe { write_volatile(m.ptr(), 0) };
            println!("mmtest: FAIL: child wrote a read-only page");
            21
        }),
        2
    );
    check_eq!(5, "status of the child writing read-only memory", killed(cause::PROTECTION), status);
    m.words_mut()[0] = 1;
    check_eq!(6, "parent's write after the child's mprotect", 1, m.words()[0]);

    // (c) madvise(DONTNEED) reads back zeros.
    try_sys!(m.discard(), 7);
    if let Some(i) = m.words().iter().position(|&w| w != 0) {
        fail!(8, "word {i} after madvise(DONTNEED): expected 0, saw {:#x}", m.words()[i]);
    }
    println!("mmtest: munmap, mprotect and madvise(DONTNEED) behave");
    Ok(())
}
