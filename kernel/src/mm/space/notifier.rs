//! mmu notifiers and the secondary MMU's translation cache (docs/mechanisms.md
//! §8, seed 004).
//!
//! A secondary MMU (here a device that shares the process's page tables,
//! as an SVA accelerator does) keeps its own cache of translations, which
//! no `TLBI` reaches. It *subscribes* to an mm ([`Mm::subscribe`]): a bit in
//! `Mm::secondary`, one per device. Then:
//!
//! * every operation that changes or clears user entries brackets its
//!   changes with invalidate-range start and end ([`Mm::range_start`],
//!   [`Mm::range_end`]): while one is open, a device's fill of a
//!   translation waits ([`Mm::read_begin`]), and a fill that raced one is
//!   thrown away ([`Mm::read_retry`]), the interval-notifier protocol;
//! * where the primary flush is issued, the subscribers are sent an
//!   [`Invalidation`] of the same range in the same ASID (Linux 6.6's
//!   `arch_invalidate_secondary_tlbs`), and the operation waits for every
//!   device's acknowledgement after its own flush completed and before it
//!   frees anything the flush covered ([`super::Op`]'s `SecWait` step).
//!
//! A device acknowledges only between two of its own accesses, so once it
//! has, no walk of the old tables is in flight on it and its cache holds no
//! entry of the range: freeing is then as safe for it as for the CPUs.
//! Operations wait for acknowledgements while holding the mm lock, so a
//! device never takes that lock in the middle of an access: an access that
//! finds no valid entry fails, it does not run the fault handler.
//!
//! The invalidation may reach a device before the page-table writes it is
//! for are complete (it is sent where the flush is planned, before the
//! `DSB ISHST` that issues the TLBIs): no fill can then read the old entry,
//! because the operation's invalidate-range is open from before its first
//! write until after its free, and fills wait while one is.
//!
//! `mmu.notifier=late` applies to an operation's own flushes; a reclaim
//! batch (`super::reclaim`) sends its invalidations with its TLBIs and,
//! under `late`, does not wait for them before freeing.
//!
//! [`DevTlb`] is the device's cache, written once here so that the kernel's
//! device and the host model's run the same code.

use core::sync::atomic::Ordering;

use super::Mm;
use crate::mm::pagetable::{desc_pa, el0_can_read, el0_can_write, walk_in, Format, PhysMem};
use crate::mm::pte::PAGE_SIZE;

/// What a secondary MMU is told to drop: the entries of `asid` in `range`
/// (`[start, end)`), or all of them for `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalidation {
    pub asid: u16,
    pub range: Option<(u64, u64)>,
    /// The mm is being torn down (Linux's `->release`): the device stops
    /// using it and faults every later access.
    pub release: bool,
}

impl<F: Format> Mm<F> {
    /// Adds device `dev` (< 64) to the subscribers. The caller pinned the
    /// mm's ASID first (the device's entries are tagged with it) and holds
    /// the mm lock ([`Mm::with_aspace`]), so no operation is between a
    /// change of entries and its flush without having told the device.
    pub fn subscribe(&self, dev: usize) {
        self.secondary.fetch_or(1 << dev, Ordering::SeqCst);
    }

    /// Removes device `dev`, under the mm lock; the caller then drops the
    /// device's entries of the ASID (invalidations already sent to it stay
    /// harmless) and unpins.
    pub fn unsubscribe(&self, dev: usize) {
        self.secondary.fetch_and(!(1 << dev), Ordering::SeqCst);
    }

    /// The subscribed devices (bit per device).
    pub fn subscribers(&self) -> u64 {
        self.secondary.load(Ordering::SeqCst)
    }

    /// invalidate-range-start: from now until the matching
    /// [`Self::range_end`], device fills wait and fills in progress are
    /// thrown away.
    pub fn range_start(&self) {
        self.invalidating.fetch_add(1, Ordering::SeqCst);
        self.notifier_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// invalidate-range-end.
    pub fn range_end(&self) {
        self.notifier_seq.fetch_add(1, Ordering::SeqCst);
        self.invalidating.fetch_sub(1, Ordering::SeqCst);
    }

    /// Ranges being invalidated now.
    pub fn invalidating(&self) -> usize {
        self.invalidating.load(Ordering::SeqCst)
    }

    /// A fill may start: the sequence to check at its end, or `None` while
    /// an invalidation is open (`mmu_interval_read_begin`).
    pub fn read_begin(&self) -> Option<u64> {
        let seq = self.notifier_seq.load(Ordering::SeqCst);
        (self.invalidating.load(Ordering::SeqCst) == 0).then_some(seq)
    }

    /// Whether a fill begun at `seq` raced an invalidation and must be
    /// thrown away (`mmu_interval_read_retry`). For a device that handles
    /// invalidations only between accesses, as this kernel's does, it
    /// never fires (the open range makes the fill wait instead); it keeps
    /// [`DevTlb::translate`] correct for one that handles them during a
    /// walk.
    pub fn read_retry(&self, seq: u64) -> bool {
        self.notifier_seq.load(Ordering::SeqCst) != seq
    }
}

/// One translation a device caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevEntry {
    pub asid: u16,
    /// The page's VA.
    pub page: u64,
    /// The frame it maps.
    pub pa: u64,
    pub writable: bool,
}

/// What a device's access found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DevAccess {
    /// Through a cached entry.
    Hit(DevEntry),
    /// Walked the tables and cached the entry.
    Filled(DevEntry),
    /// An invalidation is open or raced the walk: try again later.
    Retry,
    /// No valid entry allows the access (or the mm was released).
    Fault,
}

/// A device's translation cache: at most `N` entries, each tagged with an
/// ASID, replaced round robin. Written by hand: it is the mechanism.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DevTlb<const N: usize> {
    entries: [Option<DevEntry>; N],
    next: usize,
}

impl<const N: usize> Default for DevTlb<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> DevTlb<N> {
    pub const fn new() -> Self {
        DevTlb { entries: [None; N], next: 0 }
    }

    /// The cached entry for `va` in `asid`.
    pub fn lookup(&self, asid: u16, va: u64) -> Option<DevEntry> {
        let page = va & !(PAGE_SIZE - 1);
        self.entries.iter().flatten().find(|e| e.asid == asid && e.page == page).copied()
    }

    pub fn insert(&mut self, e: DevEntry) {
        if let Some(slot) = self.entries.iter_mut().find(|s| s.is_some_and(|x| x.asid == e.asid && x.page == e.page)) {
            *slot = Some(e);
            return;
        }
        let slot = match self.entries.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (i + 1) % N;
                i
            }
        };
        self.entries[slot] = Some(e);
    }

    /// Drops what `inv` names; returns how many entries went.
    pub fn invalidate(&mut self, inv: &Invalidation) -> usize {
        let mut n = 0;
        for s in self.entries.iter_mut() {
            let hit = s.is_some_and(|e| {
                e.asid == inv.asid && inv.range.is_none_or(|(start, end)| e.page >= start && e.page < end)
            });
            if hit {
                *s = None;
                n += 1;
            }
        }
        n
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> impl Iterator<Item = &DevEntry> {
        self.entries.iter().flatten()
    }

    /// Translates `va` of `mm` (ASID `asid`, pinned by the binding) for a
    /// read or a write: from the cache, or by walking the mm's tables with
    /// the kernel's page-table code and caching what it finds. A cached
    /// entry that does not allow a write is dropped and walked again (the
    /// tables may have been made writable since).
    ///
    /// # Safety
    /// The device is subscribed to `mm` for the whole call, and no table of
    /// `mm` is freed during it: everything that frees tables waits for this
    /// device's acknowledgement of an [`Invalidation`] first, and the
    /// device handles those only between two calls.
    pub unsafe fn translate<F: Format, M: PhysMem>(
        &mut self,
        mm: &Mm<F>,
        asid: u16,
        va: u64,
        write: bool,
        mem: &M,
    ) -> DevAccess {
        if let Some(e) = self.lookup(asid, va) {
            if !write || e.writable {
                return DevAccess::Hit(e);
            }
            self.invalidate(&Invalidation { asid, range: Some((e.page, e.page + PAGE_SIZE)), release: false });
        }
        let Some(seq) = mm.read_begin() else { return DevAccess::Retry };
        let root = mm.root_pa();
        if root == 0 {
            return DevAccess::Fault;
        }
        // SAFETY: `root` is the mm's live tree (not 0: the teardown clears
        // it before taking the tables) and no table is freed meanwhile
        // (caller).
        let desc = unsafe { walk_in(mm.fmt, mem, root, va) };
        let Some(desc) = desc.filter(|&d| el0_can_read(d) && (!write || el0_can_write(d))) else {
            return DevAccess::Fault;
        };
        if mm.read_retry(seq) {
            return DevAccess::Retry;
        }
        let e = DevEntry { asid, page: va & !(PAGE_SIZE - 1), pa: desc_pa(desc), writable: el0_can_write(desc) };
        self.insert(e);
        DevAccess::Filled(e)
    }
}
