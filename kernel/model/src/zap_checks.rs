//! Model checks of the kernel's TLB protocol (`zap_world`): munmap,
//! madvise(DONTNEED), mprotect, mmap, fork and its copy-on-write faults,
//! exit and the reaper each leave no stale translation reachable, keep
//! break-before-make and never let a write reach a shared frame; and each
//! mechanism that makes it so is shown necessary by switching it off (the
//! kernel's `Bugs`) and watching a check fail.
//!
//! Each exhaustive search covers every interleaving of its system (bounds
//! stated beside each test) and prints its state and transition counts.
//! Two kinds of system per operation: 2 CPUs with *scheduled* speculation
//! from cold TLBs (every moment at which each entry may be filled), and 3
//! CPUs with *eager* speculation (every CPU holds everything it could at
//! every moment). Seeded random walks cover larger mixes
//! (`ZAP_MODEL_SEED=<n>` replays one seed).

use super::explore::{explore, random_walk, Report};
use super::mem::FrameUse;
use super::violation::Violation;
use super::zap_world::{Checks, Config, Script, Speculation, World, A, B};
use kernel::mm::space::Bugs;
use kernel::mm::tlb::{TlbFeatures, Event, OpKind, PolicyParams};

/// Upper bound for any one search here.
const MAX_STATES: u64 = 2_000_000;

fn explore_clean(name: &str, cfg: &Config) -> (Report, World) {
    let w = World::new(cfg.clone());
    match explore(w.clone(), MAX_STATES) {
        Ok(report) => {
            println!("{name}: {report}; {:?}; {}", w.coverage(), w.machine().stats().total());
            assert!(w.coverage().returns.get() > 0, "{name}: expected operations to return, saw none");
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

fn events(w: &World, e: Event) -> u64 {
    w.machine().stats().total().event(e)
}

/// `scripts` on 2 CPUs (scheduled speculation) or 3 (eager); CPUs beyond
/// the scripts given run `A`'s other threads with nothing scripted.
fn system(scripts: &[Vec<Script>], ncpus: usize) -> Config {
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

fn both(scripts: &[Vec<Script>]) -> [Config; 2] {
    [system(scripts, 2), system(scripts, 3)]
}

fn name(what: &str, c: &Config) -> String {
    format!("{what}, {} cpus, {:?} speculation", c.ncpus, c.speculation)
}

fn bugs(f: impl FnOnce(&mut Bugs)) -> Bugs {
    let mut b = Bugs::NONE;
    f(&mut b);
    b
}

fn into_b(v: &Violation) -> bool {
    matches!(
        v,
        Violation::StaleTranslation {
            mm: A,
            frame: FrameUse::Data { mm: B } | FrameUse::Table { mm: B, .. },
            ..
        } | Violation::WalkThroughFreedTable {
            mm: A,
            frame: FrameUse::Data { mm: B } | FrameUse::Table { mm: B, .. },
            ..
        }
    )
}

// Bound: A maps pages 2, 3, 4 and 6 (leaf tables {2,3}, {4}, {6}; level-1
// tables {0-3} and {4-7}); cpu0 munmaps 2..3 (a leaf only), 2..4 (a leaf
// table and the level-1 table above it freed), 3..5 (pages from two leaf
// tables, one freed) or 2..7 (everything; batches of 2 frames, so the
// gather flushes mid-zap); the other CPUs read and walk; B faults pages 1
// and 6 in out of the freed frames. Under three policies: FEAT_TLBIRANGE
// (range ops), cortex-a72 (one op per page) and a72 with
// `tlb.per_page_max=1` (whole ASID).
#[test]
fn munmap_leaves_no_stale_translation() {
    let policies = [
        (
            "max",
            TlbFeatures::RANGE_AND_TTL,
            PolicyParams::DEFAULT,
            &[OpKind::Rvae1is, OpKind::Rvale1is][..],
        ),
        (
            "a72",
            TlbFeatures::NONE,
            PolicyParams::DEFAULT,
            &[OpKind::Vae1is, OpKind::Vale1is][..],
        ),
        (
            "a72 per_page_max=1",
            TlbFeatures::NONE,
            PolicyParams {
                per_page_max: Some(1),
                ..PolicyParams::DEFAULT
            },
            &[OpKind::Aside1is][..],
        ),
    ];
    for (policy, features, params, kinds) in policies {
        for (lo, hi) in [(2, 3), (2, 4), (3, 5), (2, 7)] {
            for cfg in both(&[vec![Script::Munmap { lo, hi }]]) {
                let mut cfg = cfg.pages(&[2, 3, 4, 6]);
                (cfg.tlb.features, cfg.tlb.params) = (features, params);
                let what = name(&format!("munmap {lo}..{hi}, {policy}"), &cfg);
                let (_, w) = explore_clean(&what, &cfg);
                let c = w.coverage();
                assert!(
                    c.frees.get() > 0 && c.reuses.get() > 0,
                    "{what}: expected frees and reuse by B"
                );
                if hi - lo > 1 {
                    let n: u64 = kinds.iter().map(|&k| ops(&w, k)).sum();
                    assert!(
                        n > 0,
                        "{what}: expected {kinds:?}, saw {}",
                        w.machine().stats().total()
                    );
                }
                if (lo, hi) == (2, 7) {
                    assert!(
                        c.partial_batches.get() > 0,
                        "{what}: expected flushes of full batches mid-zap"
                    );
                }
            }
        }
    }
}

// Bound: A maps pages 2, 3, 4 and 6; cpu0 madvises 2..4; the other CPUs
// read and take up to one fault between them (a zero fill racing the
// zap's flush, which must then flush the whole ASID first); B faults 1 and
// 6 in.
#[test]
fn madvise_leaves_no_stale_translation() {
    for cfg in both(&[vec![Script::Madvise { lo: 2, hi: 4 }]]) {
        let mut cfg = cfg.pages(&[2, 3, 4, 6]);
        cfg.faults = 1;
        let what = name("madvise 2..4, one fault", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            w.coverage().zero_fills.get() > 0,
            "{what}: expected zero fills after the zap"
        );
        assert!(
            events(&w, Event::RacingFullFlush) > 0,
            "{what}: expected a fault racing the zap to flush the ASID"
        );
        assert_eq!(
            ops(&w, OpKind::Rvae1is),
            0,
            "{what}: madvise frees no table, so only leaf-only ops"
        );
    }
}

// Bound: cpu0 makes pages 2..4 read-only; the other CPUs read and write
// (one fault between them: a refused write).
#[test]
fn mprotect_leaves_no_writable_entry() {
    for mut cfg in both(&[vec![Script::Mprotect { lo: 2, hi: 4 }]]) {
        cfg.writes = true;
        cfg.faults = 1;
        let what = name("mprotect 2..4 read-only", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvale1is) > 0,
            "{what}: expected a leaf-only range flush"
        );
    }
}

// Bound: cpu0 forks (every page write-protected and shared with the
// child), then writes like the others; faults: 1 with 2 CPUs, 2 with 3;
// the child may exit at any moment, after which a write fault reuses the
// page in place instead of copying it.
#[test]
fn fork_leaves_no_writable_entry() {
    for mut cfg in both(&[vec![Script::Fork]]) {
        cfg.writes = true;
        cfg.faults = cfg.ncpus as u8 - 1;
        let what = name("fork, writers", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        let c = w.coverage();
        assert!(
            c.cow_copies.get() > 0 && c.cow_reuses.get() > 0 && c.child_exits.get() > 0,
            "{what}: {c:?}"
        );
        assert!(
            ops(&w, OpKind::Vale1is) > 0,
            "{what}: expected break-before-make flushes"
        );
    }
}

// The same fork with the child running on a CPU of its own: it reads and
// writes its pages (one copy-on-write fault, the child's or the parent's
// other thread's) and leaves its CPU and exits at any moment; with the
// flushes switched off a check fails. `long_fork_child` allows two faults.
fn fork_child_running(faults: u8) -> Config {
    let mut cfg = system(&[vec![Script::Fork], vec![]], 2);
    cfg.writes = true;
    cfg.faults = faults;
    cfg.child_runs = true;
    cfg
}

#[test]
fn fork_with_the_child_running_leaves_no_writable_entry() {
    let mut cfg = fork_child_running(1);
    let what = "fork, child running, 2+1 cpus, Scheduled speculation";
    let (_, w) = explore_clean(what, &cfg);
    let c = w.coverage();
    assert!(c.child_accesses.get() > 0 && c.child_faults.get() > 0, "{what}: expected the child to run, {c:?}");
    assert!(c.cow_copies.get() > 0 && c.child_exits.get() > 0, "{what}: {c:?}");
    cfg.tlb.bugs = bugs(|b| b.skip_flush = true);
    let v = explore_finds(&format!("{what}, no flushes"), &cfg);
    assert!(
        matches!(v.name(), "NoStaleTranslation" | "NoWriteToSharedFrame" | "TLBEmptyInvalPTE" | "BreakBeforeMake"),
        "saw {v}"
    );
}

// Bound: every CPU runs a thread of A that exits, in any order; the last
// one tears A down; B faults pages 1 and 6 in from the freed frames and
// CPUs whose thread is gone may switch to it (two switches).
#[test]
fn exit_elides_every_broadcast_and_stays_clean() {
    for mut cfg in both(&[vec![Script::Exit], vec![Script::Exit], vec![Script::Exit]]) {
        cfg.scripts.truncate(cfg.ncpus);
        cfg.switches = 2;
        let what = name("exit of every thread", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        let total = w.machine().stats().total();
        assert_eq!(
            total.broadcast(),
            0,
            "{what}: expected no broadcast TLBI, saw {total}"
        );
        assert!(
            total.event(Event::ExitElided) > 0,
            "{what}: expected elided teardowns, saw {total}"
        );
        assert_eq!(
            total.event(Event::ExitLocalFlush),
            total.get(OpKind::Aside1),
            "{what}: one local ASIDE1 per leaving thread"
        );
        assert!(
            w.coverage().reuses.get() > 0,
            "{what}: expected B to reuse A's frames"
        );
    }
}

// The same systems with elision off (`tlb.exit_elide=off`): the teardown
// flushes the whole ASID once, broadcast, before it frees anything.
#[test]
fn exit_without_elision_flushes_once_and_stays_clean() {
    for mut cfg in both(&[vec![Script::Exit], vec![Script::Exit], vec![Script::Exit]]) {
        cfg.scripts.truncate(cfg.ncpus);
        cfg.switches = 2;
        cfg.tlb.exit_elide = false;
        let what = name("exit of every thread, no elision", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        let total = w.machine().stats().total();
        assert_eq!(total.event(Event::ExitElided), 0, "{what}: expected no elided teardown, saw {total}");
        assert!(total.get(OpKind::Aside1is) > 0, "{what}: expected the teardown's ASIDE1IS, saw {total}");
    }
}

// Bound: the reaper (cpu0, a kernel thread) zaps every VMA of A while A's
// threads on the other CPUs read, walk and exit (the last reference, the
// reaper's or a thread's, tears A down); B faults page 1 in.
#[test]
fn reaper_leaves_no_stale_translation() {
    for mut cfg in both(&[vec![Script::Reap], vec![Script::Exit], vec![Script::Exit]]) {
        cfg.scripts.truncate(cfg.ncpus);
        cfg.b_pages = vec![1];
        let what = name("reaper against running threads", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvae1is) > 0,
            "{what}: expected the reaper's non-leaf range flush"
        );
        assert!(
            w.coverage().exits_during_zap.get() > 0,
            "{what}: expected exits while the reaper zaps"
        );
    }
}

/// A zap of an mm that has never run issues no TLBI (it has no ASID, so no
/// TLB holds its entries). The ASID is read after the zap's page-table
/// writes, so a CPU activating the mm for the first time meanwhile walks
/// the new tables; read before them (`Bugs::asid_read_early`), a first
/// activation in between fills the TLB from the old tables and the skipped
/// flush leaves that entry stale. The reaper (cpu0) against a thread of A
/// (cpu1) that first runs while it zaps.
#[test]
fn never_active_mm_skips_its_flush_safely() {
    let mut cfg = system(&[vec![Script::Reap], vec![]], 2);
    cfg.a_first_run = true;
    cfg.b_pages = vec![1];
    let (_, w) = explore_clean("reaper against A's first run", &cfg);
    assert!(w.coverage().flushes_never_active.get() > 0, "expected zaps that reach their flush with no ASID");
    cfg.tlb.bugs = bugs(|b| b.asid_read_early = true);
    let v = explore_finds("reaper against A's first run, ASID read early", &cfg);
    assert!(
        matches!(v.name(), "TLBEmptyInvalPTE" | "NoStaleTranslation" | "NoWalkThroughFreedTable" | "BreakBeforeMake"),
        "expected a stale entry of A's first run, saw {v}"
    );
}

/// Two threads exit, the exiting CPUs keeping the dead mm in TTBR0.
fn exit_keeping_ttbr0(checks: Checks) -> Config {
    let mut cfg = system(&[vec![Script::Exit], vec![Script::Exit]], 2);
    cfg.speculation = Speculation::Eager;
    cfg.tlb.bugs = bugs(|b| b.exit_keeps_ttbr0 = true);
    cfg.checks = checks;
    cfg
}

#[test]
fn exit_without_ttbr0_switch_is_caught() {
    // Elision is safe only because of the switch: without it the tables
    // and pages are freed under TTBR0 while the TLB and walk caches still
    // lead into them...
    let v = explore_finds("exit, TTBR0 kept", &exit_keeping_ttbr0(Checks::All));
    assert!(
        matches!(v.name(), "NoWalkThroughFreedTable" | "NoStaleTranslation"),
        "expected a translation or walk into a freed frame, saw {v}"
    );
    // ...and once B reuses them, the exiting CPU holds translations into
    // B's frames under A's ASID.
    let v = explore_finds(
        "exit, TTBR0 kept, damage",
        &exit_keeping_ttbr0(Checks::OtherMmOnly),
    );
    assert!(
        into_b(&v),
        "expected a translation into B's frames, saw {v}"
    );
}

/// Mechanisms.md §5: cpu0 madvises pages 2-3 and cpu1 munmaps page 2; when
/// the munmap runs second it finds the PTE cleared and gathers nothing.
fn concurrent_zaps(ncpus: usize, fix: bool) -> Config {
    let mut cfg = system(
        &[
            vec![Script::Madvise { lo: 2, hi: 4 }],
            vec![Script::Munmap { lo: 2, hi: 3 }],
        ],
        ncpus,
    );
    cfg.tlb.nested_fix = fix;
    // Room for both pages: the madvise's flush waits for its unlock.
    cfg.tlb.batch = 4;
    cfg.b_pages = vec![1];
    cfg
}

#[test]
fn concurrent_zap_needs_the_nested_fix() {
    for ncpus in [2, 3] {
        let cfg = concurrent_zaps(ncpus, false);
        let what = name("concurrent zaps, nested_fix=off", &cfg);
        let v = explore_finds(&what, &cfg);
        assert_eq!(
            v.name(),
            "TLBEmptyInvalPTE",
            "{what}: expected a stale entry after the return, saw {v}"
        );
        let cfg = concurrent_zaps(ncpus, true);
        let what = name("concurrent zaps, nested_fix=on", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            events(&w, Event::NestedFullFlush) > 0,
            "{what}: expected nested whole-ASID flushes"
        );
    }
    // Overlapping munmaps (2..4 and 3..5: one frees the leaf table the
    // other emptied) with the fix.
    let cfg = system(
        &[
            vec![Script::Munmap { lo: 2, hi: 4 }],
            vec![Script::Munmap { lo: 3, hi: 5 }],
        ],
        2,
    );
    explore_clean(&name("munmap 2..4 against munmap 3..5", &cfg), &cfg);
}

#[test]
fn leaf_only_flush_after_freeing_tables_is_caught() {
    for mut cfg in both(&[vec![Script::Munmap { lo: 2, hi: 4 }]]) {
        // One gather for the whole zap: its one flush follows the table frees.
        cfg.tlb.batch = 4;
        let mut bug = cfg.clone();
        bug.tlb.bugs = bugs(|b| b.leaf_only_after_free = true);
        let what = name("munmap 2..4, leaf-only ops", &bug);
        let v = explore_finds(&what, &bug);
        assert_eq!(v.name(), "NoWalkThroughFreedTable", "{what}: saw {v}");
        bug.checks = Checks::OtherMmOnly;
        let v = explore_finds(&format!("{what}, damage"), &bug);
        assert!(
            into_b(&v),
            "{what}: expected a walk through B's reused table, saw {v}"
        );
        let (_, w) = explore_clean(&name("munmap 2..4, non-leaf ops", &cfg), &cfg);
        assert_eq!(
            ops(&w, OpKind::Rvale1is),
            0,
            "expected no leaf-only op when a table is freed"
        );
        assert!(ops(&w, OpKind::Rvae1is) > 0, "expected non-leaf range ops");
    }
}

#[test]
fn skipped_flush_is_caught_for_every_operation() {
    let writer = |call: Script| {
        let mut cfg = system(&[vec![call]], 2);
        cfg.writes = true;
        cfg
    };
    let freed = [
        "NoStaleTranslation",
        "NoWalkThroughFreedTable",
        "TLBEmptyInvalPTE",
    ];
    let mut fixed = system(&[vec![Script::MmapFixed { lo: 2, hi: 4 }]], 2);
    fixed.faults = 1;
    let mut madvise = system(&[vec![Script::Madvise { lo: 2, hi: 3 }]], 2);
    madvise.faults = 1;
    let mut fault = writer(Script::Fork);
    fault.faults = 1;
    let cases = [
        (
            "munmap",
            system(&[vec![Script::Munmap { lo: 2, hi: 4 }]], 2),
            &freed[..],
        ),
        ("madvise", madvise, &freed[..]),
        (
            "mprotect",
            writer(Script::Mprotect { lo: 2, hi: 4 }),
            &["TLBEmptyInvalPTE"][..],
        ),
        (
            "fork",
            writer(Script::Fork),
            &["TLBEmptyInvalPTE", "NoWriteToSharedFrame"][..],
        ),
        (
            "mmap FIXED",
            fixed,
            &[&freed[..], &["BreakBeforeMake"][..]].concat()[..],
        ),
        ("reaper", system(&[vec![Script::Reap]], 2), &freed[..]),
    ];
    for (what, mut cfg, want) in cases {
        cfg.tlb.bugs = bugs(|b| b.skip_flush = true);
        let v = explore_finds(&format!("{what} without a flush"), &cfg);
        assert!(
            want.contains(&v.name()),
            "{what} without a flush: expected one of {want:?}, saw {v}"
        );
    }
}

// Bound: cpu0 maps a new VMA over pages 2-3 with MAP_FIXED (the old pages
// zapped, the tables kept, the gather flushed under the lock); the others
// read and may fault once (a zero fill in the new VMA); B faults 1 and 6
// in.
#[test]
fn mmap_fixed_leaves_no_stale_translation() {
    for mut cfg in both(&[vec![Script::MmapFixed { lo: 2, hi: 4 }]]) {
        cfg.faults = 1;
        let what = name("mmap FIXED over 2..4", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(
            ops(&w, OpKind::Rvale1is) > 0,
            "{what}: expected a leaf-only range flush"
        );
        assert!(
            w.coverage().zero_fills.get() > 0,
            "{what}: expected zero fills in the new VMA"
        );
    }
}

/// mprotect, mmap (with MAP_FIXED or not) and fork finish under the lock;
/// a zap in flight may have cleared a page they cover and not flushed it
/// yet, so they flush the whole ASID when one is (`Bugs::no_racing_fix`
/// turns that off; mechanisms.md §5's situation, in the calls that finish
/// under the lock).
#[test]
fn locked_calls_racing_a_zap_need_the_racing_fix() {
    let madvise = Script::Madvise { lo: 2, hi: 3 };
    let cases = [
        (madvise, Script::Mprotect { lo: 2, hi: 3 }),
        (madvise, Script::MmapFixed { lo: 2, hi: 3 }),
        (madvise, Script::Fork),
        // mmap hands out again the page a racing munmap has emptied.
        (
            Script::Munmap { lo: 2, hi: 3 },
            Script::Mmap { lo: 2, hi: 3 },
        ),
    ];
    for (zap, call) in cases {
        let mut cfg = system(&[vec![zap], vec![call]], 3);
        cfg.writes = true;
        let (_, w) = explore_clean(&format!("{call:?} racing {zap:?}, fix on"), &cfg);
        assert!(
            events(&w, Event::RacingFullFlush) > 0,
            "{call:?}: expected racing whole-ASID flushes"
        );
        cfg.tlb.bugs = bugs(|b| b.no_racing_fix = true);
        let v = explore_finds(&format!("{call:?} racing {zap:?}, fix off"), &cfg);
        assert!(
            matches!(v, Violation::TlbEmptyInvalPte { vpn: 2, .. }),
            "{call:?}: saw {v}"
        );
    }
}

/// A fault that installs a page while a zap of it is in flight: without
/// the whole-ASID flush first, the new entry meets the stale one.
#[test]
fn fault_racing_a_zap_needs_the_racing_fix() {
    let mut cfg = system(&[vec![Script::Madvise { lo: 2, hi: 3 }]], 2);
    cfg.faults = 1;
    cfg.tlb.bugs = bugs(|b| b.no_racing_fix = true);
    let v = explore_finds("fault racing madvise, fix off", &cfg);
    assert_eq!(v.name(), "BreakBeforeMake", "saw {v}");
    cfg.tlb.bugs = Bugs::NONE;
    let (_, w) = explore_clean("fault racing madvise", &cfg);
    assert!(
        events(&w, Event::RacingFullFlush) > 0,
        "expected faults that flush the whole ASID first"
    );
}

/// Break-before-make for table descriptors: after a zap frees tables, a
/// fault must not install a new table descriptor while some walk cache
/// still holds the old one. Two mechanisms each close it: the zap flushes
/// before it drops the lock when it freed tables, and a fault that finds a
/// zap in flight flushes the whole ASID before it installs anything. With
/// both off the hole shows; with either on, the search is clean.
#[test]
fn table_break_before_make_is_needed() {
    // munmap, then a fault in a new mapping there; madvise made to free
    // tables (its mappings stay, so a fault may refill them at once).
    let cases = [
        (
            "munmap",
            vec![
                vec![Script::Munmap { lo: 2, hi: 4 }],
                vec![Script::Mmap { lo: 2, hi: 4 }],
            ],
            bugs(|b| b.table_flush_after_unlock = true),
        ),
        (
            "madvise",
            vec![vec![Script::Madvise { lo: 2, hi: 4 }]],
            bugs(|b| (b.madvise_frees_tables, b.table_flush_after_unlock) = (true, true)),
        ),
    ];
    for (what, scripts, bug) in cases {
        let mut cfg = system(&scripts, 2);
        cfg.faults = 1;
        // One gather for pages and tables: nothing flushes mid-zap.
        cfg.tlb.batch = 8;
        cfg.tlb.bugs = Bugs {
            no_racing_fix: true,
            ..bug
        };
        let v = explore_finds(
            &format!("{what}: tables flushed after unlock, no racing fix"),
            &cfg,
        );
        assert!(
            matches!(
                v,
                Violation::BreakBeforeMake { level: Some(_), .. }
                    | Violation::WalkThroughFreedTable { .. }
            ),
            "{what}: expected a stale table descriptor, saw {v}"
        );
        cfg.tlb.bugs = bug;
        explore_clean(
            &format!("{what}: tables flushed after unlock, racing fix"),
            &cfg,
        );
        cfg.tlb.bugs = Bugs {
            no_racing_fix: true,
            table_flush_after_unlock: false,
            ..bug
        };
        explore_clean(
            &format!("{what}: tables flushed under the lock, no racing fix"),
            &cfg,
        );
    }
}

// Bound: 2-bit ASIDs (3 per generation) with 2 CPUs, A and B and two
// empty address spaces, 4 context switches: the allocator rolls over while
// cpu0 munmaps (or the reaper zaps) and cpu1 switches around.
#[test]
fn rollover_during_zap_and_reap() {
    for call in [
        Script::Munmap { lo: 2, hi: 4 },
        Script::Madvise { lo: 2, hi: 4 },
        Script::Reap,
    ] {
        let mut cfg = system(&[vec![call], vec![]], 2);
        cfg.speculation = Speculation::Eager;
        cfg.asid_bits = 2;
        cfg.others = 2;
        cfg.switches = 4;
        cfg.b_pages = vec![1];
        let what = format!("{call:?} across rollovers");
        let (_, w) = explore_clean(&what, &cfg);
        let c = w.coverage();
        assert!(
            c.rollovers_in_op.get() > 0,
            "{what}: expected rollovers during the zap, {c:?}"
        );
    }
}

const SEEDS: [u64; 3] = [1, 0x5eed, 0x2a9_0001];
const STEPS: usize = 200_000;

/// Random walks over a mix: 4 CPUs, A maps five pages; cpu0 madvises 2..4
/// then munmaps 4; cpu1 munmaps 3..5 then forks then maps 3..5 again;
/// cpu2 makes 5-6 read-only then exits; cpu3 and everyone done reads and
/// writes (4 faults a run); 3-bit ASIDs, 10 switches among A, B and six
/// empty mms; B faults pages 1 and 7 in. Each run ends when every script is done
/// (`ZAP_MODEL_STEPS=<n>` sets the steps per seed).
#[test]
fn random_mixed_operations() {
    let mut cfg = Config::new(vec![
        vec![
            Script::Madvise { lo: 2, hi: 4 },
            Script::Munmap { lo: 4, hi: 5 },
        ],
        vec![
            Script::Munmap { lo: 3, hi: 5 },
            Script::Fork,
            Script::Mmap { lo: 3, hi: 5 },
        ],
        vec![Script::Mprotect { lo: 5, hi: 7 }, Script::Exit],
        vec![],
    ])
    .pages(&[2, 3, 4, 5, 6]);
    cfg.b_pages = vec![1, 7];
    cfg.writes = true;
    cfg.faults = 4;
    cfg.asid_bits = 3;
    cfg.others = 6;
    cfg.switches = 10;
    cfg.speculation = Speculation::Scheduled;
    cfg.stop_when_done = true;
    let seeds = match std::env::var("ZAP_MODEL_SEED") {
        Ok(s) => vec![s
            .parse()
            .unwrap_or_else(|_| panic!("ZAP_MODEL_SEED={s:?} is not a u64"))],
        Err(_) => SEEDS.to_vec(),
    };
    let steps = std::env::var("ZAP_MODEL_STEPS")
        .map_or(STEPS, |s| s.parse().expect("ZAP_MODEL_STEPS is a count"));
    for seed in seeds {
        let w = World::new(cfg.clone());
        match random_walk(&w, seed, steps) {
            Ok(runs) => println!("mixed, seed {seed}: {steps} steps, {runs} runs; {:?}; {}", w.coverage(), w.machine().stats().total()),
            Err(ce) => panic!(
                "mixed: expected no violation, saw {} at step {} with seed {seed} (rerun with ZAP_MODEL_SEED={seed})\n  config {cfg:?}\n  last steps:\n{}",
                ce.violation,
                ce.trace.len(),
                ce.render(&w, 40)
            ),
        }
        let c = w.coverage();
        assert!(
            c.returns.get() > 100 && c.rollovers.get() > 0,
            "seed {seed}: expected many returns and rollovers, {c:?}"
        );
    }
}

/// The DSB that ends every TTBR0 switch (the sequence `arch` implements;
/// `HwBugs::ttbr_without_dsb` drops it from the model's hardware): cpu1
/// runs a thread of A and is switched out; the thread then exits on cpu0
/// (threads migrate), the last user, and cpu0 tears A down with its flush
/// elided. Without the DSB, a walk cpu1 started from A's root may still be
/// in flight when the root is freed. (The exhaustive systems keep threads
/// on their CPUs, where the exit's own local flush ends with a DSB.)
#[test]
fn ttbr0_switch_needs_its_dsb() {
    use super::bridge::{Bridge, HwBugs};
    use super::machine::Machine;
    use super::zap_world::{reduced, va, NOBODY};
    use abi::{map, prot};
    use core::cell::RefCell;
    use kernel::mm::asid::{AsidAllocator, Bugs as AsidBugs};
    use kernel::mm::aspace::{Access, AddressSpace};
    use kernel::mm::pte::PAGE_SIZE;
    use kernel::mm::space::{switch, Call, Mm, Op};

    for bug in [false, true] {
        let cfg = Config::new(vec![vec![], vec![]]);
        let tlb = &cfg.tlb;
        let machine = RefCell::new(Machine::new(2, cfg.format, 8));
        machine
            .borrow_mut()
            .mem_mut()
            .alloc(FrameUse::Data { mm: NOBODY });
        let alloc = AsidAllocator::new(4, 2, AsidBugs::NONE).expect("ASIDs for 2 CPUs");
        let hw = |cpu| Bridge {
            m: &machine,
            cpu,
            mm: A,
            bugs: HwBugs {
                ttbr_without_dsb: bug,
            },
        };
        let mm = Mm::new(
            A as u64,
            AddressSpace::new_in(reduced(cfg.format), &hw(0)).expect("a root"),
        );
        let map = Call::Mmap {
            addr: va(2),
            len: PAGE_SIZE,
            prot: prot::READ | prot::WRITE,
            flags: map::FIXED,
        };
        for call in [
            map,
            Call::Fault {
                va: va(2),
                access: Access::Write,
            },
        ] {
            let mut op = Op::new(call, tlb);
            mm.run(&mut op, tlb, &hw(0), &hw(0), |_| {});
            assert!(op.outcome().is_ok(), "setup {call:?}: {:?}", op.outcome());
        }
        switch::activate(&mm, &alloc, tlb, &hw(0));
        switch::activate(&mm, &alloc, tlb, &hw(1));
        machine.borrow_mut().speculate(1);
        switch::deactivate(Some(&mm), &hw(1));
        switch::leave_dying(&mm, tlb, &hw(0));
        let mut teardown = Op::new(Call::Teardown, tlb);
        mm.run(&mut teardown, tlb, &hw(0), &hw(0), |_| {});
        assert!(
            teardown.outcome().is_ok(),
            "teardown: {:?}",
            teardown.outcome()
        );
        alloc.release(&hw(0), &mm.ctx);
        let m = machine.borrow();
        assert!(
            m.mem().free_frames() >= 3,
            "expected the teardown to free A's tables"
        );
        match (bug, m.check_tlbs()) {
            (false, r) => assert_eq!(r, Ok(()), "with the DSB"),
            (
                true,
                Err(
                    v @ Violation::WalkThroughFreedTable {
                        cpu: 1,
                        level: None,
                        ..
                    },
                ),
            ) => println!("without the DSB: {v}"),
            (true, r) => {
                panic!("without the DSB: expected cpu1's walk through the freed root, saw {r:?}")
            }
        }
    }
}

// Long mode (`scripts/model.sh`, or `cargo test -p tlbmodel --release --
// --ignored`): one larger system per family, each with 3 CPUs and
// scheduled speculation (every moment at which each entry may be filled).

/// Upper bound for a long search.
const LONG_MAX_STATES: u64 = 60_000_000;

fn explore_long(name: &str, cfg: &Config) -> Report {
    let w = World::new(cfg.clone());
    match explore(w.clone(), LONG_MAX_STATES) {
        Ok(report) => {
            println!("{name}: {report}; {:?}; {}", w.coverage(), w.machine().stats().total());
            assert_eq!(report.bounded, 0, "{name}: the search hit its bound");
            report
        }
        Err((report, ce)) => panic!(
            "{name}: expected no violation, saw {}\n  after {report}\n  config {cfg:?}\n  trace:\n{}",
            ce.violation,
            ce.render(&w, 60)
        ),
    }
}

fn long(scripts: &[Vec<Script>]) -> Config {
    let mut cfg = system(scripts, 3);
    cfg.speculation = Speculation::Scheduled;
    cfg
}

/// Zaps: munmap 2..7 (batches fill mid-zap, tables freed) against madvise
/// 2..4 and a reader, A mapping pages 2, 3, 4 and 6.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_zap() {
    let cfg = long(&[vec![Script::Munmap { lo: 2, hi: 7 }], vec![Script::Madvise { lo: 2, hi: 4 }]]).pages(&[2, 3, 4, 6]);
    explore_long("long: munmap 2..7 against madvise 2..4, 3 cpus", &cfg);
}

/// Faults: madvise 2..4 while two other threads read, write and fault.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_fault() {
    let mut cfg = long(&[vec![Script::Madvise { lo: 2, hi: 4 }]]);
    cfg.writes = true;
    cfg.faults = 2;
    explore_long("long: madvise 2..4 with two faults, 3 cpus", &cfg);
}

/// Fork: a fork while two other threads write (one copy-on-write or
/// zero-fill fault between them) and the child may exit.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_fork() {
    let mut cfg = long(&[vec![Script::Fork]]);
    cfg.writes = true;
    cfg.faults = 1;
    explore_long("long: fork with two writers, 3 cpus", &cfg);
}

/// Fork with the child running and two faults between the child and the
/// parent's other thread.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_fork_child() {
    explore_long("long: fork, child running, two faults, 2+1 cpus", &fork_child_running(2));
}

/// Exit and reap: the reaper zaps A while its two threads exit and CPUs
/// switch to B and back.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_exit_reap() {
    let mut cfg = long(&[vec![Script::Reap], vec![Script::Exit], vec![Script::Exit]]);
    cfg.switches = 2;
    explore_long("long: reaper against two exiting threads, 3 cpus", &cfg);
}
