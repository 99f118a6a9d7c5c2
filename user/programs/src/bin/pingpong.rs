//! pingpong: arg = round trips (0: 1000). Same-CPU IPC: parent and a
//! forked server child both pinned to CPU 0; each call is timed with
//! CNTVCT_EL0. Prints one line of key=value results with the median ticks
//! per round trip. Exit 0 on success; 1 setup, 2 a call, 3 the child's
//! status (the child exits 10 on failure).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::println;
use ulib::sys::{self, Fork};
use ulib::time::{cntfrq, cntvct, ticks_to_ns};
use userland::ipc::{self, STOP};
use userland::{arg_or, check_eq, fail, try_sys};

/// Untimed calls first, so the timed ones see warm caches and TLBs.
const WARMUP: u64 = 100;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let n = arg_or(arg, 1000);
    let mut samples = try_sys!(Mapping::new(n * 8), 1);
    let ep = try_sys!(sys::ep_create(), 1);
    try_sys!(sys::set_affinity(Some(0)), 1);
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            if let Err(e) = ipc::serve(ep) {
                fail!(10, "server: {e}");
            }
            return Ok(());
        }
        Fork::Parent(child) => child,
    };
    for i in 0..WARMUP {
        if let Err(e) = ipc::call(ep, i) {
            fail!(2, "{e}");
        }
    }
    let ticks = &mut samples.words_mut()[..n as usize];
    for (i, t) in ticks.iter_mut().enumerate() {
        let start = cntvct();
        let r = sys::ep_call(ep, ipc::request(i as u64));
        *t = cntvct() - start;
        if let Err(e) = r {
            fail!(2, "round trip {i}: {e}");
        }
    }
    if let Err(e) = ipc::call(ep, STOP) {
        fail!(2, "stop: {e}");
    }
    let (_, status) = try_sys!(sys::wait(Some(child)), 1);
    check_eq!(3, "server child's exit status", 0, status);

    ticks.sort_unstable();
    let (median, hz) = (ticks[ticks.len() / 2], cntfrq());
    println!(
        "pingpong: round_trips={n} median_ticks={median} median_ns={} min_ticks={} max_ticks={} cntfrq_hz={hz}",
        ticks_to_ns(median, hz),
        ticks[0],
        ticks[ticks.len() - 1],
    );
    Ok(())
}
