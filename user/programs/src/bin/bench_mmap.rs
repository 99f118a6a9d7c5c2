//! bench_mmap (workload `mmap`): one operation = mmap `n` anonymous pages,
//! write one word in each, munmap them.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 16); 32..40 = reps
//! (0: 5); 40..56 = ops per rep (0: 20); bits 60..64 = threads T (0: 1, or
//! 2 with flag A, bit 56): T−1 more threads of this process spin in user
//! space on CPUs 1..T throughout, so the address space is live on T CPUs
//! (needs T CPUs). The main thread runs on CPU 0.
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use userland::bench::{self, Arg};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 16, 5, 20);
    let spinners = bench::pin_with_spinners(&arg)?;
    let threads = spinners.len() + 1;
    let pages = arg.n as usize;
    let m = bench::measure(
        &arg,
        |i| {
            let mut m = bench::op("mmap", Mapping::pages(arg.n))?;
            bench::touch(&mut m, pages, i);
            drop(m); // munmap
            Ok(())
        },
        || 0,
    )?;
    spinners.stop()?;
    bench::report("mmap", &arg, &[("pages", arg.n), ("threads", threads)], &m)
}
