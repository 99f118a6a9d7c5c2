//! The reclaimer of [`World`]: a kernel thread that runs one batch of the
//! kernel's reclaim (`space::reclaim::Batch`) over pages `[lo, hi)` of `A`
//! (`Script::Reclaim`), as the kernel's `mm::reclaim` does, one step at a
//! time:
//!
//! * for each page, the frame `A` maps there is what the reverse map would
//!   name; it is taken only if `A`'s mapping is its one reference (a page
//!   shared with the fork child, whose operations the model does not step,
//!   is skipped, as the kernel skips a frame with references the reverse
//!   map does not explain): a swap slot, `Batch::add`, then the steps of a
//!   `Call::Reclaim` operation on `A` (the leaf becomes a swap entry, the
//!   page's TLBI is issued without a DSB, the devices are told), and
//!   `Batch::unmapped` if it took the page;
//! * then the batch's own steps: the DSB on this CPU (on the next CPU with
//!   `reclaim.dsb=remote`, `TlbConfig::reclaim_dsb_remote`, to show that it
//!   completes nothing), the devices' acknowledgements, and each page
//!   written to its slot and its frame put.
//!
//! The batch holds a reference to `A` from its first page until it ran;
//! whoever drops the last one tears `A` down.

use kernel::mm::pagetable::PhysMem;
use kernel::mm::space::reclaim::{Batch, BatchPc};

use super::*;

/// A reclaim in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reclaiming {
    batch: Batch,
    /// The next page to take, and the end of the range.
    next: u64,
    hi: u64,
    /// The page being unmapped: its index in the batch and its operation.
    op: Option<(usize, Op<Reduced>)>,
}

impl Reclaiming {
    pub(super) fn new(lo: u64, hi: u64) -> Self {
        Reclaiming { batch: Batch::new(), next: lo, hi, op: None }
    }

    /// The batch has taken a page of `A` (and so holds `A`).
    pub(super) fn holds_a(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Where it stands, for an action's label.
    pub(super) fn pc(&self) -> Pc {
        self.op.as_ref().map_or(Pc::Done, |(_, op)| op.pc())
    }
}

impl core::fmt::Display for Reclaiming {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "reclaim: batch {:?} of {} pages", self.batch.pc(), self.batch.len())?;
        if self.batch.pc() == BatchPc::Collect {
            write!(f, ", next v{}", self.next)?;
        }
        if let Some((_, op)) = &self.op {
            write!(f, ", {:?} at {:?}", op.call(), op.pc())?;
        }
        Ok(())
    }
}

impl World {
    /// One step of the reclaimer on `cpu`; true when its batch has run.
    pub(super) fn reclaim_step(&self, cpu: usize, r: &mut Reclaiming) -> bool {
        let hw = Bridge { m: &self.machine, cpu, mm: A, bugs: self.cfg.hw };
        let tlb = &self.cfg.tlb;
        if let Some((i, op)) = &mut r.op {
            if op.step(&self.mms[SLOT_A], tlb, &hw, &hw) == Step::Done {
                if op.outcome().is_ok() {
                    r.batch.unmapped(*i, tlb, &hw);
                    inc(&self.coverage.reclaim_unmaps);
                }
                r.op = None;
            }
            return false;
        }
        if r.batch.pc() == BatchPc::Collect {
            if r.next == r.hi {
                r.batch.finish();
                return false;
            }
            let vpn = r.next;
            r.next += 1;
            let Some((pfn, _)) = self.a_leaf(vpn) else { return false };
            if self.machine.borrow().mem().refs(pfn) != 1 {
                return false;
            }
            let Some(slot) = hw.swap_alloc() else {
                r.next = r.hi; // the swap area is full
                return false;
            };
            let pa = pa_of(pfn);
            let i = r.batch.add(pa, slot).expect("a model batch is never full");
            r.op = Some((i, Op::new(Call::Reclaim { va: va(vpn), pa, slot }, tlb)));
            return false;
        }
        // `reclaim.dsb=remote`: the DSB step runs on the next CPU.
        let remote = r.batch.pc() == BatchPc::Dsb && tlb.reclaim_dsb_remote;
        let on = if remote { (cpu + 1) % self.cfg.ncpus } else { cpu };
        let hw = Bridge { cpu: on, ..hw };
        if r.batch.step(tlb, &hw, &hw) == Step::Done {
            inc(&self.coverage.reclaim_batches);
            return true;
        }
        false
    }

    /// A step of the reclaimer that would only wait: for `A`'s lock, or
    /// for the devices' acknowledgements.
    pub(super) fn reclaim_blocked(&self, cpu: usize, r: &Reclaiming) -> bool {
        match &r.op {
            Some((_, op)) => self.blocked(cpu, op),
            None => {
                let acks = !self.cfg.tlb.notifier_late && !self.machine.borrow().secondary_acked(cpu);
                r.batch.pc() == BatchPc::SecWait && acks
            }
        }
    }
}
