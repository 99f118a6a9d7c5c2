//! bench_asid (workload `asid-pressure`): many address spaces on one CPU,
//! run under `asid_bits=N` so that ASIDs run out every few switches.
//!
//! - Switch mode (default): `n` server processes, forked before the
//!   measurement, each waiting on its own endpoint, all on CPU 0. One
//!   operation = one round trip (ep_call/ep_recv/ep_reply) to the next
//!   server in turn: two switches between address spaces.
//! - Create mode (flag A): one operation = fork a child that exits at once,
//!   and wait for it: one new address space (a fresh ASID) per operation.
//!
//! arg (see `userland::bench`): bits 0..32 = n servers (0: 64); 32..40 =
//! reps (0: 5); 40..56 = ops per rep (0: 200); flag A (bit 56) = create mode.
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 an operation failed,
//! 3 counters/report (a server exits 10 if serving fails).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::sys::{self, Fork};
use userland::bench::{self, status, Arg, FLAG_A};
use userland::ipc::{self, STOP};

/// Most servers (endpoints are kept in a fixed array).
const MAX_SERVERS: usize = 1024;

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 64, 5, 200);
    bench::pin(0)?;
    if arg.flag(FLAG_A) {
        let m = bench::measure(&arg, |_| fork_exit(), || 0)?;
        return bench::report("asid-pressure", &arg, &[("processes", 1), ("create", 1)], &m);
    }
    let n = arg.n.min(MAX_SERVERS as u64) as usize;
    let mut servers = [(0u64, 0u64); MAX_SERVERS]; // (endpoint, pid)
    for s in servers.iter_mut().take(n) {
        let ep = bench::setup("ep_create", sys::ep_create())?;
        match bench::setup("fork", sys::fork())? {
            Fork::Child => match ipc::serve(ep) {
                Ok(_) => sys::exit(0),
                Err(e) => {
                    ulib::println!("bench_asid: FAIL: server: {e}");
                    sys::exit(10)
                }
            },
            Fork::Parent(pid) => *s = (ep, pid),
        }
    }
    let call = |i: u64| {
        let (ep, _) = servers[i as usize % n];
        ipc::call(ep, i).map_err(|e| {
            ulib::println!("bench_asid: FAIL: {e}");
            status::OP
        })
    };
    let m = bench::measure(&arg, call, || 0)?;
    for &(ep, pid) in &servers[..n] {
        ipc::call(ep, STOP).map_err(|_| status::OP)?;
        if bench::op("wait", sys::wait(Some(pid)))?.1 != 0 {
            ulib::println!("bench_asid: FAIL: server {pid} failed");
            return Err(status::OP);
        }
    }
    bench::report("asid-pressure", &arg, &[("processes", n as u64), ("create", 0)], &m)
}

fn fork_exit() -> Result<(), i32> {
    match bench::op("fork", sys::fork())? {
        Fork::Child => sys::exit(0),
        Fork::Parent(pid) => match bench::op("wait", sys::wait(Some(pid)))? {
            (_, 0) => Ok(()),
            (_, s) => {
                ulib::println!("bench_asid: FAIL: child {pid} exited with {s}");
                Err(status::OP)
            }
        },
    }
}
