//! killperm: kill reaches only the caller and its descendants. This process
//! (P) forks A, which sleeps, and B; B must get EPERM killing its sibling A
//! and its parent P, ESRCH for a pid that does not exist, and may kill a
//! child of its own. P then kills A, its child. Exit 0 on success; 1 setup, 2 a kill gave the wrong
//! result, 3 a status.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::abi::cause;
use ulib::sys::{self, Fork};
use ulib::{println, Errno};
use userland::{check_eq, killed, try_sys};

/// Forks a child that sleeps until killed; returns its pid.
fn sleeper() -> Result<u64, Errno> {
    match sys::fork()? {
        Fork::Child => {
            let _ = sys::sleep_ns(u64::MAX);
            sys::exit(1)
        }
        Fork::Parent(pid) => Ok(pid),
    }
}

/// B's checks: its exit status is 0 or the number of the failed check.
fn b(p: u64, a: u64) -> i32 {
    if sys::kill(a) != Err(Errno::EPERM) {
        return 10; // a sibling
    }
    if sys::kill(p) != Err(Errno::EPERM) {
        return 11; // the parent
    }
    if sys::kill(1 << 40) != Err(Errno::ESRCH) {
        return 12;
    }
    let Ok(c) = sleeper() else { return 13 };
    if sys::kill(c).is_err() {
        return 14; // its own child
    }
    match sys::wait(Some(c)) {
        Ok((_, s)) if s == killed(cause::KILLED) => 0,
        _ => 15,
    }
}

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let p = sys::getpid();
    let a = try_sys!(sleeper(), 1);
    let bpid = match try_sys!(sys::fork(), 1) {
        Fork::Child => sys::exit(b(p, a)),
        Fork::Parent(pid) => pid,
    };
    let (_, status) = try_sys!(sys::wait(Some(bpid)), 1);
    check_eq!(2, "B's checks (10 sibling, 11 parent, 12 ESRCH, 13-15 own child)", 0, status);
    try_sys!(sys::kill(a), 2);
    let (_, status) = try_sys!(sys::wait(Some(a)), 1);
    check_eq!(3, "status of the child P killed", killed(cause::KILLED), status);
    println!("killperm: kill reached only the caller's descendants");
    Ok(())
}
