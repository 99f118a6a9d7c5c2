//! The kernel's [`PhysMem`]: frames from the buddy allocator, reached
//! through the linear map, with a reference count per frame (copy-on-write
//! sharing after fork), the reverse map's record per frame
//! ([`super::rmap`]), and the swap area: RAM reserved at boot
//! (`swap.slots`), one frame a slot.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Once;

use super::frame::{Frames, FRAMES};
use super::pagetable::PhysMem;
use super::pte::PAGE_SIZE;
use super::rmap::RmapTable;
use super::swap::SwapSlots;
use crate::arch::layout::phys_to_virt;
use crate::arch::page;

struct RefTable {
    base_pfn: u64,
    refs: Vec<AtomicU32>,
    /// One bit per frame: it was poisoned when freed, so the pattern must
    /// still be there when it is handed out again.
    poisoned: Vec<AtomicU64>,
    /// The reverse map's records, one word a frame, in frames of their own
    /// (taken from the allocator at boot: 2 MiB for 1 GiB of RAM, too much
    /// for the kernel heap).
    rmap: RmapTable<'static>,
}

/// What a freed frame is filled with.
pub const POISON: u64 = 0xdead_f4ee_dead_f4ee;
/// Frames found changed after they were freed: something wrote through a
/// stale translation (or a dangling kernel pointer).
pub static POISON_VIOLATIONS: AtomicU64 = AtomicU64::new(0);

fn poison_on() -> bool {
    crate::OPTIONS.get().is_none_or(|o| o.poison)
}

fn poison_bit(pa: u64) -> Option<(&'static AtomicU64, u64)> {
    let t = REFS.get()?;
    let i = (pa / PAGE_SIZE).checked_sub(t.base_pfn)? as usize;
    Some((t.poisoned.get(i / 64)?, 1 << (i % 64)))
}

/// Allocates `count` frames (rounded up to a power of two), checking that
/// frames poisoned at free time were not written since.
pub fn alloc_frames(count: usize) -> Option<Frames> {
    let f = super::heap::frame_allocator_metadata(|| FRAMES.lock().alloc(count))?;
    for i in 0..f.count as u64 {
        let pa = f.pa() + i * PAGE_SIZE;
        let Some((word, bit)) = poison_bit(pa) else { continue };
        if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            continue;
        }
        // SAFETY: the frame was just allocated; it is RAM in the linear map.
        let page = unsafe { core::slice::from_raw_parts(phys_to_virt(pa) as *const u64, 512) };
        if let Some(off) = page.iter().position(|&w| w != POISON) {
            POISON_VIOLATIONS.fetch_add(1, Ordering::Relaxed);
            log::error!(
                target: "mm",
                "frame {pa:#x} was written after it was freed: word {off} = {:#x}",
                page[off]
            );
        }
    }
    Some(f)
}

/// Frees frames, poisoning them first (unless `mm.poison=off`).
pub fn free_frames(f: Frames) {
    if poison_on() {
        for i in 0..f.count as u64 {
            let pa = f.pa() + i * PAGE_SIZE;
            if let Some((word, bit)) = poison_bit(pa) {
                // SAFETY: the caller gives the frames back: nobody else
                // uses them; RAM in the linear map.
                let page = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa) as *mut u64, 512) };
                page.fill(POISON);
                word.fetch_or(bit, Ordering::AcqRel);
            }
        }
    }
    super::heap::frame_allocator_metadata(|| FRAMES.lock().free(f));
}

static REFS: Once<RefTable> = Once::new();

/// `n` zeroed words in frames of their own, for the life of the kernel;
/// `None` if the allocator has no such run of frames.
fn permanent_words(n: usize) -> Option<&'static [AtomicU64]> {
    let frames = (n * 8).div_ceil(PAGE_SIZE as usize).max(1);
    let f = alloc_frames(frames)?;
    let p = phys_to_virt(f.pa()) as *mut AtomicU64;
    for i in 0..frames {
        // SAFETY: the frames were just allocated, owned by nobody else, RAM
        // in the linear map, page-aligned.
        unsafe { page::zero((p as *mut u8).add(i * PAGE_SIZE as usize)) };
    }
    // SAFETY: `frames` pages of zeroed RAM (zero is a valid AtomicU64),
    // 8-aligned, never freed nor reached any other way.
    Some(unsafe { core::slice::from_raw_parts(p, n) })
}

/// Sizes the reference-count table and the reverse map to cover all RAM
/// (called at boot, once the frame allocator holds the RAM).
pub fn init(ram_start: u64, ram_end: u64) {
    REFS.call_once(|| {
        let base_pfn = ram_start / PAGE_SIZE;
        let n = (ram_end.div_ceil(PAGE_SIZE) - base_pfn) as usize;
        let recs = permanent_words(n).expect("frames for the reverse map at boot");
        RefTable {
            base_pfn,
            refs: (0..n).map(|_| AtomicU32::new(0)).collect(),
            poisoned: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            rmap: RmapTable::new(base_pfn, recs),
        }
    });
}

/// The reverse map's records (after [`init`]).
pub fn rmap() -> &'static RmapTable<'static> {
    &REFS.get().expect("phys::init at boot").rmap
}

/// The swap area: its slots' bookkeeping and the first of its frames (slot
/// `s` is frame `base + (s - 1) * PAGE_SIZE`).
struct SwapArea {
    slots: SwapSlots,
    base: u64,
}

static SWAP: Once<SwapArea> = Once::new();

/// Why the swap area could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoomForSwap {
    pub slots: usize,
}

/// Reserves `slots` frames (one run of them) as the swap area, for the
/// life of the kernel (called at boot; 0: no swap area).
pub fn init_swap(slots: usize) -> Result<(), NoRoomForSwap> {
    let base = if slots == 0 { 0 } else { alloc_frames(slots).ok_or(NoRoomForSwap { slots })?.pa() };
    SWAP.call_once(|| SwapArea { slots: SwapSlots::new(slots), base });
    Ok(())
}

/// Swap slots (in use, in the area).
pub fn swap_slots() -> (usize, usize) {
    SWAP.get().map_or((0, 0), |s| (s.slots.used(), s.slots.total()))
}

fn swap() -> &'static SwapArea {
    SWAP.get().expect("a swap slot without a swap area")
}

impl SwapArea {
    fn frame(&self, slot: u64) -> u64 {
        assert!(slot >= 1 && slot as usize <= self.slots.total(), "swap slot {slot}");
        self.base + (slot - 1) * PAGE_SIZE
    }
}

fn slot(pa: u64) -> &'static AtomicU32 {
    let t = REFS.get().expect("phys::init at boot");
    &t.refs[(pa / PAGE_SIZE - t.base_pfn) as usize]
}

#[derive(Clone, Copy, Default)]
pub struct KernelMem;

/// The linear-map address of word `idx` of frame `pa`.
fn word(pa: u64, idx: usize) -> *mut u64 {
    (phys_to_virt(pa) as *mut u64).wrapping_add(idx)
}

/// Frame `pa`'s bytes `[off, off + len)` as atomics.
///
/// # Safety
/// `pa` is an allocated frame (RAM in the linear map) that stays allocated
/// while the slice is used, and `off + len <= PAGE_SIZE`.
unsafe fn bytes<'a>(pa: u64, off: usize, len: usize) -> &'a [core::sync::atomic::AtomicU8] {
    debug_assert!(off + len <= PAGE_SIZE as usize);
    // SAFETY: the range lies in the frame, valid RAM (caller); AtomicU8 has
    // u8's layout, and user memory is only accessed atomically by the kernel
    // (user threads may access it at the same time).
    unsafe { core::slice::from_raw_parts((phys_to_virt(pa) as *const core::sync::atomic::AtomicU8).add(off), len) }
}

/// Frames come from and return to the buddy allocator exactly once each
/// (the reference counts decide when); their contents are reached through
/// the linear map.
impl PhysMem for KernelMem {
    fn alloc_zeroed(&self) -> Option<u64> {
        let f = alloc_frames(1)?;
        let pa = f.pa();
        // SAFETY: a freshly allocated frame, page-aligned in the linear map,
        // owned by nobody else yet.
        unsafe { page::zero(phys_to_virt(pa) as *mut u8) };
        slot(pa).store(1, Ordering::Release);
        Some(pa)
    }

    fn alloc_contig(&self, order: u32) -> Option<u64> {
        let f = alloc_frames(1 << order)?;
        for i in 0..f.count as u64 {
            let pa = f.pa() + i * PAGE_SIZE;
            // SAFETY: freshly allocated frames, page-aligned in the linear
            // map, owned by nobody else yet.
            unsafe { page::zero(phys_to_virt(pa) as *mut u8) };
            slot(pa).store(1, Ordering::Release);
        }
        Some(f.pa())
    }

    fn free_contig(&self, pa: u64, order: u32) {
        for i in 0..1u64 << order {
            rmap().set(pa + i * PAGE_SIZE, 0, 0);
            slot(pa + i * PAGE_SIZE).store(0, Ordering::Release);
        }
        free_frames(Frames { pfn: (pa / PAGE_SIZE) as usize, count: 1 << order });
    }

    unsafe fn alloc_copy(&self, src: u64) -> Option<u64> {
        let pa = alloc_frames(1)?.pa();
        // SAFETY: `pa` was just allocated, owned by nobody else yet; `src`
        // is an allocated frame (caller); both page-aligned in the linear
        // map, distinct.
        unsafe { page::copy(phys_to_virt(pa) as *mut u8, phys_to_virt(src) as *const u8) };
        slot(pa).store(1, Ordering::Release);
        Some(pa)
    }

    fn free(&self, pa: u64) {
        rmap().set(pa, 0, 0);
        slot(pa).store(0, Ordering::Release);
        free_frames(Frames { pfn: (pa / PAGE_SIZE) as usize, count: 1 });
    }

    fn get(&self, pa: u64) {
        slot(pa).fetch_add(1, Ordering::AcqRel);
    }

    fn put(&self, pa: u64) -> bool {
        slot(pa).fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn put_each(&self, pas: &[u64], mut last: impl FnMut(u64)) {
        let t = REFS.get().expect("phys::init at boot");
        for &pa in pas {
            if t.refs[(pa / PAGE_SIZE - t.base_pfn) as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                last(pa);
            }
        }
    }

    fn refs(&self, pa: u64) -> u32 {
        slot(pa).load(Ordering::Acquire)
    }

    fn swap_alloc(&self) -> Option<u64> {
        SWAP.get()?.slots.alloc()
    }

    /// Copies the frame into the slot's frame; readers see the contents
    /// from the `mark_written` on (Release after the copy).
    fn swap_write(&self, slot: u64, pa: u64) {
        let s = swap();
        assert_ne!(s.slots.refs(slot), 0, "write of free swap slot {slot}");
        // The slot is in use by the caller's batch, its only writer; no CPU
        // or device can write `pa` any more (the batch's flush completed).
        // SAFETY: two distinct page-aligned frames in the linear map.
        unsafe { page::copy(phys_to_virt(s.frame(slot)) as *mut u8, phys_to_virt(pa) as *const u8) };
        s.slots.mark_written(slot);
    }

    fn swap_read(&self, slot: u64, pa: u64) -> bool {
        let s = swap();
        if !s.slots.is_written(slot) {
            return false;
        }
        // The slot is held by the caller's swap entry and written (Acquire
        // above), so it no longer changes; `pa` is the caller's new frame.
        // SAFETY: two distinct page-aligned frames in the linear map.
        unsafe { page::copy(phys_to_virt(pa) as *mut u8, phys_to_virt(s.frame(slot)) as *const u8) };
        true
    }

    fn swap_dup(&self, slot: u64) {
        swap().slots.dup(slot);
    }

    fn swap_free(&self, slot: u64) {
        swap().slots.put(slot);
    }

    fn rmap_set(&self, pa: u64, anon: u64, va: u64) {
        rmap().set(pa, anon, va);
    }

    fn alloc_table(&self, _level: u32) -> Option<u64> {
        let pa = self.alloc_zeroed()?;
        PT_PAGES.fetch_add(1, Ordering::Relaxed);
        Some(pa)
    }

    fn free_table(&self, pa: u64) {
        PT_PAGES.fetch_sub(1, Ordering::Relaxed);
        self.free(pa);
    }

    #[inline(always)]
    unsafe fn load_desc(&self, table: u64, idx: usize) -> u64 {
        debug_assert!(idx < 512);
        // SAFETY: `table` is an allocated table page (caller), RAM in the
        // linear map, 4096-aligned, so word `idx < 512` is in bounds and
        // aligned; descriptors are only accessed atomically (no data race).
        unsafe { core::sync::atomic::AtomicU64::from_ptr(word(table, idx)) }.load(Ordering::Relaxed)
    }

    #[inline(always)]
    unsafe fn store_desc(&self, table: u64, idx: usize, desc: u64) {
        debug_assert!(idx < 512);
        // SAFETY: as in `load_desc`.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(word(table, idx)) }.store(desc, Ordering::Release)
    }

    unsafe fn read_data(&self, pa: u64, off: usize, buf: &mut [u8]) {
        // SAFETY: forwarded from the caller (an allocated data frame, the
        // range inside it).
        let src = unsafe { bytes(pa, off, buf.len()) };
        for (b, s) in buf.iter_mut().zip(src) {
            *b = s.load(Ordering::Relaxed);
        }
    }

    unsafe fn write_data(&self, pa: u64, off: usize, data: &[u8]) {
        // SAFETY: as in `read_data`.
        let dst = unsafe { bytes(pa, off, data.len()) };
        for (d, &b) in dst.iter().zip(data) {
            d.store(b, Ordering::Relaxed);
        }
    }

    unsafe fn copy_page(&self, dst: u64, src: u64) {
        // SAFETY: both are allocated frames (caller), page-aligned in the
        // linear map; a copy-on-write copy goes to a frame of its own.
        unsafe { page::copy(phys_to_virt(dst) as *mut u8, phys_to_virt(src) as *const u8) };
    }
}

/// Page-table pages of user address spaces allocated now.
pub static PT_PAGES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Checks every free frame that was poisoned when freed: returns how many
/// were written since (each also counted in [`POISON_VIOLATIONS`]).
pub fn verify_free_poison() -> u64 {
    let Some(t) = REFS.get() else { return 0 };
    let mut bad = 0;
    let _frames = FRAMES.lock(); // nothing is allocated or freed meanwhile
    for (wi, word) in t.poisoned.iter().enumerate() {
        let mut bits = word.load(Ordering::Acquire);
        while bits != 0 {
            let b = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            let pa = (t.base_pfn + wi as u64 * 64 + b) * PAGE_SIZE;
            // SAFETY: a free frame (poisoned at free, bit cleared on alloc),
            // RAM in the linear map; the allocator is locked.
            let page = unsafe { core::slice::from_raw_parts(phys_to_virt(pa) as *const u64, 512) };
            if let Some(off) = page.iter().position(|&w| w != POISON) {
                bad += 1;
                POISON_VIOLATIONS.fetch_add(1, Ordering::Relaxed);
                log::error!(target: "mm", "free frame {pa:#x} was written after it was freed: word {off} = {:#x}", page[off]);
            }
        }
    }
    bad
}
