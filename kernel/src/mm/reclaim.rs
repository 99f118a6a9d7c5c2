//! Reclaim in the kernel (docs/mechanisms.md §8): `madvise(MADV_PAGEOUT)` and
//! reclaim under memory pressure, over the protocol's batch
//! ([`space::reclaim::Batch`]).
//!
//! For each victim frame: a swap slot, the frame added to the batch, and an
//! [`Op`](super::space::Op) of `Call::Reclaim` on every (mm, VA) that maps
//! it ([`family::mappers`]): the leaf becomes a swap entry and the page's
//! `TLBI VALE1IS` is issued without a DSB. When the batch is full (or the
//! work done) it runs: one `DSB ISH`, the secondary MMUs' acknowledgements,
//! then each page is written to its slot and its frame's references put.
//!
//! # One CPU from the first TLBI to the DSB
//!
//! A DSB completes only the TLBIs of the CPU that executes it, so a batch
//! must finish on the CPU that issued its TLBIs (the batch asserts it).
//! Reclaim runs inside a system call or a page fault, with interrupts
//! masked, and the kernel never preempts or migrates kernel code that does
//! not block or yield (`task::sched`): nothing here blocks or yields
//! between a batch's first unmap and its DSB, so the thread stays on its
//! CPU. What it relies on besides: while it spins for an mm lock or an
//! acknowledgement it serves IPIs (`ipi::poll`), which under the IPI
//! strategies may execute a DSB of their own here: harmless (it completes
//! the batch's TLBIs early), but it would hide a batch finishing on the
//! wrong CPU, which is why the counting tests run under
//! `tlb.strategy=broadcast` (no IPIs) and assert one DSB per batch. No
//! context switch happens meanwhile (one to another mm would execute a
//! `DSB ISH` too).
//!
//! A frame with references the reverse map does not explain (more than the
//! address spaces that map it: a gather about to free it, a fork copying
//! it before its child is registered) is skipped. If one appears after the
//! check, the unmaps still leave it correct: each swap entry gets the
//! contents as of the batch's DSB, and the frame is freed only by its last
//! reference.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::aspace::MmError;
use super::family;
use super::hw::Hw;
use super::pagetable::{desc_pa, is_block, is_cont, Format, LeafCursor, PhysMem};
use super::phys::{rmap, KernelMem};
use super::pte::PAGE_SIZE;
use super::space::reclaim::{Batch, BatchPc};
use super::user::{config, UserMm};
use crate::arch::cpu::cpu_id;

/// Why a victim was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    /// Nobody maps it, or someone holds it whom the reverse map does not
    /// explain.
    NotReclaimable,
    /// The swap area is full.
    SwapFull,
}

/// One batch being collected on this CPU.
struct Reclaimer {
    batch: Batch,
    /// The CPU that collects (and so issues the TLBIs).
    cpu: usize,
    /// The address spaces unmapped from in the batch: kept alive until it
    /// has run, so that none is dropped (and torn down) in between.
    held: Vec<Arc<UserMm>>,
    /// Pages taken from at least one address space, over every batch.
    taken: usize,
}

impl Reclaimer {
    fn new() -> Self {
        Reclaimer { batch: Batch::new(), cpu: cpu_id(), held: Vec::new(), taken: 0 }
    }

    /// Takes frame `pa` from every address space that maps it.
    fn take(&mut self, pa: u64) -> Result<(), Skip> {
        let maps = family::mappers(pa);
        if maps.is_empty() || KernelMem.refs(pa) as usize > maps.len() {
            return Err(Skip::NotReclaimable);
        }
        let slot = KernelMem.swap_alloc().ok_or(Skip::SwapFull)?;
        let i = self.batch.add(pa, slot).expect("a batch is run as soon as it is full");
        let mut unmapped = false;
        for (mm, va) in maps {
            if mm.reclaim_unmap(va, pa, slot) {
                self.batch.unmapped(i, config(), &Hw);
                unmapped = true;
            }
            self.held.push(mm);
        }
        self.taken += usize::from(unmapped);
        if self.batch.is_full() {
            self.run();
        }
        Ok(())
    }

    /// Runs the batch (if it has pages) and starts a new one.
    fn run(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        assert_eq!(cpu_id(), self.cpu, "a reclaim batch moved to another CPU before its DSB");
        let cfg = config();
        self.batch.finish();
        if cfg.reclaim_dsb_remote && self.batch.issuer().is_some() {
            dsb_elsewhere(&mut self.batch);
        }
        self.batch.run(cfg, &Hw, &KernelMem);
        self.batch = Batch::new();
        self.held.clear();
    }
}

/// `reclaim.dsb=remote`: the batch's DSB step runs on the next CPU (sent
/// through the shootdown transport and waited for), not on the one that
/// issued the TLBIs, which executes no DSB meanwhile. That DSB completes
/// none of the batch's TLBIs: on hardware a CPU may go on writing a page
/// through a stale entry while it is copied to swap and its frame freed.
/// QEMU completes every TLBI at once, so the kernel cannot show it; the
/// host model does (`kernel/model`).
fn dsb_elsewhere(batch: &mut Batch) {
    fn dsb_step(arg: usize) {
        // SAFETY: `arg` is the batch `dsb_elsewhere` borrows mutably until
        // this CPU acknowledged (after this returns); nobody else uses it.
        let batch = unsafe { &mut *(arg as *mut Batch) };
        batch.step(config(), &Hw, &KernelMem);
    }
    let online = crate::percpu::online_count();
    let target = (cpu_id() + 1) % online.max(1);
    if !super::ipi::call_on(target, dsb_step, batch as *mut Batch as usize) {
        log::warn!(target: "reclaim", "reclaim.dsb=remote: no other CPU online; the DSB runs here");
        return;
    }
    while !super::ipi::acked() {
        core::hint::spin_loop();
    }
    debug_assert_ne!(batch.pc(), BatchPc::Dsb, "the other CPU ran the DSB step");
}

/// `madvise(addr, len, MADV_PAGEOUT)` of `mm`: every present page of the
/// range goes to swap, unmapped from every address space that maps it
/// (pages shared after fork included), in batches. The range is checked as
/// for `MADV_DONTNEED` (page-aligned, in user space, wholly mapped: EINVAL
/// or ENOMEM and nothing done). Pages that cannot be taken (shared with
/// someone the reverse map does not know, or the swap area full) stay
/// where they are: advice, not a command.
pub fn pageout(mm: &UserMm, addr: u64, len: u64) -> Result<(), MmError> {
    let (start, end) = mm.with_aspace(|a| a.dontneed_range(addr, len, abi::advice::DONTNEED))?;
    let mut r = Reclaimer::new();
    let mut va = start;
    let mut pages = Vec::new();
    while va < end {
        // The present pages of the next stretch, found under the lock (the
        // cursor is valid only while it is held), taken outside it.
        pages.clear();
        let mut next = end;
        mm.with_aspace(|a| {
            let mut c = LeafCursor::new(va, end);
            while pages.len() < super::space::reclaim::BATCH {
                let Some((v, desc)) = c.next(a.page_table(), &KernelMem) else { break };
                // Blocks and contiguous runs stay (one page's entry cannot
                // change alone there; `AddressSpace::reclaim_unmap`).
                next = if is_block(desc) { v + a.page_table().format().level_size(2) } else { v + PAGE_SIZE };
                if !is_block(desc) && !is_cont(desc) {
                    pages.push((v, desc_pa(desc)));
                }
            }
        });
        if next <= va {
            break;
        }
        for &(_, pa) in &pages {
            if r.take(pa) == Err(Skip::SwapFull) {
                r.run();
                return Ok(());
            }
        }
        va = next;
    }
    r.run();
    Ok(())
}

/// Where the clock hand of [`under_pressure`] stands: an index into the
/// reverse map's records.
static HAND: AtomicUsize = AtomicUsize::new(0);

/// Memory ran out (a page fault found no frame): reclaims one batch of user
/// pages, found by a clock hand over the reverse map's records (each scan
/// goes on where the last one stopped, at most once round all of RAM).
/// Returns the pages taken; 0 when none could be (swap full, or no user
/// page reclaimable).
pub fn under_pressure() -> usize {
    let table = rmap();
    let n = table.len();
    if n == 0 {
        return 0;
    }
    let mut r = Reclaimer::new();
    let start = HAND.load(Ordering::Relaxed) % n;
    let mut i = start;
    for _ in 0..n {
        i = (i + 1) % n;
        let Some((pa, _)) = table.nth(i) else { continue };
        match r.take(pa) {
            Err(Skip::SwapFull) => break,
            Err(Skip::NotReclaimable) => {}
            Ok(()) if r.taken >= super::space::reclaim::BATCH => break,
            Ok(()) => {}
        }
    }
    HAND.store(i, Ordering::Relaxed);
    r.run();
    log::debug!(target: "reclaim", "memory pressure on CPU {}: {} pages to swap", cpu_id(), r.taken);
    r.taken
}
