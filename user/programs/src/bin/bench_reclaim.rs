//! bench_reclaim (workload `reclaim`): reclaim of `n` pages by one
//! `madvise(MADV_PAGEOUT)`, each page brought back first: written again
//! (a swap-in fault: the page comes back from swap), or with flag B
//! dropped first (`MADV_DONTNEED`) and written (a zero-filled page), so
//! that the swap-in is left out. One *operation* is one page of that cycle:
//! the report's `ops` and `counted_ops` count pages, so every figure the
//! host derives (time, TLBIs, DSBs, instructions) is per page. Under
//! `reclaim.batch=on` a page's TLBI is issued without waiting and one DSB
//! completes a batch of 32; under `off` each page waits for its own.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 32); 32..40 =
//! reps (0: 5); 40..56 = cycles per rep (0: 4); flag B (bit 57) = drop
//! instead of swap-in; bits 60..64 = threads T (0: 1): T−1 more threads of
//! this process spin in user space on CPUs 1..T. Exit 0 after printing one
//! `BENCH` line; 1 setup, 2 an operation failed, 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::abi::advice;
use ulib::mm::Mapping;
use ulib::sys;
use userland::bench::{self, status, Arg, Spin, Team, FLAG_B};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 32, 5, 4);
    let drop_first = arg.flag(FLAG_B);
    let threads = bench::threads(&arg)?;
    bench::require_cpus(threads)?;
    bench::pin(0)?;
    let pages = arg.n as usize;
    let mut m = bench::setup("mmap", Mapping::pages(arg.n))?;
    let team = Team::spinners(threads, Spin::User)?;
    let (addr, len) = (m.addr(), m.len());
    let cycle = |i: u64| {
        if drop_first {
            // SAFETY: the pages' contents are not needed (rewritten next).
            bench::op("madvise(DONTNEED)", unsafe { sys::madvise(addr, len, advice::DONTNEED) })?;
        }
        bench::touch(&mut m, pages, i + 1);
        // SAFETY: the pages stay mapped; their contents come back on access.
        bench::op("madvise(PAGEOUT)", unsafe { sys::madvise(addr, len, advice::PAGEOUT) })?;
        Ok(())
    };
    let mut meas = bench::measure_with_team(&arg, cycle, &team)?;
    team.stop()?;
    // Per page: every count above is of cycles of `n` pages.
    meas.ops *= arg.n;
    meas.warmup *= arg.n;
    meas.counted_ops *= arg.n;
    if meas.counters.faults < meas.counted_ops {
        ulib::println!(
            "bench_reclaim: FAIL: {} faults for {} pages: pages were not reclaimed",
            meas.counters.faults,
            meas.counted_ops
        );
        return Err(status::OP);
    }
    let params = [("pages", arg.n), ("threads", threads), ("drop", u64::from(drop_first))];
    bench::report("reclaim", &arg, &params, &meas)
}
