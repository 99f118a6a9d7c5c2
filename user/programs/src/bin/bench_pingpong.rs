//! bench_pingpong (workload `pingpong`): two processes on CPU 0; one
//! operation = one round trip: the parent's ep_call, the child's ep_recv
//! and ep_reply, the parent's return with the reply.
//!
//! arg (see `userland::bench`): bits 0..32 unused; 32..40 = reps (0: 5);
//! 40..56 = ops per rep (0: 200).
//! Exit 0 after printing one `BENCH` line; 1 setup, 2 a call failed or the
//! reply was wrong, 3 counters/report (the child exits 10 if serving fails).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::sys::{self, Fork};
use userland::bench::{self, status, Arg};
use userland::ipc::{self, STOP};

ulib::entry!(run);

fn run(raw: u64) -> Result<(), i32> {
    let arg = Arg::decode(raw, 1, 5, 200);
    bench::pin(0)?;
    let ep = bench::setup("ep_create", sys::ep_create())?;
    let child = match bench::setup("fork", sys::fork())? {
        Fork::Child => match ipc::serve(ep) {
            Ok(_) => sys::exit(0),
            Err(e) => {
                ulib::println!("bench_pingpong: FAIL: server: {e}");
                sys::exit(10)
            }
        },
        Fork::Parent(pid) => pid,
    };
    let call = |i: u64| {
        ipc::call(ep, i).map_err(|e| {
            ulib::println!("bench_pingpong: FAIL: {e}");
            status::OP
        })
    };
    let m = bench::measure(&arg, call, || 0)?;
    call(STOP)?;
    match bench::op("wait", sys::wait(Some(child)))? {
        (_, 0) => {}
        (_, s) => {
            ulib::println!("bench_pingpong: FAIL: server exited with {s}");
            return Err(status::OP);
        }
    }
    bench::report("pingpong", &arg, &[], &m)
}
