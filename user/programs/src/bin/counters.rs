//! counters: arg = threads (0: 4; at most 64). Thread i pins itself to CPU
//! i % 4 and adds 1, 100 000 times, to its own counter and to a shared one,
//! all in one mmap'd page. Exit 0 if every count is exact; 1 bad arg,
//! 2 mmap, 3 spawn, 4 join, 5 a thread failed, 6 a thread's count, 7 the
//! shared count.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ulib::mm::Mapping;
use ulib::thread::{self, JoinHandle};
use ulib::{println, sys};
use userland::{arg_or, check_eq, ensure, try_sys};

const ITERS: u64 = 100_000;
const MAX_THREADS: usize = 64;
const CPUS: u64 = 4;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let n = arg_or(arg, 4) as usize;
    ensure!(n <= MAX_THREADS, 1, "at most {MAX_THREADS} threads, asked for {n}");
    // Word 0 is the shared counter, word 1 + i thread i's.
    let counters: &'static [AtomicU64] = try_sys!(Mapping::pages(1), 2).leak_atomic();
    let mut threads: [Option<JoinHandle>; MAX_THREADS] = [const { None }; MAX_THREADS];
    for (i, slot) in threads.iter_mut().enumerate().take(n) {
        *slot = Some(try_sys!(thread::spawn(move || count(counters, i)), 3));
    }
    for (i, t) in threads.into_iter().flatten().enumerate() {
        let code = try_sys!(t.join(), 4);
        check_eq!(5, format_args!("thread {i}'s exit code"), 0, code);
    }
    for i in 0..n {
        check_eq!(6, format_args!("thread {i}'s counter"), ITERS, counters[1 + i].load(Relaxed));
    }
    check_eq!(7, "shared counter", n as u64 * ITERS, counters[0].load(Relaxed));
    println!("counters: {n} threads x {ITERS}: shared {}", counters[0].load(Relaxed));
    Ok(())
}

fn count(counters: &[AtomicU64], i: usize) -> i32 {
    let cpu = i as u64 % CPUS;
    if let Err(e) = sys::set_affinity(Some(cpu)) {
        println!("counters: FAIL: thread {i}: set_affinity({cpu}) failed: {e}");
        return 1;
    }
    for _ in 0..ITERS {
        counters[1 + i].fetch_add(1, Relaxed);
        counters[0].fetch_add(1, Relaxed);
    }
    0
}
