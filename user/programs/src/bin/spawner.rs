//! spawner: arg = N (0: 200). Spawns N `exiter`s, child i with arg i, at
//! most 8 running at once, waits for each and checks its status is
//! i & 0xff. Exit 0 on success; 1 spawn, 2 wait, 3 wait returned a pid it
//! did not spawn, 4 a wrong status.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys};
use userland::{arg_or, check_eq, fail, try_sys};

/// Children running at once.
const MAX_RUNNING: usize = 8;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let n = arg_or(arg, 200);
    // (pid, expected status) of each running child.
    let mut running: [Option<(u64, i64)>; MAX_RUNNING] = [None; MAX_RUNNING];
    let (mut next, mut reaped) = (0, 0);
    while reaped < n {
        while next < n {
            let Some(slot) = running.iter_mut().find(|s| s.is_none()) else {
                break;
            };
            let pid = try_sys!(sys::spawn("exiter", next), 1);
            *slot = Some((pid, (next & 0xff) as i64));
            next += 1;
        }
        let (pid, status) = try_sys!(sys::wait(None), 2);
        let Some(slot) = running.iter_mut().find(|s| s.is_some_and(|(p, _)| p == pid)) else {
            fail!(3, "wait returned pid {pid}, which is not a running child");
        };
        let (_, expected) = slot.take().unwrap_or_default();
        check_eq!(4, format_args!("status of child pid {pid}"), expected, status);
        reaped += 1;
    }
    println!("spawner: {n} children spawned and reaped, at most {MAX_RUNNING} at once");
    Ok(())
}
