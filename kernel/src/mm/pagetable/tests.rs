//! Tests of the page-table code on the host's test memory.

use super::*;
use crate::mm::aspace::test_mem::TestMem;
use crate::mm::gather::Gather;
use crate::mm::pte::{user_attrs, NG, PXN};
use crate::mm::pte::{PAGE_SIZE, VALID};
use abi::prot;

const RW: u64 = user_attrs(prot::READ | prot::WRITE);

fn finish(g: Gather, mem: &TestMem) -> Vec<FlushRange> {
    let mut seen = Vec::new();
    g.finish(mem, |r| seen.extend(r));
    seen
}

#[test]
fn user_descriptors() {
    let cases = [
        (prot::READ, true, false, false),
        (prot::READ | prot::WRITE, true, true, false),
        (prot::READ | prot::EXEC, true, false, true),
        (prot::ALL, true, true, true),
        (prot::NONE, false, false, false),
        (prot::WRITE, true, true, false),
    ];
    for (p, r, w, x) in cases {
        let d = page_desc(0x1234_5000, user_attrs(p));
        let seen = (el0_can_read(d), el0_can_write(d), el0_can_exec(d));
        assert_eq!(seen, (r, w, x), "prot {p:#x}: expected (r, w, x) = {:?}, saw {seen:?}", (r, w, x));
        assert_eq!(d & (NG | PXN | VALID), NG | PXN | VALID, "prot {p:#x}: user pages are nG, PXN, valid");
        assert_eq!(desc_pa(d), 0x1234_5000);
    }
}

#[test]
fn map_lookup_and_intermediate_tables() {
    let mem = TestMem::new();
    let mut pt = PageTable::new(&mem).unwrap();
    let va = 0x7f_1234_5000;
    assert_eq!(pt.lookup(&mem, va), None);
    let pa = mem.alloc_zeroed().unwrap();
    pt.map(&mem, va, page_desc(pa, RW)).unwrap();
    assert_eq!(pt.lookup(&mem, va), Some(page_desc(pa, RW)));
    assert_eq!(pt.lookup(&mem, va + PAGE_SIZE), None, "neighbour stays unmapped");
    assert_eq!(pt.count_tables(&mem), 4, "root + one table at each of levels 1..=3");
    assert_eq!(pt.map(&mem, va, page_desc(pa, RW)), Err(MapError::AlreadyMapped { va }));
    assert_eq!(mem.outstanding(), 5);
}

#[test]
fn map_hinted_maps_as_map_does_across_tables_and_trees() {
    let mem = TestMem::new();
    let mut pts: Vec<PageTable> = (0..3).map(|_| PageTable::new(&mem).unwrap()).collect();
    let vas = [0x40_0000, 0x40_1000, 0x60_0000, 0x40_2000, 0x7f_1234_5000];
    let mut hint = MapHint::default();
    for &va in &vas {
        let pa = mem.alloc_zeroed().unwrap();
        mem.get(pa);
        mem.get(pa);
        let d = page_desc(pa, RW);
        pts[0].map(&mem, va, d).unwrap();
        pts[1].map_hinted(&mem, va, d, &mut hint).unwrap();
        // The other tree with the same hint: a hint of another root is not used.
        pts[2].map_hinted(&mem, va, d, &mut hint).unwrap();
        for pt in &pts {
            assert_eq!(pt.lookup(&mem, va), Some(d), "{va:#x}");
        }
    }
    let again = pts[1].map_hinted(&mem, vas[1], page_desc(0x9000, RW), &mut hint);
    assert_eq!(again, Err(MapError::AlreadyMapped { va: vas[1] }));
    let tables: Vec<usize> = pts.iter().map(|pt| pt.count_tables(&mem)).collect();
    assert_eq!(tables, vec![tables[0]; 3], "the same tables as map's");
    for pt in pts {
        let mut g = Gather::new();
        pt.destroy(&mem, &mut g, &mut |_| {});
        finish(g, &mem);
    }
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn map_out_of_memory_leaves_no_leaf() {
    let mem = TestMem::new();
    let mut pt = PageTable::new(&mem).unwrap();
    mem.set_limit(Some(2)); // root + one table
    assert_eq!(pt.map(&mem, 0x1000, page_desc(0x9000, RW)), Err(MapError::OutOfMemory));
    assert_eq!(pt.lookup(&mem, 0x1000), None);
    mem.set_limit(None);
    let mut g = Gather::new();
    pt.destroy(&mem, &mut g, &mut |_| {});
    finish(g, &mem);
    assert_eq!(mem.outstanding(), 0, "the half-built path is torn down too");
}

/// Emptying a whole 2 MiB region unlinks its level-3 table (and the
/// level-2 and level-1 tables above it when they empty too); the frames
/// and tables stay allocated until the flush.
#[test]
fn zap_frees_tables_only_through_the_gather() {
    let mem = TestMem::new();
    let mut pt = PageTable::new(&mem).unwrap();
    let base = 0x40_0000u64; // 2 MiB-aligned
    let mut pas = Vec::new();
    for i in 0..4 {
        let pa = mem.alloc_zeroed().unwrap();
        pt.map(&mem, base + i * PAGE_SIZE, page_desc(pa, RW)).unwrap();
        pas.push(pa);
    }
    // A page in the next 2 MiB region keeps levels 1 and 2 alive.
    let other = mem.alloc_zeroed().unwrap();
    pt.map(&mem, base + (2 << 20), page_desc(other, RW)).unwrap();
    let tables = pt.count_tables(&mem);

    // Part of the region: no table freed.
    let mut g = Gather::new();
    pt.zap(&mem, base, base + 2 * PAGE_SIZE, &TableFree::All, &mut g, &mut |_| panic!("no partial flush expected"));
    assert!(!g.freed_tables(), "half a table zapped: expected no table freed");
    assert_eq!((g.lowest_level(), g.highest_level()), (Some(3), Some(3)));
    assert_eq!(g.frames(), &pas[..2]);
    finish(g, &mem);
    assert_eq!(pt.count_tables(&mem), tables);

    // The rest of it: its level-3 table goes, via the gather.
    let mut g = Gather::new();
    pt.zap(&mem, base, base + (2 << 20), &TableFree::All, &mut g, &mut |_| panic!("no partial flush expected"));
    assert!(g.freed_tables(), "2 MiB region emptied: expected freed_tables");
    assert_eq!((g.lowest_level(), g.highest_level()), (Some(2), Some(3)), "levels cleared");
    assert_eq!(g.frames(), &pas[2..]);
    let &[l3] = g.tables() else { panic!("expected one table, saw {:?}", g.tables()) };
    assert!(mem.is_live(l3), "table page must survive until the flush");
    let r = g.flush_range().unwrap();
    assert!(r.tables_freed && r.start <= base + 2 * PAGE_SIZE && r.end > base, "flush {r:?}");
    assert_eq!(finish(g, &mem).len(), 1);
    assert!(!mem.is_live(l3), "table page freed after the flush");
    assert_eq!(pt.count_tables(&mem), tables - 1);
    assert_eq!(pt.lookup(&mem, base + (2 << 20)), Some(page_desc(other, RW)));

    // The last page: levels 3, 2 and 1 all go; the root stays.
    let mut g = Gather::new();
    pt.zap(&mem, 0, abi::USER_END, &TableFree::All, &mut g, &mut |_| {});
    assert_eq!((g.tables().len(), g.lowest_level()), (3, Some(0)), "three tables, a level-0 entry cleared");
    finish(g, &mem);
    assert_eq!(pt.count_tables(&mem), 1, "only the root left");
    let mut g = Gather::new();
    pt.destroy(&mem, &mut g, &mut |_| {});
    finish(g, &mem);
    assert_eq!(mem.outstanding(), 0, "leak: {} frames outstanding", mem.outstanding());
}

#[test]
fn update_leaves_visits_present_leaves_in_order() {
    let mem = TestMem::new();
    let mut pt = PageTable::new(&mem).unwrap();
    let vas = [0x1000u64, 0x3000, 0x20_0000, 0x4000_0000];
    for va in vas {
        pt.map(&mem, va, page_desc(mem.alloc_zeroed().unwrap(), RW)).unwrap();
    }
    let mut seen = Vec::new();
    let ro = user_attrs(prot::READ);
    pt.update_leaves::<_, ()>(&mem, 0x2000, 0x4000_0000, |va, d| {
        seen.push(va);
        Ok(Some(page_desc(desc_pa(d), ro)))
    })
    .unwrap();
    assert_eq!(seen, vec![0x3000, 0x20_0000], "leaves in [0x2000, 0x4000_0000)");
    assert!(el0_can_write(pt.lookup(&mem, 0x1000).unwrap()), "outside the range: unchanged");
    assert!(!el0_can_write(pt.lookup(&mem, 0x3000).unwrap()), "inside: now read-only");
    let mut g = Gather::new();
    pt.destroy(&mem, &mut g, &mut |_| {});
    finish(g, &mem);
    assert_eq!(mem.outstanding(), 0);
}

/// A page at each of `vas`, in a fresh tree of format `f`.
fn tree_with<F: Format>(f: F, mem: &TestMem, vas: &[u64]) -> PageTable<F> {
    let mut pt = PageTable::new_in(f, mem).unwrap();
    for &va in vas {
        pt.map(mem, va, page_desc(mem.alloc_zeroed().unwrap(), RW)).unwrap();
    }
    pt
}

#[test]
fn zap_unlinks_tables_only_where_allowed() {
    let mem = TestMem::new();
    let base = 0x40_0000u64; // 2 MiB-aligned
    let mut pt = tree_with(Arm4k, &mem, &[base, base + PAGE_SIZE]);
    let tables = pt.count_tables(&mem);
    // madvise: the mappings stay, so the emptied level-3 table stays too.
    let mut g = Gather::new();
    pt.zap(&mem, base, base + 2 * PAGE_SIZE, &TableFree::Never, &mut g, &mut |_| {});
    assert!(!g.freed_tables() && g.frames().len() == 2, "{g:?}");
    finish(g, &mem);
    assert_eq!(pt.count_tables(&mem), tables, "no table unlinked under TableFree::Never");

    // munmap of part of a region where a mapping remains: the table stays.
    let mut pt2 = tree_with(Arm4k, &mem, &[base]);
    let mut g = Gather::new();
    let kept = (base + 8 * PAGE_SIZE, base + 9 * PAGE_SIZE);
    let mapped = |s: u64, e: u64| s < kept.1 && kept.0 < e;
    pt2.zap(&mem, base, base + PAGE_SIZE, &TableFree::Unmapped(&mapped), &mut g, &mut |_| {});
    assert!(!g.freed_tables(), "a mapping remains in the 2 MiB region: {g:?}");
    finish(g, &mem);
    // ...and with nothing left around it, every emptied table goes.
    let mut g = Gather::new();
    pt2.zap(&mem, 0, base + (2 << 20), &TableFree::Unmapped(&|_, _| false), &mut g, &mut |_| {});
    assert_eq!(g.tables().len(), 3, "the empty tables left behind go once nothing is mapped around them");
    finish(g, &mem);
    for pt in [pt, pt2] {
        let mut g = Gather::new();
        pt.destroy(&mem, &mut g, &mut |_| {});
        finish(g, &mem);
    }
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn zap_cursor_steps_one_write_at_a_time_post_order() {
    let mem = TestMem::new();
    let f = Reduced { levels: 3, bits: 1 }; // 8 pages, tables of 2 entries
    let p = PAGE_SIZE;
    let mut pt = tree_with(f, &mem, &[0, p, 2 * p, 5 * p]);
    let mut c = ZapCursor::new(0, 4 * p);
    let mut g = Gather::new();
    let mut edits = Vec::new();
    while let Some(e) = c.step(&mut pt, &mem, &TableFree::All, &mut g) {
        edits.push(e);
    }
    assert_eq!(
        edits,
        [
            ZapEdit::Leaf { va: 0 },
            ZapEdit::Leaf { va: p },
            ZapEdit::Table { va: 0, level: 2 },
            ZapEdit::Leaf { va: 2 * p },
            ZapEdit::Table { va: 2 * p, level: 2 },
            ZapEdit::Table { va: 0, level: 1 },
        ],
        "leaves first, then each table once emptied"
    );
    assert_eq!(c.step(&mut pt, &mem, &TableFree::All, &mut g), None, "a finished cursor stays finished");
    assert!(pt.lookup(&mem, 5 * p).is_some(), "outside the range: kept");
    assert_eq!(pt.count_tables(&mem), 3, "root, and the path to page 5");
    finish(g, &mem);
    let mut g = Gather::new();
    pt.destroy(&mem, &mut g, &mut |_| {});
    finish(g, &mem);
    assert_eq!(mem.outstanding(), 0);
}

#[test]
fn leaf_cursor_resumes_where_it_stopped() {
    let mem = TestMem::new();
    let f = Reduced { levels: 2, bits: 2 }; // 16 pages
    let p = PAGE_SIZE;
    let pt = tree_with(f, &mem, &[p, 3 * p, 4 * p, 15 * p]);
    let mut c = LeafCursor::new(2 * p, 16 * p);
    let seen: Vec<u64> = core::iter::from_fn(|| c.next(&pt, &mem).map(|(va, _)| va / p)).collect();
    assert_eq!(seen, [3, 4, 15]);
    let mut g = Gather::new();
    pt.destroy(&mem, &mut g, &mut |_| {});
    finish(g, &mem);
    assert_eq!(mem.outstanding(), 0);
}
