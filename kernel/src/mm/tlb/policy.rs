//! Flush policy: turns a flush request into TLBI operations.
//!
//! A zap (munmap, madvise, mprotect, ...) ends with a [`FlushRequest`]: which
//! ASID, which VA range, how large the cleared entries were, whether
//! page-table pages were freed and at which level the leaves were. A
//! [`FlushStrategy`] turns it into a [`FlushPlan`], a short fixed-capacity
//! list of [`TlbiOp`] values plus the [`Scope`] to issue them with; the arch
//! layer (or the host TLB model) executes the plan and counts every op. The
//! plan is plain data so that tests can assert on it and other strategies
//! (IPI-based, local-only) can share the request and plan types.
//!
//! [`RangePolicy`], the first strategy, always broadcasts and picks the
//! granularity:
//!
//! 1. at most `per_page_max` entries: one `VAE1IS`/`VALE1IS` per entry;
//! 2. else, with FEAT_TLBIRANGE present and enabled and fewer than
//!    `asid_threshold` pages: the fewest `RVAE1IS`/`RVALE1IS` ops
//!    ([`super::range::split`]);
//! 3. else one `ASIDE1IS`, which drops every entry of the ASID, walk caches
//!    included.
//!
//! The plan says which of these it took, and why, as a [`PlanReason`]
//! (`FlushPlan::reason`): the TLB decision trace (`super::trace`) records it.
//!
//! Ops are leaf-only (`VALE1IS`, `RVALE1IS`) unless page-table pages were
//! freed: then cached upper-level entries may point into a freed table and
//! must go too. The FEAT_TTL level hint is added only when the CPU has it,
//! the user left it on, the leaf level is known and no table was freed.
//!
//! # Thresholds, and Linux's
//!
//! Linux/arm64 uses `MAX_DVM_OPS` (called `MAX_TLBI_OPS` before; equal to
//! `PTRS_PER_PTE` = 512): without range ops, a flush of 512 or more entries
//! becomes a whole-ASID flush. Its comment says this avoids soft lock-ups on
//! huge ranges, not that 512 is the fastest point. With range ops Linux uses
//! them for everything up to `MAX_TLBI_RANGE_PAGES` = 2^21 pages (8 GiB, one
//! op with NUM = 31, SCALE = 3), and single-page ops only for an odd page.
//! Ours are parameters ([`PolicyParams`]) because where the crossover lies
//! differs per core, and measuring it is the point of the benchmark suite
//! (`scripts/bench.sh`).
#![forbid(unsafe_code)]

use core::fmt;

use super::op::{Scope, TlbiOp};
use super::range::{self, MAX_RANGE_PAGES, PAGE_SIZE};

/// First VA above the user half: 48-bit VAs with the 4 KiB granule (TTBR0).
pub const USER_VA_END: u64 = 1 << 48;

/// What a zap cleared and now needs flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushRequest {
    /// Hardware ASID of the address space (generation already stripped).
    pub asid: u16,
    /// First VA of the range; a multiple of `stride`.
    pub start: u64,
    /// First VA after the range; a multiple of `stride`, at most
    /// [`USER_VA_END`]. `start == end` means nothing to flush (empty plan).
    pub end: u64,
    /// Size of the entries that were cleared: 4 KiB pages for now, later
    /// 2 MiB / 1 GiB blocks. A power of two, at least 4 KiB. Per-entry
    /// flushes issue one op per `stride` bytes.
    pub stride: u64,
    /// Page-table pages were freed (or table entries changed). Cached
    /// upper-level entries may then point into freed memory, so the plan
    /// uses the non-leaf forms and no TTL hint. The range must include at
    /// least one VA under each freed table.
    pub tables_freed: bool,
    /// Translation level (1..=3) of *every* leaf entry that was cleared, for
    /// the FEAT_TTL hint; `None` when mixed or unknown. A wrong level makes
    /// the hint skip entries, so pass `None` if in doubt.
    pub leaf_level: Option<u8>,
}

impl FlushRequest {
    /// 4 KiB pages at level 3 in `[start, end)`, no tables freed.
    pub const fn leaf_pages(asid: u16, start: u64, end: u64) -> Self {
        Self { asid, start, end, stride: PAGE_SIZE, tables_freed: false, leaf_level: Some(3) }
    }

    /// Number of `stride`-sized entries (valid requests only).
    pub const fn entries(&self) -> u64 {
        (self.end - self.start) / self.stride
    }

    /// Number of 4 KiB pages (valid requests only).
    pub const fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    pub fn validate(&self) -> Result<(), FlushRequestError> {
        let (start, end, stride) = (self.start, self.end, self.stride);
        if stride < PAGE_SIZE || !stride.is_power_of_two() {
            return Err(FlushRequestError::BadStride(stride));
        }
        if start > end {
            return Err(FlushRequestError::Inverted { start, end });
        }
        if start % stride != 0 || end % stride != 0 {
            return Err(FlushRequestError::Unaligned { start, end, stride });
        }
        if end > USER_VA_END {
            return Err(FlushRequestError::BeyondUserSpace { end });
        }
        match self.leaf_level {
            Some(l) if !(1..=3).contains(&l) => Err(FlushRequestError::BadLeafLevel(l)),
            _ => Ok(()),
        }
    }
}

/// A malformed [`FlushRequest`]: a caller bug, never silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushRequestError {
    /// `start > end`.
    Inverted { start: u64, end: u64 },
    /// `start` or `end` not a multiple of `stride`.
    Unaligned { start: u64, end: u64, stride: u64 },
    /// `stride` not a power of two of at least 4 KiB.
    BadStride(u64),
    /// `leaf_level` outside 1..=3.
    BadLeafLevel(u8),
    /// `end` above [`USER_VA_END`].
    BeyondUserSpace { end: u64 },
}

impl fmt::Display for FlushRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Inverted { start, end } => {
                write!(f, "flush range {start:#x}..{end:#x} is inverted")
            }
            Self::Unaligned { start, end, stride } => {
                write!(f, "flush range {start:#x}..{end:#x} is not aligned to stride {stride:#x}")
            }
            Self::BadStride(s) => write!(f, "flush stride {s:#x} is not a power of two >= 4 KiB"),
            Self::BadLeafLevel(l) => write!(f, "leaf level {l} is not 1..=3"),
            Self::BeyondUserSpace { end } => {
                write!(f, "flush range end {end:#x} is above user space ({USER_VA_END:#x})")
            }
        }
    }
}

/// TLB maintenance features the kernel detected at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    /// FEAT_TLBIRANGE: `RVAE1IS` and friends.
    pub tlbi_range: bool,
    /// FEAT_TTL: the level hint in single-page and range operands.
    pub ttl: bool,
}

impl CpuFeatures {
    /// Neither feature (QEMU `-cpu cortex-a72`).
    pub const NONE: Self = Self { tlbi_range: false, ttl: false };
    /// Both features (QEMU `-cpu max`).
    pub const RANGE_AND_TTL: Self = Self { tlbi_range: true, ttl: true };

    /// From ID_AA64ISAR0_EL1 (TLB, bits [59:56]: 0b0010 = outer-shareable
    /// and range ops) and ID_AA64MMFR2_EL1 (TTL, bits [51:48]: 0b0001).
    pub const fn from_id_regs(isar0: u64, mmfr2: u64) -> Self {
        Self { tlbi_range: (isar0 >> 56) & 0xf >= 0b0010, ttl: (mmfr2 >> 48) & 0xf >= 0b0001 }
    }
}

/// With range ops in use: a single page is one op either way (a range op
/// covers an even number of pages), and two or more pages need no more range
/// ops than single-page ops. This is Linux's choice too. `scripts/bench.sh`
/// measures whether cores that handle range ops slowly want more.
pub const PER_PAGE_MAX_WITH_RANGE: u32 = 1;
/// Without range ops: beyond this many entries one `ASIDE1IS` (and the
/// refills it causes) is assumed cheaper than that many broadcast
/// single-page ops. A starting point, not a measurement: it fits the plan
/// capacity (Linux's 512 is a lock-up bound) and sits near x86 Linux's
/// measured single-page ceiling of 33; `scripts/bench.sh` measures the
/// crossover.
pub const PER_PAGE_MAX_NO_RANGE: u32 = 32;
/// Range flushes of this many pages or more use `ASIDE1IS` instead. Linux's
/// `MAX_TLBI_RANGE_PAGES` (2^21 pages, 8 GiB): below it the split needs at
/// most 5 ops. Not a correctness limit here (the encoder handles any length);
/// `scripts/bench.sh` measures where losing the ASID's other entries starts
/// to pay.
pub const ASID_THRESHOLD: u32 = MAX_RANGE_PAGES as u32;

/// Tunables of [`RangePolicy`], settable on the kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyParams {
    /// Flushes of at most this many entries use one op per entry
    /// (`tlb.per_page_max`, at most [`FlushPlan::CAPACITY`]). `None` = auto:
    /// [`PER_PAGE_MAX_WITH_RANGE`] when range ops are in use, else
    /// [`PER_PAGE_MAX_NO_RANGE`]. Auto because the right value depends on
    /// whether range ops are available *and* enabled, known only after both
    /// feature detection and command-line parsing.
    pub per_page_max: Option<u32>,
    /// Range flushes of this many 4 KiB pages or more flush the whole ASID
    /// (`tlb.asid_threshold`; default [`ASID_THRESHOLD`]).
    pub asid_threshold: u32,
    /// Use range ops when the CPU has them (`tlb.range`, default on; off to
    /// measure or to work around a core).
    pub use_range: bool,
    /// Use the TTL hint when the CPU has it (`tlb.ttl`, default on).
    pub use_ttl: bool,
}

/// Whether [`PolicyParams::apply`] consumed an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Applied,
    /// Not a policy key: the command-line parser reports unknown keys.
    NotMine,
}

/// A bad value for one of the policy's command-line options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyParamError<'a> {
    pub option: &'static str,
    /// The value as given (empty when missing).
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for PolicyParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { option, value, expected } = self;
        write!(f, "bad value '{value}' for kernel option '{option}': expected {expected}")
    }
}

impl PolicyParams {
    pub const DEFAULT: Self =
        Self { per_page_max: None, asid_threshold: ASID_THRESHOLD, use_range: true, use_ttl: true };

    /// The command-line keys [`Self::apply`] accepts.
    pub const KEYS: [&'static str; 4] =
        ["tlb.per_page_max", "tlb.asid_threshold", "tlb.range", "tlb.ttl"];

    /// `per_page_max` with auto resolved.
    pub const fn per_page_max_for(&self, range_in_use: bool) -> u32 {
        match self.per_page_max {
            Some(n) => n,
            None if range_in_use => PER_PAGE_MAX_WITH_RANGE,
            None => PER_PAGE_MAX_NO_RANGE,
        }
    }

    /// Applies one `key[=value]` option. Values: `tlb.per_page_max=N|auto`
    /// (N <= 64), `tlb.asid_threshold=N` (decimal u32), `tlb.range` and
    /// `tlb.ttl` = on|off (also 1/0, yes/no, true/false; a bare key means
    /// on, as elsewhere on the command line). On error nothing changes.
    pub fn apply<'a>(
        &mut self,
        key: &str,
        value: Option<&'a str>,
    ) -> Result<Claim, PolicyParamError<'a>> {
        let v = value.unwrap_or("");
        let bad = |option, expected| PolicyParamError { option, value: v, expected };
        let flag = |option| match value {
            None | Some("on" | "1" | "yes" | "true") => Ok(true),
            Some("off" | "0" | "no" | "false") => Ok(false),
            Some(_) => Err(bad(option, "on or off")),
        };
        match key {
            "tlb.per_page_max" => {
                const EXPECTED: &str = "auto or an integer from 0 to 64 (the plan capacity)";
                self.per_page_max = match v {
                    "auto" => None,
                    _ => match parse_u32(v) {
                        Some(n) if n as usize <= FlushPlan::CAPACITY => Some(n),
                        _ => return Err(bad("tlb.per_page_max", EXPECTED)),
                    },
                };
            }
            "tlb.asid_threshold" => {
                self.asid_threshold = parse_u32(v)
                    .ok_or(bad("tlb.asid_threshold", "a number of pages from 0 to 4294967295"))?;
            }
            "tlb.range" => self.use_range = flag("tlb.range")?,
            "tlb.ttl" => self.use_ttl = flag("tlb.ttl")?,
            _ => return Ok(Claim::NotMine),
        }
        Ok(Claim::Applied)
    }
}

impl Default for PolicyParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Decimal digits only (no sign, no spaces), no overflow.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Capacity of a [`FlushPlan`].
pub const PLAN_CAPACITY: usize = 64;

/// Why a strategy chose the ops of its plan. [`RangePolicy`] gives one per
/// branch of its decision (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanReason {
    /// The request covered nothing: no ops.
    Empty,
    /// At most `per_page_max` entries: one op per entry.
    PerPage,
    /// More than `per_page_max` entries and fewer than `asid_threshold`
    /// pages, with range ops in use: the fewest range ops.
    Range,
    /// More than `per_page_max` entries and no range ops (the CPU lacks
    /// FEAT_TLBIRANGE, or `tlb.range=off`): the whole ASID.
    WholeAsidNoRange,
    /// `asid_threshold` pages or more, with range ops in use: the whole ASID.
    WholeAsidThreshold,
    /// The ops the other branches would choose do not fit in a plan
    /// ([`PLAN_CAPACITY`]): the whole ASID.
    WholeAsidCapacity,
    /// A step that cannot fail for a validated request failed (a bug):
    /// the whole ASID, which is always correct.
    WholeAsidFallback,
}

impl PlanReason {
    pub const ALL: [PlanReason; 7] = [
        PlanReason::Empty,
        PlanReason::PerPage,
        PlanReason::Range,
        PlanReason::WholeAsidNoRange,
        PlanReason::WholeAsidThreshold,
        PlanReason::WholeAsidCapacity,
        PlanReason::WholeAsidFallback,
    ];

    /// Stable name, used in the decision trace.
    pub const fn name(self) -> &'static str {
        match self {
            PlanReason::Empty => "empty",
            PlanReason::PerPage => "per_page",
            PlanReason::Range => "range",
            PlanReason::WholeAsidNoRange => "whole_asid_no_range",
            PlanReason::WholeAsidThreshold => "whole_asid_threshold",
            PlanReason::WholeAsidCapacity => "whole_asid_capacity",
            PlanReason::WholeAsidFallback => "whole_asid_fallback",
        }
    }
}

/// The ops a strategy chose, in issue order, the scope to issue them with,
/// and why it chose them. Fixed capacity: building a plan never allocates.
#[derive(Clone, Copy, Debug)]
pub struct FlushPlan {
    scope: Scope,
    len: usize,
    ops: [TlbiOp; PLAN_CAPACITY],
    reason: PlanReason,
}

/// [`FlushPlan::try_push`] on a full plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanFull;

impl fmt::Display for PlanFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flush plan is full ({PLAN_CAPACITY} ops)")
    }
}

impl FlushPlan {
    pub const CAPACITY: usize = PLAN_CAPACITY;

    /// An empty plan (reason [`PlanReason::Empty`] until
    /// [`Self::with_reason`] says otherwise).
    pub const fn new(scope: Scope) -> Self {
        Self { scope, len: 0, ops: [TlbiOp::All; PLAN_CAPACITY], reason: PlanReason::Empty }
    }

    /// This plan, chosen for `reason`.
    pub const fn with_reason(mut self, reason: PlanReason) -> Self {
        self.reason = reason;
        self
    }

    /// Why the strategy chose these ops.
    pub const fn reason(&self) -> PlanReason {
        self.reason
    }

    /// A plan of one whole-ASID flush (give it its reason with
    /// [`Self::with_reason`]).
    pub const fn whole_asid(asid: u16, scope: Scope) -> Self {
        let mut plan = Self::new(scope);
        plan.ops[0] = TlbiOp::Asid { asid };
        plan.len = 1;
        plan
    }

    pub fn try_push(&mut self, op: TlbiOp) -> Result<(), PlanFull> {
        let slot = self.ops.get_mut(self.len).ok_or(PlanFull)?;
        *slot = op;
        self.len += 1;
        Ok(())
    }

    pub const fn scope(&self) -> Scope {
        self.scope
    }

    pub fn ops(&self) -> &[TlbiOp] {
        &self.ops[..self.len]
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for FlushPlan {
    fn eq(&self, other: &Self) -> bool {
        self.scope == other.scope && self.ops() == other.ops() && self.reason == other.reason
    }
}

impl Eq for FlushPlan {}

/// A way of turning flush requests into TLB maintenance.
pub trait FlushStrategy {
    /// Stable name, used in benchmark output and on the command line.
    fn name(&self) -> &'static str;
    /// The ops that invalidate every entry `req` describes on every CPU that
    /// may hold them. A malformed request is an error, never an empty plan.
    fn plan(&self, req: &FlushRequest, feat: &CpuFeatures) -> Result<FlushPlan, FlushRequestError>;
}

/// Broadcast TLBIs: per entry, by range, or the whole ASID (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangePolicy {
    pub params: PolicyParams,
}

impl RangePolicy {
    pub const fn new(params: PolicyParams) -> Self {
        Self { params }
    }
}

impl FlushStrategy for RangePolicy {
    fn name(&self) -> &'static str {
        "range"
    }

    fn plan(&self, req: &FlushRequest, feat: &CpuFeatures) -> Result<FlushPlan, FlushRequestError> {
        req.validate()?;
        let scope = Scope::Broadcast;
        let mut plan = FlushPlan::new(scope);
        if req.start == req.end {
            return Ok(plan);
        }
        let p = &self.params;
        let use_range = p.use_range && feat.tlbi_range;
        let last_level = !req.tables_freed;
        let ttl = if p.use_ttl && feat.ttl && !req.tables_freed { req.leaf_level } else { None };
        let whole_asid = |why| FlushPlan::whole_asid(req.asid, scope).with_reason(why);
        let entries = req.entries();
        let pages = req.pages();
        let per_page_max = p.per_page_max_for(use_range) as u64;

        if entries <= per_page_max && entries <= PLAN_CAPACITY as u64 {
            for i in 0..entries {
                let va = req.start + i * req.stride;
                let op = TlbiOp::Va { asid: req.asid, va, last_level, ttl };
                if plan.try_push(op).is_err() {
                    return Ok(whole_asid(PlanReason::WholeAsidFallback));
                }
            }
            return Ok(plan.with_reason(PlanReason::PerPage));
        }
        if use_range
            && pages < p.asid_threshold as u64
            && range::split_op_count(pages) <= PLAN_CAPACITY as u64
        {
            // Cannot fail for a validated request; if it did, over-flush.
            let Ok(split) = range::split(req.asid, req.start, pages, last_level, ttl) else {
                return Ok(whole_asid(PlanReason::WholeAsidFallback));
            };
            for op in split {
                if plan.try_push(op).is_err() {
                    return Ok(whole_asid(PlanReason::WholeAsidFallback));
                }
            }
            return Ok(plan.with_reason(PlanReason::Range));
        }
        let why = match (use_range, entries <= per_page_max) {
            // Few enough entries for per-page ops, too many for a plan.
            (false, true) => PlanReason::WholeAsidCapacity,
            (false, false) => PlanReason::WholeAsidNoRange,
            (true, _) if pages >= p.asid_threshold as u64 => PlanReason::WholeAsidThreshold,
            (true, _) => PlanReason::WholeAsidCapacity,
        };
        Ok(whole_asid(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: CpuFeatures = CpuFeatures::RANGE_AND_TTL;
    const A72: CpuFeatures = CpuFeatures::NONE;
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
    fn plan(params: PolicyParams, req: &FlushRequest, feat: CpuFeatures) -> FlushPlan {
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
        let range_only = CpuFeatures { tlbi_range: true, ttl: false };
        let mixed = FlushRequest { leaf_level: None, ..munmap(16) };
        #[rustfmt::skip]
        let cases: Vec<(&str, PolicyParams, CpuFeatures, FlushRequest, Vec<TlbiOp>)> = vec![
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
        let cases: Vec<(&str, PolicyParams, CpuFeatures, FlushRequest, PlanReason)> = vec![
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
            assert_eq!(got.reason(), want, "{what}: expected {}, saw {} with ops {:?}", want.name(), got.reason().name(), got.ops());
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
            let req = FlushRequest {
                tables_freed: x & 1 == 1,
                ..FlushRequest::leaf_pages(ASID, start, start + pages * PG)
            };
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
                assert_eq!(
                    cursor, req.end,
                    "{ctx}: expected cover to {:#x}, saw {cursor:#x}",
                    req.end
                );
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
        let want = PolicyParams {
            per_page_max: Some(16),
            asid_threshold: 4096,
            use_range: false,
            use_ttl: false,
        };
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
        assert_eq!(CpuFeatures::from_id_regs(0b0010 << 56, 0b0001 << 48), MAX);
        assert_eq!(CpuFeatures::from_id_regs(0b0001 << 56, 0), A72, "TLBIOS alone is not range");
        assert_eq!(RangePolicy::default().name(), "range");
        assert_eq!((D.per_page_max_for(true), D.per_page_max_for(false)), (1, 32));
    }
}
