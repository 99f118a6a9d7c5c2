//! Blocks (2 MiB) and contiguous runs (64 KiB) over the recording rig:
//! the ops that flush them (one per block, at level 2), splits with
//! break-before-make before a call changes part of one, collapse, fork and
//! copy-on-write of a block, and every frame back at the end.

use super::*;
use crate::mm::pagetable::{is_block, is_cont, walk_for_tests, BLOCK_LEVEL};

const BASE: u64 = 0x4000_0000;
const BLOCK: u64 = 2 << 20;
const RUN: u64 = 16 * P;

/// An mm with an ASID whose mapping `[BASE, BASE + len)` was made with
/// `flags` (besides FIXED), and a write at each of `vas`.
fn mm_sized(r: &Rig, len: u64, flags: u64, vas: &[u64]) -> Mm {
    let mut a = AddressSpace::new(&r.mem).unwrap();
    let mut g = crate::mm::gather::Gather::new();
    a.mmap(BASE, len, RW, map::FIXED | flags, &r.mem, &mut g, &mut |_| {}).unwrap();
    g.finish(&r.mem, |_| {});
    for &va in vas {
        a.handle_fault(va, Access::Write, &r.mem, &mut |_| panic!("no flush")).unwrap();
        a.write_u64(va, va ^ 0x5a5a, &r.mem);
    }
    let mm = Mm::new(1, a);
    let alloc = crate::mm::asid::AsidAllocator::new(4, 1, Default::default()).unwrap();
    alloc.switch_in(r, &mm.ctx);
    r.take();
    r.ops.borrow_mut().clear();
    mm
}

// The tests' stand-in for holding the mm lock: one operation at a time.
#[allow(clippy::mut_from_ref)]
fn aspace(mm: &Mm) -> &mut AddressSpace {
    // SAFETY: the tests run one operation at a time, none in progress.
    unsafe { mm.aspace() }
}

fn root(mm: &Mm) -> u64 {
    aspace(mm).root_pa()
}

fn ops(r: &Rig) -> Vec<TlbiOp> {
    core::mem::take(&mut *r.ops.borrow_mut())
}

fn run_ok(mm: &Mm, r: &Rig, c: &TlbConfig, call: Call) -> Vec<Ev> {
    let mut op = Op::new(call, c);
    run(mm, &mut op, c, r);
    assert!(op.outcome().is_ok(), "{call:?}: {:?}", op.outcome());
    r.take()
}

fn events(log: &[Ev], e: Event) -> usize {
    log.iter().filter(|x| **x == Ev::Event(e)).count()
}

/// The value `mm_sized` wrote at `va`, read through the tables.
fn holds(mm: &Mm, r: &Rig, va: u64) -> bool {
    aspace(mm).read_u64(va, &r.mem) == Some(va ^ 0x5a5a)
}

fn teardown(mm: Mm, r: &Rig) {
    let c = cfg();
    mm.cpus.store(0, core::sync::atomic::Ordering::SeqCst);
    run_ok(&mm, r, &c, Call::Teardown);
    assert_eq!(r.mem.outstanding(), 0, "every frame, table and block back");
}

#[test]
fn a_first_touch_maps_a_block_and_munmap_flushes_it_as_one_entry_at_level_2() {
    let r = Rig::new();
    let mm = mm_sized(&r, 2 * BLOCK, map::HUGE, &[BASE + 5 * P]);
    let e = walk_for_tests(&r.mem, root(&mm), BASE + 5 * P).expect("mapped");
    assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_some_and(|(b, d)| b == BASE && is_block(d)), "{e:#x}");
    assert!(holds(&mm, &r, BASE + 5 * P));
    let before = r.mem.outstanding();
    let log = run_ok(&mm, &r, &cfg(), Call::Munmap { addr: BASE, len: BLOCK });
    let asid = mm.ctx.asid().unwrap();
    assert_eq!(ops(&r), [TlbiOp::Va { asid, va: BASE, last_level: true, ttl: Some(2) }], "one op, level hint 2");
    let (complete, free) = (pos(&log, |e| matches!(e, Ev::Complete(_))), pos(&log, |e| matches!(e, Ev::FreeRun(..))));
    assert!(complete < free, "the block's frames go after the flush: {log:?}");
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::FreeRun(_, 9))).count(), 1, "{log:?}");
    assert_eq!(r.mem.outstanding(), before - 512, "the block's 512 frames");
    teardown(mm, &r);
}

#[test]
fn munmap_of_many_blocks_uses_the_block_stride() {
    let r = Rig::new();
    let vas: Vec<u64> = (0..5).map(|i| BASE + i * BLOCK).collect();
    let mm = mm_sized(&r, 5 * BLOCK, map::HUGE, &vas);
    let mut c = cfg();
    c.params.per_page_max = Some(8);
    // The fifth block keeps the level-2 table: only leaves go.
    let log = run_ok(&mm, &r, &c, Call::Munmap { addr: BASE, len: 4 * BLOCK });
    let asid = mm.ctx.asid().unwrap();
    let want: Vec<TlbiOp> =
        vas[..4].iter().map(|&va| TlbiOp::Va { asid, va, last_level: true, ttl: Some(2) }).collect();
    assert_eq!(ops(&r), want, "{log:?}");
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::FreeRun(_, 9))).count(), 4);
    // With range ops (the default on this CPU): one range op, level 2.
    let log = run_ok(&mm, &r, &cfg(), Call::Munmap { addr: BASE + 4 * BLOCK, len: BLOCK });
    assert!(matches!(ops(&r)[..], [TlbiOp::Range { last_level: false, .. }]), "the table went too: {log:?}");
    teardown(mm, &r);
}

#[test]
fn part_of_a_block_is_split_with_break_before_make_and_keeps_its_data() {
    let r = Rig::new();
    let vas = [BASE, BASE + 3 * P, BASE + 511 * P];
    let mm = mm_sized(&r, BLOCK, map::HUGE, &vas);
    let (_, block) = aspace(&mm).page_table().block(&r.mem, BASE).unwrap();
    let c = cfg();
    let mut op = Op::new(Call::Munmap { addr: BASE + P, len: P }, &c);
    // Up to the split's flush: the block is cleared, nothing maps it.
    while op.pc() != op::Pc::SplitFlush {
        assert!(!matches!(op.step(&mm, &c, &r, &r), Step::Done | Step::Blocked));
    }
    assert_eq!(walk_for_tests(&r.mem, root(&mm), BASE + 3 * P), None, "break: cleared before the flush");
    run(&mm, &mut op, &c, &r);
    let log = r.take();
    assert_eq!(events(&log, Event::BlockSplit), 1);
    let asid = mm.ctx.asid().unwrap();
    let got = ops(&r);
    assert_eq!(got[0], TlbiOp::Va { asid, va: BASE, last_level: true, ttl: Some(2) }, "the block first: {got:?}");
    assert_eq!(got[1], TlbiOp::Va { asid, va: BASE + P, last_level: true, ttl: Some(3) }, "then the page: {got:?}");
    // The rest of the block is pages now, at the same frames.
    let pt = aspace(&mm).page_table();
    assert!(pt.block(&r.mem, BASE).is_none());
    for va in vas {
        assert_eq!(pt.lookup(&r.mem, va).map(crate::mm::pagetable::desc_pa), Some(desc_pa_of(block, va - BASE)));
        assert!(holds(&mm, &r, va), "{va:#x}");
    }
    assert_eq!(pt.lookup(&r.mem, BASE + P), None);
    assert!(log.contains(&Ev::Free(desc_pa_of(block, P))), "the unmapped page's frame alone: {log:?}");
    teardown(mm, &r);
}

fn desc_pa_of(block: u64, off: u64) -> u64 {
    crate::mm::pagetable::desc_pa(block) + off
}

#[test]
fn without_the_break_the_split_replaces_the_block_at_once_and_counts_it() {
    let r = Rig::new();
    let mm = mm_sized(&r, BLOCK, map::HUGE, &[BASE + 7 * P]);
    let mut c = cfg();
    c.split_no_break = true;
    let mut op = Op::new(Call::Mprotect { addr: BASE, len: P, prot: prot::READ }, &c);
    while op.pc() != op::Pc::SplitFlush {
        op.step(&mm, &c, &r, &r);
    }
    assert!(walk_for_tests(&r.mem, root(&mm), BASE + 7 * P).is_some(), "no break: mapped throughout");
    run(&mm, &mut op, &c, &r);
    let log = r.take();
    assert_eq!((events(&log, Event::BlockSplit), events(&log, Event::SplitNoBreak)), (1, 1), "{log:?}");
    assert!(holds(&mm, &r, BASE + 7 * P));
    teardown(mm, &r);
}

#[test]
fn mprotect_of_a_whole_block_changes_one_entry_and_of_part_splits_first() {
    let r = Rig::new();
    let mm = mm_sized(&r, 2 * BLOCK, map::HUGE, &[BASE, BASE + BLOCK]);
    let log = run_ok(&mm, &r, &cfg(), Call::Mprotect { addr: BASE, len: BLOCK, prot: prot::READ });
    assert_eq!(events(&log, Event::BlockSplit), 0);
    let (_, d) = aspace(&mm).page_table().block(&r.mem, BASE).expect("still a block");
    assert!(!crate::mm::pagetable::el0_can_write(d) && crate::mm::pagetable::el0_can_read(d | 2));
    assert_eq!(ops(&r).len(), 1, "one op for the block");
    let log = run_ok(&mm, &r, &cfg(), Call::Mprotect { addr: BASE + BLOCK + 4 * P, len: 2 * P, prot: prot::READ });
    assert_eq!(events(&log, Event::BlockSplit), 1, "{log:?}");
    let pt = aspace(&mm).page_table();
    let ro = |va| pt.lookup(&r.mem, va).is_some_and(|d| !crate::mm::pagetable::el0_can_write(d));
    assert!(ro(BASE + BLOCK + 4 * P) && ro(BASE + BLOCK + 5 * P) && !ro(BASE + BLOCK + 6 * P));
    teardown(mm, &r);
}

#[test]
fn a_fork_shares_a_block_and_a_write_splits_it_or_copies_it_whole() {
    for copy in [false, true] {
        let r = Rig::new();
        let mm = mm_sized(&r, BLOCK, map::HUGE, &[BASE + 2 * P]);
        let mut c = cfg();
        c.block_cow_copy = copy;
        let mut op = Op::new(Call::Fork, &c);
        run(&mm, &mut op, &c, &r);
        let child = op.take_child().expect("a child");
        let (_, d) = child.page_table().block(&r.mem, BASE).expect("the child maps the block");
        assert!(!crate::mm::pagetable::el0_can_write(d | 2));
        assert_eq!(r.mem.refs(crate::mm::pagetable::desc_pa(d) + 100 * P), 2, "every frame shared");
        r.take();
        let log = run_ok(&mm, &r, &c, Call::Fault { va: BASE + 2 * P, access: Access::Write });
        if copy {
            assert_eq!(events(&log, Event::BlockCowCopy), 1, "{log:?}");
            assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_some(), "a block of its own");
        } else {
            assert_eq!(events(&log, Event::BlockSplit), 1, "{log:?}");
            assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_none(), "pages now");
        }
        assert!(holds(&mm, &r, BASE + 2 * P), "the write fault kept the data");
        aspace(&mm).write_u64(BASE + 2 * P, 7, &r.mem);
        let child_sees = child.read_u64(BASE + 2 * P, &r.mem);
        assert_eq!(child_sees, Some((BASE + 2 * P) ^ 0x5a5a), "the child keeps its copy");
        child.discard(&r.mem);
        teardown(mm, &r);
    }
}

/// Found by the model (`pages_checks::fork_of_a_block_then_write_faults`):
/// after a fork shared a block, the child's write split its copy and copied
/// one page, so that page's frame was the parent's alone; the parent's
/// write fault there then made its whole block writable in place, over
/// frames still shared with the child. A block is reused in place only
/// when every frame of it is unshared.
#[test]
fn a_write_to_a_block_reuses_it_only_when_every_frame_is_unshared() {
    let r = Rig::new();
    let mm = mm_sized(&r, BLOCK, map::HUGE, &[BASE + 2 * P]);
    let c = cfg();
    let mut op = Op::new(Call::Fork, &c);
    run(&mm, &mut op, &c, &r);
    let child = Mm::new(2, op.take_child().expect("a child"));
    let alloc = crate::mm::asid::AsidAllocator::new(4, 1, Default::default()).unwrap();
    alloc.switch_in(&r, &child.ctx);
    r.take();
    // The child writes page 2: its block is split and page 2 copied.
    run_ok(&child, &r, &c, Call::Fault { va: BASE + 2 * P, access: Access::Write });
    let (_, d) = aspace(&mm).page_table().block(&r.mem, BASE).expect("the parent's block");
    let pa = crate::mm::pagetable::desc_pa(d);
    assert_eq!((r.mem.refs(pa + 2 * P), r.mem.refs(pa + 3 * P)), (1, 2), "page 2's frame is the parent's alone");
    // The parent writes page 2: the block's other frames are still shared.
    let log = run_ok(&mm, &r, &c, Call::Fault { va: BASE + 2 * P, access: Access::Write });
    assert_eq!(events(&log, Event::BlockSplit), 1, "split, not reused whole: {log:?}");
    let pt = aspace(&mm).page_table();
    let writable = |va| pt.lookup(&r.mem, va).is_some_and(crate::mm::pagetable::el0_can_write);
    assert!(writable(BASE + 2 * P) && !writable(BASE + 3 * P), "only page 2 writable");
    assert_eq!(r.mem.refs(pa + 3 * P), 2);
    child.cpus.store(0, core::sync::atomic::Ordering::SeqCst);
    run_ok(&child, &r, &c, Call::Teardown);
    teardown(mm, &r);
}

#[test]
fn collapse_replaces_pages_by_a_block_after_flushing_the_table() {
    let r = Rig::new();
    let vas = [BASE + P, BASE + 300 * P];
    let mm = mm_sized(&r, BLOCK, 0, &vas);
    assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_none());
    let log = run_ok(&mm, &r, &cfg(), Call::Madvise { addr: BASE, len: BLOCK, advice: advice::COLLAPSE });
    assert_eq!(events(&log, Event::Collapse), 1, "{log:?}");
    let got = ops(&r);
    assert!(
        got.iter().all(|o| matches!(
            o,
            TlbiOp::Range { last_level: false, .. } | TlbiOp::Va { last_level: false, .. } | TlbiOp::Asid { .. }
        )),
        "walk caches too: {got:?}"
    );
    let (complete, table) = (pos(&log, |e| matches!(e, Ev::Complete(_))), pos(&log, |e| matches!(e, Ev::FreeTable(_))));
    assert!(complete < table, "the table goes after the flush: {log:?}");
    assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_some());
    for va in vas {
        assert!(holds(&mm, &r, va), "{va:#x}");
    }
    assert_eq!(aspace(&mm).read_u64(BASE + 5 * P, &r.mem), Some(0), "the rest zeroed");
    teardown(mm, &r);
}

#[test]
fn contiguous_runs_fill_whole_and_unfold_before_a_page_changes() {
    let r = Rig::new();
    let mm = mm_sized(&r, 4 * RUN, map::CONT, &[BASE + 2 * P, BASE + RUN]);
    let pt = aspace(&mm).page_table();
    for i in 0..16 {
        assert!(pt.lookup(&r.mem, BASE + i * P).is_some_and(is_cont), "page {i} of the run");
    }
    assert!(pt.lookup(&r.mem, BASE + 2 * RUN).is_none(), "the third run was not touched");
    // mprotect of a whole run: each page changes in place, the run stays.
    let log = run_ok(&mm, &r, &cfg(), Call::Mprotect { addr: BASE + RUN, len: RUN, prot: prot::READ });
    assert_eq!(events(&log, Event::RunUnfold), 0);
    let pt = aspace(&mm).page_table();
    assert!((0..16).all(|i| pt
        .lookup(&r.mem, BASE + RUN + i * P)
        .is_some_and(|d| is_cont(d) && !crate::mm::pagetable::el0_can_write(d))));
    // munmap of one page of a run: unfold all 16, then the page.
    ops(&r);
    let log = run_ok(&mm, &r, &cfg(), Call::Munmap { addr: BASE + 5 * P, len: P });
    assert_eq!(events(&log, Event::RunUnfold), 1, "{log:?}");
    let pt = aspace(&mm).page_table();
    assert!((0..16).filter(|&i| i != 5).all(|i| pt.lookup(&r.mem, BASE + i * P).is_some_and(|d| !is_cont(d))));
    assert!(holds(&mm, &r, BASE + 2 * P));
    let got = ops(&r);
    assert_eq!(got.len(), 2, "the run's 16 pages (a range op), then the page: {got:?}");
    teardown(mm, &r);
}

#[test]
fn a_write_to_a_shared_page_of_a_run_unfolds_it_first() {
    let r = Rig::new();
    let mm = mm_sized(&r, RUN, map::CONT, &[BASE]);
    let c = cfg();
    let mut op = Op::new(Call::Fork, &c);
    run(&mm, &mut op, &c, &r);
    let child = op.take_child().unwrap();
    r.take();
    let log = run_ok(&mm, &r, &c, Call::Fault { va: BASE + 3 * P, access: Access::Write });
    assert_eq!(events(&log, Event::RunUnfold), 1, "{log:?}");
    let pt = aspace(&mm).page_table();
    assert!((0..16).all(|i| pt.lookup(&r.mem, BASE + i * P).is_some_and(|d| !is_cont(d))));
    assert!(child.page_table().lookup(&r.mem, BASE).is_some_and(is_cont), "the child's run stays");
    child.discard(&r.mem);
    teardown(mm, &r);
}

#[test]
fn the_block_level_is_the_format_level_two() {
    assert_eq!(BLOCK_LEVEL, 2);
    assert_eq!(crate::mm::pagetable::Arm4k.block_size(), Some(BLOCK));
    assert_eq!(crate::mm::pagetable::Arm4k.cont_size(), RUN);
}

#[test]
fn a_split_without_a_frame_for_its_table_fails_the_call_and_changes_nothing() {
    let r = Rig::new();
    let mm = mm_sized(&r, BLOCK, map::HUGE, &[BASE + 9 * P]);
    r.mem.set_limit(Some(r.mem.outstanding()));
    let c = cfg();
    for call in [
        Call::Munmap { addr: BASE + P, len: P },
        Call::Mprotect { addr: BASE, len: P, prot: prot::READ },
        Call::Mmap { addr: BASE + P, len: P, prot: RW, flags: map::FIXED },
        Call::Madvise { addr: BASE + P, len: 2 * P, advice: advice::DONTNEED },
    ] {
        let mut op = Op::new(call, &c);
        run(&mm, &mut op, &c, &r);
        assert_eq!(op.outcome(), Err(OpError::Mm(crate::mm::aspace::MmError::OutOfMemory)), "{call:?}");
        assert!(aspace(&mm).page_table().block(&r.mem, BASE).is_some(), "{call:?}: the block stays");
        let v = *aspace(&mm).vmas().find(BASE + P).expect("the mapping stays");
        assert_eq!((v.start, v.end, v.prot & prot::ALL), (BASE, BASE + BLOCK, RW), "{call:?}");
        assert!(holds(&mm, &r, BASE + 9 * P));
        assert!(ops(&r).is_empty(), "{call:?}: nothing to flush");
    }
    r.take();
    r.mem.set_limit(None);
    teardown(mm, &r);
}

/// The review's case: after fork, the child copies page 0 of the block
/// (frame 0 is the parent's alone again), then the parent writes page 0.
/// The parent must not get the whole block writable: its other frames
/// are still the child's too.
#[test]
fn a_block_is_writable_only_when_every_frame_is_unshared() {
    let r = Rig::new();
    let mm = mm_sized(&r, BLOCK, map::HUGE, &[BASE, BASE + 5 * P]);
    let c = cfg();
    let mut op = Op::new(Call::Fork, &c);
    run(&mm, &mut op, &c, &r);
    let mut child = op.take_child().unwrap();
    child.handle_fault(BASE, Access::Write, &r.mem, &mut |_| {}).unwrap();
    r.take();
    run_ok(&mm, &r, &c, Call::Fault { va: BASE, access: Access::Write });
    let pt = aspace(&mm).page_table();
    let writable = |va| pt.lookup(&r.mem, va).is_some_and(crate::mm::pagetable::el0_can_write);
    assert!(writable(BASE), "the faulting page");
    assert!(!writable(BASE + 5 * P), "page 5's frame is still shared with the child");
    // The parent's own write to page 5 copies it; the child keeps its data.
    run_ok(&mm, &r, &c, Call::Fault { va: BASE + 5 * P, access: Access::Write });
    aspace(&mm).write_u64(BASE + 5 * P, 7, &r.mem);
    assert_eq!(child.read_u64(BASE + 5 * P, &r.mem), Some((BASE + 5 * P) ^ 0x5a5a));
    child.discard(&r.mem);
    teardown(mm, &r);
}

#[test]
fn the_whole_calls_split_the_blocks_their_ends_cut() {
    let mem = TestMem::new();
    let mut a = AddressSpace::new(&mem).unwrap();
    let mut g = crate::mm::gather::Gather::new();
    a.mmap(BASE, 2 * BLOCK, RW, map::FIXED | map::HUGE, &mem, &mut g, &mut |_| {}).unwrap();
    for va in [BASE, BASE + BLOCK] {
        a.handle_fault(va + 8 * P, Access::Write, &mem, &mut |_| {}).unwrap();
    }
    let mut flushes = Vec::new();
    a.munmap(BASE + P, P, &mem, &mut g, &mut |r| flushes.push(r)).unwrap();
    a.mprotect(BASE + BLOCK + P, P, prot::READ, &mem, &mut g, &mut |r| flushes.push(r)).unwrap();
    g.finish(&mem, |r| flushes.push(r));
    assert!(a.page_table().block(&mem, BASE).is_none() && a.page_table().block(&mem, BASE + BLOCK).is_none());
    let levels: Vec<Option<u8>> = flushes.iter().flatten().map(|r| r.leaf_level).collect();
    assert!(levels.iter().filter(|&&l| l == Some(2)).count() == 2, "each block flushed at level 2: {flushes:?}");
    a.discard(&mem);
    assert_eq!(mem.outstanding(), 0);
}
