//! churn: process lifecycles on every CPU at once (`userland::churn`):
//! arg = lifecycles in all (0: 4000), plus bit 63 when other processes
//! (the fuzzer) may kill our children: those are then counted, not failures.
//! One lane per CPU, each a forked
//! process pinned to its CPU running its share. Each child checks that its
//! fresh memory reads zero and holds its own pattern; one in 16 runs
//! threads and is killed while they run. Prints one line:
//! `churn: N lifecycles (K killed), R forks refused`. Exit 0 on success;
//! 1 setup, 2 a lane failed (its message says why).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::abi::stats;
use ulib::println;
use ulib::sys::{self, Fork};
use userland::churn;
use userland::{arg_or, fail, try_sys};

/// Word 0 of a lane's report (bit 0: the lane failed).
const TAG: u64 = 0xc4a2_1a4e << 32;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let others_kill = arg >> 63 != 0;
    let total = arg_or(arg & !(1 << 63), 4000);
    let cpus = try_sys!(sys::stat(stats::CPUS), 1).max(1);
    let ep = try_sys!(sys::ep_create(), 1);
    for lane in 0..cpus {
        if let Fork::Child = try_sys!(sys::fork(), 1) {
            let _ = sys::set_affinity(Some(lane));
            let share = total / cpus + u64::from(lane < total % cpus);
            let r = churn::run(share, others_kill, || false);
            let msg = match r {
                Ok(c) => [TAG, c.exited + c.killed_by_others, c.killed, c.refused],
                Err(e) => {
                    println!("churn: FAIL: lane {lane}: {e}");
                    [TAG | 1, 0, 0, 0]
                }
            };
            let _ = sys::ep_call(ep, msg);
            sys::exit((msg[0] & 1) as i32);
        }
    }
    let mut sum = churn::Counts::default();
    let (mut failed, mut reports) = (0, 0);
    while reports < cpus {
        let (token, m) = try_sys!(sys::ep_recv(ep), 1);
        let _ = sys::ep_reply(token, [0; 4]);
        // Endpoints are global: another process (the fuzzer) may call ours.
        if m[0] & !1 != TAG {
            continue;
        }
        reports += 1;
        failed += m[0] & 1;
        sum.exited += m[1];
        sum.killed += m[2];
        sum.refused += m[3];
    }
    for _ in 0..cpus {
        try_sys!(sys::wait(None), 1);
    }
    println!("churn: {} lifecycles ({} killed), {} forks refused", sum.lifecycles(), sum.killed, sum.refused);
    if failed != 0 {
        fail!(2, "{failed} lanes failed");
    }
    Ok(())
}
