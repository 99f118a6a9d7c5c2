//! joincode: a thread's exit code is a 32-bit value that join returns
//! zero-extended, so a negative code is never read as an errno. A thread
//! exits with -4 (which as -errno would be EINTR); the raw JOIN result must
//! be 0xffff_fffc and the library's join must give back -4. Also: joining
//! oneself is EDEADLK. Exit 0 on success; 1 setup, 2 the raw result,
//! 3 self-join.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::abi::nr;
use ulib::sys::{self, Fork};
use ulib::{println, raw, thread, Errno};
use userland::{check_eq, try_sys};

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let t = try_sys!(thread::spawn(|| -4), 1);
    let _ = sys::sleep_ms(5);
    // SAFETY: JOIN touches no user memory.
    let r = unsafe { raw::syscall1(nr::JOIN, t.tid()) };
    check_eq!(2, "raw JOIN result for exit code -4", 0xffff_fffc_u64, r);
    drop(t); // already joined by the raw call above
    let t = try_sys!(thread::spawn(|| i32::MIN), 1);
    check_eq!(2, "join of a thread that exited with i32::MIN", i32::MIN as i64, try_sys!(t.join(), 1) as i64);
    // The main thread is tid 1.
    match sys::join(1) {
        Err(Errno::EDEADLK) => {}
        r => userland::fail!(3, "join of oneself: expected EDEADLK, got {r:?}"),
    }
    // A forked child's only thread is its tid 1 too.
    if let Fork::Child = try_sys!(sys::fork(), 1) {
        sys::exit(if sys::join(1) == Err(Errno::EDEADLK) { 0 } else { 1 });
    }
    let (_, s) = try_sys!(sys::wait(None), 1);
    check_eq!(3, "the child's self-join", 0, s);
    println!("joincode: exit code -4 joined as 0xfffffffc, -4 in the library; self-join EDEADLK");
    Ok(())
}
