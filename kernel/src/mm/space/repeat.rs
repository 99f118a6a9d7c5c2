//! The repeat-TLBI errata workaround (CVE-2025-10263; `tlb.repeat_tlbi`,
//! `mm::tlb::errata`): where its extra instructions go in a flush.
//!
//! Every flush of the protocol issues its ops with [`issue`] and completes
//! them with [`complete`], which add, by mode:
//!
//! * `each` (Linux's original ARM64_WORKAROUND_REPEAT_TLBI): every
//!   broadcast TLBI is repeated after a `DSB ISH`. The ops are issued first
//!   (one `DSB ISHST`, then the TLBIs), then for each op `DSB ISH; TLBI op`.
//!   Linux's `__TLBI_0/1` interleaved the same instructions (`TLBI a; DSB;
//!   TLBI a; TLBI b; DSB; TLBI b`): the number of extra TLBIs and DSBs is
//!   the same, one each per broadcast TLBI, and so is the guarantee (every
//!   TLBI is followed by a DSB and then by its repeat, which the flush's own
//!   final DSB completes). A batch issued without waiting (reclaim) pays
//!   them at each issue.
//! * `once` (Linux commit a8f78680ee6b, `__tlbi_sync_s1ish()` in
//!   `arch/arm64/include/asm/tlbflush.h`): after the DSB that completes
//!   broadcast TLBIs, one more broadcast `TLBI VALE1IS` with operand 0 (ASID
//!   0, VA 0: an entry of the reserved ASID that nothing maps, so it
//!   invalidates nothing in use) and a `DSB ISH`. Only completion is
//!   affected by the errata, and a DSB completes everything its CPU issued,
//!   so one extra sequence after the last DSB of a batch covers the whole
//!   batch, however many TLBIs it held; it runs before [`complete`] returns,
//!   so before anything the flush covered is freed. (Linux runs it between
//!   the DSB and the `ISB`; here the `ISB` comes with the first DSB, and
//!   the extra TLBI changes nothing this CPU translates with.)
//!
//! Local (non-shareable) TLBIs are not affected by these errata: both modes
//! leave them alone, and each local completion while a mode is on is counted
//! as `Event::RepeatLocalExempt` so benchmarks show what was not repeated.
//! A flush that issues nothing (an elided exit, a CPU already current)
//! completes nothing here, so nothing is repeated either.

use super::MmHw;
use crate::mm::tlb::{Event, RepeatTlbi, Scope, TlbiOp};

/// The extra TLBI of `once`: `TLBI VALE1IS, XZR`.
pub const ONCE_OP: TlbiOp = TlbiOp::Va { asid: 0, va: 0, last_level: true, ttl: None };

/// Issues `ops` in `scope` ([`MmHw::issue`]); under `each`, repeats each
/// broadcast one after a `DSB ISH`.
pub fn issue<H: MmHw>(hw: &H, mode: RepeatTlbi, ops: &[TlbiOp], scope: Scope) {
    hw.issue(ops, scope);
    if mode == RepeatTlbi::Each && scope == Scope::Broadcast {
        for op in ops {
            hw.repeat_dsb();
            hw.repeat_tlbi(op);
        }
    }
}

/// Completes what this CPU issued in `scope` ([`MmHw::complete`]); under
/// `once`, a broadcast completion is followed by [`ONCE_OP`] and a
/// `DSB ISH`. Called only after TLBIs were issued in `scope`.
pub fn complete<H: MmHw>(hw: &H, mode: RepeatTlbi, scope: Scope) {
    hw.complete(scope);
    match (mode, scope) {
        (RepeatTlbi::Once, Scope::Broadcast) => {
            hw.repeat_tlbi(&ONCE_OP);
            hw.repeat_dsb();
        }
        (RepeatTlbi::Off, _) | (RepeatTlbi::Each, Scope::Broadcast) => {}
        // The errata concern broadcast invalidation only.
        (RepeatTlbi::Once | RepeatTlbi::Each, Scope::Local) => hw.event(Event::RepeatLocalExempt),
    }
}

/// [`issue`] then [`complete`].
pub fn run<H: MmHw>(hw: &H, mode: RepeatTlbi, ops: &[TlbiOp], scope: Scope) {
    issue(hw, mode, ops, scope);
    complete(hw, mode, scope);
}
