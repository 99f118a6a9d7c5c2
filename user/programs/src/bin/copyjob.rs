//! copyjob: the asynchronous jobs (copy_async, watch_async, copy_wait) from
//! the caller's side: copies on every CPU into memory not touched yet, a
//! watch that logs each value the caller writes, faults found by the worker
//! (EFAULT at copy_wait, nothing written), bad arguments (refused at once
//! and counted in stats(BAD_SYSCALLS)), NOWAIT, used-up tickets, the job
//! limit, a ticket of another process, and processes that exit, are killed,
//! or are killed while a thread waits, with jobs running (the kernel test
//! then checks that every resource came back). Exit 0; 1 setup, 2 a copy,
//! 3 the watch, 4 a fault, 5 a bad argument or the count, 6 NOWAIT or a
//! ticket, 7 the limit, 8 another process's ticket, 9 an exit or kill with
//! jobs running.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::*};

use ulib::abi::copy::{LOG_MIN, LOG_RECORDED, LOG_SAMPLES, LOG_VALUES};
use ulib::abi::errno::*;
use ulib::abi::limits::{MAX_COPY_LEN, MAX_JOBS, MAX_WATCH_NS};
use ulib::abi::{nr, prot, stats, USER_END};
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, raw, thread, Errno};
use userland::pattern::{check, fill};
use userland::{check_eq, ensure, fail, try_sys, UNMAPPED_ADDR};

const MS: u64 = 1_000_000;

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let cpus = try_sys!(sys::stat(stats::CPUS), 1);
    copies(cpus)?;
    watch(cpus)?;
    faults()?;
    bad_arguments()?;
    tickets()?;
    limit()?;
    other_process()?;
    ending_with_jobs()?;
    println!("copyjob: copies, a watch, faults, bad arguments, tickets, the limit and exits with jobs running");
    Ok(())
}

/// A copy of `len` bytes on each CPU and on any, into pages never touched
/// (the worker faults them in); the bytes around the destination stay.
fn copies(cpus: u64) -> Result<(), i32> {
    let len = 3 * PAGE_SIZE + 100;
    let mut src = try_sys!(Mapping::pages(4), 1);
    fill(src.words_mut(), 0xc0b1_0000_0000_0000);
    for cpu in (0..cpus).map(Some).chain([None]) {
        let dst = try_sys!(Mapping::pages(5), 1);
        // Start one page in, at an odd offset: the copy must stay inside.
        let at = dst.addr() + PAGE_SIZE + 8;
        // SAFETY: `dst` is not borrowed until the job is done.
        let ticket = try_sys!(unsafe { sys::copy_async(at, src.addr(), len, cpu) }, 2);
        check_eq!(2, format_args!("copy_wait of a copy on {cpu:?}"), len, try_sys!(sys::copy_wait(ticket), 2));
        let w = dst.words();
        let (first, copied) = (PAGE_SIZE as usize / 8 + 1, len as usize / 8);
        if let Err(bad) = check(&w[first..first + copied], 0xc0b1_0000_0000_0000) {
            fail!(2, "copy on {cpu:?}: {bad}");
        }
        let tail = w[first + copied].to_le_bytes();
        let want = userland::pattern::word(0xc0b1_0000_0000_0000, copied).to_le_bytes();
        ensure!(tail[..4] == want[..4] && tail[4..] == [0; 4], 2, "copy on {cpu:?}: the last 4 bytes");
        ensure!(w[..first].iter().chain(&w[first + copied + 1..]).all(|&x| x == 0), 2, "copy on {cpu:?} wrote outside");
    }
    Ok(())
}

/// The caller writes 1..=5 while a worker watches the word: the log holds
/// each value once, in order.
fn watch(cpus: u64) -> Result<(), i32> {
    let log = try_sys!(Mapping::pages(1), 1).leak_atomic();
    let word: &'static AtomicU64 = &try_sys!(Mapping::pages(1), 1).leak_atomic()[0];
    word.store(1, Release);
    let cpu = Some(cpus - 1);
    let (at, src) = (log.as_ptr() as u64, word.as_ptr() as u64);
    // SAFETY: the log is read only through atomics.
    let ticket = try_sys!(unsafe { sys::watch_async(at, src, 4096, cpu, 2000 * MS) }, 3);
    let give_up = sys::time_ns() + 5000 * MS;
    for v in 2..=5u64 {
        while log[LOG_RECORDED].load(Acquire) < v - 1 {
            ensure!(sys::time_ns() < give_up, 3, "the watch did not record value {} within 5 s", v - 1);
            sys::yield_now();
        }
        word.store(v, Release);
    }
    let samples = try_sys!(sys::copy_wait(ticket), 3);
    let recorded = log[LOG_RECORDED].load(Acquire);
    let values: [u64; 5] = core::array::from_fn(|i| log[LOG_VALUES + i].load(Relaxed));
    ensure!(recorded == 5 && values == [1, 2, 3, 4, 5], 3, "recorded {recorded} values {values:?}, expected 1..=5");
    check_eq!(3, "samples in the log and the result", samples, log[LOG_SAMPLES].load(Acquire));
    Ok(())
}

/// Unmapped or read-only memory: the job ends with EFAULT and writes
/// nothing it may not.
fn faults() -> Result<(), i32> {
    let src = try_sys!(Mapping::pages(1), 1);
    let mut ro = try_sys!(Mapping::pages(1), 1);
    ro.words_mut()[0] = 7;
    try_sys!(ro.protect(prot::READ), 1);
    let log = try_sys!(Mapping::pages(1), 1);
    let cases: [(&str, u64, u64, bool); 4] = [
        ("copy from unmapped memory", src.addr() + 64, UNMAPPED_ADDR, false),
        ("copy to read-only memory", ro.addr(), src.addr(), false),
        ("watch of unmapped memory", log.addr(), UNMAPPED_ADDR, true),
        ("watch into a read-only log", ro.addr(), src.addr(), true),
    ];
    for (what, dst, from, is_watch) in cases {
        // SAFETY: every destination is either read-only (the kernel must not
        // write it) or not borrowed while the job runs.
        let started = unsafe {
            if is_watch {
                sys::watch_async(dst, from, 4096, None, MS)
            } else {
                sys::copy_async(dst, from, 256, None)
            }
        };
        let ticket = try_sys!(started, 4);
        ensure!(sys::copy_wait(ticket) == Err(Errno::EFAULT), 4, "{what}: expected EFAULT");
    }
    ensure!(ro.words()[0] == 7 && ro.words()[1..].iter().all(|&w| w == 0), 4, "the read-only page changed");
    ensure!(src.words().iter().all(|&w| w == 0), 4, "a failed copy wrote its destination");
    Ok(())
}

/// Calls refused at once, each counted in stats(BAD_SYSCALLS).
fn bad_arguments() -> Result<(), i32> {
    let m = try_sys!(Mapping::pages(2), 1);
    let (a, b) = (m.addr(), m.addr() + PAGE_SIZE);
    #[rustfmt::skip]
    let cases: [(&str, u64, [u64; 5], i64); 13] = [
        ("copy on CPU 64",            nr::COPY_ASYNC,  [a, b, 8, 64, 0], EINVAL),
        ("copy longer than the limit", nr::COPY_ASYNC, [a, b, MAX_COPY_LEN + 1, u64::MAX, 0], EINVAL),
        ("copy onto itself",          nr::COPY_ASYNC,  [a, a + 8, 64, u64::MAX, 0], EINVAL),
        ("copy past user space",      nr::COPY_ASYNC,  [USER_END - 8, b, 16, u64::MAX, 0], EFAULT),
        ("copy from a kernel address", nr::COPY_ASYNC, [a, 0xffff_0000_4000_0000, 8, u64::MAX, 0], EFAULT),
        ("copy wrapping around",      nr::COPY_ASYNC,  [u64::MAX - 4, b, 8, u64::MAX, 0], EFAULT),
        ("watch of an unaligned word", nr::WATCH_ASYNC, [a, b + 1, 4096, u64::MAX, MS], EINVAL),
        ("watch with a tiny log",     nr::WATCH_ASYNC, [a, b, LOG_MIN - 8, u64::MAX, MS], EINVAL),
        ("watch for too long",        nr::WATCH_ASYNC, [a, b, 4096, u64::MAX, MAX_WATCH_NS + 1], EINVAL),
        ("watch on CPU -2",           nr::WATCH_ASYNC, [a, b, 4096, u64::MAX - 1, MS], EINVAL),
        ("watch into a kernel log",   nr::WATCH_ASYNC, [0xffff_0000_4000_0000, b, 4096, u64::MAX, MS], EFAULT),
        ("wait for no such ticket",   nr::COPY_WAIT,   [u64::MAX, 0, 0, 0, 0], ESRCH),
        ("wait with flags 2",         nr::COPY_WAIT,   [1, 2, 0, 0, 0], EINVAL),
    ];
    let before = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);
    for (what, n, [a0, a1, a2, a3, a4], errno) in cases {
        // SAFETY: every call is refused before it starts a job (the only
        // memory named is `m`, unborrowed, or outside this process).
        let got = Errno::result(unsafe { raw::syscall5(n, a0, a1, a2, a3, a4) });
        ensure!(got == Err(Errno(errno)), 5, "{what}: got {got:?}, expected {}", Errno(errno));
    }
    let after = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);
    check_eq!(5, "rise of stats(BAD_SYSCALLS)", cases.len() as u64, after - before);
    Ok(())
}

/// NOWAIT while a job runs, then the result once, then the ticket is gone.
fn tickets() -> Result<(), i32> {
    let log = try_sys!(Mapping::pages(1), 1);
    // SAFETY: the log is not read while the job runs.
    let t = try_sys!(unsafe { sys::watch_async(log.addr(), log.addr() + 2048, 2048, None, 200 * MS) }, 6);
    ensure!(sys::copy_poll(t) == Err(Errno::EAGAIN), 6, "NOWAIT on a running job: expected EAGAIN");
    let samples = try_sys!(sys::copy_wait(t), 6);
    ensure!(samples >= 1, 6, "a watch took {samples} samples");
    ensure!(sys::copy_wait(t) == Err(Errno::ESRCH), 6, "a used-up ticket: expected ESRCH");
    ensure!(sys::copy_poll(t) == Err(Errno::ESRCH), 6, "NOWAIT on a used-up ticket: expected ESRCH");
    Ok(())
}

/// `MAX_JOBS` jobs of one process at once, not one more.
fn limit() -> Result<(), i32> {
    let log = try_sys!(Mapping::pages(1), 1);
    let mut tickets = [0u64; MAX_JOBS];
    for t in tickets.iter_mut() {
        // SAFETY: the log is not read while the jobs run.
        *t = try_sys!(unsafe { sys::watch_async(log.addr(), log.addr() + 2048, 2048, None, 200 * MS) }, 7);
    }
    // SAFETY: as above; this call must be refused.
    let extra = unsafe { sys::copy_async(log.addr(), log.addr() + 2048, 8, None) };
    ensure!(extra == Err(Errno::EAGAIN), 7, "job {} of one process: got {extra:?}, expected EAGAIN", MAX_JOBS + 1);
    for t in tickets {
        try_sys!(sys::copy_wait(t), 7);
    }
    // Collected jobs free their places.
    // SAFETY: as above.
    let t = try_sys!(unsafe { sys::copy_async(log.addr(), log.addr() + 2048, 8, None) }, 7);
    check_eq!(7, "a copy after the limit was freed", 8, try_sys!(sys::copy_wait(t), 7));
    Ok(())
}

/// A child cannot wait for its parent's ticket.
fn other_process() -> Result<(), i32> {
    let log = try_sys!(Mapping::pages(1), 1);
    // SAFETY: the log is not read while the job runs.
    let t = try_sys!(unsafe { sys::watch_async(log.addr(), log.addr() + 2048, 2048, None, 100 * MS) }, 8);
    let status = try_sys!(userland::in_child(|| if sys::copy_wait(t) == Err(Errno::ESRCH) { 0 } else { 1 }), 8);
    check_eq!(8, "the child's copy_wait of its parent's ticket (0: ESRCH)", 0, status);
    try_sys!(sys::copy_wait(t), 8);
    Ok(())
}

/// Starts `n` watches of 10 s in this process (their logs in `log`).
fn long_watches(log: &Mapping, n: u64) -> Result<u64, Errno> {
    let mut last = 0;
    for i in 0..n {
        let at = log.addr() + i * 512;
        // SAFETY: the logs are never read.
        last = unsafe { sys::watch_async(at, at, 512, None, MAX_WATCH_NS) }?;
    }
    Ok(last)
}

/// Children that exit, are killed, or are killed while a thread waits in
/// copy_wait, each with jobs running.
fn ending_with_jobs() -> Result<(), i32> {
    // Exits at once with four watches running and a 4 MiB copy underway.
    let status = try_sys!(
        userland::in_child(|| {
            let (Ok(log), Ok(big), Ok(out)) = (Mapping::pages(2), Mapping::new(4 << 20), Mapping::new(4 << 20)) else {
                return 1;
            };
            // SAFETY: the process exits without reading anything.
            let copy = unsafe { sys::copy_async(out.addr(), big.addr(), 4 << 20, None) };
            if long_watches(&log, 4).is_err() || copy.is_err() {
                return 2;
            }
            core::mem::forget((log, big, out));
            0
        }),
        9
    );
    check_eq!(9, "the child that exits with jobs running", 0, status);

    // Killed by its parent while its jobs run and it spins.
    let child = match try_sys!(sys::fork(), 9) {
        Fork::Child => {
            let Ok(log) = Mapping::pages(2) else { sys::exit(1) };
            if long_watches(&log, 3).is_err() {
                sys::exit(2);
            }
            loop {
                core::hint::spin_loop();
            }
        }
        Fork::Parent(pid) => pid,
    };
    try_sys!(sys::sleep_ms(50), 9);
    try_sys!(sys::kill(child), 9);
    let (_, status) = try_sys!(sys::wait(Some(child)), 9);
    check_eq!(9, "the killed child's status", userland::killed(ulib::abi::cause::KILLED), status);

    // Killed while a thread waits in copy_wait.
    let child = match try_sys!(sys::fork(), 9) {
        Fork::Child => {
            let Ok(log) = Mapping::pages(2) else { sys::exit(1) };
            let Ok(t) = long_watches(&log, 1) else { sys::exit(2) };
            let Ok(waiter) = thread::spawn(move || sys::copy_wait(t).map_or(3, |_| 4)) else { sys::exit(3) };
            let _ = waiter.join();
            sys::exit(5)
        }
        Fork::Parent(pid) => pid,
    };
    try_sys!(sys::sleep_ms(50), 9);
    try_sys!(sys::kill(child), 9);
    let (_, status) = try_sys!(sys::wait(Some(child)), 9);
    check_eq!(9, "the child killed while waiting", userland::killed(ulib::abi::cause::KILLED), status);
    Ok(())
}
