//! Sequential unit tests of the allocator. Concurrency is checked by the
//! model checker in `mm::model::asid_world`.

use super::*;
use core::cell::Cell;

/// A CPU that counts its local flushes.
struct FakeCpu {
    cpu: usize,
    flushes: Cell<u32>,
}

impl FakeCpu {
    fn new(cpu: usize) -> Self {
        Self { cpu, flushes: Cell::new(0) }
    }
}

impl AsidHw for FakeCpu {
    fn cpu_id(&self) -> usize {
        self.cpu
    }
    fn flush_local_tlb_all(&self) {
        self.flushes.set(self.flushes.get() + 1);
    }
}

fn alloc(bits: u32, ncpus: usize) -> AsidAllocator {
    AsidAllocator::new(bits, ncpus, Bugs::NONE).unwrap()
}

fn mms(n: usize) -> Vec<MmContext> {
    (0..n).map(|_| MmContext::new()).collect()
}

#[test]
fn construction_checks_width_and_cpu_count() {
    assert_eq!(AsidAllocator::new(1, 1, Bugs::NONE).err(), Some(AsidError::BadWidth { bits: 1 }));
    assert_eq!(AsidAllocator::new(17, 1, Bugs::NONE).err(), Some(AsidError::BadWidth { bits: 17 }));
    assert_eq!(AsidAllocator::new(8, 0, Bugs::NONE).err(), Some(AsidError::BadCpuCount { ncpus: 0 }));
    assert_eq!(AsidAllocator::new(8, 9, Bugs::NONE).err(), Some(AsidError::BadCpuCount { ncpus: 9 }));
    // 2 bits: 3 user ASIDs, so at most 2 CPUs (one must stay free after a rollover).
    assert!(AsidAllocator::new(2, 2, Bugs::NONE).is_ok());
    let e = AsidAllocator::new(2, 3, Bugs::NONE).err();
    assert_eq!(e, Some(AsidError::TooFewAsids { bits: 2, ncpus: 3 }));
    assert_eq!(format!("{}", e.unwrap()), "2-bit ASIDs give 3 user ASIDs, need more than 3 (one per CPU)");
    assert_eq!(alloc(3, 4).max_pinned(), 2);
    assert_eq!(alloc(16, 8).max_pinned(), 65535 - 9);
}

#[test]
fn asid_zero_is_never_handed_out_and_ids_stay_in_width() {
    for bits in 2..=5 {
        let a = alloc(bits, 1);
        let cpu = FakeCpu::new(0);
        let all = mms(40);
        for round in 0..3 {
            for (i, mm) in all.iter().enumerate() {
                let asid = a.switch_in(&cpu, mm);
                assert!(
                    asid != 0 && (asid as u32) < (1 << bits),
                    "bits={bits} round={round} mm={i}: expected ASID in 1..{}, got {asid}",
                    1 << bits
                );
                assert_eq!(mm.asid(), Some(asid));
            }
        }
    }
}

#[test]
fn fast_path_needs_no_lock_and_no_flush() {
    let a = alloc(4, 2);
    let cpu = FakeCpu::new(0);
    let m = mms(2);
    let x = a.switch_in(&cpu, &m[0]);
    let y = a.switch_in(&cpu, &m[1]);
    let before = a.stats();
    for _ in 0..10 {
        assert_eq!(a.switch_in(&cpu, &m[0]), x);
        assert_eq!(a.switch_in(&cpu, &m[1]), y);
    }
    let s = a.stats();
    assert_eq!(s.fast_switches - before.fast_switches, 20, "stats: {s:?}");
    assert_eq!(s.slow_switches, before.slow_switches, "stats: {s:?}");
    assert_eq!(cpu.flushes.get(), 0);
}

#[test]
fn rollover_flushes_each_cpu_once_before_new_generation() {
    // 2 bits, 2 CPUs: 3 user ASIDs.
    let a = alloc(2, 2);
    let (c0, c1) = (FakeCpu::new(0), FakeCpu::new(1));
    let m = mms(4);
    let on_c1 = a.switch_in(&c1, &m[0]);
    a.switch_in(&c0, &m[1]);
    a.switch_in(&c0, &m[2]);
    assert_eq!(a.stats().rollovers, 0);
    // The fourth mm exhausts the generation.
    a.switch_in(&c0, &m[3]);
    let s = a.stats();
    assert_eq!(s.rollovers, 1, "stats: {s:?}");
    assert_eq!(c0.flushes.get(), 1, "the CPU that rolled over flushes in the same switch");
    assert_eq!(c1.flushes.get(), 0, "c1 flushes lazily");
    // c1 was running m0 at the rollover: its ASID was reserved, m0 keeps it.
    assert_eq!(a.switch_in(&c1, &m[0]), on_c1, "m0 lost its reserved ASID");
    assert_eq!(c1.flushes.get(), 1, "c1 pays its flush on its first switch after the rollover");
    assert_eq!(a.switch_in(&c1, &m[0]), on_c1);
    assert_eq!(c1.flushes.get(), 1, "and only once");
    assert_eq!(a.stats().rollover_flushes, 2);
}

#[test]
fn running_task_keeps_its_asid_across_many_rollovers() {
    let a = alloc(3, 2);
    let (c0, c1) = (FakeCpu::new(0), FakeCpu::new(1));
    let long = MmContext::new();
    let asid = a.switch_in(&c1, &long);
    let churn = mms(30);
    for round in 0..10 {
        for mm in &churn {
            let got = a.switch_in(&c0, mm);
            assert_ne!(got, asid, "round {round}: a running task's ASID went to another mm");
        }
    }
    assert!(a.stats().rollovers >= 10, "stats: {:?}", a.stats());
    assert_eq!(a.switch_in(&c0, &long), asid, "long-running mm moved CPUs and changed ASID");
}

#[test]
fn pinned_asid_survives_rollovers_and_is_never_reused() {
    let a = alloc(3, 1); // 7 user ASIDs, 1 CPU: up to 5 pinned.
    let cpu = FakeCpu::new(0);
    let pinned = mms(5);
    let asids: Vec<u16> = pinned.iter().map(|m| a.pin(&cpu, m).unwrap()).collect();
    assert_eq!(a.stats().pinned, 5);
    let extra = MmContext::new();
    assert_eq!(a.pin(&cpu, &extra), Err(AsidError::TooManyPinned { max: 5 }));
    let churn = mms(10);
    for _ in 0..5 {
        for mm in &churn {
            let got = a.switch_in(&cpu, mm);
            assert!(!asids.contains(&got), "pinned ASID {got} handed to another mm ({asids:?})");
        }
    }
    assert!(a.stats().rollovers >= 5);
    for (m, &asid) in pinned.iter().zip(&asids) {
        assert_eq!(a.switch_in(&cpu, m), asid, "pinned mm lost its ASID");
        assert_eq!(m.asid(), Some(asid));
    }
    // Pins nest; the last unpin frees the slot.
    assert_eq!(a.pin(&cpu, &pinned[0]), Ok(asids[0]));
    a.unpin(&cpu, &pinned[0]);
    assert!(pinned[0].is_pinned());
    a.unpin(&cpu, &pinned[0]);
    assert!(!pinned[0].is_pinned());
    assert_eq!(a.stats().pinned, 4);
    assert!(a.pin(&cpu, &extra).is_ok());
    // release drops whatever pins are left.
    a.pin(&cpu, &pinned[1]).unwrap();
    a.release(&cpu, &pinned[1]);
    assert!(!pinned[1].is_pinned());
    assert_eq!(a.stats().pinned, 4);
}

#[test]
fn wide_asids_are_distinct_within_a_generation() {
    let a = alloc(16, 4);
    let cpu = FakeCpu::new(3);
    let all = mms(3000);
    let mut seen = std::collections::HashSet::new();
    for mm in &all {
        let asid = a.switch_in(&cpu, mm);
        assert!(seen.insert(asid), "ASID {asid} given twice in one generation");
    }
    let s = a.stats();
    assert_eq!((s.rollovers, s.allocations), (0, 3000), "stats: {s:?}");
}

#[test]
fn exited_mm_asid_is_not_reused_before_rollover() {
    let a = alloc(2, 1);
    let cpu = FakeCpu::new(0);
    let first = MmContext::new();
    let dead = a.switch_in(&cpu, &first);
    a.release(&cpu, &first); // `first` is dead from here on
    let fresh = mms(2);
    for mm in &fresh {
        assert_ne!(a.switch_in(&cpu, mm), dead, "dead mm's ASID reused in its generation");
    }
    assert_eq!(a.stats().rollovers, 0);
}

#[test]
fn stepwise_ops_report_phases() {
    let a = alloc(2, 1);
    let cpu = FakeCpu::new(0);
    let mm = MmContext::new();
    let mut op = AsidOp::new(Request::Switch);
    let mut phases = vec![op.phase()];
    loop {
        match a.step(&mut op, &cpu, &mm) {
            Step::Done(r) => {
                assert_eq!(r.map(asid_of), Ok(1));
                break;
            }
            Step::Blocked => panic!("blocked with no other CPU"),
            Step::Ran => phases.push(op.phase()),
        }
    }
    // First switch on a CPU: active is 0, so straight to the lock.
    assert_eq!(phases[..3], [Phase::FastPath, Phase::FastPath, Phase::WaitLock]);
    assert!(phases.contains(&Phase::Locked));
    assert_eq!(op.phase(), Phase::Done);
}
