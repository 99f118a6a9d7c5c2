//! munmap_race: a reader thread on CPU 1 reads a page in a loop while the
//! main thread on CPU 2 munmaps it. After munmap has returned, the reader
//! must fault — never read the old value (a stale TLB entry) or the poison
//! of a freed frame. `arg` rounds (0: 100). Exit 0; 1 setup, 2 stale read
//! after munmap returned, 3 read a wrong value (poison), 4 reader failed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::*};
use ulib::{abi, println, probe, sys, thread};
use userland::{arg_or, try_sys};

const PAGE_VA: u64 = 0x3000_0000;
const MAGIC: u64 = 0x00dd_ba11_0000_0000;

static ROUND: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);
/// Round the reader has finished (it saw the fault after munmap returned).
static ACKED: AtomicU64 = AtomicU64::new(0);

fn reader(rounds: u64) -> i32 {
    if sys::set_affinity(Some(1)).is_err() {
        return 4;
    }
    for r in 1..=rounds {
        while ROUND.load(Acquire) != r {
            core::hint::spin_loop();
        }
        let mut reads = 0u64;
        loop {
            let done = DONE.load(Acquire) == r;
            match probe::read(PAGE_VA) {
                Some(v) if v == MAGIC | r && done => {
                    println!("munmap_race: round {r}: read {v:#x} after munmap returned");
                    return 2;
                }
                Some(v) if v == MAGIC | r => {}
                Some(v) => {
                    println!("munmap_race: round {r}: read {v:#x}, expected {:#x}", MAGIC | r);
                    return 3;
                }
                None if done => {
                    ACKED.store(r, Release);
                    break;
                }
                None => {}
            }
            reads += 1;
            if reads == 64 {
                READY.store(r, Release);
            }
        }
    }
    0
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg, 100);
    try_sys!(probe::install(), 1);
    try_sys!(sys::set_affinity(Some(2)), 1);
    let h = try_sys!(thread::spawn(move || reader(rounds)), 1);
    for r in 1..=rounds {
        // SAFETY: a page at a fixed address used only through probes.
        try_sys!(unsafe { sys::mmap_raw(PAGE_VA, 4096, abi::prot::READ | abi::prot::WRITE, abi::map::FIXED) }, 1);
        // SAFETY: just mapped read-write.
        unsafe { (PAGE_VA as *mut u64).write_volatile(MAGIC | r) };
        ROUND.store(r, Release);
        // Let the reader cache the translation on its CPU.
        while READY.load(Acquire) != r {
            core::hint::spin_loop();
        }
        // SAFETY: only the reader touches the page, through probes.
        try_sys!(unsafe { sys::munmap(PAGE_VA, 4096) }, 1);
        DONE.store(r, Release);
        while ACKED.load(Acquire) != r {
            core::hint::spin_loop();
        }
    }
    match h.join() {
        Ok(0) => {
            println!("munmap_race: {rounds} rounds, no access after munmap returned");
            Ok(())
        }
        Ok(code) => Err(code),
        Err(_) => Err(4),
    }
}
