//! bench_mprotect_threads (workload `mprotect-threads`): every thread of
//! one process changes the protection of its own region, the workload of
//! Andrea Arcangeli's arm64 local-flush patches (mprotect from many
//! threads). Each of T threads holds an `n`-page mapping, every page
//! written first; one operation = mprotect(read-only) of its `n` pages,
//! mprotect(read-write) back, then write one word in each page.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 16); 32..40 = reps
//! (0: 5); 40..56 = ops per rep (0: 20); bits 60..64 = threads T (0: 1;
//! needs T CPUs): the main thread on CPU 0 measures, T−1 more on CPUs 1..T
//! do the same operation on their own regions without pause. The main
//! thread's operations are timed; the counters cover every thread's
//! (`counted_ops`).
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::abi::prot;
use ulib::mm::Mapping;
use userland::bench::{self, Arg, Helper, Team};

ulib::entry!(run);

/// One operation on `m`'s first `pages` pages, writing `value`.
fn op(m: &mut Mapping, pages: usize, value: u64) -> Result<(), i32> {
    bench::op("mprotect(READ)", m.protect(prot::READ))?;
    bench::op("mprotect(READ|WRITE)", m.protect(prot::READ | prot::WRITE))?;
    bench::touch(m, pages, value);
    Ok(())
}

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 16, 5, 20);
    let threads = bench::threads(&arg)?;
    bench::require_cpus(threads)?;
    bench::pin(0)?;
    let pages = arg.n as usize;
    let mut mine = bench::setup("mmap", Mapping::pages(arg.n))?;
    bench::touch(&mut mine, pages, 1);
    let mut team = Team::new();
    for cpu in 1..threads {
        let mut theirs = bench::setup("mmap", Mapping::pages(arg.n))?;
        bench::touch(&mut theirs, pages, 1);
        team.push(Helper::start(cpu, move || op(&mut theirs, pages, cpu))?)?;
    }
    let m = bench::measure_with_team(&arg, |i| op(&mut mine, pages, i), &team)?;
    team.stop()?;
    bench::report("mprotect-threads", &arg, &[("pages", arg.n), ("threads", threads)], &m)
}
