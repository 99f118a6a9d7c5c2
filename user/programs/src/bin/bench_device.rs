//! bench_device (workload `device`): one operation = one job of device 0
//! (a secondary MMU with its own translation cache, `abi::device`): copy
//! `n` KiB from one written buffer to another, submitted and waited for by
//! this thread (CPU 0). The device's thread runs on the last CPU.
//!
//! Meanwhile a second thread of the process (CPU 1) churns its mappings,
//! without pause, and every change it makes is sent to the device (the
//! process is bound to it):
//! - flag A: a 16-page region of its own, which the device never reads:
//!   munmap it, map it again and write one word in each page;
//! - flag B: the device's source buffer: mprotect it read-only, then
//!   read-write (the device's reads stay allowed, but its cached entries
//!   for the buffer go each time);
//! - neither: no churn (the device alone).
//!
//! The churn's repetitions are not operations: every counter is per job
//! (TLBIs, `sec_inval`: invalidations sent to the device, `mn_range`, and
//! the device's own counters: fills, hits, retries, invalidations handled).
//!
//! arg (see `userland::bench`): bits 0..32 = n KiB (0: 64); 32..40 = reps
//! (0: 15); 40..56 = jobs per rep (0: 20); flags as above (needs 3 CPUs
//! with a flag, 2 without). Exit 0 after printing one `BENCH` line; 1
//! setup, 2 a job or a churn failed, 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::mm::{Mapping, PAGE_SIZE};
use ulib::{abi, sys};
use userland::bench::{self, status, Arg, Helper, Team, FLAG_A, FLAG_B};
use userland::device as dev;

/// The device used.
const DEV: u64 = 0;
/// Pages of the churned region of flag A.
const CHURN_PAGES: u64 = 16;

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 64, 15, 20);
    let (other, same) = (arg.flag(FLAG_A), arg.flag(FLAG_B));
    if other && same {
        ulib::println!("bench_device: FAIL: flags A and B together");
        return Err(status::SETUP);
    }
    let churn = other || same;
    bench::require_cpus(if churn { 3 } else { 2 })?;
    bench::pin(0)?;
    let len = arg.n * 1024;
    let pages = len.div_ceil(PAGE_SIZE);
    let mut src = bench::setup("mmap", Mapping::pages(pages))?;
    let mut dst = bench::setup("mmap", Mapping::pages(pages))?;
    // The device reaches only pages the process has touched.
    bench::touch(&mut src, pages as usize, 1);
    bench::touch(&mut dst, pages as usize, 1);
    bench::setup("dev_bind", sys::dev_bind(DEV))?;
    let job = dev::copy(dst.addr(), src.addr(), len);
    let op = |_| {
        // SAFETY: nothing reads or borrows `dst` while the job runs.
        let id = bench::op("dev_submit", unsafe { sys::dev_submit(DEV, &job) })?;
        let copied = bench::op("dev_wait", sys::dev_wait(DEV, id, None, 0))?;
        if copied != len {
            ulib::println!("bench_device: FAIL: a job copied {copied} bytes of {len}");
            return Err(status::OP);
        }
        Ok(())
    };
    let mut team = Team::new();
    if other {
        let mut region = bench::setup("mmap", Mapping::pages(CHURN_PAGES))?;
        team.push(Helper::background(1, move || {
            drop(core::mem::replace(&mut region, bench::op("mmap", Mapping::pages(CHURN_PAGES))?));
            bench::touch(&mut region, CHURN_PAGES as usize, 2);
            Ok(())
        })?)?;
    } else if same {
        let (at, size) = (src.addr(), src.len());
        team.push(Helper::background(1, move || {
            for p in [abi::prot::READ, abi::prot::READ | abi::prot::WRITE] {
                // SAFETY: nothing writes `src` (the jobs only read it).
                bench::op("mprotect", unsafe { sys::mprotect(at, size, p) })?;
            }
            Ok(())
        })?)?;
    }
    let m = bench::measure_with_team(&arg, op, &team)?;
    team.stop()?;
    bench::op("dev_unbind", sys::dev_unbind(DEV))?;
    let mode = if other {
        1
    } else if same {
        2
    } else {
        0
    };
    bench::report("device", &arg, &[("kib", arg.n), ("churn", mode)], &m)
}
