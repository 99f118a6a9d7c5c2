//! Model checks of blocks and contiguous runs (issue 15) in the kernel's
//! TLB protocol (`zap_world`): `A` maps pages 2..4 with `map::HUGE` (one
//! block: the reduced format's blocks are two pages) and 6..8 with
//! `map::CONT` (one contiguous run of two pages), each faulted in whole by
//! its first touch; the model TLB caches one entry per block (level 2) and
//! one per run (level 3, built from whichever descriptor the walk read).
//! Calls that cut a block or a run split it (break-before-make, or without
//! the break under FEAT_BBM level 2), madvise(COLLAPSE) makes a block of a
//! table, zaps over a block race zaps over its pages, a fork shares a
//! block (or a run) and write faults split or copy it (unfold the run),
//! while threads on other CPUs
//! read and write throughout. Checked as everywhere in `zap_world`, plus
//! NoTLBConflict (`Machine::conflict`). Then each injected bug, caught:
//! a split without the break on a CPU without FEAT_BBM level 2, a block
//! flushed as 4 KiB pages at level 3 (`Bugs::block_page_stride`), and the
//! nested-zap flush of pages only (`Bugs::nested_pages_only`).

use super::mem::FrameUse;
use super::violation::Violation;
use super::zap_checks::*;
use super::zap_world::{Config, Script, Speculation, World};
use abi::map;
use kernel::mm::tlb::Event;

/// `scripts` on `ncpus` CPUs (2: scheduled speculation, 3: eager) with the
/// block at pages 2..4 and the run at 6..8; the threads read and write the
/// pages `touch`.
fn sized(scripts: &[Vec<Script>], ncpus: usize, touch: &[u64]) -> Config {
    let mut cfg = system(scripts, ncpus);
    cfg.sized = vec![(2, 4, map::HUGE), (6, 8, map::CONT)];
    cfg.pages = vec![2, 3, 6, 7];
    cfg.touch = touch.to_vec();
    cfg.dev_touch = touch.to_vec();
    cfg.b_pages = vec![1];
    cfg.writes = true;
    cfg.spare_frames = 4;
    cfg
}

/// The search reached accesses through block or run entries.
fn assert_large(what: &str, w: &World) {
    let c = w.coverage();
    assert!(c.large_hits.get() > 0, "{what}: expected accesses through block or run entries, {c:?}");
}

fn name(what: &str, c: &Config) -> String {
    format!("{what}, {} cpus, {:?} speculation", c.ncpus, c.speculation)
}

// Bound: cpu0 munmaps, madvises or mprotects (read-only) the whole block
// (2..4) or the whole run (6..8), or a range whose end cuts one (3..4,
// 2..3, 6..7, 7..8: a split first); cpu1 reads and writes the page the
// call keeps and the one it changes. 2 CPUs, scheduled speculation.
#[test]
fn calls_over_blocks_and_runs_leave_no_stale_translation() {
    let cases = [
        (Script::Munmap { lo: 2, hi: 4 }, &[2, 3][..], Event::BlockFill),
        (Script::Munmap { lo: 3, hi: 4 }, &[2, 3], Event::BlockSplit),
        (Script::Madvise { lo: 2, hi: 3 }, &[2, 3], Event::BlockSplit),
        (Script::Mprotect { lo: 2, hi: 4 }, &[2, 3], Event::BlockFill),
        (Script::Mprotect { lo: 3, hi: 4 }, &[2, 3], Event::BlockSplit),
        (Script::Munmap { lo: 6, hi: 8 }, &[6, 7], Event::RunFill),
        (Script::Mprotect { lo: 6, hi: 8 }, &[6, 7], Event::RunFill),
        (Script::Mprotect { lo: 6, hi: 7 }, &[6, 7], Event::RunUnfold),
        (Script::Madvise { lo: 7, hi: 8 }, &[6, 7], Event::RunUnfold),
    ];
    for (call, touch, event) in cases {
        let cfg = sized(&[vec![call]], 2, touch);
        let what = name(&format!("{call:?} over a block and a run"), &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert_large(&what, &w);
        if event != Event::BlockFill && event != Event::RunFill {
            assert!(events(&w, event) > 0, "{what}: expected {event:?}");
        }
    }
}

// Bound: cpu0 maps pages 2..4 with map::HUGE or 6..8 with map::CONT over
// nothing (A maps only page 4); the threads on cpu1 (and cpu2) write both
// pages, each first touch a fault (two in all): the first maps the whole
// block or run, zeroed; a second finds it mapped. 2 CPUs scheduled, 3
// eager.
#[test]
fn first_touches_map_whole_blocks_and_runs() {
    for (lo, flags, event) in [(2, map::HUGE, Event::BlockFill), (6, map::CONT, Event::RunFill)] {
        for ncpus in [2, 3] {
            let call = Script::MmapSized { lo, hi: lo + 2, flags };
            let mut cfg = sized(&[vec![call]], ncpus, &[lo, lo + 1]);
            cfg.sized.clear();
            cfg.pages = vec![4];
            cfg.faults = 2;
            let what = name(&format!("{call:?} and first touches"), &cfg);
            let (_, w) = explore_clean(&what, &cfg);
            assert!(events(&w, event) > 0, "{what}: expected {event:?}");
            assert_large(&what, &w);
        }
    }
}

// Bound: as `calls_over_blocks_and_runs_leave_no_stale_translation`, the
// splits only, with 3 CPUs and eager speculation.
#[test]
fn splits_with_eager_speculation() {
    for (call, touch) in [(Script::Munmap { lo: 3, hi: 4 }, [2, 3]), (Script::Mprotect { lo: 6, hi: 7 }, [6, 7])] {
        let cfg = sized(&[vec![call]], 3, &touch);
        let what = name(&format!("{call:?} over a block and a run"), &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert_large(&what, &w);
    }
}

/// A split of the block (munmap 3..4) or of the run (mprotect 6..7) with
/// `split_no_break` (`mm.bbm`): the smaller entries written at once over
/// the block or run, flushed after.
fn no_break(call: Script, touch: &[u64], bbm2: bool) -> Config {
    let mut cfg = sized(&[vec![call]], 2, touch);
    cfg.tlb.split_no_break = true;
    cfg.bbm2 = bbm2;
    cfg
}

// Bound: the splits of `calls_over_blocks_and_runs...`, without the break:
// clean on CPUs with FEAT_BBM level 2 (the old and new entries map the
// same frames with the same permissions), a TLB conflict on CPUs without
// it (the model's CPUs declare level 0), where cpu1 holds the block's (or
// run's) entry and the page entries the new table gives at once.
#[test]
fn split_without_break_needs_bbm_level_2() {
    for (call, touch) in [(Script::Munmap { lo: 3, hi: 4 }, [2, 3]), (Script::Mprotect { lo: 6, hi: 7 }, [6, 7])] {
        let cfg = no_break(call, &touch, true);
        let what = format!("{call:?}, split without break, FEAT_BBM level 2");
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::SplitNoBreak) > 0, "{what}: expected splits without the break");
        let cfg = no_break(call, &touch, false);
        let what = format!("{call:?}, split without break, no FEAT_BBM level 2");
        let v = explore_finds(&what, &cfg);
        assert!(
            matches!(v, Violation::TlbConflict { first: (_, a), second: (_, b), .. } if a != b),
            "{what}: expected a TLB conflict between the large entry and a page's, saw {v}"
        );
    }
}

// Bound: cpu0 madvises (DONTNEED) or mprotects (read-only) the whole block
// 2..4: one entry cleared or protected, flushed with the block stride at
// level 2 (no table freed, so a TTL hint is given). With
// `Bugs::block_page_stride` the flush names the block's pages at level 3:
// the level-2 entry survives it, to the freed frames (madvise) or writable
// after mprotect returned.
#[test]
fn block_flushed_as_pages_at_level_3_is_caught() {
    for call in [Script::Madvise { lo: 2, hi: 4 }, Script::Mprotect { lo: 2, hi: 4 }] {
        let mut cfg = sized(&[vec![call]], 2, &[2, 3]);
        let what = format!("{call:?} of the block");
        let (_, w) = explore_clean(&what, &cfg);
        assert_large(&what, &w);
        cfg.tlb.bugs = bugs(|b| b.block_page_stride = true);
        let what = format!("{call:?} of the block, block_page_stride");
        let v = explore_finds(&what, &cfg);
        let ok = match call {
            Script::Madvise { .. } => {
                matches!(v, Violation::StaleTranslation { vpn: 2..=3, frame: FrameUse::Free, .. })
            }
            _ => matches!(v, Violation::TlbEmptyInvalPte { vpn: 2..=3, .. }),
        };
        assert!(ok, "{what}: expected the block's entry to survive the flush, saw {v}");
    }
}

/// Zaps over mixed sizes: cpu0 madvises (DONTNEED) the whole block 2..4
/// while cpu1 munmaps page 2 (which cuts the block, when it is still
/// there: a split first); when the munmap runs second it finds the block
/// cleared, gathers nothing, and must flush what the madvise has not yet
/// (the nested-zap fix: the whole ASID).
fn mixed_zaps(ncpus: usize) -> Config {
    let scripts = [vec![Script::Madvise { lo: 2, hi: 4 }], vec![Script::Munmap { lo: 2, hi: 3 }]];
    let mut cfg = sized(&scripts, ncpus, &[2, 3]);
    // Room for everything: the madvise's flush waits for its unlock.
    cfg.tlb.batch = 4;
    cfg
}

// Bound: `mixed_zaps` on 2 CPUs (scheduled speculation) and on 3 (eager;
// cpu2 reads and writes). With `Bugs::nested_pages_only` whichever zap
// flushes while the other is in flight flushes only its own range, as
// pages at level 3: the block's level-2 entry survives (the madvise's own
// flush, when the munmap has begun: the block's frames freed under it; or
// the munmap's, returning before the madvise flushed: TLBEmptyInvalPTE).
#[test]
fn nested_zaps_over_mixed_sizes() {
    for ncpus in [2, 3] {
        let cfg = mixed_zaps(ncpus);
        let what = name("madvise 2..4 (a block) against munmap 2..3", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::NestedFullFlush) > 0, "{what}: expected nested whole-ASID flushes");
        assert!(events(&w, Event::BlockSplit) > 0, "{what}: expected the munmap to split the block when first");
        let mut cfg = cfg;
        cfg.tlb.bugs = bugs(|b| b.nested_pages_only = true);
        let what = name("madvise 2..4 (a block) against munmap 2..3, nested_pages_only", &cfg);
        let v = explore_finds(&what, &cfg);
        let ok = matches!(
            v,
            Violation::TlbEmptyInvalPte { vpn: 2..=3, .. }
                | Violation::StaleTranslation { vpn: 2..=3, frame: FrameUse::Free, .. }
        );
        assert!(ok, "{what}: expected the block's entry to outlive a nested flush, saw {v}");
    }
}

/// madvise(COLLAPSE) of pages 2..4, one mapping faulted in page by page,
/// by cpu0, with `racing` on cpu1 if given.
fn collapse(racing: Option<Script>, ncpus: usize) -> Config {
    let mut scripts = vec![vec![Script::Collapse { lo: 2, hi: 4 }]];
    scripts.extend(racing.map(|r| vec![r]));
    let mut cfg = sized(&scripts, ncpus, &[2, 3]);
    cfg.sized = vec![(2, 4, 0)];
    cfg.pages = vec![2, 3];
    cfg
}

// Bound: cpu0 collapses pages 2..4 into a block while the other CPUs read
// and write them (2 CPUs scheduled, 3 eager), and against cpu1's
// madvise(DONTNEED) of page 3 or munmap of 2..4 (2 CPUs).
#[test]
fn collapse_leaves_no_stale_translation() {
    for ncpus in [2, 3] {
        let cfg = collapse(None, ncpus);
        let what = name("collapse 2..4", &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::Collapse) > 0, "{what}: expected collapses");
        assert_large(&what, &w);
    }
    for racing in [Script::Madvise { lo: 3, hi: 4 }, Script::Munmap { lo: 2, hi: 4 }] {
        let cfg = collapse(Some(racing), 2);
        let what = name(&format!("collapse 2..4 against {racing:?}"), &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::Collapse) > 0, "{what}: expected collapses");
    }
}

/// cpu0 forks with the block at 2..4 while A's threads write pages 2 and 3
/// (`faults` write faults among them and the child); `copy`: a write fault
/// on the shared block copies it whole (`mm.block_cow=copy`), else splits
/// it and copies the page.
fn fork_block(copy: bool, ncpus: usize, faults: u8, child_runs: bool) -> Config {
    let mut cfg = sized(&[vec![Script::Fork]], ncpus, &[2, 3]);
    cfg.sized = vec![(2, 4, map::HUGE)];
    cfg.pages = vec![2, 3];
    cfg.faults = faults;
    cfg.tlb.block_cow_copy = copy;
    cfg.child_runs = child_runs;
    cfg.speculation = Speculation::Scheduled;
    cfg
}

// Bound: `fork_block` in both modes: 2 CPUs (cpu1 writes), one fault; and
// cpu0 alone with the child running on a CPU of its own, two faults (the
// child's, then the parent's: the case of the fix in
// `AddressSpace::fault_plan`, a block reused whole only when no frame of it
// is shared). Scheduled speculation.
#[test]
fn fork_of_a_block_then_write_faults() {
    for copy in [false, true] {
        for (ncpus, faults, child_runs) in [(2, 1, false), (1, 2, true)] {
            let cfg = fork_block(copy, ncpus, faults, child_runs);
            let what = name(&format!("fork of a block, block_cow_copy={copy}, child runs {child_runs}"), &cfg);
            let (_, w) = explore_clean(&what, &cfg);
            let event = if copy { Event::BlockCowCopy } else { Event::BlockSplit };
            assert!(events(&w, event) > 0, "{what}: expected {event:?}");
            assert!(w.coverage().cow_copies.get() > 0, "{what}: expected copies");
        }
    }
}

/// Long: zaps over mixed sizes on 3 CPUs with scheduled speculation: cpu0
/// madvises (DONTNEED) the whole block 2..4, cpu1 munmaps page 2 (splitting
/// the block when it comes first) and cpu2 reads and writes pages 2 and 3
/// (one fault: a first touch that maps the block again, or a page).
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_pages_zaps() {
    let mut cfg = mixed_zaps(3);
    cfg.speculation = Speculation::Scheduled;
    cfg.faults = 1;
    let what = "long: madvise 2..4 (a block) against munmap 2..3 and a writer, 3 cpus";
    let (report, w) = explore_long(what, &cfg);
    assert!(report.states >= 1_000_000, "{what}: expected at least a million states, saw {report}");
    assert!(events(&w, Event::NestedFullFlush) > 0 && events(&w, Event::BlockSplit) > 0, "{what}");
    assert_large(what, &w);
}

/// Long: fork of the block at 2..4 (split mode) while cpu1 writes, the
/// child running on a CPU of its own; two write faults among them.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_pages_fork() {
    let cfg = fork_block(false, 2, 2, true);
    let what = "long: fork of a block with a writer and the child running, 2 cpus";
    let (report, w) = explore_long(what, &cfg);
    assert!(report.states >= 1_000_000, "{what}: expected at least a million states, saw {report}");
    assert!(events(&w, Event::BlockSplit) > 0 && w.coverage().child_faults.get() > 0, "{what}");
}

// Bound: as `fork_of_a_block_then_write_faults` for the contiguous run at
// 6..8: the fork write-protects the run's pages alike, and a write fault
// unfolds the run first, then copies the page.
#[test]
fn fork_of_a_run_then_write_faults() {
    for (ncpus, faults, child_runs) in [(2, 1, false), (1, 2, true)] {
        let mut cfg = fork_block(false, ncpus, faults, child_runs);
        cfg.sized = vec![(6, 8, map::CONT)];
        cfg.pages = vec![6, 7];
        cfg.touch = vec![6, 7];
        let what = name(&format!("fork of a run, child runs {child_runs}"), &cfg);
        let (_, w) = explore_clean(&what, &cfg);
        assert!(events(&w, Event::RunUnfold) > 0, "{what}: expected the run unfolded");
        assert!(w.coverage().cow_copies.get() > 0, "{what}: expected copies");
        assert_large(&what, &w);
    }
}
