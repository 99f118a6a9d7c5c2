//! ASID generation rollover on real processes (mechanisms.md §1). QEMU
//! flushes its TLB whenever the ASID changes, so stale-entry bugs do not
//! show here (the host model checks those); these tests check the
//! allocator's behaviour under a real scheduler: tags stay private, the
//! running task keeps its ASID, pinned ASIDs survive, flush counts stay
//! bounded.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use crate::mm::asid::AsidStats;
use crate::mm::user::ASIDS;
use crate::task::process::{self, spawn_on, wait_from_kernel, Mm, Process};
use crate::task::sched;
use crate::{ktest, percpu};

fn stats() -> AsidStats {
    ASIDS.get().unwrap().stats()
}

/// Runs `total` short `asidtag` processes, at most `parallel` at once, on
/// CPUs `cpus`; checks each exited 0.
fn churn(total: usize, parallel: usize, cpus: &[usize], iterations: u64) {
    let mut running: VecDeque<Arc<Process>> = VecDeque::new();
    for i in 0..total {
        if running.len() >= parallel {
            let p = running.pop_front().unwrap();
            assert_eq!(wait_from_kernel(&p), 0, "asidtag pid {} read another process's tag", p.pid);
        }
        let cpu = cpus[i % cpus.len()];
        let arg = iterations | (1 << 16) | ((cpu as u64) << 17);
        running.push_back(spawn_on("asidtag", arg, 0, Some(cpu)).expect("spawn asidtag"));
    }
    for p in running {
        assert_eq!(wait_from_kernel(&p), 0, "asidtag pid {} read another process's tag", p.pid);
    }
}

ktest!(#[config(append = "asid_bits=3", timeout_s = 300)] fn thousand_processes_roll_over_3_bit_asids() {
    assert_eq!(ASIDS.get().unwrap().bits(), 3);
    let before = stats();
    churn(1000, 12, &[0, 1, 2, 3], 10);
    let after = stats();
    let rollovers = after.rollovers - before.rollovers;
    let flushes = after.rollover_flushes - before.rollover_flushes;
    log::info!(target: "ktest", "1000 processes, asid_bits=3: {after:?}");
    assert!(rollovers >= 100, "expected at least 100 rollovers, saw {rollovers}");
    let ncpus = percpu::online_count() as u64;
    assert!(flushes <= rollovers * ncpus, "{flushes} local flushes for {rollovers} rollovers on {ncpus} CPUs");
    assert!(after.fast_switches > before.fast_switches, "the fast path was used");
});

ktest!(#[config(append = "asid_bits=3", timeout_s = 300)] fn running_process_keeps_its_asid_across_rollovers() {
    // The long-lived process sleeps and wakes on CPU 3, alone; churn runs on
    // CPUs 0-2, forcing rollovers while it lives.
    let spinner = spawn_on("spin", 3 | (20_000 << 8), 0, Some(3)).expect("spawn spin");
    let mut first = None;
    while first.is_none() {
        first = spinner.mm.ctx.asid();
        sched::sleep_ns(1_000_000);
    }
    let before = stats();
    let mut seen = alloc::vec::Vec::new();
    for _ in 0..10 {
        churn(24, 6, &[0, 1, 2], 5);
        if let Some(a) = spinner.mm.ctx.asid() {
            if !seen.contains(&a) {
                seen.push(a);
            }
        }
    }
    let rollovers = stats().rollovers - before.rollovers;
    assert!(!spinner.has_exited(), "the spinner must outlive the churn (make it run longer)");
    assert!(rollovers >= 10, "expected rollovers during its life, saw {rollovers}");
    assert_eq!(seen, [first.unwrap()], "ASIDs of the running process over {rollovers} rollovers");
    process::Process::kill(&spinner, 0);
    wait_from_kernel(&spinner);
});

ktest!(#[config(append = "asid_bits=3", timeout_s = 300)] fn pinned_asid_survives_50_rollovers() {
    let mm: Arc<Mm> = Mm::new().expect("mm");
    let asid = mm.pin_asid().expect("pin");
    assert_eq!(stats().pinned, 1);
    let before = stats();
    while stats().rollovers - before.rollovers < 50 {
        churn(16, 8, &[0, 1, 2, 3], 2);
    }
    assert_eq!(mm.ctx.asid(), Some(asid), "pinned ASID after 50 rollovers");
    assert!(mm.ctx.is_pinned());
    mm.unpin_asid();
    assert_eq!(stats().pinned, 0);
    // The pinned mm never ran: dropping it tears it down (nothing loaded
    // it, so nothing is flushed).
    drop(mm);
});
