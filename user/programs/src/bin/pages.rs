//! pages: 2 MiB blocks (`map::HUGE`) and 64 KiB contiguous runs
//! (`map::CONT`) seen from user space. arg: bits 0..16 = N, bits 16..24 =
//! mode, bit 24 = [`EXACT`], bits 28..32 = the step whose TLBIs are
//! checked, bits 32..62 = the TLBIs that step must issue (six bits each:
//! vae1is, vale1is, rvae1is, rvale1is, aside1is; see [`Ops`]).
//!
//! With [`EXACT`] (under `tlb.strategy=broadcast`, the caller's plan for
//! the CPU in bits 32..62) one step's TLBI deltas must be exactly that,
//! and no other kind issued; without it nothing about TLBIs is checked.
//! Every mode checks its data and the block and run events it causes.
//!
//! - 0 `blocks`: maps N + 1 blocks (N: 1..=40; 0: 1), writes each page;
//!   one `block_fill` per block; munmaps the first N (step 0): no split,
//!   exactly N·512 frames freed, the last block's data intact (it goes
//!   with the process).
//! - 1 `reader`: N rounds (0: 20) of a reader thread on CPU 1 reading
//!   every page of a fresh block but one in a loop while CPU 0 munmaps
//!   (odd rounds) or mprotects read-only (even rounds) that one page,
//!   splitting the block under it: every read returns the page's pattern;
//!   one `block_fill` and one `block_split` per round.
//! - 2 `data`: a block of which every page is written, then
//!   - step 0: munmap of one page in its middle (a split): the 511 others
//!     read back, one `block_split`;
//!   - the page mapped again (plain), then step 1: `madvise(COLLAPSE)`:
//!     one `collapse`, every page reads back (the remapped one zero);
//!   - step 2: munmap of the whole block (now one again): block-level ops.
//!
//!   A second block of the same mapping keeps the level-2 table, so only
//!   leaves go at each step.
//! - 3 `cont`: four runs of a `map::CONT` mapping, each page written: four
//!   `run_fill`; step 0: munmap of one page of the first run (an unfold:
//!   the run's 16 pages, then the page); mprotect of all the second run:
//!   no unfold; mprotect of one page of the third: one more; data intact.
//! - 4 `fork`: a written block shared with a forked child; the child
//!   writes a page (its block split, or copied whole under
//!   `mm.block_cow=copy`), then, while it waits in an IPC call, the parent
//!   writes another; each sees only its own write. Events are the
//!   caller's to check (the kernel's counters, the child's included).
//! - 5 `bad`: bad input: COLLAPSE of an unaligned or unmapped range,
//!   HUGEPAGE of an unmapped one, unknown mmap flags.
//! - 6 `sizes`: maps 4 MiB with `map::HUGE` if N has bit 0, `map::CONT`
//!   if bit 1, advises `NOHUGEPAGE` if bit 2, writes every page and
//!   unmaps it: the events (which `mm.thp` decides) are the caller's to
//!   check.
//!
//! Exit 0 if all holds; 1 setup, 2 counts, 3 data, 4 child, 5 errno.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::*};

use ulib::abi::events as ev;
use ulib::abi::{advice, errno, map, prot, stats};
use ulib::sys::{self, Fork};
use ulib::{println, thread, Errno};
use userland::{check_eq, ensure, fail, try_sys};

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const BLOCK_PAGES: u64 = BLOCK / PAGE;
const RUN: u64 = 16 * PAGE;
const RW: u64 = prot::READ | prot::WRITE;
/// Flag: check one step's TLBIs exactly.
const EXACT: u64 = 1 << 24;

/// Broadcast TLBI kinds of one step: vae1is, vale1is, rvae1is, rvale1is,
/// aside1is (the indices of `stats(TLBI)`, the kernel's `OpKind`, follow).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ops([u64; 5]);

const KINDS: [(usize, &str); 5] = [(6, "vae1is"), (7, "vale1is"), (8, "rvae1is"), (9, "rvale1is"), (10, "aside1is")];
use ulib::abi::stats::TLBI_NAMES;

impl Ops {
    fn unpack(w: u64) -> Ops {
        Ops(core::array::from_fn(|i| (w >> (6 * i)) & 63))
    }
}

impl core::fmt::Display for Ops {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (_, name)) in KINDS.iter().enumerate() {
            write!(f, "{}{name}={}", if i == 0 { "" } else { " " }, self.0[i])?;
        }
        Ok(())
    }
}

/// The argument, decoded.
#[derive(Clone, Copy)]
struct Arg {
    n: u64,
    /// The step whose TLBIs must be `ops` (with [`EXACT`]).
    exact: Option<(u64, Ops)>,
}

impl Arg {
    /// Checks the TLBIs of step `step`, `before` taken just before it.
    fn check_step(&self, step: u64, what: &str, before: &[u64; 13]) -> Result<(), i32> {
        let after = tlbi()?;
        let d: [u64; 12] = core::array::from_fn(|i| after[i].wrapping_sub(before[i]));
        let got = Ops(KINDS.map(|(k, _)| d[k]));
        println!("pages: {what}: {got}");
        let Some((_, want)) = self.exact.filter(|&(s, _)| s == step) else { return Ok(()) };
        for (k, name) in TLBI_NAMES.iter().enumerate() {
            ensure!(KINDS.iter().any(|&(i, _)| i == k) || d[k] == 0, 2, "{what}: {name}={} issued too", d[k]);
        }
        ensure!(got == want, 2, "{what}: issued {got}, the policy plans {want}");
        Ok(())
    }
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let a = Arg { n: arg & 0xffff, exact: (arg & EXACT != 0).then(|| ((arg >> 28) & 0xf, Ops::unpack(arg >> 32))) };
    match (arg >> 16) & 0xff {
        0 => blocks(a),
        1 => reader(a),
        2 => data(a),
        3 => cont(a),
        4 => fork(),
        5 => bad(),
        6 => sizes(a.n),
        m => fail!(1, "unknown mode {m}"),
    }
}

fn words<const W: usize>(which: u64) -> Result<[u64; W], i32> {
    let mut w = [0u64; W];
    try_sys!(sys::stats(which, &mut w), 1);
    Ok(w)
}

fn tlbi() -> Result<[u64; 13], i32> {
    words(stats::TLBI)
}

fn events() -> Result<[u64; ev::COUNT], i32> {
    words(stats::EVENTS)
}

fn free_frames() -> Result<u64, i32> {
    Ok(words::<2>(stats::FRAMES)?[0])
}

/// `event` rose by `want` since `before`.
fn check_event(before: &[u64; ev::COUNT], event: usize, want: u64) -> Result<(), i32> {
    let now = events()?;
    let name = stats::EVENT_NAMES[event];
    check_eq!(2, name, want, now[event].wrapping_sub(before[event]));
    Ok(())
}

/// The word of page `i` of pattern `seed`.
fn pattern(seed: u64, i: u64) -> u64 {
    (seed << 40) ^ (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn word(addr: u64) -> *mut u64 {
    addr as *mut u64
}

/// Writes the pattern into the first and last word of pages `[from, to)`
/// of the memory at `base`.
fn fill(base: u64, from: u64, to: u64, seed: u64) {
    for i in from..to {
        // SAFETY: the callers pass pages mapped read-write, used by no one
        // else through Rust references.
        unsafe {
            word(base + i * PAGE).write_volatile(pattern(seed, i));
            word(base + i * PAGE + PAGE - 8).write_volatile(!pattern(seed, i));
        }
    }
}

/// Checks the pattern in pages `[from, to)` but `skip`; a page in `zero`
/// must read zero instead.
fn check(base: u64, from: u64, to: u64, seed: u64, skip: Option<u64>, zero: Option<u64>) -> Result<(), i32> {
    for i in (from..to).filter(|&i| Some(i) != skip) {
        let (w0, w1) = if Some(i) == zero { (0, 0) } else { (pattern(seed, i), !pattern(seed, i)) };
        let page = base + i * PAGE;
        // SAFETY: the callers pass mapped readable pages.
        let (a, b) = unsafe { (word(page).read_volatile(), word(page + PAGE - 8).read_volatile()) };
        ensure!(a == w0 && b == w1, 3, "page {i} at {page:#x} reads {a:#x}/{b:#x}, expected {w0:#x}/{w1:#x}");
    }
    Ok(())
}

fn mmap(len: u64, flags: u64) -> Result<u64, i32> {
    // SAFETY: without FIXED the kernel chooses an unused range.
    let a = try_sys!(unsafe { sys::mmap_raw(0, len, RW, flags) }, 1);
    if flags & map::HUGE != 0 && len >= BLOCK {
        ensure!(a % BLOCK == 0, 1, "a HUGE mapping of {len:#x} bytes at {a:#x}: not block-aligned");
    }
    Ok(a)
}

fn munmap(addr: u64, len: u64) -> Result<(), i32> {
    // SAFETY: the callers unmap memory only they used, through raw
    // pointers, and no longer use.
    try_sys!(unsafe { sys::munmap(addr, len) }, 1);
    Ok(())
}

fn mprotect(addr: u64, len: u64, p: u64) -> Result<(), i32> {
    // SAFETY: the callers only read what they make read-only.
    try_sys!(unsafe { sys::mprotect(addr, len, p) }, 1);
    Ok(())
}

fn madvise(addr: u64, len: u64, adv: u64) -> Result<u64, Errno> {
    // SAFETY: the advice used here keeps the contents (COLLAPSE copies
    // them, HUGEPAGE/NOHUGEPAGE only choose sizes) or fails.
    unsafe { sys::madvise(addr, len, adv) }
}

fn blocks(a: Arg) -> Result<(), i32> {
    let n = if a.n == 0 { 1 } else { a.n };
    ensure!(n <= 40, 1, "at most 40 blocks, not {n}");
    let e0 = events()?;
    let base = mmap((n + 1) * BLOCK, map::HUGE)?;
    fill(base, 0, (n + 1) * BLOCK_PAGES, 1);
    check_event(&e0, ev::BLOCK_FILL, n + 1)?;
    let (free, t0) = (free_frames()?, tlbi()?);
    munmap(base, n * BLOCK)?;
    a.check_step(0, "munmap of the blocks", &t0)?;
    let freed = free_frames()?.wrapping_sub(free);
    check_eq!(2, "frames freed by the munmap", n * BLOCK_PAGES, freed);
    check_event(&e0, ev::BLOCK_SPLIT, 0)?;
    check(base, n * BLOCK_PAGES, (n + 1) * BLOCK_PAGES, 1, None, None)?;
    // The last block goes with the process (no flush of its own: the
    // caller counts what the munmap's ops hinted).
    println!("pages: blocks: {n} of {} blocks unmapped, {freed} frames freed, the last intact", n + 1);
    Ok(())
}

/// The page of a block the reader leaves alone, and the others change.
const VICTIM: u64 = 256;

static ROUND: AtomicU64 = AtomicU64::new(0);
static ADDR: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static ACKED: AtomicU64 = AtomicU64::new(0);
/// Set by a reader that failed, so the main thread stops waiting for it.
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The reader: on CPU 1, every page of the round's block but [`VICTIM`],
/// over and over, until two passes after the split is done.
fn read_block(rounds: u64) -> i32 {
    let r = (|| {
        try_sys!(sys::set_affinity(Some(1)), 1);
        for r in 1..=rounds {
            while ROUND.load(Acquire) != r {
                core::hint::spin_loop();
            }
            let base = ADDR.load(Acquire);
            let (mut passes, mut after) = (0u64, 0u64);
            while after < 2 {
                let done = DONE.load(Acquire) == r;
                for i in (0..BLOCK_PAGES).filter(|&i| i != VICTIM) {
                    // SAFETY: the page stays mapped and readable this round.
                    let v = unsafe { word(base + i * PAGE).read_volatile() };
                    ensure!(
                        v == pattern(r, i),
                        3,
                        "round {r}, pass {passes}: page {i} reads {v:#x}, expected {:#x}",
                        pattern(r, i)
                    );
                }
                passes += 1;
                if passes == 2 {
                    READY.store(r, Release);
                }
                after += done as u64;
            }
            ACKED.store(r, Release);
        }
        Ok(())
    })();
    if r.is_err() {
        FAILED.store(1, Release);
    }
    r.err().unwrap_or(0)
}

/// Waits until `flag` is `r`, or fails if the reader did.
fn wait_for(flag: &AtomicU64, r: u64) -> Result<(), i32> {
    while flag.load(Acquire) != r {
        ensure!(FAILED.load(Acquire) == 0, 3, "the reader failed in round {r}");
        core::hint::spin_loop();
    }
    Ok(())
}

fn reader(a: Arg) -> Result<(), i32> {
    let rounds = if a.n == 0 { 20 } else { a.n };
    try_sys!(sys::set_affinity(Some(0)), 1);
    let e0 = events()?;
    let h = try_sys!(thread::spawn(move || read_block(rounds)), 1);
    let mut out = Ok(());
    for r in 1..=rounds {
        let base = mmap(BLOCK, map::HUGE)?;
        fill(base, 0, BLOCK_PAGES, r);
        ADDR.store(base, Release);
        ROUND.store(r, Release);
        out = wait_for(&READY, r);
        if out.is_err() {
            break;
        }
        let victim = base + VICTIM * PAGE;
        if r % 2 == 1 {
            munmap(victim, PAGE)?;
        } else {
            mprotect(victim, PAGE, prot::READ)?;
        }
        DONE.store(r, Release);
        out = wait_for(&ACKED, r);
        if out.is_err() {
            break;
        }
        munmap(base, BLOCK)?;
    }
    let joined = try_sys!(h.join(), 1);
    out?;
    check_eq!(3, "the reader's status", 0, joined);
    check_event(&e0, ev::BLOCK_FILL, rounds)?;
    check_event(&e0, ev::BLOCK_SPLIT, rounds)?;
    println!("pages: reader: {rounds} blocks split under a reader on CPU 1, every read right");
    Ok(())
}

fn data(a: Arg) -> Result<(), i32> {
    let e0 = events()?;
    let base = mmap(2 * BLOCK, map::HUGE)?;
    fill(base, 0, 2 * BLOCK_PAGES, 7);
    check_event(&e0, ev::BLOCK_FILL, 2)?;
    // Step 0: a split by munmap of one page.
    let hole = BLOCK_PAGES / 2 + 3;
    let t0 = tlbi()?;
    munmap(base + hole * PAGE, PAGE)?;
    a.check_step(0, "munmap of one page of a block (split)", &t0)?;
    check_event(&e0, ev::BLOCK_SPLIT, 1)?;
    check(base, 0, 2 * BLOCK_PAGES, 7, Some(hole), None)?;
    // The page back (the mapping merges again), then step 1: collapse.
    // SAFETY: the range is the hole just unmapped.
    try_sys!(unsafe { sys::mmap_raw(base + hole * PAGE, PAGE, RW, map::FIXED | map::HUGE) }, 1);
    let t1 = tlbi()?;
    try_sys!(madvise(base, BLOCK, advice::COLLAPSE), 1);
    a.check_step(1, "madvise(COLLAPSE) of the split block", &t1)?;
    check_event(&e0, ev::COLLAPSE, 1)?;
    check(base, 0, 2 * BLOCK_PAGES, 7, None, Some(hole))?;
    // A write after the collapse faults nothing in: the block is there.
    let faults = try_sys!(sys::stat(stats::PAGE_FAULTS), 1);
    fill(base, 0, BLOCK_PAGES, 8);
    check_eq!(2, "faults writing the collapsed block", 0, try_sys!(sys::stat(stats::PAGE_FAULTS), 1) - faults);
    // Step 2: the whole block, one entry again.
    let t2 = tlbi()?;
    munmap(base, BLOCK)?;
    a.check_step(2, "munmap of the collapsed block", &t2)?;
    check_event(&e0, ev::BLOCK_SPLIT, 1)?;
    check(base, BLOCK_PAGES, 2 * BLOCK_PAGES, 7, None, None)?;
    munmap(base + BLOCK, BLOCK)?;
    println!("pages: data: a block split, collapsed and unmapped; every page kept its data");
    Ok(())
}

fn cont(a: Arg) -> Result<(), i32> {
    // A place for four runs: a plain mapping, then CONT over its aligned part.
    let area = mmap(5 * RUN, 0)?;
    let base = area.next_multiple_of(RUN);
    // SAFETY: inside the fresh mapping, untouched.
    try_sys!(unsafe { sys::mmap_raw(base, 4 * RUN, RW, map::FIXED | map::CONT) }, 1);
    let e0 = events()?;
    let pages = 4 * RUN / PAGE;
    fill(base, 0, pages, 9);
    check_event(&e0, ev::RUN_FILL, 4)?;
    check_event(&e0, ev::BLOCK_FILL, 0)?;
    let hole = 5;
    let t0 = tlbi()?;
    munmap(base + hole * PAGE, PAGE)?;
    a.check_step(0, "munmap of one page of a run (unfold)", &t0)?;
    check_event(&e0, ev::RUN_UNFOLD, 1)?;
    check(base, 0, pages, 9, Some(hole), None)?;
    mprotect(base + RUN, RUN, prot::READ)?;
    check_event(&e0, ev::RUN_UNFOLD, 1)?;
    mprotect(base + 2 * RUN + 3 * PAGE, PAGE, prot::READ)?;
    check_event(&e0, ev::RUN_UNFOLD, 2)?;
    check(base, 0, pages, 9, Some(hole), None)?;
    munmap(area, 5 * RUN)?;
    check_event(&e0, ev::RUN_UNFOLD, 2)?;
    println!("pages: cont: 4 runs filled, 2 unfolded, every page kept its data");
    Ok(())
}

fn fork() -> Result<(), i32> {
    let base = mmap(BLOCK, map::HUGE)?;
    fill(base, 0, BLOCK_PAGES, 11);
    let ep = try_sys!(sys::ep_create(), 1);
    let (mine, theirs) = (3u64, 5u64);
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            let r = (|| {
                // SAFETY: the block is mapped read-write (shared until written).
                unsafe { word(base + theirs * PAGE).write_volatile(0xc0de) };
                check(base, 0, BLOCK_PAGES, 11, Some(theirs), None)?;
                // Wait until the parent wrote its page.
                try_sys!(sys::ep_call(ep, [0; 4]), 4);
                check(base, 0, BLOCK_PAGES, 11, Some(theirs), None)?;
                // SAFETY: as above.
                let v = unsafe { word(base + theirs * PAGE).read_volatile() };
                check_eq!(3, "the child's own write", 0xc0de, v);
                Ok(())
            })();
            sys::exit(r.err().unwrap_or(0))
        }
        Fork::Parent(pid) => pid,
    };
    let (token, _) = try_sys!(sys::ep_recv(ep), 1);
    // The child wrote its page and waits: now the parent writes.
    // SAFETY: as in the child.
    unsafe { word(base + mine * PAGE).write_volatile(0xfa7e) };
    check(base, 0, BLOCK_PAGES, 11, Some(mine), None)?;
    try_sys!(sys::ep_reply(token, [0; 4]), 1);
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    check_eq!(4, "the child's status", 0, status);
    check(base, 0, BLOCK_PAGES, 11, Some(mine), None)?;
    // SAFETY: as above.
    let v = unsafe { word(base + mine * PAGE).read_volatile() };
    check_eq!(3, "the parent's own write", 0xfa7e, v);
    munmap(base, BLOCK)?;
    println!("pages: fork: a shared block written on each side, each kept its own data");
    Ok(())
}

fn bad() -> Result<(), i32> {
    let base = mmap(2 * BLOCK, map::HUGE)?;
    let expect = |what: &str, r: Result<u64, Errno>, want: i64| -> Result<(), i32> {
        match r {
            Err(Errno(e)) if e == want => Ok(()),
            other => fail!(5, "{what}: {other:?}, expected errno {want}"),
        }
    };
    expect("COLLAPSE of an unaligned address", madvise(base + 8, BLOCK, advice::COLLAPSE), errno::EINVAL)?;
    expect("COLLAPSE of an empty range", madvise(base, 0, advice::COLLAPSE), errno::EINVAL)?;
    expect("COLLAPSE past the mapping", madvise(base + BLOCK, 2 * BLOCK, advice::COLLAPSE), errno::ENOMEM)?;
    expect("HUGEPAGE past the mapping", madvise(base, 3 * BLOCK, advice::HUGEPAGE), errno::ENOMEM)?;
    expect("NOHUGEPAGE of nothing mapped", madvise(base + 4 * BLOCK, BLOCK, advice::NOHUGEPAGE), errno::ENOMEM)?;
    // SAFETY: refused, or a fresh mapping the kernel chose.
    let r = unsafe { sys::mmap_raw(0, BLOCK, RW, map::HUGE | map::CONT | 0x40) };
    expect("mmap with an unknown flag", r, errno::EINVAL)?;
    // What fails changes nothing: the block still fills on first touch.
    let e0 = events()?;
    fill(base, 0, 1, 1);
    check_event(&e0, ev::BLOCK_FILL, 1)?;
    // A COLLAPSE of pages that are a block already, or of a range with no
    // whole block in it, succeeds and does nothing.
    try_sys!(madvise(base, BLOCK, advice::COLLAPSE), 5);
    try_sys!(madvise(base + BLOCK, PAGE, advice::COLLAPSE), 5);
    check_event(&e0, ev::COLLAPSE, 0)?;
    munmap(base, 2 * BLOCK)?;
    println!("pages: bad: every bad call refused, nothing changed");
    Ok(())
}

fn sizes(how: u64) -> Result<(), i32> {
    let flags = if how & 1 != 0 { map::HUGE } else { 0 } | if how & 2 != 0 { map::CONT } else { 0 };
    let len = 2 * BLOCK;
    // SAFETY: without FIXED the kernel chooses an unused range.
    let base = try_sys!(unsafe { sys::mmap_raw(0, len, RW, flags) }, 1);
    if how & 4 != 0 {
        try_sys!(madvise(base, len, advice::NOHUGEPAGE), 1);
    }
    fill(base, 0, len / PAGE, 12);
    check(base, 0, len / PAGE, 12, None, None)?;
    munmap(base, len)?;
    println!("pages: sizes: 4 MiB at {base:#x} with flags {flags:#x} written and read back");
    Ok(())
}
