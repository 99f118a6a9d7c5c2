//! stale_migrate: a thread that migrates while its page is revoked must not
//! read the page afterwards. Per round, on CPU 1 it writes a round-specific
//! value to a page and reads it back (the translation is now in CPU 1's
//! TLB), moves to CPU 0 (CPU 1 goes idle and stays lazily on the address
//! space, its TLB untouched), revokes the page there (mprotect PROT_NONE),
//! moves back to CPU 1 and reads it: that read must fault. A read that
//! returns the old value used CPU 1's stale entry: the revoke's flush did
//! not reach CPU 1 and CPU 1 did not catch up when the thread came back
//! (`tlb.stale_mark=off` under `tlb.strategy=local`, `tlb.gen_check=off`
//! under `ipi`). `arg` = rounds (0: 100) | 1 << 32 to stop at the first
//! stale read. Exit 0 if no read after a revoke succeeded; otherwise 2 |
//! stale rounds << 8; 1 setup, 3 a stale read returned a value other than
//! the old one, 4 the first read on CPU 1 was wrong.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::abi::prot;
use ulib::mm::Mapping;
use ulib::{println, probe, sys};
use userland::{arg_or, fail, try_sys};

const MAGIC: u64 = 0x57a1_e000_0000_0000;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg & 0xffff_ffff, 100);
    let stop_at_first = arg >> 32 & 1 != 0;
    try_sys!(probe::install(), 1);
    let page = try_sys!(Mapping::pages(1), 1).leak().as_mut_ptr() as u64;
    let mut stale = 0u64;
    let mut done = 0u64;
    for r in 1..=rounds {
        try_sys!(sys::set_affinity(Some(1)), 1);
        // SAFETY: the page is this program's alone and only reached through
        // raw accesses and probes; it is made writable again first.
        try_sys!(unsafe { sys::mprotect(page, 4096, prot::READ | prot::WRITE) }, 1);
        // SAFETY: just made writable; no reference covers it.
        unsafe { (page as *mut u64).write_volatile(MAGIC | r) };
        match probe::read(page) {
            Some(v) if v == MAGIC | r => {}
            other => fail!(4, "round {r}: read {other:x?} on CPU 1 right after writing {:#x}", MAGIC | r),
        }
        try_sys!(sys::set_affinity(Some(0)), 1);
        // SAFETY: as above; from now on the page is only probed.
        try_sys!(unsafe { sys::mprotect(page, 4096, prot::NONE) }, 1);
        try_sys!(sys::set_affinity(Some(1)), 1);
        done = r;
        match probe::read(page) {
            None => {}
            Some(v) if v == MAGIC | r => {
                stale += 1;
                println!("stale_migrate: round {r}: read the revoked page's old value {v:#x} on CPU 1");
                if stop_at_first {
                    break;
                }
            }
            Some(v) => fail!(3, "round {r}: read {v:#x} from the revoked page, expected a fault (or {:#x})", MAGIC | r),
        }
    }
    try_sys!(sys::set_affinity(None), 1);
    println!("stale_migrate: {stale} stale reads in {done} rounds");
    if stale > 0 {
        return Err(2 | (stale.min(0x7f_ffff) as i32) << 8);
    }
    Ok(())
}
