//! waiters: two waiters for one event must both return. arg = rounds
//! (0: 50). Each round: a child exits while one thread waits for it by pid
//! and another for any child, the two pinned to different CPUs: exactly one
//! gets the child, the other ECHILD. Then a thread exits while two threads
//! join it: one gets its exit code, the other ESRCH. Exit 0 on success;
//! 1 setup, 2 both or neither got the child, 3 wrong errors, 4 join
//! results. A waiter that never returns hangs (the test's time limit).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use ulib::sys::{self, Fork};
use ulib::{println, thread, Errno};
use userland::{arg_or, ensure, fail, try_sys};

static TARGET_TID: AtomicU64 = AtomicU64::new(0);

/// A wait or join result as a thread exit code: the value (small), or
/// bit 31 | errno.
fn word(r: Result<u64, Errno>) -> i32 {
    match r {
        Ok(v) => v as i32,
        Err(e) => err(e) as i32,
    }
}

const fn err(e: Errno) -> u64 {
    1 << 31 | e.0 as u64
}

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let rounds = arg_or(arg, 50);
    let cpus = sys::stat(ulib::abi::stats::CPUS).unwrap_or(1).max(1);
    for round in 0..rounds {
        let child = match try_sys!(sys::fork(), 1) {
            Fork::Child => {
                let _ = sys::sleep_ms(5);
                sys::exit(7)
            }
            Fork::Parent(pid) => pid,
        };
        let (c1, c2) = (round % cpus, (round + 1) % cpus);
        let by_pid = try_sys!(
            thread::spawn(move || {
                let _ = sys::set_affinity(Some(c1));
                word(sys::wait(Some(child)).map(|(p, _)| p))
            }),
            1
        );
        let any = try_sys!(
            thread::spawn(move || {
                let _ = sys::set_affinity(Some(c2));
                word(sys::wait(None).map(|(p, _)| p))
            }),
            1
        );
        // Thread exit codes are 32-bit: the low half carries the pid (small)
        // or errno with bit 31 set.
        let a = try_sys!(by_pid.join(), 1) as u32 as u64;
        let b = try_sys!(any.join(), 1) as u32 as u64;
        let echild = err(Errno::ECHILD);
        let got = [a, b].iter().filter(|&&x| x == child).count();
        ensure!(got == 1, 2, "round {round}: child {child}; waiters got {a:#x} and {b:#x}");
        ensure!(a == echild || b == echild, 3, "round {round}: the other waiter got {a:#x}/{b:#x}, not ECHILD");

        let target = try_sys!(
            thread::spawn(|| {
                let _ = sys::sleep_ms(5);
                42
            }),
            1
        );
        TARGET_TID.store(target.tid(), Ordering::Release);
        let joiners = [c1, c2].map(|c| {
            thread::spawn(move || {
                let _ = sys::set_affinity(Some(c));
                word(sys::join(TARGET_TID.load(Ordering::Acquire)).map(|v| v as u32 as u64))
            })
        });
        let mut results = [0u64; 2];
        for (r, j) in results.iter_mut().zip(joiners) {
            let Ok(j) = j else { fail!(1, "thread_create failed") };
            *r = try_sys!(j.join(), 1) as u32 as u64;
        }
        // The target was joined by one of them: its stack is ours to free.
        drop(target);
        let esrch = err(Errno::ESRCH);
        ensure!(
            results.contains(&42) && results.contains(&esrch),
            4,
            "round {round}: joiners got {:#x} and {:#x}, expected 42 and ESRCH",
            results[0],
            results[1]
        );
    }
    println!("waiters: {rounds} rounds, one waiter got each event, the other an error");
    Ok(())
}
