//! The TLB decision trace (`trace=tlb`, issue 14): every TLB flush decision
//! the kernel makes, with what it chose and why, in a bounded ring per CPU,
//! printed on the console at the end of the run.
//!
//! A decision is one [`TraceEvent`]: when (CNTVCT ticks), which CPU, which
//! ASID, which range (`start..end`, the whole ASID, or every ASID), how many
//! pages, the strategy that planned the ops (if one did), the ops issued (per
//! kind, [`OpCounts`]), the [`Reason`], the flush policy's own reason when it
//! planned them ([`PlanReason`]), and the CPUs sent an IPI for it (none
//! today: the field is there for the IPI strategy of mechanisms.md §7).
//! Decisions that issue no TLBI (an elided exit flush, a flush skipped for
//! an mm that never ran) are events too, with no ops.
//!
//! The reason comes from two places. The strategy says why it chose its ops
//! (per page, range, whole ASID beyond a threshold: [`PlanReason`]). The
//! kernel says why it flushed at all, when that is not an ordinary gather:
//! the callers that matter mark their stretch of code with a [`Cause`] (a
//! reaper's teardown, a fault, a zap or locked call that may fall back to a
//! whole-ASID flush, an exit); [`Reason::for_plan`] and
//! [`Reason::for_whole_asid`] combine the two.
//!
//! This module is plain Rust: [`ring`] keeps the per-CPU rings (allocated
//! once, when the trace is turned on; recording never allocates), [`line`]
//! is the console format, [`params`] the command-line options. The kernel's
//! hooks, which add the CPU and the time, are in `hook` (target only).
#![forbid(unsafe_code)]

use core::fmt;

use super::op::{OpKind, Scope, TlbiOp};
use super::policy::PlanReason;

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
    /// An ordinary gather (munmap, madvise, mprotect, fork, a partial flush
    /// of a long zap): the strategy chose the ops, for this reason.
    Policy(PlanReason),
    /// A zap finished while another zap of the mm was in flight: the whole
    /// ASID instead of its range (`finish_zap`, mechanisms.md §5).
    NestedZap,
    /// A call holding the mm lock (mprotect, fork) finished while a zap was
    /// in flight: the whole ASID (`finish_locked`).
    LockedRace,
    /// The last thread exited: the exit-mode teardown issued no TLBI
    /// (mechanisms.md §4).
    ExitElided,
    /// The last thread exited with `tlb.exit_elide=off`: one whole-ASID flush.
    ExitFlush,
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
    /// The mm was never loaded on any CPU: no TLB can hold its entries, no
    /// TLBI.
    NeverActive,
    /// The strategy rejected the request (a kernel bug): the whole ASID.
    BadRequest,
    /// A whole-ASID flush with none of the causes above.
    WholeAsid,
}

impl Reason {
    /// Every reason that is not a [`Reason::Policy`].
    pub const KERNEL: [Reason; 11] = [
        Reason::NestedZap,
        Reason::LockedRace,
        Reason::ExitElided,
        Reason::ExitFlush,
        Reason::Reaper,
        Reason::CowBreakBeforeMake,
        Reason::FaultLocal,
        Reason::AsidRollover,
        Reason::NeverActive,
        Reason::BadRequest,
        Reason::WholeAsid,
    ];

    /// Stable name, used on the console and by the host tools.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Policy(p) => p.name(),
            Reason::NestedZap => "nested_zap",
            Reason::LockedRace => "locked_race",
            Reason::ExitElided => "exit_elided",
            Reason::ExitFlush => "exit_flush",
            Reason::Reaper => "reaper",
            Reason::CowBreakBeforeMake => "cow_bbm",
            Reason::FaultLocal => "fault_local",
            Reason::AsidRollover => "asid_rollover",
            Reason::NeverActive => "never_active",
            Reason::BadRequest => "bad_request",
            Reason::WholeAsid => "whole_asid",
        }
    }

    /// The reason for ops a strategy planned (`why`) while `causes` were in
    /// effect on this CPU.
    pub const fn for_plan(causes: Causes, why: PlanReason) -> Reason {
        if causes.has(Cause::Fault) {
            Reason::CowBreakBeforeMake
        } else if causes.has(Cause::Reaper) {
            Reason::Reaper
        } else {
            Reason::Policy(why)
        }
    }

    /// The reason for a whole-ASID flush issued while `causes` were in
    /// effect: only the racing fallbacks and a non-elided exit flush a whole
    /// ASID without asking the strategy.
    pub const fn for_whole_asid(causes: Causes) -> Reason {
        if causes.has(Cause::Zap) {
            Reason::NestedZap
        } else if causes.has(Cause::Locked) {
            Reason::LockedRace
        } else if causes.has(Cause::Exit) {
            Reason::ExitFlush
        } else {
            Reason::WholeAsid
        }
    }
}

/// A stretch of kernel code whose flushes have a reason of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cause {
    /// `finish_locked`: a whole-ASID flush here is the locked-call fallback.
    Locked = 1 << 0,
    /// `finish_zap`: a whole-ASID flush here is the nested-zap fallback.
    Zap = 1 << 1,
    /// The exit-mode teardown: a whole-ASID flush here is the exit flush.
    Exit = 1 << 2,
    /// The reaper's teardown.
    Reaper = 1 << 3,
    /// The page-fault handler: a planned flush here is a copy-on-write
    /// break-before-make.
    Fault = 1 << 4,
}

/// The causes in effect on one CPU (they nest: the reaper's teardown ends
/// with a `finish_zap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Causes(pub u8);

impl Causes {
    pub const NONE: Causes = Causes(0);

    pub const fn has(self, c: Cause) -> bool {
        self.0 & c as u8 != 0
    }

    pub const fn with(self, c: Cause) -> Causes {
        Causes(self.0 | c as u8)
    }
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
    /// CPUs sent an IPI for this decision (bit per CPU). Always empty: no
    /// strategy sends IPIs yet.
    pub ipi_targets: u16,
}

impl TraceEvent {
    /// A decision about `span` of `asid` for `reason` with no ops yet.
    pub const fn new(ticks: u64, cpu: u8, asid: Option<u16>, span: Span, reason: Reason) -> Self {
        TraceEvent {
            ticks,
            cpu,
            asid,
            span,
            strategy: None,
            ops: OpCounts::NONE,
            reason,
            policy: None,
            ipi_targets: 0,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_combine_causes_with_the_plan() {
        let none = Causes::NONE;
        let p = PlanReason::Range;
        assert_eq!(Reason::for_plan(none, p), Reason::Policy(p));
        assert_eq!(Reason::for_plan(none.with(Cause::Zap), p), Reason::Policy(p), "a zap's own flush is the policy's");
        assert_eq!(Reason::for_plan(none.with(Cause::Locked), p), Reason::Policy(p));
        assert_eq!(Reason::for_plan(none.with(Cause::Reaper), p), Reason::Reaper);
        assert_eq!(Reason::for_plan(none.with(Cause::Reaper).with(Cause::Zap), p), Reason::Reaper, "the reaper's last batch");
        assert_eq!(Reason::for_plan(none.with(Cause::Fault), p), Reason::CowBreakBeforeMake);
        assert_eq!(Reason::for_whole_asid(none), Reason::WholeAsid);
        assert_eq!(Reason::for_whole_asid(none.with(Cause::Zap)), Reason::NestedZap);
        assert_eq!(Reason::for_whole_asid(none.with(Cause::Reaper).with(Cause::Zap)), Reason::NestedZap);
        assert_eq!(Reason::for_whole_asid(none.with(Cause::Locked)), Reason::LockedRace);
        assert_eq!(Reason::for_whole_asid(none.with(Cause::Exit)), Reason::ExitFlush);
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
