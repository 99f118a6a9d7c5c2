//! Loading an address space into TTBR0 and leaving it: the context-switch
//! half of the protocol.

use core::sync::atomic::Ordering;

use super::shootdown::{self, CatchUp};
use super::{Mm, MmHw, TlbConfig};
use crate::mm::asid::AsidAllocator;
use crate::mm::pagetable::Format;
use crate::mm::tlb::trace::Reason;

/// Loads `mm` into this CPU's TTBR0 with its ASID; returns the ASID.
///
/// TTBR0 is parked on the reserved table first: during the allocator's
/// `switch_in` this CPU's active ASID already names the next mm, and if a
/// rollover on another CPU happened while TTBR0 still held the previous mm
/// (tables and ASID), the previous mm could get a new ASID elsewhere whose
/// TLBIs miss this CPU, which would keep walking its tables under the old
/// one. (Found by the host model; 32-bit Linux does the same "to avoid
/// speculative page table walking with the wrong TTBR".) The `cpus` bit is
/// set before the tables are loaded, so it never says "not here" while they
/// are.
///
/// Then, with TTBR0 still on the reserved table, this CPU catches up with
/// the mm's flush generation: a local or IPI flush that did not reach it
/// while it did not hold the mm leaves it behind, and it flushes the ASID
/// locally before a walk can use what it cached (`shootdown`). The bit is
/// published before the generation is read (both sequentially consistent):
/// a flusher that bumped the generation after our read sees our bit.
pub fn activate<F: Format, H: MmHw>(mm: &Mm<F>, alloc: &AsidAllocator, cfg: &TlbConfig, hw: &H) -> u16 {
    hw.load_reserved();
    let asid = alloc.switch_in(hw, &mm.ctx);
    mm.cpus.fetch_or(1 << hw.cpu_id(), Ordering::SeqCst);
    let late = cfg.bugs.catch_up_after_load;
    if !late {
        catch_up(mm, cfg, hw);
    }
    // Read after our bit is published (both sides sequentially consistent
    // with the teardown's `Take`, which reads `cpus` and then clears the
    // root): we see the root cleared, or the teardown sees our bit.
    let root = mm.root.load(Ordering::SeqCst);
    if root == 0 {
        // Torn down (an mm nothing may load any more: a kernel bug if it
        // happens); the reserved table stays.
        log::error!(target: "tlb", "activation of torn-down mm {}", mm.id);
        drop_bits(mm, hw);
        return asid;
    }
    // SAFETY: the root stays allocated while this CPU's `cpus` bit is set:
    // the exit teardown frees nothing while any bit is (it leaks instead),
    // and every other path keeps the root.
    unsafe { hw.load_ttbr0(root, asid) };
    if late {
        catch_up(mm, cfg, hw);
    }
    asid
}

/// A CPU about to run `mm` again flushes its ASID if it is behind the mm's
/// generation (counted as `Event::StaleFlush`).
fn catch_up<F: Format, H: MmHw>(mm: &Mm<F>, cfg: &TlbConfig, hw: &H) -> CatchUp {
    if cfg.strategy == shootdown::Strategy::Broadcast || cfg.bugs.partial_any_gen {
        // Broadcast never leaves a CPU behind; the bug skips the check.
        return CatchUp::None;
    }
    shootdown::flush_behind(mm, cfg, hw, None, Reason::CatchUp)
}

/// This CPU switches from a thread of `mm` to a kernel thread and keeps the
/// tables loaded (lazy TLB): flushes that free no table skip it from now on.
pub fn enter_lazy<F: Format, H: MmHw>(mm: &Mm<F>, hw: &H) {
    mm.lazy.fetch_or(1 << hw.cpu_id(), Ordering::SeqCst);
}

/// This CPU, lazy on `mm`, runs a thread of `mm` (or a kernel thread that
/// adopted it) again: it is no longer lazy, then catches up with the
/// generation (the same pair as in [`activate`]: a flusher that skipped us
/// as lazy bumped the generation before it read the lazy bit).
pub fn leave_lazy<F: Format, H: MmHw>(mm: &Mm<F>, cfg: &TlbConfig, hw: &H) {
    mm.lazy.fetch_and(!(1 << hw.cpu_id()), Ordering::SeqCst);
    catch_up(mm, cfg, hw);
}

/// Leaves `mm` (if any) for the reserved table: after a context switch to a
/// kernel thread or to a task whose mm is loaded right after. The `cpus`
/// bit is cleared only once TTBR0 no longer holds the tables and no walk of
/// them is in flight ([`MmHw::load_reserved`] ends with `DSB ISH`).
pub fn deactivate<F: Format, H: MmHw>(mm: Option<&Mm<F>>, hw: &H) {
    hw.load_reserved();
    if let Some(mm) = mm {
        drop_bits(mm, hw);
    }
}

/// This CPU no longer holds `mm` (TTBR0 holds other tables, and no walk of
/// these is in flight): its lazy and `cpus` bits go.
pub fn drop_bits<F: Format, H: MmHw>(mm: &Mm<F>, hw: &H) {
    let bit = 1 << hw.cpu_id();
    mm.lazy.fetch_and(!bit, Ordering::SeqCst);
    mm.cpus.fetch_and(!bit, Ordering::SeqCst);
}

/// A thread of `mm` leaves it for good (it is exiting; when it is the last
/// one, the teardown follows and frees every table with its flush elided).
///
/// # Why the teardown needs no TLBI (docs/mechanisms.md §4)
///
/// Every CPU that loaded `mm` leaves it through [`deactivate`] or here, or,
/// lazy on it, when the teardown sends it a `dying` shootdown (which does
/// steps 1–3 below on that CPU: `shootdown::serve`); the teardown frees
/// nothing while any `cpus` bit is set. Leaving is:
///
/// 1. `MSR TTBR0_EL1` (reserved table, ASID 0) and `ISB`. A direct write to
///    TTBR0 is seen by later translations only after a context
///    synchronization event (Arm ARM DDI 0487, D8.2.3 "Translation table
///    base address register", and D24.1.2.2 "Synchronization requirements
///    for AArch64 System registers"). But an ISB does not complete
///    translation table walks already in flight (B2.6.1): those may go on
///    reading the old tables, and the old tables are exactly what the
///    teardown frees.
/// 2. `DSB`, which completes "all Implicit TTD Memory Effects" of earlier
///    instructions, the walks' descriptor reads (B2.6.9; D8.1.5 I_QVPYJ says
///    the same of walks that outlive an exception level change, and Arm
///    confirmed on LKML in March 2020 that a DSB after the MSR and ISB is
///    what completes walks of a stale context). [`MmHw::load_reserved`] does
///    1 and 2 on every switch.
/// 3. Here, for a dying mm only: a local `TLBI ASIDE1` of its ASID, then
///    `DSB NSH` (R_PSMWS: enough to complete maintenance that applies to
///    this PE alone). Entries tagged with an ASID, walk-cache entries
///    included (R_CHVGJ: entries above the final level are non-global), can
///    only be used in a context with that ASID (D8.16.3.1 R_XXNPZ), and no
///    rule found says so for walks *started* from an inactive ASID's cached
///    intermediate entries; Arm left that question open in the same thread.
///    No rule makes step 1 alone sufficient either, so each leaving CPU
///    drops its own entries of the dying ASID: one local operation per
///    exiting thread, still no broadcast.
///
/// After that no CPU can walk the dying tables, and the ASID's entries left
/// in other TLBs (from CPUs the mm ran on earlier) match no context until a
/// rollover, which flushes every TLB before any new-generation ASID runs;
/// the allocator keeps a released ASID taken until then. So the teardown
/// frees every table and page with no TLBI at all. The host model checks
/// this, and catches a leave without the DSB (a walk in flight reads a
/// freed table) and a leave that keeps TTBR0.
pub fn leave_dying<F: Format, H: MmHw>(mm: &Mm<F>, cfg: &TlbConfig, hw: &H) {
    let bit = 1 << hw.cpu_id();
    if cfg.bugs.exit_keeps_ttbr0 {
        mm.cpus.fetch_and(!bit, Ordering::AcqRel);
        return;
    }
    hw.load_reserved();
    shootdown::drop_dying_asid(mm, cfg, hw);
    mm.lazy.fetch_and(!bit, Ordering::SeqCst);
    mm.cpus.fetch_and(!bit, Ordering::AcqRel);
}
