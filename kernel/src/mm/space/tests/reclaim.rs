//! Reclaim over the recording rig: a batch's TLBIs are issued without a
//! DSB and completed by one DSB on the issuing CPU before any frame is
//! freed; contents survive the trip to swap and back (fork included); a
//! call that changes entries of an mm with a batch pending flushes first;
//! secondary MMUs are told with the TLBIs and acknowledge before the free.

use super::*;
use crate::mm::aspace::{Fault, FaultError, FaultKind};
use crate::mm::space::reclaim::{Batch, BatchPc};

const BASE: u64 = 0x40_0000;

/// An mm with pages at `BASE + i * P` for `i < n`, each holding `i + 1`.
fn filled(r: &Rig, n: u64) -> Mm {
    let vas: Vec<u64> = (0..n).map(|i| BASE + i * P).collect();
    let mm = mm_with(r, (BASE, BASE + 16 * P), &vas);
    mm.with_aspace(|a| {
        for i in 0..n {
            assert!(a.write_u64(BASE + i * P, i + 1, &r.mem));
        }
    });
    r.take();
    mm
}

fn frame_of(mm: &Mm, r: &Rig, va: u64) -> u64 {
    crate::mm::pagetable::desc_pa(mm.with_aspace(|a| a.translate(va, &r.mem)).expect("mapped"))
}

/// Unmaps each of `vas` from `mm` into `b` (one reclaim op each).
fn unmap_into(b: &mut Batch, mm: &Mm, r: &Rig, c: &TlbConfig, vas: &[u64]) {
    for &va in vas {
        let pa = frame_of(mm, r, va);
        let slot = r.mem.swap_alloc().unwrap();
        let i = b.add(pa, slot).unwrap();
        let mut op = Op::new(Call::Reclaim { va, pa, slot }, c);
        run(mm, &mut op, c, r);
        assert_eq!(op.outcome(), Ok(Outcome::Done));
        b.unmapped(i, c, r);
    }
}

/// An mm of `n` filled pages (see [`filled`]) with the pages at `vas`
/// unmapped into a batch not finished yet.
fn pending(r: &Rig, c: &TlbConfig, n: u64, vas: &[u64]) -> (Mm, Batch) {
    let mm = filled(r, n);
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, r, c, vas);
    (mm, b)
}

fn count(log: &[Ev], f: impl Fn(&Ev) -> bool) -> usize {
    log.iter().filter(|e| f(e)).count()
}

fn fault(mm: &Mm, r: &Rig, va: u64, access: Access) -> Result<Outcome, OpError> {
    let c = cfg();
    let mut op = Op::new(Call::Fault { va, access }, &c);
    run(mm, &mut op, &c, r);
    op.outcome()
}

#[test]
fn a_batch_issues_per_page_and_completes_once_before_any_free() {
    let r = Rig::new();
    let mm = filled(&r, 4);
    let c = cfg();
    let before = r.mem.outstanding();
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, &r, &c, &[BASE, BASE + P, BASE + 2 * P, BASE + 3 * P]);
    let log = r.take();
    assert_eq!(count(&log, |e| *e == Ev::Issue(vec![OpKind::Vale1is])), 4, "one TLBI a page: {log:?}");
    assert_eq!(count(&log, |e| matches!(e, Ev::Complete(_))), 0, "no DSB while unmapping: {log:?}");
    assert_eq!(count(&log, |e| *e == Ev::Event(Event::ReclaimUnmap)), 4);
    assert!(mm.batched.load(Ordering::Relaxed));
    assert_eq!(r.mem.outstanding(), before, "nothing freed before the batch's DSB");
    b.run(&c, &r, &r);
    let log = r.take();
    assert_eq!(log[0], Ev::Complete(Scope::Broadcast), "the DSB first: {log:?}");
    assert_eq!(count(&log, |e| matches!(e, Ev::Complete(_))), 1, "one DSB for the batch: {log:?}");
    assert_eq!(count(&log, |e| matches!(e, Ev::Free(_))), 4, "{log:?}");
    assert_eq!(r.mem.outstanding(), before - 4);
    assert_eq!(r.mem.swap_slots(), 4, "each page in its slot, held by its swap entry");
    // Back on a fault, each with its contents.
    for i in 0..4 {
        let got = fault(&mm, &r, BASE + i * P, Access::Read);
        assert!(matches!(got, Ok(Outcome::Fault(Fault { kind: FaultKind::SwapIn, .. }))), "{got:?}");
        assert_eq!(mm.with_aspace(|a| a.read_u64(BASE + i * P, &r.mem)), Some(i + 1));
    }
    assert_eq!(r.mem.swap_slots(), 0, "slots freed on swap-in");
    assert_eq!(r.mem.outstanding(), before);
}

#[test]
fn unbatched_reclaim_waits_for_each_page() {
    let r = Rig::new();
    let mm = filled(&r, 3);
    let mut c = cfg();
    c.reclaim_batch = false;
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, &r, &c, &[BASE, BASE + P, BASE + 2 * P]);
    let log = r.take();
    assert_eq!(count(&log, |e| *e == Ev::Complete(Scope::Broadcast)), 3, "a DSB a page: {log:?}");
    assert!(!mm.batched.load(Ordering::Relaxed));
    b.run(&c, &r, &r);
    let log = r.take();
    assert_eq!(count(&log, |e| matches!(e, Ev::Complete(_))), 0, "nothing left to complete: {log:?}");
    assert_eq!(count(&log, |e| matches!(e, Ev::Free(_))), 3);
}

#[test]
fn a_page_on_its_way_to_swap_faults_busy_and_changes_nothing() {
    let r = Rig::new();
    let c = cfg();
    let (mm, mut b) = pending(&r, &c, 2, &[BASE]);
    let before = r.mem.outstanding();
    assert_eq!(fault(&mm, &r, BASE, Access::Write), Err(OpError::Fault(FaultError::SwapBusy)));
    assert_eq!(r.mem.outstanding(), before, "the new frame went back");
    b.run(&c, &r, &r);
    assert!(fault(&mm, &r, BASE, Access::Write).is_ok());
    assert_eq!(mm.with_aspace(|a| a.read_u64(BASE, &r.mem)), Some(1));
}

#[test]
fn calls_that_change_entries_flush_a_pending_batch_first() {
    for bug in [false, true] {
        let r = Rig::new();
        let mm = filled(&r, 3);
        let mut c = cfg();
        c.bugs.no_batched_pending = bug;
        let mut b = Batch::new();
        unmap_into(&mut b, &mm, &r, &c, &[BASE]);
        r.take();
        let mut op = Op::new(Call::Mprotect { addr: BASE + P, len: 2 * P, prot: prot::READ }, &c);
        run(&mm, &mut op, &c, &r);
        let log = r.take();
        let whole = log.iter().position(|e| *e == Ev::Issue(vec![OpKind::Aside1is]));
        if bug {
            assert!(whole.is_none() && !log.contains(&Ev::Event(Event::BatchedPendingFlush)), "{log:?}");
            b.run(&c, &r, &r);
            continue;
        }
        let whole = whole.unwrap_or_else(|| panic!("the ASID first: {log:?}"));
        assert!(whole < pos(&log, |e| *e == Ev::Complete(Scope::Broadcast)), "{log:?}");
        assert!(log.contains(&Ev::Event(Event::BatchedPendingFlush)));
        assert!(!mm.batched.load(Ordering::Relaxed), "flushed: no longer pending");
        assert!(r.reasons().contains(&Reason::BatchedPending));
        // A later call pays nothing more.
        let mut op = Op::new(Call::Mprotect { addr: BASE + P, len: P, prot: RW }, &c);
        run(&mm, &mut op, &c, &r);
        assert!(!r.take().contains(&Ev::Event(Event::BatchedPendingFlush)));
        b.run(&c, &r, &r);
    }
}

#[test]
fn a_fault_while_a_batch_is_pending_needs_no_flush() {
    let r = Rig::new();
    let c = cfg();
    let (mm, mut b) = pending(&r, &c, 2, &[BASE]);
    r.take();
    // A zero-fill elsewhere: no entry of the batch is replaced.
    assert!(fault(&mm, &r, BASE + 5 * P, Access::Write).is_ok());
    // The reclaimed page itself waits for the batch (`SwapBusy`, above).
    assert!(!r.take().iter().any(|e| matches!(e, Ev::Issue(_))));
    b.run(&c, &r, &r);
}

#[test]
fn fork_shares_swap_entries_and_each_side_reads_its_own_copy() {
    // Step by step (the model's way) and with whole walks (the kernel's).
    for run_walks in [false, true] {
        let r = Rig::new();
        let mm = filled(&r, 3);
        let mut c = cfg();
        c.run_walks = run_walks;
        let mut b = Batch::new();
        unmap_into(&mut b, &mm, &r, &c, &[BASE, BASE + 2 * P]);
        let slot = b.victims().next().unwrap().slot;
        b.run(&c, &r, &r);
        assert_eq!(r.mem.swap_refs(slot), 1);
        let mut op = Op::new(Call::Fork, &c);
        run(&mm, &mut op, &c, &r);
        let child = Mm::new(2, op.take_child().unwrap());
        assert_eq!(r.mem.swap_refs(slot), 2, "the child's entry holds the slot too");
        assert!(fault(&child, &r, BASE, Access::Write).is_ok());
        child.with_aspace(|a| assert!(a.write_u64(BASE, 99, &r.mem)));
        assert!(fault(&mm, &r, BASE, Access::Read).is_ok());
        assert_eq!(mm.with_aspace(|a| a.read_u64(BASE, &r.mem)), Some(1), "the parent's copy");
        assert_eq!(r.mem.swap_slots(), 1, "the other page's slot, in both");
        // Zapping swap entries frees their slots.
        let mut op = Op::new(Call::Munmap { addr: BASE, len: 16 * P }, &c);
        run(&mm, &mut op, &c, &r);
        assert_eq!(r.mem.swap_slots(), 1, "the child's entry still holds it");
        let mut op = Op::new(Call::Teardown, &c);
        run(&child, &mut op, &c, &r);
        assert_eq!(r.mem.swap_slots(), 0, "the teardown dropped the child's");
    }
}

#[test]
fn fork_flushes_a_pending_batch_before_it_copies_swap_entries() {
    let r = Rig::new();
    let c = cfg();
    let (mm, mut b) = pending(&r, &c, 2, &[BASE]);
    r.take();
    let mut op = Op::new(Call::Fork, &c);
    run(&mm, &mut op, &c, &r);
    let log = r.take();
    // Otherwise a write through the parent's stale entry before the batch's
    // DSB would land in the frame the child's swap entry is copied from.
    let whole = pos(&log, |e| *e == Ev::Issue(vec![OpKind::Aside1is]));
    assert!(whole < pos(&log, |e| matches!(e, Ev::Complete(_))), "{log:?}");
    assert!(log.contains(&Ev::Event(Event::BatchedPendingFlush)), "{log:?}");
    b.run(&c, &r, &r);
    let child = op.take_child().unwrap();
    child.teardown(&r.mem, &mut crate::mm::gather::Gather::new(), &mut |_| {});
}

#[test]
fn the_batch_waits_for_the_devices_before_writing_and_freeing() {
    let r = Rig::new();
    let mm = filled(&r, 2);
    mm.subscribe(0);
    let c = cfg();
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, &r, &c, &[BASE, BASE + P]);
    let log = r.take();
    assert_eq!(count(&log, |e| matches!(e, Ev::Secondary(..))), 2, "told with each TLBI: {log:?}");
    assert!(!log.contains(&Ev::SecAcked), "nobody waits while unmapping: {log:?}");
    b.run(&c, &r, &r);
    let log = r.take();
    assert!(pos(&log, |e| *e == Ev::SecAcked) < pos(&log, |e| matches!(e, Ev::Free(_))), "{log:?}");
    // Late: nobody waits at all.
    let mm = filled(&r, 1);
    mm.subscribe(0);
    let mut c = cfg();
    c.notifier_late = true;
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, &r, &c, &[BASE]);
    b.run(&c, &r, &r);
    assert!(!r.take().contains(&Ev::SecAcked));
}

#[test]
fn the_batch_dsb_runs_on_the_issuing_cpu_unless_demonstrating_remote() {
    let r = Rig::new();
    let mm = filled(&r, 1);
    let mut c = cfg();
    let mut b = Batch::new();
    unmap_into(&mut b, &mm, &r, &c, &[BASE]);
    assert_eq!(b.issuer(), Some(0));
    b.finish();
    r.cpu.set(1);
    let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.clone().step(&c, &r, &r)));
    assert!(wrong.is_err(), "a DSB elsewhere completes nothing: refused");
    c.reclaim_dsb_remote = true;
    assert_eq!(b.step(&c, &r, &r), Step::Ran);
    assert_eq!(b.pc(), BatchPc::SecWait);
    r.cpu.set(0);
    b.run(&c, &r, &r);
}
