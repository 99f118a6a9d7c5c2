//! What a strategy returns: [`FlushPlan`], a fixed-capacity list of ops
//! with their scope and the [`PlanReason`] for them.
#![forbid(unsafe_code)]

use core::fmt;

use super::super::op::{Scope, TlbiOp};

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

    /// Empties the plan in place (as [`Self::new`], without rewriting the
    /// ops past its length).
    pub fn reset(&mut self, scope: Scope) {
        self.scope = scope;
        self.len = 0;
        self.reason = PlanReason::Empty;
    }

    /// Says why the strategy chose these ops (in place: see
    /// [`Self::with_reason`]).
    /// Issues the same ops in `scope` (the strategy of `mm::space::shootdown`
    /// may flush locally what the policy planned).
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    pub fn set_reason(&mut self, reason: PlanReason) {
        self.reason = reason;
    }

    /// Makes this plan one whole-ASID flush, in place (as
    /// [`Self::whole_asid`]).
    pub fn set_whole_asid(&mut self, asid: u16, scope: Scope) {
        self.reset(scope);
        self.ops[0] = TlbiOp::Asid { asid };
        self.len = 1;
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
