//! User space: processes, threads, fork, isolation, bad system calls, user
//! faults, memory syscalls, migration and IPC — each driven by a built-in
//! user program that checks its own results and exits 0.

use crate::mm::frame::free_frames;
use crate::task::process::{self, wait_from_kernel};
use crate::{ktest, percpu};
use abi::{cause, KILLED_BASE};

/// Runs program `name` with `arg` as a child of the kernel; returns its
/// exit status.
fn run(name: &str, arg: u64) -> i64 {
    let p = process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    wait_from_kernel(&p)
}

fn expect(name: &str, arg: u64, status: i64) {
    let s = run(name, arg);
    assert_eq!(s, status, "{name}({arg}) exited with {s:#x}, expected {status:#x}");
}

use super::settle;

ktest!(
    fn hello_runs_in_el0() {
        expect("hello", 0, 0);
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn spawn_200_processes_frees_every_frame() {
        expect("hello", 0, 0);
        settle();
        let base = free_frames();
        expect("spawner", 200, 0);
        settle();
        assert_eq!(free_frames(), base, "free frames after 200 processes vs before");
        assert_eq!(process::count(), 0, "every process reaped");
    }
);

ktest!(
    fn four_threads_on_four_cpus_count_exactly() {
        assert_eq!(percpu::online_count(), 4);
        expect("counters", 4, 0);
    }
);

ktest!(
    fn fork_copy_on_write() {
        settle();
        let base = free_frames();
        expect("forktest", 0, 0);
        settle();
        assert_eq!(free_frames(), base, "frames after fork + exit of parent and child");
    }
);

ktest!(
    fn processes_cannot_see_each_other() {
        let secret = process::spawn("secret", 300, 0).expect("spawn secret");
        // The scanner reads all of its own memory, never the secret, and is
        // killed when it touches a kernel address.
        expect("scanner", 1, KILLED_BASE + cause::KERNEL_ADDRESS);
        assert_eq!(wait_from_kernel(&secret), 0, "the secret holder kept its data");
    }
);

ktest!(
    fn bad_syscalls_return_errors_and_are_counted() {
        let before = crate::task::syscall::BAD_SYSCALLS.load(core::sync::atomic::Ordering::Relaxed);
        expect("badsys", 0, 0);
        let after = crate::task::syscall::BAD_SYSCALLS.load(core::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "the kernel counted the bad calls ({before} -> {after})");
    }
);

ktest!(
    fn user_faults_kill_only_the_faulting_process() {
        for (kind, c) in [
            (1, cause::UNMAPPED),
            (2, cause::PROTECTION),
            (3, cause::KERNEL_ADDRESS),
            (4, cause::ILLEGAL_INSTRUCTION),
            (5, cause::PROTECTION),
        ] {
            expect("fault", kind, KILLED_BASE + c);
        }
        expect("hello", 0, 0);
    }
);

ktest!(
    fn munmap_mprotect_madvise_semantics() {
        expect("mmtest", 0, 0);
    }
);

ktest!(
    fn thread_migrates_with_its_memory() {
        expect("migrate", 0, 0);
    }
);

ktest!(
    #[config(timeout_s = 180)]
    fn ipc_10000_calls_same_cpu() {
        expect("ipc_pair", 1, 0);
    }
);

ktest!(
    #[config(timeout_s = 180)]
    fn ipc_10000_calls_two_cpus() {
        expect("ipc_pair", 0, 0);
    }
);

ktest!(
    fn ipc_receiver_killed_fails_the_call() {
        expect("ipc_killed", 0, 0);
    }
);

ktest!(
    fn unknown_program_is_an_error() {
        assert_eq!(process::spawn("no-such-program", 0, 0).err(), Some(crate::error::SysError::NoEnt));
    }
);

ktest!(
    fn ipc_receiver_killed_mid_call_fails_the_call() {
        let holder = process::spawn("ipc_holder", 0, 0).expect("spawn ipc_holder");
        let ep = loop {
            if let Some(&ep) = crate::task::ipc::owned_by(holder.pid).first() {
                break ep;
            }
            crate::task::sched::sleep_ns(1_000_000);
        };
        let caller = process::spawn("ipc_caller", ep, 0).expect("spawn ipc_caller");
        // Let the holder take the call, then kill it while it holds it.
        crate::task::sched::sleep_ns(30_000_000);
        assert!(!caller.has_exited(), "the call must still be pending");
        crate::task::reaper::kill(&holder);
        assert_eq!(wait_from_kernel(&holder), KILLED_BASE + cause::KILLED);
        assert_eq!(wait_from_kernel(&caller), 0, "the caller's call must fail with EPIPE, not hang or get a reply");
    }
);
