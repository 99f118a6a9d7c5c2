//! ipi_count: how many IPIs a flush sends under `tlb.strategy=ipi`. The
//! main thread (CPU 0) write-protects a page and makes it writable again,
//! `OPS` times per phase, and reads the kernel's TLB events
//! (`stats(EVENTS)`) around each phase, while `arg` spinner threads (0: 1)
//! of the same process sit on CPUs 1..=arg (the other CPUs of a machine of
//! arg + 1):
//!
//! 1. spinning in user space: every flush decision must send exactly one
//!    IPI per spinner's CPU, and skip no CPU as lazy;
//! 2. blocked in futex_wait (their CPUs idle, lazily still on this address
//!    space): no IPI at all, and one lazy skip per spinner's CPU and flush.
//!
//! Exit 0 if both hold; 1 setup, 2 phase 1 counts, 3 phase 2 counts, 4 the
//! spinners' CPUs never showed up lazy, 5 a spinner failed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use ulib::abi::events as ev;
use ulib::abi::{prot, stats};
use ulib::mm::Mapping;
use ulib::thread::{self, JoinHandle};
use ulib::{println, sys};
use userland::{arg_or, ensure, fail, try_sys};

/// Write-protect and re-enable cycles per phase.
const OPS: u64 = 16;
const MAX_SPINNERS: usize = 7;

/// 0: spin; 1: block in futex_wait until 2; 2: exit.
static MODE: AtomicU32 = AtomicU32::new(0);
/// Spinners spinning on their CPU (phase 1) / about to block (phase 2).
static SPINNING: AtomicU64 = AtomicU64::new(0);
static BLOCKING: AtomicU64 = AtomicU64::new(0);

fn spinner(cpu: u64) -> i32 {
    if sys::set_affinity(Some(cpu)).is_err() || sys::getcpu() != cpu {
        return 1;
    }
    SPINNING.fetch_add(1, AcqRel);
    while MODE.load(Acquire) == 0 {
        core::hint::spin_loop();
    }
    BLOCKING.fetch_add(1, AcqRel);
    while MODE.load(Acquire) == 1 {
        let _ = sys::futex_wait(&MODE, 1, 0);
    }
    0
}

/// The events now.
fn events() -> Result<[u64; ev::COUNT], i32> {
    let mut e = [0u64; ev::COUNT];
    try_sys!(sys::stats(stats::EVENTS, &mut e), 1);
    Ok(e)
}

/// (flush decisions by IPI, IPIs sent, lazy skips, all decisions) from
/// `before` to now.
fn since(before: &[u64; ev::COUNT]) -> Result<[u64; 4], i32> {
    let now = events()?;
    let d = |i: usize| now[i] - before[i];
    Ok([d(ev::DECIDE_IPI), d(ev::IPI_SENT), d(ev::LAZY_SKIP), d(ev::DECIDE_LOCAL) + d(ev::DECIDE_BROADCAST)])
}

/// One write-protect and re-enable cycle of `page`.
fn cycle(page: &mut Mapping) -> Result<(), i32> {
    page.words_mut()[0] += 1;
    try_sys!(page.protect(prot::READ), 1);
    try_sys!(page.protect(prot::READ | prot::WRITE), 1);
    Ok(())
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let k = arg_or(arg, 1);
    let cpus = try_sys!(sys::stat(stats::CPUS), 1);
    ensure!(k as usize <= MAX_SPINNERS && k + 1 == cpus, 1, "{k} spinners and a main thread on {cpus} CPUs");
    try_sys!(sys::set_affinity(Some(0)), 1);
    let mut page = try_sys!(Mapping::pages(1), 1);
    let mut spinners: [Option<JoinHandle>; MAX_SPINNERS] = [const { None }; MAX_SPINNERS];
    for (i, slot) in spinners.iter_mut().enumerate().take(k as usize) {
        let cpu = i as u64 + 1;
        *slot = Some(try_sys!(thread::spawn(move || spinner(cpu)), 1));
    }
    while SPINNING.load(Acquire) < k {
        sys::yield_now();
    }

    let before = events()?;
    for _ in 0..OPS {
        cycle(&mut page)?;
    }
    let [decided, sent, skipped, other] = since(&before)?;
    println!("ipi_count: {k} spinning: {decided} flushes by IPI, {sent} IPIs, {skipped} lazy skips, {other} others");
    ensure!(
        decided >= OPS && sent == k * decided && skipped == 0 && other == 0,
        2,
        "with {k} CPUs spinning, each of {OPS} cycles' flushes must send {k} IPIs and skip none"
    );

    MODE.store(1, Release);
    while BLOCKING.load(Acquire) < k {
        sys::yield_now();
    }
    // Wait until every spinner's CPU is idle and lazy: one flush then skips
    // them all.
    let mut lazy = false;
    for _ in 0..1000 {
        let before = events()?;
        cycle(&mut page)?;
        let [decided, sent, skipped, _] = since(&before)?;
        if decided > 0 && sent == 0 && skipped == k * decided {
            lazy = true;
            break;
        }
        try_sys!(sys::sleep_ms(1), 1);
    }
    if !lazy {
        fail!(4, "the spinners blocked, yet their CPUs were never all skipped as lazy");
    }
    let before = events()?;
    for _ in 0..OPS {
        cycle(&mut page)?;
    }
    let [decided, sent, skipped, other] = since(&before)?;
    println!("ipi_count: {k} lazy: {decided} flushes by IPI, {sent} IPIs, {skipped} lazy skips, {other} others");
    ensure!(
        decided >= OPS && sent == 0 && skipped == k * decided && other == 0,
        3,
        "with {k} CPUs idle and lazy, each of {OPS} cycles' flushes must send no IPI and skip {k} CPUs"
    );

    MODE.store(2, Release);
    try_sys!(sys::futex_wake(&MODE, u64::MAX), 1);
    for t in spinners.into_iter().flatten() {
        let code = try_sys!(t.join(), 5);
        ensure!(code == 0, 5, "a spinner exited with {code}");
    }
    Ok(())
}
