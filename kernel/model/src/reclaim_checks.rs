//! Model checks of reclaim (docs/mechanisms.md §8) in the kernel's TLB protocol
//! (`zap_world` with a reclaimer, `Script::Reclaim`): a kernel thread runs
//! one batch of the kernel's `space::reclaim` over pages of `A` (each
//! page's leaf made a swap entry by a `Call::Reclaim` operation, its TLBI
//! issued without a DSB; then one DSB on the issuing CPU, the devices'
//! acknowledgements, the pages written to swap and freed) while `A`'s
//! threads read, write and fault pages back in from swap and `B` reuses
//! the freed frames; and calls that change entries race the batch (each
//! flushes the ASID first while a batch is pending on the mm:
//! `flush_tlb_batched_pending`). Then: the batch's DSB run on another CPU
//! (`reclaim.dsb=remote`), the calls ignoring a pending batch
//! (`Bugs::no_batched_pending`), and a device told late
//! (`mmu.notifier=late`), each caught.

use super::mem::FrameUse;
use super::violation::{DevUse, Violation};
use super::zap_checks::*;
use super::zap_world::{Checks, Config, Script, Speculation, World};
use kernel::mm::space::Strategy;
use kernel::mm::tlb::Event;

/// The reclaimer (cpu0) takes pages `lo..hi` of A in one batch while A's
/// thread on cpu1 reads and writes (one fault between them: a page read
/// back from swap), with a swap slot per page; 2 CPUs and scheduled
/// speculation, or 3 and eager.
fn reclaim(lo: u64, hi: u64, ncpus: usize) -> Config {
    let mut cfg = system(&[vec![Script::Reclaim { lo, hi }], vec![]], ncpus);
    cfg.writes = true;
    cfg.faults = 1;
    cfg.swap_slots = (hi - lo) as usize;
    cfg
}

/// The reclaimer ran batches that took pages, and pages came back.
fn assert_reclaimed(what: &str, w: &World) {
    let c = w.coverage();
    let ran = c.reclaim_unmaps.get() > 0 && c.reclaim_batches.get() > 0 && c.swap_ins.get() > 0;
    assert!(ran, "{what}: expected pages reclaimed and read back, {c:?}");
    assert!(c.reuses.get() > 0, "{what}: expected B to reuse the freed frames, {c:?}");
    assert!(events(w, Event::ReclaimBatch) > 0, "{what}: expected batches completed by their DSB");
}

// Bound: pages 2 and 3 of A reclaimed against a reader and writer that
// faults once; B faults pages 1 and 6 in from the freed frames. 2 CPUs
// with scheduled speculation, 3 with eager. (The batch's TLBIs are
// broadcast whatever the strategy.) Then against the thread's exit: the
// last reference, the thread's or the batch's, tears A down.
#[test]
fn reclaim_leaves_no_stale_translation() {
    for cfg in [reclaim(2, 4, 2), reclaim(2, 4, 3)] {
        let what = strategy_name("reclaim 2..4", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert_reclaimed(&what, &w);
    }
    let mut cfg = reclaim(2, 4, 2);
    cfg.scripts[1] = vec![Script::Exit];
    cfg.faults = 0;
    let (_, w) = explore_clean("reclaim 2..4 against an exit", &cfg);
    let c = w.coverage();
    assert!(c.reclaim_unmaps.get() > 0 && events(&w, Event::ExitElided) > 0, "expected both to run, {c:?}");
}

// Bound: the reclaimer takes page 2 while A's thread on cpu1, which reads
// and writes pages 2, 3 and 4, calls mprotect 2..4 (read-only), munmap
// 2..4, madvise 2..4, mmap 2..4 with FIXED, or fork. Each finds the batch
// pending (its TLBI issued on cpu0, not completed) and flushes the ASID
// first: mprotect under each strategy (A's thread alone makes that flush
// local under local and auto), the others broadcast. 2 CPUs, scheduled
// speculation.
#[test]
fn calls_racing_a_batch_flush_it_first() {
    let mprotect = Script::Mprotect { lo: 2, hi: 4 };
    let mut calls: Vec<(Script, Strategy)> = Strategy::ALL.iter().map(|&s| (mprotect, s)).collect();
    let others = [
        Script::Munmap { lo: 2, hi: 4 },
        Script::Madvise { lo: 2, hi: 4 },
        Script::MmapFixed { lo: 2, hi: 4 },
        Script::Fork,
    ];
    calls.extend(others.map(|c| (c, Strategy::Broadcast)));
    for (call, s) in calls {
        let mut cfg = under(reclaim(2, 3, 2), s);
        cfg.scripts[1] = vec![call];
        cfg.faults = 0;
        let what = strategy_name(&format!("reclaim 2..3 against {call:?}"), &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::BatchedPendingFlush) > 0, "{what}: expected flushes of the pending batch");
    }
}

/// `reclaim.dsb=remote`: the batch's DSB runs on cpu1, not on cpu0, which
/// issued its TLBIs; it completes none of them, and the pages are freed
/// while cpu1's TLB still maps them (every state checked), and cpu1 reads
/// or writes through such an entry (only what is used checked).
#[test]
fn reclaim_dsb_on_another_cpu_is_caught() {
    let mut cfg = reclaim(2, 4, 2);
    cfg.tlb.reclaim_dsb_remote = true;
    let v = explore_finds("reclaim 2..4, reclaim.dsb=remote", &cfg);
    assert!(
        matches!(v, Violation::StaleTranslation { cpu: 1, frame: FrameUse::Free, .. }),
        "expected cpu1 to keep a translation to a freed page, saw {v}"
    );
    cfg.checks = Checks::UsedOnly;
    let v = explore_finds("reclaim 2..4, reclaim.dsb=remote, use", &cfg);
    assert!(
        matches!(v, Violation::StaleTranslation { cpu: 1, .. }),
        "expected cpu1 to access a page through a stale entry, saw {v}"
    );
}

/// `Bugs::no_batched_pending`: mprotect 2..4 (read-only) ignores the
/// batch pending on A. The reclaimer made page 2 a swap entry, its TLBI
/// still in flight on cpu0; mprotect returns while cpu1 still holds page 2
/// writable, and may write through it after mprotect returned
/// (TLBEmptyInvalPTE, at the return).
#[test]
fn missing_batched_pending_flush_is_caught() {
    let mut cfg = reclaim(2, 3, 2);
    cfg.scripts[1] = vec![Script::Mprotect { lo: 2, hi: 4 }];
    cfg.faults = 0;
    cfg.tlb.bugs = bugs(|b| b.no_batched_pending = true);
    let v = explore_finds("reclaim 2..3 against mprotect 2..4, no batched-pending flush", &cfg);
    assert!(
        matches!(v, Violation::TlbEmptyInvalPte { cpu: 1, vpn: 2, .. }),
        "expected cpu1 to keep page 2 writable after mprotect returned, saw {v}"
    );
}

/// With a device bound to A (reading and writing pages 2, 3 and 4): the
/// batch tells it with its TLBIs and waits for it before freeing; under
/// `mmu.notifier=late` it does not wait, and the device keeps a translation
/// to a freed page (every state checked), and uses it to reach what B made
/// of the frame (only what is used checked). 2 CPUs, eager speculation.
#[test]
fn reclaim_with_a_device() {
    let mut cfg = reclaim(2, 4, 2);
    cfg.speculation = Speculation::Eager;
    cfg.devices = 1;
    cfg.dev_writes = true;
    let (_, w) = explore_clean("reclaim 2..4, a device", &cfg);
    assert_reclaimed("reclaim 2..4, a device", &w);
    let c = w.coverage();
    assert!(c.dev_serves.get() > 0 && c.dev_fills.get() > 0, "expected the device to run, {c:?}");
    cfg.tlb.notifier_late = true;
    let v = explore_finds("reclaim 2..4, a device, mmu.notifier=late", &cfg);
    assert!(
        matches!(v, Violation::DeviceStaleTranslation { how: DevUse::Held, frame: FrameUse::Free, .. }),
        "expected the device to hold a translation to a freed page, saw {v}"
    );
    cfg.checks = Checks::UsedOnly;
    let v = explore_finds("reclaim 2..4, a device, mmu.notifier=late, use", &cfg);
    assert!(
        matches!(v, Violation::DeviceStaleTranslation { how: DevUse::Read | DevUse::Write, .. }),
        "expected a device access through a stale entry, saw {v}"
    );
}

/// Long: the reclaimer (cpu0) takes pages 2 and 3 of A in one batch while
/// A's thread on cpu1 mprotects 2..4 read-only (racing the pending batch)
/// and its thread on cpu2 reads, writes and faults pages back from swap;
/// a device bound to A reads and writes pages 2, 3 and 4; B reuses the
/// freed frames. 3 CPUs, scheduled speculation.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_reclaim() {
    let mut cfg = long(&[vec![Script::Reclaim { lo: 2, hi: 4 }], vec![Script::Mprotect { lo: 2, hi: 4 }], vec![]]);
    cfg.writes = true;
    cfg.faults = 1;
    cfg.swap_slots = 2;
    cfg.devices = 1;
    cfg.dev_writes = true;
    let what = "long: reclaim 2..4 against mprotect 2..4, a writer and a device, 3 cpus";
    let (report, w) = explore_long(what, &cfg);
    assert!(report.states >= 1_000_000, "{what}: expected at least a million states, saw {report}");
    assert_reclaimed(what, &w);
    let c = w.coverage();
    assert!(events(&w, Event::BatchedPendingFlush) > 0 && c.dev_serves.get() > 0, "{what}: {c:?}");
}
