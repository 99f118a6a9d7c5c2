//! Secondary MMUs (docs/mechanisms.md §8, seed 004): devices that share an
//! address space's page tables and cache its translations in their own
//! cache, which no TLBI reaches.
//!
//! A [`Device`] is part of the [`crate::Machine`]: the kernel's own
//! [`DevCache`] (`mm::space::DevTlb`, a few ASID-tagged entries replaced
//! round robin), the ASID it was bound with, and an inbox of the
//! invalidations CPUs posted it (`MmHw::notify_secondary`, which the
//! [`crate::bridge::Bridge`] implements by [`crate::Machine::post_secondary`]).
//! The model system serves an inbox entry whenever it schedules it
//! ([`Device::serve`]: the kernel's `DevTlb::invalidate`); a CPU waiting for
//! the acknowledgements ([`crate::Machine::secondary_acked`]) waits until
//! every invalidation it posted was served. A served `release` ends the
//! binding: the device makes no more accesses.
//!
//! The kernel's device (`mm::device::DevCore`) handles everything posted
//! so far whenever its lock is taken, by the device before an access or by
//! a waiting CPU while the device is between accesses. The model's device
//! serves one invalidation at a time, any sender's, at any point between
//! its accesses: every order the kernel's device handles them in is among
//! those. (It does not run `DevCore` itself: that holds a pointer to its
//! mm and takes its inbox whenever locked, which a model state, copied and
//! hashed at every step, cannot hold.)
//!
//! A device's access (a read or a write through `DevTlb::translate`, which
//! walks the tables with the kernel's page-table code) is one step of the
//! model system: the walk, the check of the notifier's sequence and the
//! fill happen together, so a fill never overlaps an invalidate-range start
//! (the model cannot show a fill that raced one and was kept; the protocol's
//! `Mm::read_retry` is run, never found true).
#![forbid(unsafe_code)]

use kernel::mm::space::{DevTlb, Invalidation};

/// Entries of a device's cache: few, so that replacements happen and an
/// entry can outlive the mapping it came from.
pub const DEV_ENTRIES: usize = 2;

/// A device's translation cache: the kernel's.
pub type DevCache = DevTlb<DEV_ENTRIES>;

/// An invalidation waiting in a device's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Posted {
    /// The CPU that posted it (and waits for it).
    pub from: usize,
    /// The `Mm::id` it is for.
    pub mm: u64,
    pub inv: Invalidation,
}

/// A secondary MMU bound to one address space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    pub cache: DevCache,
    /// The `Mm::id` it is bound to, and the ASID pinned for it.
    pub mm: u64,
    pub asid: u16,
    /// Invalidations posted and not yet served, oldest first.
    pub inbox: Vec<Posted>,
    /// It served a `release`: its binding is dead.
    pub released: bool,
}

impl Device {
    pub fn new(mm: u64, asid: u16) -> Self {
        Device { cache: DevCache::new(), mm, asid, inbox: Vec::new(), released: false }
    }

    /// Serves the oldest invalidation `from` posted: drops what it names
    /// (the kernel's `DevTlb::invalidate`) and acknowledges it. Returns it
    /// and how many entries went.
    pub fn serve(&mut self, from: usize) -> Option<(Invalidation, usize)> {
        let i = self.inbox.iter().position(|p| p.from == from)?;
        let p = self.inbox.remove(i);
        let dropped = self.cache.invalidate(&p.inv);
        if p.inv.release && p.mm == self.mm {
            self.released = true;
        }
        Some((p.inv, dropped))
    }

    /// The CPUs with an invalidation waiting here, each once.
    pub fn senders(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.inbox.iter().map(|p| p.from).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether the device may still access its address space.
    pub fn bound(&self) -> bool {
        !self.released
    }
}
