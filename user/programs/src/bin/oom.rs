//! oom: out-of-memory and limit behaviour; arg = mode. Every mode ends with
//! the kernel's resources (`stats(RESOURCES)`) back where they were before
//! it started (the kernel test checks again after the process is gone).
//! - 0: a child maps 64 GiB and touches it until the kernel kills it with
//!   the out-of-memory cause.
//! - 1: fork while memory runs out: free frames are stepped up from almost
//!   none until a fork succeeds; each failed fork returns ENOMEM and leaves
//!   every counter as it was (a fork failing half-way, at every point).
//! - 2: the same for spawn.
//! - 3: endpoints: ep_create fails with ENOMEM at `MAX_ENDPOINTS`.
//! - 4: threads: thread_create fails with EAGAIN at `MAX_THREADS`, and with
//!   ENOMEM when no kernel stack can be had.
//! - 5: mappings: mmap fails with ENOMEM at `MAX_MAPPINGS`, and so do a
//!   munmap and an mprotect that would split a mapping there.
//! - 6: the kernel heap at its reserve (boot with a large
//!   `kheap.reserve_kb`): children take mappings until calls fail with
//!   ENOMEM counted as heap refusals; calls that free memory still work.
//!
//! Exit 0 on success; 1 setup, 2 a call did not fail as expected, 3 a
//! counter did not come back, 4 a child's status.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, Ordering};

use ulib::abi::{cause, limits, prot, resources as r, stats};
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, thread, Errno};
use userland::{check_eq, ensure, fail, killed, try_sys};

type Res = [u64; r::COUNT];

fn res() -> Res {
    let mut w = [0u64; r::COUNT];
    let _ = sys::stats(stats::RESOURCES, &mut w);
    w
}

fn free_frames() -> u64 {
    res()[r::FREE_FRAMES]
}

/// Fails with `status` unless `r` is the error `e`.
fn expect_err(status: i32, what: &str, e: Errno, r: Result<u64, Errno>) -> Result<(), i32> {
    match r {
        Err(got) if got == e => Ok(()),
        other => fail!(status, "{what}: expected {e}, got {other:?}"),
    }
}

/// Fails with status 3 unless every level in `now` equals `base`. A
/// difference must last: `now` is read again a few times, so that memory
/// another CPU holds for a moment (a gather's list, say) is not taken for a
/// leak.
///
/// A page of this process that memory pressure sent to swap meanwhile
/// (reclaim takes pages of any process) leaves one more frame free and one
/// more swap slot used: free frames and swap slots are compared as their
/// difference.
fn same(what: core::fmt::Arguments, base: &Res, now: &Res) -> Result<(), i32> {
    let held = |w: &Res| w[r::FREE_FRAMES].wrapping_sub(w[r::SWAP_SLOTS]);
    let differs = |now: &Res| {
        let swapped = held(base) == held(now);
        let moved = |i: usize| swapped && matches!(i, r::FREE_FRAMES | r::SWAP_SLOTS);
        r::LEVELS.iter().copied().find(|&i| base[i] != now[i] && !moved(i))
    };
    let mut now = *now;
    for _ in 0..20 {
        if differs(&now).is_none() {
            return Ok(());
        }
        let _ = sys::sleep_ms(1);
        now = res();
    }
    if let Some(i) = differs(&now) {
        fail!(3, "{what}: {} {} -> {}", r::NAMES[i], base[i], now[i]);
    }
    Ok(())
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    match arg {
        0 => touch_until_killed(),
        1 => fork_or_spawn_under_pressure(false),
        2 => fork_or_spawn_under_pressure(true),
        3 => endpoints(),
        4 => threads(),
        5 => mappings(),
        6 => heap_reserve(),
        _ => fail!(1, "unknown mode {arg}"),
    }
}

fn touch_until_killed() -> Result<(), i32> {
    let base = res();
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            let Ok(mut m) = Mapping::new(64 << 30) else { sys::exit(1) };
            let words = m.words_mut();
            let mut i = 0;
            while i < words.len() {
                words[i] = i as u64;
                i += (PAGE_SIZE / 8) as usize;
            }
            sys::exit(2) // 64 GiB fitted: not expected
        }
        Fork::Parent(pid) => pid,
    };
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    check_eq!(4, "status of the child that ran out of memory", killed(cause::OUT_OF_MEMORY), status);
    same(format_args!("after the out-of-memory kill"), &base, &res())?;
    println!("oom: a child touching 64 GiB was killed for out of memory, everything back");
    Ok(())
}

/// Frames taken one page at a time from a huge mapping, given back in
/// whole steps: `fill` takes until `free_frames()` is at most `target`.
struct Ballast {
    m: Mapping,
    touched: usize,
}

impl Ballast {
    fn new() -> Result<Ballast, i32> {
        Ok(Ballast { m: try_sys!(Mapping::new(16 << 30), 1), touched: 0 })
    }

    fn fill(&mut self, target: u64) {
        let per_page = (PAGE_SIZE / 8) as usize;
        let words = self.m.words_mut();
        while free_frames() > target && (self.touched + 1) * per_page <= words.len() {
            // 64 pages between checks, fewer near the target.
            let step = ((free_frames() - target) / 2).clamp(1, 64) as usize;
            for _ in 0..step {
                words[self.touched * per_page] = 1;
                self.touched += 1;
            }
        }
    }

    /// Gives back the last `pages` touched pages.
    fn release(&mut self, pages: usize) -> Result<(), i32> {
        let pages = pages.min(self.touched);
        let start = self.m.addr() + (self.touched - pages) as u64 * PAGE_SIZE;
        // SAFETY: the range lies in `self.m`, whose words are reached only
        // through `&mut self` (no reference into it is alive), and the
        // mapping stays: the pages just read zero again.
        try_sys!(unsafe { sys::madvise(start, pages as u64 * PAGE_SIZE, ulib::abi::advice::DONTNEED) }, 1);
        self.touched -= pages;
        Ok(())
    }
}

/// A process whose address space has many page tables, so that a fork must
/// allocate many frames: one page every 2 MiB over `regions` regions.
fn sparse(regions: u64) -> Result<Mapping, i32> {
    let mut m = try_sys!(Mapping::new(regions * (2 << 20)), 1);
    let words = m.words_mut();
    for i in 0..regions as usize {
        words[i * (2 << 20) / 8] = i as u64;
    }
    Ok(m)
}

fn fork_or_spawn_under_pressure(spawn: bool) -> Result<(), i32> {
    let what = if spawn { "spawn" } else { "fork" };
    let _tables = sparse(if spawn { 0 } else { 512 }.max(1))?;
    let mut ballast = Ballast::new()?;
    ballast.fill(0);
    let (mut failures, mut target) = (0u32, 0u64);
    loop {
        ballast.fill(target);
        let before = res();
        let r = if spawn {
            sys::spawn("hello", 0)
        } else {
            match sys::fork() {
                Ok(Fork::Child) => sys::exit(0),
                Ok(Fork::Parent(pid)) => Ok(pid),
                Err(e) => Err(e),
            }
        };
        match r {
            Err(Errno::ENOMEM) => {
                failures += 1;
                same(
                    format_args!("after a failed {what} with {} frames free", before[r::FREE_FRAMES]),
                    &before,
                    &res(),
                )?;
                // Step up by 1 frame at a time near the end, so every point
                // of the call can be the one that fails.
                target += if failures % 8 == 0 { 16 } else { 1 };
                ballast.release((target.saturating_sub(free_frames()) + 1) as usize)?;
            }
            Err(e) => fail!(2, "{what} under memory pressure: expected ENOMEM, got {e}"),
            Ok(pid) => {
                let (_, status) = try_sys!(sys::wait(Some(pid)), 1);
                check_eq!(4, "status of the child", 0, status);
                break;
            }
        }
        ensure!(target < 100_000, 2, "{what} never succeeded");
    }
    ensure!(failures >= 8, 2, "only {failures} failed {what}s: the pressure did not work");
    println!(
        "oom: {failures} {what}s failed with ENOMEM as memory ran out, each leaving nothing behind; then one succeeded"
    );
    Ok(())
}

fn endpoints() -> Result<(), i32> {
    let base = res();
    let mut n = 0;
    loop {
        match sys::ep_create() {
            Ok(_) => n += 1,
            Err(Errno::ENOMEM) => break,
            Err(e) => fail!(2, "ep_create: expected ENOMEM at the limit, got {e}"),
        }
        ensure!(n <= limits::MAX_ENDPOINTS, 2, "more than {} endpoints", limits::MAX_ENDPOINTS);
    }
    check_eq!(2, "endpoints created before ENOMEM", limits::MAX_ENDPOINTS, n);
    check_eq!(2, "endpoints open", base[r::ENDPOINTS] + n as u64, res()[r::ENDPOINTS]);
    println!("oom: ep_create failed with ENOMEM after {n} endpoints");
    Ok(())
}

static GATE: AtomicU32 = AtomicU32::new(0);

fn parked() -> i32 {
    while GATE.load(Ordering::Acquire) == 0 {
        let _ = sys::futex_wait(&GATE, 0, 0);
    }
    0
}

fn threads() -> Result<(), i32> {
    let mut handles = alloc_handles();
    // The futex word's page is touched before the baseline.
    GATE.store(0, Ordering::Release);
    let base = res();
    let mut n = 1; // the main thread
    loop {
        match thread::spawn(parked) {
            Ok(h) => {
                n += 1;
                if handles.len() < handles.capacity() {
                    handles.push(h);
                } else {
                    fail!(1, "handle list full");
                }
            }
            Err(Errno::EAGAIN) => break,
            Err(e) => fail!(2, "thread_create: expected EAGAIN at the limit, got {e}"),
        }
        ensure!(n <= limits::MAX_THREADS, 2, "more than {} threads", limits::MAX_THREADS);
    }
    check_eq!(2, "threads before EAGAIN", limits::MAX_THREADS, n);
    GATE.store(1, Ordering::Release);
    let _ = sys::futex_wake(&GATE, u64::MAX);
    for h in handles.drain() {
        try_sys!(h.join(), 1);
    }
    same(format_args!("after joining {} threads", n - 1), &base, &res())?;

    // No memory for a kernel stack (8 contiguous frames): ENOMEM.
    GATE.store(0, Ordering::Release);
    let mut ballast = Ballast::new()?;
    ballast.fill(4);
    let r = thread::spawn(parked);
    ensure!(r.is_err(), 2, "a thread started with {} frames free", free_frames());
    let Err(e) = r else { return Err(2) };
    check_eq!(2, "thread_create without memory for a stack: errno", Errno::ENOMEM.0, e.0);
    drop(ballast);
    GATE.store(1, Ordering::Release);
    println!("oom: thread_create failed with EAGAIN at {n} threads and with ENOMEM without memory");
    Ok(())
}

/// A fixed-capacity list (no allocator in user space).
struct Handles {
    items: [Option<thread::JoinHandle>; limits::MAX_THREADS],
    len: usize,
}

fn alloc_handles() -> Handles {
    Handles { items: [const { None }; limits::MAX_THREADS], len: 0 }
}

impl Handles {
    fn len(&self) -> usize {
        self.len
    }
    fn capacity(&self) -> usize {
        self.items.len()
    }
    fn push(&mut self, h: thread::JoinHandle) {
        self.items[self.len] = Some(h);
        self.len += 1;
    }
    fn drain(&mut self) -> impl Iterator<Item = thread::JoinHandle> + '_ {
        self.len = 0;
        self.items.iter_mut().filter_map(Option::take)
    }
}

fn mappings() -> Result<(), i32> {
    // One page, then a one-page hole, so that no two mappings merge.
    let base_addr = try_sys!(sys::mmap(PAGE_SIZE, prot::READ), 1);
    let mut n = 1u64;
    let mut last = base_addr;
    loop {
        // SAFETY: a hint, not MAP_FIXED: nothing mapped changes.
        let r = unsafe { sys::mmap_raw(last + 2 * PAGE_SIZE, PAGE_SIZE, prot::READ, 0) };
        match r {
            Ok(a) => {
                ensure!(a == last + 2 * PAGE_SIZE, 1, "mmap hint not taken: {a:#x}");
                last = a;
                n += 1;
            }
            Err(Errno::ENOMEM) => break,
            Err(e) => fail!(2, "mmap: expected ENOMEM at the limit, got {e}"),
        }
        ensure!(n as usize <= limits::MAX_MAPPINGS, 2, "more than {} mappings", limits::MAX_MAPPINGS);
    }
    // The program's own image and stack count too.
    ensure!(n as usize > limits::MAX_MAPPINGS - 16, 2, "only {n} mappings before ENOMEM");
    // Make room for one three-page mapping; splitting it would need one
    // more.
    // SAFETY: the last mapping is ours and unused.
    try_sys!(unsafe { sys::munmap(last, PAGE_SIZE) }, 1);
    let three = try_sys!(sys::mmap(3 * PAGE_SIZE, prot::READ), 1);
    // SAFETY: the middle page of our own unused mapping.
    let split = unsafe { sys::munmap(three + PAGE_SIZE, PAGE_SIZE) };
    expect_err(2, "munmap splitting a mapping at the limit", Errno::ENOMEM, split)?;
    // SAFETY: as above; only the protection of an unused page changes.
    let split = unsafe { sys::mprotect(three + PAGE_SIZE, PAGE_SIZE, prot::NONE) };
    expect_err(2, "mprotect splitting a mapping at the limit", Errno::ENOMEM, split)?;
    // SAFETY: every page mapped above is unused; unmapping the whole run
    // (holes included) needs no split.
    try_sys!(unsafe { sys::munmap(base_addr, last + PAGE_SIZE - base_addr) }, 1);
    try_sys!(unsafe { sys::munmap(three, 3 * PAGE_SIZE) }, 1);
    println!("oom: mmap failed with ENOMEM after {n} mappings; splitting ones failed too");
    Ok(())
}

fn heap_reserve() -> Result<(), i32> {
    let base = res();
    let refusals = base[r::HEAP_REFUSALS];
    // A process full of mappings, whose forks each copy them all: a chain
    // of such processes (each waiting for the next) fills the heap fast.
    let first = try_sys!(sys::mmap(PAGE_SIZE, prot::READ), 1);
    let mut last = first;
    // SAFETY: a hint, not MAP_FIXED: nothing mapped changes.
    while let Ok(a) = unsafe { sys::mmap_raw(last + 2 * PAGE_SIZE, PAGE_SIZE, prot::READ, 0) } {
        last = a;
    }
    let mut depth = 0u64;
    let status = loop {
        match sys::fork() {
            Ok(Fork::Child) => depth += 1,
            Ok(Fork::Parent(pid)) => match sys::wait(Some(pid)) {
                Ok((_, s)) => break s,
                Err(e) => fail!(2, "wait at depth {depth} with the heap at its reserve: {e}"),
            },
            Err(Errno::ENOMEM) if res()[r::HEAP_REFUSALS] > refusals => {
                // The deepest process: calls that would keep heap memory
                // are refused, calls that do not still work.
                let checks = [
                    sys::ep_create() == Err(Errno::ENOMEM),
                    sys::spawn("hello", 0) == Err(Errno::ENOMEM),
                    sys::getpid() != 0,
                    sys::stat(stats::CPUS).is_ok(),
                ];
                if checks.iter().all(|&ok| ok) {
                    println!("oom: {depth} forks filled the heap to its reserve; then calls failed with ENOMEM");
                    sys::exit(0)
                }
                println!("oom: FAIL: at the heap reserve: ep_create/spawn refused, getpid/stats working: {checks:?}");
                sys::exit(2)
            }
            Err(e) => {
                println!("oom: FAIL: fork at depth {depth}: {e}, and the heap refused nothing");
                sys::exit(2)
            }
        }
    };
    if depth > 0 {
        sys::exit(status as i32);
    }
    check_eq!(4, "status of the chain of forks", 0, status);
    // Everything the chain held is back, and the heap takes calls again.
    // SAFETY: every page mapped above is unused.
    try_sys!(unsafe { sys::munmap(first, last + PAGE_SIZE - first) }, 1);
    try_sys!(sys::ep_create(), 2);
    Ok(())
}
