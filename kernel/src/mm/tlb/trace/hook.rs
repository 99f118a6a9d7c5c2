//! The kernel's hooks into the TLB decision trace: each adds the calling
//! CPU and the time (CNTVCT) to what the caller knows and records it in
//! [`TLB_TRACE`]. With the trace off (no `trace=tlb`) every hook is one
//! relaxed load and a branch.
//!
//! The hooks sit beside each TLB flush decision in `task::process` (one
//! line each). [`cause`] marks a stretch of code whose flushes have a reason
//! of their own; the guard it returns must be kept alive (`let _t = ...`,
//! not `let _ = ...`). Causes are per CPU, which is right because kernel
//! code is not preempted and the marked stretches do not block.

use super::{Cause, OpCounts, Reason, Span, TlbTrace, TraceEvent, TraceInitError, TraceParams};
use crate::arch::aarch64::cpu::cpu_id;
use crate::mm::tlb::{range, FlushPlan, FlushRequest, FlushStrategy, OpKind, Scope, TlbiOp};

/// The kernel's trace (off unless `trace=tlb`).
pub static TLB_TRACE: TlbTrace = TlbTrace::new();

/// Turns the trace on with `p.size` events for each of `ncpus` CPUs if
/// `p.tlb` (at boot, before any user mm exists).
pub fn init(p: &TraceParams, ncpus: usize) -> Result<(), TraceInitError> {
    if p.tlb {
        TLB_TRACE.start(p.size as usize, ncpus)?;
    }
    Ok(())
}

/// Records what `make(ticks, cpu)` builds, if the trace is on.
#[inline(always)]
fn record(make: impl FnOnce(u64, u8) -> TraceEvent) {
    if TLB_TRACE.is_on() {
        record_now(make);
    }
}

#[inline(never)]
fn record_now(make: impl FnOnce(u64, u8) -> TraceEvent) {
    TLB_TRACE.record(make(platform::timer::now(), cpu_id() as u8));
}

fn causes() -> super::Causes {
    TLB_TRACE.causes(cpu_id())
}

/// Keeps a [`Cause`] in effect on this CPU until dropped.
#[must_use = "a cause is in effect only while its guard lives: `let _t = cause(...)`"]
pub struct CauseGuard(Option<(usize, super::Causes)>);

impl Drop for CauseGuard {
    fn drop(&mut self) {
        if let Some((cpu, previous)) = self.0 {
            TLB_TRACE.leave(cpu, previous);
        }
    }
}

/// Marks the code until the guard drops as `c` (see [`Reason::for_plan`],
/// [`Reason::for_whole_asid`]).
#[inline(always)]
pub fn cause(c: Cause) -> CauseGuard {
    if !TLB_TRACE.is_on() {
        return CauseGuard(None);
    }
    let cpu = cpu_id();
    CauseGuard(Some((cpu, TLB_TRACE.enter(cpu, c))))
}

/// `strategy` planned `plan` for `req`; the plan is about to be issued.
#[inline(always)]
pub fn plan(strategy: &impl FlushStrategy, req: &FlushRequest, plan: &FlushPlan) {
    record(|t, cpu| {
        let span = Span::Va { start: req.start, end: req.end };
        let reason = Reason::for_plan(causes(), plan.reason());
        let ops = OpCounts::of(plan.ops(), plan.scope());
        TraceEvent::new(t, cpu, Some(req.asid), span, reason).planned(strategy.name(), plan.reason(), ops)
    })
}

/// A broadcast whole-ASID flush of `asid` is about to be issued, not
/// planned by the strategy (a racing fallback or an exit flush).
#[inline(always)]
pub fn whole_asid(asid: u16) {
    record(|t, cpu| whole(t, cpu, asid, Reason::for_whole_asid(causes())))
}

/// The strategy rejected a request for `asid`; its whole ASID is flushed.
#[inline(always)]
pub fn bad_request(asid: u16) {
    record(|t, cpu| whole(t, cpu, asid, Reason::BadRequest))
}

fn whole(t: u64, cpu: u8, asid: u16, reason: Reason) -> TraceEvent {
    TraceEvent::new(t, cpu, Some(asid), Span::WholeAsid, reason).with_ops(OpCounts::one(OpKind::Aside1is))
}

/// A flush of `[start, end)` skipped: the mm never ran anywhere.
#[inline(always)]
pub fn never_active(start: u64, end: u64) {
    record(|t, cpu| TraceEvent::new(t, cpu, None, Span::Va { start, end }, Reason::NeverActive))
}

/// An exit-mode teardown of `asid`'s mm elided its flush.
#[inline(always)]
pub fn exit_elided(asid: Option<u16>) {
    record(|t, cpu| TraceEvent::new(t, cpu, asid, Span::WholeAsid, Reason::ExitElided))
}

/// A resolved fault is followed by `op` (one page) issued with `scope`.
#[inline(always)]
pub fn fault_local(op: &TlbiOp, scope: Scope) {
    record(|t, cpu| {
        let asid = match *op {
            TlbiOp::Va { asid, .. } | TlbiOp::Range { asid, .. } | TlbiOp::Asid { asid } => Some(asid),
            TlbiOp::All => None,
        };
        let span = match (range::op_span(op), asid) {
            (Some((start, end)), _) => Span::Va { start, end },
            (None, Some(_)) => Span::WholeAsid,
            (None, None) => Span::All,
        };
        TraceEvent::new(t, cpu, asid, span, Reason::FaultLocal).with_ops(OpCounts::of(&[*op], scope))
    })
}

/// The ASID allocator is about to flush this CPU's whole TLB (a rollover).
#[inline(always)]
pub fn rollover() {
    record(|t, cpu| TraceEvent::new(t, cpu, None, Span::All, Reason::AsidRollover).with_ops(OpCounts::one(OpKind::Vmalle1)))
}

/// Stops the trace and prints it (see [`super::line`]); nothing if the
/// trace was never on.
pub fn dump() {
    if !TLB_TRACE.started() {
        return;
    }
    TLB_TRACE.stop();
    let dropped: alloc::vec::Vec<u64> = (0..TLB_TRACE.cpus()).map(|c| TLB_TRACE.dropped(c)).collect();
    let freq = platform::timer::frequency();
    TLB_TRACE.with_rings(|rings| super::line::write_block(rings, &dropped, freq, |l| crate::kprintln!("{l}")));
}
