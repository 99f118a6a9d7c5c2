//! bench_madvise (workload `madvise`): one operation = madvise(DONTNEED)
//! of an `n`-page region, then write one word in each of its pages again.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 256 = 1 MiB);
//! 32..40 = reps (0: 5); 40..56 = ops per rep (0: 10); flag A (bit 56) =
//! two threads: a second thread of this process on CPU 1 does the same
//! operation on its own region without pause while the main thread (CPU 0)
//! measures (needs 2 CPUs). The main thread's operations are timed; the
//! counters cover both threads' operations (`counted_ops`). Without flag A,
//! bits 60..64 = threads T (0: 1): T−1 more threads of this process spin in
//! user space on CPUs 1..T (needs T CPUs; reported as `spinning=1`).
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use userland::bench::{self, status, Arg, Helper, Spin, Team, FLAG_A};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 256, 5, 10);
    let two = arg.flag(FLAG_A);
    let threads = bench::threads(&arg)?;
    if two && threads != 2 {
        ulib::println!("bench_madvise: FAIL: flag A means 2 threads, not {threads}");
        return Err(status::SETUP);
    }
    bench::require_cpus(threads)?;
    bench::pin(0)?;
    let pages = arg.n as usize;
    let mut mine = bench::setup("mmap", Mapping::pages(arg.n))?;
    bench::touch(&mut mine, pages, 1);
    let team = if two {
        let mut theirs = bench::setup("mmap", Mapping::pages(arg.n))?;
        bench::touch(&mut theirs, pages, 1);
        let mut team = Team::new();
        team.push(Helper::start(1, move || {
            bench::op("madvise", theirs.discard())?;
            bench::touch(&mut theirs, pages, 2);
            Ok(())
        })?)?;
        team
    } else {
        Team::spinners(threads, Spin::User)?
    };
    let op = |i| {
        bench::op("madvise", mine.discard())?;
        bench::touch(&mut mine, pages, i);
        Ok(())
    };
    let m = bench::measure_with_team(&arg, op, &team)?;
    team.stop()?;
    let spinning = !two && threads > 1;
    let params = [("pages", arg.n), ("threads", threads), ("spinning", 1)];
    bench::report("madvise", &arg, &params[..if spinning { 3 } else { 2 }], &m)
}
