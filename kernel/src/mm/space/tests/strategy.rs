//! The flush strategies (`shootdown`) over the recording rig: where each
//! flush goes, what targets do by the generation rules, lazy CPUs, the
//! catch-up before TTBR0 holds the tables, and the teardown's evictions.

use super::*;
use crate::mm::asid::AsidAllocator;
use crate::mm::gather::FlushRange;

fn with(strategy: Strategy) -> TlbConfig {
    let mut c = cfg();
    c.strategy = strategy;
    c
}

fn call_with(mm: &Mm, r: &Rig, c: &TlbConfig, call: Call) -> Vec<Ev> {
    let mut op = Op::new(call, c);
    run(mm, &mut op, c, r);
    assert!(op.outcome().is_ok(), "{call:?}: {:?}", op.outcome());
    r.take()
}

fn decides(r: &Rig) -> Vec<Event> {
    core::mem::take(&mut *r.decides.borrow_mut())
}

fn events(log: &[Ev], e: Event) -> usize {
    log.iter().filter(|x| **x == Ev::Event(e)).count()
}

const BASE: u64 = 0x40_0000;

/// An mm with four written pages whose one user runs on CPU 0.
fn alone_on_cpu0(r: &Rig) -> Mm {
    let mm = mm_with(r, (BASE, BASE + 4 * P), &[BASE, BASE + P, BASE + 2 * P, BASE + 3 * P]);
    mm.users.store(1, Ordering::Relaxed);
    mm.cpus.store(0b1, Ordering::Relaxed);
    mm
}

#[test]
fn local_flushes_here_only_when_alone_and_marks_every_other_cpu_stale() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    let c = with(Strategy::Local);
    let log = call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    assert_eq!(decides(&r), [Event::DecideLocal]);
    let publish = pos(&log, |e| *e == Ev::Publish);
    let issue = pos(&log, |e| *e == Ev::Issue(vec![OpKind::Vale1]));
    assert!(publish < issue, "the writes are complete for walkers before the generation: {log:?}");
    let complete = pos(&log, |e| *e == Ev::Complete(Scope::Local));
    let free = pos(&log, |e| matches!(e, Ev::Free(_)));
    assert!(issue < complete && complete < free, "local op, its DSB NSH, then the free: {log:?}");
    assert!(!log.iter().any(|e| matches!(e, Ev::Send(_))), "alone: no IPI: {log:?}");
    assert_eq!(mm.tlb_gen.load(Ordering::Relaxed), 1, "the flush is a generation");
    assert_eq!(mm.cpu_gen[0].load(Ordering::Relaxed), 1, "this CPU is clean up to it");

    // CPU 1 ran the mm earlier and may hold its entries: before its TTBR0
    // holds the tables again it flushes the ASID locally.
    let alloc = AsidAllocator::new(4, 2, Default::default()).unwrap();
    r.cpu.set(1);
    switch::activate(&mm, &alloc, &c, &r);
    let log = r.take();
    let flush = pos(&log, |e| *e == Ev::Issue(vec![OpKind::Aside1]));
    let ttbr = pos(&log, |e| matches!(e, Ev::Ttbr0(_)));
    assert!(flush < ttbr && pos(&log, |e| *e == Ev::Complete(Scope::Local)) < ttbr, "{log:?}");
    assert_eq!(events(&log, Event::StaleFlush), 1);
    assert_eq!(mm.cpu_gen[1].load(Ordering::Relaxed), 1);
    // Current now: the next activation flushes nothing.
    switch::deactivate(Some(&mm), &r);
    switch::activate(&mm, &alloc, &c, &r);
    assert!(!r.take().iter().any(|e| matches!(e, Ev::Issue(_))));
}

#[test]
fn the_catch_up_bugs_show_in_the_sequence() {
    let alloc = AsidAllocator::new(4, 2, Default::default()).unwrap();
    // Catching up after TTBR0 is loaded: walks may use what CPU 1 cached.
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    let mut c = with(Strategy::Local);
    call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    c.bugs.catch_up_after_load = true;
    r.cpu.set(1);
    switch::activate(&mm, &alloc, &c, &r);
    let log = r.take();
    assert!(pos(&log, |e| matches!(e, Ev::Ttbr0(_))) < pos(&log, |e| matches!(e, Ev::Issue(_))), "{log:?}");
    // Without the stale marking nothing tells CPU 1 to flush.
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    let mut c = with(Strategy::Local);
    c.bugs.no_stale_mark = true;
    let log = call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    assert!(log.contains(&Ev::Issue(vec![OpKind::Vale1])), "still flushed here: {log:?}");
    assert_eq!(mm.tlb_gen.load(Ordering::Relaxed), 0);
    r.cpu.set(1);
    switch::activate(&mm, &alloc, &c, &r);
    assert!(!r.take().iter().any(|e| matches!(e, Ev::Issue(_))), "CPU 1 keeps what it cached");
}

#[test]
fn local_broadcasts_for_a_second_user_without_a_generation() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.users.store(2, Ordering::Relaxed); // an adopter counted itself
    let log =
        call_with(&mm, &r, &with(Strategy::Local), Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    assert_eq!(decides(&r), [Event::DecideBroadcast]);
    assert!(log.contains(&Ev::Issue(vec![OpKind::Vale1is])), "{log:?}");
    assert_eq!(mm.tlb_gen.load(Ordering::Relaxed), 0, "a broadcast reaches everyone: no generation");
    // The broadcast strategy never makes one either.
    mm.users.store(1, Ordering::Relaxed);
    let log = call_with(&mm, &r, &cfg(), Call::Madvise { addr: BASE + P, len: P, advice: advice::DONTNEED });
    assert!(log.contains(&Ev::Issue(vec![OpKind::Vale1is])), "{log:?}");
    assert_eq!((decides(&r), mm.tlb_gen.load(Ordering::Relaxed)), (vec![Event::DecideBroadcast], 0));
}

#[test]
fn ipi_reaches_running_cpus_and_lazy_ones_only_when_tables_go() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.users.store(2, Ordering::Relaxed);
    mm.cpus.store(0b111, Ordering::Relaxed);
    mm.lazy.store(0b100, Ordering::Relaxed);
    let c = with(Strategy::Ipi);
    // Leaves only: CPU 2 is lazy and skipped.
    let log = call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    assert_eq!(decides(&r), [Event::DecideIpi]);
    assert_eq!(events(&log, Event::LazySkip), 1, "{log:?}");
    let local = pos(&log, |e| *e == Ev::Complete(Scope::Local));
    let send = pos(&log, |e| *e == Ev::Send(0b010));
    let free = pos(&log, |e| matches!(e, Ev::Free(_)));
    assert!(local < send && send < free, "own flush, the IPIs (acknowledged), then the free: {log:?}");
    assert!(!log.iter().any(|e| matches!(e, Ev::Issue(k) if k.iter().any(|k| k.is_broadcast()))), "{log:?}");
    // Tables freed: the lazy CPU gets one too, and leaves.
    r.serve.set(Some(c));
    let log = call_with(&mm, &r, &c, Call::Munmap { addr: BASE, len: 4 * P });
    let send = pos(&log, |e| *e == Ev::Send(0b110));
    assert!(send < pos(&log, |e| matches!(e, Ev::FreeTable(_))), "{log:?}");
    assert!(log.contains(&Ev::Served(2, Served::Left)), "{log:?}");
    // CPU 1 did not serve the first flush (the rig did not serve then): two
    // generations behind, it flushes the whole ASID; CPU 0 was one behind.
    assert!(log.contains(&Ev::Served(1, Served::Flushed(shootdown::CatchUp::Full))), "{log:?}");
    assert_eq!(log[..2], [Ev::Publish, Ev::Issue(vec![OpKind::Rvae1])], "the range, walk caches too: {log:?}");
    assert_eq!(mm.cpus.load(Ordering::Relaxed), 0b011, "CPU 2 left");
    assert_eq!(mm.lazy.load(Ordering::Relaxed), 0);
    // The bug: freeing tables skips the lazy CPU like any flush.
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.cpus.store(0b101, Ordering::Relaxed);
    mm.lazy.store(0b100, Ordering::Relaxed);
    let mut c = with(Strategy::Ipi);
    c.bugs.lazy_skip_on_free = true;
    let log = call_with(&mm, &r, &c, Call::Munmap { addr: BASE, len: 4 * P });
    assert!(!log.iter().any(|e| matches!(e, Ev::Send(_))), "{log:?}");
}

#[test]
fn auto_picks_local_then_ipi_then_broadcast() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    let mut c = with(Strategy::Auto);
    c.ipi_max = 2;
    let madvise = |va| Call::Madvise { addr: va, len: P, advice: advice::DONTNEED };
    call_with(&mm, &r, &c, madvise(BASE));
    mm.users.store(2, Ordering::Relaxed);
    mm.cpus.store(0b011, Ordering::Relaxed);
    call_with(&mm, &r, &c, madvise(BASE + P));
    mm.cpus.store(0b111, Ordering::Relaxed);
    let log = call_with(&mm, &r, &c, madvise(BASE + 2 * P));
    assert_eq!(decides(&r), [Event::DecideLocal, Event::DecideIpi, Event::DecideBroadcast]);
    assert!(log.contains(&Ev::Issue(vec![OpKind::Vale1is])), "3 CPUs > ipi_max: {log:?}");
}

/// CPU 1 holds `mm` and is `behind` generations behind; a request made
/// generation `new_gen` of a one-page range.
fn serve_on_1(c: &TlbConfig, behind: u64, lazy: bool, freed: bool) -> (Served, Vec<Ev>) {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.cpus.store(0b11, Ordering::Relaxed);
    mm.lazy.store(if lazy { 0b10 } else { 0 }, Ordering::Relaxed);
    mm.tlb_gen.store(5, Ordering::Relaxed);
    mm.cpu_gen[1].store(5 - behind, Ordering::Relaxed);
    let range = FlushRange { start: BASE, end: BASE + P, stride: P, tables_freed: freed, leaf_level: Some(3) };
    let req = Shootdown { new_gen: 5, asid: 1, range: Some(range), freed_tables: freed, dying: false };
    r.cpu.set(1);
    let s = shootdown::serve(&mm, &req, c, &r);
    assert_eq!(mm.cpu_gen[1].load(Ordering::Relaxed), if s == Served::Left { 5 - behind } else { 5 });
    (s, r.take())
}

#[test]
fn a_target_catches_up_by_x86s_rules() {
    let c = with(Strategy::Ipi);
    let (s, log) = serve_on_1(&c, 1, false, false);
    assert_eq!(s, Served::Flushed(shootdown::CatchUp::Partial));
    assert_eq!(log[2..4], [Ev::Issue(vec![OpKind::Vale1]), Ev::Complete(Scope::Local)], "{log:?}");
    let (s, log) = serve_on_1(&c, 2, false, false);
    assert_eq!(s, Served::Flushed(shootdown::CatchUp::Full), "two behind: the whole ASID");
    assert!(log.contains(&Ev::Issue(vec![OpKind::Aside1])), "{log:?}");
    let (s, log) = serve_on_1(&c, 0, false, false);
    assert_eq!(s, Served::Flushed(shootdown::CatchUp::None));
    assert!(!log.iter().any(|e| matches!(e, Ev::Issue(_))), "{log:?}");
    // Lazy: stays for a leaf flush, leaves when tables go.
    assert_eq!(serve_on_1(&c, 1, true, false).0, Served::Flushed(shootdown::CatchUp::Partial));
    let (s, log) = serve_on_1(&c, 1, true, true);
    assert_eq!(s, Served::Left);
    assert_eq!(log[1], Ev::Reserved, "{log:?}");
    // The bug: a partial flush two generations behind.
    let mut bad = c;
    bad.bugs.partial_any_gen = true;
    assert_eq!(serve_on_1(&bad, 2, false, false).0, Served::Flushed(shootdown::CatchUp::Partial));
}

#[test]
fn the_teardown_makes_lazy_holders_leave_before_it_frees() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.users.store(0, Ordering::Relaxed);
    mm.cpus.store(0b110, Ordering::Relaxed);
    mm.lazy.store(0b110, Ordering::Relaxed);
    let c = with(Strategy::Ipi);
    r.serve.set(Some(c));
    let log = call_with(&mm, &r, &c, Call::Teardown);
    let send = pos(&log, |e| *e == Ev::Send(0b110));
    let first_free = pos(&log, |e| matches!(e, Ev::Free(_) | Ev::FreeTable(_)));
    assert!(send < first_free, "{log:?}");
    assert_eq!(events(&log, Event::LazyLeave), 2);
    assert_eq!(events(&log, Event::ExitLocalFlush), 2, "each drops the dying ASID: {log:?}");
    assert_eq!(events(&log, Event::ExitElided), 1, "and the teardown still elides its flush");
    // A CPU running the mm (not lazy) at teardown: nothing is freed.
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.cpus.store(0b110, Ordering::Relaxed);
    mm.lazy.store(0b100, Ordering::Relaxed);
    let mut op = Op::new(Call::Teardown, &c);
    run(&mm, &mut op, &c, &r);
    assert_eq!(op.outcome(), Err(OpError::StillLoaded { cpus: 0b110 }));
}

#[test]
fn a_cpu_skipped_while_lazy_flushes_everything_when_it_comes_back() {
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    mm.cpus.store(0b101, Ordering::Relaxed);
    mm.lazy.store(0b100, Ordering::Relaxed);
    let c = with(Strategy::Local);
    call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    assert_eq!(mm.skipped.load(Ordering::Relaxed), 0b100, "CPU 2 was skipped while lazy");
    // Its TTBR0 held the live tables: a walk may have cached a new entry
    // beside the stale one, which only VMALLE1 is sure to remove.
    r.cpu.set(2);
    switch::leave_lazy(&mm, &c, &r);
    let log = r.take();
    assert_eq!(log[..2], [Ev::Issue(vec![OpKind::Vmalle1]), Ev::Complete(Scope::Local)], "{log:?}");
    assert_eq!(events(&log, Event::StaleFlush), 1);
    assert_eq!((mm.skipped.load(Ordering::Relaxed), mm.cpu_gen[2].load(Ordering::Relaxed)), (0, 1));
    // Caught up: the next return from lazy flushes nothing.
    switch::enter_lazy(&mm, &r);
    switch::leave_lazy(&mm, &c, &r);
    assert!(!r.take().iter().any(|e| matches!(e, Ev::Issue(_))));
    // A CPU never skipped catches up by ASID only.
    let r = Rig::new();
    let mm = alone_on_cpu0(&r);
    call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
    let alloc = AsidAllocator::new(4, 2, Default::default()).unwrap();
    r.cpu.set(1);
    switch::activate(&mm, &alloc, &c, &r);
    assert!(r.take().contains(&Ev::Issue(vec![OpKind::Aside1])));
}
