//! bench_fork (workload `fork`): the parent holds a private mapping of
//! max(m, 1024) pages, every page written before the measurement. One
//! operation = fork; the child writes one word in each of the first `m`
//! pages (copy-on-write) and exits; the parent waits for it. The parent
//! does not write its pages again.
//!
//! arg (see `userland::bench`): bits 0..32 = m pages (0: 16); 32..40 = reps
//! (0: 5); 40..56 = ops per rep (0: 10); bits 60..64 = threads T (0: 1):
//! T−1 more threads of the parent spin in user space on CPUs 1..T (needs T
//! CPUs), so the parent's address space, which fork write-protects, is
//! live on T CPUs. The forking thread and the children run on CPU 0.
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed
//! (or a child's status was not 0), 3 counters/report.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::sys::{self, Fork};
use userland::bench::{self, status, Arg};

/// Smallest mapping the parent holds, in pages (4 MiB).
const MIN_MAPPING: u64 = 1024;

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 16, 5, 10);
    bench::pin(0)?;
    let size = arg.n.max(MIN_MAPPING);
    let mut m = bench::setup("mmap", Mapping::pages(size))?;
    bench::touch(&mut m, size as usize, 1);
    let spinners = bench::pin_with_spinners(&arg)?;
    let threads = spinners.len() + 1;
    let written = arg.n as usize;
    let result = bench::measure(
        &arg,
        |i| match bench::op("fork", sys::fork())? {
            Fork::Child => {
                bench::touch(&mut m, written, i);
                sys::exit(0)
            }
            Fork::Parent(pid) => match bench::op("wait", sys::wait(Some(pid)))? {
                (_, 0) => Ok(()),
                (_, status) => {
                    ulib::println!("bench_fork: FAIL: child {pid} exited with {status}");
                    Err(status::OP)
                }
            },
        },
        || 0,
    )?;
    spinners.stop()?;
    let params = [("pages", arg.n), ("mapping_pages", size), ("threads", threads)];
    bench::report("fork", &arg, &params, &result)
}
