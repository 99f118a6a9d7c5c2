//! blocked: threads that block for ever, each in a different call (futex
//! wait, wait for a child, join, sleep of u64::MAX ns, ep_recv), and a main
//! thread that sleeps for ever too. Kill tests kill it and check that every
//! thread's kernel stack comes back. The child it waits for blocks in
//! ep_recv on an endpoint of this process, so it ends (EPIPE) when this
//! process does. Never exits by itself; 1 setup failed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::AtomicU32;

use ulib::println;
use ulib::sys::{self, Fork};
use ulib::thread::{self, JoinHandle};
use userland::try_sys;

static NEVER: AtomicU32 = AtomicU32::new(0);

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let ep = try_sys!(sys::ep_create(), 1);
    let child = match try_sys!(sys::fork(), 1) {
        Fork::Child => {
            let _ = sys::ep_recv(ep);
            sys::exit(0)
        }
        Fork::Parent(pid) => pid,
    };
    let futex = try_sys!(thread::spawn(|| sys::futex_wait(&NEVER, 0, 0).map_or(1, |_| 0)), 1);
    let tid = futex.tid();
    let handles: [JoinHandle; 4] = [
        futex,
        try_sys!(thread::spawn(move || sys::wait(Some(child)).map_or(1, |_| 0)), 1),
        try_sys!(thread::spawn(move || sys::join(tid).map_or(1, |_| 0)), 1),
        try_sys!(thread::spawn(|| sys::sleep_ns(u64::MAX).map_or(1, |_| 0)), 1),
    ];
    let own = try_sys!(sys::ep_create(), 1);
    let recv = try_sys!(thread::spawn(move || sys::ep_recv(own).map_or(1, |_| 0)), 1);
    println!("blocked: 5 threads and a child blocked (child pid {child})");
    let _ = sys::sleep_ns(u64::MAX);
    drop((handles, recv));
    Ok(())
}
