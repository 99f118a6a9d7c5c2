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
//! (`scripts/bench.sh`).#![forbid(unsafe_code)]

mod params;
mod plan;
mod request;
#[cfg(test)]
mod tests;

pub use params::{
    Claim, PolicyParamError, PolicyParams, TlbFeatures, ASID_THRESHOLD, PER_PAGE_MAX_NO_RANGE, PER_PAGE_MAX_WITH_RANGE,
};
pub use plan::{FlushPlan, PlanFull, PlanReason, PLAN_CAPACITY};
pub use request::{FlushRequest, FlushRequestError, USER_VA_END};

use super::op::{Scope, TlbiOp};
use super::range;

/// A way of turning flush requests into TLB maintenance.
pub trait FlushStrategy {
    /// Stable name, used in benchmark output and on the command line.
    fn name(&self) -> &'static str;
    /// The ops that invalidate every entry `req` describes on every CPU that
    /// may hold them. A malformed request is an error, never an empty plan.
    fn plan(&self, req: &FlushRequest, feat: &TlbFeatures) -> Result<FlushPlan, FlushRequestError> {
        let mut plan = FlushPlan::new(Scope::Broadcast);
        self.plan_into(req, feat, &mut plan)?;
        Ok(plan)
    }
    /// [`Self::plan`] into `plan` (what it held is replaced; on an error it
    /// is left unchanged), so that a caller can keep one plan's storage
    /// instead of moving a returned one.
    fn plan_into(&self, req: &FlushRequest, feat: &TlbFeatures, plan: &mut FlushPlan) -> Result<(), FlushRequestError>;
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

    fn plan_into(&self, req: &FlushRequest, feat: &TlbFeatures, plan: &mut FlushPlan) -> Result<(), FlushRequestError> {
        req.validate()?;
        let scope = Scope::Broadcast;
        plan.reset(scope);
        if req.start == req.end {
            return Ok(());
        }
        let p = &self.params;
        let use_range = p.use_range && feat.tlbi_range;
        let last_level = !req.tables_freed;
        let ttl = if p.use_ttl && feat.ttl && !req.tables_freed { req.leaf_level } else { None };
        let whole_asid = |plan: &mut FlushPlan, why| {
            plan.set_whole_asid(req.asid, scope);
            plan.set_reason(why);
        };
        let entries = req.entries();
        let pages = req.pages();
        let per_page_max = p.per_page_max_for(use_range) as u64;

        if entries <= per_page_max && entries <= PLAN_CAPACITY as u64 {
            for i in 0..entries {
                let va = req.start + i * req.stride;
                let op = TlbiOp::Va { asid: req.asid, va, last_level, ttl };
                if plan.try_push(op).is_err() {
                    whole_asid(plan, PlanReason::WholeAsidFallback);
                    return Ok(());
                }
            }
            plan.set_reason(PlanReason::PerPage);
            return Ok(());
        }
        if use_range && pages < p.asid_threshold as u64 && range::split_op_count(pages) <= PLAN_CAPACITY as u64 {
            // Cannot fail for a validated request; if it did, over-flush.
            let Ok(split) = range::split(req.asid, req.start, pages, last_level, ttl) else {
                whole_asid(plan, PlanReason::WholeAsidFallback);
                return Ok(());
            };
            for op in split {
                if plan.try_push(op).is_err() {
                    whole_asid(plan, PlanReason::WholeAsidFallback);
                    return Ok(());
                }
            }
            plan.set_reason(PlanReason::Range);
            return Ok(());
        }
        let why = match (use_range, entries <= per_page_max) {
            // Few enough entries for per-page ops, too many for a plan.
            (false, true) => PlanReason::WholeAsidCapacity,
            (false, false) => PlanReason::WholeAsidNoRange,
            (true, _) if pages >= p.asid_threshold as u64 => PlanReason::WholeAsidThreshold,
            (true, _) => PlanReason::WholeAsidCapacity,
        };
        whole_asid(plan, why);
        Ok(())
    }
}
