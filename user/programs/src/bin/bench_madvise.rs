//! bench_madvise (workload `madvise`): one operation = madvise(DONTNEED)
//! of an `n`-page region, then write one word in each of its pages again.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 256 = 1 MiB);
//! 32..40 = reps (0: 5); 40..56 = ops per rep (0: 10); flag A (bit 56) =
//! two threads: a second thread of this process on CPU 1 does the same
//! operation on its own region without pause while the main thread (CPU 0)
//! measures (needs 2 CPUs). The main thread's operations are timed; the
//! counters cover both threads' operations (`counted_ops`).
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use userland::bench::{self, Arg, Helper, FLAG_A};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 256, 5, 10);
    let two = arg.flag(FLAG_A);
    if two {
        bench::require_cpus(2)?;
    }
    bench::pin(0)?;
    let pages = arg.n as usize;
    let mut mine = bench::setup("mmap", Mapping::pages(arg.n))?;
    bench::touch(&mut mine, pages, 1);
    let helper = if two {
        let mut theirs = bench::setup("mmap", Mapping::pages(arg.n))?;
        bench::touch(&mut theirs, pages, 1);
        Some(Helper::start(1, move || {
            bench::op("madvise", theirs.discard())?;
            bench::touch(&mut theirs, pages, 2);
            Ok(())
        })?)
    } else {
        None
    };
    let op = |i| {
        bench::op("madvise", mine.discard())?;
        bench::touch(&mut mine, pages, i);
        Ok(())
    };
    let m = match &helper {
        Some(h) => bench::measure_with_helper(&arg, op, h)?,
        None => bench::measure(&arg, op, || 0)?,
    };
    if let Some(h) = helper {
        h.stop()?;
    }
    let threads = if two { 2 } else { 1 };
    bench::report(
        "madvise",
        &arg,
        &[("pages", arg.n), ("threads", threads)],
        &m,
    )
}
