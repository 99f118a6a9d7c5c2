//! reclaim: `madvise(MADV_PAGEOUT)` and reclaim under memory pressure, seen
//! from user space. arg: bits 0..16 = pages N (0: 64), bits 16..24 = mode,
//! bits 24.. = flags (modes 0 and 1).
//!
//! - 0: a 4-thread process (3 helper threads on CPUs 1..3 writing memory
//!   of their own) pages out N pages from CPU 0. Always checked: one
//!   `reclaim_unmap` per page, one `reclaim_batch` per batch of
//!   [`BATCH`] (none with [`UNBATCHED`]), the next mprotect of the range
//!   flushes the pending batch once (`batched_pending_flush`) and the one
//!   after it not, and every page reads back its pattern, each by one
//!   swap-in. With [`EXACT`] (under `tlb.strategy=broadcast`), on CPU 0:
//!   one `vale1is` per page and one DSB per batch ([`UNBATCHED`]: per
//!   page; [`REMOTE`]: none on CPU 0, each batch's `reclaim_batch` counted
//!   on another CPU).
//! - 1: N pages shared with a forked child that waits in an IPC call: the
//!   parent's PAGEOUT unmaps each from both (two `reclaim_unmap` a page);
//!   then the child reads the pattern back and writes its own, and the
//!   parent reads the pattern back (2N swap-ins in all).
//! - 2: touches free frames + N pages (N: at most half the swap area),
//!   more than memory holds, each page with its own pattern, then reads
//!   them all back: memory pressure sends pages to swap, and nothing is
//!   lost.
//! - 3: a child touches more than memory and swap together hold: the
//!   kernel kills it for out of memory.
//! - 4: bad input: PAGEOUT of an unmapped range (ENOMEM, as DONTNEED),
//!   unaligned, empty or kernel ranges (EINVAL, counted as bad calls).
//! - 5: racing readers: 3 threads on CPUs 1..3 read the N pages and check
//!   their pattern without pause while CPU 0 pages them out 20 times: each
//!   read finds its page present, faults it back from swap, or waits for
//!   a batch still writing it; never a wrong value, never a kill.
//!
//! Exit 0 if all holds; 1 setup, 2 counts, 3 data, 4 child status, 5 errno.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::Ordering::Relaxed;

use ulib::abi::events as ev;
use ulib::abi::{advice, cause, errno, prot, resources as r, stats};
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, Errno};
use userland::bench::Helper;
use userland::{check_eq, ensure, fail, killed, try_sys};

/// The kernel's reclaim batch (`space::reclaim::BATCH`).
const BATCH: u64 = 32;
/// Flag: the counts on CPU 0 are exact (`tlb.strategy=broadcast`).
const EXACT: u64 = 1 << 24;
/// Flag: the kernel runs with `reclaim.batch=off`.
const UNBATCHED: u64 = 1 << 25;
/// Flag: the kernel runs with `reclaim.dsb=remote`.
const REMOTE: u64 = 1 << 26;
/// DSB word of `stats(TLBI)` and index of `vale1is` (the kernel's `OpKind`).
const DSB: usize = 12;
const VALE1IS: usize = 7;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let n = match arg & 0xffff {
        0 => 64,
        n => n,
    };
    match (arg >> 16) & 0xff {
        0 => threads(n, arg),
        1 => forked(n),
        2 => pressure(n),
        3 => beyond_swap(),
        4 => bad_input(),
        5 => racing_readers(n),
        m => fail!(1, "unknown mode {m}"),
    }
}

/// The word of page `i` of the pattern `seed`.
fn pattern(seed: u64, i: usize) -> u64 {
    (seed << 32) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fill(m: &mut Mapping, seed: u64) {
    for i in 0..(m.len() / PAGE_SIZE) as usize {
        m.page_mut(i)[0] = pattern(seed, i);
        m.page_mut(i)[511] = !pattern(seed, i);
    }
}

fn check(m: &mut Mapping, seed: u64, who: &str) -> Result<(), i32> {
    for i in 0..(m.len() / PAGE_SIZE) as usize {
        let p = m.page_mut(i);
        ensure!(
            p[0] == pattern(seed, i) && p[511] == !pattern(seed, i),
            3,
            "{who}: page {i} reads {:#x}/{:#x} after swap-in, expected {:#x}",
            p[0],
            p[511],
            pattern(seed, i)
        );
    }
    Ok(())
}

fn pageout(m: &Mapping) -> Result<u64, Errno> {
    // SAFETY: the pages stay mapped; their contents come back on access.
    unsafe { sys::madvise(m.addr(), m.len(), advice::PAGEOUT) }
}

fn words<const W: usize>(which: u64) -> Result<[u64; W], i32> {
    let mut w = [0u64; W];
    try_sys!(sys::stats(which, &mut w), 1);
    Ok(w)
}

fn events() -> Result<[u64; ev::COUNT], i32> {
    words(stats::EVENTS)
}

fn diff<const W: usize>(a: &[u64; W], b: &[u64; W]) -> [u64; W] {
    core::array::from_fn(|i| b[i].wrapping_sub(a[i]))
}

fn threads(n: u64, flags: u64) -> Result<(), i32> {
    let cpus = try_sys!(sys::stat(stats::CPUS), 1);
    ensure!(cpus >= 4, 1, "needs 4 CPUs, has {cpus}");
    try_sys!(sys::set_affinity(Some(0)), 1);
    let mut helpers = [None, None, None];
    for (cpu, h) in (1..4).zip(helpers.iter_mut()) {
        let mut own = try_sys!(Mapping::pages(4), 1);
        // Touched here: no fault of theirs meets the batch (a fault that
        // installs flushes a pending batch itself).
        own.words_mut().fill(0);
        let mut k = 0u64;
        *h = Some(Helper::start(cpu, move || {
            k += 1;
            own.words_mut()[(k % 2048) as usize] = k;
            Ok(())
        })?);
    }
    let mut m = try_sys!(Mapping::pages(n), 1);
    fill(&mut m, 1);
    let batches = n.div_ceil(BATCH);
    let (t0, e0, all0) = (words::<16>(stats::TLBI_CPU)?, words::<{ ev::COUNT }>(stats::EVENTS_CPU)?, events()?);
    try_sys!(pageout(&m), 1);
    let (t1, e1, all1) = (words::<16>(stats::TLBI_CPU)?, words::<{ ev::COUNT }>(stats::EVENTS_CPU)?, events()?);
    let (t, e, all) = (diff(&t0, &t1), diff(&e0, &e1), diff(&all0, &all1));
    println!(
        "reclaim: {n} pages out from CPU 0: CPU 0 vale1is {} dsb {}, reclaim_batch here {} of {}, unmaps {}",
        t[VALE1IS],
        t[DSB],
        e[ev::RECLAIM_BATCH],
        all[ev::RECLAIM_BATCH],
        all[ev::RECLAIM_UNMAP]
    );
    check_eq!(2, "reclaim_unmap events", n, all[ev::RECLAIM_UNMAP]);
    let expect_batches = if flags & UNBATCHED != 0 { 0 } else { batches };
    check_eq!(2, "reclaim_batch events", expect_batches, all[ev::RECLAIM_BATCH]);
    if flags & EXACT != 0 {
        check_eq!(2, "vale1is on CPU 0", n, t[VALE1IS]);
        let dsb = match (flags & UNBATCHED != 0, flags & REMOTE != 0) {
            (true, _) => n,
            (false, false) => batches,
            (false, true) => 0,
        };
        check_eq!(2, "DSBs on CPU 0", dsb, t[DSB]);
        let here = if flags & (REMOTE | UNBATCHED) != 0 { 0 } else { batches };
        check_eq!(2, "reclaim_batch events on CPU 0", here, e[ev::RECLAIM_BATCH]);
    }
    // The next call that changes the mm's entries flushes the pending
    // batch first, once.
    let before = events()?;
    try_sys!(m.protect(prot::READ | prot::WRITE), 1);
    let once = diff(&before, &events()?)[ev::BATCHED_PENDING_FLUSH];
    try_sys!(m.protect(prot::READ | prot::WRITE), 1);
    let twice = diff(&before, &events()?)[ev::BATCHED_PENDING_FLUSH];
    // Unbatched, each page's TLBI was waited for: nothing is pending.
    let pending = u64::from(flags & UNBATCHED == 0);
    check_eq!(2, "batched_pending_flush after the batch", pending, once);
    check_eq!(2, "batched_pending_flush after a second mprotect", pending, twice);
    let before = events()?;
    check(&mut m, 1, "reclaim")?;
    check_eq!(2, "swap_in events", n, diff(&before, &events()?)[ev::SWAP_IN]);
    for h in helpers.into_iter().flatten() {
        h.stop()?;
    }
    drop(m);
    println!("reclaim: {n} pages of a 4-thread process went to swap and came back intact");
    Ok(())
}

fn forked(n: u64) -> Result<(), i32> {
    let mut m = try_sys!(Mapping::pages(n), 1);
    fill(&mut m, 2);
    let ep = try_sys!(sys::ep_create(), 1);
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            // Waits until the parent paged out, touching nothing shared.
            if sys::ep_call(ep, [0; 4]).is_err() {
                sys::exit(1);
            }
            let ok = check(&mut m, 2, "child").is_ok();
            fill(&mut m, 3);
            let ok = ok && check(&mut m, 3, "child").is_ok();
            sys::exit(if ok { 0 } else { 3 })
        }
        Fork::Parent(pid) => pid,
    };
    let (token, _) = try_sys!(sys::ep_recv(ep), 1);
    let before = events()?;
    try_sys!(pageout(&m), 1);
    let unmaps = diff(&before, &events()?)[ev::RECLAIM_UNMAP];
    try_sys!(sys::ep_reply(token, [0; 4]), 1);
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    check_eq!(4, "status of the child", 0, status);
    check(&mut m, 2, "parent")?;
    let swapped_in = diff(&before, &events()?)[ev::SWAP_IN];
    check_eq!(2, "reclaim_unmap events (parent and child map each page)", 2 * n, unmaps);
    check_eq!(2, "swap_in events (each side reads its copy)", 2 * n, swapped_in);
    println!("reclaim: {n} pages shared after fork went out of both and came back to each");
    Ok(())
}

fn resources() -> Result<[u64; r::COUNT], i32> {
    words(stats::RESOURCES)
}

fn pressure(n: u64) -> Result<(), i32> {
    let res = resources()?;
    ensure!(res[r::SWAP_TOTAL] > 0, 1, "no swap area");
    let extra = n.min(res[r::SWAP_TOTAL] / 2);
    let pages = res[r::FREE_FRAMES] + extra;
    let before = events()?;
    let mut m = try_sys!(Mapping::pages(pages), 1);
    fill(&mut m, 4);
    check(&mut m, 4, "pressure")?;
    let swapped_in = diff(&before, &events()?)[ev::SWAP_IN];
    ensure!(swapped_in > 0, 2, "{pages} pages with {} frames free, yet no swap-in", res[r::FREE_FRAMES]);
    println!(
        "reclaim: {pages} pages touched with {} frames free: {swapped_in} swap-ins, data intact",
        res[r::FREE_FRAMES]
    );
    Ok(())
}

fn beyond_swap() -> Result<(), i32> {
    let res = resources()?;
    let pages = res[r::FREE_FRAMES] + res[r::SWAP_TOTAL] + 4096;
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            let Ok(mut m) = Mapping::pages(pages) else { sys::exit(1) };
            fill(&mut m, 5);
            sys::exit(2) // it all fitted: not expected
        }
        Fork::Parent(pid) => pid,
    };
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    check_eq!(4, "status of the child beyond memory and swap", killed(cause::OUT_OF_MEMORY), status);
    println!("reclaim: a child touching {pages} pages (memory and swap: fewer) died of out-of-memory");
    Ok(())
}

fn racing_readers(n: u64) -> Result<(), i32> {
    let cpus = try_sys!(sys::stat(stats::CPUS), 1);
    ensure!(cpus >= 4, 1, "needs 4 CPUs, has {cpus}");
    try_sys!(sys::set_affinity(Some(0)), 1);
    let mut m = try_sys!(Mapping::pages(n), 1);
    fill(&mut m, 6);
    let (addr, len) = (m.addr(), m.len());
    let words = m.leak_atomic();
    let mut readers = [None, None, None];
    for (cpu, h) in (1..4u64).zip(readers.iter_mut()) {
        let mut i = cpu as usize;
        *h = Some(Helper::start(cpu, move || {
            i = (i + 7) % n as usize;
            let (w0, w511) = (words[i * 512].load(Relaxed), words[i * 512 + 511].load(Relaxed));
            if w0 != pattern(6, i) || w511 != !pattern(6, i) {
                println!(
                    "reclaim: FAIL: CPU {cpu} read {w0:#x}/{w511:#x} from page {i}, expected {:#x}",
                    pattern(6, i)
                );
                return Err(3);
            }
            Ok(())
        })?);
    }
    let before = events()?;
    for _ in 0..20 {
        let round = events()?[ev::SWAP_IN];
        // SAFETY: the pages stay mapped; their contents come back on access.
        try_sys!(unsafe { sys::madvise(addr, len, advice::PAGEOUT) }, 1);
        // The readers bring the pages back (up to a second) before the next.
        let deadline = sys::time_ns() + 1_000_000_000;
        while events()?[ev::SWAP_IN] < round + n / 2 && sys::time_ns() < deadline {
            sys::yield_now();
        }
    }
    let d = diff(&before, &events()?);
    for h in readers.into_iter().flatten() {
        h.stop()?;
    }
    ensure!(d[ev::SWAP_IN] > 0, 2, "the readers never read a page back from swap");
    println!(
        "reclaim: 20 PAGEOUTs of {n} pages under 3 readers: {} unmaps, {} swap-ins, every read right",
        d[ev::RECLAIM_UNMAP],
        d[ev::SWAP_IN]
    );
    Ok(())
}

fn bad_input() -> Result<(), i32> {
    let m = try_sys!(Mapping::pages(2), 1);
    let hole = m.addr() + m.len() + 16 * PAGE_SIZE;
    let cases = [
        ("an unmapped range", hole, PAGE_SIZE, errno::ENOMEM),
        ("a range running past its mapping", m.addr(), m.len() + PAGE_SIZE, errno::ENOMEM),
        ("an unaligned address", m.addr() + 8, PAGE_SIZE, errno::EINVAL),
        ("an empty range", m.addr(), 0, errno::EINVAL),
        ("a kernel range", userland::KERNEL_ADDR, PAGE_SIZE, errno::EINVAL),
    ];
    for (what, addr, len, e) in cases {
        // SAFETY: each call fails and changes nothing (checked).
        match unsafe { sys::madvise(addr, len, advice::PAGEOUT) } {
            Err(got) if got.0 == e => {}
            other => fail!(5, "PAGEOUT of {what}: expected errno {e}, got {other:?}"),
        }
    }
    println!("reclaim: PAGEOUT refused unmapped, unaligned, empty and kernel ranges");
    Ok(())
}
