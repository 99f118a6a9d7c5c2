//! faults: spawns `fault` with each kind in `userland::FAULTS` in turn and
//! checks the kernel killed it with KILLED_BASE + the right cause. Exit 0
//! if all were; otherwise the number of the first kind that was not (or
//! 100 if spawn/wait failed).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys};
use userland::{check_eq, killed, try_sys, FAULTS};

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    for (kind, what, cause) in FAULTS {
        let pid = try_sys!(sys::spawn("fault", kind), 100);
        let (_, status) = try_sys!(sys::wait(Some(pid)), 100);
        check_eq!(kind as i32, format_args!("status of fault {kind} ({what})"), killed(cause), status);
    }
    println!("faults: all {} faults killed with the right cause", FAULTS.len());
    Ok(())
}
