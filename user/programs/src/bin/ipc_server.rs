//! ipc_server: creates an endpoint, prints "endpoint N", and answers each
//! call (m0, m1, m2, m3) with (m0 + 1, m1, m2 ^ 0xffff, m3) until m0 is
//! u64::MAX (which it answers too). Run `ipc_client` with arg = N.
//! Exit 0 on success; 1 ep_create, 2 receive/reply failed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys};
use userland::{fail, ipc, try_sys};

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let ep = try_sys!(sys::ep_create(), 1);
    println!("endpoint {ep}");
    match ipc::serve(ep) {
        Ok(n) => println!("ipc_server: served {n} calls on endpoint {ep}"),
        Err(e) => fail!(2, "{e}"),
    }
    Ok(())
}
