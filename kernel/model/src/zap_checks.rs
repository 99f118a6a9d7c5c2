//! Model checks of the kernel's TLB protocol (`zap_world`): munmap,
//! madvise(DONTNEED), mprotect, mmap, fork and its copy-on-write faults,
//! exit and the reaper each leave no stale translation reachable, keep
//! break-before-make and never let a write reach a shared frame; and each
//! mechanism that makes it so is shown necessary by switching it off (the
//! kernel's `Bugs`, the model hardware's `HwBugs`) and watching a check
//! fail.
//!
//! The flush strategies (`tlb.strategy`: ipi, local, auto, and broadcast)
//! are checked in systems with lazy CPUs, threads switched out and moved to
//! other CPUs, an adopter (use_mm), IPIs served in any order, freed tables
//! and ASID rollovers; and the mechanisms they rest on are each switched
//! off: the stale mark of a local flush, the adopter's count in the users,
//! lazy CPUs leaving when tables are freed, the whole-ASID flush of a CPU
//! more than one generation behind, the catch-up before TTBR0 is loaded,
//! and the DSB after a TTBR0 write.
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
use kernel::mm::space::{Bugs, Strategy};
use kernel::mm::tlb::{Event, OpKind, PolicyParams, TlbFeatures};

/// Upper bound for any one search here.
const MAX_STATES: u64 = 2_000_000;

pub(super) fn explore_clean(name: &str, cfg: &Config) -> (Report, World) {
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

pub(super) fn explore_finds(name: &str, cfg: &Config) -> Violation {
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

pub(super) fn ops(w: &World, kind: OpKind) -> u64 {
    w.machine().stats().total().get(kind)
}

pub(super) fn events(w: &World, e: Event) -> u64 {
    w.machine().stats().total().event(e)
}

/// `scripts` on 2 CPUs (scheduled speculation) or 3 (eager); CPUs beyond
/// the scripts given run `A`'s other threads with nothing scripted.
pub(super) fn system(scripts: &[Vec<Script>], ncpus: usize) -> Config {
    let mut all = scripts.to_vec();
    all.resize(ncpus, Vec::new());
    let mut c = Config::new(all);
    c.speculation = if ncpus == 2 { Speculation::Scheduled } else { Speculation::Eager };
    c
}

fn both(scripts: &[Vec<Script>]) -> [Config; 2] {
    [system(scripts, 2), system(scripts, 3)]
}

fn name(what: &str, c: &Config) -> String {
    format!("{what}, {} cpus, {:?} speculation", c.ncpus, c.speculation)
}

pub(super) fn bugs(f: impl FnOnce(&mut Bugs)) -> Bugs {
    let mut b = Bugs::NONE;
    f(&mut b);
    b
}

pub(super) fn into_b(v: &Violation) -> bool {
    matches!(
        v,
        Violation::StaleTranslation { mm: A, frame: FrameUse::Data { mm: B } | FrameUse::Table { mm: B, .. }, .. }
            | Violation::WalkThroughFreedTable {
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
        ("max", TlbFeatures::RANGE_AND_TTL, PolicyParams::DEFAULT, &[OpKind::Rvae1is, OpKind::Rvale1is][..]),
        ("a72", TlbFeatures::NONE, PolicyParams::DEFAULT, &[OpKind::Vae1is, OpKind::Vale1is][..]),
        (
            "a72 per_page_max=1",
            TlbFeatures::NONE,
            PolicyParams { per_page_max: Some(1), ..PolicyParams::DEFAULT },
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
                assert!(c.frees.get() > 0 && c.reuses.get() > 0, "{what}: expected frees and reuse by B");
                if hi - lo > 1 {
                    let n: u64 = kinds.iter().map(|&k| ops(&w, k)).sum();
                    assert!(n > 0, "{what}: expected {kinds:?}, saw {}", w.machine().stats().total());
                }
                if (lo, hi) == (2, 7) {
                    assert!(c.partial_batches.get() > 0, "{what}: expected flushes of full batches mid-zap");
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
        assert!(w.coverage().zero_fills.get() > 0, "{what}: expected zero fills after the zap");
        assert!(events(&w, Event::RacingFullFlush) > 0, "{what}: expected a fault racing the zap to flush the ASID");
        assert_eq!(ops(&w, OpKind::Rvae1is), 0, "{what}: madvise frees no table, so only leaf-only ops");
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
        assert!(ops(&w, OpKind::Rvale1is) > 0, "{what}: expected a leaf-only range flush");
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
        assert!(c.cow_copies.get() > 0 && c.cow_reuses.get() > 0 && c.child_exits.get() > 0, "{what}: {c:?}");
        assert!(ops(&w, OpKind::Vale1is) > 0, "{what}: expected break-before-make flushes");
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
        assert_eq!(total.broadcast(), 0, "{what}: expected no broadcast TLBI, saw {total}");
        assert!(total.event(Event::ExitElided) > 0, "{what}: expected elided teardowns, saw {total}");
        assert_eq!(
            total.event(Event::ExitLocalFlush),
            total.get(OpKind::Aside1),
            "{what}: one local ASIDE1 per leaving thread"
        );
        assert!(w.coverage().reuses.get() > 0, "{what}: expected B to reuse A's frames");
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
        assert!(ops(&w, OpKind::Rvae1is) > 0, "{what}: expected the reaper's non-leaf range flush");
        assert!(w.coverage().exits_during_zap.get() > 0, "{what}: expected exits while the reaper zaps");
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
    let v = explore_finds("exit, TTBR0 kept, damage", &exit_keeping_ttbr0(Checks::OtherMmOnly));
    assert!(into_b(&v), "expected a translation into B's frames, saw {v}");
}

/// Mechanisms.md §5: cpu0 madvises pages 2-3 and cpu1 munmaps page 2; when
/// the munmap runs second it finds the PTE cleared and gathers nothing.
fn concurrent_zaps(ncpus: usize, fix: bool) -> Config {
    let mut cfg = system(&[vec![Script::Madvise { lo: 2, hi: 4 }], vec![Script::Munmap { lo: 2, hi: 3 }]], ncpus);
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
        assert_eq!(v.name(), "TLBEmptyInvalPTE", "{what}: expected a stale entry after the return, saw {v}");
        let cfg = concurrent_zaps(ncpus, true);
        let what = name("concurrent zaps, nested_fix=on", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::NestedFullFlush) > 0, "{what}: expected nested whole-ASID flushes");
    }
    // Overlapping munmaps (2..4 and 3..5: one frees the leaf table the
    // other emptied) with the fix.
    let cfg = system(&[vec![Script::Munmap { lo: 2, hi: 4 }], vec![Script::Munmap { lo: 3, hi: 5 }]], 2);
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
        assert!(into_b(&v), "{what}: expected a walk through B's reused table, saw {v}");
        let (_, w) = explore_clean(&name("munmap 2..4, non-leaf ops", &cfg), &cfg);
        assert_eq!(ops(&w, OpKind::Rvale1is), 0, "expected no leaf-only op when a table is freed");
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
    let freed = ["NoStaleTranslation", "NoWalkThroughFreedTable", "TLBEmptyInvalPTE"];
    let mut fixed = system(&[vec![Script::MmapFixed { lo: 2, hi: 4 }]], 2);
    fixed.faults = 1;
    let mut madvise = system(&[vec![Script::Madvise { lo: 2, hi: 3 }]], 2);
    madvise.faults = 1;
    let mut fault = writer(Script::Fork);
    fault.faults = 1;
    let cases = [
        ("munmap", system(&[vec![Script::Munmap { lo: 2, hi: 4 }]], 2), &freed[..]),
        ("madvise", madvise, &freed[..]),
        ("mprotect", writer(Script::Mprotect { lo: 2, hi: 4 }), &["TLBEmptyInvalPTE"][..]),
        ("fork", writer(Script::Fork), &["TLBEmptyInvalPTE", "NoWriteToSharedFrame"][..]),
        ("mmap FIXED", fixed, &[&freed[..], &["BreakBeforeMake"][..]].concat()[..]),
        ("reaper", system(&[vec![Script::Reap]], 2), &freed[..]),
    ];
    for (what, mut cfg, want) in cases {
        cfg.tlb.bugs = bugs(|b| b.skip_flush = true);
        let v = explore_finds(&format!("{what} without a flush"), &cfg);
        assert!(want.contains(&v.name()), "{what} without a flush: expected one of {want:?}, saw {v}");
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
        assert!(ops(&w, OpKind::Rvale1is) > 0, "{what}: expected a leaf-only range flush");
        assert!(w.coverage().zero_fills.get() > 0, "{what}: expected zero fills in the new VMA");
    }
}

/// mprotect, mmap (with MAP_FIXED or not) and fork finish under the lock;
/// a zap in flight may have cleared a page they cover and not flushed it
/// yet, so they flush the whole ASID when one is (`Bugs::no_racing_fix`
/// turns that off; docs/mechanisms.md §5's situation, in the calls that finish
/// under the lock).
#[test]
fn locked_calls_racing_a_zap_need_the_racing_fix() {
    let madvise = Script::Madvise { lo: 2, hi: 3 };
    let cases = [
        (madvise, Script::Mprotect { lo: 2, hi: 3 }),
        (madvise, Script::MmapFixed { lo: 2, hi: 3 }),
        (madvise, Script::Fork),
        // mmap hands out again the page a racing munmap has emptied.
        (Script::Munmap { lo: 2, hi: 3 }, Script::Mmap { lo: 2, hi: 3 }),
    ];
    for (zap, call) in cases {
        let mut cfg = system(&[vec![zap], vec![call]], 3);
        cfg.writes = true;
        let (_, w) = explore_clean(&format!("{call:?} racing {zap:?}, fix on"), &cfg);
        assert!(events(&w, Event::RacingFullFlush) > 0, "{call:?}: expected racing whole-ASID flushes");
        cfg.tlb.bugs = bugs(|b| b.no_racing_fix = true);
        let v = explore_finds(&format!("{call:?} racing {zap:?}, fix off"), &cfg);
        assert!(matches!(v, Violation::TlbEmptyInvalPte { vpn: 2, .. }), "{call:?}: saw {v}");
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
    assert!(events(&w, Event::RacingFullFlush) > 0, "expected faults that flush the whole ASID first");
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
            vec![vec![Script::Munmap { lo: 2, hi: 4 }], vec![Script::Mmap { lo: 2, hi: 4 }]],
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
        cfg.tlb.bugs = Bugs { no_racing_fix: true, ..bug };
        let v = explore_finds(&format!("{what}: tables flushed after unlock, no racing fix"), &cfg);
        assert!(
            matches!(v, Violation::BreakBeforeMake { level: Some(_), .. } | Violation::WalkThroughFreedTable { .. }),
            "{what}: expected a stale table descriptor, saw {v}"
        );
        cfg.tlb.bugs = bug;
        explore_clean(&format!("{what}: tables flushed after unlock, racing fix"), &cfg);
        cfg.tlb.bugs = Bugs { no_racing_fix: true, table_flush_after_unlock: false, ..bug };
        explore_clean(&format!("{what}: tables flushed under the lock, no racing fix"), &cfg);
    }
}

// Bound: 2-bit ASIDs (3 per generation) with 2 CPUs, A and B and two
// empty address spaces, 4 context switches: the allocator rolls over while
// cpu0 munmaps (or the reaper zaps) and cpu1 switches around.
#[test]
fn rollover_during_zap_and_reap() {
    for call in [Script::Munmap { lo: 2, hi: 4 }, Script::Madvise { lo: 2, hi: 4 }, Script::Reap] {
        let mut cfg = system(&[vec![call], vec![]], 2);
        cfg.speculation = Speculation::Eager;
        cfg.asid_bits = 2;
        cfg.others = 2;
        cfg.switches = 4;
        cfg.b_pages = vec![1];
        let what = format!("{call:?} across rollovers");
        let (_, w) = explore_clean(&what, &cfg);
        let c = w.coverage();
        assert!(c.rollovers_in_op.get() > 0, "{what}: expected rollovers during the zap, {c:?}");
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
        vec![Script::Madvise { lo: 2, hi: 4 }, Script::Munmap { lo: 4, hi: 5 }],
        vec![Script::Munmap { lo: 3, hi: 5 }, Script::Fork, Script::Mmap { lo: 3, hi: 5 }],
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
        Ok(s) => vec![s.parse().unwrap_or_else(|_| panic!("ZAP_MODEL_SEED={s:?} is not a u64"))],
        Err(_) => SEEDS.to_vec(),
    };
    let steps = std::env::var("ZAP_MODEL_STEPS").map_or(STEPS, |s| s.parse().expect("ZAP_MODEL_STEPS is a count"));
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
/// in flight when the root is freed. (In the exhaustive systems an exiting
/// thread's own local flush ends with a DSB; a walk in flight on a CPU a
/// thread left is `ttbr0_switch_without_dsb_is_caught_under_local`.)
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
        machine.borrow_mut().mem_mut().alloc(FrameUse::Data { mm: NOBODY });
        let alloc = AsidAllocator::new(4, 2, AsidBugs::NONE).expect("ASIDs for 2 CPUs");
        let hw = |cpu| Bridge { m: &machine, cpu, mm: A, bugs: HwBugs { ttbr_without_dsb: bug } };
        let mm = Mm::new(A as u64, AddressSpace::new_in(reduced(cfg.format), &hw(0)).expect("a root"));
        let map = Call::Mmap { addr: va(2), len: PAGE_SIZE, prot: prot::READ | prot::WRITE, flags: map::FIXED };
        for call in [map, Call::Fault { va: va(2), access: Access::Write }] {
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
        assert!(teardown.outcome().is_ok(), "teardown: {:?}", teardown.outcome());
        alloc.release(&hw(0), &mm.ctx);
        let m = machine.borrow();
        assert!(m.mem().free_frames() >= 3, "expected the teardown to free A's tables");
        match (bug, m.check_tlbs()) {
            (false, r) => assert_eq!(r, Ok(()), "with the DSB"),
            (true, Err(v @ Violation::WalkThroughFreedTable { cpu: 1, level: None, .. })) => {
                println!("without the DSB: {v}")
            }
            (true, r) => {
                panic!("without the DSB: expected cpu1's walk through the freed root, saw {r:?}")
            }
        }
    }
}

// Flush strategies (docs/mechanisms.md §6–7, seeds 002 and 003): the same
// protocol under `tlb.strategy` ipi, local and auto (with `tlb.ipi_max=2`,
// so that three CPUs running `A` make it broadcast), and broadcast where
// lazy CPUs matter too. Lazy TLB is on (the default): a CPU whose thread is
// switched out for a kernel thread keeps `A` loaded.

/// The strategies other than broadcast.
const SHOOTING: [Strategy; 3] = [Strategy::Ipi, Strategy::Local, Strategy::Auto];

pub(super) fn under(mut cfg: Config, s: Strategy) -> Config {
    cfg.tlb.strategy = s;
    if s == Strategy::Auto {
        cfg.tlb.ipi_max = 2;
    }
    cfg
}

pub(super) fn strategy_name(what: &str, c: &Config) -> String {
    format!("{what}, {}, {} cpus, {:?} speculation", c.tlb.strategy.name(), c.ncpus, c.speculation)
}

/// One thread of `A` (the mm's only user), on cpu0, running `script`;
/// cpu1 is lazy on `A` (a thread of it ran there; a kernel thread runs
/// now), and the thread may be switched out once and move to another CPU
/// once. Scheduled speculation.
pub(super) fn alone(script: Vec<Script>) -> Config {
    let mut c = Config::new(vec![script]);
    c.ncpus = 2;
    c.lazy_cpus = vec![1];
    c.idles = 1;
    c.migrations = 1;
    c.speculation = Speculation::Scheduled;
    c
}

/// `cfg` checked clean under each of `strategies`.
fn explore_strategies(what: &str, cfg: &Config, strategies: &[Strategy]) -> Vec<(Strategy, World)> {
    let mut out = Vec::new();
    for &s in strategies {
        let cfg = under(cfg.clone(), s);
        let (_, w) = explore_clean(&strategy_name(what, &cfg), &cfg);
        out.push((s, w));
    }
    out
}

/// The decision a strategy makes when the mm's one user flushes alone.
fn alone_decision(s: Strategy) -> Event {
    match s {
        Strategy::Broadcast => Event::DecideBroadcast,
        Strategy::Ipi => Event::DecideIpi,
        Strategy::Local | Strategy::Auto => Event::DecideLocal,
    }
}

const ALL: [Strategy; 4] = Strategy::ALL;

// Bound: one thread munmaps 2..4 (a leaf table and the level-1 table above
// it freed) while cpu1 is lazy on A; the thread may go idle on cpu0 and
// run again on cpu1 (or back on cpu0); B faults 1 and 6 in. The lazy CPU
// is skipped by flushes that free no table and made to leave by those that
// do (an IPI even under local); a CPU the thread comes back to catches up.
// Then two threads (one munmaps 2..3, a leaf only) with a third CPU lazy,
// eager speculation: IPIs to a busy CPU (ipi, auto), local broadcasting
// while both threads run and flushing locally while one is switched out.
#[test]
fn strategies_with_a_lazy_cpu_and_a_migrating_thread() {
    for (s, w) in explore_strategies("alone, munmap 2..4", &alone(vec![Script::Munmap { lo: 2, hi: 4 }]), &ALL) {
        let c = w.coverage();
        assert!(events(&w, alone_decision(s)) > 0, "{s:?}: expected {:?} decisions", alone_decision(s));
        let moved = c.migrations.get() > 0 && c.lazy_returns.get() > 0;
        assert!(moved, "{s:?}: expected migrations and lazy returns, {c:?}");
        if s != Strategy::Broadcast {
            assert!(c.lefts.get() > 0, "{s:?}: expected lazy CPUs to leave for freed tables, {c:?}");
            assert!(events(&w, Event::StaleFlush) > 0, "{s:?}: expected catch-ups of a CPU behind");
        }
    }
    let mut two = Config::new(vec![vec![Script::Munmap { lo: 2, hi: 3 }], vec![]]);
    two.ncpus = 3;
    two.lazy_cpus = vec![2];
    two.idles = 1;
    two.migrations = 1;
    for (s, w) in explore_strategies("two threads, munmap 2..3", &two, &ALL) {
        if matches!(s, Strategy::Ipi | Strategy::Auto) {
            let shot = events(&w, Event::IpiSent) > 0 && events(&w, Event::LazySkip) > 0;
            assert!(shot, "{s:?}: expected IPIs and lazy skips");
        }
        if s == Strategy::Local {
            assert!(events(&w, Event::DecideBroadcast) > 0, "{s:?}: expected broadcasts while two users run");
        }
    }
}

// Bound: the thread of A on cpu0 munmaps page 2 (a leaf only) while a
// kernel thread on cpu1 adopts A, reads and writes its pages, and gives it
// back (counting itself in A's users: `tlb.use_mm_mmget`, the default).
#[test]
fn strategies_with_an_adopter() {
    let mut cfg = system(&[vec![Script::Munmap { lo: 2, hi: 3 }], vec![Script::Adopt, Script::Unadopt]], 2);
    cfg.writes = true;
    for (s, w) in explore_strategies("adopter, munmap 2..3", &cfg, &SHOOTING) {
        let c = w.coverage();
        assert!(events(&w, alone_decision(s)) > 0, "{s:?}: expected {:?} decisions", alone_decision(s));
        assert!(c.adoptions.get() > 0 && c.adopter_accesses.get() > 0, "{s:?}: expected the adopter to run, {c:?}");
    }
}

// Bound: three threads of A: madvise 2..4, mprotect 4..5 (racing the
// madvise: a whole-ASID flush), and one that reads, writes and faults
// once; a fourth CPU lazy on A. Eager speculation. IPIs from two initiators
// reach a target in either order. Under ipi only: three users make local
// and auto (`tlb.ipi_max=2`) broadcast.
#[test]
fn strategies_with_concurrent_flushes() {
    let mut cfg = system(&[vec![Script::Madvise { lo: 2, hi: 4 }], vec![Script::Mprotect { lo: 4, hi: 5 }]], 3);
    cfg.ncpus = 4;
    cfg.lazy_cpus = vec![3];
    cfg.writes = true;
    cfg.faults = 1;
    for (s, w) in explore_strategies("madvise 2..4 and mprotect 4..5", &cfg, &[Strategy::Ipi]) {
        assert!(events(&w, Event::RacingFullFlush) > 0, "{s:?}: expected racing whole-ASID flushes");
        assert!(events(&w, Event::DecideIpi) > 0, "{s:?}: expected IPIs");
        assert!(events(&w, Event::CatchUpFull) > 0, "{s:?}: expected targets further behind than one generation");
    }
}

// Bound: 2-bit ASIDs (3 per generation), A, B and two empty address
// spaces, 3 switches to B or an empty one and one to a kernel thread;
// eager speculation. A's one thread munmaps 2..4 while cpu1 (lazy on A)
// runs other mms, and the thread may move; then (ipi) two threads, cpu1's
// switched out lazily or for another mm and back.
#[test]
fn strategies_across_rollovers() {
    let rollovers = |mut cfg: Config| {
        cfg.speculation = Speculation::Eager;
        cfg.asid_bits = 2;
        cfg.others = 2;
        cfg.switches = 3;
        cfg.idles = 1;
        cfg.b_pages = vec![1];
        cfg
    };
    let alone = rollovers(alone(vec![Script::Munmap { lo: 2, hi: 4 }]));
    let two = rollovers(system(&[vec![Script::Munmap { lo: 2, hi: 4 }], vec![]], 2));
    let runs = explore_strategies("alone, munmap 2..4 across rollovers", &alone, &SHOOTING)
        .into_iter()
        .chain(explore_strategies("two threads, munmap 2..4 across rollovers", &two, &[Strategy::Ipi]));
    for (s, w) in runs {
        let c = w.coverage();
        let seen = c.rollovers_in_op.get() > 0 && c.lazy_entries.get() > 0;
        assert!(seen, "{s:?}: expected rollovers during the zap and lazy CPUs, {c:?}");
        assert!(events(&w, Event::StaleFlush) > 0, "{s:?}: expected catch-ups");
    }
}

// Bound: both threads exit (the last one tears A down) while a third CPU
// is lazy on A, and a thread may be switched out first (its CPU lazy too)
// and a CPU may run B; then the reaper against an exiting thread and a
// lazy CPU. The teardown makes lazy holders leave, dropping their entries
// of the ASID, before it frees anything. Eager speculation.
#[test]
fn strategies_exit_and_reap_with_lazy_cpus() {
    let mut exits = system(&[vec![Script::Exit], vec![Script::Exit]], 2);
    exits.ncpus = 3;
    exits.lazy_cpus = vec![2];
    exits.idles = 1;
    exits.switches = 1;
    exits.speculation = Speculation::Eager;
    let mut reap = exits.clone();
    reap.scripts = vec![vec![Script::Reap], vec![Script::Exit]];
    reap.switches = 0;
    reap.b_pages = vec![1];
    for (what, cfg) in [("exits", exits), ("reaper", reap)] {
        for s in ALL {
            let cfg = under(cfg.clone(), s);
            let name = strategy_name(&format!("{what} with a lazy CPU"), &cfg);
            let (_, w) = explore_clean(&name, &cfg);
            assert!(events(&w, Event::LazyLeave) > 0, "{name}: expected lazy CPUs made to leave");
            assert!(w.coverage().reuses.get() > 0, "{name}: expected B to reuse A's frames");
        }
    }
}

/// Seed 002's stale CPU: under local, a flush that reaches only this CPU
/// must mark every other one behind (`Bugs::no_stale_mark` does not). The
/// thread munmaps page 2 on cpu0 while cpu1, lazy on A, keeps its entry;
/// then the thread moves to cpu1, which does not know it is stale.
#[test]
fn local_flush_without_the_stale_mark_is_caught() {
    let mut cfg = under(alone(vec![Script::Munmap { lo: 2, hi: 3 }]), Strategy::Local);
    explore_clean("alone, munmap 2..3, local", &cfg);
    cfg.tlb.bugs = bugs(|b| b.no_stale_mark = true);
    let v = explore_finds("alone, munmap 2..3, local, no stale mark", &cfg);
    assert!(
        matches!(
            v,
            Violation::StaleTranslation { cpu: 1, vpn: 2, .. } | Violation::TlbEmptyInvalPte { cpu: 1, vpn: 2, .. }
        ),
        "expected the lazy cpu1's stale entry of page 2, saw {v}"
    );
    // Only what user code uses: the thread, moved to cpu1, reads page 2
    // through the stale entry.
    cfg.checks = Checks::UsedOnly;
    let v = explore_finds("alone, munmap 2..3, local, no stale mark, use", &cfg);
    let read = matches!(v, Violation::StaleTranslation { cpu: 1, vpn: 2, .. });
    assert!(read, "expected a read through the stale entry, saw {v}");
}

/// Seed 002's adopter: a kernel thread that adopts A without counting
/// itself in A's users (`tlb.use_mm_mmget=off`) leaves the owner believing
/// it runs alone, and the owner's local flush misses the adopter's CPU.
#[test]
fn adopter_without_mmget_is_caught_under_local() {
    let scripts = [vec![Script::Munmap { lo: 2, hi: 3 }], vec![Script::Adopt, Script::Unadopt]];
    let mut cfg = under(system(&scripts, 2), Strategy::Local);
    cfg.tlb.use_mm_mmget = false;
    let v = explore_finds("adopter without mmget, munmap 2..3, local", &cfg);
    assert!(
        matches!(
            v,
            Violation::StaleTranslation { cpu: 1, vpn: 2, .. } | Violation::TlbEmptyInvalPte { cpu: 1, vpn: 2, .. }
        ),
        "expected the adopter's cpu1 to keep page 2, saw {v}"
    );
    // Only what user code uses: the adopter's accesses go through an entry
    // of page 2 into a frame that is no longer A's (B's, once reused).
    cfg.checks = Checks::UsedOnly;
    let v = explore_finds("adopter without mmget, munmap 2..3, local, use", &cfg);
    let used = matches!(v, Violation::StaleTranslation { cpu: 1, vpn: 2, .. });
    assert!(used, "expected the adopter's cpu1 to use a stale entry of page 2, saw {v}");
}

/// Seed 003's lazy CPU and freed tables: a flush that frees tables must
/// make lazy CPUs leave (`Bugs::lazy_skip_on_free` skips them as other
/// flushes do): their TTBR0 still holds the tables, and a speculative walk
/// through a cached upper-level entry reaches the freed table.
#[test]
fn lazy_cpu_skipped_when_tables_are_freed_is_caught() {
    let mut cfg = under(alone(vec![Script::Munmap { lo: 2, hi: 4 }]), Strategy::Ipi);
    cfg.idles = 0;
    cfg.migrations = 0;
    explore_clean("alone, munmap 2..4, ipi", &cfg);
    cfg.tlb.bugs = bugs(|b| b.lazy_skip_on_free = true);
    let v = explore_finds("alone, munmap 2..4, ipi, lazy CPUs skipped", &cfg);
    assert!(
        matches!(v, Violation::WalkThroughFreedTable { cpu: 1, level: Some(_), .. }),
        "expected a walk of the lazy cpu1 through a freed table, saw {v}"
    );
}

/// x86's rule for a target behind by more than one generation: flush the
/// whole ASID, not the range in hand (`Bugs::partial_any_gen` breaks it,
/// and skips the check when a CPU goes back to the mm). Two ways to be two
/// behind:
/// * two flushes in flight (a madvise's range, and an mprotect racing it
///   with a whole-ASID flush) and a target serving the range first: it
///   thinks itself current and drops the whole-ASID request;
/// * a thread switched out (its CPU lazy and skipped) comes back without
///   the catch-up.
#[test]
fn partial_flush_two_generations_behind_is_caught() {
    let bug = bugs(|b| b.partial_any_gen = true);
    let scripts = [vec![Script::Madvise { lo: 2, hi: 3 }], vec![Script::Mprotect { lo: 4, hi: 5 }]];
    let mut cfg = under(system(&scripts, 3), Strategy::Ipi);
    cfg.writes = true;
    let (_, w) = explore_clean("madvise 2..3 and mprotect 4..5, ipi", &cfg);
    assert!(events(&w, Event::CatchUpFull) > 0, "expected targets two generations behind");
    cfg.tlb.bugs = bug;
    let v = explore_finds("madvise 2..3 and mprotect 4..5, ipi, partial at any distance", &cfg);
    assert!(
        matches!(v, Violation::TlbEmptyInvalPte { cpu: 2, vpn: 4, .. }),
        "expected cpu2 to keep page 4 writable after the mprotect, saw {v}"
    );
    let mut lazy = under(system(&[vec![Script::Munmap { lo: 2, hi: 3 }]], 2), Strategy::Ipi);
    lazy.idles = 1;
    explore_clean("munmap 2..3, a thread switched out, ipi", &lazy);
    lazy.tlb.bugs = bug;
    let v = explore_finds("munmap 2..3, a thread switched out, ipi, no catch-up", &lazy);
    assert!(
        matches!(
            v,
            Violation::StaleTranslation { cpu: 1, vpn: 2, .. } | Violation::TlbEmptyInvalPte { cpu: 1, vpn: 2, .. }
        ),
        "expected cpu1, back from lazy, to keep page 2, saw {v}"
    );
}

/// The DSB after a TTBR0 write (`HwBugs::ttbr_without_dsb` drops it):
/// under local, the flush that frees tables reaches only the initiator's
/// CPU, so nothing completes a walk still in flight on a CPU that has just
/// left A (here the lazy cpu1, made to leave by the freeing flush). Under
/// broadcast, the freeing flush's completion waits for that walk.
#[test]
fn ttbr0_switch_without_dsb_is_caught_under_local() {
    let mut cfg = under(alone(vec![Script::Munmap { lo: 2, hi: 4 }]), Strategy::Local);
    // One gather for the whole munmap: with partial batches the first,
    // leaf-only flush skips the lazy cpu1, whose catch-up when it leaves is
    // then a VMALLE1 and a DSB, which completes the walk in flight anyway.
    cfg.tlb.batch = 8;
    cfg.hw.ttbr_without_dsb = true;
    let v = explore_finds("alone, munmap 2..4, local, TTBR0 writes without DSB", &cfg);
    assert!(
        matches!(v, Violation::WalkInFlightThroughFreedTable { cpu: 1, .. }),
        "expected cpu1's walk in flight through a freed table, saw {v}"
    );
    cfg.tlb.strategy = Strategy::Broadcast;
    explore_clean("alone, munmap 2..4, broadcast, TTBR0 writes without DSB", &cfg);
}

/// A CPU behind A's generation must flush before its TTBR0 holds A's
/// tables (`Bugs::catch_up_after_load` flushes after): cpu1 caches A's
/// walk entries, runs B while cpu0's munmap frees tables (IPIs go only to
/// CPUs holding A), and comes back; a walk may start the moment TTBR0 is
/// loaded, through a cached entry into the freed table.
#[test]
fn catch_up_after_loading_ttbr0_is_caught() {
    let mut cfg = under(system(&[vec![Script::Munmap { lo: 2, hi: 4 }], vec![]], 2), Strategy::Ipi);
    cfg.switches = 1;
    let (_, w) = explore_clean("munmap 2..4, cpu1 away and back, ipi", &cfg);
    assert!(events(&w, Event::StaleFlush) > 0, "expected catch-ups");
    cfg.tlb.bugs = bugs(|b| b.catch_up_after_load = true);
    let v = explore_finds("munmap 2..4, cpu1 away and back, ipi, catch-up after load", &cfg);
    assert!(
        matches!(v, Violation::WalkThroughFreedTable { cpu: 1, level: Some(_), .. }),
        "expected a walk of cpu1 through a freed table, saw {v}"
    );
}

/// Random walks over larger mixes under each strategy: 4 CPUs, cpu3 lazy
/// on A at the start; A maps five pages. Mixes: two threads (madvise 2..4
/// then munmap 4; munmap 3..5, fork, mmap 3..5) and an adopter that adopts
/// twice; one thread (munmap 2..4, mmap 2..4, mprotect 2..7, madvise 5..7,
/// munmap 5..7) and an adopter; the reaper against two threads (madvise
/// 2..6, mprotect 3..6) that exit. 3-bit ASIDs, six empty mms, six each of
/// switches to other mms, switches out and moves; reads, writes, four
/// faults a run; B faults 1 and 7 in. Each run ends when every script is
/// done. 100,000 steps per mix and strategy (a quarter of
/// `ZAP_MODEL_STEPS` when set), seed 1 (`ZAP_MODEL_SEED=<n>` for another).
#[test]
fn random_strategy_mixes() {
    let mixes = [
        vec![
            vec![Script::Madvise { lo: 2, hi: 4 }, Script::Munmap { lo: 4, hi: 5 }],
            vec![Script::Munmap { lo: 3, hi: 5 }, Script::Fork, Script::Mmap { lo: 3, hi: 5 }],
            vec![Script::Adopt, Script::Unadopt, Script::Adopt, Script::Unadopt],
        ],
        vec![
            vec![
                Script::Munmap { lo: 2, hi: 4 },
                Script::Mmap { lo: 2, hi: 4 },
                Script::Mprotect { lo: 2, hi: 7 },
                Script::Madvise { lo: 5, hi: 7 },
                Script::Munmap { lo: 5, hi: 7 },
            ],
            vec![Script::Adopt, Script::Unadopt],
        ],
        vec![
            vec![Script::Reap],
            vec![Script::Madvise { lo: 2, hi: 6 }, Script::Exit],
            vec![Script::Mprotect { lo: 3, hi: 6 }, Script::Exit],
        ],
    ];
    let seed = std::env::var("ZAP_MODEL_SEED").map_or(1, |s| s.parse().expect("ZAP_MODEL_SEED is a u64"));
    let steps = std::env::var("ZAP_MODEL_STEPS").map_or(100_000, |s| s.parse::<usize>().expect("a count") / 4);
    for s in ALL {
        for (i, scripts) in mixes.iter().enumerate() {
            let mut cfg = Config::new(scripts.clone()).pages(&[2, 3, 4, 5, 6]);
            cfg.ncpus = 4;
            cfg.lazy_cpus = vec![3];
            cfg.b_pages = vec![1, 7];
            cfg.writes = true;
            cfg.faults = 4;
            cfg.asid_bits = 3;
            cfg.others = 6;
            (cfg.switches, cfg.idles, cfg.migrations) = (6, 6, 6);
            cfg.speculation = Speculation::Scheduled;
            cfg.stop_when_done = true;
            let cfg = under(cfg, s);
            let w = World::new(cfg.clone());
            match random_walk(&w, seed, steps) {
                Ok(runs) => {
                    println!("mix {i}, {}, seed {seed}: {steps} steps, {runs} runs; {:?}", s.name(), w.coverage())
                }
                Err(ce) => panic!(
                    "mix {i}, {}: expected no violation, saw {} at step {} with seed {seed}\n  config {cfg:?}\n  \
                     last steps:\n{}",
                    s.name(),
                    ce.violation,
                    ce.trace.len(),
                    ce.render(&w, 40)
                ),
            }
            let c = w.coverage();
            assert!(c.returns.get() > 100 && c.lazy_returns.get() > 0, "mix {i}, {s:?}: {c:?}");
        }
    }
}

// Long mode (`scripts/model.sh`, or `cargo test -p tlbmodel --release --
// --ignored`): one larger system per family, each with 3 CPUs and
// scheduled speculation (every moment at which each entry may be filled).

/// Upper bound for a long search.
const LONG_MAX_STATES: u64 = 60_000_000;

pub(super) fn explore_long(name: &str, cfg: &Config) -> (Report, World) {
    let w = World::new(cfg.clone());
    match explore(w.clone(), LONG_MAX_STATES) {
        Ok(report) => {
            println!("{name}: {report}; {:?}; {}", w.coverage(), w.machine().stats().total());
            assert_eq!(report.bounded, 0, "{name}: the search hit its bound");
            (report, w)
        }
        Err((report, ce)) => panic!(
            "{name}: expected no violation, saw {}\n  after {report}\n  config {cfg:?}\n  trace:\n{}",
            ce.violation,
            ce.render(&w, 60)
        ),
    }
}

pub(super) fn long(scripts: &[Vec<Script>]) -> Config {
    let mut cfg = system(scripts, 3);
    cfg.speculation = Speculation::Scheduled;
    cfg
}

/// Zaps: munmap 2..7 (batches fill mid-zap, tables freed) against madvise
/// 2..4 and a reader, A mapping pages 2, 3, 4 and 6.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_zap() {
    let cfg =
        long(&[vec![Script::Munmap { lo: 2, hi: 7 }], vec![Script::Madvise { lo: 2, hi: 4 }]]).pages(&[2, 3, 4, 6]);
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

/// The strategies' long system: a thread of A on cpu0 madvises 3..5
/// (leaves only: lazy CPUs are skipped) then munmaps 2..4 (tables freed:
/// lazy CPUs leave); a second thread of A on cpu1 reads, writes and exits;
/// a kernel thread on cpu2 adopts A, reads and writes its pages and gives
/// it back. A thread may be switched out once (its CPU lazy) and move once
/// (to the CPU the exited thread left). Up to three CPUs run A, and the
/// first thread may end up alone: under local, its flushes are local only
/// then; under auto (`tlb.ipi_max=2`) local, by IPIs or broadcast
/// depending on who runs. B faults page 1 in. 3 CPUs, scheduled
/// speculation.
fn long_strategy(s: Strategy) -> Config {
    let owner = vec![Script::Madvise { lo: 3, hi: 5 }, Script::Munmap { lo: 2, hi: 4 }];
    let mut cfg = long(&[owner, vec![Script::Exit], vec![Script::Adopt, Script::Unadopt]]);
    cfg.idles = 1;
    cfg.migrations = 1;
    cfg.writes = true;
    cfg.b_pages = vec![1];
    under(cfg, s)
}

#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_strategy_ipi() {
    let what = "long: madvise and munmap, an exiting thread, an adopter, lazy CPUs, ipi, 3 cpus";
    explore_long(what, &long_strategy(Strategy::Ipi));
}

#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_strategy_local() {
    let what = "long: madvise and munmap, an exiting thread, an adopter, lazy CPUs, local, 3 cpus";
    explore_long(what, &long_strategy(Strategy::Local));
}

#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_strategy_auto() {
    let what = "long: madvise and munmap, an exiting thread, an adopter, lazy CPUs, auto, 3 cpus";
    explore_long(what, &long_strategy(Strategy::Auto));
}
