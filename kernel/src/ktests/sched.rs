//! The scheduler with kernel threads: spreading, sleeping, affinity.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::cpu::cpu_id;
use crate::ktest;
use crate::task::{sched, Task};
use platform::timer;

static DONE: AtomicUsize = AtomicUsize::new(0);
static SEEN_CPUS: AtomicU64 = AtomicU64::new(0);

fn worker(cpu: usize) {
    sched::set_affinity(Some(cpu));
    SEEN_CPUS.fetch_or(1 << cpu_id(), Ordering::AcqRel);
    assert_eq!(cpu_id(), cpu, "pinned thread runs on its CPU");
    sched::sleep_ns(5_000_000);
    DONE.fetch_add(1, Ordering::AcqRel);
}

fn wait_for(n: usize) {
    let deadline = timer::now() + 5 * timer::frequency();
    while DONE.load(Ordering::Acquire) < n {
        assert!(timer::now() < deadline, "only {} of {n} threads finished", DONE.load(Ordering::Acquire));
        sched::sleep_ns(1_000_000);
    }
}

ktest!(
    fn kernel_threads_pinned_to_each_cpu() {
        DONE.store(0, Ordering::Release);
        SEEN_CPUS.store(0, Ordering::Release);
        let n = crate::percpu::online_count();
        for c in 0..n {
            sched::spawn(Task::new_kernel("worker", worker, c).expect("task"));
        }
        wait_for(n);
        assert_eq!(SEEN_CPUS.load(Ordering::Acquire), (1 << n) - 1);
    }
);

ktest!(
    fn sleep_lasts_at_least_its_duration() {
        let t0 = timer::now();
        sched::sleep_ns(30_000_000);
        let ns = timer::ticks_to_ns(timer::now() - t0);
        assert!(ns >= 30_000_000, "slept {ns} ns");
        assert!(ns < 2_000_000_000, "slept far too long: {ns} ns");
    }
);

fn spinner(_: usize) {
    let until = timer::now() + timer::frequency() / 50;
    while timer::now() < until {
        sched::yield_now();
    }
    DONE.fetch_add(1, Ordering::AcqRel);
}

ktest!(
    fn unpinned_threads_spread_over_cpus() {
        DONE.store(0, Ordering::Release);
        let steals_before: u64 = (0..4).map(sched::steals).sum();
        let switches_before: u64 = (0..4).map(sched::switches).sum();
        let tasks: alloc::vec::Vec<Arc<Task>> = (0..8).map(|_| Task::new_kernel("spin", spinner, 0).unwrap()).collect();
        for t in tasks {
            sched::spawn(t);
        }
        wait_for(8);
        let moved: u64 = (0..4).map(sched::steals).sum::<u64>() - steals_before;
        let switched: u64 = (0..4).map(sched::switches).sum::<u64>() - switches_before;
        assert!(switched >= 8, "context switches: {switched}");
        log::info!(target: "ktest", "8 spinners: {switched} switches, {moved} steals");
    }
);
