//! The TLBI module: the only place the kernel issues TLB invalidations once
//! it runs. Executes [`TlbiOp`] values with the barriers each needs and counts
//! every one per kind and CPU in [`TLB_STATS`].
//!
//! Ordering: `DSB ISHST` before (so table walkers see the PTE writes), the
//! TLBIs, then `DSB ISH` (broadcast) or `DSB NSH` (local) so they complete,
//! and an `ISB` so this CPU's later instructions use the new translations.

use super::cpu::cpu_id;
use crate::mm::tlb::stats::TTL_STATS;
use crate::mm::tlb::{range, OpKind, Scope, TlbiOp, TLB_STATS};
use core::arch::asm;

macro_rules! tlbi {
    ($op:literal, $arg:expr) => {
        // SAFETY: TLB invalidation has no effect on memory safety: at worst
        // later accesses walk the tables again.
        unsafe { asm!(concat!("tlbi ", $op, ", {}"), in(reg) $arg, options(nostack)) }
    };
    ($op:literal) => {
        // SAFETY: as above.
        unsafe { asm!(concat!("tlbi ", $op), options(nostack)) }
    };
}

// Range TLBIs need FEAT_TLBIRANGE; the assembler must be told so.
macro_rules! tlbi_range {
    ($op:literal, $arg:expr) => {
        // SAFETY: as above; only called when the CPU reported FEAT_TLBIRANGE.
        unsafe {
            asm!(concat!(".arch_extension tlb-rmi\n", "tlbi ", $op, ", {}"), in(reg) $arg, options(nostack))
        }
    };
}

fn dsb_ishst() {
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ishst", options(nostack)) };
}

/// `DSB ISHST` alone: page-table writes so far are complete for every
/// table walker before any later instruction (the flush strategies publish
/// a flush generation after it; `mm::space::shootdown`).
pub fn publish_tables() {
    dsb_ishst();
}

/// Issues one op without waiting for completion and counts it. Callers
/// complete a batch with [`sync`] on the same CPU.
fn issue(op: &TlbiOp, scope: Scope) {
    let kind = exec(op, scope);
    TLB_STATS.record(cpu_id(), kind);
    if let TlbiOp::Va { ttl, .. } | TlbiOp::Range { ttl, .. } = *op {
        TTL_STATS.record(cpu_id(), kind, ttl);
    }
}

/// Executes one op, uncounted, and returns the kind it executed. An op
/// whose operand cannot be encoded (a bug in the caller) is widened to its
/// whole ASID, which is always correct, and logged.
fn exec(op: &TlbiOp, scope: Scope) -> OpKind {
    let arg = match range::encode(op) {
        Ok(a) => a,
        Err(_) if *op == TlbiOp::All => 0,
        Err(e) => {
            log::error!(target: "tlbi", "cannot encode {op:?} ({e:?}); flushing its whole ASID instead");
            let asid = match *op {
                TlbiOp::Va { asid, .. } | TlbiOp::Range { asid, .. } | TlbiOp::Asid { asid } => asid,
                TlbiOp::All => 0,
            };
            return exec(&TlbiOp::Asid { asid }, scope);
        }
    };
    match (*op, scope) {
        (TlbiOp::Va { last_level: false, .. }, Scope::Local) => tlbi!("vae1", arg),
        (TlbiOp::Va { last_level: true, .. }, Scope::Local) => tlbi!("vale1", arg),
        (TlbiOp::Va { last_level: false, .. }, Scope::Broadcast) => tlbi!("vae1is", arg),
        (TlbiOp::Va { last_level: true, .. }, Scope::Broadcast) => tlbi!("vale1is", arg),
        (TlbiOp::Range { last_level: false, .. }, Scope::Local) => tlbi_range!("rvae1", arg),
        (TlbiOp::Range { last_level: true, .. }, Scope::Local) => tlbi_range!("rvale1", arg),
        (TlbiOp::Range { last_level: false, .. }, Scope::Broadcast) => tlbi_range!("rvae1is", arg),
        (TlbiOp::Range { last_level: true, .. }, Scope::Broadcast) => tlbi_range!("rvale1is", arg),
        (TlbiOp::Asid { .. }, Scope::Local) => tlbi!("aside1", arg),
        (TlbiOp::Asid { .. }, Scope::Broadcast) => tlbi!("aside1is", arg),
        (TlbiOp::All, Scope::Local) => tlbi!("vmalle1"),
        (TlbiOp::All, Scope::Broadcast) => tlbi!("vmalle1is"),
    }
    op.kind(scope)
}

/// The repeat-TLBI workaround's TLBI (`mm::space::repeat`): `op` broadcast,
/// with no `DSB ISHST` before it, counted as the workaround's.
pub fn repeat_tlbi(op: &TlbiOp) {
    let kind = exec(op, Scope::Broadcast);
    TLB_STATS.record_repeat(cpu_id(), kind);
}

/// The repeat-TLBI workaround's `DSB ISH` (no `ISB`), counted as the
/// workaround's: it completes every TLBI this CPU issued, as [`sync`] does.
pub fn repeat_dsb() {
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack)) };
    TLB_STATS.record_repeat_dsb(cpu_id());
}

/// Waits until every TLBI this CPU issued has completed everywhere it was
/// sent: a DSB completes only the issuing CPU's own TLBIs.
pub fn sync(scope: Scope) {
    match scope {
        // SAFETY: barriers have no memory-safety effect.
        Scope::Local => unsafe { asm!("dsb nsh", "isb", options(nostack)) },
        // SAFETY: as above.
        Scope::Broadcast => unsafe { asm!("dsb ish", "isb", options(nostack)) },
    }
    TLB_STATS.record_dsb(cpu_id());
}

/// Issues a batch of ops without waiting: `DSB ISHST`, then the TLBIs.
/// Complete them with [`sync`] on this CPU.
pub fn issue_all(ops: &[TlbiOp], scope: Scope) {
    if ops.is_empty() {
        return;
    }
    dsb_ishst();
    for op in ops {
        issue(op, scope);
    }
}

/// Runs a batch of ops and waits for them: `DSB ISHST`, TLBIs, `DSB`, `ISB`.
pub fn run(ops: &[TlbiOp], scope: Scope) {
    if ops.is_empty() {
        return;
    }
    issue_all(ops, scope);
    sync(scope);
}

/// Invalidates this CPU's whole TLB (used after an ASID rollover).
pub fn local_flush_all() {
    run(&[TlbiOp::All], Scope::Local);
}
