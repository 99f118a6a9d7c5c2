//! bench_exit (workload `exit`): one operation = fork; the child maps `n`
//! fresh pages, writes one word in each and exits without unmapping them
//! (the whole address space is torn down at exit); the parent waits for it.
//! Measured in the parent, so it covers fork, the child's faults, its exit
//! and the wait. Compare `tlb.exit_elide=on|off`.
//!
//! arg (see `userland::bench`): bits 0..32 = n pages (0: 16); 32..40 = reps
//! (0: 5); 40..56 = ops per rep (0: 10); bits 60..64 = threads T (0: 1):
//! the child first starts T−1 threads of its own on CPUs 1..T (needs T
//! CPUs), which call GETPID in a loop, so that its address space is live on
//! T CPUs when it exits (and they notice the exit at once); the operation
//! then includes starting them. Parent and children's first threads run on
//! CPU 0.
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed
//! (or a child's status was not 0), 3 counters/report; a child exits 10 if
//! its mmap fails, 11 if it cannot start its threads.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::sys::{self, Fork};
use userland::bench::{self, status, Arg, Spin, Team};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 16, 5, 10);
    let threads = bench::threads(&arg)?;
    bench::require_cpus(threads)?;
    bench::pin(0)?;
    let m = bench::measure(
        &arg,
        |i| match bench::op("fork", sys::fork())? {
            Fork::Child => {
                // Left running: the exit ends them.
                let Ok(_team) = Team::spinners(threads, Spin::Syscall) else { sys::exit(11) };
                let Ok(mut m) = Mapping::pages(arg.n) else { sys::exit(10) };
                bench::touch(&mut m, arg.n as usize, i);
                m.leak(); // no munmap: exit tears it down
                sys::exit(0)
            }
            Fork::Parent(pid) => match bench::op("wait", sys::wait(Some(pid)))? {
                (_, 0) => Ok(()),
                (_, s) => {
                    ulib::println!("bench_exit: FAIL: child {pid} exited with {s}");
                    Err(status::OP)
                }
            },
        },
        || 0,
    )?;
    bench::report("exit", &arg, &[("pages", arg.n), ("threads", threads)], &m)
}
