//! The kernel heap: `buddy_system_allocator`'s heap behind a wrapper that
//! masks IRQs while it holds the heap lock (the timer tick allocates, and a
//! tick taken on a CPU that holds the lock would otherwise spin for ever),
//! counts the bytes in use so tests can assert "back to baseline", and tells
//! system calls whether the heap still has room for what a user may ask.
//!
//! The buddy *frame* allocator keeps its free lists in the heap (B-tree
//! nodes whose number depends on how fragmented physical memory is), so
//! its allocations are counted apart ([`frame_allocator_metadata`]): the
//! rest comes back exactly to its baseline when everything a test started
//! has ended.
//!
//! Why a reserve: in Rust a failed allocation ends in the allocation-error
//! handler, which panics. So the kernel never lets a user get that far: every
//! system call that may keep heap memory (a process, a thread, an endpoint, a
//! mapping, a queued call) first checks [`headroom`], and fails with ENOMEM
//! when less than the reserve is free. Each such call keeps a bounded amount
//! (the largest is fork's copy of at most `abi::limits::MAX_MAPPINGS`
//! mappings), and transient allocations (a gather's frame list, a tick's
//! list of expired sleepers) are bounded per CPU, so the reserve covers
//! every CPU being in the middle of the largest call at once.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use buddy_system_allocator::Heap;

use crate::arch::cpu::{cpu_id, irq_restore, irq_save};
use crate::mm::tlb::stats::MAX_CPUS;

/// Free heap that user-caused allocations must leave (bytes), unless the
/// command line sets `kheap.reserve_kb`. 4 MiB of the 32 MiB heap: eight
/// CPUs each in the middle of a fork of a process at the mapping limit
/// (about 200 KiB of mappings) with a full gather (about 128 KiB) need
/// under 3 MiB.
pub const DEFAULT_RESERVE: usize = 4 << 20;

pub struct KernelHeap {
    heap: spin::Mutex<Heap<32>>,
    /// Bytes handed out, as the buddy allocator rounds them (a power of two
    /// of at least the size, the alignment and a word).
    in_use: AtomicUsize,
    /// Bytes of the frame allocator's free lists (rounded the same way).
    frame_meta: AtomicUsize,
    peak: AtomicUsize,
    total: AtomicUsize,
    reserve: AtomicUsize,
    /// Blocks handed out now, per size class (class `c` = `2^c` bytes): a
    /// leak shows as a class that does not come back.
    blocks: [AtomicUsize; CLASSES],
}

/// Size classes counted: up to 2^31 bytes.
pub const CLASSES: usize = 32;

/// What the buddy allocator really takes for `layout`.
fn rounded(layout: &Layout) -> usize {
    layout.size().max(layout.align()).max(core::mem::size_of::<usize>()).next_power_of_two()
}

impl KernelHeap {
    pub const fn new() -> Self {
        KernelHeap {
            heap: spin::Mutex::new(Heap::empty()),
            in_use: AtomicUsize::new(0),
            frame_meta: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            reserve: AtomicUsize::new(DEFAULT_RESERVE),
            blocks: [const { AtomicUsize::new(0) }; CLASSES],
        }
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    /// `[start, start + size)` is mapped read-write, unused by anything else,
    /// for the rest of the kernel's life; called once.
    pub unsafe fn init(&self, start: usize, size: usize) {
        let daif = irq_save();
        // SAFETY: forwarded from the caller.
        unsafe { self.heap.lock().init(start, size) };
        irq_restore(daif);
        self.total.store(size, Ordering::Release);
    }

    pub fn set_reserve(&self, bytes: usize) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// Blocks in use per size class (`2^c` bytes).
    pub fn blocks(&self) -> [usize; CLASSES] {
        core::array::from_fn(|c| self.blocks[c].load(Ordering::Relaxed))
    }

    fn class(size: usize) -> usize {
        (size.trailing_zeros() as usize).min(CLASSES - 1)
    }

    pub fn stats(&self) -> HeapStats {
        HeapStats {
            in_use: self.in_use.load(Ordering::Relaxed),
            frame_meta: self.frame_meta.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            reserve: self.reserve.load(Ordering::Relaxed),
        }
    }
}

impl Default for KernelHeap {
    fn default() -> Self {
        Self::new()
    }
}

/// A snapshot of the heap's counters, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in use, the frame allocator's free lists not included.
    pub in_use: usize,
    /// Bytes the frame allocator's free lists use.
    pub frame_meta: usize,
    pub peak: usize,
    pub total: usize,
    pub reserve: usize,
}

// SAFETY: allocation and deallocation are delegated to the buddy heap under
// its lock; the counters do not affect which memory is handed out.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let daif = irq_save();
        let r = self.heap.lock().alloc(layout);
        irq_restore(daif);
        match r {
            Ok(p) => {
                let size = rounded(&layout);
                if in_frame_allocator() {
                    self.frame_meta.fetch_add(size, Ordering::Relaxed);
                } else {
                    self.blocks[Self::class(size)].fetch_add(1, Ordering::Relaxed);
                    self.in_use.fetch_add(size, Ordering::Relaxed);
                }
                let total = self.in_use.load(Ordering::Relaxed) + self.frame_meta.load(Ordering::Relaxed);
                self.peak.fetch_max(total, Ordering::Relaxed);
                p.as_ptr()
            }
            Err(()) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(p) = NonNull::new(ptr) else { return };
        let daif = irq_save();
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc's
        // contract), and it is given back once.
        unsafe { self.heap.lock().dealloc(p, layout) };
        irq_restore(daif);
        let size = rounded(&layout);
        if in_frame_allocator() {
            self.frame_meta.fetch_sub(size, Ordering::Relaxed);
        } else {
            self.blocks[Self::class(size)].fetch_sub(1, Ordering::Relaxed);
            self.in_use.fetch_sub(size, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
pub static HEAP: KernelHeap = KernelHeap::new();

/// The heap cannot take more user-caused allocations: fewer than the
/// reserve's bytes are free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapLow;

/// Per CPU: running inside the frame allocator (IRQs masked).
static IN_FRAME_ALLOCATOR: [core::sync::atomic::AtomicBool; MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; MAX_CPUS];

fn in_frame_allocator() -> bool {
    IN_FRAME_ALLOCATOR[cpu_id() % MAX_CPUS].load(Ordering::Relaxed)
}

/// Runs `f` (a call into the frame allocator) with IRQs masked, counting
/// the heap it allocates and frees as the frame allocator's.
pub fn frame_allocator_metadata<R>(f: impl FnOnce() -> R) -> R {
    let daif = irq_save();
    let flag = &IN_FRAME_ALLOCATOR[cpu_id() % MAX_CPUS];
    flag.store(true, Ordering::Relaxed);
    let r = f();
    flag.store(false, Ordering::Relaxed);
    irq_restore(daif);
    r
}

/// `Ok` while more than the reserve is free.
pub fn headroom() -> Result<(), HeapLow> {
    let s = HEAP.stats();
    if s.total.saturating_sub(s.in_use + s.frame_meta) > s.reserve {
        Ok(())
    } else {
        HEAP_REFUSALS.fetch_add(1, Ordering::Relaxed);
        Err(HeapLow)
    }
}

/// System calls refused because the heap was at its reserve.
pub static HEAP_REFUSALS: AtomicUsize = AtomicUsize::new(0);
