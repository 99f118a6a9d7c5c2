//! ipc_holder: creates an endpoint, takes one call on it and never replies:
//! it sleeps until it is killed (the kernel test kills it mid-call).
//! Exit 1 on a setup error; otherwise never exits by itself.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::sys;

ulib::entry!(run);

fn run(_arg: u64) -> i32 {
    let Ok(ep) = sys::ep_create() else { return 1 };
    if sys::ep_recv(ep).is_err() {
        return 1;
    }
    loop {
        let _ = sys::sleep_ms(1000);
    }
}
