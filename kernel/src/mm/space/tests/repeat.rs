//! The repeat-TLBI workaround (`super::super::repeat`, `tlb.repeat_tlbi`)
//! over the recording rig: for each mode, the exact op and barrier sequence
//! of a per-page, a range, a whole-ASID and a batched (reclaim) flush; the
//! extra instructions before any frame is freed; none for an elided exit,
//! nor for local flushes (counted as exempt).

use super::*;
use crate::mm::space::reclaim::Batch;
use crate::mm::space::repeat::ONCE_OP;
use crate::mm::tlb::RepeatTlbi::{self, Each, Off, Once};

const BASE: u64 = 0x40_0000;
const B: Scope = Scope::Broadcast;

fn with(mode: RepeatTlbi, features: TlbFeatures) -> TlbConfig {
    let mut c = TlbConfig::new(PolicyParams::DEFAULT, features);
    c.repeat_tlbi = mode;
    c
}

fn call_with(mm: &Mm, r: &Rig, c: &TlbConfig, call: Call) -> Vec<Ev> {
    let mut op = Op::new(call, c);
    run(mm, &mut op, c, r);
    assert!(op.outcome().is_ok(), "{call:?}: {:?}", op.outcome());
    r.take()
}

/// The TLB maintenance of `log`, in order, each run of frees as one
/// `Free(0)`.
fn tlb(log: &[Ev]) -> Vec<Ev> {
    let mut out: Vec<Ev> = Vec::new();
    for e in log {
        match e {
            Ev::Issue(_) | Ev::Complete(_) | Ev::RepeatTlbi(_) | Ev::RepeatDsb => out.push(e.clone()),
            Ev::Free(_) | Ev::FreeTable(_) if out.last() != Some(&Ev::Free(0)) => out.push(Ev::Free(0)),
            _ => {}
        }
    }
    out
}

/// The ops issued since the last call.
fn ops(r: &Rig) -> Vec<TlbiOp> {
    core::mem::take(&mut *r.ops.borrow_mut())
}

fn kinds(ops: &[TlbiOp]) -> Vec<OpKind> {
    ops.iter().map(|o| o.kind(B)).collect()
}

/// Four written pages, three of them munmapped: per-page ops (no range
/// ops on this CPU), leaf only (the tables keep the fourth page).
fn per_page(mode: RepeatTlbi) -> (Vec<Ev>, Vec<TlbiOp>) {
    let r = Rig::new();
    let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P, BASE + 2 * P, BASE + 3 * P]);
    ops(&r);
    let log = call_with(&mm, &r, &with(mode, TlbFeatures::NONE), Call::Munmap { addr: BASE, len: 3 * P });
    let ops = ops(&r);
    assert_eq!(kinds(&ops), [OpKind::Vale1is; 3], "{log:?}");
    (tlb(&log), ops)
}

#[test]
fn per_page_flush_sequences() {
    let (off, ops) = per_page(Off);
    assert_eq!(off, [Ev::Issue(kinds(&ops)), Ev::Complete(B), Ev::Free(0)]);
    // The original workaround: every TLBI again after a DSB, before the
    // flush's own DSB completes the repeats.
    let (each, ops) = per_page(Each);
    let rep = |i: usize| [Ev::RepeatDsb, Ev::RepeatTlbi(ops[i])];
    let want: Vec<Ev> = [vec![Ev::Issue(kinds(&ops))], rep(0).to_vec(), rep(1).to_vec(), rep(2).to_vec()]
        .concat()
        .into_iter()
        .chain([Ev::Complete(B), Ev::Free(0)])
        .collect();
    assert_eq!(each, want);
    // The optimised one: one extra TLBI (VALE1IS, operand 0) and DSB after
    // the final DSB, before the frees.
    let (once, ops) = per_page(Once);
    assert_eq!(once, [Ev::Issue(kinds(&ops)), Ev::Complete(B), Ev::RepeatTlbi(ONCE_OP), Ev::RepeatDsb, Ev::Free(0)]);
    assert_eq!(ONCE_OP.kind(B), OpKind::Vale1is);
    assert_eq!(crate::mm::tlb::range::encode(&ONCE_OP), Ok(0), "TLBI VALE1IS, XZR: ASID 0 (never handed out), VA 0");
}

/// What a single flush of `ops` looks like under `mode`, then its frees.
fn flushed(mode: RepeatTlbi, ops: &[TlbiOp]) -> Vec<Ev> {
    let mut v = vec![Ev::Issue(kinds(ops))];
    if mode == Each {
        v.extend(ops.iter().flat_map(|&op| [Ev::RepeatDsb, Ev::RepeatTlbi(op)]));
    }
    v.push(Ev::Complete(B));
    if mode == Once {
        v.extend([Ev::RepeatTlbi(ONCE_OP), Ev::RepeatDsb]);
    }
    v.push(Ev::Free(0));
    v
}

#[test]
fn range_flush_sequences() {
    for mode in RepeatTlbi::ALL {
        let r = Rig::new();
        let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P]);
        ops(&r);
        // The table goes too: a non-leaf range op, under the lock.
        let log = call_with(&mm, &r, &with(mode, TlbFeatures::RANGE_AND_TTL), Call::Munmap { addr: BASE, len: 4 * P });
        let ops = ops(&r);
        assert_eq!(kinds(&ops), [OpKind::Rvae1is], "{mode:?}: {log:?}");
        assert_eq!(tlb(&log), flushed(mode, &ops), "{mode:?}: {log:?}");
        assert!(pos(&log, |e| matches!(e, Ev::FreeTable(_))) < pos(&log, |e| *e == Ev::Unlock), "{log:?}");
    }
}

#[test]
fn whole_asid_flush_sequences() {
    for mode in RepeatTlbi::ALL {
        let r = Rig::new();
        let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P]);
        ops(&r);
        let mut c = with(mode, TlbFeatures::RANGE_AND_TTL);
        c.exit_elide = false;
        let log = call_with(&mm, &r, &c, Call::Teardown);
        let ops = ops(&r);
        assert_eq!(ops, [TlbiOp::Asid { asid: mm.ctx.asid().unwrap() }], "{mode:?}: {log:?}");
        assert_eq!(tlb(&log), flushed(mode, &ops), "{mode:?}: {log:?}");
    }
}

#[test]
fn an_elided_exit_repeats_nothing() {
    for mode in RepeatTlbi::ALL {
        let r = Rig::new();
        let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P]);
        let log = call_with(&mm, &r, &with(mode, TlbFeatures::RANGE_AND_TTL), Call::Teardown);
        assert!(log.contains(&Ev::Event(Event::ExitElided)), "{log:?}");
        assert_eq!(tlb(&log), [Ev::Free(0)], "{mode:?}: nothing issued, so nothing to repeat: {log:?}");
    }
}

/// A reclaim batch of four pages: each page's TLBI issued without a DSB,
/// then the batch finished. The TLB sequence of both halves.
fn batch(mode: RepeatTlbi) -> (Vec<Ev>, Vec<TlbiOp>, Vec<Ev>) {
    let r = Rig::new();
    let vas: Vec<u64> = (0..4).map(|i| BASE + i * P).collect();
    let mm = mm_with(&r, (BASE, BASE + 16 * P), &vas);
    let c = with(mode, TlbFeatures::RANGE_AND_TTL);
    let mut b = Batch::new();
    ops(&r);
    for &va in &vas {
        let pa = crate::mm::pagetable::desc_pa(mm.with_aspace(|a| a.translate(va, &r.mem)).unwrap());
        let slot = r.mem.swap_alloc().unwrap();
        let i = b.add(pa, slot).unwrap();
        let mut op = Op::new(Call::Reclaim { va, pa, slot }, &c);
        run(&mm, &mut op, &c, &r);
        assert_eq!(op.outcome(), Ok(Outcome::Done));
        b.unmapped(i, &c, &r);
    }
    let unmapped = tlb(&r.take());
    let ops = ops(&r);
    b.run(&c, &r, &r);
    (unmapped, ops, tlb(&r.take()))
}

#[test]
fn batched_flush_sequences() {
    for mode in RepeatTlbi::ALL {
        let (unmapped, ops, finish) = batch(mode);
        assert_eq!(kinds(&ops), [OpKind::Vale1is; 4], "{mode:?}");
        // Issued without waiting; under `each` every TLBI is repeated at
        // once, its DSB waiting for it (the cost that made Linux skip
        // batching on these cores before a8f78680ee6b).
        let want: Vec<Ev> = ops
            .iter()
            .flat_map(|&op| {
                let mut v = vec![Ev::Issue(vec![OpKind::Vale1is])];
                if mode == Each {
                    v.extend([Ev::RepeatDsb, Ev::RepeatTlbi(op)]);
                }
                v
            })
            .collect();
        assert_eq!(unmapped, want, "{mode:?}");
        // One DSB for the batch; under `once`, one extra TLBI and DSB after
        // it, for all four, before any frame of the batch is freed.
        let want = match mode {
            Once => vec![Ev::Complete(B), Ev::RepeatTlbi(ONCE_OP), Ev::RepeatDsb, Ev::Free(0)],
            Off | Each => vec![Ev::Complete(B), Ev::Free(0)],
        };
        assert_eq!(finish, want, "{mode:?}");
    }
}

#[test]
fn local_flushes_are_not_repeated_and_are_counted_as_exempt() {
    for mode in RepeatTlbi::ALL {
        let r = Rig::new();
        let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P, BASE + 2 * P, BASE + 3 * P]);
        mm.users.store(1, Ordering::Relaxed);
        mm.cpus.store(0b1, Ordering::Relaxed);
        let mut c = with(mode, TlbFeatures::RANGE_AND_TTL);
        c.strategy = Strategy::Local;
        let log = call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
        assert_eq!(tlb(&log), [Ev::Issue(vec![OpKind::Vale1]), Ev::Complete(Scope::Local), Ev::Free(0)], "{log:?}");
        let exempt = log.iter().filter(|e| **e == Ev::Event(Event::RepeatLocalExempt)).count();
        assert_eq!(exempt, mode.is_on() as usize, "{mode:?}: {log:?}");
    }
}

#[test]
fn ipi_targets_flush_locally_and_are_not_repeated() {
    for mode in RepeatTlbi::ALL {
        let r = Rig::new();
        let mm = mm_with(&r, (BASE, BASE + 4 * P), &[BASE, BASE + P]);
        mm.users.store(2, Ordering::Relaxed);
        mm.cpus.store(0b11, Ordering::Relaxed);
        let mut c = with(mode, TlbFeatures::RANGE_AND_TTL);
        c.strategy = Strategy::Ipi;
        r.serve.set(Some(c));
        let log = call_with(&mm, &r, &c, Call::Madvise { addr: BASE, len: P, advice: advice::DONTNEED });
        assert!(log.contains(&Ev::Send(0b10)), "{log:?}");
        let seq = tlb(&log);
        assert!(!seq.iter().any(|e| matches!(e, Ev::RepeatTlbi(_) | Ev::RepeatDsb)), "{mode:?}: {log:?}");
        assert!(!seq.contains(&Ev::Complete(B)), "no broadcast: {log:?}");
        // This CPU's and the target's local flushes.
        let exempt = log.iter().filter(|e| **e == Ev::Event(Event::RepeatLocalExempt)).count();
        assert_eq!(exempt, 2 * mode.is_on() as usize, "{mode:?}: {log:?}");
    }
}
