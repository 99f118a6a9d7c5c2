//! The protocol over a fake hardware and memory that record what they are
//! asked, in order: for each call, the ops and their scope, the DSBs, the
//! frees, and where the lock is dropped; and the flush decisions told for
//! the trace, each of which must come just before its ops.

use core::cell::{Cell, RefCell};
use std::vec::Vec;

use super::*;
use crate::mm::asid::AsidHw;
use crate::mm::aspace::test_mem::TestMem;
use crate::mm::aspace::Access;
use crate::mm::pte::PAGE_SIZE;
use crate::mm::tlb::policy::PlanReason;
use crate::mm::tlb::trace::{Decision, Reason};
use crate::mm::tlb::{Event, OpKind, Scope, TlbiOp};
use abi::{advice, map, prot};

const P: u64 = PAGE_SIZE;
const RW: u64 = prot::READ | prot::WRITE;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Issue(Vec<OpKind>),
    Complete(Scope),
    /// The repeat-TLBI workaround's TLBI (broadcast) and DSB.
    RepeatTlbi(TlbiOp),
    RepeatDsb,
    Ttbr0(u16),
    Reserved,
    Event(Event),
    Free(u64),
    /// `2^order` frames from the first freed at once (a block's).
    FreeRun(u64, u32),
    FreeTable(u64),
    Unlock,
    Send(u64),
    Publish,
    /// A target (CPU) served a shootdown.
    Served(usize, Served),
    /// Secondary MMUs told of a flush.
    Secondary(u64, Invalidation),
    /// The operation asked whether they acknowledged.
    SecAcked,
}

/// Hardware and memory that log into one list.
struct Rig {
    mem: TestMem,
    log: RefCell<Vec<Ev>>,
    /// The reasons of the decisions told, in order.
    reasons: RefCell<Vec<Reason>>,
    /// The ops of the decision told last, until they are issued.
    decided: RefCell<Option<Vec<OpKind>>>,
    /// The strategy decisions counted, in order.
    decides: RefCell<Vec<Event>>,
    /// The CPU the protocol runs on.
    cpu: Cell<usize>,
    /// When set, a send is served at once by each target (this rig on the
    /// target's CPU), with this configuration.
    serve: Cell<Option<TlbConfig>>,
    /// Every op issued, in order (the log has their kinds).
    ops: RefCell<Vec<TlbiOp>>,
}

impl Rig {
    fn new() -> Self {
        Rig {
            mem: TestMem::new(),
            log: RefCell::new(Vec::new()),
            reasons: RefCell::new(Vec::new()),
            decided: RefCell::new(None),
            decides: RefCell::new(Vec::new()),
            cpu: Cell::new(0),
            serve: Cell::new(None),
            ops: RefCell::new(Vec::new()),
        }
    }

    fn reasons(&self) -> Vec<Reason> {
        core::mem::take(&mut *self.reasons.borrow_mut())
    }

    fn push(&self, e: Ev) {
        self.log.borrow_mut().push(e);
    }

    fn take(&self) -> Vec<Ev> {
        core::mem::take(&mut *self.log.borrow_mut())
    }
}

impl AsidHw for Rig {
    fn cpu_id(&self) -> usize {
        self.cpu.get()
    }
    fn flush_local_tlb_all(&self) {
        self.push(Ev::Issue(vec![OpKind::Vmalle1]));
    }
}

impl MmHw for Rig {
    fn issue(&self, ops: &[TlbiOp], scope: Scope) {
        let kinds: Vec<OpKind> = ops.iter().map(|o| o.kind(scope)).collect();
        let decided = self.decided.borrow_mut().take();
        let log = self.log.borrow();
        assert_eq!(decided.as_ref(), Some(&kinds), "ops issued with no decision told just before: {log:?}");
        drop(log);
        self.ops.borrow_mut().extend_from_slice(ops);
        self.push(Ev::Issue(kinds));
    }
    fn complete(&self, scope: Scope) {
        self.push(Ev::Complete(scope));
    }
    fn repeat_tlbi(&self, op: &TlbiOp) {
        self.push(Ev::RepeatTlbi(*op));
    }
    fn repeat_dsb(&self) {
        self.push(Ev::RepeatDsb);
    }
    unsafe fn load_ttbr0(&self, _root: u64, asid: u16) {
        self.push(Ev::Ttbr0(asid));
    }
    fn load_reserved(&self) {
        self.push(Ev::Reserved);
    }
    fn event(&self, e: Event) {
        // The strategy's decision is counted on every flush: kept apart so
        // the sequences below read as the ops they are.
        if matches!(e, Event::DecideBroadcast | Event::DecideLocal | Event::DecideIpi) {
            self.decides.borrow_mut().push(e);
        } else {
            self.push(Ev::Event(e));
        }
    }
    fn decision(&self, d: Decision<'_>) {
        let mut decided = self.decided.borrow_mut();
        assert!(decided.is_none(), "{d:?} told before the ops of the previous decision ({decided:?}) were issued");
        if !d.ops.is_empty() {
            *decided = Some(d.ops.iter().map(|o| o.kind(d.scope)).collect());
        }
        self.reasons.borrow_mut().push(d.reason);
    }
    fn send<F: Format>(&self, mm: &Mm<F>, targets: u64, req: &Shootdown) {
        self.push(Ev::Send(targets));
        if let Some(c) = self.serve.get() {
            let me = self.cpu.get();
            for t in (0..64).filter(|t| targets & (1 << t) != 0) {
                self.cpu.set(t);
                self.push(Ev::Served(t, shootdown::serve(mm, req, &c, self)));
            }
            self.cpu.set(me);
        }
    }
    fn acked(&self) -> bool {
        true
    }
    fn notify_secondary<F: Format>(&self, _mm: &Mm<F>, devices: u64, inv: &Invalidation) {
        self.push(Ev::Secondary(devices, *inv));
    }
    fn secondary_acked(&self) -> bool {
        self.push(Ev::SecAcked);
        true
    }
    fn publish_tables(&self) {
        self.push(Ev::Publish);
    }
}

impl PhysMem for Rig {
    fn alloc_zeroed(&self) -> Option<u64> {
        self.mem.alloc_zeroed()
    }
    fn free(&self, pa: u64) {
        self.push(Ev::Free(pa));
        self.mem.free(pa)
    }
    fn alloc_contig(&self, order: u32) -> Option<u64> {
        self.mem.alloc_contig(order)
    }
    fn free_contig(&self, pa: u64, order: u32) {
        self.push(Ev::FreeRun(pa, order));
        self.mem.free_contig(pa, order)
    }
    fn free_table(&self, pa: u64) {
        self.push(Ev::FreeTable(pa));
        self.mem.free(pa)
    }
    fn get(&self, pa: u64) {
        self.mem.get(pa)
    }
    fn put(&self, pa: u64) -> bool {
        self.mem.put(pa)
    }
    fn refs(&self, pa: u64) -> u32 {
        self.mem.refs(pa)
    }
    fn swap_alloc(&self) -> Option<u64> {
        self.mem.swap_alloc()
    }
    fn swap_write(&self, slot: u64, pa: u64) {
        self.mem.swap_write(slot, pa)
    }
    fn swap_read(&self, slot: u64, pa: u64) -> bool {
        self.mem.swap_read(slot, pa)
    }
    fn swap_dup(&self, slot: u64) {
        self.mem.swap_dup(slot)
    }
    fn swap_free(&self, slot: u64) {
        self.mem.swap_free(slot)
    }
    fn rmap_set(&self, pa: u64, anon: u64, va: u64) {
        self.mem.rmap_set(pa, anon, va)
    }
    unsafe fn load_desc(&self, table: u64, idx: usize) -> u64 {
        // SAFETY: forwarded.
        unsafe { self.mem.load_desc(table, idx) }
    }
    unsafe fn store_desc(&self, table: u64, idx: usize, desc: u64) {
        // SAFETY: forwarded.
        unsafe { self.mem.store_desc(table, idx, desc) }
    }
    unsafe fn read_data(&self, pa: u64, off: usize, buf: &mut [u8]) {
        // SAFETY: forwarded.
        unsafe { self.mem.read_data(pa, off, buf) }
    }
    unsafe fn write_data(&self, pa: u64, off: usize, data: &[u8]) {
        // SAFETY: forwarded.
        unsafe { self.mem.write_data(pa, off, data) }
    }
    unsafe fn copy_page(&self, dst: u64, src: u64) {
        // SAFETY: forwarded.
        unsafe { self.mem.copy_page(dst, src) }
    }
}

/// A zap that dropped the lock and has not flushed yet.
const IN_FLIGHT: op::Pc = op::Pc::ReadPending { then: op::Then::EndZap };

fn cfg() -> TlbConfig {
    TlbConfig::new(PolicyParams::DEFAULT, TlbFeatures::RANGE_AND_TTL)
}

/// An mm with pages written at each of `vas` (in mappings of `RW`
/// covering `[lo, hi)`) that never had an ASID.
fn mm_without_asid(r: &Rig, (lo, hi): (u64, u64), vas: &[u64]) -> Mm {
    let mut a = AddressSpace::new(&r.mem).unwrap();
    let mut g = crate::mm::gather::Gather::new();
    a.mmap(lo, hi - lo, RW, map::FIXED, &r.mem, &mut g, &mut |_| {}).unwrap();
    g.finish(&r.mem, |_| {});
    for &va in vas {
        a.handle_fault(va, Access::Write, &r.mem, &mut |_| panic!("no flush")).unwrap();
    }
    Mm::new(1, a)
}

/// An mm with an ASID and pages written at each of `vas` (in mappings of
/// `RW` covering `[lo, hi)`), loaded on CPU 0 (not in `cpus`: the tests
/// that need it set it).
fn mm_with(r: &Rig, range: (u64, u64), vas: &[u64]) -> Mm {
    let mm = mm_without_asid(r, range, vas);
    let alloc = crate::mm::asid::AsidAllocator::new(4, 1, Default::default()).unwrap();
    alloc.switch_in(r, &mm.ctx);
    assert!(mm.ctx.asid().is_some());
    r.take();
    mm
}

/// Runs `op` to the end, logging where the lock is dropped.
fn run(mm: &Mm, op: &mut Op<crate::mm::pagetable::Arm4k>, c: &TlbConfig, r: &Rig) {
    loop {
        let locked = op.holds_lock();
        let s = op.step(mm, c, r, r);
        if locked && !op.holds_lock() {
            r.push(Ev::Unlock);
        }
        match s {
            Step::Done => return,
            Step::Blocked => panic!("blocked with nothing else running"),
            _ => {}
        }
    }
}

fn call(mm: &Mm, r: &Rig, c: Call) -> (Op<crate::mm::pagetable::Arm4k>, Vec<Ev>) {
    let cfg = cfg();
    let mut op = Op::new(c, &cfg);
    run(mm, &mut op, &cfg, r);
    (op, r.take())
}

fn pos(log: &[Ev], f: impl Fn(&Ev) -> bool) -> usize {
    log.iter().position(f).unwrap_or_else(|| panic!("not in {log:?}"))
}

#[test]
fn munmap_freeing_a_table_flushes_walk_caches_before_unlocking_and_freeing() {
    let r = Rig::new();
    let base = 0x40_0000; // a 2 MiB region of its own
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P]);
    let (op, log) = call(&mm, &r, Call::Munmap { addr: base, len: 4 * P });
    assert_eq!(op.outcome(), Ok(Outcome::Done));
    let issue = pos(&log, |e| matches!(e, Ev::Issue(_)));
    assert_eq!(log[issue], Ev::Issue(vec![OpKind::Rvae1is]), "walk caches too (non-leaf form): {log:?}");
    let complete = pos(&log, |e| *e == Ev::Complete(Scope::Broadcast));
    let first_free = pos(&log, |e| matches!(e, Ev::Free(_) | Ev::FreeTable(_)));
    let unlock = pos(&log, |e| *e == Ev::Unlock);
    assert!(issue < complete && complete < first_free, "flush, its DSB, then frees: {log:?}");
    assert!(first_free < unlock, "a gather that freed tables finishes under the lock: {log:?}");
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::FreeTable(_))).count(), 3, "levels 3, 2, 1: {log:?}");
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::Free(_))).count(), 2);
    assert_eq!(mm.pending(), 0);
}

#[test]
fn a_leaf_only_zap_flushes_after_unlocking() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P, base + 3 * P]);
    let (_, log) = call(&mm, &r, Call::Munmap { addr: base, len: P });
    let unlock = pos(&log, |e| *e == Ev::Unlock);
    let issue = pos(&log, |e| *e == Ev::Issue(vec![OpKind::Vale1is]));
    let complete = pos(&log, |e| *e == Ev::Complete(Scope::Broadcast));
    let free = pos(&log, |e| matches!(e, Ev::Free(_)));
    assert!(unlock < issue && issue < complete && complete < free, "{log:?}");
    // madvise: the mappings stay, no table goes, flushed after the unlock.
    let (_, log) = call(&mm, &r, Call::Madvise { addr: base + P, len: 3 * P, advice: advice::DONTNEED });
    assert!(!log.iter().any(|e| matches!(e, Ev::FreeTable(_))), "madvise frees no table: {log:?}");
    assert!(pos(&log, |e| *e == Ev::Unlock) < pos(&log, |e| matches!(e, Ev::Issue(_))), "{log:?}");
}

#[test]
fn a_zap_finishing_while_another_is_in_flight_flushes_the_whole_asid() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P, base + 3 * P]);
    let c = cfg();
    // A clears its pages under the lock and drops it, its flush not done.
    let mut a = Op::new(Call::Madvise { addr: base, len: 2 * P, advice: advice::DONTNEED }, &c);
    while a.pc() != IN_FLIGHT {
        a.step(&mm, &c, &r, &r);
    }
    r.take();
    // B finds them cleared: nothing of its own to flush, yet it must not
    // return before A's entries are gone.
    let (b, log) = call(&mm, &r, Call::Madvise { addr: base, len: 2 * P, advice: advice::DONTNEED });
    assert!(b.gather().frames().is_empty());
    assert_eq!(
        log.iter().filter(|e| matches!(e, Ev::Issue(_) | Ev::Event(_) | Ev::Complete(_))).cloned().collect::<Vec<_>>(),
        [Ev::Event(Event::NestedFullFlush), Ev::Issue(vec![OpKind::Aside1is]), Ev::Complete(Scope::Broadcast)],
        "{log:?}"
    );
    run(&mm, &mut a, &c, &r);
    assert_eq!(mm.pending(), 0);
    // With the fix off (tlb.nested_fix=off), B returns without any flush.
    let mut off = c;
    off.nested_fix = false;
    let mut a = Op::new(Call::Madvise { addr: base + 3 * P, len: P, advice: advice::DONTNEED }, &off);
    while a.pc() != IN_FLIGHT {
        a.step(&mm, &off, &r, &r);
    }
    r.take();
    let mut b = Op::new(Call::Madvise { addr: base + 3 * P, len: P, advice: advice::DONTNEED }, &off);
    run(&mm, &mut b, &off, &r);
    assert!(!r.take().iter().any(|e| matches!(e, Ev::Issue(_))), "the bug: no flush at all");
    run(&mm, &mut a, &off, &r);
}

#[test]
fn mprotect_and_fork_finish_under_the_lock_and_fall_back_when_racing() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P]);
    let (_, log) = call(&mm, &r, Call::Mprotect { addr: base, len: 4 * P, prot: prot::READ });
    let complete = pos(&log, |e| *e == Ev::Complete(Scope::Broadcast));
    assert!(complete < pos(&log, |e| *e == Ev::Unlock), "write-protect complete before unlocking: {log:?}");
    let (mut f, log) = call(&mm, &r, Call::Fork);
    assert!(f.take_child().is_some());
    assert!(!log.iter().any(|e| matches!(e, Ev::Issue(_))), "read-only already: nothing to flush: {log:?}");
    // A zap in flight: the locked call flushes the whole ASID.
    let c = cfg();
    let mut z = Op::new(Call::Madvise { addr: base + 3 * P, len: P, advice: advice::DONTNEED }, &c);
    while z.pc() != IN_FLIGHT {
        z.step(&mm, &c, &r, &r);
    }
    r.take();
    let (_, log) = call(&mm, &r, Call::Mprotect { addr: base, len: P, prot: RW });
    assert!(log.contains(&Ev::Event(Event::RacingFullFlush)), "{log:?}");
    assert!(log.contains(&Ev::Issue(vec![OpKind::Aside1is])), "{log:?}");
    run(&mm, &mut z, &c, &r);
}

#[test]
fn faults_copy_with_break_before_make_and_invalidate_locally_otherwise() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base]);
    let (mut f, _) = call(&mm, &r, Call::Fork);
    let child = f.take_child().unwrap();
    // Copy-on-write: the leaf is cleared, flushed (leaf form, one page),
    // then the copy mapped; the shared frame stays (the child holds it).
    let (op, log) = call(&mm, &r, Call::Fault { va: base, access: Access::Write });
    let Ok(Outcome::Fault(fl)) = op.outcome() else { panic!("{:?}", op.outcome()) };
    assert_eq!(fl.kind, crate::mm::aspace::FaultKind::CowCopy);
    assert_eq!(
        log,
        [Ev::Issue(vec![OpKind::Vale1is]), Ev::Complete(Scope::Broadcast), Ev::Unlock],
        "break, flush, make: {log:?}"
    );
    // Spurious now: a local invalidation after the unlock.
    let (_, log) = call(&mm, &r, Call::Fault { va: base, access: Access::Read });
    assert_eq!(log, [Ev::Unlock, Ev::Issue(vec![OpKind::Vale1]), Ev::Complete(Scope::Local)], "{log:?}");
    child.discard(&r.mem);
}

#[test]
fn a_fault_racing_a_zap_flushes_before_it_installs() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base]);
    let c = cfg();
    let mut z = Op::new(Call::Madvise { addr: base, len: P, advice: advice::DONTNEED }, &c);
    while z.pc() != IN_FLIGHT {
        z.step(&mm, &c, &r, &r);
    }
    r.take();
    let (_, log) = call(&mm, &r, Call::Fault { va: base, access: Access::Write });
    assert_eq!(
        log[..3],
        [Ev::Event(Event::RacingFullFlush), Ev::Issue(vec![OpKind::Aside1is]), Ev::Complete(Scope::Broadcast)],
        "{log:?}"
    );
    run(&mm, &mut z, &c, &r);
}

#[test]
fn the_exit_teardown_elides_and_frees_only_once_nothing_is_loaded() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P]);
    let c = cfg();
    mm.cpus.store(1, Ordering::Relaxed);
    // Still loaded on CPU 0: nothing may be freed.
    let (op, log) = call(&mm, &r, Call::Teardown);
    assert_eq!(op.outcome(), Err(OpError::StillLoaded { cpus: 1 }));
    assert!(log.is_empty(), "{log:?}");
    // Leaving a dying mm: reserved table, local ASID flush, its DSB.
    switch::leave_dying(&mm, &c, &r);
    assert_eq!(
        r.take(),
        [Ev::Reserved, Ev::Issue(vec![OpKind::Aside1]), Ev::Complete(Scope::Local), Ev::Event(Event::ExitLocalFlush)]
    );
    assert_eq!(mm.cpus.load(Ordering::Relaxed), 0);
    let (_, log) = call(&mm, &r, Call::Teardown);
    assert!(!log.iter().any(|e| matches!(e, Ev::Issue(_))), "elided: {log:?}");
    assert!(log.contains(&Ev::Event(Event::ExitElided)));
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::FreeTable(_))).count(), 4, "every table, the root too");
    assert_eq!(r.mem.outstanding(), 0, "everything freed");
}

#[test]
fn without_elision_the_teardown_flushes_the_asid_once_before_freeing() {
    let r = Rig::new();
    let base = 0x40_0000;
    let mm = mm_with(&r, (base, base + 4 * P), &[base, base + P]);
    let mut c = cfg();
    c.exit_elide = false;
    c.batch = 2; // three batches
    let mut op = Op::new(Call::Teardown, &c);
    run(&mm, &mut op, &c, &r);
    let log = r.take();
    let issues: Vec<_> = log.iter().filter(|e| matches!(e, Ev::Issue(_))).collect();
    assert_eq!(issues, [&Ev::Issue(vec![OpKind::Aside1is])], "one whole-ASID flush: {log:?}");
    let complete = pos(&log, |e| *e == Ev::Complete(Scope::Broadcast));
    assert!(complete < pos(&log, |e| matches!(e, Ev::Free(_) | Ev::FreeTable(_))), "{log:?}");
    assert_eq!(r.mem.outstanding(), 0);
}

#[test]
fn a_full_gather_flushes_its_batch_before_the_zap_goes_on() {
    let r = Rig::new();
    let base = 0x40_0000;
    let vas: Vec<u64> = (0..5).map(|i| base + i * P).collect();
    let mm = mm_with(&r, (base, base + 8 * P), &vas);
    let mut c = cfg();
    c.batch = 2;
    let mut op = Op::new(Call::Madvise { addr: base, len: 8 * P, advice: advice::DONTNEED }, &c);
    run(&mm, &mut op, &c, &r);
    let log = r.take();
    let completes = log.iter().filter(|e| matches!(e, Ev::Complete(_))).count();
    assert_eq!(completes, 3, "two full batches under the lock and the last one after it: {log:?}");
    // Every free follows a completed flush.
    let mut flushed = false;
    for e in &log {
        match e {
            Ev::Complete(_) => flushed = true,
            Ev::Issue(_) => flushed = false,
            Ev::Free(_) => assert!(flushed, "a free before its flush completed: {log:?}"),
            _ => {}
        }
    }
}

/// Each decision's reason, for the calls that make one (the ops come just
/// after their decision: see `Rig::issue`).
#[test]
fn decisions_are_told_with_their_reasons() {
    use Reason::*;
    let r = Rig::new();
    let base = 0x40_0000;
    let c = cfg();
    // A zap that never ran anywhere: no TLBI.
    let mm = mm_without_asid(&r, (base, base + 4 * P), &[base]);
    call(&mm, &r, Call::Munmap { addr: base, len: 4 * P });
    assert_eq!(r.reasons(), [NeverActive]);
    r.take();
    let mm = mm_with(&r, (base, base + 8 * P), &[base, base + P, base + 3 * P]);
    call(&mm, &r, Call::Madvise { addr: base, len: P, advice: advice::DONTNEED });
    assert_eq!(r.reasons(), [Policy(PlanReason::PerPage)]);
    // Copy-on-write, then the same page again: break-before-make, then a
    // local invalidation.
    let (mut f, _) = call(&mm, &r, Call::Fork);
    assert_eq!(r.reasons(), [Policy(PlanReason::Range)], "fork write-protects 3 pages: one range op");
    let child = f.take_child().unwrap();
    call(&mm, &r, Call::Fault { va: base + P, access: Access::Write });
    call(&mm, &r, Call::Fault { va: base + P, access: Access::Write });
    assert_eq!(r.reasons(), [CowBreakBeforeMake, FaultLocal]);
    child.discard(&r.mem);
    // With a zap in flight: the whole-ASID fallbacks.
    let mut z = Op::new(Call::Madvise { addr: base + 3 * P, len: P, advice: advice::DONTNEED }, &c);
    while z.pc() != IN_FLIGHT {
        z.step(&mm, &c, &r, &r);
    }
    call(&mm, &r, Call::Madvise { addr: base + 3 * P, len: P, advice: advice::DONTNEED });
    call(&mm, &r, Call::Mprotect { addr: base, len: P, prot: prot::READ });
    call(&mm, &r, Call::Fault { va: base + 2 * P, access: Access::Write });
    assert_eq!(r.reasons(), [NestedZap, LockedRace, FaultRace]);
    run(&mm, &mut z, &c, &r);
    assert_eq!(r.reasons(), [Policy(PlanReason::PerPage)], "the zap in flight, finishing alone");
    // The reaper's batches.
    call(&mm, &r, Call::Reap);
    let reaped = r.reasons();
    assert!(!reaped.is_empty() && reaped.iter().all(|&x| x == Reaper), "{reaped:?}");
    r.take();
    // The exit: each leaving CPU's local flush, then the teardown.
    let mm = mm_with(&r, (base, base + 4 * P), &[base]);
    switch::leave_dying(&mm, &c, &r);
    call(&mm, &r, Call::Teardown);
    assert_eq!(r.reasons(), [ExitLocal, ExitElided]);
    let mm = mm_with(&r, (base, base + 4 * P), &[base]);
    let mut off = c;
    off.exit_elide = false;
    let mut t = Op::new(Call::Teardown, &off);
    run(&mm, &mut t, &off, &r);
    assert_eq!(r.reasons(), [ExitFlush]);
    r.take();
}

/// `run_walks` (the kernel's setting) makes a walk's page-table writes in
/// one step instead of one a step, and a zap clears a table's leaves in one
/// cursor step: what the calls do, in what order, must not change, and the
/// walks take fewer steps.
#[test]
fn running_walks_in_one_step_changes_nothing_but_the_steps() {
    let base = 0x40_0000;
    let vas: Vec<u64> = (0..40).map(|i| base + i * 3 * P).collect();
    let calls = [
        Call::Mprotect { addr: base, len: 60 * P, prot: prot::READ },
        Call::Fork,
        Call::Munmap { addr: base + 30 * P, len: 70 * P },
        Call::Madvise { addr: base, len: 30 * P, advice: abi::advice::DONTNEED },
        Call::Teardown,
    ];
    let trace = |run_walks: bool| {
        let r = Rig::new();
        let mm = mm_with(&r, (base, base + 120 * P), &vas);
        let mut c = cfg();
        c.run_walks = run_walks;
        c.batch = 7; // gathers fill in the middle of a table
        let mut out = Vec::new();
        for call in calls {
            let mut op = Op::new(call, &c);
            let mut steps = 0;
            loop {
                steps += 1;
                match op.step(&mm, &c, &r, &r) {
                    Step::Done => break,
                    Step::Blocked => panic!("blocked with nothing else running"),
                    _ => {}
                }
            }
            let child_tables = op.take_child().map(|ch| ch.page_table().count_tables(&r.mem));
            out.push(((op.outcome(), child_tables, r.take(), op.gather().totals()), steps));
        }
        out
    };
    let (single, batched) = (trace(false), trace(true));
    for ((call, (s, s_steps)), (b, b_steps)) in calls.iter().zip(single).zip(batched) {
        assert_eq!(s, b, "{call:?}: the same events either way");
        assert!(b_steps < s_steps, "{call:?}: {b_steps} steps batched, {s_steps} one write a step");
    }
}

mod notifier;
mod pages;
mod reclaim;
mod repeat;
mod strategy;
