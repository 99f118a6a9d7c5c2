//! The TLB decision trace (`trace=tlb`, issue 14): every TLB flush decision
//! the kernel makes, with what it chose and why, in a bounded ring per CPU,
//! printed on the console at the end of the run.
//!
//! A decision is one [`TraceEvent`]: when (CNTVCT ticks), which CPU, which
//! ASID, which range (`start..end`, the whole ASID, or every ASID), how many
//! pages, the strategy that planned the ops (if one did), the ops issued (per
//! kind, [`OpCounts`]), the [`Reason`], the flush policy's own reason when it
//! planned them ([`PlanReason`]), and the CPUs sent an IPI for it (the
//! IPI, local and auto strategies of docs/mechanisms.md §6–7).
//! Decisions that issue no TLBI (an elided exit flush, a flush skipped for
//! an mm that never had an ASID) are events too, with no ops.
//!
//! The code that makes a decision describes it as a [`Decision`] (all of
//! the event but the time and the CPU) just before it issues the ops: the
//! TLB protocol (`mm::space`) hands it to its hardware (`MmHw::decision`),
//! whose kernel implementation adds the time and the CPU and records it
//! (`hook`). The reason comes from two places. The strategy says why it
//! chose its ops (per page, range, whole ASID beyond a threshold:
//! [`PlanReason`]). The protocol says why it flushed at all, when that is
//! not an ordinary gather: the [`Cause`] (the kind of call: a zap, a call
//! finished under the lock, the reaper, a fault, the exit teardown) and
//! [`Reason::for_plan`] or [`Reason::for_whole_asid`] combine the two.
//!
//! This module is plain Rust: [`ring`] keeps the per-CPU rings (allocated
//! once, when the trace is turned on; recording never allocates), [`line`]
//! is the console format, [`params`] the command-line options. The kernel's
//! end, which adds the CPU and the time, is `hook` (target only).
#![forbid(unsafe_code)]

use core::fmt;

use super::op::{OpKind, Scope, TlbiOp};
use super::policy::{FlushPlan, FlushRequest, PlanReason};
use super::range;

#[cfg(target_os = "none")]
pub mod hook;
pub mod line;
pub mod params;
pub mod ring;

pub use params::TraceParams;
pub use ring::{TlbTrace, TraceInitError};

/// Why a TLB flush decision was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An ordinary gather (munmap, madvise, mprotect, mmap, fork, a batch
    /// of a long zap): the strategy chose the ops, for this reason.
    Policy(PlanReason),
    /// A zap (munmap, madvise, the reaper) finished while another zap of
    /// the mm was in flight: the whole ASID instead of its range
    /// (docs/mechanisms.md §5).
    NestedZap,
    /// A call holding the mm lock (mprotect, mmap, fork) finished while a
    /// zap was in flight: the whole ASID.
    LockedRace,
    /// A fault was about to install an entry while a zap was in flight: the
    /// whole ASID first (break-before-make).
    FaultRace,
    /// The last thread exited: the exit-mode teardown issued no TLBI
    /// (docs/mechanisms.md §4).
    ExitElided,
    /// The last thread exited with `tlb.exit_elide=off`: one whole-ASID flush.
    ExitFlush,
    /// A thread of an ending process left its mm for good: a local
    /// `ASIDE1` of the ASID on its CPU (`space::switch::leave_dying`).
    ExitLocal,
    /// The reaper tore down a killed process's memory while its threads may
    /// still run: every batch is flushed (the strategy chose the ops).
    Reaper,
    /// A copy-on-write fault changed a live entry's frame: break, flush
    /// (the strategy chose the ops), make.
    CowBreakBeforeMake,
    /// A fault found the entry already right (a copy-on-write reuse or a
    /// spurious fault): a local invalidate of the page, in case this CPU
    /// still caches the older, stricter entry.
    FaultLocal,
    /// The ASID allocator's local full flush, owed after a rollover.
    AsidRollover,
    /// The mm never had an ASID (it was never loaded on any CPU): no TLB
    /// can hold its entries, no TLBI.
    NeverActive,
    /// The strategy rejected the request (a kernel bug): the whole ASID.
    BadRequest,
    /// A CPU served a flush IPI (`tlb.strategy=ipi|local|auto`): local ops
    /// for the range, or the whole ASID when it was more than one
    /// generation behind (docs/mechanisms.md §7).
    Shootdown,
    /// A CPU behind the mm's flush generation flushed the ASID locally
    /// before running the mm again (docs/mechanisms.md §6–7).
    CatchUp,
    /// Reclaim unmapped a page: its TLBI is issued without a DSB, and the
    /// batch completes it (docs/mechanisms.md §8).
    Reclaim,
    /// A call found a reclaim batch pending on its mm (TLBIs another CPU
    /// issued and may not have completed): the whole ASID first, before it
    /// changes anything (Linux's `flush_tlb_batched_pending`).
    BatchedPending,
}

impl Reason {
    /// Every reason that is not a [`Reason::Policy`].
    pub const KERNEL: [Reason; 16] = [
        Reason::NestedZap,
        Reason::LockedRace,
        Reason::FaultRace,
        Reason::ExitElided,
        Reason::ExitFlush,
        Reason::ExitLocal,
        Reason::Reaper,
        Reason::CowBreakBeforeMake,
        Reason::FaultLocal,
        Reason::AsidRollover,
        Reason::NeverActive,
        Reason::BadRequest,
        Reason::Shootdown,
        Reason::CatchUp,
        Reason::Reclaim,
        Reason::BatchedPending,
    ];

    /// Stable name, used on the console and by the host tools.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Policy(p) => p.name(),
            Reason::NestedZap => "nested_zap",
            Reason::LockedRace => "locked_race",
            Reason::FaultRace => "fault_race",
            Reason::ExitElided => "exit_elided",
            Reason::ExitFlush => "exit_flush",
            Reason::ExitLocal => "exit_local",
            Reason::Reaper => "reaper",
            Reason::CowBreakBeforeMake => "cow_bbm",
            Reason::FaultLocal => "fault_local",
            Reason::AsidRollover => "asid_rollover",
            Reason::NeverActive => "never_active",
            Reason::BadRequest => "bad_request",
            Reason::Shootdown => "shootdown",
            Reason::CatchUp => "catch_up",
            Reason::Reclaim => "reclaim",
            Reason::BatchedPending => "batched_pending",
        }
    }

    /// The reason for ops a strategy planned (`why`) for a call of kind
    /// `cause`.
    pub const fn for_plan(cause: Cause, why: PlanReason) -> Reason {
        match cause {
            Cause::Fault => Reason::CowBreakBeforeMake,
            Cause::Reaper => Reason::Reaper,
            Cause::Reclaim => Reason::Reclaim,
            Cause::Zap | Cause::Locked | Cause::Exit => Reason::Policy(why),
        }
    }

    /// The reason for a whole-ASID flush a call of kind `cause` issued
    /// without asking the strategy: the racing fallbacks and the exit flush
    /// of `tlb.exit_elide=off`.
    pub const fn for_whole_asid(cause: Cause) -> Reason {
        match cause {
            Cause::Zap | Cause::Reaper => Reason::NestedZap,
            Cause::Locked => Reason::LockedRace,
            Cause::Exit => Reason::ExitFlush,
            Cause::Fault => Reason::FaultRace,
            Cause::Reclaim => Reason::Reclaim,
        }
    }
}

/// The kind of call a decision is made for, as far as it changes the
/// reason (the TLB protocol names it for each of its calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// munmap or madvise: a whole-ASID flush is the nested-zap fallback.
    Zap,
    /// A call that finishes under the mm lock (mprotect, mmap, fork): a
    /// whole-ASID flush is the locked-call fallback.
    Locked,
    /// The reaper's teardown (a zap too): planned flushes are the reaper's.
    Reaper,
    /// The page-fault handler: a planned flush is a copy-on-write
    /// break-before-make, a whole-ASID flush the race fallback.
    Fault,
    /// The exit teardown: a whole-ASID flush is the exit flush.
    Exit,
    /// Reclaim's unmap of one page.
    Reclaim,
}

/// What a decision covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Span {
    /// `[start, end)` of one ASID.
    Va { start: u64, end: u64 },
    /// Every entry of one ASID.
    WholeAsid,
    /// Every entry of every ASID (this CPU's TLB, after a rollover).
    All,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Va { start, end } => write!(f, "{start:#x}-{end:#x}"),
            Span::WholeAsid => f.write_str("whole_asid"),
            Span::All => f.write_str("all"),
        }
    }
}

/// TLBI ops of one decision, counted per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpCounts([u16; OpKind::COUNT]);

impl OpCounts {
    pub const NONE: OpCounts = OpCounts([0; OpKind::COUNT]);

    /// `ops` issued with `scope` (counts saturate; a plan holds at most 64).
    pub fn of(ops: &[TlbiOp], scope: Scope) -> OpCounts {
        let mut c = OpCounts::NONE;
        for op in ops {
            let n = &mut c.0[op.kind(scope) as usize];
            *n = n.saturating_add(1);
        }
        c
    }

    /// One op of `kind`.
    pub fn one(kind: OpKind) -> OpCounts {
        let mut c = OpCounts::NONE;
        c.0[kind as usize] = 1;
        c
    }

    pub fn get(&self, kind: OpKind) -> u16 {
        self.0[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }

    /// The kinds issued, with their counts, in [`OpKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (OpKind, u16)> + '_ {
        OpKind::ALL.into_iter().map(|k| (k, self.get(k))).filter(|&(_, n)| n != 0)
    }
}

/// `kind:count,...` in [`OpKind::ALL`] order, or `none`.
impl fmt::Display for OpCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (k, n) in self.iter() {
            write!(f, "{}{}:{n}", if any { "," } else { "" }, k.name())?;
            any = true;
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// One TLB flush decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// CNTVCT_EL0 when it was made.
    pub ticks: u64,
    pub cpu: u8,
    /// The hardware ASID, if the decision concerns one.
    pub asid: Option<u16>,
    pub span: Span,
    /// The strategy that planned the ops (`FlushStrategy::name`), if one did.
    pub strategy: Option<&'static str>,
    pub ops: OpCounts,
    pub reason: Reason,
    /// The strategy's reason, when it planned the ops.
    pub policy: Option<PlanReason>,
    /// CPUs sent an IPI for this decision (bit per CPU): flushes under
    /// `tlb.strategy=ipi|local|auto` (docs/mechanisms.md §7).
    pub ipi_targets: u16,
}

impl TraceEvent {
    /// A decision about `span` of `asid` for `reason` with no ops yet.
    pub const fn new(ticks: u64, cpu: u8, asid: Option<u16>, span: Span, reason: Reason) -> Self {
        TraceEvent { ticks, cpu, asid, span, strategy: None, ops: OpCounts::NONE, reason, policy: None, ipi_targets: 0 }
    }

    /// 4 KiB pages of a [`Span::Va`]; `None` for the other spans.
    pub const fn pages(&self) -> Option<u64> {
        match self.span {
            Span::Va { start, end } => Some(end.saturating_sub(start) / super::range::PAGE_SIZE),
            _ => None,
        }
    }

    pub const fn with_ops(mut self, ops: OpCounts) -> Self {
        self.ops = ops;
        self
    }

    /// Ops planned by `strategy` for `why`.
    pub const fn planned(mut self, strategy: &'static str, why: PlanReason, ops: OpCounts) -> Self {
        self.strategy = Some(strategy);
        self.policy = Some(why);
        self.ops = ops;
        self
    }
}

/// A TLB flush decision as the code that makes it knows it: a
/// [`TraceEvent`] but for the time and the CPU, which [`Self::event`] adds.
/// Made just before its ops, if any, are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The hardware ASID, if the decision concerns one.
    pub asid: Option<u16>,
    pub span: Span,
    pub reason: Reason,
    /// The ops about to be issued (none for a decision that issues no
    /// TLBI), and the scope they are issued with.
    pub ops: &'a [TlbiOp],
    pub scope: Scope,
    /// The strategy that planned the ops and its reason, if one did.
    pub planned: Option<(&'static str, PlanReason)>,
    /// CPUs sent an IPI for this flush (`tlb.strategy=ipi|local|auto`).
    pub ipi: u64,
}

impl<'a> Decision<'a> {
    /// `strategy` planned `plan` for `req`.
    pub fn planned(strategy: &'static str, req: &FlushRequest, plan: &'a FlushPlan, reason: Reason) -> Self {
        Decision {
            asid: Some(req.asid),
            span: Span::Va { start: req.start, end: req.end },
            reason,
            ops: plan.ops(),
            scope: plan.scope(),
            planned: Some((strategy, plan.reason())),
            ipi: 0,
        }
    }

    /// `plan`, a whole-ASID flush of `asid` no strategy planned.
    pub fn whole_asid(asid: u16, plan: &'a FlushPlan, reason: Reason) -> Self {
        let (ops, scope) = (plan.ops(), plan.scope());
        Decision { asid: Some(asid), span: Span::WholeAsid, reason, ops, scope, planned: None, ipi: 0 }
    }

    /// One op no strategy planned; its ASID and span are the op's.
    pub fn op(op: &'a TlbiOp, scope: Scope, reason: Reason) -> Self {
        let asid = match *op {
            TlbiOp::Va { asid, .. } | TlbiOp::Range { asid, .. } | TlbiOp::Asid { asid } => Some(asid),
            TlbiOp::All => None,
        };
        let span = match (range::op_span(op), asid) {
            (Some((start, end)), _) => Span::Va { start, end },
            (None, Some(_)) => Span::WholeAsid,
            (None, None) => Span::All,
        };
        Decision { asid, span, reason, ops: core::slice::from_ref(op), scope, planned: None, ipi: 0 }
    }

    /// A decision that issues no TLBI.
    pub const fn no_tlbi(asid: Option<u16>, span: Span, reason: Reason) -> Self {
        Decision { asid, span, reason, ops: &[], scope: Scope::Broadcast, planned: None, ipi: 0 }
    }

    /// The same decision, with IPIs to `targets` (a CPU mask).
    pub const fn with_ipi(mut self, targets: u64) -> Self {
        self.ipi = targets;
        self
    }

    /// The event of this decision, made at `ticks` on `cpu`.
    pub fn event(&self, ticks: u64, cpu: u8) -> TraceEvent {
        let mut e = TraceEvent::new(ticks, cpu, self.asid, self.span, self.reason);
        e.ipi_targets = self.ipi as u16;
        let ops = OpCounts::of(self.ops, self.scope);
        match self.planned {
            Some((strategy, why)) => e.planned(strategy, why, ops),
            None => e.with_ops(ops),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_combine_the_cause_with_the_plan() {
        let p = PlanReason::Range;
        assert_eq!(Reason::for_plan(Cause::Zap, p), Reason::Policy(p), "a zap's own flush is the policy's");
        assert_eq!(Reason::for_plan(Cause::Locked, p), Reason::Policy(p));
        assert_eq!(Reason::for_plan(Cause::Reaper, p), Reason::Reaper);
        assert_eq!(Reason::for_plan(Cause::Fault, p), Reason::CowBreakBeforeMake);
        assert_eq!(Reason::for_whole_asid(Cause::Zap), Reason::NestedZap);
        assert_eq!(Reason::for_whole_asid(Cause::Reaper), Reason::NestedZap, "the reaper is a zap too");
        assert_eq!(Reason::for_whole_asid(Cause::Locked), Reason::LockedRace);
        assert_eq!(Reason::for_whole_asid(Cause::Exit), Reason::ExitFlush);
        assert_eq!(Reason::for_whole_asid(Cause::Fault), Reason::FaultRace);
    }

    #[test]
    fn decisions_become_events_with_their_ops_counted() {
        let req = FlushRequest::leaf_pages(3, 0x10_0000, 0x10_4000);
        let mut plan = FlushPlan::new(Scope::Broadcast).with_reason(PlanReason::PerPage);
        for i in 0..4 {
            plan.try_push(TlbiOp::Va { asid: 3, va: 0x10_0000 + i * 0x1000, last_level: true, ttl: None }).unwrap();
        }
        let e = Decision::planned("range", &req, &plan, Reason::Policy(PlanReason::PerPage)).event(7, 1);
        assert_eq!((e.ticks, e.cpu, e.asid, e.pages()), (7, 1, Some(3), Some(4)));
        assert_eq!((e.strategy, e.policy), (Some("range"), Some(PlanReason::PerPage)));
        assert_eq!(e.ops.to_string(), "vale1is:4");
        let whole = FlushPlan::whole_asid(3, Scope::Broadcast);
        let e = Decision::whole_asid(3, &whole, Reason::NestedZap).event(0, 0);
        assert_eq!((e.span, e.strategy, e.policy), (Span::WholeAsid, None, None));
        assert_eq!(e.ops.to_string(), "aside1is:1");
        let local = TlbiOp::Va { asid: 3, va: 0x5000, last_level: true, ttl: None };
        let e = Decision::op(&local, Scope::Local, Reason::FaultLocal).event(0, 0);
        assert_eq!((e.asid, e.span), (Some(3), Span::Va { start: 0x5000, end: 0x6000 }));
        assert_eq!(e.ops.to_string(), "vale1:1");
        let e = Decision::op(&TlbiOp::All, Scope::Local, Reason::AsidRollover).event(0, 0);
        assert_eq!((e.asid, e.span, e.ops.to_string()), (None, Span::All, "vmalle1:1".into()));
        let e = Decision::no_tlbi(Some(3), Span::WholeAsid, Reason::ExitElided).event(0, 0);
        assert_eq!((e.ops, e.strategy), (OpCounts::NONE, None));
    }

    #[test]
    fn reason_names_are_distinct() {
        let mut names: Vec<&str> = Reason::KERNEL.iter().map(|r| r.name()).collect();
        names.extend(PlanReason::ALL.iter().map(|p| Reason::Policy(*p).name()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate reason name in {names:?}");
        assert!(names.iter().all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn ops_are_counted_per_kind() {
        let ops = [
            TlbiOp::Va { asid: 1, va: 0x1000, last_level: true, ttl: None },
            TlbiOp::Range { asid: 1, base: 0x2000, num: 0, scale: 0, last_level: true, ttl: None },
            TlbiOp::Va { asid: 1, va: 0x4000, last_level: true, ttl: None },
        ];
        let c = OpCounts::of(&ops, Scope::Broadcast);
        assert_eq!((c.get(OpKind::Vale1is), c.get(OpKind::Rvale1is), c.total()), (2, 1, 3));
        assert_eq!(c.to_string(), "vale1is:2,rvale1is:1");
        assert_eq!(OpCounts::of(&ops[..1], Scope::Local).to_string(), "vale1:1");
        assert_eq!(OpCounts::NONE.to_string(), "none");
        assert_eq!(OpCounts::one(OpKind::Vmalle1).to_string(), "vmalle1:1");
    }

    #[test]
    fn events_count_the_pages_of_their_range() {
        let e = TraceEvent::new(5, 1, Some(3), Span::Va { start: 0x10_0000, end: 0x30_0000 }, Reason::ExitElided);
        assert_eq!(e.pages(), Some(512));
        assert_eq!(TraceEvent::new(0, 0, None, Span::All, Reason::AsidRollover).pages(), None);
        assert_eq!(Span::Va { start: 0x1000, end: 0x3000 }.to_string(), "0x1000-0x3000");
    }
}
