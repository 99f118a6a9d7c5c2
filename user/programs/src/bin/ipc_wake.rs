//! ipc_wake: a receiver killed while it waits must not take the next call's
//! wake-up with it. This process creates an endpoint; a forked child starts
//! receiving on it first, then a thread of this process; the child is
//! killed; then a call must reach the thread. arg = rounds (0: 20).
//! Exit 0 on success; 1 setup, 2 the call failed, 3 wrong reply, 4 the
//! child's status. A lost wake-up hangs in ep_call (the kernel test's time
//! limit ends it).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::abi::cause;
use ulib::sys::{self, Fork};
use ulib::{println, thread};
use userland::{arg_or, check_eq, killed, try_sys};

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg, 20);
    let ep = try_sys!(sys::ep_create(), 1);
    for round in 0..rounds {
        let child = match try_sys!(sys::fork(), 1) {
            Fork::Child => {
                let _ = sys::ep_recv(ep);
                sys::exit(9)
            }
            Fork::Parent(pid) => pid,
        };
        // Let the child get to the front of the receivers' queue.
        try_sys!(sys::sleep_ms(10), 1);
        let server = try_sys!(
            thread::spawn(move || match sys::ep_recv(ep) {
                Ok((token, m)) => sys::ep_reply(token, [m[0] + 1, 0, 0, 0]).map_or(2, |_| 0),
                Err(_) => 1,
            }),
            1
        );
        try_sys!(sys::sleep_ms(10), 1);
        try_sys!(sys::kill(child), 1);
        let (_, status) = try_sys!(sys::wait(Some(child)), 1);
        check_eq!(4, "status of the killed receiver", killed(cause::KILLED), status);
        let reply = try_sys!(sys::ep_call(ep, [round, 0, 0, 0]), 2);
        check_eq!(3, "reply", round + 1, reply[0]);
        check_eq!(3, "server thread", 0, try_sys!(server.join(), 1) as u64);
    }
    println!("ipc_wake: {rounds} calls reached the live receiver behind a killed one");
    Ok(())
}
