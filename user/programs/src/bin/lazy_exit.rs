//! lazy_exit: a process whose threads ran on several CPUs exits while those
//! CPUs still hold its address space lazily. Thread i (1 <= i < CPUs) pins
//! itself to CPU i, writes its part of a shared mapping, then moves to CPU 0
//! and exits there: CPU i goes idle with the tables still loaded. The main
//! thread (CPU 0) joins them all and exits; the kernel's teardown must make
//! the lazy CPUs leave before it frees anything (what the kernel test
//! checks from its counters and frame counts). The threads' stacks are
//! left to the exit, so that no munmap runs while other threads live.
//! `arg` = pages per thread (0: 16). Exit 0; 1 setup, 2 a thread failed,
//! 3 the memory did not hold what the threads wrote.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ulib::abi::stats;
use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::{sys, thread};
use userland::{arg_or, check_eq, fail, try_sys};

const MAX_CPUS: u64 = ulib::abi::MAX_CPUS as u64;
const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;

fn visit(words: &'static [AtomicU64], cpu: u64, pages: usize) -> i32 {
    if sys::set_affinity(Some(cpu)).is_err() || sys::getcpu() != cpu {
        return 1;
    }
    let mine = &words[cpu as usize * pages * WORDS_PER_PAGE..][..pages * WORDS_PER_PAGE];
    for (i, w) in mine.iter().enumerate().step_by(WORDS_PER_PAGE) {
        w.store(cpu << 32 | i as u64, Relaxed);
    }
    if sys::set_affinity(Some(0)).is_err() {
        return 1;
    }
    0
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let pages = arg_or(arg, 16) as usize;
    let cpus = try_sys!(sys::stat(stats::CPUS), 1).min(MAX_CPUS);
    try_sys!(sys::set_affinity(Some(0)), 1);
    let words = try_sys!(Mapping::pages(cpus * pages as u64), 1).leak_atomic();
    let mut tids = [0u64; MAX_CPUS as usize];
    for cpu in 1..cpus {
        // Joined below by tid: its stack stays mapped until the exit.
        tids[cpu as usize] = try_sys!(thread::spawn(move || visit(words, cpu, pages)), 1).tid();
    }
    for cpu in 1..cpus {
        let code = try_sys!(sys::join(tids[cpu as usize]), 2);
        check_eq!(2, format_args!("exit code of the thread of CPU {cpu}"), 0, code);
    }
    for cpu in 1..cpus as usize {
        for (i, w) in words[cpu * pages * WORDS_PER_PAGE..][..pages * WORDS_PER_PAGE].iter().enumerate() {
            let want = if i % WORDS_PER_PAGE == 0 { (cpu as u64) << 32 | i as u64 } else { 0 };
            if w.load(Relaxed) != want {
                fail!(3, "CPU {cpu}'s word {i}: {:#x}, expected {want:#x}", w.load(Relaxed));
            }
        }
    }
    Ok(())
}
