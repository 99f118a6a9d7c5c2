//! The boundary between the TLB protocol and the CPU it runs on.

use super::{Invalidation, Mm, Shootdown};
use crate::mm::asid::AsidHw;
use crate::mm::pagetable::Format;
use crate::mm::tlb::trace::Decision;
use crate::mm::tlb::{Event, Scope, TlbiOp};

/// What the TLB protocol ([`super`]) needs from the hardware. The kernel's
/// implementation is `mm::hw::Hw`; the host model's runs the same
/// protocol over its software TLBs, and the host unit tests' records what
/// it is asked. (The ASID allocator's two needs come from [`AsidHw`].)
pub trait MmHw: AsidHw {
    /// `DSB ISHST` (page-table writes so far are visible to table walkers),
    /// then `ops` issued in `scope`, each counted by kind on this CPU. They
    /// take effect only at this CPU's next [`Self::complete`]: a DSB
    /// completes the TLBIs of the CPU that executes it, and no other.
    fn issue(&self, ops: &[TlbiOp], scope: Scope);

    /// `DSB ISH` (or `NSH` for `Scope::Local`) and `ISB` on this CPU,
    /// counted: every TLBI this CPU issued is complete, on every CPU its
    /// scope reaches, when this returns.
    fn complete(&self, scope: Scope);

    /// One TLBI of the repeat-TLBI errata workaround ([`super::repeat`]):
    /// `op` as a broadcast TLBI, without the `DSB ISHST` of
    /// [`Self::issue`], counted as the workaround's (by its kind), not as
    /// a flush's. It completes at this CPU's next DSB, as any TLBI.
    fn repeat_tlbi(&self, op: &TlbiOp);

    /// The workaround's `DSB ISH` on this CPU (no `ISB`), counted as the
    /// workaround's, not as a completion of a flush: it completes every
    /// TLBI this CPU issued, as [`Self::complete`] does.
    fn repeat_dsb(&self);

    /// Loads TTBR0 with the tables at `root` and `asid`, then `ISB` and
    /// `DSB ISH`, so no walk of the previous tables is still in flight on
    /// this CPU once it returns, for any CPU that may reuse them (the DSB
    /// completes this PE's outstanding translation table walks; an ISB
    /// alone does not).
    ///
    /// # Safety
    ///
    /// `root` is the root table of an address space that stays allocated,
    /// with every table reachable from it, for as long as this CPU keeps it
    /// loaded (the protocol's `Mm::cpus` bit says it does).
    unsafe fn load_ttbr0(&self, root: u64, asid: u16);

    /// Points TTBR0 at the empty reserved table (ASID 0), then `ISB` and
    /// `DSB ISH` as [`Self::load_ttbr0`]: no walk of the user tables this
    /// CPU had loaded is in flight once it returns.
    fn load_reserved(&self);

    /// Counts a decision that issues no instruction (or that the op
    /// counters cannot tell apart).
    fn event(&self, e: Event);

    /// A flush decision, for the TLB decision trace (`trace=tlb`): told
    /// just before its ops, if any, are issued (see [`Decision`]). Nothing
    /// by default; the kernel's implementation records it.
    fn decision(&self, _d: Decision<'_>) {}

    /// `DSB ISHST`: this CPU's page-table writes so far are complete for
    /// every table walker before anything after it (a flush generation
    /// another CPU may read before it walks: `shootdown::route`). Not a
    /// completion of TLB maintenance: not counted as one.
    fn publish_tables(&self);

    /// Sends `req` for `mm` to every CPU in `targets` (an IPI each, counted
    /// as `Event::IpiSent`): each runs `shootdown::serve` and acknowledges.
    /// `mm` stays borrowed until [`Self::acked`] says every target answered.
    /// At most one send per CPU is outstanding.
    fn send<F: Format>(&self, mm: &Mm<F>, targets: u64, req: &Shootdown);

    /// Whether every target of this CPU's last [`Self::send`] acknowledged.
    /// (The kernel's gives up after a time limit: it then flushes the
    /// request's ASID by broadcast and counts `Event::IpiTimeout`.)
    fn acked(&self) -> bool;

    /// Sends `inv` for `mm` to every secondary MMU in `devices` (a bit per
    /// device, `Mm::subscribers`), counted as `Event::SecondaryInval` per
    /// device, and returns without waiting. Each device drops the entries
    /// `inv` names and acknowledges between two of its own accesses.
    fn notify_secondary<F: Format>(&self, mm: &Mm<F>, devices: u64, inv: &Invalidation);

    /// Whether every device this CPU sent invalidations to acknowledged all
    /// of them.
    fn secondary_acked(&self) -> bool;

    /// Serves the requests sent to this CPU: called while it spins (for the
    /// mm lock, for acknowledgements) with interrupts masked, so two CPUs
    /// waiting for each other both make progress. Nothing by default.
    fn poll(&self) {}
}
