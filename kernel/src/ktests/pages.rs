//! Page sizes (issue 15): 2 MiB blocks and 64 KiB contiguous runs in the
//! running kernel, driven by the `pages` program. Which TLBIs a munmap of
//! blocks, a split, a collapse and an unfold issue on each CPU model
//! (exactly what the flush policy plans for the range the kernel gathers),
//! a reader on another CPU while a block is split under it, data through
//! splits, collapse and fork, and the block and run events. Each test ends
//! with every kernel resource (frames and page-table pages included) back
//! at its baseline.
//!
//! The counting tests pin `tlb.strategy=broadcast` (the others issue local
//! TLBIs and IPIs); the rest run under whatever strategy the boot uses.

use crate::ktest;
use crate::mm::phys::verify_free_poison;
use crate::mm::tlb::range::PAGE_SIZE;
use crate::mm::tlb::stats::{TTL_KINDS, TTL_STATS};
use crate::mm::tlb::{Event, FlushRequest, FlushStrategy, OpKind, TlbCounts, TlbiOp, TLB_STATS};
use crate::task::process::{self, wait_from_kernel};
use crate::FEATURES;

use super::robust::{assert_back_to, baseline_after};

/// `pages` modes and flags (see its documentation).
const BLOCKS: u64 = 0;
const READER: u64 = 1 << 16;
const DATA: u64 = 2 << 16;
const CONT: u64 = 3 << 16;
const FORK: u64 = 4 << 16;
const BAD: u64 = 5 << 16;
const SIZES: u64 = 6 << 16;
const EXACT: u64 = 1 << 24;

const BLOCK: u64 = 2 << 20;
/// Where the requests below start: any block-aligned user address (neither
/// the ASID nor the address changes the kinds or number of ops).
const AT: u64 = abi::MMAP_BASE.next_multiple_of(BLOCK);

/// The broadcast kinds `pages` checks, in its order.
const KINDS: [OpKind; 5] = [OpKind::Vae1is, OpKind::Vale1is, OpKind::Rvae1is, OpKind::Rvale1is, OpKind::Aside1is];

/// What the policy of this boot plans for `reqs`, one after the other, in
/// [`KINDS`] order.
fn planned(reqs: &[FlushRequest]) -> [u64; 5] {
    let (policy, features) = crate::mm::user::policy();
    let mut c = TlbCounts::default();
    for req in reqs {
        let plan = policy.plan(req, &features).unwrap_or_else(|e| panic!("the policy rejected {req:?}: {e}"));
        for op in plan.ops() {
            c.ops[op.kind(plan.scope()) as usize] += 1;
        }
    }
    let reported: u64 = KINDS.iter().map(|&k| c.get(k)).sum();
    assert_eq!(reported, c.total(), "the plan for {reqs:?} has kinds `pages` does not check: {c}");
    KINDS.map(|k| c.get(k))
}

/// The address ops the policy plans for `reqs` by TTL hint: none, level
/// 1, 2, 3.
fn planned_levels(reqs: &[FlushRequest]) -> [u64; 4] {
    let (policy, features) = crate::mm::user::policy();
    let mut levels = [0; 4];
    for req in reqs {
        for op in policy.plan(req, &features).expect("a plan").ops() {
            if let TlbiOp::Va { ttl, .. } | TlbiOp::Range { ttl, .. } = *op {
                levels[usize::from(ttl.unwrap_or(0))] += 1;
            }
        }
    }
    levels
}

/// The kernel's counts of address ops by TTL hint (all kinds together).
fn levels() -> [u64; 4] {
    let t = TTL_STATS.total();
    core::array::from_fn(|l| (0..TTL_KINDS.len()).map(|k| t[4 * k + l]).sum())
}

/// `n` blocks cleared, the table above them kept: one entry each, level 2.
fn blocks_request(n: u64) -> FlushRequest {
    FlushRequest { stride: BLOCK, leaf_level: Some(2), ..FlushRequest::leaf_pages(1, AT, AT + n * BLOCK) }
}

/// `pages` pages cleared at level 3, their table kept.
fn pages_request(pages: u64) -> FlushRequest {
    FlushRequest::leaf_pages(1, AT, AT + pages * PAGE_SIZE)
}

/// A collapse: a block's 512 pages and the table under them.
fn collapse_request() -> FlushRequest {
    FlushRequest { tables_freed: true, leaf_level: None, ..pages_request(512) }
}

/// The argument that makes `pages` check step `step` against `ops`.
fn exact(step: u64, ops: [u64; 5]) -> u64 {
    let packed = ops.iter().enumerate().fold(0, |w, (i, &n)| {
        assert!(n < 64, "{ops:?} does not fit six bits a kind");
        w | n << (6 * i)
    });
    EXACT | step << 28 | packed << 32
}

/// Runs `pages(arg)` and checks it exits 0, that the kernel's counters over
/// its life show `events`, and that everything comes back.
fn pages(arg: u64, events: &[(Event, u64)]) -> TlbCounts {
    let base = baseline_after(|| {});
    let before = TLB_STATS.total();
    let p = process::spawn("pages", arg, 0).unwrap_or_else(|e| panic!("spawn pages: {e}"));
    let status = wait_from_kernel(&p);
    drop(p);
    let d = TLB_STATS.total().since(&before);
    log::info!(target: "ktest", "pages({arg:#x}): status {status:#x}, {d}");
    assert_eq!(status, 0, "pages({arg:#x}) (1 setup, 2 counts, 3 data, 4 child, 5 errno): {d}");
    for &(e, n) in events {
        assert_eq!(d.event(e), n, "{}: {d}", e.name());
    }
    assert_eq!(verify_free_poison(), 0, "a freed frame was written");
    assert_back_to(&base, format_args!("pages({arg:#x})"));
    d
}

/// For each N: the policy plans `want` for a munmap of N blocks, and the
/// munmap issues exactly the plan; N + 1 blocks filled, none split.
fn munmap_blocks_issue_the_plan(cpu: &str, cases: &[(u64, [u64; 5])]) {
    for &(n, want) in cases {
        let plan = planned(&[blocks_request(n)]);
        assert_eq!(plan, want, "the policy's plan for a munmap of {n} blocks on -cpu {cpu}");
        let before = levels();
        pages(BLOCKS | n | exact(0, plan), &[(Event::BlockFill, n + 1), (Event::BlockSplit, 0)]);
        // The munmap is the process's only flush with a hint (its exit
        // flushes the ASID): its ops carry the level of the blocks, 2, on a
        // CPU with FEAT_TTL, and none without.
        let got: [u64; 4] = core::array::from_fn(|l| levels()[l] - before[l]);
        let hinted = planned_levels(&[blocks_request(n)]);
        assert_eq!(got[1..], hinted[1..], "address ops by TTL level 1, 2, 3 on -cpu {cpu} ({n} blocks)");
        let ttl = FEATURES.get().unwrap().ttl;
        assert_eq!(hinted[2], if ttl { hinted.iter().sum() } else { 0 }, "{hinted:?}");
    }
}

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 120)]
    fn munmap_of_blocks_with_tlbi_range() {
        let f = FEATURES.get().unwrap();
        assert!(f.tlbi_range && f.ttl);
        // [vae1is, vale1is, rvae1is, rvale1is, aside1is]: one block is one
        // last-level op (TTL level 2); more are one range op at level 2.
        munmap_blocks_issue_the_plan("max", &[(1, [0, 1, 0, 0, 0]), (4, [0, 0, 0, 1, 0]), (16, [0, 0, 0, 1, 0])]);
    }
);

ktest!(
    #[config(cpu = "cortex-a72", append = "tlb.strategy=broadcast", timeout_s = 120)]
    fn munmap_of_blocks_without_tlbi_range() {
        assert!(!FEATURES.get().unwrap().tlbi_range);
        // One last-level op per block (no TTL hint on this CPU) up to
        // tlb.per_page_max (32 entries), then the whole ASID.
        munmap_blocks_issue_the_plan(
            "cortex-a72",
            &[(1, [0, 1, 0, 0, 0]), (4, [0, 4, 0, 0, 0]), (16, [0, 16, 0, 0, 0]), (33, [0, 0, 0, 0, 1])],
        );
    }
);

/// The three steps of the `data` mode, each checked against its plan.
fn data_steps_issue_the_plan(cpu: &str, want: [[u64; 5]; 3]) {
    let steps = [
        // The split (the block, one entry), then the page.
        planned(&[blocks_request(1), pages_request(1)]),
        planned(&[collapse_request()]),
        planned(&[blocks_request(1)]),
    ];
    assert_eq!(steps, want, "the policy's plans for a split, a collapse and a block's munmap on -cpu {cpu}");
    let events = [(Event::BlockFill, 2), (Event::BlockSplit, 1), (Event::Collapse, 1)];
    for (step, ops) in steps.into_iter().enumerate() {
        pages(DATA | exact(step as u64, ops), &events);
    }
}

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 120)]
    fn split_collapse_and_munmap_of_a_block_with_tlbi_range() {
        // A split: vale1is for the block (level 2), vale1is for the page (level
        // 3). A collapse: one range op over its 512 pages, walk caches too.
        data_steps_issue_the_plan("max", [[0, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]);
    }
);

ktest!(
    #[config(cpu = "cortex-a72", append = "tlb.strategy=broadcast", timeout_s = 120)]
    fn split_collapse_and_munmap_of_a_block_without_tlbi_range() {
        // A collapse flushes 512 pages: past per_page_max, the whole ASID.
        data_steps_issue_the_plan("cortex-a72", [[0, 2, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]);
    }
);

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 60)]
    fn contiguous_runs_fill_and_unfold_with_tlbi_range() {
        // The run's 16 pages (one range op), then the page.
        let unfold = planned(&[pages_request(16), pages_request(1)]);
        assert_eq!(unfold, [0, 1, 0, 1, 0]);
        pages(CONT | exact(0, unfold), &[(Event::RunFill, 4), (Event::RunUnfold, 2), (Event::BlockFill, 0)]);
    }
);

ktest!(
    #[config(cpu = "cortex-a72", append = "tlb.strategy=broadcast", timeout_s = 60)]
    fn contiguous_runs_fill_and_unfold_without_tlbi_range() {
        let unfold = planned(&[pages_request(16), pages_request(1)]);
        assert_eq!(unfold, [0, 17, 0, 0, 0]);
        pages(CONT | exact(0, unfold), &[(Event::RunFill, 4), (Event::RunUnfold, 2)]);
    }
);

/// The `split_no_break` events a boot counts for `splits` splits.
fn no_break(splits: u64) -> u64 {
    if crate::mm::user::config().split_no_break {
        splits
    } else {
        0
    }
}

// Safety and data under any strategy: a reader on CPU 1 reads the pages of
// a block that CPU 0 splits under it (munmap or mprotect of one page).
ktest!(
    #[config(timeout_s = 120)]
    fn a_reader_never_sees_wrong_data_while_its_block_is_split() {
        let rounds = 20;
        let events = [(Event::BlockFill, rounds), (Event::BlockSplit, rounds), (Event::SplitNoBreak, no_break(rounds))];
        pages(READER | rounds, &events);
    }
);

// The same without the break (`mm.bbm=force`: QEMU's `max` reports FEAT_BBM
// level 2 but is not on the no-abort allow-list, so `auto` keeps the break
// there; TCG raises no TLB conflict aborts): the reader never faults.
ktest!(
    #[config(append = "mm.bbm=force", timeout_s = 120)]
    fn a_reader_never_sees_wrong_data_while_its_block_is_split_without_the_break() {
        assert!(crate::mm::user::config().split_no_break);
        let rounds = 20;
        pages(READER | rounds, &[(Event::BlockSplit, rounds), (Event::SplitNoBreak, rounds)]);
    }
);

// The same with the break always made (what a CPU without FEAT_BBM level 2
// must do): the reader may fault on the cleared block, and waits.
ktest!(
    #[config(append = "mm.bbm=off", timeout_s = 120)]
    fn a_reader_never_sees_wrong_data_while_its_block_is_split_with_the_break() {
        assert!(!crate::mm::user::config().split_no_break);
        let rounds = 20;
        pages(READER | rounds, &[(Event::BlockSplit, rounds), (Event::SplitNoBreak, 0)]);
    }
);

ktest!(
    fn data_survives_split_collapse_and_munmap_under_any_strategy() {
        pages(DATA, &[(Event::BlockFill, 2), (Event::BlockSplit, 1), (Event::Collapse, 1), (Event::BlockCowCopy, 0)]);
    }
);

ktest!(
    fn contiguous_runs_keep_their_data_under_any_strategy() {
        pages(CONT, &[(Event::RunFill, 4), (Event::RunUnfold, 2)]);
    }
);

// fork shares the block; the child's write splits its copy of the entry,
// the parent's (the child still alive) splits its own: two splits.
ktest!(
    fn a_write_to_a_block_shared_after_fork_splits_it() {
        pages(FORK, &[(Event::BlockFill, 1), (Event::BlockSplit, 2), (Event::BlockCowCopy, 0)]);
    }
);

// With `mm.block_cow=copy` the child's write copies the whole block; the
// parent's block is then its own, and its write only makes it writable.
ktest!(
    #[config(append = "mm.block_cow=copy")]
    fn a_write_to_a_block_shared_after_fork_copies_it_under_block_cow_copy() {
        assert!(crate::mm::user::config().block_cow_copy);
        pages(FORK, &[(Event::BlockFill, 1), (Event::BlockSplit, 0), (Event::BlockCowCopy, 1)]);
    }
);

/// `sizes` flags: map::HUGE, map::CONT, advise NOHUGEPAGE.
const HUGE: u64 = 1;
const RUNS: u64 = 2;
const NOHUGE: u64 = 4;

ktest!(
    fn huge_and_cont_mappings_fill_blocks_and_runs_unless_advised_otherwise() {
        pages(SIZES | HUGE, &[(Event::BlockFill, 2), (Event::RunFill, 0)]);
        pages(SIZES | HUGE | NOHUGE, &[(Event::BlockFill, 0), (Event::RunFill, 0)]);
        pages(SIZES, &[(Event::BlockFill, 0), (Event::RunFill, 0)]);
    }
);

ktest!(
    #[config(append = "mm.thp=never")]
    fn under_thp_never_huge_mappings_use_pages() {
        pages(SIZES | HUGE | RUNS, &[(Event::BlockFill, 0), (Event::RunFill, 0)]);
    }
);

ktest!(
    #[config(append = "mm.thp=always")]
    fn under_thp_always_every_mapping_uses_blocks() {
        // 4 MiB placed block-aligned: two blocks, no run.
        pages(SIZES, &[(Event::BlockFill, 2), (Event::RunFill, 0)]);
    }
);

ktest!(
    fn bad_page_size_calls_fail_with_an_errno() {
        pages(BAD, &[(Event::BlockFill, 1), (Event::Collapse, 0)]);
    }
);
