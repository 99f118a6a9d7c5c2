//! devrace: a device keeps reading or writing a buffer of this process
//! while the process changes its mappings; what the device sees must be
//! what the process's own accesses would see (mmu notifiers), and with
//! `mmu.notifier=late` it is not. `arg` = mode | rounds << 8 | 1 << 32 to
//! stop at the first stale round. Modes:
//!
//! 1. munmap: a watch reads the first word of 1024 written pages; the
//!    process unmaps them. The watch must end with EFAULT having seen only
//!    the value written, and no read may happen after munmap returned
//!    (with `late` it reads the freed, poisoned frame instead).
//! 2. madvise: a watch (through faults) reads a written word; the process
//!    drops the page (DONTNEED) and reads it back (zero). The watch must
//!    see the old value, then zero, nothing else.
//! 3. mprotect: a fill runs over 4 MiB; once it has started, the process
//!    makes the buffer read-only. The fill must end with EFAULT and no
//!    byte may change after mprotect returned.
//! 4. fork: the device caches writable entries of a buffer, the process
//!    forks; the device's writes to the parent's buffer fail until the
//!    parent breaks copy-on-write, then land in the parent's copy only.
//!
//! Exit 0 if no round was stale; 2 | stale rounds << 8 if some were; 1
//! setup, 3 a job ended otherwise than it may, 4 the device made no
//! progress in 5 s, 5 most rounds raced nothing, 6 the fork's child.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::*};

use ulib::abi::advice;
use ulib::abi::prot;
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, Errno};
use userland::device::{self as dev, wait_until_at_least};
use userland::{fail, try_sys};

const MS: u64 = 1_000_000;
const MAGIC: u64 = 0xde71_ce00_0000_0000;
/// The device used (device 1 for the fork, to use both).
const DEV: u64 = 0;

/// What one round found.
enum Round {
    Clean,
    /// The device saw or did what it must not.
    Stale,
    /// The race did not happen (the device finished first).
    Missed,
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let mode = arg & 0xff;
    let rounds = userland::arg_or(arg >> 8 & 0xffff, 5);
    let stop_at_first = arg >> 32 & 1 != 0;
    try_sys!(sys::set_affinity(Some(0)), 1);
    let progress = &try_sys!(Mapping::pages(1), 1).leak_atomic()[0];
    let ep = try_sys!(sys::ep_create(), 1);
    let dev = if mode == 4 { 1 } else { DEV };
    try_sys!(sys::dev_bind(dev), 1);
    let (mut stale, mut missed, mut done) = (0u64, 0u64, 0u64);
    for r in 1..=rounds {
        let round = match mode {
            1 => munmap(r, progress)?,
            2 => madvise(r, progress)?,
            3 => mprotect(r)?,
            4 => fork(r, ep)?,
            _ => fail!(1, "unknown mode {mode}"),
        };
        done = r;
        match round {
            Round::Clean => {}
            Round::Stale => stale += 1,
            Round::Missed => missed += 1,
        }
        if stale > 0 && stop_at_first {
            break;
        }
    }
    try_sys!(sys::dev_unbind(dev), 1);
    println!("devrace: mode {mode}: {stale} stale rounds of {done} ({missed} raced nothing)");
    if missed * 2 > done {
        fail!(5, "in {missed} rounds of {done} the device finished before the change");
    }
    if stale > 0 {
        return Err(2 | (stale.min(0x7f_ffff) as i32) << 8);
    }
    Ok(())
}

/// Starts a watch of `src` counting into `progress` and waits for its
/// third read.
fn start_watch(src: u64, progress: &AtomicU64, through_faults: bool) -> Result<u64, i32> {
    progress.store(0, Relaxed);
    let job = dev::watch(src, progress.as_ptr() as u64, 3000 * MS, through_faults);
    // SAFETY: the watch writes only `progress`, read through atomics.
    let id = try_sys!(unsafe { sys::dev_submit(DEV, &job) }, 1);
    if !wait_until_at_least(progress, 3, 5000 * MS) {
        fail!(4, "the watch made no read in 5 s");
    }
    Ok(id)
}

fn munmap(r: u64, progress: &AtomicU64) -> Result<Round, i32> {
    const PAGES: u64 = 1024;
    let buf = try_sys!(Mapping::pages(PAGES), 1).leak();
    let v = MAGIC | r;
    for page in buf.chunks_mut((PAGE_SIZE / 8) as usize) {
        page[0] = v;
    }
    let at = buf.as_ptr() as u64;
    let id = start_watch(at, progress, false)?;
    // SAFETY: `buf` is not used again.
    try_sys!(unsafe { sys::munmap(at, PAGES * PAGE_SIZE) }, 1);
    let at_return = progress.load(Acquire);
    let (res, rep) = dev::wait(DEV, id, 0);
    // A read that had started before the munmap may count itself after.
    let late_reads = rep.reads.saturating_sub(at_return + 1);
    let foreign = rep.values().iter().any(|&x| x != v);
    if foreign || late_reads > 0 {
        println!("devrace: round {r}: the device read {:x?} ({late_reads} reads after munmap returned)", rep.values());
        return Ok(Round::Stale);
    }
    match res {
        Err(Errno::EFAULT) => Ok(Round::Clean),
        Ok(_) => Ok(Round::Missed),
        Err(e) => fail!(3, "round {r}: the watch ended with {e}"),
    }
}

fn madvise(r: u64, progress: &AtomicU64) -> Result<Round, i32> {
    let buf = &try_sys!(Mapping::pages(1), 1).leak_atomic()[0];
    let v = MAGIC | r;
    buf.store(v, Relaxed);
    let id = start_watch(buf.as_ptr() as u64, progress, true)?;
    // SAFETY: the word is read only through atomics; zero is a valid value.
    try_sys!(unsafe { sys::madvise(buf.as_ptr() as u64, PAGE_SIZE, advice::DONTNEED) }, 1);
    let after = progress.load(Acquire);
    let now = buf.load(Relaxed);
    if now != 0 {
        fail!(3, "round {r}: the page reads {now:#x} after DONTNEED");
    }
    if !wait_until_at_least(progress, after + 3, 5000 * MS) {
        fail!(4, "round {r}: the watch made no read of the new page in 5 s");
    }
    let (res, rep) = dev::wait(DEV, id, ulib::abi::device::STOP);
    try_sys!(res, 3);
    // SAFETY: the page is not used again.
    try_sys!(unsafe { sys::munmap(buf.as_ptr() as u64, PAGE_SIZE) }, 1);
    if rep.values() != [v, 0] {
        let (seen, faults) = (rep.values(), rep.faults);
        println!("devrace: round {r}: the device read {seen:x?} ({faults} faults), expected [{v:#x}, 0]");
        return Ok(Round::Stale);
    }
    Ok(Round::Clean)
}

/// The wrapping sum of `words`, read with volatile loads.
fn sum(words: &[AtomicU64]) -> u64 {
    words.iter().fold(0u64, |s, w| s.wrapping_mul(31).wrapping_add(w.load(Relaxed)))
}

fn mprotect(r: u64) -> Result<Round, i32> {
    const PAGES: u64 = 1024;
    let len = PAGES * PAGE_SIZE;
    let buf = try_sys!(Mapping::pages(PAGES), 1).leak_atomic();
    for page in buf.chunks((PAGE_SIZE / 8) as usize) {
        page[0].store(MAGIC | r, Relaxed);
    }
    let at = buf.as_ptr() as u64;
    // SAFETY: the buffer is read only through atomics while the fill runs.
    let id = try_sys!(unsafe { sys::dev_submit(DEV, &dev::fill(at, len, 0x5a)) }, 1);
    let give_up = sys::time_ns() + 5000 * MS;
    while buf[0].load(Relaxed) != 0x5a5a_5a5a_5a5a_5a5a {
        if sys::time_ns() > give_up {
            fail!(4, "round {r}: the fill wrote nothing in 5 s");
        }
        core::hint::spin_loop();
    }
    // SAFETY: the buffer is only read from now on.
    try_sys!(unsafe { sys::mprotect(at, len, prot::READ) }, 1);
    let before = sum(buf);
    let res = sys::dev_wait(DEV, id, None, 0);
    let after = sum(buf);
    // SAFETY: the buffer is not used again.
    try_sys!(unsafe { sys::munmap(at, len) }, 1);
    if before != after {
        println!("devrace: round {r}: the buffer changed after mprotect(READ) returned ({res:?})");
        return Ok(Round::Stale);
    }
    match res {
        Err(Errno::EFAULT) => Ok(Round::Clean),
        Ok(_) => Ok(Round::Missed),
        Err(e) => fail!(3, "round {r}: the fill ended with {e}"),
    }
}

/// Fills `len` bytes at `at` with `byte` on device 1.
fn device_fill(at: u64, len: u64, byte: u8) -> Result<u64, Errno> {
    // SAFETY: the callers hold no reference into the range meanwhile.
    let id = unsafe { sys::dev_submit(1, &dev::fill(at, len, byte)) }?;
    sys::dev_wait(1, id, None, 0)
}

fn fork(r: u64, ep: u64) -> Result<Round, i32> {
    const PAGES: u64 = 4;
    let len = PAGES * PAGE_SIZE;
    let buf = try_sys!(Mapping::pages(PAGES), 1).leak_atomic();
    let at = buf.as_ptr() as u64;
    buf.iter().for_each(|w| w.store(1, Relaxed));
    // The device caches a writable entry for every page.
    try_sys!(device_fill(at, len, 0xa1), 3);
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            // Until the parent's device is done with its buffer.
            let ok = sys::ep_call(ep, [0; 4]).is_ok();
            let seen = buf.iter().map(|w| w.load(Relaxed)).find(|&w| w != 0xa1a1_a1a1_a1a1_a1a1);
            sys::exit(match (ok, seen) {
                (false, _) => 7,
                (true, None) => 0,
                (true, Some(w)) => {
                    println!("devrace: round {r}: the child's copy holds {w:#x}");
                    6
                }
            })
        }
        Fork::Parent(pid) => pid,
    };
    // The buffer is copy-on-write now: the device may not write it.
    let first = device_fill(at, len, 0xb2);
    // The parent writes each page (its own copy), then the device can.
    for page in buf.chunks((PAGE_SIZE / 8) as usize) {
        page[0].store(0xa1a1_a1a1_a1a1_a1a1, Relaxed);
    }
    let second = device_fill(at, len, 0xb2);
    let (token, _) = try_sys!(sys::ep_recv(ep), 1);
    try_sys!(sys::ep_reply(token, [0; 4]), 1);
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    let mine = buf.iter().all(|w| w.load(Relaxed) == 0xb2b2_b2b2_b2b2_b2b2);
    // SAFETY: the buffer is not used again.
    try_sys!(unsafe { sys::munmap(at, len) }, 1);
    match (first, second, status, mine) {
        (Err(Errno::EFAULT), Ok(n), 0, true) if n == len => Ok(Round::Clean),
        (Ok(_), _, _, _) | (_, _, 6, _) => {
            println!("devrace: round {r}: after the fork the device wrote shared pages ({first:?}, child {status})");
            Ok(Round::Stale)
        }
        other => fail!(6, "round {r}: fills, child status, parent's copy: {other:?}"),
    }
}
