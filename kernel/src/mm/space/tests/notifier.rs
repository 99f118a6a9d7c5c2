//! mmu notifiers over the recording rig: where the secondary invalidation
//! goes in each call's sequence (with the primary flush, acknowledged
//! before any free), the invalidate-range bracket, the teardown's release,
//! and `mmu.notifier=late`; and the device cache over real tables.

use super::*;
use crate::mm::space::notifier::{DevAccess, DevTlb};

const BASE: u64 = 0x40_0000;

fn bound(r: &Rig, vas: &[u64]) -> Mm {
    let mm = mm_with(r, (BASE, BASE + 8 * P), vas);
    mm.subscribe(0);
    mm
}

fn run_with(mm: &Mm, r: &Rig, c: &TlbConfig, call: Call) -> Vec<Ev> {
    let mut op = Op::new(call, c);
    run(mm, &mut op, c, r);
    assert!(op.outcome().is_ok(), "{call:?}: {:?}", op.outcome());
    assert_eq!(mm.invalidating(), 0, "every start has its end");
    r.take()
}

fn secondaries(log: &[Ev]) -> Vec<Invalidation> {
    log.iter().filter_map(|e| if let Ev::Secondary(_, i) = e { Some(*i) } else { None }).collect()
}

fn first_free(log: &[Ev]) -> usize {
    pos(log, |e| matches!(e, Ev::Free(_) | Ev::FreeTable(_)))
}

#[test]
fn munmap_tells_the_device_with_its_flush_and_frees_after_the_acknowledgement() {
    let r = Rig::new();
    let mm = bound(&r, &[BASE, BASE + P]);
    let asid = mm.ctx.asid().unwrap();
    let log = run_with(&mm, &r, &cfg(), Call::Munmap { addr: BASE, len: 2 * P });
    assert_eq!(secondaries(&log), [Invalidation { asid, range: Some((BASE, BASE + 2 * P)), release: false }]);
    let (sec, ack) = (pos(&log, |e| matches!(e, Ev::Secondary(..))), pos(&log, |e| *e == Ev::SecAcked));
    let issue = pos(&log, |e| matches!(e, Ev::Issue(_)));
    let complete = pos(&log, |e| matches!(e, Ev::Complete(_)));
    assert!(sec < issue, "told where the primary flush is planned, before it is issued: {log:?}");
    assert!(complete < ack && ack < first_free(&log), "acknowledged after the DSB, before any free: {log:?}");
    assert_eq!(log.iter().filter(|e| **e == Ev::Event(Event::MnRange)).count(), 1);
}

#[test]
fn every_call_that_changes_entries_tells_the_device_and_brackets_its_range() {
    let r = Rig::new();
    let mm = bound(&r, &[BASE, BASE + P, BASE + 2 * P, BASE + 3 * P]);
    let c = cfg();
    let calls = [
        Call::Mprotect { addr: BASE, len: P, prot: prot::READ },
        Call::Madvise { addr: BASE + P, len: P, advice: advice::DONTNEED },
        Call::Mmap { addr: BASE + 2 * P, len: P, prot: RW, flags: map::FIXED },
        Call::Fork,
    ];
    for call in calls {
        let log = run_with(&mm, &r, &c, call);
        assert_eq!(secondaries(&log).len(), 1, "{call:?}: {log:?}");
        assert!(log.contains(&Ev::Event(Event::MnRange)), "{call:?}");
        if let Some(free) = log.iter().position(|e| matches!(e, Ev::Free(_) | Ev::FreeTable(_))) {
            assert!(pos(&log, |e| *e == Ev::SecAcked) < free, "{call:?}: {log:?}");
        }
    }
    // A fault that fills a page changes no entry a device may hold.
    let log = run_with(&mm, &r, &c, Call::Fault { va: BASE + 5 * P, access: Access::Write });
    assert!(secondaries(&log).is_empty() && !log.contains(&Ev::Event(Event::MnRange)), "{log:?}");
    // A copy-on-write break does: the old entry goes from the device too,
    // before the old frame is put.
    let log = run_with(&mm, &r, &c, Call::Fault { va: BASE + 3 * P, access: Access::Write });
    assert_eq!(secondaries(&log).len(), 1, "{log:?}");
}

#[test]
fn an_mm_without_subscribers_tells_nobody() {
    let r = Rig::new();
    let mm = mm_with(&r, (BASE, BASE + 8 * P), &[BASE]);
    let log = run_with(&mm, &r, &cfg(), Call::Munmap { addr: BASE, len: P });
    assert!(secondaries(&log).is_empty() && !log.contains(&Ev::SecAcked), "{log:?}");
    assert!(!log.contains(&Ev::Event(Event::MnRange)));
}

#[test]
fn the_teardown_releases_the_device_even_when_its_own_flush_is_elided() {
    let r = Rig::new();
    let mm = bound(&r, &[BASE, BASE + P]);
    let asid = mm.ctx.asid().unwrap();
    let log = run_with(&mm, &r, &cfg(), Call::Teardown);
    assert!(log.contains(&Ev::Event(Event::ExitElided)), "{log:?}");
    assert!(!log.iter().any(|e| matches!(e, Ev::Issue(_))), "no TLBI: {log:?}");
    assert_eq!(secondaries(&log), [Invalidation { asid, range: None, release: true }]);
    assert!(pos(&log, |e| *e == Ev::SecAcked) < first_free(&log), "{log:?}");
}

#[test]
fn late_notifier_tells_the_device_only_after_the_free() {
    let r = Rig::new();
    let mm = bound(&r, &[BASE, BASE + P]);
    let mut c = cfg();
    c.notifier_late = true;
    let log = run_with(&mm, &r, &c, Call::Munmap { addr: BASE, len: 2 * P });
    assert!(!log.contains(&Ev::SecAcked), "nobody waits: {log:?}");
    let sec = pos(&log, |e| matches!(e, Ev::Secondary(..)));
    assert!(first_free(&log) < sec, "the demonstration bug: freed first: {log:?}");
}

#[test]
fn the_device_cache_walks_real_tables_and_drops_what_it_is_told() {
    let r = Rig::new();
    let mm = bound(&r, &[BASE, BASE + P]);
    let asid = mm.ctx.asid().unwrap();
    let mut dev: DevTlb<2> = DevTlb::new();
    let tr = |dev: &mut DevTlb<2>, va: u64, write: bool| {
        // SAFETY: the device is subscribed, and nothing frees tables during
        // the call (single-threaded).
        unsafe { dev.translate(&mm, asid, va, write, &r.mem) }
    };
    let a = tr(&mut dev, BASE + 8, true);
    let DevAccess::Filled(e) = a else { panic!("{a:?}") };
    assert!(e.writable && e.page == BASE);
    assert_eq!(tr(&mut dev, BASE + 16, false), DevAccess::Hit(e));
    // Unmapped: a fault, not a fill.
    assert_eq!(tr(&mut dev, BASE + 6 * P, false), DevAccess::Fault);
    // While a range is being invalidated, fills wait.
    mm.range_start();
    assert_eq!(tr(&mut dev, BASE + P, false), DevAccess::Retry);
    mm.range_end();
    assert!(matches!(tr(&mut dev, BASE + P, false), DevAccess::Filled(_)));
    assert_eq!(dev.len(), 2);
    // Bounded: a third entry replaces one.
    mm.with_aspace(|a| a.handle_fault(BASE + 2 * P, Access::Write, &r.mem, &mut |_| {})).unwrap();
    assert!(matches!(tr(&mut dev, BASE + 2 * P, false), DevAccess::Filled(_)));
    assert_eq!(dev.len(), 2);
    assert_eq!(dev.invalidate(&Invalidation { asid, range: Some((BASE + 2 * P, BASE + 3 * P)), release: false }), 1);
    assert_eq!(dev.invalidate(&Invalidation { asid: asid + 1, range: None, release: false }), 0, "another ASID");
    assert_eq!(dev.invalidate(&Invalidation { asid, range: None, release: false }), 1);
    assert!(dev.is_empty());
}
