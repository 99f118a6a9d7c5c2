//! The flush strategies (`tlb.strategy`, docs/mechanisms.md §6–7) in the running
//! kernel: that a CPU a local or IPI flush did not reach never uses what it
//! cached once it runs the address space again, and that an adopter (the
//! asynchronous-job worker of `task::jobs`) is never left out; what each
//! strategy issues and sends; and an exit while CPUs hold the address
//! space lazily.
//!
//! QEMU keeps a vCPU's TLB entries of an ASID until that vCPU flushes or
//! changes ASID, and with lazy TLB an idle vCPU keeps its ASID: so a flush
//! that misses a CPU shows as a read of a revoked page there. Each "bug on"
//! test switches one mechanism off (`tlb.stale_mark`, `tlb.gen_check`,
//! `tlb.use_mm_mmget`) and requires that read to happen, which shows the
//! matching "never" test can fail.

use core::sync::atomic::Ordering;

use crate::ktest;
use crate::mm::phys::{verify_free_poison, POISON_VIOLATIONS};
use crate::mm::tlb::{Event, TlbCounts, TLB_STATS};
use crate::mm::user::LEAKED_MMS;
use crate::task::process::{self, wait_from_kernel};

use super::robust::{assert_back_to, baseline_after, jobs_end};

/// Runs program `name(arg)`: its exit status and the TLB counters over its
/// life (every job it started included).
fn run(name: &str, arg: u64) -> (i64, TlbCounts) {
    let before = TLB_STATS.total();
    let p = process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let status = wait_from_kernel(&p);
    jobs_end();
    let d = TLB_STATS.total().since(&before);
    log::info!(target: "ktest", "{name}({arg:#x}): status {status:#x}, {d}");
    (status, d)
}

/// The stale rounds a `stale_migrate` or `watch_revoke` status reports
/// (status 0: none; 2 | rounds << 8: some).
fn stale_rounds(name: &str, status: i64) -> u64 {
    match status {
        0 => 0,
        s if s & 0xff == 2 && s >> 8 > 0 => (s >> 8) as u64,
        s => panic!("{name}: status {s:#x} (setup error or wrong value; see the console)"),
    }
}

/// `stale_migrate` for `rounds` rounds: the rounds in which the thread read
/// its revoked page after coming back to CPU 1.
fn migrating_reader(rounds: u64, stop_at_first: bool) -> (u64, TlbCounts) {
    let (status, d) = run("stale_migrate", rounds | u64::from(stop_at_first) << 32);
    (stale_rounds("stale_migrate", status), d)
}

/// Each of `rounds` rounds revoked the page once on CPU 0 while CPU 1 held
/// it lazily, and CPU 1 caught up with a local ASID flush when the thread
/// came back: no broadcast op at all.
fn caught_up_every_round(rounds: u64, d: &TlbCounts) {
    assert!(d.event(Event::StaleFlush) >= rounds, "CPU 1 went back behind the generation {rounds} times: {d}");
    assert_eq!(d.broadcast(), 0, "a one-thread process under a local or IPI strategy: {d}");
    assert_eq!(d.event(Event::DecideBroadcast), 0, "{d}");
}

ktest!(
    #[config(cpus = 2, append = "tlb.strategy=local", timeout_s = 120)]
    fn local_migrating_thread_never_reads_its_revoked_page() {
        let (stale, d) = migrating_reader(200, false);
        assert_eq!(stale, 0, "the thread read its revoked page on CPU 1 after migrating back: {d}");
        assert!(d.event(Event::DecideLocal) >= 200, "the revokes flushed locally: {d}");
        caught_up_every_round(200, &d);
    }
);

// The same with the generation left alone by local flushes: CPU 1 is never
// found behind, and its TLB still maps the page.
ktest!(
    #[config(cpus = 2, append = "tlb.strategy=local tlb.stale_mark=off", timeout_s = 120)]
    fn local_migrating_thread_reads_its_revoked_page_without_stale_marks() {
        let (stale, d) = migrating_reader(20, false);
        log::info!(target: "ktest", "tlb.stale_mark=off: {stale} of 20 rounds read the revoked page");
        assert!(stale > 0, "with tlb.stale_mark=off no round read the revoked page: the test cannot fail: {d}");
        assert_eq!(d.event(Event::StaleFlush), 0, "no generation bumped, none to catch up with: {d}");
    }
);

ktest!(
    #[config(cpus = 2, append = "tlb.strategy=ipi", timeout_s = 120)]
    fn ipi_migrating_thread_never_reads_its_revoked_page() {
        let (stale, d) = migrating_reader(200, false);
        assert_eq!(stale, 0, "the thread read its revoked page on CPU 1 after migrating back: {d}");
        // CPU 1 was idle and lazy during each revoke: skipped, not sent an IPI.
        assert!(d.event(Event::LazySkip) >= 200, "{d}");
        caught_up_every_round(200, &d);
    }
);

// Under ipi the lazy CPU is skipped and must compare generations when the
// thread comes back; `tlb.gen_check=off` stops it from doing so.
ktest!(
    #[config(cpus = 2, append = "tlb.strategy=ipi tlb.gen_check=off", timeout_s = 120)]
    fn ipi_migrating_thread_reads_its_revoked_page_without_gen_check() {
        let (stale, d) = migrating_reader(20, false);
        log::info!(target: "ktest", "tlb.gen_check=off: {stale} of 20 rounds read the revoked page");
        assert!(stale > 0, "with tlb.gen_check=off no round read the revoked page: the test cannot fail: {d}");
        assert!(d.event(Event::LazySkip) >= 20, "{d}");
        assert_eq!(d.event(Event::StaleFlush), 0, "{d}");
    }
);

/// `watch_revoke` for `rounds` rounds: the rounds in which the worker read
/// the page after the owner's revoke had returned.
fn watching_worker(rounds: u64) -> (u64, TlbCounts) {
    let (status, d) = run("watch_revoke", rounds);
    (stale_rounds("watch_revoke", status), d)
}

ktest!(
    #[config(cpus = 2, append = "tlb.strategy=local", timeout_s = 120)]
    fn local_adopter_never_reads_a_revoked_page() {
        let base = baseline_after(|| {});
        let (stale, d) = watching_worker(50);
        assert_eq!(stale, 0, "the worker read the page after the owner revoked it: {d}");
        // The worker counted as a user: the owner was never alone, and each
        // revoke went to every CPU.
        assert!(d.event(Event::DecideBroadcast) >= 50, "{d}");
        assert_back_to(&base, format_args!("50 rounds of watch_revoke"));
    }
);

ktest!(
    #[config(cpus = 2, append = "tlb.strategy=ipi", timeout_s = 120)]
    fn ipi_adopter_never_reads_a_revoked_page() {
        let (stale, d) = watching_worker(50);
        assert_eq!(stale, 0, "the worker read the page after the owner revoked it: {d}");
        // The worker's CPU ran the address space: an IPI for each revoke.
        assert!(d.event(Event::IpiSent) >= 50 && d.event(Event::IpiReceived) >= 50, "{d}");
        assert_eq!(d.broadcast(), 0, "{d}");
    }
);

// Without mmget the owner believes itself alone and flushes only its own
// CPU: the worker on CPU 1 goes on reading the revoked page (seed 002).
ktest!(
    #[config(cpus = 2, append = "tlb.strategy=local tlb.use_mm_mmget=off", timeout_s = 120)]
    fn local_adopter_reads_a_revoked_page_without_mmget() {
        let (stale, d) = watching_worker(5);
        log::info!(target: "ktest", "tlb.use_mm_mmget=off: {stale} of 5 rounds' workers read the revoked page");
        assert!(stale > 0, "with tlb.use_mm_mmget=off no worker read the revoked page: the test cannot fail: {d}");
        assert!(d.event(Event::DecideLocal) >= 5, "the owner took itself for alone: {d}");
    }
);

ktest!(
    #[config(append = "tlb.strategy=local")]
    fn local_fork_and_child_writes_issue_no_broadcast_tlbi() {
        // The parent write-protects its 16 pages for the fork, the child writes
        // each (a copy-on-write break in its own address space): every flush is
        // for a one-thread address space on the CPU it runs on.
        let (status, d) = run("forktest", 0);
        assert_eq!(status, 0, "forktest");
        assert_eq!(d.broadcast(), 0, "broadcast TLBIs under tlb.strategy=local: {d}");
        assert_eq!(d.event(Event::DecideBroadcast), 0, "{d}");
        assert!(d.event(Event::DecideLocal) >= 17, "the fork's flush and 16 copy-on-write breaks: {d}");
    }
);

/// `ipi_count` with `spinners` threads on the other CPUs (the program
/// checks the counts per phase itself).
fn ipi_per_busy_cpu(spinners: u64) {
    let (status, d) = run("ipi_count", spinners);
    assert_eq!(status, 0, "ipi_count({spinners}): 2: IPIs while spinning, 3: while lazy, 4: never lazy: {d}");
    assert_eq!(d.broadcast(), 0, "{d}");
    assert_eq!(d.event(Event::DecideBroadcast) + d.event(Event::DecideLocal), 0, "{d}");
    assert_eq!(d.event(Event::IpiTimeout), 0, "{d}");
}

ktest!(
    #[config(cpus = 2, append = "tlb.strategy=ipi", timeout_s = 60)]
    fn ipi_goes_to_the_busy_cpu_and_skips_it_lazy() {
        ipi_per_busy_cpu(1);
    }
);

ktest!(
    #[config(append = "tlb.strategy=ipi", timeout_s = 60)]
    fn ipi_goes_to_each_of_3_busy_cpus_and_skips_them_lazy() {
        ipi_per_busy_cpu(3);
    }
);

/// `lazy_exit` on every CPU: CPUs 1.. each ran a thread that moved to CPU 0
/// and exited there, so at the exit they hold the address space lazily.
fn exit_with_lazy_holders() {
    let base = baseline_after(|| {});
    let (leaked, poisoned) = (LEAKED_MMS.load(Ordering::Relaxed), POISON_VIOLATIONS.load(Ordering::Relaxed));
    let (status, d) = run("lazy_exit", 16);
    assert_eq!(status, 0, "lazy_exit");
    let lazy = crate::percpu::online_count() as u64 - 1;
    // The teardown found only lazy holders: each left (an IPI each) before
    // anything was freed; otherwise it would have leaked the address space.
    assert_eq!(d.event(Event::LazyLeave), lazy, "the CPUs the threads left: {d}");
    assert!(d.event(Event::IpiSent) >= lazy, "{d}");
    assert_eq!(LEAKED_MMS.load(Ordering::Relaxed), leaked, "the teardown found a CPU still running it");
    assert_eq!(d.event(Event::ExitElided), 1, "{d}");
    assert_eq!(d.broadcast(), 0, "{d}");
    assert_eq!(verify_free_poison(), 0, "a freed frame was written");
    assert_eq!(POISON_VIOLATIONS.load(Ordering::Relaxed), poisoned);
    assert_back_to(&base, format_args!("lazy_exit"));
}

ktest!(
    #[config(append = "tlb.strategy=ipi")]
    fn ipi_exit_makes_lazy_cpus_leave_first() {
        exit_with_lazy_holders();
    }
);

ktest!(
    #[config(append = "tlb.strategy=local")]
    fn local_exit_makes_lazy_cpus_leave_first() {
        exit_with_lazy_holders();
    }
);
