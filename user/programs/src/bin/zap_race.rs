//! zap_race: the concurrent-zap race of docs/mechanisms.md §5. Per round, a
//! region is filled with a round-specific value; then a thread on CPU 1
//! munmaps it while a thread on CPU 2 madvise(DONTNEED)s it (and a second
//! madvise races too), and a reader on CPU 3 keeps reading it. Once either
//! zap has returned successfully, the reader may see zero or fault, never
//! the old value. `arg` rounds (0: 200). Exit 0; 1 setup, 2 old data after
//! a zap returned, 3 a value that is neither old nor zero (poison), 4 a
//! thread failed. A failing reader stops every thread, so the program ends
//! (with `tlb.nested_fix=off` the stale read is what it may report).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use ulib::{abi, println, probe, sys, thread};
use userland::{arg_or, try_sys};

const REGION: u64 = 0x3800_0000;
const PAGES: u64 = 4;
const MAGIC: u64 = 0x5a9_0000_0000_0000;

static ROUND: AtomicU64 = AtomicU64::new(0);
/// Round whose zap has returned successfully (by either zapper).
static ZAPPED: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);
/// Zappers that finished the current round.
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// Round the reader has left (main may remap only after it).
static ACKED: AtomicU64 = AtomicU64::new(0);
/// Set by a reader that failed: every loop gives up.
static STOP: AtomicBool = AtomicBool::new(false);

/// Waits for round `r` to be ready; `false` if the run stopped instead.
fn wait_round(r: u64) -> bool {
    while ROUND.load(Acquire) != r || READY.load(Acquire) != r {
        if STOP.load(Acquire) {
            return false;
        }
        sys::yield_now();
    }
    true
}

fn zapper(cpu: u64, unmap: bool, rounds: u64) -> i32 {
    if sys::set_affinity(Some(cpu)).is_err() {
        return 4;
    }
    for r in 1..=rounds {
        if !wait_round(r) {
            break;
        }
        // SAFETY: the region is only accessed through probes.
        let ok = unsafe {
            if unmap {
                sys::munmap(REGION, PAGES * 4096).is_ok()
            } else {
                sys::madvise(REGION, PAGES * 4096, abi::advice::DONTNEED).is_ok()
            }
        };
        if ok {
            ZAPPED.fetch_max(r, AcqRel);
        }
        FINISHED.fetch_add(1, AcqRel);
    }
    0
}

fn reader(rounds: u64) -> i32 {
    let status = read_rounds(rounds);
    if status != 0 {
        STOP.store(true, Release);
    }
    status
}

fn read_rounds(rounds: u64) -> i32 {
    if sys::set_affinity(Some(3)).is_err() {
        return 4;
    }
    for r in 1..=rounds {
        while ROUND.load(Acquire) != r {
            core::hint::spin_loop();
        }
        let mut reads = 0u64;
        while FINISHED.load(Acquire) < 3 * r {
            let zapped = ZAPPED.load(Acquire) == r;
            for p in 0..PAGES {
                match probe::read(REGION + p * 4096) {
                    Some(v) if v == MAGIC | r && zapped => {
                        println!("zap_race: round {r} page {p}: old value after a zap returned");
                        return 2;
                    }
                    Some(v) if v != MAGIC | r && v != 0 => {
                        println!("zap_race: round {r} page {p}: read {v:#x}");
                        return 3;
                    }
                    _ => {}
                }
            }
            reads += 1;
            if reads == 16 {
                READY.store(r, Release);
            }
        }
        ACKED.store(r, Release);
    }
    0
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg, 200);
    try_sys!(probe::install(), 1);
    try_sys!(sys::set_affinity(Some(0)), 1);
    let threads = [
        try_sys!(thread::spawn(move || zapper(1, true, rounds)), 1),
        try_sys!(thread::spawn(move || zapper(2, false, rounds)), 1),
        try_sys!(thread::spawn(move || zapper(0, false, rounds)), 1),
        try_sys!(thread::spawn(move || reader(rounds)), 1),
    ];
    for r in 1..=rounds {
        // SAFETY: the region is at a fixed address used only through probes
        // (and these writes, before the round starts).
        try_sys!(
            unsafe { sys::mmap_raw(REGION, PAGES * 4096, abi::prot::READ | abi::prot::WRITE, abi::map::FIXED) },
            1
        );
        for p in 0..PAGES {
            // SAFETY: just mapped read-write.
            unsafe { ((REGION + p * 4096) as *mut u64).write_volatile(MAGIC | r) };
        }
        ROUND.store(r, Release);
        while (FINISHED.load(Acquire) < 3 * r || ACKED.load(Acquire) != r) && !STOP.load(Acquire) {
            sys::yield_now();
        }
        if STOP.load(Acquire) {
            break;
        }
    }
    let mut status = 0;
    for h in threads {
        match h.join() {
            Ok(0) => {}
            Ok(c) => status = c,
            Err(_) => status = 4,
        }
    }
    if status == 0 {
        println!("zap_race: {rounds} rounds, never old data after a zap returned");
        Ok(())
    } else {
        Err(status)
    }
}
