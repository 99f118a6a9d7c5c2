//! Host tests of the address space against simulated physical memory. A
//! small CPU model (`load`/`store`) does what the MMU and the kernel's trap
//! path do: try the access through the page tables, fault if the entry does
//! not allow it, retry once.
#![forbid(unsafe_code)]

mod cow;

use std::cell::RefCell;

use super::test_mem::TestMem;
use super::*;
use crate::mm::gather::BATCH;
use crate::mm::pagetable::walk_for_tests as walk;
use abi::errno::{EFAULT, EINVAL, ENOMEM};
use abi::prot::{EXEC as X, NONE, READ as R, WRITE as W};

const RW: u64 = R | W;
const P: u64 = PAGE_SIZE;
const MB2: u64 = 2 << 20;

/// Flushes seen by a test, and a check run inside each one.
#[derive(Default)]
struct Flushes(RefCell<Vec<FlushRange>>);

impl Flushes {
    fn sink(&self) -> impl FnMut(Option<FlushRange>) + '_ {
        |r| self.0.borrow_mut().extend(r)
    }
    fn take(&self) -> Vec<FlushRange> {
        self.0.take()
    }
}

fn setup() -> (TestMem, AddressSpace) {
    let mem = TestMem::new();
    let a = AddressSpace::new(&mem).unwrap();
    (mem, a)
}

fn mmap(a: &mut AddressSpace, mem: &TestMem, addr: u64, len: u64, prot: u64, flags: u64) -> Result<u64, MmError> {
    let mut g = Gather::new();
    let r = a.mmap(addr, len, prot, flags, mem, &mut g, &mut |_| {});
    let _ = g.finish(mem, |_| {});
    r
}

fn fault(a: &mut AddressSpace, mem: &TestMem, va: u64, access: Access) -> Result<Fault, FaultError> {
    a.handle_fault(va, access, mem, &mut |_| {})
}

/// A user load: through the tables, faulting once if needed.
fn load(a: &mut AddressSpace, mem: &TestMem, va: u64) -> Result<u64, FaultError> {
    if !a.translate(va, mem).is_some_and(|d| desc_allows(d, Access::Read)) {
        fault(a, mem, va, Access::Read)?;
    }
    let d = a.translate(va, mem).expect("fault resolved but no page");
    assert!(desc_allows(d, Access::Read), "fault resolved but {va:#x} still not readable: {d:#x}");
    Ok(a.read_u64(va, mem).unwrap())
}

/// A user store: through the tables, faulting once if needed.
fn store(a: &mut AddressSpace, mem: &TestMem, va: u64, val: u64) -> Result<(), FaultError> {
    if !a.translate(va, mem).is_some_and(|d| desc_allows(d, Access::Write)) {
        fault(a, mem, va, Access::Write)?;
    }
    let d = a.translate(va, mem).expect("fault resolved but no page");
    assert!(desc_allows(d, Access::Write), "fault resolved but {va:#x} still not writable: {d:#x}");
    assert_eq!(mem.refs(desc_pa(d)), 1, "writable entry at {va:#x} to a shared frame");
    assert!(a.write_u64(va, val, mem));
    Ok(())
}

fn teardown(a: AddressSpace, mem: &TestMem) {
    let mut g = Gather::new();
    a.teardown(mem, &mut g, &mut |_| {});
    let _ = g.finish(mem, |_| {});
}

fn pa_of(a: &AddressSpace, mem: &TestMem, va: u64) -> u64 {
    desc_pa(a.translate(va, mem).unwrap_or_else(|| panic!("{va:#x} not present")))
}

#[test]
fn first_touch_reads_zero_then_writes_read_back() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, 3 * P, RW, 0).unwrap();
    assert!((MMAP_BASE..MMAP_END).contains(&base), "non-fixed mmap at {base:#x}: expected in the mmap area");
    assert_eq!(mem.outstanding(), 1, "mmap allocates nothing but the root");
    let f = fault(&mut a, &mem, base + 8, Access::Read).unwrap();
    assert_eq!((f.kind, f.va), (FaultKind::ZeroFill, base));
    assert_eq!(load(&mut a, &mem, base + 8), Ok(0));
    store(&mut a, &mem, base + P + 16, 0xdead_beef).unwrap();
    assert_eq!(load(&mut a, &mem, base + P + 16), Ok(0xdead_beef), "write then read back");
    let f = fault(&mut a, &mem, base + P, Access::Write).unwrap();
    assert_eq!(f.kind, FaultKind::Spurious, "already writable: spurious");
    assert!(f.local_invalidate());
    let next = mmap(&mut a, &mem, 0, P, R, 0).unwrap();
    assert_eq!(next, base + 3 * P, "first fit right after the first mapping");
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0, "teardown: expected 0 frames outstanding, saw {}", mem.outstanding());
}

#[test]
fn munmap_gathers_exactly_the_frames_and_frees_tables() {
    let (mem, mut a) = setup();
    let base = 0x4000_0000; // 2 MiB-aligned
    mmap(&mut a, &mem, base, 2 * MB2, RW, map::FIXED).unwrap();
    for i in 0..4 {
        store(&mut a, &mem, base + i * P, i + 1).unwrap();
    }
    store(&mut a, &mem, base + MB2, 99).unwrap(); // keeps the level-2 table
    let pas: Vec<u64> = (0..4).map(|i| pa_of(&a, &mem, base + i * P)).collect();

    // Half of the region: leaves only.
    let mut g = Gather::new();
    a.munmap(base, 2 * P, &mem, &mut g, &mut |_| panic!("no batch flush expected")).unwrap();
    assert_eq!(g.frames(), &pas[..2], "gathered frames");
    let want = FlushRange { start: base, end: base + 2 * P, stride: P, tables_freed: false, leaf_level: Some(3) };
    assert_eq!(g.flush_range(), Some(want), "flush covers the unmapped pages, leaf level 3");
    for &pa in &pas[..2] {
        assert!(mem.is_live(pa), "frame {pa:#x} freed before the flush");
    }
    let flushes = Flushes::default();
    let _ = g.finish(&mem, |r| {
        assert!(pas[..2].iter().all(|&pa| mem.is_live(pa)), "freed before the flush");
        flushes.sink()(r)
    });
    assert_eq!(flushes.take(), vec![want]);
    assert!(pas[..2].iter().all(|&pa| !mem.is_live(pa)), "frames freed after the flush");
    assert_eq!(fault(&mut a, &mem, base, Access::Read), Err(FaultError::Unmapped));

    // The rest of the first 2 MiB: its level-3 table goes too.
    let mut g = Gather::new();
    a.munmap(base, MB2, &mem, &mut g, &mut |_| panic!("no batch flush expected")).unwrap();
    assert_eq!(g.frames(), &pas[2..]);
    assert!(g.freed_tables(), "whole 2 MiB region emptied: expected freed_tables");
    assert_eq!((g.lowest_level(), g.highest_level()), (Some(2), Some(3)), "a level-2 entry and leaves cleared");
    assert_eq!(g.tables().len(), 1);
    let r = g.flush_range().unwrap();
    assert!(r.tables_freed && r.leaf_level.is_none() && r.start <= base + 2 * P && r.end >= base + 4 * P, "{r:?}");
    let _ = g.finish(&mem, |_| {});
    assert_eq!(load(&mut a, &mem, base + MB2), Ok(99), "the other region is untouched");
    assert_eq!(a.vmas().iter().map(|v| (v.start, v.end)).collect::<Vec<_>>(), vec![(base + MB2, base + 2 * MB2)]);
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn mprotect_downgrade_flushes_and_upgrade_does_not() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, 4 * P, RW, 0).unwrap();
    store(&mut a, &mem, base + P, 7).unwrap();
    store(&mut a, &mem, base + 2 * P, 8).unwrap();

    let mut g = Gather::new();
    a.mprotect(base, 4 * P, R, &mem, &mut g, &mut |_| {}).unwrap();
    let r = g.flush_range().expect("write-protecting present pages needs a flush");
    assert_eq!(
        (r.start, r.end, r.tables_freed),
        (base + P, base + 3 * P, false),
        "flush exactly the two present pages"
    );
    assert_eq!((g.totals().protected, g.frames().len()), (2, 0));
    let _ = g.finish(&mem, |_| {});
    assert_eq!(store(&mut a, &mem, base + P, 1), Err(FaultError::Protection));
    assert_eq!(store(&mut a, &mem, base, 1), Err(FaultError::Protection), "absent page: still the VMA says no");
    assert_eq!(load(&mut a, &mem, base + P), Ok(7));
    assert_eq!(fault(&mut a, &mem, base, Access::Exec), Err(FaultError::Protection));

    let mut g = Gather::new();
    a.mprotect(base, 4 * P, RW | X, &mem, &mut g, &mut |_| {}).unwrap();
    assert_eq!(g.flush_range(), None, "upgrade: expected no flush");
    assert_eq!(g.totals().upgraded, 2, "two present pages upgraded");
    let _ = g.finish(&mem, |_| {});
    store(&mut a, &mem, base + P, 9).unwrap();
    assert!(desc_allows(a.translate(base + P, &mem).unwrap(), Access::Exec));

    let mut g = Gather::new();
    a.mprotect(base + P, P, NONE, &mem, &mut g, &mut |_| {}).unwrap();
    assert_eq!(g.flush_range().map(|r| (r.start, r.end)), Some((base + P, base + 2 * P)), "RWX -> NONE: flush");
    let _ = g.finish(&mem, |_| {});
    assert_eq!(load(&mut a, &mem, base + P), Err(FaultError::Protection), "PROT_NONE: no read");
    assert_eq!(a.check_user_range(base, P + 1, false), Err(MmError::BadUserAddress { addr: base + P }));
    let mut b = [0u8; 8];
    a.read_bytes(base + P, &mut b, &mem).unwrap();
    assert_eq!(u64::from_le_bytes(b), 9, "kernel reads ignore protection");
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn madvise_dontneed_drops_pages_after_the_flush() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, 2 * P, RW, 0).unwrap();
    store(&mut a, &mem, base, 42).unwrap();
    let old = pa_of(&a, &mem, base);
    let mut g = Gather::new();
    a.madvise(base, 2 * P, advice::DONTNEED, &mem, &mut g, &mut |_| {}).unwrap();
    assert_eq!(g.frames(), &[old]);
    assert!(mem.is_live(old), "dropped frame {old:#x} freed before the flush");
    let flushes = Flushes::default();
    let _ = g.finish(&mem, |r| {
        assert!(mem.is_live(old), "freed before the flush");
        flushes.sink()(r)
    });
    assert_eq!(flushes.take().len(), 1);
    assert!(!mem.is_live(old), "old frame freed after the flush");
    assert_eq!(a.vmas().len(), 1, "DONTNEED keeps the mapping");
    assert_eq!(load(&mut a, &mem, base), Ok(0), "the next read sees zeroes");
    let mut g = Gather::new();
    let r = a.madvise(base, 3 * P, advice::DONTNEED, &mem, &mut g, &mut |_| {});
    assert_eq!(r, Err(MmError::NotMapped { addr: base + 2 * P }));
    assert!(g.frames().is_empty(), "a failed madvise drops nothing");
    let _ = g.finish(&mem, |_| {});
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn mmap_fixed_replaces_and_zaps_the_old_pages() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, 4 * P, RW, 0).unwrap();
    for i in 0..4 {
        store(&mut a, &mem, base + i * P, 5).unwrap();
    }
    let mut g = Gather::new();
    assert_eq!(a.mmap(base + P, 2 * P, R, map::FIXED, &mem, &mut g, &mut |_| {}), Ok(base + P));
    assert_eq!(g.frames().len(), 2, "the replaced pages are gathered");
    let _ = g.finish(&mem, |_| {});
    assert_eq!(load(&mut a, &mem, base + P), Ok(0), "fresh memory behind a FIXED map");
    assert_eq!(load(&mut a, &mem, base), Ok(5));
    let prots: Vec<u64> = a.vmas().iter().map(|v| v.prot).collect();
    assert_eq!(prots, vec![RW, R, RW]);
    // A free hint is used; an occupied one is not.
    assert_eq!(mmap(&mut a, &mem, 0x1000_0000, P, R, 0), Ok(0x1000_0000));
    let other = mmap(&mut a, &mem, base, P, R, 0).unwrap();
    assert_ne!(other, base, "occupied hint: another address");
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn fault_errors() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, P, R, 0).unwrap();
    #[rustfmt::skip]
    let cases = [
        (base - P, Access::Read, FaultError::Unmapped),
        (base + P, Access::Read, FaultError::Unmapped),
        (base, Access::Write, FaultError::Protection),
        (base, Access::Exec, FaultError::Protection),
        (USER_END, Access::Read, FaultError::KernelAddress),
        (0xffff_0000_0000_0000, Access::Exec, FaultError::KernelAddress),
    ];
    for (va, access, want) in cases {
        assert_eq!(fault(&mut a, &mem, va, access), Err(want), "{access:?} at {va:#x}");
    }
    assert_eq!(FaultError::Protection.cause(), abi::cause::PROTECTION);
    assert_eq!(mem.outstanding(), 1, "failed faults allocate nothing");
    teardown(a, &mem);
}

/// Every bad argument, and the errno it gives.
#[test]
fn bad_arguments_give_the_expected_errno() {
    let (mem, mut a) = setup();
    let m = mmap(&mut a, &mem, 0, 2 * P, RW, 0).unwrap();
    let kernel = 0xffff_0000_0000_0000u64;
    type Call = fn(&mut AddressSpace, &TestMem, u64, u64) -> Result<u64, MmError>;
    let mmap_p: Call = |a, mem, addr, len| mmap(a, mem, addr, len, RW, 0);
    let mmap_f: Call = |a, mem, addr, len| mmap(a, mem, addr, len, RW, map::FIXED);
    let munmap: Call = |a, mem, addr, len| {
        let mut g = Gather::new();
        let r = a.munmap(addr, len, mem, &mut g, &mut |_| {});
        let _ = g.finish(mem, |_| {});
        r.map(|_| 0)
    };
    let mprotect: Call = |a, mem, addr, len| {
        let mut g = Gather::new();
        let r = a.mprotect(addr, len, R, mem, &mut g, &mut |_| {});
        let _ = g.finish(mem, |_| {});
        r.map(|_| 0)
    };
    let madvise: Call = |a, mem, addr, len| {
        let mut g = Gather::new();
        let r = a.madvise(addr, len, advice::DONTNEED, mem, &mut g, &mut |_| {});
        let _ = g.finish(mem, |_| {});
        r.map(|_| 0)
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Call, u64, u64, i64)> = vec![
        ("mmap len 0", mmap_p, 0, 0, EINVAL),
        ("mmap unaligned hint", mmap_p, 0x1234, P, EINVAL),
        ("mmap kernel hint", mmap_p, kernel, P, EINVAL),
        ("mmap huge", mmap_p, 0, u64::MAX, ENOMEM),
        ("mmap no room", mmap_p, 0, MMAP_END - MMAP_BASE, ENOMEM),
        ("fixed at 0", mmap_f, 0, P, EINVAL),
        ("fixed unaligned", mmap_f, m + 1, P, EINVAL),
        ("fixed kernel", mmap_f, kernel, P, EINVAL),
        ("fixed past USER_END", mmap_f, USER_END - P, 2 * P, EINVAL),
        ("fixed overflow", mmap_f, P, u64::MAX - 2, EINVAL),
        ("munmap len 0", munmap, m, 0, EINVAL),
        ("munmap null len 0", munmap, 0, 0, EINVAL),
        ("munmap unaligned", munmap, m + 8, P, EINVAL),
        ("munmap kernel", munmap, kernel, P, EINVAL),
        ("munmap overflow", munmap, m, u64::MAX - m + 1, EINVAL),
        ("mprotect len 0", mprotect, m, 0, EINVAL),
        ("mprotect unaligned", mprotect, m + 1, P, EINVAL),
        ("mprotect hole", mprotect, m, 3 * P, ENOMEM),
        ("mprotect null", mprotect, 0, P, ENOMEM),
        ("mprotect kernel", mprotect, kernel, P, EINVAL),
        ("madvise hole", madvise, m + P, 2 * P, ENOMEM),
        ("madvise kernel", madvise, kernel, P, EINVAL),
        ("madvise overflow", madvise, m, u64::MAX, EINVAL),
    ];
    for (what, call, addr, len, want) in cases {
        let got = call(&mut a, &mem, addr, len);
        assert_eq!(
            got.map_err(|e| e.errno()),
            Err(-want),
            "{what} ({addr:#x}, {len:#x}): expected -{want}, saw {got:?}"
        );
    }
    let mut g = Gather::new();
    let mut no = |_| {};
    #[rustfmt::skip]
    let more = [
        ("mmap prot bits", a.mmap(0, P, 8, 0, &mem, &mut g, &mut no).map(drop), EINVAL),
        ("mmap flag bits", a.mmap(0, P, R, 8, &mem, &mut g, &mut no).map(drop), EINVAL),
        ("mprotect prot bits", a.mprotect(m, P, 0x10, &mem, &mut g, &mut |_| {}), EINVAL),
        ("madvise advice", a.madvise(m, P, 3, &mem, &mut g, &mut no), EINVAL),
        ("check kernel", a.check_user_range(kernel, 8, false), EFAULT),
        ("check null", a.check_user_range(0, 8, false), EFAULT),
        ("check overflow", a.check_user_range(m, u64::MAX, false), EFAULT),
        ("check past end", a.check_user_range(m + P, P + 1, false), EFAULT),
    ];
    for (what, got, want) in more {
        assert_eq!(got.map_err(|e| e.errno()), Err(-want), "{what}: expected -{want}, saw {got:?}");
    }
    let _ = g.finish(&mem, |_| {});
    assert_eq!(a.vmas().len(), 1, "no bad call changed the mappings");
    assert_eq!(mem.outstanding(), 1, "no bad call allocated");
    teardown(a, &mem);
}

#[test]
fn check_user_range_follows_the_mappings() {
    let (mem, mut a) = setup();
    let rw = mmap(&mut a, &mem, 0x10_0000, 2 * P, RW, map::FIXED).unwrap();
    mmap(&mut a, &mem, rw + 2 * P, P, R, map::FIXED).unwrap();
    assert_eq!(a.check_user_range(rw + 5, 2 * P - 5, true), Ok(()));
    assert_eq!(a.check_user_range(rw + 5, 3 * P - 5, false), Ok(()), "spans RW then R: readable");
    assert_eq!(a.check_user_range(rw + 5, 3 * P - 5, true), Err(MmError::BadUserAddress { addr: rw + 2 * P }));
    assert_eq!(a.check_user_range(rw + 3 * P - 1, 2, false), Err(MmError::BadUserAddress { addr: rw + 3 * P }));
    assert_eq!(a.check_user_range(rw - 1, 2, false), Err(MmError::BadUserAddress { addr: rw - 1 }));
    assert_eq!(a.check_user_range(0, 0, true), Ok(()), "empty range");
    teardown(a, &mem);
}

#[test]
fn long_munmap_flushes_in_batches() {
    let (mem, mut a) = setup();
    let n = 2 * BATCH as u64 + 10;
    let base = mmap(&mut a, &mem, 0, n * P, RW, 0).unwrap();
    for i in 0..n {
        store(&mut a, &mem, base + i * P, i).unwrap();
    }
    let mut g = Gather::new();
    let flushes = Flushes::default();
    let live_before = mem.outstanding();
    a.munmap(base, n * P, &mem, &mut g, &mut flushes.sink()).unwrap();
    let partial = flushes.take();
    assert_eq!(partial.len(), 2, "{n} pages with batches of {BATCH}: expected 2 partial flushes, saw {partial:?}");
    assert!(g.frames().len() + g.tables().len() < BATCH);
    let freed_early = live_before - mem.outstanding();
    assert_eq!(freed_early as u64, 2 * BATCH as u64, "each partial flush releases its batch");
    // The last batch holds the remaining leaves and every unlinked table.
    // The first level-3 table was emptied in batch one but unlinked after
    // its flush (which was leaf-only), so the last flush must name an
    // address under it: the range starts at `base` again.
    let last = (base, base + n * P, true, None);
    let _ = g.finish(&mem, |r| {
        let r = r.expect("a last flush");
        assert_eq!((r.start, r.end, r.tables_freed, r.leaf_level), last, "last flush");
    });
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

/// The placeholder the kernel swaps in to take an address space out from
/// under its lock: no tables, nothing to free.
#[test]
fn empty_placeholder() {
    let mem = TestMem::new();
    let mut a = AddressSpace::empty();
    assert_eq!(a.root_pa(), 0);
    let va = mmap(&mut a, &mem, 0, P, RW, 0).unwrap();
    assert_eq!(fault(&mut a, &mem, va, Access::Read), Err(FaultError::OutOfMemory));
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

/// The mapping limit: mmap, and munmap and mprotect that would split a
/// mapping, fail with ENOMEM at `MAX_MAPPINGS` and change nothing; calls
/// that need no new mapping still work there.
#[test]
fn mapping_limit_is_enomem_and_changes_nothing() {
    use abi::limits::MAX_MAPPINGS;
    let (mem, mut a) = setup();
    // One-page mappings with one-page holes: none merge.
    let base = MMAP_BASE;
    for i in 0..MAX_MAPPINGS as u64 - 1 {
        assert_eq!(mmap(&mut a, &mem, base + 2 * i * P, P, R, map::FIXED), Ok(base + 2 * i * P));
    }
    let three = base + 2 * MAX_MAPPINGS as u64 * P;
    assert_eq!(mmap(&mut a, &mem, three, 3 * P, R, map::FIXED), Ok(three));
    assert_eq!(a.vmas().len(), MAX_MAPPINGS);
    let before: Vec<_> = a.vmas().iter().copied().collect();
    assert_eq!(mmap(&mut a, &mem, 0, P, R, 0), Err(MmError::TooManyMappings));
    assert_eq!(mmap(&mut a, &mem, three + 8 * P, P, R, map::FIXED), Err(MmError::TooManyMappings));
    let mut g = Gather::new();
    assert_eq!(a.munmap(three + P, P, &mem, &mut g, &mut |_| {}), Err(MmError::TooManyMappings));
    assert_eq!(a.mprotect(three + P, P, R | W, &mem, &mut g, &mut |_| {}), Err(MmError::TooManyMappings));
    assert_eq!(MmError::TooManyMappings.errno(), -ENOMEM);
    assert!(a.vmas().iter().copied().eq(before.iter().copied()), "a refused call changed the mappings");
    // No split needed: fine at the limit.
    assert_eq!(a.mprotect(three, 3 * P, R | W, &mem, &mut g, &mut |_| {}), Ok(()));
    assert_eq!(a.munmap(three, 3 * P, &mem, &mut g, &mut |_| {}), Ok(()));
    assert_eq!(mmap(&mut a, &mem, 0, P, R, 0).map(|_| ()), Ok(()));
    let _ = g.finish(&mem, |_| {});
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}
