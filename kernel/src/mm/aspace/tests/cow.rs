//! Copy-on-write: fork, faults on shared frames, running out of frames on
//! the way, and a random run of everything against a model.
#![forbid(unsafe_code)]

use super::*;

#[test]
fn fork_copy_on_write_keeps_each_side_private() {
    let (mem, mut parent) = setup();
    let base = mmap(&mut parent, &mem, 0, 3 * P, RW, 0).unwrap();
    let ro = mmap(&mut parent, &mem, 0, P, R, 0).unwrap();
    store(&mut parent, &mem, base, 1).unwrap();
    store(&mut parent, &mem, base + P, 2).unwrap();
    load(&mut parent, &mem, ro).unwrap();
    let frames = [base, base + P, ro].map(|va| pa_of(&parent, &mem, va));

    let mut g = Gather::new();
    let mut child = parent.fork(&mem, &mut g).unwrap();
    let r = g.flush_range().expect("fork write-protects the parent: needs a flush");
    assert_eq!((r.start, r.end), (base, base + 2 * P), "only the writable present pages");
    assert_eq!(g.totals().protected, 2);
    let _ = g.finish(&mem, |_| {});
    for pa in frames {
        assert_eq!(mem.refs(pa), 2, "frame {pa:#x} shared by both: expected refs 2");
    }
    for a in [&parent, &child] {
        let d = a.translate(base, &mem).unwrap();
        assert!(!desc_allows(d, Access::Write), "shared page must be read-only in both");
    }

    // The child writes: it copies; the parent keeps the original.
    let flushes = Flushes::default();
    let f = child.handle_fault(base, Access::Write, &mem, &mut flushes.sink()).unwrap();
    assert_eq!(f.kind, FaultKind::CowCopy);
    assert_eq!(flushes.take().iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), vec![(base, base + P)]);
    store(&mut child, &mem, base, 100).unwrap();
    assert_eq!((load(&mut parent, &mem, base), load(&mut child, &mem, base)), (Ok(1), Ok(100)));
    assert_eq!(mem.refs(frames[0]), 1, "after the child's copy the original is the parent's alone");
    // The parent writes the same page: sole owner now, made writable in place.
    let f = fault(&mut parent, &mem, base, Access::Write).unwrap();
    assert_eq!((f.kind, f.pa), (FaultKind::CowReuse, frames[0]));
    store(&mut parent, &mem, base, 10).unwrap();
    // The parent writes page 2: still shared, so it copies.
    store(&mut parent, &mem, base + P, 20).unwrap();
    assert_eq!((load(&mut parent, &mem, base + P), load(&mut child, &mem, base + P)), (Ok(20), Ok(2)));
    assert_eq!((load(&mut parent, &mem, base), load(&mut child, &mem, base)), (Ok(10), Ok(100)));
    // Untouched page 3 is absent in both and zero-fills independently.
    store(&mut child, &mem, base + 2 * P, 3).unwrap();
    assert_eq!(load(&mut parent, &mem, base + 2 * P), Ok(0));
    assert_eq!(mem.refs(frames[1]), 1, "refcount back to 1 after the parent's copy");
    assert_eq!(mem.refs(frames[2]), 2, "the read-only page stays shared");

    // The child's teardown frees its private frames only: its copy of page
    // 1, the original of page 2 (the parent copied away from it), its page
    // 3, and its four tables (root + one per level for this one region).
    let before = mem.outstanding();
    teardown(child, &mem);
    assert_eq!(before - mem.outstanding(), 3 + 4, "child teardown freed the wrong number of frames");
    assert!(!mem.is_live(frames[1]), "page 2's original was the child's alone");
    for pa in [frames[0], frames[2]] {
        assert!(mem.is_live(pa) && mem.refs(pa) == 1, "frame {pa:#x} must now be the parent's alone");
    }
    assert_eq!(load(&mut parent, &mem, ro), Ok(0));
    teardown(parent, &mem);
    assert_eq!(mem.outstanding(), 0, "leak: {} frames outstanding", mem.outstanding());
}

/// Break-before-make: when the copy-on-write flush runs, the old entry is
/// already invalid and the new one not yet written.
#[test]
fn cow_copy_breaks_before_make() {
    let (mem, mut parent) = setup();
    let base = mmap(&mut parent, &mem, 0, P, RW, 0).unwrap();
    store(&mut parent, &mem, base, 1).unwrap();
    let mut g = Gather::new();
    let mut child = parent.fork(&mem, &mut g).unwrap();
    let _ = g.finish(&mem, |_| {});
    let old = pa_of(&child, &mem, base);
    let root = child.root_pa();
    let mut calls = 0;
    let f = child
        .handle_fault(base + 8, Access::Write, &mem, &mut |r| {
            calls += 1;
            assert_eq!(walk(&mem, root, base), None, "flush ran while an entry was still installed: {r:?}");
            assert_eq!(mem.refs(old), 2, "old reference dropped before the flush");
        })
        .unwrap();
    assert_eq!((f.kind, calls), (FaultKind::CowCopy, 1));
    assert_eq!(mem.refs(old), 1);
    teardown(child, &mem);
    teardown(parent, &mem);
    assert_eq!(mem.outstanding(), 0);
}

/// After fork, mprotect(RW) must not make a shared frame writable.
#[test]
fn mprotect_upgrade_keeps_shared_pages_copy_on_write() {
    let (mem, mut parent) = setup();
    let base = mmap(&mut parent, &mem, 0, P, RW, 0).unwrap();
    store(&mut parent, &mem, base, 1).unwrap();
    let mut g = Gather::new();
    let mut child = parent.fork(&mem, &mut g).unwrap();
    let _ = g.finish(&mem, |_| {});
    for prot in [R, RW] {
        let mut g = Gather::new();
        child.mprotect(base, P, prot, &mem, &mut g, &mut |_| {}).unwrap();
        let _ = g.finish(&mem, |_| {});
    }
    assert!(!desc_allows(child.translate(base, &mem).unwrap(), Access::Write), "shared frame made writable");
    store(&mut child, &mem, base, 2).unwrap();
    assert_eq!((load(&mut parent, &mem, base), load(&mut child, &mem, base)), (Ok(1), Ok(2)));
    teardown(child, &mem);
    teardown(parent, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn out_of_memory_changes_nothing_and_leaks_nothing() {
    let (mem, mut a) = setup();
    let base = mmap(&mut a, &mem, 0, 4 * P, RW, 0).unwrap();
    store(&mut a, &mem, base, 1).unwrap();
    let n = mem.outstanding();
    // First touch in a new 2 MiB region needs a table and a frame.
    let far = mmap(&mut a, &mem, 0x2000_0000, P, RW, map::FIXED).unwrap();
    mem.set_limit(Some(n + 1));
    assert_eq!(fault(&mut a, &mem, far, Access::Write), Err(FaultError::OutOfMemory));
    assert_eq!(a.translate(far, &mem), None);
    // Fork with too few frames for the child's tables.
    mem.set_limit(Some(mem.outstanding() + 2));
    let mut g = Gather::new();
    assert_eq!(a.fork(&mem, &mut g).map(drop), Err(MmError::OutOfMemory));
    let _ = g.finish(&mem, |_| {});
    assert_eq!(mem.refs(pa_of(&a, &mem, base)), 1, "a failed fork gives back its references");
    // Copy-on-write with no frame for the copy.
    mem.set_limit(None);
    let mut g = Gather::new();
    let mut child = a.fork(&mem, &mut g).unwrap();
    let _ = g.finish(&mem, |_| {});
    mem.set_limit(Some(mem.outstanding()));
    assert_eq!(fault(&mut child, &mem, base, Access::Write), Err(FaultError::OutOfMemory));
    assert_eq!(child.read_u64(base, &mem), Some(1), "the shared page is still mapped");
    mem.set_limit(None);
    teardown(child, &mem);
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn kernel_writes_fill_and_unshare_pages() {
    let (mem, mut a) = setup();
    let text = mmap(&mut a, &mem, 0x40_0000, 3 * P, R | X, map::FIXED).unwrap();
    let data: Vec<u8> = (0..2 * P as usize).map(|i| i as u8).collect();
    a.write_bytes(text + 100, &data, &mem, &mut |_| panic!("fresh pages: no flush")).unwrap();
    let mut back = vec![0; data.len() + 200];
    a.read_bytes(text, &mut back, &mem).unwrap();
    assert_eq!(&back[100..100 + data.len()], &data[..], "read back what the kernel wrote");
    assert!(back[..100].iter().chain(&back[100 + data.len()..]).all(|&b| b == 0), "the rest is zero");
    assert!(!desc_allows(a.translate(text, &mem).unwrap(), Access::Write), "text stays read-only");
    assert_eq!(a.write_bytes(text + 3 * P - 1, &[1, 2], &mem, &mut |_| {}), Err(FaultError::Unmapped));
    let mut g = Gather::new();
    let child = a.fork(&mem, &mut g).unwrap();
    let _ = g.finish(&mem, |_| {});
    let mut flushed = 0;
    a.write_bytes(text, &[0xff], &mem, &mut |_| flushed += 1).unwrap();
    assert_eq!(flushed, 1, "unsharing a mapped page is a copy-on-write: one flush");
    let (mut x, mut y) = ([0u8; 1], [0u8; 1]);
    a.read_bytes(text, &mut x, &mem).unwrap();
    child.read_bytes(text, &mut y, &mem).unwrap();
    assert_eq!((x[0], y[0]), (0xff, 0), "the child keeps its copy");
    teardown(child, &mem);
    teardown(a, &mem);
    assert_eq!(mem.outstanding(), 0);
}

/// Random operations on a parent and a forked child against a model of
/// every page's contents; leak accounting at the end.
#[test]
fn random_operations_against_a_model() {
    const SEED: u64 = 0xf0_4c_ed;
    const PAGES: u64 = 24;
    let mut x = SEED;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mem = TestMem::new();
    let base = 0x4000_0000u64 - 8 * P; // straddles a 2 MiB and a 1 GiB boundary
                                       // Two address spaces and their model: page -> Some(value) if mapped.
    let mut spaces = vec![AddressSpace::new(&mem).unwrap()];
    let mut models = vec![vec![None::<u64>; PAGES as usize]];
    for step in 0..4000 {
        let who = rnd(spaces.len() as u64) as usize;
        let n_spaces = spaces.len();
        let (a, model) = (&mut spaces[who], &mut models[who]);
        let pg = rnd(PAGES);
        let len = 1 + rnd(4).min(PAGES - pg - 1);
        let va = base + pg * P;
        let ctx = format!("seed {SEED:#x} step {step} space {who} page {pg}");
        let range = pg as usize..(pg + len) as usize;
        match rnd(8) {
            0 => {
                mmap(a, &mem, va, len * P, RW, map::FIXED).unwrap();
                model[range].fill(Some(0));
            }
            1 => {
                let mut g = Gather::new();
                a.munmap(va, len * P, &mem, &mut g, &mut |_| {}).unwrap();
                let _ = g.finish(&mem, |_| {});
                model[range].fill(None);
            }
            2 => {
                let mut g = Gather::new();
                let r = a.madvise(va, len * P, advice::DONTNEED, &mem, &mut g, &mut |_| {});
                let _ = g.finish(&mem, |_| {});
                let mapped = model[range.clone()].iter().all(Option::is_some);
                assert_eq!(r.is_ok(), mapped, "{ctx}: madvise");
                if mapped {
                    model[range].fill(Some(0));
                }
            }
            3 if n_spaces < 3 => {
                let mut g = Gather::new();
                let child = spaces[who].fork(&mem, &mut g).unwrap();
                let _ = g.finish(&mem, |_| {});
                spaces.push(child);
                let m = models[who].clone();
                models.push(m);
            }
            4 if n_spaces > 1 => {
                teardown(spaces.swap_remove(who), &mem);
                models.swap_remove(who);
            }
            5 | 6 => {
                let v = step as u64 * 1000 + pg;
                let r = store(a, &mem, va, v);
                match model[pg as usize] {
                    Some(_) => {
                        assert_eq!(r, Ok(()), "{ctx}: store");
                        model[pg as usize] = Some(v);
                    }
                    None => assert_eq!(r, Err(FaultError::Unmapped), "{ctx}: store"),
                }
            }
            _ => {
                let want = model[pg as usize].ok_or(FaultError::Unmapped);
                assert_eq!(load(a, &mem, va), want, "{ctx}: load");
            }
        }
    }
    for a in spaces {
        teardown(a, &mem);
    }
    assert_eq!(mem.outstanding(), 0, "seed {SEED:#x}: leak of {} frames", mem.outstanding());
}
