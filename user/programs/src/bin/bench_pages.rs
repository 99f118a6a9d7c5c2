//! bench_pages (workloads `pages-mmap`, `pages-madvise`, `pages-split`):
//! an `n` MiB region mapped with 4 KiB pages, 64 KiB contiguous runs
//! (`map::CONT`) or 2 MiB blocks (`map::HUGE`), always at the same
//! block-aligned address (so every page size fills whole runs and blocks).
//!
//! - `pages-mmap`: one operation = mmap the region, write one word in each
//!   4 KiB of it, munmap it.
//! - `pages-madvise`: the region is mapped and written once; one operation
//!   = madvise(DONTNEED) of all of it, then write one word in each 4 KiB
//!   again.
//! - `pages-split`: as `pages-mmap`, with a munmap of one page in the
//!   middle of each 2 MiB of the region before the munmap of the rest: a
//!   block is split, a run unfolded, plain pages only lose the page. The
//!   difference from `pages-mmap` at the same size is the cost of the
//!   splits.
//!
//! arg (see `userland::bench`): bits 0..32 = n MiB (0: 2; a multiple of
//! 2); 32..40 = reps (0: 5); 40..56 = ops per rep (0: 1); flags (bits
//! 56..60): bits 0..2 = page size (0: 4 KiB, 1: 64 KiB runs, 2: 2 MiB
//! blocks), bits 2..4 = the workload (0: mmap, 1: madvise, 2: split). One
//! thread, on CPU 0. Exit 0 after printing one `BENCH` line; 1 setup, 2 an
//! operation failed, 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::abi::{advice, map, prot};
use ulib::{sys, Errno};
use userland::bench::{self, status, Arg};

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const RW: u64 = prot::READ | prot::WRITE;

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 2, 5, 1);
    let (flags, page_kib) = match arg.flags & 3 {
        0 => (0, 4),
        1 => (map::CONT, 64),
        2 => (map::HUGE, 2048),
        f => return setup_error(format_args!("page size {f}")),
    };
    let workload = match arg.flags >> 2 {
        0 => "pages-mmap",
        1 => "pages-madvise",
        2 => "pages-split",
        w => return setup_error(format_args!("workload {w}")),
    };
    if arg.n == 0 || !arg.n.is_multiple_of(2) {
        return setup_error(format_args!("{} MiB: not a whole number of blocks", arg.n));
    }
    bench::pin(0)?;
    let len = arg.n << 20;
    // A block-aligned place for the region, free again.
    // SAFETY: without FIXED the kernel chooses an unused range.
    let at = bench::setup("mmap", unsafe { sys::mmap_raw(0, len, RW, map::HUGE) })?;
    bench::setup("munmap", unmap(at, len))?;
    let map_region = || {
        // SAFETY: `at` is this program's own range, unused when mapped.
        bench::op("mmap", unsafe { sys::mmap_raw(at, len, RW, map::FIXED | flags) }.map(drop))
    };
    let m = match arg.flags >> 2 {
        0 => bench::measure(
            &arg,
            |i| {
                map_region()?;
                touch(at, len, i);
                bench::op("munmap", unmap(at, len))
            },
            || 0,
        )?,
        1 => {
            map_region()?;
            touch(at, len, 1);
            let m = bench::measure(
                &arg,
                |i| {
                    // SAFETY: no reference to the region's memory is live;
                    // it reads as zeroes afterwards.
                    bench::op("madvise", unsafe { sys::madvise(at, len, advice::DONTNEED) }.map(drop))?;
                    touch(at, len, i);
                    Ok(())
                },
                || 0,
            )?;
            bench::op("munmap", unmap(at, len))?;
            m
        }
        _ => bench::measure(
            &arg,
            |i| {
                map_region()?;
                touch(at, len, i);
                for b in (at..at + len).step_by(BLOCK as usize) {
                    bench::op("munmap of a page", unmap(b + BLOCK / 2 + PAGE, PAGE))?;
                }
                bench::op("munmap", unmap(at, len))
            },
            || 0,
        )?,
    };
    bench::report(workload, &arg, &[("mib", arg.n), ("page_kib", page_kib)], &m)
}

fn setup_error(what: core::fmt::Arguments) -> Result<(), i32> {
    ulib::println!("bench_pages: FAIL: {what}");
    Err(status::SETUP)
}

fn unmap(addr: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: only the region's own memory, which no reference points into.
    unsafe { sys::munmap(addr, len) }.map(drop)
}

/// Writes `value` in the first word of each 4 KiB of `[at, at + len)`.
fn touch(at: u64, len: u64, value: u64) {
    for p in (at..at + len).step_by(PAGE as usize) {
        // SAFETY: the region is mapped read-write; nothing else uses it.
        unsafe { (p as *mut u64).write_volatile(value) };
    }
}
