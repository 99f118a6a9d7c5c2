//! A reclaim batch (docs/mechanisms.md §8): pages taken from every address
//! space that maps them, their contents moved to swap, their frames freed,
//! with one DSB for the whole batch.
//!
//! The caller picks the pages and, through the reverse map, every
//! (mm, VA) that maps each, and runs an [`Op`](super::Op) of
//! [`Call::Reclaim`](super::Call::Reclaim) for each pair: the leaf becomes
//! a swap entry and the page's `TLBI ...IS` is issued without a DSB, the
//! mm marked `batched`. Then the batch's own steps ([`Batch::step`]):
//!
//! 1. **Dsb**: one `DSB ISH` *on the CPU that issued the TLBIs*. A DSB
//!    completes only the maintenance of the CPU that executes it: one run
//!    elsewhere completes nothing (`reclaim.dsb=remote` does that, to show
//!    it; Linux's 2025 arm64 fix of `flush_tlb_batched_pending` is the
//!    same lesson).
//! 2. **SecWait**: every secondary MMU told of the pages acknowledged.
//! 3. **Write**, a page a step: its contents go to its swap slot (no CPU
//!    or device can write the frame any more, so nothing written is lost),
//!    then the references the cleared leaves held are put and the frame is
//!    freed if they were the last.
//!
//! Until step 1, a CPU may still write a page through a stale entry; the
//! entry's own `TLBI` is in flight. Anyone else who changes the entries of
//! a `batched` mm flushes its ASID first (`Op`'s `BatchedFlush`), and a
//! fault that would install a new entry does too, so no call returns, and
//! no new entry is made, while a stale one may still be used.

use super::{MmHw, Step, TlbConfig};
use crate::mm::pagetable::PhysMem;
use crate::mm::tlb::{Event, Scope};

/// Pages one batch holds (Linux flushes its batch every 32 pages too:
/// `SWAP_CLUSTER_MAX`).
pub const BATCH: usize = 32;

/// A page of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Victim {
    pub pa: u64,
    /// Its swap slot; the batch holds one reference to it.
    pub slot: u64,
    /// Leaves cleared (each held a reference to the frame).
    pub unmapped: u32,
}

/// Where a batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchPc {
    /// Pages being added and unmapped.
    Collect,
    Dsb,
    SecWait,
    /// Writing page `i` to swap and freeing it.
    Write(usize),
    Done,
}

/// One batch (a plain value, so a model state can hold it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    victims: [Option<Victim>; BATCH],
    n: usize,
    /// The CPU whose TLBIs the DSB must complete, once any were issued.
    issuer: Option<usize>,
    pc: BatchPc,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub const fn new() -> Self {
        Batch { victims: [None; BATCH], n: 0, issuer: None, pc: BatchPc::Collect }
    }

    pub fn pc(&self) -> BatchPc {
        self.pc
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn is_full(&self) -> bool {
        self.n == BATCH
    }

    pub fn victims(&self) -> impl Iterator<Item = &Victim> {
        self.victims[..self.n].iter().flatten()
    }

    /// The CPU that issued the batch's TLBIs, if any did.
    pub fn issuer(&self) -> Option<usize> {
        self.issuer
    }

    /// Adds frame `pa`, to go to `slot` (a fresh slot whose one reference
    /// passes to the batch); returns its index for [`Self::unmapped`].
    /// `None` when full.
    pub fn add(&mut self, pa: u64, slot: u64) -> Option<usize> {
        assert_eq!(self.pc, BatchPc::Collect, "a batch takes pages only before it finishes");
        if self.is_full() {
            return None;
        }
        self.victims[self.n] = Some(Victim { pa, slot, unmapped: 0 });
        self.n += 1;
        Some(self.n - 1)
    }

    /// Page `i` was unmapped from one more mm (its reclaim `Op` succeeded on
    /// this CPU): the batch owns the leaf's reference to the frame, and,
    /// when batching, the TLBI the op issued here.
    pub fn unmapped<H: MmHw>(&mut self, i: usize, cfg: &TlbConfig, hw: &H) {
        let v = self.victims[i].as_mut().expect("a victim of this batch");
        v.unmapped += 1;
        if cfg.reclaim_batch && !cfg.bugs.skip_flush {
            let cpu = hw.cpu_id();
            assert!(self.issuer.is_none_or(|c| c == cpu), "a batch's TLBIs come from one CPU");
            self.issuer = Some(cpu);
        }
    }

    /// Starts finishing: no page is added after this.
    pub fn finish(&mut self) {
        if self.pc == BatchPc::Collect {
            self.pc = BatchPc::Dsb;
        }
    }

    /// The next step of finishing on the CPU `hw` is (the issuer's for
    /// `Dsb`, unless demonstrating `reclaim.dsb=remote`).
    pub fn step<H: MmHw, M: PhysMem>(&mut self, cfg: &TlbConfig, hw: &H, mem: &M) -> Step {
        match self.pc {
            BatchPc::Collect => panic!("a reclaim batch stepped before finish"),
            BatchPc::Dsb => {
                if let Some(cpu) = self.issuer {
                    assert!(
                        cfg.reclaim_dsb_remote || hw.cpu_id() == cpu,
                        "a reclaim batch completes on CPU {cpu}, the one that issued its TLBIs"
                    );
                    super::repeat::complete(hw, cfg.repeat_tlbi, Scope::Broadcast);
                    hw.event(Event::ReclaimBatch);
                }
                self.pc = BatchPc::SecWait;
            }
            BatchPc::SecWait => {
                // `mmu.notifier=late`: nobody waits for the devices.
                if !cfg.notifier_late && !hw.secondary_acked() {
                    return Step::Blocked;
                }
                self.pc = if self.n == 0 { BatchPc::Done } else { BatchPc::Write(0) };
            }
            BatchPc::Write(i) => {
                let v = self.victims[i].expect("a victim of this batch");
                if v.unmapped > 0 {
                    mem.swap_write(v.slot, v.pa);
                    for _ in 0..v.unmapped {
                        if mem.put(v.pa) {
                            mem.free(v.pa);
                        }
                    }
                }
                // The batch's own reference: the swap entries hold theirs.
                mem.swap_free(v.slot);
                self.pc = if i + 1 < self.n { BatchPc::Write(i + 1) } else { BatchPc::Done };
            }
            BatchPc::Done => return Step::Done,
        }
        if self.pc == BatchPc::Done {
            Step::Done
        } else {
            Step::Ran
        }
    }

    /// Runs the finish to the end on this CPU (the kernel's way).
    pub fn run<H: MmHw, M: PhysMem>(&mut self, cfg: &TlbConfig, hw: &H, mem: &M) {
        self.finish();
        loop {
            match self.step(cfg, hw, mem) {
                Step::Done => return,
                Step::Blocked => {
                    hw.poll();
                    core::hint::spin_loop();
                }
                _ => {}
            }
        }
    }
}
