//! ipc_pair: the ipc_server/ipc_client protocol in one program: the parent
//! creates an endpoint and forks a child that serves it, then makes the
//! 10 000 calls, stops the child and waits for it. arg bit 0: 1 = both on
//! CPU 0, 0 = parent on CPU 0, child on CPU 1.
//! Exit 0 on success; 1 ep_create, 2 set_affinity, 3 fork/wait, 4 the
//! calls, 5 the child's status; the child exits 10/11 on its failures.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::println;
use ulib::sys::{self, Fork};
use userland::ipc::{self, CALLS};
use userland::{check_eq, fail, try_sys};

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let same_cpu = arg & 1 != 0;
    let ep = try_sys!(sys::ep_create(), 1);
    try_sys!(sys::set_affinity(Some(0)), 2);
    match try_sys!(sys::fork(), 3) {
        Fork::Child => {
            try_sys!(sys::set_affinity(Some(if same_cpu { 0 } else { 1 })), 10);
            if let Err(e) = ipc::serve(ep) {
                fail!(11, "server: {e}");
            }
            Ok(())
        }
        Fork::Parent(child) => {
            let start = sys::time_ns();
            if let Err(e) = ipc::client(ep, CALLS) {
                fail!(4, "{e}");
            }
            let ns = sys::time_ns() - start;
            let (_, status) = try_sys!(sys::wait(Some(child)), 3);
            check_eq!(5, "server child's exit status", 0, status);
            let cpus = if same_cpu { "one cpu" } else { "two cpus" };
            println!("ipc_pair: {CALLS} calls on {cpus} in {} us ({} ns/call)", ns / 1000, ns / CALLS);
            Ok(())
        }
    }
}
