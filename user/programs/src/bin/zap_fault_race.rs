//! zap_fault_race: page faults against zaps of a 2 MiB region's only pages.
//! Per cycle the main thread maps `pages` pages at a 2 MiB-aligned address
//! (the only mapping in its 2 MiB, and in its 1 GiB: the tables under it hold
//! nothing else) and writes a round-specific value in each. Round one, a
//! zapper on CPU 1 madvise(DONTNEED)s them; round two, once main has written
//! them again, it munmaps them, and their tables go too. Meanwhile a faulter
//! on CPU 2 reads the pages in a loop, faulting them back in (zero-filled)
//! after the madvise, and a reader on CPU 3 reads them too. Once the zap has
//! returned, a read sees zero (madvise) or faults (munmap), never the round's
//! value. `arg`: bits 0..32 cycles (0: 50), 32..48 pages (0: 16, at most
//! 512). The threads are not joined: a join unmaps the thread's stack, and
//! that flush would blur the counts the kernel test checks; the exit frees
//! them. Exit 0; 1 setup, 2 the old value after a zap returned, 3 another
//! unexpected read (a value that is neither, zero or a fault where the round
//! allows none), 4 a thread failed, 5 the munmap left page-table pages.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::*};
use ulib::{abi, println, probe, sys, thread};
use userland::{arg_or, fail, try_sys};

/// 2 MiB-aligned, alone in its 1 GiB (the image is in the first, `MMAP_BASE`
/// far above).
const REGION: u64 = 0x4000_0000;
const MAGIC: u64 = 0x2fa0_0000_0000_0000;

static ROUND: AtomicU64 = AtomicU64::new(0);
/// Round whose zap has returned.
static ZAPPED: AtomicU64 = AtomicU64::new(0);
/// Faulter and reader rounds ready for the zap (two per round).
static READY: AtomicU64 = AtomicU64::new(0);
/// Faulter and reader rounds finished (two per round).
static ACKED: AtomicU64 = AtomicU64::new(0);
/// Threads that returned.
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// The first failure of a thread; it stops every loop.
static STATUS: AtomicI32 = AtomicI32::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

fn stop(status: i32) {
    let _ = STATUS.compare_exchange(0, status, AcqRel, Acquire);
    STOP.store(true, Release);
}

/// Waits until `done()`; `false` if the run stopped first.
fn wait(done: impl Fn() -> bool) -> bool {
    while !done() {
        if STOP.load(Acquire) {
            return false;
        }
        sys::yield_now();
    }
    true
}

/// Odd rounds madvise, even rounds munmap.
fn unmaps(round: u64) -> bool {
    round.is_multiple_of(2)
}

fn page(p: u64) -> u64 {
    REGION + p * 4096
}

/// A read of page `p` in round `r`, `zapped` if the round's zap had returned
/// before it: 0, or the failure status.
fn check(who: &str, r: u64, p: u64, zapped: bool, got: Option<u64>) -> i32 {
    let old = MAGIC | r;
    let ok = match (got, unmaps(r)) {
        (Some(v), _) if v == old => !zapped,
        // A cleared page faulted in again (zero-filled): only after a madvise.
        (Some(0), false) => true,
        (None, true) => true,
        _ => false,
    };
    if ok {
        return 0;
    }
    let what = if unmaps(r) { "munmap" } else { "madvise" };
    let after = if zapped { "after" } else { "before" };
    println!("zap_fault_race: {who}: round {r} ({what}) page {p}: read {got:x?} {after} the zap returned");
    if got == Some(old) {
        2
    } else {
        3
    }
}

/// The faulter (pages from the last down) or the reader (from the first up).
fn watch(cpu: u64, down: bool, rounds: u64, pages: u64) -> i32 {
    let who = if down { "faulter" } else { "reader" };
    if sys::set_affinity(Some(cpu)).is_err() {
        return 4;
    }
    for r in 1..=rounds {
        if !wait(|| ROUND.load(Acquire) >= r) {
            break;
        }
        let mut passes = 0u64;
        loop {
            let zapped = ZAPPED.load(Acquire) >= r;
            for i in 0..pages {
                let p = if down { pages - 1 - i } else { i };
                let status = check(who, r, p, zapped, probe::read(page(p)));
                if status != 0 {
                    return status;
                }
            }
            passes += 1;
            if passes == 8 {
                READY.fetch_add(1, AcqRel);
            }
            if zapped {
                break;
            }
            if STOP.load(Acquire) {
                return 0;
            }
        }
        ACKED.fetch_add(1, AcqRel);
    }
    0
}

fn zapper(rounds: u64, pages: u64) -> i32 {
    if sys::set_affinity(Some(1)).is_err() {
        return 4;
    }
    for r in 1..=rounds {
        if !wait(|| ROUND.load(Acquire) >= r && READY.load(Acquire) >= 2 * r) {
            break;
        }
        // SAFETY: the pages are read only through probes, and main writes
        // them only between rounds.
        let done = unsafe {
            if unmaps(r) {
                sys::munmap(REGION, pages * 4096)
            } else {
                sys::madvise(REGION, pages * 4096, abi::advice::DONTNEED)
            }
        };
        if let Err(e) = done {
            println!("zap_fault_race: round {r}: zap failed: {e}");
            return 4;
        }
        ZAPPED.store(r, Release);
    }
    0
}

/// A thread's end: its failure, if any, stops the others.
fn finish(status: i32) -> i32 {
    if status != 0 {
        stop(status);
    }
    FINISHED.fetch_add(1, AcqRel);
    status
}

fn pt_pages() -> Result<u64, i32> {
    let mut r = [0u64; abi::resources::COUNT];
    try_sys!(sys::stats(abi::stats::RESOURCES, &mut r), 1);
    Ok(r[abi::resources::PT_PAGES])
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let cycles = arg_or(arg & 0xffff_ffff, 50);
    let pages = arg_or((arg >> 32) & 0xffff, 16);
    if pages > 512 {
        fail!(1, "{pages} pages do not fit in 2 MiB");
    }
    let rounds = 2 * cycles;
    try_sys!(probe::install(), 1);
    try_sys!(sys::set_affinity(Some(0)), 1);
    // Not joined (see the top): the exit frees their stacks.
    let _threads = [
        try_sys!(thread::spawn(move || finish(zapper(rounds, pages))), 1),
        try_sys!(thread::spawn(move || finish(watch(2, true, rounds, pages))), 1),
        try_sys!(thread::spawn(move || finish(watch(3, false, rounds, pages))), 1),
    ];
    let mut tables = 0;
    for r in 1..=rounds {
        if !unmaps(r) {
            tables = pt_pages()?;
            let prot = abi::prot::READ | abi::prot::WRITE;
            // SAFETY: a fixed address nothing else in this program uses;
            // the other threads read it only through probes.
            try_sys!(unsafe { sys::mmap_raw(REGION, pages * 4096, prot, abi::map::FIXED) }, 1);
        }
        for p in 0..pages {
            // SAFETY: mapped read-write (since the madvise only zapped it);
            // no zap runs between rounds.
            unsafe { (page(p) as *mut u64).write_volatile(MAGIC | r) };
        }
        ROUND.store(r, Release);
        if !wait(|| ZAPPED.load(Acquire) >= r && ACKED.load(Acquire) >= 2 * r) {
            break;
        }
        if unmaps(r) && pt_pages()? != tables {
            let now = pt_pages()?;
            stop(5);
            println!("zap_fault_race: round {r}: {tables} page-table pages before the mmap, {now} after the munmap");
        }
    }
    // Every thread ends after its last round, or on STOP.
    while FINISHED.load(Acquire) < 3 {
        sys::yield_now();
    }
    match STATUS.load(Acquire) {
        0 => {
            println!("zap_fault_race: {cycles} cycles of {pages} pages, never old data after a zap returned");
            Ok(())
        }
        s => Err(s),
    }
}
