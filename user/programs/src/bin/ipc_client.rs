//! ipc_client: arg = endpoint id (printed by `ipc_server`). Makes 10 000
//! calls with (i, 3i, i ^ 0x5a5a, !i), checks every reply (no loss,
//! reordering or corruption), then sends the stop message. Waits up to a
//! second for the endpoint to exist. Exit 0 on success; 1 a call failed
//! or a reply was wrong.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys, Errno};
use userland::fail;
use userland::ipc::{self, IpcError, CALLS};

/// How long to wait for the server to create the endpoint.
const WAIT_FOR_SERVER_MS: u64 = 1000;

ulib::entry!(run);

fn run(ep: u64) -> Result<(), i32> {
    // Call 0 until the server exists (it may start after us).
    for _ in 0..WAIT_FOR_SERVER_MS {
        match ipc::call(ep, 0) {
            Err(IpcError::Call(_, Errno::ENOENT)) => {
                let _ = sys::sleep_ms(1);
            }
            _ => break,
        }
    }
    if let Err(e) = ipc::client(ep, CALLS) {
        fail!(1, "{e}");
    }
    println!("ipc_client: {CALLS} calls on endpoint {ep} answered in order");
    Ok(())
}
