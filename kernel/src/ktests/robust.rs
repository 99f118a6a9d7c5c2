//! Robustness: process lifecycles, kills of blocked threads, lost wake-ups,
//! two waiters for one event, sleeps that overflow, out-of-memory and
//! limits, asynchronous jobs. Each test ends with every kernel resource
//! (`task::resources`) back at its baseline, exactly.

use alloc::sync::Arc;

use crate::ktest;
use crate::task::process::{self, wait_from_kernel, wait_from_kernel_for, Process};
use crate::task::{reaper, resource_leaks, resources, sched};
use abi::{cause, resources as r, KILLED_BASE};

use super::settle;

pub(super) type Resources = [u64; r::COUNT];

/// The heap's blocks per size class at the last baseline (for messages).
static BASE_BLOCKS: spin::Mutex<[usize; crate::mm::heap::CLASSES]> = spin::Mutex::new([0; crate::mm::heap::CLASSES]);

/// Waits (up to 2 s) until every resource level is back at `base`; fails
/// the test naming the ones that are not. (`what` is formatted only on
/// failure: a string allocated for it would itself count as heap in use.)
pub(super) fn assert_back_to(base: &Resources, what: core::fmt::Arguments) {
    let blocks = *BASE_BLOCKS.lock();
    let mut now = resources();
    for _ in 0..100 {
        if resource_leaks(base, &now).is_empty() {
            return;
        }
        settle();
        now = resources();
    }
    let after = crate::mm::heap::HEAP.blocks();
    let classes: alloc::vec::Vec<_> =
        (0..blocks.len()).filter(|&c| blocks[c] != after[c]).map(|c| (1usize << c, blocks[c], after[c])).collect();
    panic!("{what}: not back to baseline: {} (heap blocks (size, then, now): {classes:?})", resource_leaks(base, &now));
}

/// The resources after a first run of `warm_up` (so that structures that
/// grow once, like a CPU's queues, are grown), settled.
pub(super) fn baseline_after(warm_up: impl FnOnce()) -> Resources {
    warm_up();
    settle();
    let mut prev = resources();
    loop {
        settle();
        let now = resources();
        if now == prev {
            *BASE_BLOCKS.lock() = crate::mm::heap::HEAP.blocks();
            return now;
        }
        prev = now;
    }
}

fn run(name: &str, arg: u64) -> i64 {
    let p = process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    wait_from_kernel(&p)
}

/// Runs `name(arg)`; fails if it does not exit with `status` within `ms`.
fn expect_within(name: &str, arg: u64, status: i64, ms: u64) {
    let p = process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    match wait_from_kernel_for(&p, ms) {
        Some(s) => assert_eq!(s, status, "{name}({arg:#x}) exited with {s:#x}, expected {status:#x}"),
        None => panic!("{name}({arg:#x}) did not exit within {ms} ms: a waiter never woke"),
    }
}

ktest!(
    #[config(timeout_s = 120)]
    fn process_exits_leak_no_kernel_heap() {
        // fork + exit + wait, spawn + wait, and exits with 20 unjoined threads:
        // each leaked its process (about 784 bytes of heap, more with threads)
        // while the syscall path kept a reference across EXIT.
        let base = baseline_after(|| assert_eq!(run("forkexit", 5), 0));
        for (mode, n) in [(0u64, 300u64), (1, 100), (2, 30)] {
            assert_eq!(run("forkexit", mode << 32 | n), 0, "forkexit mode {mode}");
            assert_back_to(&base, format_args!("{n} lifecycles of forkexit mode {mode}"));
        }
    }
);

/// Spawns `blocked`, lets its threads block, kills it, and checks that
/// everything (the threads' kernel stacks above all) came back.
fn kill_blocked_process() {
    let base = baseline_after(|| {});
    let p = process::spawn("blocked", 0, 0).expect("spawn blocked");
    sched::sleep_ns(100_000_000);
    assert!(!p.has_exited(), "blocked exits only when killed");
    let tasks_running = resources()[r::TASKS];
    assert!(tasks_running >= base[r::TASKS] + 7, "blocked runs 6 threads and a child: tasks {tasks_running}");
    reaper::kill(&p);
    assert_eq!(wait_from_kernel(&p), KILLED_BASE + cause::KILLED);
    drop(p);
    assert_back_to(
        &base,
        format_args!("killing a process whose threads block in futex_wait, wait, join, sleep and ep_recv"),
    );
}

ktest!(
    fn killing_blocked_threads_frees_their_stacks() {
        kill_blocked_process();
    }
);

ktest!(
    #[config(cpu = "max,cntfrq=1000000000")]
    fn sleep_forever_with_a_1ghz_counter() {
        // u64::MAX ns at 1 GHz is u64::MAX ticks: the deadline must saturate,
        // not overflow (a panic with overflow checks on).
        assert_eq!(platform::timer::frequency(), 1_000_000_000, "QEMU's cntfrq property");
        kill_blocked_process();
    }
);

ktest!(
    fn killed_receiver_does_not_take_the_next_wakeup() {
        let base = baseline_after(|| {});
        expect_within("ipc_wake", 10, 0, 20_000);
        assert_back_to(&base, format_args!("ipc_wake"));
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn two_waiters_for_one_child_or_thread_both_return() {
        let base = baseline_after(|| {});
        expect_within("waiters", 40, 0, 60_000);
        assert_back_to(&base, format_args!("waiters"));
    }
);

ktest!(
    fn join_returns_exit_codes_as_32_bit_values() {
        expect_within("joincode", 0, 0, 10_000);
    }
);

/// Runs `oom` in `mode` and checks everything came back.
fn oom(mode: u64) {
    let base = baseline_after(|| {});
    expect_within("oom", mode, 0, 100_000);
    assert_back_to(&base, format_args!("oom mode {mode}"));
}

ktest!(
    #[config(mem_mb = 256, timeout_s = 120)]
    fn touching_until_out_of_memory_kills_the_process() {
        oom(0);
    }
);

ktest!(
    #[config(mem_mb = 256, timeout_s = 180)]
    fn fork_failing_at_every_point_leaves_nothing() {
        oom(1);
    }
);

ktest!(
    #[config(mem_mb = 256, timeout_s = 180)]
    fn spawn_failing_at_every_point_leaves_nothing() {
        oom(2);
    }
);

ktest!(
    fn endpoint_limit_is_enomem() {
        oom(3);
    }
);

ktest!(
    #[config(mem_mb = 256, timeout_s = 120)]
    fn thread_limit_is_eagain_and_no_stack_is_enomem() {
        oom(4);
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn mapping_limit_is_enomem() {
        oom(5);
    }
);

ktest!(
    #[config(append = "kheap.reserve_kb=28672", timeout_s = 120)]
    fn heap_at_its_reserve_refuses_calls_not_the_kernel() {
        oom(6);
    }
);

ktest!(
    fn spawn_of_a_bad_program_leaves_nothing() {
        let base = baseline_after(|| {});
        assert_eq!(process::spawn("no-such-program", 0, 0).err(), Some(crate::error::SysError::NoEnt));
        assert_back_to(&base, format_args!("spawn of an unknown program"));
    }
);

ktest!(
    fn a_second_kill_queues_nothing() {
        let base = baseline_after(|| {});
        let p: Arc<Process> = process::spawn("blocked", 0, 0).expect("spawn blocked");
        sched::sleep_ns(50_000_000);
        let reaped = reaper::REAPED.load(core::sync::atomic::Ordering::Relaxed);
        for _ in 0..1000 {
            reaper::kill(&p);
        }
        assert_eq!(wait_from_kernel(&p), KILLED_BASE + cause::KILLED);
        drop(p);
        assert_back_to(&base, format_args!("1000 kills of one process"));
        assert_eq!(reaper::REAPED.load(core::sync::atomic::Ordering::Relaxed), reaped + 1, "reaped once");
    }
);

ktest!(
    fn kill_reaches_only_descendants() {
        expect_within("killperm", 0, 0, 20_000);
    }
);

/// Waits (up to 5 s) until no asynchronous job (`task::jobs`) runs.
pub(super) fn jobs_end() {
    use crate::task::jobs::RUNNING_JOBS;
    for _ in 0..500 {
        if RUNNING_JOBS.load(core::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        sched::sleep_ns(10_000_000);
    }
    panic!("{} asynchronous jobs still running 5 s later", RUNNING_JOBS.load(core::sync::atomic::Ordering::Acquire));
}

ktest!(
    #[config(timeout_s = 120)]
    fn copy_jobs_work_fail_cleanly_and_leak_nothing() {
        // Copies, a watch, faults, bad arguments, the limit, and processes that
        // exit or are killed with jobs running (`copyjob` checks each itself).
        let base = baseline_after(|| {});
        let leaked = crate::mm::user::LEAKED_MMS.load(core::sync::atomic::Ordering::Relaxed);
        expect_within("copyjob", 0, 0, 60_000);
        jobs_end();
        let now = crate::mm::user::LEAKED_MMS.load(core::sync::atomic::Ordering::Relaxed);
        assert_eq!(now, leaked, "an address space was still loaded at its teardown");
        assert_back_to(&base, format_args!("copyjob"));
    }
);
