//! Model checks of the real ASID allocator (`mm::asid`) over the TLB model.
//!
//! * Exhaustive: every interleaving of bounded systems (2 CPUs with 2-bit
//!   ASIDs; 3 CPUs with 3-bit ASIDs of which 3 are pinned, so 4 are left as
//!   with 2 bits), each bound stated in the test.
//! * Randomized: 4 CPUs, 3- and 4-bit ASIDs, thousands of steps per seed.
//!   `ASID_MODEL_SEED=<n>` runs seed `n` instead of the built-in ones.
//! * The checker catches the bugs it exists for: a skipped rollover flush,
//!   ignored reserved ASIDs, and the previous mm left in TTBR0 during a
//!   switch; and finds nothing with the real allocator in the same systems.
#![forbid(unsafe_code)]

use super::asid_world::{Config, Coverage, Speculation, World};
use super::explore::{explore, random_walk, Counterexample, Report};
use super::mem::Format;
use super::violation::Violation;
use kernel::mm::asid::Bugs;

/// 2 CPUs, 2-bit ASIDs (3 usable), `mms` address spaces, at most
/// `rollovers` rollovers (and everything after the last one until another
/// begins), at most `switches` context switches.
fn two_cpus(mms: usize, rollovers: u64, switches: u32) -> Config {
    let mut c = Config::small(2, 2, mms);
    c.max_rollovers = Some(rollovers);
    c.switches = Some(switches);
    c
}

/// Warm-up leaving a 2-CPU, 2-bit system with no free ASID: cpu0 ran mm0 then
/// runs mm2, cpu1 runs mm1. The next new mm rolls over.
const FULL_GENERATION: [(usize, usize); 3] = [(0, 0), (1, 1), (0, 2)];

fn explore_clean(name: &str, cfg: Config, max_states: u64) -> (Report, World) {
    let w = World::new(cfg.clone());
    match explore(w.clone(), max_states) {
        Ok(report) => {
            println!("{name}: {report}; coverage {}", coverage_line(w.coverage()));
            (report, w)
        }
        Err((report, ce)) => panic!(
            "{name}: expected no violation, saw {}\n  after {report}\n  config {cfg:?}\n  trace:\n{}",
            ce.violation,
            ce.render(&w, 60)
        ),
    }
}

fn explore_finds(name: &str, cfg: Config, max_states: u64) -> Violation {
    let w = World::new(cfg.clone());
    match explore(w.clone(), max_states) {
        Ok(report) => {
            panic!("{name}: expected a violation, saw none in {report}\n  config {cfg:?}")
        }
        Err((report, ce)) => {
            println!("{name}: found after {report}:\n{}", ce.render(&w, 30));
            ce.violation
        }
    }
}

fn coverage_line(c: &Coverage) -> String {
    format!(
        "rollovers {}, rollover flushes {}, fast switches {}, CAS lost to a rollover {}, CAS won during a rollover {}, exits {}, unmaps {}, pins refused {}",
        c.rollovers.get(),
        c.rollover_flushes.get(),
        c.fast_switches.get(),
        c.cas_lost_to_rollover.get(),
        c.cas_won_during_rollover.get(),
        c.exits.get(),
        c.unmaps.get(),
        c.pins_refused.get()
    )
}

/// The races the exhaustive search exists for did happen in it.
fn assert_races_covered(name: &str, w: &World) {
    let c = w.coverage();
    let line = coverage_line(c);
    assert!(c.rollovers.get() > 0, "{name}: expected rollovers, saw none ({line})");
    assert!(c.rollover_flushes.get() > 0, "{name}: expected rollover flushes, saw none ({line})");
    assert!(
        c.cas_lost_to_rollover.get() > 0 && c.cas_won_during_rollover.get() > 0,
        "{name}: expected fast-path CASes both losing to and winning against a rollover on another CPU ({line})"
    );
}

// Bound: 2 CPUs, 2-bit ASIDs, 4 mms from an empty system, 6 context
// switches, up to the first rollover and everything after it until a second
// one begins. About 960k states; ~8 s in a debug build.
#[test]
fn exhaustive_two_cpus_fast_path_against_rollover() {
    let name = "2 cpus, 2 bits, 4 mms, 6 switches, 1 rollover";
    let (report, w) = explore_clean(name, two_cpus(4, 1, 6), 3_000_000);
    assert!(report.states > 100_000, "{name}: search smaller than expected: {report}");
    assert_races_covered(name, &w);
}

// Bound: 2 CPUs, 2-bit ASIDs, 3 mms, one exit (torn down with no TLBI) and
// one creation (reusing the freed frames), 5 switches, 1 rollover. About
// 670k states; ~6 s.
#[test]
fn exhaustive_exit_without_tlbi_and_create() {
    let name = "2 cpus, 2 bits, 3 mms, 1 exit, 1 create, 5 switches, 1 rollover";
    let mut cfg = two_cpus(3, 1, 5);
    cfg.exits = Some(1);
    cfg.creates = Some(1);
    let (_, w) = explore_clean(name, cfg, 2_000_000);
    assert!(w.coverage().exits.get() > 0, "{name}: no exit explored");
    assert_races_covered(name, &w);
}

// Bound: from a full generation (warm-up), 2 CPUs, 2-bit ASIDs, 4 mms, one
// unmap (clear PTE, TLBI VALE1IS by the mm's ASID, DSB, free, remap),
// 4 switches, 2 rollovers. About 90k states; under 1 s.
#[test]
fn exhaustive_unmap_across_rollovers() {
    let name = "2 cpus, 2 bits, 4 mms from a full generation, 1 unmap, 4 switches, 2 rollovers";
    let mut cfg = two_cpus(4, 2, 4);
    cfg.unmaps = Some(1);
    cfg.warmup = FULL_GENERATION.to_vec();
    let (_, w) = explore_clean(name, cfg, 400_000);
    assert!(w.coverage().unmaps.get() > 0, "{name}: no unmap explored");
    assert_races_covered(name, &w);
}

// Bound: 3 CPUs, 3-bit ASIDs with 3 pinned by device-only mms (the most
// allowed), so 4 are left; 5 more mms; a warm-up allocates 4 of them (cpu0,
// cpu1, cpu2 running three), then 4 switches and 1 rollover. About 540k
// states; ~8 s.
#[test]
fn exhaustive_three_cpus_with_pinned_asids() {
    let name = "3 cpus, 3 bits, 3 pinned + 5 mms from a full generation, 4 switches, 1 rollover";
    let mut cfg = Config::small(3, 3, 8);
    cfg.pinned = 3;
    cfg.pinned_device_only = true;
    cfg.max_rollovers = Some(1);
    cfg.switches = Some(4);
    cfg.warmup = vec![(0, 3), (1, 4), (2, 5), (0, 6)];
    let (_, w) = explore_clean(name, cfg, 2_000_000);
    assert_races_covered(name, &w);
}

// Bound: as `exhaustive_unmap_across_rollovers` without the unmap, but the
// hardware fills the TLB only when the checker schedules a `Speculate` step
// (every interleaving of speculation too). About 160k states; ~1.5 s.
#[test]
fn exhaustive_scheduled_speculation() {
    let name = "2 cpus, 2 bits, 4 mms from a full generation, scheduled speculation, 4 switches";
    let mut cfg = two_cpus(4, 2, 4);
    cfg.speculation = Speculation::Scheduled;
    cfg.warmup = FULL_GENERATION.to_vec();
    let (_, w) = explore_clean(name, cfg, 600_000);
    assert_races_covered(name, &w);
}

/// A system where the skipped flush matters: from a full generation, two
/// more switches are enough.
fn skip_flush_config(bugs: Bugs, bookkeeping: bool) -> Config {
    let mut cfg = two_cpus(4, 1, 3);
    cfg.warmup = FULL_GENERATION.to_vec();
    cfg.bugs = bugs;
    cfg.bookkeeping_checks = bookkeeping;
    cfg
}

#[test]
fn skipped_rollover_flush_is_caught() {
    let bug = Bugs { skip_rollover_flush: true, ..Bugs::NONE };
    let v = explore_finds("skip flush, TLB checks only", skip_flush_config(bug, false), 1_000_000);
    assert!(v.is_tlb_level(), "expected the TLB model itself to see the damage, saw {v}");
    let v = explore_finds("skip flush, all checks", skip_flush_config(bug, true), 1_000_000);
    assert_eq!(v.name(), "FlushBeforeNewGeneration", "expected the allocator invariant first, saw {v}");
    explore_clean("same system, real allocator", skip_flush_config(Bugs::NONE, true), 1_000_000);
}

/// A system where ignoring reserved ASIDs matters: from a full generation,
/// a running mm loses its ASID to another, runs on two CPUs with two ASIDs,
/// and unmaps a page with a TLBI that misses one of them.
fn ignore_reserved_config(bugs: Bugs, bookkeeping: bool) -> Config {
    let mut cfg = two_cpus(4, 1, 5);
    cfg.unmaps = Some(1);
    cfg.warmup = FULL_GENERATION.to_vec();
    cfg.bugs = bugs;
    cfg.bookkeeping_checks = bookkeeping;
    cfg
}

#[test]
fn ignored_reserved_asid_is_caught() {
    let bug = Bugs { ignore_reserved: true, ..Bugs::NONE };
    let v = explore_finds("ignore reserved, all checks", ignore_reserved_config(bug, true), 2_000_000);
    assert_eq!(v.name(), "RunningASIDReserved", "expected the allocator invariant first, saw {v}");
    // Without the bookkeeping invariants, the mm running with two ASIDs
    // shows first; the TLB model then shows the TLBI missing an ASID.
    let v = explore_finds("ignore reserved, TLB checks", ignore_reserved_config(bug, false), 2_000_000);
    assert_eq!(v.name(), "SameASIDActiveTask", "saw {v}");
    explore_clean("same system, real allocator", ignore_reserved_config(Bugs::NONE, true), 2_000_000);
}

#[test]
fn previous_mm_in_ttbr0_during_switch_is_caught() {
    // Without loading the reserved TTBR0 first, the CPU keeps walking the
    // previous mm with its ASID after its `active` names the next mm; a
    // rollover then frees that ASID, the mm gets another one elsewhere, and
    // a TLBI by the new ASID misses this CPU's entries. This is why the
    // allocator's contract asks for the reserved TTBR0 during `switch_in`.
    let mut cfg = two_cpus(4, 2, 5);
    cfg.unmaps = Some(1);
    cfg.warmup = FULL_GENERATION.to_vec();
    cfg.reserved_ttbr0_in_switch = false;
    cfg.bookkeeping_checks = false;
    let v = explore_finds("previous mm in TTBR0 during switch", cfg.clone(), 2_000_000);
    assert_eq!(v.name(), "TLBEmptyInvalPTE", "saw {v}");
    cfg.reserved_ttbr0_in_switch = true;
    explore_clean("same system, reserved TTBR0 during switch", cfg, 2_000_000);
}

/// 4 CPUs, `bits`-bit ASIDs, 8 mms of 2 pages in a 3-level table, one pinned
/// at the start; no budgets: switches, pins, unpins, exits, creates and
/// unmaps go on for as long as the walk runs.
fn random_config(bits: u32, speculation: Speculation) -> Config {
    let mut c = Config::small(4, bits, 8);
    c.pages = vec![0, 5];
    c.format = Format { levels: 3, fanout: 4 };
    c.pinned = 1;
    c.max_rollovers = None;
    c.exits = None;
    c.creates = None;
    c.unmaps = None;
    c.pin_ops = None;
    c.switches = None;
    c.speculation = speculation;
    c
}

const SEEDS: [u64; 4] = [1, 0x5eed, 0xa51d_2024, 0xdead_beef];
const STEPS: usize = 20_000;

fn seeds() -> Vec<u64> {
    match std::env::var("ASID_MODEL_SEED") {
        Ok(s) => vec![s.parse().unwrap_or_else(|_| panic!("ASID_MODEL_SEED={s:?} is not a u64"))],
        Err(_) => SEEDS.to_vec(),
    }
}

fn random_clean(name: &str, cfg: &Config) {
    for seed in seeds() {
        let w = World::new(cfg.clone());
        if let Err(ce) = random_walk(&w, seed, STEPS) {
            panic!("{}", random_failure(name, cfg, seed, &w, &ce));
        }
        let c = w.coverage();
        println!("{name}, seed {seed}: {STEPS} steps, {}", coverage_line(c));
        assert!(c.rollovers.get() >= 3, "{name}, seed {seed}: expected rollovers, saw {}", coverage_line(c));
        let ops = w.machine().stats().total();
        assert!(ops.get(kernel::mm::tlb::OpKind::Vmalle1) > 0, "{name}, seed {seed}: no local flush counted: {ops}");
    }
}

fn random_failure(
    name: &str,
    cfg: &Config,
    seed: u64,
    w: &World,
    ce: &Counterexample<super::asid_world::Action>,
) -> String {
    format!(
        "{name}: expected no violation, saw {} at step {} with seed {seed} (rerun with ASID_MODEL_SEED={seed})\n  config {cfg:?}\n  last steps:\n{}",
        ce.violation,
        ce.trace.len(),
        ce.render(w, 40)
    )
}

/// Random walks with successive seeds until one finds a violation `wanted`
/// accepts; returns it.
fn random_finds(name: &str, cfg: &Config, max_steps: usize, wanted: impl Fn(&Violation) -> bool) -> Violation {
    let mut steps = 0;
    for seed in 1.. {
        let w = World::new(cfg.clone());
        match random_walk(&w, seed, STEPS) {
            Err(ce) if wanted(&ce.violation) => {
                println!("{name}: seed {seed} found {}", ce.violation);
                return ce.violation;
            }
            Err(ce) => println!("{name}: seed {seed} found another violation first: {}", ce.violation),
            Ok(_) => {}
        }
        steps += STEPS;
        assert!(
            steps < max_steps,
            "{name}: expected a violation within {max_steps} random steps, saw none\n  config {cfg:?}"
        );
    }
    unreachable!()
}

#[test]
fn random_four_cpus_three_bits() {
    random_clean("4 cpus, 3 bits, eager speculation", &random_config(3, Speculation::Eager));
}

#[test]
fn random_four_cpus_four_bits_scheduled_speculation() {
    random_clean("4 cpus, 4 bits, scheduled speculation", &random_config(4, Speculation::Scheduled));
}

const BOTH_BUGS: [Bugs; 2] = [
    Bugs { skip_rollover_flush: true, ignore_reserved: false },
    Bugs { skip_rollover_flush: false, ignore_reserved: true },
];

#[test]
fn random_walks_catch_both_bugs() {
    for bugs in BOTH_BUGS {
        let mut cfg = random_config(3, Speculation::Eager);
        cfg.bugs = bugs;
        random_finds(&format!("{bugs:?}, all checks"), &cfg, 100_000, |_| true);
    }
}

#[test]
fn random_walks_see_tlb_damage_from_both_bugs() {
    // Only what the hardware would suffer: the TLB-level invariants (and
    // SameASIDActiveTask, which fires first for some seeds; those are skipped).
    for bugs in BOTH_BUGS {
        let mut cfg = random_config(3, Speculation::Eager);
        cfg.bugs = bugs;
        cfg.bookkeeping_checks = false;
        random_finds(&format!("{bugs:?}, TLB checks"), &cfg, 400_000, |v| v.is_tlb_level());
    }
}

// Long mode (`scripts/model.sh`): the exit-and-create system with two more
// switches and a second rollover.
#[test]
#[ignore = "long mode: scripts/model.sh"]
fn long_exit_create_across_rollovers() {
    let name = "long: 2 cpus, 2 bits, 3 mms, 1 exit, 1 create, 7 switches, 2 rollovers";
    let mut cfg = two_cpus(3, 2, 7);
    cfg.exits = Some(1);
    cfg.creates = Some(1);
    let (_, w) = explore_clean(name, cfg, 60_000_000);
    assert!(w.coverage().exits.get() > 0, "{name}: no exit explored");
    assert_races_covered(name, &w);
}
