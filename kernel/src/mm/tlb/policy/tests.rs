//! The range policy's decisions, case by case.

use super::super::range::{MAX_RANGE_PAGES, PAGE_SIZE};
use super::*;

const MAX: TlbFeatures = TlbFeatures::RANGE_AND_TTL;
const A72: TlbFeatures = TlbFeatures::NONE;
const D: PolicyParams = PolicyParams::DEFAULT;
const START: u64 = 0x7f00_0040_0000;
const ASID: u16 = 42;
const PG: u64 = PAGE_SIZE;
const MB2: u64 = 2 << 20;
const T3: Option<u8> = Some(3);

fn munmap(pages: u64) -> FlushRequest {
    FlushRequest::leaf_pages(ASID, START, START + pages * PG)
}
fn freed(pages: u64) -> FlushRequest {
    FlushRequest { tables_freed: true, ..munmap(pages) }
}
fn blocks(n: u64) -> FlushRequest {
    FlushRequest { stride: MB2, leaf_level: Some(2), end: START + n * MB2, ..munmap(0) }
}
fn va(va: u64, last_level: bool, ttl: Option<u8>) -> TlbiOp {
    TlbiOp::Va { asid: ASID, va, last_level, ttl }
}
fn rng(base: u64, num: u8, scale: u8, last_level: bool, ttl: Option<u8>) -> TlbiOp {
    TlbiOp::Range { asid: ASID, base, num, scale, last_level, ttl }
}
fn each(n: u64, stride: u64, last_level: bool, ttl: Option<u8>) -> Vec<TlbiOp> {
    (0..n).map(|i| va(START + i * stride, last_level, ttl)).collect()
}
fn asid() -> Vec<TlbiOp> {
    vec![TlbiOp::Asid { asid: ASID }]
}
fn plan(params: PolicyParams, req: &FlushRequest, feat: TlbFeatures) -> FlushPlan {
    let plan = RangePolicy::new(params)
        .plan(req, &feat)
        .unwrap_or_else(|e| panic!("{req:?} on {feat:?}: unexpected error {e}"));
    assert_eq!(plan.scope(), Scope::Broadcast, "range policy always broadcasts");
    plan
}

/// Each branch of the policy, as (what, params, cpu, request, expected ops).
///
/// munmap of 1, 16, 512, 4096 pages with the default parameters:
/// -cpu max: one op each. 1 VALE1IS (TTL 3); 16 pages = 8 pairs
/// (NUM 7, SCALE 0); 512 = 8 * 32 pairs (NUM 7, SCALE 1); 4096 = 2 * 32^2
/// pairs (NUM 1, SCALE 2), each one RVALE1IS with TTL 3.
/// -cpu cortex-a72: 1 and 16 VALE1IS (16 <= 32), then one ASIDE1IS each.
#[test]
fn every_branch() {
    let tiny = PolicyParams { per_page_max: Some(8), asid_threshold: 100, ..D };
    let no_ttl = PolicyParams { use_ttl: false, ..D };
    let no_range = PolicyParams { use_range: false, ..D };
    let range_only = TlbFeatures { tlbi_range: true, ttl: false };
    let mixed = FlushRequest { leaf_level: None, ..munmap(16) };
    #[rustfmt::skip]
    let cases: Vec<(&str, PolicyParams, TlbFeatures, FlushRequest, Vec<TlbiOp>)> = vec![
        ("max 1", D, MAX, munmap(1), vec![va(START, true, T3)]),
        ("max 16", D, MAX, munmap(16), vec![rng(START, 7, 0, true, T3)]),
        ("max 512", D, MAX, munmap(512), vec![rng(START, 7, 1, true, T3)]),
        ("max 4096", D, MAX, munmap(4096), vec![rng(START, 1, 2, true, T3)]),
        ("a72 1", D, A72, munmap(1), vec![va(START, true, None)]),
        ("a72 16", D, A72, munmap(16), each(16, PG, true, None)),
        ("a72 512", D, A72, munmap(512), asid()),
        ("a72 4096", D, A72, munmap(4096), asid()),
        // Tables freed: non-leaf forms, never a TTL hint.
        ("freed max 1", D, MAX, freed(1), vec![va(START, false, None)]),
        ("freed max 3", D, MAX, freed(3), vec![va(START, false, None), rng(START + PG, 0, 0, false, None)]),
        ("freed a72 32", D, A72, freed(32), each(32, PG, false, None)),
        ("freed a72 33", D, A72, freed(33), asid()),
        // TTL needs the feature, the parameter and a known level.
        ("ttl param off", no_ttl, MAX, munmap(16), vec![rng(START, 7, 0, true, None)]),
        ("no FEAT_TTL", D, range_only, munmap(16), vec![rng(START, 7, 0, true, None)]),
        ("level unknown", D, MAX, mixed, vec![rng(START, 7, 0, true, None)]),
        // Range forced off: the no-range per-page threshold applies.
        ("range off 32", no_range, MAX, munmap(32), each(32, PG, true, T3)),
        ("range off 33", no_range, MAX, munmap(33), asid()),
        // Threshold edges: per_page_max inclusive, asid_threshold exclusive.
        ("tiny 8", tiny, MAX, munmap(8), each(8, PG, true, T3)),
        ("tiny 9", tiny, MAX, munmap(9), vec![va(START, true, T3), rng(START + PG, 3, 0, true, T3)]),
        // 99 = 1 + 2 * (17 + 32): one page, 17 pairs, one 32-pair unit.
        ("tiny 99", tiny, MAX, munmap(99), vec![va(START, true, T3), rng(START + PG, 16, 0, true, T3), rng(START + 35 * PG, 0, 1, true, T3)]),
        ("tiny 100", tiny, MAX, munmap(100), asid()),
        ("tiny a72 9", tiny, A72, munmap(9), asid()),
        // 2 MiB blocks: one op per block; by range, 2048 pages = 1 * 32^2 pairs.
        ("a72 4 blocks", D, A72, blocks(4), each(4, MB2, true, None)),
        ("a72 33 blocks", D, A72, blocks(33), asid()),
        ("max 4 blocks", D, MAX, blocks(4), vec![rng(START, 0, 2, true, Some(2))]),
    ];
    for (what, params, feat, req, want) in cases {
        let got = plan(params, &req, feat);
        assert_eq!(
            got.ops(),
            want,
            "{what}: expected {} ops {want:?}, saw {} ops {:?}",
            want.len(),
            got.len(),
            got.ops()
        );
    }
}

/// The reason each branch gives, on the requests of `every_branch`
/// and the capacity edges; the ops are those `every_branch` checks.
#[test]
fn reasons_name_the_branch_taken() {
    use PlanReason::*;
    let tiny = PolicyParams { per_page_max: Some(8), asid_threshold: 100, ..D };
    let no_range = PolicyParams { use_range: false, ..D };
    let unbounded = PolicyParams { asid_threshold: u32::MAX, ..D };
    let wide = PolicyParams { per_page_max: Some(1000), ..D };
    let m = MAX_RANGE_PAGES;
    #[rustfmt::skip]
    let cases: Vec<(&str, PolicyParams, TlbFeatures, FlushRequest, PlanReason)> = vec![
        ("max 0", D, MAX, munmap(0), Empty),
        ("max 1", D, MAX, munmap(1), PerPage),
        ("max 16", D, MAX, munmap(16), Range),
        ("max 512", D, MAX, munmap(512), Range),
        ("max 4096", D, MAX, munmap(4096), Range),
        ("a72 16", D, A72, munmap(16), PerPage),
        ("a72 512", D, A72, munmap(512), WholeAsidNoRange),
        ("freed a72 33", D, A72, freed(33), WholeAsidNoRange),
        ("range off 33", no_range, MAX, munmap(33), WholeAsidNoRange),
        ("tiny 8", tiny, MAX, munmap(8), PerPage),
        ("tiny 99", tiny, MAX, munmap(99), Range),
        ("tiny 100", tiny, MAX, munmap(100), WholeAsidThreshold),
        ("default threshold", D, MAX, munmap(m), WholeAsidThreshold),
        ("64 * 2^21", unbounded, MAX, munmap(64 * m), Range),
        ("65 * 2^21", unbounded, MAX, munmap(65 * m), WholeAsidCapacity),
        ("per-page over capacity", wide, A72, munmap(100), WholeAsidCapacity),
    ];
    for (what, params, feat, req, want) in cases {
        let got = plan(params, &req, feat);
        assert_eq!(
            got.reason(),
            want,
            "{what}: expected {}, saw {} with ops {:?}",
            want.name(),
            got.reason().name(),
            got.ops()
        );
        let whole = got.ops() == asid();
        let says_whole = want.name().starts_with("whole_asid");
        assert_eq!(whole, says_whole, "{what}: reason {} but ops {:?}", want.name(), got.ops());
    }
    let names: std::collections::HashSet<_> = PlanReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), PlanReason::ALL.len(), "reason names are distinct");
    let a = FlushPlan::whole_asid(ASID, Scope::Broadcast);
    assert_ne!(a, a.with_reason(WholeAsidThreshold), "plans with other reasons differ");
}

#[test]
fn plans_over_capacity_become_whole_asid() {
    let p = PolicyParams { asid_threshold: u32::MAX, ..D };
    let m = MAX_RANGE_PAGES;
    let full = plan(p, &munmap(64 * m), MAX);
    assert_eq!(full.len(), 64, "64 * 2^21 pages: expected 64 range ops, saw {:?}", full.ops());
    let over = plan(p, &munmap(65 * m), MAX);
    assert_eq!(over.ops(), asid(), "65 * 2^21 pages: expected ASIDE1IS, saw {over:?}");
    let big = plan(PolicyParams { per_page_max: Some(1000), ..D }, &munmap(100), A72);
    assert_eq!(big.ops(), asid(), "100 pages > capacity: expected ASIDE1IS, saw {big:?}");
    let mut plan = FlushPlan::new(Scope::Local);
    for _ in 0..FlushPlan::CAPACITY {
        plan.try_push(TlbiOp::All).unwrap();
    }
    assert_eq!(plan.try_push(TlbiOp::All), Err(PlanFull), "push past capacity");
}

#[test]
fn malformed_requests_are_typed_errors() {
    use FlushRequestError::*;
    let b = munmap(4);
    let (s, e) = (b.start, b.end);
    #[rustfmt::skip]
    let cases = [
        (FlushRequest { start: e, end: s, ..b }, Inverted { start: e, end: s }),
        (FlushRequest { start: s + 8, ..b }, Unaligned { start: s + 8, end: e, stride: PG }),
        (FlushRequest { stride: MB2, ..b }, Unaligned { start: s, end: e, stride: MB2 }),
        (FlushRequest { stride: 0, ..b }, BadStride(0)),
        (FlushRequest { stride: 3 * PG, ..b }, BadStride(3 * PG)),
        (FlushRequest { leaf_level: Some(0), ..b }, BadLeafLevel(0)),
        (FlushRequest { leaf_level: Some(4), ..b }, BadLeafLevel(4)),
        (FlushRequest { end: USER_VA_END + PG, ..b }, BeyondUserSpace { end: USER_VA_END + PG }),
    ];
    for (req, want) in cases {
        for feat in [MAX, A72] {
            let got = RangePolicy::default().plan(&req, &feat);
            assert_eq!(got, Err(want), "{req:?} {feat:?}: expected Err({want}), saw {got:?}");
        }
    }
    let empty = RangePolicy::default().plan(&munmap(0), &MAX);
    assert_eq!(empty, Ok(FlushPlan::new(Scope::Broadcast)), "start == end: want empty plan");
}

/// Random requests on both CPUs: every op encodes, and unless the plan is
/// a whole-ASID flush its ops tile the request exactly.
#[test]
fn random_plans_encode_and_cover() {
    const SEED: u64 = 0x0b5e_55ed;
    let mut x = SEED;
    for case in 0..5000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let pages = 1 + (x >> 40) % (1 << ((x >> 8) % 23));
        let start = (x % ((USER_VA_END >> 12) - pages)) << 12;
        let req =
            FlushRequest { tables_freed: x & 1 == 1, ..FlushRequest::leaf_pages(ASID, start, start + pages * PG) };
        for feat in [MAX, A72] {
            let ctx = format!("seed={SEED:#x} case={case} {req:?} {feat:?}");
            let plan = plan(D, &req, feat);
            if plan.ops() == asid() {
                continue;
            }
            let mut cursor = req.start;
            for op in plan.ops() {
                range::encode(op).unwrap_or_else(|e| panic!("{ctx}: {op:?} fails: {e}"));
                let (lo, hi) = range::op_span(op).unwrap();
                assert_eq!(lo, cursor, "{ctx}: expected next op at {cursor:#x}, saw {op:?}");
                cursor = hi;
            }
            assert_eq!(cursor, req.end, "{ctx}: expected cover to {:#x}, saw {cursor:#x}", req.end);
        }
    }
}

#[test]
fn command_line_options() {
    let mut p = D;
    #[rustfmt::skip]
    let ok = [("tlb.per_page_max", "16"), ("tlb.asid_threshold", "4096"), ("tlb.range", "off"), ("tlb.ttl", "0")];
    for (k, v) in ok {
        assert_eq!(p.apply(k, Some(v)), Ok(Claim::Applied), "{k}={v}");
    }
    let want = PolicyParams { per_page_max: Some(16), asid_threshold: 4096, use_range: false, use_ttl: false };
    assert_eq!(p, want, "after parsing: expected {want:?}, saw {p:?}");
    assert_eq!(p.apply("tlb.range", None), Ok(Claim::Applied));
    assert_eq!(p.apply("tlb.per_page_max", Some("auto")), Ok(Claim::Applied));
    assert!(p.use_range && p.per_page_max.is_none(), "bare flag = on, auto = None: saw {p:?}");
    for k in ["tlb.foo", "log", "tlb", "tlb.range.x"] {
        assert_eq!(p.apply(k, Some("1")), Ok(Claim::NotMine), "{k} is not a policy key");
    }
    let before = p;
    #[rustfmt::skip]
    let bad = [
        ("tlb.per_page_max", Some("65")), ("tlb.per_page_max", Some("-1")), ("tlb.per_page_max", None),
        ("tlb.asid_threshold", Some("4294967296")), ("tlb.asid_threshold", Some("+5")),
        ("tlb.asid_threshold", Some("")), ("tlb.range", Some("maybe")), ("tlb.ttl", Some("ON")),
    ];
    for (k, v) in bad {
        match p.apply(k, v) {
            Err(e) if e.option == k && e.value == v.unwrap_or("") => {}
            other => panic!("{k}={v:?}: expected an error naming both, saw {other:?}"),
        }
        assert_eq!(p, before, "{k}={v:?}: a bad value must change nothing");
    }
    let e = p.apply("tlb.range", Some("maybe")).unwrap_err().to_string();
    assert_eq!(e, "bad value 'maybe' for kernel option 'tlb.range': expected on or off");
}

#[test]
fn features_from_id_registers_and_names() {
    assert_eq!(TlbFeatures::from_id_regs(0b0010 << 56, 0b0001 << 48), MAX);
    assert_eq!(TlbFeatures::from_id_regs(0b0001 << 56, 0), A72, "TLBIOS alone is not range");
    assert_eq!(RangePolicy::default().name(), "range");
    assert_eq!((D.per_page_max_for(true), D.per_page_max_for(false)), (1, 32));
}
