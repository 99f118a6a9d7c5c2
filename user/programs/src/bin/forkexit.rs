//! forkexit: arg = N (0: 100) | mode << 32. Process lifecycles in a loop,
//! for leak tests: mode 0 forks a child that exits at once with status
//! i & 0xff; mode 1 spawns `exiter` with arg i; mode 2 forks a child that
//! starts 20 threads, exits without joining them, and so ends with 20
//! unjoined threads. The parent waits for each and checks the status.
//! Exit 0 on success; 1 fork/spawn, 2 wait, 3 a wrong status.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::sys::{self, Fork};
use ulib::{println, thread};
use userland::{arg_or, check_eq, try_sys};

/// Threads the mode-2 child leaves unjoined.
const UNJOINED: usize = 20;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let n = arg_or(arg & 0xffff_ffff, 100);
    let mode = arg >> 32;
    for i in 0..n {
        let expected = (i & 0xff) as i64;
        let pid = match mode {
            1 => try_sys!(sys::spawn("exiter", i), 1),
            _ => match try_sys!(sys::fork(), 1) {
                Fork::Child if mode == 2 => {
                    for _ in 0..UNJOINED {
                        // The handles are dropped: the threads stay unjoined.
                        let _ = thread::spawn(|| 0);
                    }
                    sys::exit(expected as i32)
                }
                Fork::Child => sys::exit(expected as i32),
                Fork::Parent(pid) => pid,
            },
        };
        let (got, status) = try_sys!(sys::wait(Some(pid)), 2);
        check_eq!(2, "pid from wait", pid, got);
        check_eq!(3, format_args!("status of child {i}"), expected, status);
    }
    println!("forkexit: {n} lifecycles (mode {mode})");
    Ok(())
}
