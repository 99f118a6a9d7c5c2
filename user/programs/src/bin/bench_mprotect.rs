//! bench_mprotect (workload `mprotect`): an `n`-page mapping, every page
//! written first. One operation = mprotect(read-only) of all `n` pages,
//! mprotect(read-write) back, then write one word in each page (so any
//! permission fault the kernel defers is part of the operation).
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 16); 32..40 = reps
//! (0: 5); 40..56 = ops per rep (0: 20); bits 60..64 = threads T (0: 1, or
//! 2 with flag A, bit 56): T−1 more threads of this process spin in user
//! space on CPUs 1..T throughout (needs T CPUs). The main thread runs on
//! CPU 0. `bench_mprotect_threads` has every thread do the operation.
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::abi::prot;
use ulib::mm::Mapping;
use userland::bench::{self, Arg};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 16, 5, 20);
    let spinners = bench::pin_with_spinners(&arg)?;
    let threads = spinners.len() + 1;
    let pages = arg.n as usize;
    let mut m = bench::setup("mmap", Mapping::pages(arg.n))?;
    bench::touch(&mut m, pages, 1);
    let result = bench::measure(
        &arg,
        |i| {
            bench::op("mprotect(READ)", m.protect(prot::READ))?;
            bench::op("mprotect(READ|WRITE)", m.protect(prot::READ | prot::WRITE))?;
            bench::touch(&mut m, pages, i);
            Ok(())
        },
        || 0,
    )?;
    spinners.stop()?;
    bench::report("mprotect", &arg, &[("pages", arg.n), ("threads", threads)], &result)
}
