//! The secondary-MMU device (docs/mechanisms.md §8, seed 004): an accelerator
//! that shares a process's page tables, modelled in software. It reaches
//! user memory only through its own translation cache ([`DevTlb`]), filled
//! by walking the bound mm's tables with the kernel's page-table code, and
//! no `TLBI` reaches that cache: the mm's notifier tells the device
//! ([`Invalidation`]s posted to its [`Inbox`]) and waits for its
//! acknowledgement before anything the invalidation covers is freed
//! (`space::notifier`).
//!
//! [`DevCore`] is one device's state: the cache, the binding and the inbox,
//! behind a lock that whoever acts for the device holds for the length of
//! one access (a translation and the bytes it moves). Taking the lock
//! first handles the inbox, so invalidations are handled only *between*
//! two accesses: once the handled count (the acknowledgement) covers a
//! ticket, no walk of the old tables is in flight and no entry the
//! invalidation named is cached. A CPU waiting for an acknowledgement
//! that finds the lock free takes it and handles the inbox itself
//! ([`DevCore::acked`]): the device is then between accesses (or idle), so
//! that is the same thing, and the wait ends whether or not the device's
//! thread runs.
//!
//! Jobs ([`Work`], [`Run`]) move their bytes one access at a time through
//! [`Held`]. The kernel runs each device in a thread of its own
//! (`task::device`); this part is plain Rust, tested on the host.

mod inbox;
#[cfg(target_os = "none")]
pub mod notify;
#[cfg(test)]
mod tests;
mod work;

pub use inbox::{Inbox, Taken, INBOX};
pub use work::{Progress, Run, WatchReport, Work, CHUNK};

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::pagetable::Format;
use super::pagetable::PhysMem;
use super::space::{DevAccess, DevTlb, Invalidation, Mm};
use abi::device as d;

/// Translations one device caches. Small, so that a job over a few hundred
/// kilobytes already replaces entries.
pub const ENTRIES: usize = 64;

/// A device's counters since boot, indexed by `abi::device`'s `FILLS` ..
pub struct Counters([AtomicU64; d::STAT_COUNT]);

impl Counters {
    const fn new() -> Self {
        Counters([const { AtomicU64::new(0) }; d::STAT_COUNT])
    }

    pub fn add(&self, i: usize, n: u64) {
        self.0[i].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }

    pub fn words(&self) -> [u64; d::STAT_COUNT] {
        core::array::from_fn(|i| self.get(i))
    }
}

/// The address space a device is bound to.
#[derive(Clone, Copy, Debug)]
struct Binding<F: Format> {
    mm: *const Mm<F>,
    /// Pinned for the binding: the cache's entries are tagged with it.
    asid: u16,
    /// Told apart from earlier bindings of the same device.
    gen: u64,
    /// The mm was torn down (an [`Invalidation`] with `release`): every
    /// later access of the binding fails.
    released: bool,
}

struct State<F: Format, const N: usize> {
    tlb: DevTlb<N>,
    bound: Option<Binding<F>>,
}

/// One device: its cache and binding (reached only through [`Held`]), its
/// inbox, and how far it has handled the inbox.
pub struct DevCore<F: Format, const N: usize> {
    lock: AtomicBool,
    state: UnsafeCell<State<F, N>>,
    inbox: spin::Mutex<Inbox>,
    /// Tickets handled (the acknowledgement): only grows, written under the
    /// lock after the entries went.
    done: AtomicU64,
    pub counters: Counters,
}

// SAFETY: `state` is reached only through a `Held`, of which there is one at
// a time (the `lock` flag, taken with Acquire and dropped with Release); the
// binding's mm pointer is used only there, and the binder keeps the mm alive
// while bound (`Held::bind`). Everything else is atomic or locked.
unsafe impl<F: Format + Send, const N: usize> Sync for DevCore<F, N> {}
// SAFETY: as above.
unsafe impl<F: Format + Send, const N: usize> Send for DevCore<F, N> {}

impl<F: Format, const N: usize> Default for DevCore<F, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Format, const N: usize> DevCore<F, N> {
    pub const fn new() -> Self {
        DevCore {
            lock: AtomicBool::new(false),
            state: UnsafeCell::new(State { tlb: DevTlb::new(), bound: None }),
            inbox: spin::Mutex::new(Inbox::new()),
            done: AtomicU64::new(0),
            counters: Counters::new(),
        }
    }

    /// Posts `inv` (`MmHw::notify_secondary`); returns its ticket, for
    /// [`Self::acked`].
    pub fn post(&self, inv: Invalidation) -> u64 {
        self.inbox.lock().post(inv)
    }

    /// Tickets handled so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// Acts for the device, once it is between two accesses: spins for the
    /// lock, then handles the inbox. The caller keeps the hold short (one
    /// access: CPUs may be waiting for the acknowledgement) and, in the
    /// kernel, has interrupts masked meanwhile.
    pub fn lock(&self) -> Held<'_, F, N> {
        loop {
            if let Some(h) = self.try_lock() {
                return h;
            }
            core::hint::spin_loop();
        }
    }

    /// [`Self::lock`] if nobody holds it now.
    pub fn try_lock(&self) -> Option<Held<'_, F, N>> {
        self.try_lock_serving().map(|(h, _)| h)
    }

    /// [`Self::try_lock`], and whether handling the inbox found anything.
    fn try_lock_serving(&self) -> Option<(Held<'_, F, N>, bool)> {
        if self.lock.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return None;
        }
        let mut h = Held { core: self };
        let served = h.serve();
        Some((h, served))
    }

    /// Whether ticket `ticket` is handled; if not and the device is between
    /// two accesses, handles it here on the device's behalf (counted as
    /// `SERVED_BY_WAITER`). A waiter calls this until it is true: the
    /// device holds the lock for one access at a time, so it soon is.
    pub fn acked(&self, ticket: u64) -> bool {
        if self.done() >= ticket {
            return true;
        }
        let Some((h, served)) = self.try_lock_serving() else { return false };
        drop(h);
        if served {
            self.counters.add(d::SERVED_BY_WAITER, 1);
        }
        self.done() >= ticket
    }
}

/// What one translation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The frame (its physical address) that holds the address.
    Frame(u64),
    /// An invalidation is open or raced the walk: try again (after letting
    /// go of the lock, so it can be handled).
    Retry,
    /// No valid translation allows the access.
    Fault,
    /// The binding the access was for is gone (unbound, bound anew, or its
    /// mm released).
    Gone,
}

/// The device's lock, held: one access, or one handling of the inbox.
pub struct Held<'a, F: Format, const N: usize> {
    core: &'a DevCore<F, N>,
}

impl<F: Format, const N: usize> Drop for Held<'_, F, N> {
    fn drop(&mut self) {
        self.core.lock.store(false, Ordering::Release);
    }
}

impl<F: Format, const N: usize> Held<'_, F, N> {
    fn state(&mut self) -> &mut State<F, N> {
        // SAFETY: this `Held` is the only one (the lock), and the reference
        // lives no longer than the borrow of `self`.
        unsafe { &mut *self.core.state.get() }
    }

    /// Handles everything posted so far, then publishes the handled count;
    /// whether there was anything.
    fn serve(&mut self) -> bool {
        let taken = self.core.inbox.lock().take();
        if taken.is_empty() {
            return false;
        }
        let st = self.state();
        let mut dropped = 0;
        for inv in taken.invalidations() {
            dropped += st.tlb.invalidate(inv);
            if let Some(b) = st.bound.as_mut().filter(|b| inv.release && b.asid == inv.asid) {
                b.released = true;
            }
        }
        if taken.all {
            dropped += st.tlb.len();
            st.tlb = DevTlb::new();
            // Which mm the release was for is lost: the binding ends (its
            // jobs fail with EFAULT, never read a freed frame).
            if let Some(b) = st.bound.as_mut().filter(|_| taken.release_any) {
                b.released = true;
            }
        }
        let c = &self.core.counters;
        c.add(d::INVALS, taken.upto - taken.from);
        c.add(d::DROPPED, dropped as u64);
        self.core.done.store(taken.upto, Ordering::Release);
        true
    }

    /// Binds the device to `mm` (ASID `asid`, pinned) as binding `gen`.
    ///
    /// # Safety
    /// `mm` stays alive, and subscribed to this device (`Mm::subscribe`),
    /// until [`Self::unbind`] of `gen` has returned: every operation that
    /// frees its pages or tables then waits for this device's
    /// acknowledgement, which is what makes [`Self::translate`]'s walks and
    /// the frames it returns safe to use under the lock.
    pub unsafe fn bind(&mut self, mm: &Mm<F>, asid: u16, gen: u64) {
        self.state().bound = Some(Binding { mm, asid, gen, released: false });
    }

    /// Ends binding `gen` (if it is the current one): no access of it
    /// succeeds from now on, and its entries are dropped. Returns whether
    /// it was bound.
    pub fn unbind(&mut self, gen: u64) -> bool {
        let st = self.state();
        let Some(b) = st.bound.filter(|b| b.gen == gen) else { return false };
        st.bound = None;
        let n = st.tlb.invalidate(&Invalidation { asid: b.asid, range: None, release: false });
        self.core.counters.add(d::DROPPED, n as u64);
        true
    }

    /// The current binding's generation, unless its mm was released.
    pub fn bound(&mut self) -> Option<u64> {
        self.state().bound.filter(|b| !b.released).map(|b| b.gen)
    }

    /// Entries cached now.
    pub fn cached(&mut self) -> usize {
        self.state().tlb.len()
    }

    /// Translates `va` of binding `gen` for a read or a write, through the
    /// cache (a walk of the bound mm's tables on a miss), counted. A frame
    /// returned stays allocated, and mapped at `va`'s page for the device,
    /// while this `Held` lives (unless `mmu.notifier=late` breaks the
    /// protocol on purpose: then it may be freed already).
    pub fn translate<M: PhysMem>(&mut self, mem: &M, gen: u64, va: u64, write: bool) -> Access {
        let st = self.state();
        let Some(b) = st.bound.filter(|b| b.gen == gen && !b.released) else { return Access::Gone };
        // The binder keeps the mm alive and subscribed while bound (`bind`'s
        // contract), and this binding is current. While subscribed, whatever
        // frees its tables first waits for this device's acknowledgement,
        // given only by `serve` under the lock we hold.
        // SAFETY: subscribed, and no table goes during the walk (above).
        let a = unsafe { st.tlb.translate(&*b.mm, b.asid, va, write, mem) };
        let (counter, r) = match a {
            DevAccess::Hit(e) => (d::HITS, Access::Frame(e.pa)),
            DevAccess::Filled(e) => (d::FILLS, Access::Frame(e.pa)),
            DevAccess::Retry => (d::RETRIES, Access::Retry),
            DevAccess::Fault => (d::FAULTS, Access::Fault),
        };
        self.core.counters.add(counter, 1);
        r
    }
}
