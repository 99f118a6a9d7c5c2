//! devjobs: the secondary-MMU devices (`abi::device`) from a process's
//! side. `arg` = 0: jobs (copy, fill, checksum across pages, on both
//! devices), a watch that sees each value written, STOP and NOWAIT, the
//! queue limit, memory the device may not reach, bad arguments (refused and
//! counted in stats(BAD_SYSCALLS)), a device bound to another process, and
//! unbinding with jobs queued. `arg` = 1: the counters of one munmap of 16
//! pages, unbound and then bound to both devices (`tlb.strategy=broadcast`:
//! the same TLBIs, one `mn_range` and one `sec_inval` per device). `arg` =
//! 2: processes that exit, or are killed, bound to both devices with jobs
//! queued and running; the devices are free again afterwards. Exit 0; 1
//! setup, 2 a job's result or bytes, 3 the watch, 4 the limit or a flag, 5
//! a fault, 6 a bad argument or its count, 7 another process, 8 unbinding,
//! 9 the counters, 10 an exit with jobs.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::Ordering::{Acquire, Release};

use ulib::abi::device::{self as d, MAX_QUEUE, NOWAIT, STOP};
use ulib::abi::errno::*;
use ulib::abi::{events, nr, prot, stats, USER_END};
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::sys::{self, Fork};
use ulib::{println, raw, Errno};
use userland::device::{self as dev, wait_until_at_least};
use userland::pattern::{check, fill};
use userland::{check_eq, ensure, fail, in_child, try_sys, KERNEL_ADDR, UNMAPPED_ADDR};

const MS: u64 = 1_000_000;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    match arg {
        0 => {
            jobs()?;
            watch()?;
            limit()?;
            faults()?;
            bad_arguments()?;
            other_process()?;
            unbinding()?;
            println!("devjobs: jobs on both devices, a watch, the limit, faults, bad arguments, unbinding");
        }
        1 => counters()?,
        2 => exits()?,
        _ => fail!(1, "unknown mode {arg}"),
    }
    Ok(())
}

/// Submits `job` to `dev` and waits for it.
fn run_job(dev: u64, job: &dev::Job) -> Result<u64, Errno> {
    // SAFETY: the callers borrow nothing the job writes until it is done.
    let id = unsafe { sys::dev_submit(dev, job) }?;
    sys::dev_wait(dev, id, None, 0)
}

/// A copy, a fill and a checksum across page boundaries on each device.
fn jobs() -> Result<(), i32> {
    for dev in 0..d::COUNT as u64 {
        try_sys!(sys::dev_bind(dev), 1);
        let mut src = try_sys!(Mapping::pages(4), 1);
        let mut dst = try_sys!(Mapping::pages(5), 1);
        fill(src.words_mut(), 0xd0_0000_0000 | dev);
        // The device reaches only pages the process has touched.
        dst.words_mut().fill(0);
        let len = 3 * PAGE_SIZE + 100;
        let at = dst.addr() + PAGE_SIZE + 8;
        check_eq!(2, "copy", len, try_sys!(run_job(dev, &dev::copy(at, src.addr(), len)), 2));
        let w = dst.words();
        let first = PAGE_SIZE as usize / 8 + 1;
        if let Err(bad) = check(&w[first..first + len as usize / 8], 0xd0_0000_0000 | dev) {
            fail!(2, "device {dev}'s copy: {bad}");
        }
        ensure!(w[..first].iter().all(|&x| x == 0), 2, "device {dev}'s copy wrote before its destination");
        ensure!(w[first + len as usize / 8 + 1..].iter().all(|&x| x == 0), 2, "device {dev}'s copy wrote after it");
        let (at, n) = (dst.addr() + 4000, 300);
        check_eq!(2, "fill", n, try_sys!(run_job(dev, &dev::fill(at, n, 0x5a)), 2));
        check_eq!(2, "checksum of the fill", 0x5a * n, try_sys!(run_job(dev, &dev::checksum(at, n)), 2));
        let sum: u64 = src.words().iter().flat_map(|w| w.to_le_bytes()).map(u64::from).sum();
        let got = try_sys!(run_job(dev, &dev::checksum(src.addr(), src.len())), 2);
        check_eq!(2, "checksum of the source", sum, got);
        try_sys!(sys::dev_unbind(dev), 8);
    }
    Ok(())
}

/// A watch logs each value this thread writes; STOP ends it, and NOWAIT
/// says EAGAIN while it runs.
fn watch() -> Result<(), i32> {
    try_sys!(sys::dev_bind(1), 1);
    let words = try_sys!(Mapping::pages(2), 1).leak_atomic();
    let (word, progress) = (&words[0], &words[512]);
    word.store(1, Release);
    // Touched, so the device finds it mapped.
    progress.store(0, Release);
    let job = dev::watch(word.as_ptr() as u64, progress.as_ptr() as u64, 5000 * MS, false);
    // SAFETY: the progress word is read only through atomics.
    let id = try_sys!(unsafe { sys::dev_submit(1, &job) }, 3);
    ensure!(sys::dev_wait(1, id, None, NOWAIT) == Err(Errno::EAGAIN), 4, "NOWAIT on a running watch");
    for v in 2..=4u64 {
        let seen = progress.load(Acquire);
        ensure!(wait_until_at_least(progress, seen + 2, 5000 * MS), 3, "the watch stopped reading");
        word.store(v, Release);
    }
    let seen = progress.load(Acquire);
    ensure!(wait_until_at_least(progress, seen + 2, 5000 * MS), 3, "the watch stopped reading");
    let (r, rep) = dev::wait(1, id, STOP);
    let reads = try_sys!(r, 3);
    let (values, changes) = (rep.values(), rep.changes);
    ensure!(values == [1, 2, 3, 4] && changes == 3, 3, "the watch saw {values:?} ({changes} changes)");
    ensure!(reads == rep.reads && reads >= progress.load(Acquire), 3, "{reads} reads, report {}", rep.reads);
    ensure!(sys::dev_wait(1, id, None, 0) == Err(Errno::ESRCH), 4, "a used-up id: expected ESRCH");
    try_sys!(sys::dev_unbind(1), 8);
    Ok(())
}

/// `MAX_QUEUE` jobs of a binding, not one more; waiting frees places.
fn limit() -> Result<(), i32> {
    try_sys!(sys::dev_bind(0), 1);
    let mut m = try_sys!(Mapping::pages(1), 1);
    m.words_mut()[0] = 0;
    let mut ids = [0u64; MAX_QUEUE];
    for id in ids.iter_mut() {
        // SAFETY: the job only reads.
        *id = try_sys!(unsafe { sys::dev_submit(0, &dev::checksum(m.addr(), 8)) }, 4);
    }
    // SAFETY: as above; refused.
    let extra = unsafe { sys::dev_submit(0, &dev::checksum(m.addr(), 8)) };
    ensure!(extra == Err(Errno::EAGAIN), 4, "job {} of a binding: {extra:?}, expected EAGAIN", MAX_QUEUE + 1);
    for id in ids {
        check_eq!(4, "checksum of zeros", 0, try_sys!(sys::dev_wait(0, id, None, 0), 4));
    }
    check_eq!(4, "a job after the limit was freed", 0, try_sys!(run_job(0, &dev::checksum(m.addr(), 8)), 4));
    try_sys!(sys::dev_unbind(0), 8);
    Ok(())
}

/// Memory the device may not reach: the job ends with EFAULT and writes
/// nothing.
fn faults() -> Result<(), i32> {
    try_sys!(sys::dev_bind(0), 1);
    let mut src = try_sys!(Mapping::pages(1), 1);
    src.words_mut()[0] = 1;
    let mut ro = try_sys!(Mapping::pages(1), 1);
    ro.words_mut()[0] = 7;
    try_sys!(ro.protect(prot::READ), 1);
    let fresh = try_sys!(Mapping::pages(1), 1);
    let cases = [
        ("copy from unmapped memory", dev::copy(src.addr(), UNMAPPED_ADDR, 64)),
        ("copy to read-only memory", dev::copy(ro.addr(), src.addr(), 64)),
        ("fill of read-only memory", dev::fill(ro.addr() + 8, 64, 1)),
        ("checksum of a page never touched", dev::checksum(fresh.addr(), 8)),
        ("watch of unmapped memory", dev::watch(UNMAPPED_ADDR, 0, 10 * MS, false)),
        ("watch counting into read-only memory", dev::watch(src.addr(), ro.addr(), 10 * MS, false)),
    ];
    for (what, job) in cases {
        let got = run_job(0, &job);
        ensure!(got == Err(Errno::EFAULT), 5, "{what}: {got:?}, expected EFAULT");
    }
    ensure!(ro.words()[0] == 7 && ro.words()[1..].iter().all(|&w| w == 0), 5, "the read-only page changed");
    // Through faults, a watch of unmapped memory reads nothing and ends on time.
    // SAFETY: the watch writes nowhere.
    let id = try_sys!(unsafe { sys::dev_submit(0, &dev::watch(UNMAPPED_ADDR, 0, 20 * MS, true)) }, 5);
    let (r, rep) = dev::wait(0, id, 0);
    ensure!(r == Ok(0) && rep.reads == 0 && rep.faults > 0, 5, "watch through faults: {r:?} {rep:?}");
    try_sys!(sys::dev_unbind(0), 8);
    Ok(())
}

/// Calls refused at once, each counted in stats(BAD_SYSCALLS).
fn bad_arguments() -> Result<(), i32> {
    let mut m = try_sys!(Mapping::pages(2), 1);
    m.words_mut().fill(0);
    let (a, b) = (m.addr(), m.addr() + PAGE_SIZE);
    let copy = dev::copy(a, b, 8);
    let job = |j: &dev::Job| j.as_ptr() as u64;
    let jobs = [
        dev::copy(a, a + 8, 64),
        dev::copy(USER_END - 8, b, 16),
        dev::copy(a, b, ulib::abi::limits::MAX_COPY_LEN + 1),
        dev::job(d::FILL, a, 0, 8, 256),
        dev::watch(b + 4, 0, MS, false),
        dev::watch(b, a + 1, MS, false),
        dev::watch(b, 0, ulib::abi::limits::MAX_WATCH_NS + 1, false),
        dev::job(9, a, b, 8, 0),
    ];
    let errnos = [EINVAL, EFAULT, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL];
    #[rustfmt::skip]
    let unbound: [(&str, u64, [u64; 4], i64); 8] = [
        ("bind device 2",            nr::DEV_BIND,   [d::COUNT as u64, 0, 0, 0], EINVAL),
        ("bind device -1",           nr::DEV_BIND,   [u64::MAX, 0, 0, 0], EINVAL),
        ("unbind an unbound device", nr::DEV_UNBIND, [0, 0, 0, 0], EINVAL),
        ("unbind device 2",          nr::DEV_UNBIND, [2, 0, 0, 0], EINVAL),
        ("submit to an unbound device", nr::DEV_SUBMIT, [0, job(&copy), 0, 0], EINVAL),
        ("submit to device 5",       nr::DEV_SUBMIT, [5, job(&copy), 0, 0], EINVAL),
        ("wait for no such job",     nr::DEV_WAIT,   [0, u64::MAX, 0, 0], ESRCH),
        ("wait on device 7",         nr::DEV_WAIT,   [7, 1, 0, 0], EINVAL),
    ];
    let before = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);
    let mut refused = 0;
    for (what, n, [a0, a1, a2, a3], errno) in unbound {
        // SAFETY: each call is refused before a device runs anything.
        let got = Errno::result(unsafe { raw::syscall4(n, a0, a1, a2, a3) });
        ensure!(got == Err(Errno(errno)), 6, "{what}: got {got:?}, expected {}", Errno(errno));
        refused += 1;
    }
    try_sys!(sys::dev_bind(0), 1);
    ensure!(sys::dev_bind(0) == Err(Errno::EBUSY), 6, "binding a device bound already: expected EBUSY");
    for (ptr, errno) in [(0, EFAULT), (KERNEL_ADDR, EFAULT), (UNMAPPED_ADDR, EFAULT), (USER_END - 8, EFAULT)] {
        // SAFETY: refused: the job cannot be read.
        let got = Errno::result(unsafe { raw::syscall2(nr::DEV_SUBMIT, 0, ptr) });
        ensure!(got == Err(Errno(errno)), 6, "submit of a job at {ptr:#x}: {got:?}");
    }
    for (j, errno) in jobs.iter().zip(errnos) {
        // SAFETY: refused: a bad job.
        let got = unsafe { sys::dev_submit(0, j) };
        ensure!(got == Err(Errno(errno)), 6, "submit of {j:x?}: {got:?}, expected {}", Errno(errno));
    }
    // SAFETY: the fill writes `a`, not borrowed while it runs.
    let id = try_sys!(unsafe { sys::dev_submit(0, &dev::fill(a, 8, 1)) }, 6);
    ensure!(sys::dev_wait(0, id, None, 4) == Err(Errno::EINVAL), 6, "wait with flag 4");
    // SAFETY: refused before anything is written.
    let got = Errno::result(unsafe { raw::syscall4(nr::DEV_WAIT, 0, id, KERNEL_ADDR, 0) });
    ensure!(got == Err(Errno::EFAULT), 6, "a report into kernel memory: {got:?}");
    ensure!(sys::dev_wait(0, id, None, 0) == Err(Errno::ESRCH), 6, "the id was used up by the EFAULT");
    // The second bind, four job addresses, the jobs, the flag, the report
    // and the used-up id.
    refused += 1 + 4 + jobs.len() as u64 + 3;
    let after = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);
    check_eq!(6, "rise of stats(BAD_SYSCALLS)", refused, after - before);
    try_sys!(sys::dev_unbind(0), 8);
    Ok(())
}

/// A device bound to this process is busy for a child, whose memory it
/// never reaches; once unbound, the child may bind it.
fn other_process() -> Result<(), i32> {
    try_sys!(sys::dev_bind(0), 1);
    let status = try_sys!(in_child(|| if sys::dev_bind(0) == Err(Errno::EBUSY) { 0 } else { 1 }), 7);
    check_eq!(7, "the child's bind of its parent's device (0: EBUSY)", 0, status);
    let mut m = try_sys!(Mapping::pages(1), 1);
    m.words_mut()[0] = 0;
    // SAFETY: the job only reads.
    let id = try_sys!(unsafe { sys::dev_submit(0, &dev::checksum(m.addr(), 8)) }, 7);
    let status = try_sys!(in_child(|| if sys::dev_wait(0, id, None, 0) == Err(Errno::ESRCH) { 0 } else { 1 }), 7);
    check_eq!(7, "the child's wait for its parent's job (0: ESRCH)", 0, status);
    try_sys!(sys::dev_wait(0, id, None, 0), 7);
    try_sys!(sys::dev_unbind(0), 8);
    let status = try_sys!(in_child(|| if sys::dev_bind(0).and(sys::dev_unbind(0)).is_ok() { 0 } else { 1 }), 7);
    check_eq!(7, "the child's bind once the parent unbound (0: bound)", 0, status);
    Ok(())
}

/// Unbinding with a watch running and jobs queued ends them: their ids are
/// gone, and nothing of this process is reached afterwards.
fn unbinding() -> Result<(), i32> {
    try_sys!(sys::dev_bind(0), 1);
    let words = try_sys!(Mapping::pages(1), 1).leak_atomic();
    words[0].store(5, Release);
    let progress = &words[8];
    let mut ids = [0u64; 4];
    for (i, id) in ids.iter_mut().enumerate() {
        let p = if i == 0 { progress.as_ptr() as u64 } else { 0 };
        let job = dev::watch(words.as_ptr() as u64, p, 5000 * MS, false);
        // SAFETY: the watches write only `progress`, read through atomics.
        *id = try_sys!(unsafe { sys::dev_submit(0, &job) }, 8);
    }
    ensure!(wait_until_at_least(progress, 1, 5000 * MS), 8, "the watch did not start");
    try_sys!(sys::dev_unbind(0), 8);
    let stopped = progress.load(Acquire);
    for id in ids {
        ensure!(sys::dev_wait(0, id, None, 0) == Err(Errno::ESRCH), 8, "job {id} after the unbind: expected ESRCH");
    }
    try_sys!(sys::sleep_ms(20), 1);
    check_eq!(8, "reads counted after the unbind", stopped, progress.load(Acquire));
    Ok(())
}

/// Counters over one munmap of 16 written pages.
fn munmap_counts(bound: bool) -> Result<([u64; events::COUNT], [u64; 32]), i32> {
    let mut m = try_sys!(Mapping::pages(16), 1);
    m.words_mut().fill(0x0101_0101_0101_0101);
    if bound {
        for dev in 0..d::COUNT as u64 {
            let sum = try_sys!(run_job(dev, &dev::checksum(m.addr(), 16 * PAGE_SIZE)), 9);
            check_eq!(9, "checksum", 16 * PAGE_SIZE, sum);
        }
    }
    let (mut e0, mut e1, mut t0, mut t1) = ([0; events::COUNT], [0; events::COUNT], [0; 32], [0; 32]);
    try_sys!(sys::stats(stats::EVENTS, &mut e0), 1);
    try_sys!(sys::stats(stats::TLBI, &mut t0), 1);
    drop(m);
    try_sys!(sys::stats(stats::EVENTS, &mut e1), 1);
    try_sys!(sys::stats(stats::TLBI, &mut t1), 1);
    Ok((core::array::from_fn(|i| e1[i] - e0[i]), core::array::from_fn(|i| t1[i] - t0[i])))
}

/// Bound to both devices, a munmap tells each once inside one
/// invalidate-range, and issues the TLBIs it issues unbound.
fn counters() -> Result<(), i32> {
    try_sys!(sys::set_affinity(Some(0)), 1);
    let (e, t) = munmap_counts(false)?;
    check_eq!(9, "sec_inval unbound", 0, e[events::SEC_INVAL]);
    check_eq!(9, "mn_range unbound", 0, e[events::MN_RANGE]);
    for dev in 0..d::COUNT as u64 {
        try_sys!(sys::dev_bind(dev), 1);
    }
    let before: [[u64; d::STAT_COUNT]; d::COUNT] = [try_sys!(dev::counters(0), 1), try_sys!(dev::counters(1), 1)];
    let (eb, tb) = munmap_counts(true)?;
    check_eq!(9, "sec_inval bound to both devices", d::COUNT as u64, eb[events::SEC_INVAL]);
    check_eq!(9, "mn_range bound", 1, eb[events::MN_RANGE]);
    ensure!(t == tb, 9, "TLBIs of the munmap: unbound {t:?}, bound {tb:?}");
    for (dev, before) in before.iter().enumerate() {
        let after = try_sys!(dev::counters(dev as u64), 1);
        let delta: [u64; d::STAT_COUNT] = core::array::from_fn(|i| after[i] - before[i]);
        check_eq!(9, format_args!("device {dev}'s invalidations"), 1, delta[d::INVALS]);
        check_eq!(9, format_args!("device {dev}'s entries dropped"), 16, delta[d::DROPPED]);
        // The device was idle: the munmap's CPU served its inbox.
        check_eq!(9, format_args!("device {dev}'s inbox served by the waiter"), 1, delta[d::SERVED_BY_WAITER]);
        println!("devjobs: device {dev} over the munmap and its checksum: {delta:?} ({:?})", d::STAT_NAMES);
        try_sys!(sys::dev_unbind(dev as u64), 8);
    }
    let (sec, mn) = (eb[events::SEC_INVAL], eb[events::MN_RANGE]);
    println!("devjobs: one munmap of 16 pages: TLBIs {tb:?}, sec_inval {sec}, mn_range {mn}");
    Ok(())
}

/// A child binds both devices, starts jobs on both (queued and running),
/// and exits or is killed with them in flight.
fn exits() -> Result<(), i32> {
    for killed in [false, true] {
        let child = match try_sys!(sys::fork(), 10) {
            Fork::Child => sys::exit(busy_child(killed)),
            Fork::Parent(pid) => pid,
        };
        if killed {
            try_sys!(sys::sleep_ms(30), 10);
            try_sys!(sys::kill(child), 10);
        }
        let (_, status) = try_sys!(sys::wait(Some(child)), 10);
        let want = if killed { userland::killed(ulib::abi::cause::KILLED) } else { 0 };
        check_eq!(10, format_args!("status of the child (killed: {killed})"), want, status);
        // The devices are free again.
        for dev in 0..d::COUNT as u64 {
            try_sys!(sys::dev_bind(dev), 10);
            try_sys!(sys::dev_unbind(dev), 10);
        }
    }
    Ok(())
}

/// Binds both devices, fills their queues with copies and watches, and
/// exits with them in flight (or sleeps until `killed`).
fn busy_child(killed: bool) -> i32 {
    let Ok(mut m) = Mapping::pages(512) else { return 1 };
    m.words_mut().fill(3);
    let (at, len) = (m.addr(), m.len());
    // The jobs' memory stays mapped until the process ends.
    let _ = m.leak();
    let half = len / 2;
    for dev in 0..d::COUNT as u64 {
        if sys::dev_bind(dev).is_err() {
            return 2;
        }
        for i in 0..MAX_QUEUE {
            let job =
                if i % 2 == 0 { dev::copy(at + half, at, half) } else { dev::watch(at, at + 8, 5000 * MS, false) };
            // SAFETY: the process ends with the jobs in flight; nothing
            // reads what they write.
            if unsafe { sys::dev_submit(dev, &job) }.is_err() {
                return 3;
            }
        }
    }
    let _ = sys::sleep_ms(if killed { 10_000 } else { 20 });
    0
}
