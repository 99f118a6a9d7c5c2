//! ipc_killed: the parent creates an endpoint and forks a child that
//! receives one message and exits without replying; the parent's call must
//! fail with EPIPE rather than hang. Exit 0 if so; 1 ep_create, 2 fork/wait,
//! 3 the call got another error, 4 the call got a reply, 5 the child's
//! status (the child exits 10 if its receive fails).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::sys::{self, Fork};
use ulib::{println, Errno};
use userland::{check_eq, fail, ipc, try_sys};

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let ep = try_sys!(sys::ep_create(), 1);
    match try_sys!(sys::fork(), 2) {
        Fork::Child => {
            try_sys!(sys::ep_recv(ep), 10);
            Ok(()) // exits with the call unanswered
        }
        Fork::Parent(child) => {
            match sys::ep_call(ep, ipc::request(1)) {
                Err(Errno::EPIPE) => {}
                Err(e) => fail!(3, "ep_call to a server that exited: expected EPIPE, got {e}"),
                Ok(r) => fail!(4, "ep_call to a server that exited: expected EPIPE, got reply {r:#x?}"),
            }
            let (_, status) = try_sys!(sys::wait(Some(child)), 2);
            check_eq!(5, "child's exit status", 0, status);
            println!("ipc_killed: call to an exited server failed with EPIPE");
            Ok(())
        }
    }
}
