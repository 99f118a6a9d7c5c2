//! ipc_caller: makes one call on endpoint `arg`. Exit 0 if the call failed
//! with EPIPE (the receiver died holding it), 1 if it got a reply, 2 on any
//! other error.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys, Errno};

ulib::entry!(run);

fn run(arg: u64) -> i32 {
    match sys::ep_call(arg, [1, 2, 3, 4]) {
        Err(e) if e == Errno::EPIPE => 0,
        Ok(r) => {
            println!("ipc_caller: unexpected reply {r:?}");
            1
        }
        Err(e) => {
            println!("ipc_caller: call failed with {e}, expected EPIPE");
            2
        }
    }
}
