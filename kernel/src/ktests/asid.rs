//! ASID generation rollover on real processes (docs/mechanisms.md §1). QEMU
//! flushes its TLB whenever the ASID changes, so stale-entry bugs do not
//! show here (the host model checks those); these tests check the
//! allocator's behaviour under a real scheduler: tags stay private, no ASID
//! is handed out twice in one generation nor while its holder runs or is
//! pinned, the running task keeps its ASID, pinned ASIDs survive, flush
//! counts stay bounded.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::mm::asid::AsidStats;
use crate::mm::user::ASIDS;
use crate::task::process::{self, spawn_on, wait_from_kernel, Mm, Process};
use crate::task::sched;
use crate::{ktest, percpu};

fn stats() -> AsidStats {
    ASIDS.get().unwrap().stats()
}

/// An `asidtag` exit status: 0, or a failure naming what it can and cannot
/// show. QEMU drops its TLB whenever the ASID changes (the kernel parks
/// TTBR0 on ASID 0 between user tasks), so a stale entry of another ASID
/// never reaches this tag check; the host model's ASID checks do
/// (`kernel/model/src/asid_checks.rs`: `skipped_rollover_flush_is_caught`,
/// `ignored_reserved_asid_is_caught`, the exhaustive and random walks).
fn assert_tag_private(p: &Arc<Process>) {
    let s = wait_from_kernel(p);
    assert_eq!(
        s, 0,
        "asidtag pid {} read another process's tag (not an ASID bug under QEMU, which flushes on every ASID \
         change: a shared frame or a bad copy; the model's asid_checks cover stale ASIDs)",
        p.pid
    );
}

/// Runs `total` short `asidtag` processes, at most `parallel` at once, on
/// CPUs `cpus`; checks each exited 0. Returns the generation | ASID id each
/// one ended with.
fn churn(total: usize, parallel: usize, cpus: &[usize], iterations: u64) -> Vec<u64> {
    let mut running: VecDeque<Arc<Process>> = VecDeque::new();
    let mut ids = Vec::with_capacity(total);
    for i in 0..total {
        if running.len() >= parallel {
            let p = running.pop_front().unwrap();
            assert_tag_private(&p);
            ids.push(p.mm.ctx.id());
        }
        let cpu = cpus[i % cpus.len()];
        let arg = iterations | (1 << 16) | ((cpu as u64) << 17);
        running.push_back(spawn_on("asidtag", arg, 0, Some(cpu)).expect("spawn asidtag"));
    }
    for p in running {
        assert_tag_private(&p);
        ids.push(p.mm.ctx.id());
    }
    ids
}

/// What the kernel can check of ASID privacy itself (allocator invariant 1,
/// `mm/asid.rs`): every process that ran got an ASID, and no two got the same
/// ASID in one generation, so no two ever shared a TLB tag. Returns the
/// generations the ids span.
fn assert_ids_private(ids: &[u64], bits: u32) -> usize {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    for &id in &sorted {
        let asid = id & 0xffff;
        assert!(id != 0 && asid != 0 && asid < 1 << bits, "a process ran with id {id:#x} ({bits}-bit ASIDs)");
    }
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        panic!(
            "two processes got generation | ASID {:#x}: the allocator handed an ASID out twice in one generation \
             (the host model's asid_checks show what a shared tag does to the TLB)",
            w[0]
        );
    }
    sorted.dedup_by_key(|id| *id >> 16);
    sorted.len()
}

ktest!(
    #[config(append = "asid_bits=3", timeout_s = 300)]
    fn thousand_processes_roll_over_3_bit_asids() {
        assert_eq!(ASIDS.get().unwrap().bits(), 3);
        let before = stats();
        let ids = churn(1000, 12, &[0, 1, 2, 3], 10);
        let after = stats();
        let rollovers = after.rollovers - before.rollovers;
        let flushes = after.rollover_flushes - before.rollover_flushes;
        log::info!(target: "ktest", "1000 processes, asid_bits=3: {after:?}");
        let generations = assert_ids_private(&ids, 3);
        assert!(rollovers >= 100, "expected at least 100 rollovers, saw {rollovers}");
        // 7 usable ASIDs: 1000 distinct ids need at least 143 generations.
        assert!(generations >= 1000usize.div_ceil(7), "1000 processes' ids span only {generations} generations");
        assert!(generations as u64 <= rollovers + 1, "{generations} generations after {rollovers} rollovers");
        assert!(after.allocations - before.allocations >= 1000, "each process took a fresh ASID: {after:?}");
        let ncpus = percpu::online_count() as u64;
        assert!(flushes <= rollovers * ncpus, "{flushes} local flushes for {rollovers} rollovers on {ncpus} CPUs");
        assert!(after.fast_switches > before.fast_switches, "the fast path was used");
    }
);

ktest!(
    #[config(append = "asid_bits=3", timeout_s = 300)]
    fn running_process_keeps_its_asid_across_rollovers() {
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
            let ids = churn(24, 6, &[0, 1, 2], 5);
            assert_ids_private(&ids, 3);
            // CPU 3 runs only the spinner, so every rollover reserves its ASID:
            // no other process may get it while it lives (allocator invariant 3;
            // the model's `ignored_reserved_asid_is_caught` shows the TLB damage).
            if let Some(p) = ids.iter().find(|&&id| id & 0xffff == first.unwrap() as u64) {
                panic!("a churn process got id {p:#x}, the running spinner's ASID {}", first.unwrap());
            }
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
    }
);

ktest!(
    #[config(append = "asid_bits=3", timeout_s = 300)]
    fn pinned_asid_survives_50_rollovers() {
        let mm: Arc<Mm> = Mm::new().expect("mm");
        let asid = mm.pin_asid().expect("pin");
        assert_eq!(stats().pinned, 1);
        let before = stats();
        while stats().rollovers - before.rollovers < 50 {
            let ids = churn(16, 8, &[0, 1, 2, 3], 2);
            assert_ids_private(&ids, 3);
            if let Some(p) = ids.iter().find(|&&id| id & 0xffff == asid as u64) {
                panic!("a process got id {p:#x}, the pinned ASID {asid}");
            }
        }
        assert_eq!(mm.ctx.asid(), Some(asid), "pinned ASID after 50 rollovers");
        assert!(mm.ctx.is_pinned());
        mm.unpin_asid();
        assert_eq!(stats().pinned, 0);
        // The pinned mm never ran: dropping it tears it down (nothing loaded
        // it, so nothing is flushed).
        drop(mm);
    }
);
