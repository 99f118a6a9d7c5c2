//! watch_revoke: a kernel worker that adopted this address space must not
//! read a page after the owner revoked it. Per round, this thread (alone
//! in its process, on CPU 0) writes a round-specific value to a page, has a
//! worker on CPU 1 sample it (watch_async), and once the worker has taken
//! a sample (the translation is in CPU 1's TLB) revokes the page (mprotect
//! PROT_NONE). The worker's next sample must fault (the job ends with
//! EFAULT; a round whose worker ran out of time before the revoke shows
//! nothing and is counted apart); a worker that goes on sampling reads the
//! old value through CPU 1's stale entry: the revoke's flush stayed local
//! because the owner took itself for the only user (`tlb.strategy=local`
//! with `tlb.use_mm_mmget=off`, seed 002). `arg` = rounds (0: 50) | 1 << 32
//! to stop at the first stale round. Exit 0 if no sample after a revoke
//! succeeded; otherwise 2 | stale rounds << 8; 1 setup, 3 the log holds a
//! value other than the round's, 4 the worker took no sample in 5 s, 5 the
//! job failed otherwise, 6 in most rounds the worker's time ran out before
//! the revoke (nothing was tested).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::Ordering::{Acquire, Relaxed};

use ulib::abi::copy::{LOG_RECORDED, LOG_SAMPLES, LOG_VALUES};
use ulib::abi::prot;
use ulib::mm::Mapping;
use ulib::{println, sys, Errno};
use userland::{arg_or, fail, try_sys};

const MAGIC: u64 = 0x3a7c_4000_0000_0000;
/// How long each worker samples at most: the window the revoke must fall
/// in (a worker that faults ends at once).
const WATCH_NS: u64 = 1_000_000_000;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg & 0xffff_ffff, 50);
    let stop_at_first = arg >> 32 & 1 != 0;
    try_sys!(sys::set_affinity(Some(0)), 1);
    let log = try_sys!(Mapping::pages(1), 1).leak_atomic();
    let page = try_sys!(Mapping::pages(1), 1).leak().as_mut_ptr() as u64;
    let (mut stale, mut missed, mut done) = (0u64, 0u64, 0u64);
    for r in 1..=rounds {
        // SAFETY: the page is this program's alone, reached only through
        // raw accesses while writable and through the worker otherwise.
        try_sys!(unsafe { sys::mprotect(page, 4096, prot::READ | prot::WRITE) }, 1);
        // SAFETY: just made writable; no reference covers it.
        unsafe { (page as *mut u64).write_volatile(MAGIC | r) };
        log[LOG_SAMPLES].store(0, Relaxed);
        log[LOG_RECORDED].store(0, Relaxed);
        let at = log.as_ptr() as u64;
        // SAFETY: the log is read only through atomics while the job runs.
        let ticket = try_sys!(unsafe { sys::watch_async(at, page, 4096, Some(1), WATCH_NS) }, 1);
        let give_up = sys::time_ns() + 5_000_000_000;
        while log[LOG_SAMPLES].load(Acquire) == 0 {
            if sys::time_ns() > give_up {
                fail!(4, "round {r}: the worker took no sample in 5 s");
            }
            core::hint::spin_loop();
        }
        // SAFETY: as above: nothing here reads the page any more.
        try_sys!(unsafe { sys::mprotect(page, 4096, prot::NONE) }, 1);
        let before = log[LOG_SAMPLES].load(Acquire);
        let result = sys::copy_wait(ticket);
        let after = log[LOG_SAMPLES].load(Acquire);
        done = r;
        // A sample that read the page before the revoke's flush may still
        // count itself after `before` was read: one, not more.
        let read_after = after > before + 1;
        match result {
            // Ran to its end without reading after the revoke: the owner
            // came too late (a slow host), the round shows nothing.
            Ok(_) if !read_after => missed += 1,
            Ok(_) | Err(Errno::EFAULT) => {}
            Err(e) => fail!(5, "round {r}: the watch ended with {e}"),
        }
        if read_after {
            stale += 1;
            let more = after - before;
            println!("watch_revoke: round {r}: the worker read the revoked page {more} more times ({result:?})");
        }
        let recorded = log[LOG_RECORDED].load(Acquire);
        for i in 0..recorded as usize {
            let v = log[LOG_VALUES + i].load(Relaxed);
            if v != MAGIC | r {
                fail!(3, "round {r}: value {i} of the log is {v:#x}, expected {:#x}", MAGIC | r);
            }
        }
        if recorded == 0 {
            fail!(3, "round {r}: the log recorded no value in {after} samples");
        }
        if stale > 0 && stop_at_first {
            break;
        }
    }
    println!("watch_revoke: {stale} rounds of {done} read the page after its revoke ({missed} revoked too late)");
    if missed * 2 > done {
        fail!(6, "in {missed} rounds of {done} the worker ended before the revoke");
    }
    if stale > 0 {
        return Err(2 | (stale.min(0x7f_ffff) as i32) << 8);
    }
    Ok(())
}
