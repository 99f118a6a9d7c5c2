//! Model checks of the kernel's zapping operations (`zap_world`) over the
//! TLB model: munmap, madvise(DONTNEED), mprotect, fork's write-protect,
//! exit and the reaper each leave no stale translation reachable once they
//! return, and the mechanisms that make that so are each necessary: the
//! TTBR0 switch before an elided exit, the nested-zap fix, non-leaf TLBIs
//! when tables are freed, and the flush itself.
//!
//! Each exhaustive search covers every interleaving of its system (bounds
//! stated beside each test) and prints its state and transition counts.
//! Two kinds of system per operation: 2 CPUs with *scheduled* speculation
//! from cold TLBs (every moment at which each entry may be filled), and 3
//! CPUs with *eager* speculation (every CPU holds everything it could at
//! every moment, the worst case for every check here). A seeded random walk
//! covers a larger mix (`ZAP_MODEL_SEED=<n>` replays one seed). One test
//! pins down a questionable behaviour instead (mprotect and mmap(MAP_FIXED)
//! ignore zaps in flight): it expects the violation, and says why.

use super::explore::{explore, random_walk, Report};
use super::mem::FrameUse;
use super::violation::Violation;
use super::zap_world::{Bugs, Checks, Config, ExitBug, Op, Speculation, World, A, B};
use kernel::mm::tlb::{CpuFeatures, Event, OpKind, PolicyParams};

/// Upper bound for any one search here (the largest sees about 25,000).
const MAX_STATES: u64 = 300_000;

fn explore_clean(name: &str, cfg: &Config) -> (Report, World) {
    let w = World::new(cfg.clone());
    match explore(w.clone(), MAX_STATES) {
        Ok(report) => {
            let c = w.coverage();
            println!(
                "{name}: {report}; returns {}, frees {}, reuses by B {}, zero fills {}, COW copies {}; {}",
                c.returns.get(),
                c.frees.get(),
                c.reuses.get(),
                c.zero_fills.get(),
                c.cow_copies.get(),
                w.machine().stats().total()
            );
            assert!(c.returns.get() > 0, "{name}: expected operations to return, saw none");
            (report, w)
        }
        Err((report, ce)) => panic!(
            "{name}: expected no violation, saw {}\n  after {report}\n  config {cfg:?}\n  trace:\n{}",
            ce.violation,
            ce.render(&w, 60)
        ),
    }
}

fn explore_finds(name: &str, cfg: &Config) -> Violation {
    let w = World::new(cfg.clone());
    match explore(w.clone(), MAX_STATES) {
        Ok(report) => {
            panic!("{name}: expected a violation, saw none in {report}\n  config {cfg:?}")
        }
        Err((report, ce)) => {
            println!("{name}: found after {report}:\n{}", ce.render(&w, 40));
            ce.violation
        }
    }
}

fn ops(w: &World, kind: OpKind) -> u64 {
    w.machine().stats().total().get(kind)
}

/// `scripts` on 2 CPUs (scheduled speculation) or 3 (eager); CPUs beyond
/// the scripts given run `A`'s other threads with nothing scripted.
fn system(scripts: &[Vec<Op>], ncpus: usize) -> Config {
    let mut all = scripts.to_vec();
    all.resize(ncpus, Vec::new());
    let mut c = Config::new(all);
    c.speculation = if ncpus == 2 {
        Speculation::Scheduled
    } else {
        Speculation::Eager
    };
    c
}

fn both(scripts: &[Vec<Op>]) -> [Config; 2] {
    [system(scripts, 2), system(scripts, 3)]
}

fn name(what: &str, c: &Config) -> String {
    format!("{what}, {} cpus, {:?} speculation", c.ncpus, c.speculation)
}

// Bound: A maps pages 0, 1, 2 and 5 (two level-1 tables); cpu0 munmaps
// 0-1 (a leaf only), 0-2 (a leaf table freed), 1-3 (another) or 0-3 (a
// level-1 table and both its leaf tables freed); the other CPUs read and
// walk; B maps pages 4 and 6 out of the freed frames. Under three
// policies: FEAT_TLBIRANGE (range ops), cortex-a72 (one op per page), and
// a72 with `tlb.per_page_max=1` (whole ASID). 24 searches, 24 to 6,300
// states each.
#[test]
fn munmap_leaves_no_stale_translation() {
    let policies = [
        (
            "max",
            CpuFeatures::RANGE_AND_TTL,
            PolicyParams::DEFAULT,
            OpKind::Rvae1is,
        ),
        (
            "a72",
            CpuFeatures::NONE,
            PolicyParams::DEFAULT,
            OpKind::Vae1is,
        ),
        (
            "a72 per_page_max=1",
            CpuFeatures::NONE,
            PolicyParams {
                per_page_max: Some(1),
                ..PolicyParams::DEFAULT
            },
            OpKind::Aside1is,
        ),
    ];
    for (policy, features, params, kind) in policies {
        for (lo, hi) in [(0, 1), (0, 2), (1, 3), (0, 3)] {
            for mut cfg in both(&[vec![Op::Munmap { lo, hi }]]) {
                cfg.pages = vec![0, 1, 2, 5];
                (cfg.features, cfg.params) = (features, params);
                let what = name(&format!("munmap {lo}..{hi}, {policy}"), &cfg);
                let (_, w) = explore_clean(&what, &cfg);
                assert!(
                    w.coverage().frees.get() > 0 && w.coverage().reuses.get() > 0,
                    "{what}: expected frees and reuse by B"
                );
                if hi - lo > 1 {
                    assert!(
                        ops(&w, kind) > 0,
                        "{what}: expected {kind:?}, saw {}",
                        w.machine().stats().total()
                    );
                }
            }
        }
    }
}

// Bound: A maps pages 0, 1, 2 and 5; cpu0 madvises 0-1 (the VMA stays, the
// leaf table goes); the other CPUs read and may take one fault between
// them, a zero fill racing with the zap's flush; B maps pages 4 and 6.
// About 20,000 states with 2 CPUs.
#[test]
fn madvise_leaves_no_stale_translation() {
    for mut cfg in both(&[vec![Op::Madvise { lo: 0, hi: 2 }]]) {
        cfg.pages = vec![0, 1, 2, 5];
        cfg.faults = 1;
        let what = name("madvise 0..2, one fault", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            w.coverage().zero_fills.get() > 0,
            "{what}: expected zero fills after the zap"
        );
    }
}

// Bound: cpu0 makes pages 0-1 read-only; the other CPUs read and write
// (one fault between them: a refused write). Writable entries are tracked
// apart from the translations.
#[test]
fn mprotect_leaves_no_writable_entry() {
    for mut cfg in both(&[vec![Op::Mprotect { lo: 0, hi: 2 }]]) {
        cfg.writes = true;
        cfg.faults = 1;
        let what = name("mprotect 0..2 read-only", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvale1is) > 0,
            "{what}: expected a leaf-only range flush"
        );
    }
}

// Bound: cpu0 forks (every page write-protected and shared with the
// child), then writes like the others; faults: 1 with 2 CPUs, 2 with 3.
// A write fault on a shared page copies it with break-before-make, after
// which the old frame belongs to the child alone.
#[test]
fn fork_leaves_no_writable_entry() {
    for mut cfg in both(&[vec![Op::Fork]]) {
        cfg.writes = true;
        cfg.faults = cfg.ncpus as u8 - 1;
        let what = name("fork, writers", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            w.coverage().cow_copies.get() > 0,
            "{what}: expected copy-on-write copies"
        );
        assert!(
            ops(&w, OpKind::Vale1is) > 0,
            "{what}: expected break-before-make flushes"
        );
    }
}

// Bound: every CPU runs a thread of A that exits, in any order; the last
// tears A down; B is created from the freed frames (its root may be A's
// old root), maps pages 4 and 6, and idle CPUs may switch to it.
#[test]
fn exit_elides_every_tlbi_and_stays_clean() {
    for mut cfg in both(&[vec![Op::Exit], vec![Op::Exit], vec![Op::Exit]]) {
        cfg.scripts.truncate(cfg.ncpus);
        cfg.run_b = true;
        let what = name("exit of every thread", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        let total = w.machine().stats().total();
        assert_eq!(
            (total.total(), total.dsb),
            (0, 0),
            "{what}: expected no TLBI and no DSB, saw {total}"
        );
        assert!(
            total.event(Event::ExitElided) > 0,
            "{what}: expected elided teardowns, saw {total}"
        );
        assert!(
            w.coverage().reuses.get() > 0,
            "{what}: expected B to reuse A's frames"
        );
    }
}

// Bound: the reaper (cpu0, a kernel thread) zaps every VMA of A while A's
// threads on the other CPUs read, walk and may exit (the last one's
// teardown waits for the lock, finds what the reaper left and elides);
// B maps page 4.
#[test]
fn reaper_leaves_no_stale_translation() {
    for mut cfg in both(&[vec![Op::Reap], vec![Op::Exit], vec![Op::Exit]]) {
        cfg.scripts.truncate(cfg.ncpus);
        cfg.b_pages = vec![4];
        let what = name("reaper against running threads", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvae1is) > 0,
            "{what}: expected the reaper's non-leaf range flush"
        );
    }
}

/// Two threads exit with elision, the exiting CPUs keeping the dead mm in
/// TTBR0 (eager speculation).
fn exit_keeping_ttbr0(bug: ExitBug, checks: Checks) -> Config {
    let mut cfg = system(&[vec![Op::Exit], vec![Op::Exit]], 3);
    cfg.scripts.truncate(2);
    cfg.ncpus = 2;
    cfg.bugs.exit = Some(bug);
    cfg.checks = checks;
    cfg
}

fn into_b(v: &Violation) -> bool {
    matches!(
        v,
        Violation::StaleTranslation {
            mm: A,
            frame: FrameUse::Data { mm: B } | FrameUse::Table { mm: B, .. },
            ..
        }
    )
}

#[test]
fn exit_without_ttbr0_switch_is_caught() {
    // Elision is safe only because of the switch: without it the root
    // table is freed under TTBR0 and walk caches point into freed pages...
    let v = explore_finds(
        "exit, TTBR0 kept, elided",
        &exit_keeping_ttbr0(ExitBug::KeepTtbr0Elided, Checks::All),
    );
    assert_eq!(
        v.name(),
        "NoWalkThroughFreedTable",
        "expected a walk into a freed table, saw {v}"
    );
    // ...and once B reuses them, the exiting CPU holds translations into
    // B's frames under A's ASID.
    let v = explore_finds(
        "exit, TTBR0 kept, elided, damage",
        &exit_keeping_ttbr0(ExitBug::KeepTtbr0Elided, Checks::OtherMmOnly),
    );
    assert!(
        into_b(&v),
        "expected a translation into B's frames, saw {v}"
    );
    // `teardown_exit`'s fallback when the mm still looks loaded (one
    // whole-ASID flush) is not enough either: B's new root is A's old one,
    // still in TTBR0, and a walk fills A's ASID with B's pages.
    let v = explore_finds(
        "exit, TTBR0 kept, fallback flush",
        &exit_keeping_ttbr0(ExitBug::KeepTtbr0Flushed, Checks::OtherMmOnly),
    );
    assert!(
        into_b(&v),
        "expected a translation into B's frames, saw {v}"
    );
}

/// Mechanisms.md §5: cpu0 madvises pages 0-1 and cpu1 munmaps page 0; when
/// the munmap runs second it finds the PTE cleared and gathers nothing.
/// The other CPUs read.
fn concurrent_zaps(ncpus: usize, no_fix: bool) -> Config {
    let mut cfg = system(
        &[
            vec![Op::Madvise { lo: 0, hi: 2 }],
            vec![Op::Munmap { lo: 0, hi: 1 }],
        ],
        ncpus,
    );
    cfg.bugs.no_nested_fix = no_fix;
    cfg.b_pages = vec![4];
    cfg
}

#[test]
fn concurrent_zap_needs_the_nested_fix() {
    for ncpus in [2, 3] {
        let what = name(
            "concurrent zaps, nested_fix=off",
            &concurrent_zaps(ncpus, true),
        );
        let v = explore_finds(&what, &concurrent_zaps(ncpus, true));
        assert_eq!(
            v.name(),
            "TLBEmptyInvalPTE",
            "{what}: expected a stale entry after the return, saw {v}"
        );
        let what = name(
            "concurrent zaps, nested_fix=on",
            &concurrent_zaps(ncpus, false),
        );
        let (_, w) = explore_clean(&what, &concurrent_zaps(ncpus, false));
        let total = w.machine().stats().total();
        assert!(
            total.event(Event::NestedFullFlush) > 0,
            "{what}: expected nested whole-ASID flushes, saw {total}"
        );
    }
    // Overlapping munmaps (0-1 and 1-2: one frees the leaf table the other
    // emptied) with the fix, 2 CPUs, scheduled speculation.
    let cfg = system(
        &[
            vec![Op::Munmap { lo: 0, hi: 2 }],
            vec![Op::Munmap { lo: 1, hi: 3 }],
        ],
        2,
    );
    explore_clean(&name("munmap 0..2 against munmap 1..3", &cfg), &cfg);
}

#[test]
fn leaf_only_flush_after_freeing_tables_is_caught() {
    for cfg in both(&[vec![Op::Munmap { lo: 0, hi: 2 }]]) {
        let mut bug = cfg.clone();
        bug.bugs.leaf_only_after_free = true;
        let what = name("munmap 0..2, leaf-only ops", &bug);
        let v = explore_finds(&what, &bug);
        assert_eq!(v.name(), "NoWalkThroughFreedTable", "{what}: saw {v}");
        bug.checks = Checks::OtherMmOnly;
        let v = explore_finds(&format!("{what}, damage"), &bug);
        assert!(
            into_b(&v),
            "{what}: expected a walk through B's reused table, saw {v}"
        );
        let (_, w) = explore_clean(&name("munmap 0..2, non-leaf ops", &cfg), &cfg);
        assert_eq!(
            ops(&w, OpKind::Rvale1is),
            0,
            "expected no leaf-only op when a table is freed"
        );
    }
}

#[test]
fn skipped_flush_is_caught_for_every_operation() {
    let writer = |op: Op| {
        let mut cfg = system(&[vec![op]], 2);
        cfg.writes = true;
        cfg
    };
    // Freeing: a stale leaf reaches a freed frame, or (page 1's leaf
    // table freed too) a stale walk entry a freed table.
    let freed = ["NoStaleTranslation", "NoWalkThroughFreedTable"];
    let cases = [
        (
            "munmap",
            system(&[vec![Op::Munmap { lo: 0, hi: 2 }]], 2),
            &freed[..],
        ),
        (
            "madvise",
            system(&[vec![Op::Madvise { lo: 0, hi: 1 }]], 2),
            &freed[..1],
        ),
        (
            "mprotect",
            writer(Op::Mprotect { lo: 0, hi: 2 }),
            &["TLBEmptyInvalPTE"][..],
        ),
        ("fork", writer(Op::Fork), &["TLBEmptyInvalPTE"][..]),
        ("reaper", system(&[vec![Op::Reap]], 2), &freed[..]),
    ];
    for (what, mut cfg, want) in cases {
        cfg.bugs = Bugs {
            skip_flush: true,
            ..Bugs::default()
        };
        let v = explore_finds(&format!("{what} without a flush"), &cfg);
        assert!(
            want.contains(&v.name()),
            "{what} without a flush: expected one of {want:?}, saw {v}"
        );
    }
}

// Bound: cpu0 maps a new VMA over pages 0-1 with MAP_FIXED (the old pages
// and leaf table zapped, the gather finished under the lock); the others
// read and may fault once (a zero fill in the new VMA); B maps 4 and 6.
#[test]
fn mmap_fixed_leaves_no_stale_translation() {
    for mut cfg in both(&[vec![Op::MmapFixed { lo: 0, hi: 2 }]]) {
        cfg.faults = 1;
        let what = name("mmap FIXED over 0..2", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvae1is) > 0,
            "{what}: expected a non-leaf range flush"
        );
    }
}

/// A questionable behaviour, kept as a characterization: mprotect and
/// mmap(MAP_FIXED) finish their gathers under the lock but ignore zaps in
/// flight (`flush_pending`). If a madvise has cleared a page and not
/// flushed yet, they find no leaf, flush nothing and return while another
/// CPU still holds the old translation (writable, for mprotect) to a frame
/// the madvise still holds: memory-safe, but mprotect(PROT_READ) returns
/// with the page still writable somewhere, and a MAP_FIXED mapping returns
/// with the page it replaced still readable somewhere. Mechanisms.md §5's
/// situation, in calls that do not take part in the fix. Flip to
/// `explore_clean` once they honour `flush_pending`.
#[test]
fn locked_calls_racing_a_zap_need_the_nested_fix() {
    // mprotect and mmap(FIXED) finish under the lock but may find entries a
    // zap in flight cleared and has not flushed yet (`Mm::finish_locked`).
    for op in [
        Op::Mprotect { lo: 0, hi: 1 },
        Op::MmapFixed { lo: 0, hi: 1 },
    ] {
        let mut cfg = system(&[vec![Op::Madvise { lo: 0, hi: 1 }], vec![op]], 3);
        cfg.writes = true;
        let (report, _) = explore_clean(&format!("{op:?} racing madvise, fix on"), &cfg);
        println!("{op:?} racing madvise, fix on: {report}");
        cfg.bugs.no_nested_fix = true;
        let v = explore_finds(&format!("{op:?} racing madvise, fix off"), &cfg);
        assert!(
            matches!(v, Violation::TlbEmptyInvalPte { vpn: 0, .. }),
            "{op:?}: saw {v}"
        );
    }
}

const SEEDS: [u64; 3] = [1, 0x5eed, 0x2a9_0001];
const STEPS: usize = 20_000;

/// Random walks over a mix: 4 CPUs, A maps six pages; cpu0 madvises 0-1
/// then munmaps 2; cpu1 munmaps 1-2 then forks; cpu2 makes 5-6 read-only;
/// cpu3 and everyone done reads and writes (4 faults a run); B maps
/// pages 4 and 7. Each run ends when every script is done.
#[test]
fn random_mixed_operations() {
    let mut cfg = Config::new(vec![
        vec![Op::Madvise { lo: 0, hi: 2 }, Op::Munmap { lo: 2, hi: 3 }],
        vec![Op::Munmap { lo: 1, hi: 3 }, Op::Fork],
        vec![Op::Mprotect { lo: 5, hi: 7 }],
        vec![],
    ]);
    cfg.pages = vec![0, 1, 2, 3, 5, 6];
    cfg.b_pages = vec![4, 7];
    cfg.writes = true;
    cfg.faults = 4;
    cfg.speculation = Speculation::Scheduled;
    cfg.stop_when_done = true;
    let seeds = match std::env::var("ZAP_MODEL_SEED") {
        Ok(s) => vec![s
            .parse()
            .unwrap_or_else(|_| panic!("ZAP_MODEL_SEED={s:?} is not a u64"))],
        Err(_) => SEEDS.to_vec(),
    };
    for seed in seeds {
        let w = World::new(cfg.clone());
        match random_walk(&w, seed, STEPS) {
            Ok(runs) => println!("mixed, seed {seed}: {STEPS} steps, {runs} runs; {}", w.machine().stats().total()),
            Err(ce) => panic!(
                "mixed: expected no violation, saw {} at step {} with seed {seed} (rerun with ZAP_MODEL_SEED={seed})\n  config {cfg:?}\n  last steps:\n{}",
                ce.violation,
                ce.trace.len(),
                ce.render(&w, 40)
            ),
        }
        assert!(
            w.coverage().returns.get() > 100,
            "seed {seed}: expected many returns"
        );
    }
}
