//! Physical frame allocator: a buddy allocator (`buddy_system_allocator`)
//! over every RAM page not used by the kernel image, the device tree or the
//! heap, with the counts tests read to prove nothing leaks.

use buddy_system_allocator::FrameAllocator as Buddy;
use spin::Mutex;

use super::pte::PAGE_SIZE;

/// A physical frame number range handed out by [`FrameAllocator::alloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frames {
    pub pfn: usize,
    pub count: usize,
}

impl Frames {
    pub fn pa(&self) -> u64 {
        self.pfn as u64 * PAGE_SIZE
    }
}

/// Single frames the allocator keeps out of the buddy lists after they are
/// freed, and hands out again first (last freed, first out), as Linux's
/// per-CPU page lists do: a page-sized free or allocation then costs a
/// push or a pop instead of the buddy lists' B-tree updates.
const CACHE: usize = 1024;

pub struct FrameAllocator {
    buddy: Buddy<33>,
    total: usize,
    /// Free frames, those in `cache` included.
    free: usize,
    /// `cache[..cached]`: free single frames (pfns) not in the buddy lists.
    cache: [usize; CACHE],
    cached: usize,
}

impl FrameAllocator {
    pub const fn new() -> Self {
        Self { buddy: Buddy::new(), total: 0, free: 0, cache: [0; CACHE], cached: 0 }
    }

    /// Adds physical pages `[start_pa, end_pa)` (rounded inwards to pages).
    pub fn add_range(&mut self, start_pa: u64, end_pa: u64) {
        let start = start_pa.div_ceil(PAGE_SIZE) as usize;
        let end = (end_pa / PAGE_SIZE) as usize;
        if end > start {
            self.buddy.add_frame(start, end);
            self.total += end - start;
            self.free += end - start;
        }
    }

    /// Allocates `count` contiguous frames, aligned to `count` rounded up to a
    /// power of two (the buddy invariant).
    /// A single frame comes from the cache when it holds one. A request
    /// the buddy lists cannot meet gives the cached frames back to them
    /// (where they may merge) and tries again, so caching never makes an
    /// allocation fail.
    pub fn alloc(&mut self, count: usize) -> Option<Frames> {
        let count = count.max(1).next_power_of_two();
        let pfn = if count == 1 && self.cached > 0 {
            self.cached -= 1;
            self.cache[self.cached]
        } else {
            match self.buddy.alloc(count) {
                Some(pfn) => pfn,
                None if self.cached > 0 => {
                    self.drain();
                    self.buddy.alloc(count)?
                }
                None => return None,
            }
        };
        self.free -= count;
        Some(Frames { pfn, count })
    }

    pub fn free(&mut self, frames: Frames) {
        let count = frames.count.max(1).next_power_of_two();
        if count == 1 && self.cached < CACHE {
            self.cache[self.cached] = frames.pfn;
            self.cached += 1;
        } else {
            self.buddy.dealloc(frames.pfn, count);
        }
        self.free += count;
    }

    /// Gives every cached frame back to the buddy lists.
    fn drain(&mut self) {
        while self.cached > 0 {
            self.cached -= 1;
            self.buddy.dealloc(self.cache[self.cached], 1);
        }
    }

    pub fn free_frames(&self) -> usize {
        self.free
    }

    pub fn total_frames(&self) -> usize {
        self.total
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's frame allocator. Never taken from interrupt handlers.
pub static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

/// Free frames right now (what leak tests compare against a baseline).
pub fn free_frames() -> usize {
    FRAMES.lock().free_frames()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_roundtrip_restores_count() {
        let mut fa = FrameAllocator::new();
        fa.add_range(0x4000_0000 + 100, 0x4000_0000 + 64 * PAGE_SIZE + 5);
        // The partial first page is dropped; 63 whole pages remain.
        assert_eq!(fa.total_frames(), 63);
        let base = fa.free_frames();
        let a = fa.alloc(1).unwrap();
        let b = fa.alloc(3).unwrap();
        assert_eq!(b.count, 4, "sizes round up to a power of two");
        assert_eq!(b.pfn % 4, 0, "buddy blocks are naturally aligned");
        assert_eq!(fa.free_frames(), base - 5);
        assert_ne!(a.pfn, b.pfn);
        fa.free(a);
        fa.free(b);
        assert_eq!(fa.free_frames(), base);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut fa = FrameAllocator::new();
        fa.add_range(0, 4 * PAGE_SIZE);
        let all: Vec<_> = (0..4).map(|_| fa.alloc(1).expect("4 frames available")).collect();
        assert!(fa.alloc(1).is_none());
        assert_eq!(fa.free_frames(), 0);
        for f in all {
            fa.free(f);
        }
        assert_eq!(fa.free_frames(), 4);
        assert!(fa.alloc(4).is_some(), "freed buddies merge back into one block");
    }

    #[test]
    fn cached_frames_come_back_first_and_never_block_a_larger_allocation() {
        let mut fa = FrameAllocator::new();
        fa.add_range(0, 8 * PAGE_SIZE);
        let a = fa.alloc(1).unwrap();
        let b = fa.alloc(1).unwrap();
        fa.free(a);
        fa.free(b);
        assert_eq!(fa.free_frames(), 8, "cached frames count as free");
        assert_eq!(fa.alloc(1).unwrap(), b, "the last frame freed comes back first");
        fa.free(b);
        assert_eq!(fa.alloc(8).map(|f| f.pfn), Some(0), "the cache drains so the buddies merge");
    }
}
