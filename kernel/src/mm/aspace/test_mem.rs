//! Host-side physical memory for the tests: boxed pages in a map,
//! addresses never reused (a stale access to a freed frame panics instead of
//! reading someone else's page), an optional cap on outstanding frames (to
//! test running out) and leak accounting.
#![allow(unsafe_code)] // reaches the boxed pages through their UnsafeCells

use crate::mm::pagetable::PhysMem;
use crate::mm::swap::SwapSlots;
use core::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; 4096]>);

struct Frame {
    page: Box<Page>,
    refs: u32,
}

pub struct TestMem {
    frames: RefCell<HashMap<u64, Frame>>,
    next: Cell<u64>,
    limit: Cell<Option<usize>>,
    frees: Cell<usize>,
    /// Swap slots (the kernel's bookkeeping) and their contents once
    /// written.
    swap: SwapSlots,
    swapped: RefCell<HashMap<u64, Box<[u8; 4096]>>>,
    /// The reverse map's records: frame to (family, VA).
    rmap: RefCell<HashMap<u64, (u64, u64)>>,
}

impl Default for TestMem {
    fn default() -> Self {
        Self::new()
    }
}

impl TestMem {
    pub const BASE: u64 = 0x4000_0000;

    pub fn new() -> Self {
        Self {
            frames: RefCell::new(HashMap::new()),
            next: Cell::new(Self::BASE),
            limit: Cell::new(None),
            frees: Cell::new(0),
            swap: SwapSlots::new(1024),
            swapped: RefCell::new(HashMap::new()),
            rmap: RefCell::new(HashMap::new()),
        }
    }

    /// Swap slots in use.
    pub fn swap_slots(&self) -> usize {
        self.swap.used()
    }

    /// References to swap slot `slot` (0: free).
    pub fn swap_refs(&self, slot: u64) -> u32 {
        self.swap.refs(slot)
    }

    /// Where frame `pa` was last recorded mapped: (family, VA).
    pub fn rmap_of(&self, pa: u64) -> Option<(u64, u64)> {
        self.rmap.borrow().get(&pa).copied()
    }

    /// At most `n` frames outstanding at once (`None`: no limit).
    pub fn set_limit(&self, n: Option<usize>) {
        self.limit.set(n);
    }

    /// Frames allocated and not freed.
    pub fn outstanding(&self) -> usize {
        self.frames.borrow().len()
    }

    pub fn is_live(&self, pa: u64) -> bool {
        self.frames.borrow().contains_key(&pa)
    }

    /// Frames freed so far.
    pub fn frees(&self) -> usize {
        self.frees.get()
    }
}

impl TestMem {
    /// Frame `pa`'s bytes, for an access of `[off, off + len)`; panics for
    /// a frame that is not allocated (a use after free) or a range beyond it.
    fn with_bytes<R>(&self, pa: u64, off: usize, len: usize, f: impl FnOnce(*mut u8) -> R) -> R {
        assert!(off + len <= 4096, "access of {len} bytes at {off} crosses frame {pa:#x}");
        let frames = self.frames.borrow();
        let fr = frames.get(&pa).unwrap_or_else(|| panic!("access to {pa:#x}: not allocated (use after free?)"));
        // The page is separately boxed and stays put while it is in the map.
        f(fr.page.0.get().cast::<u8>().wrapping_add(off))
    }
}

/// Each frame is a separately boxed, 4096-aligned page that stays put until
/// `free` removes it; addresses are never reused, so any access through a
/// stale address panics instead of reaching another frame.
impl PhysMem for TestMem {
    fn alloc_zeroed(&self) -> Option<u64> {
        if self.limit.get().is_some_and(|n| self.outstanding() >= n) {
            return None;
        }
        let pa = self.next.get();
        self.next.set(pa + 4096);
        let page = Box::new(Page(UnsafeCell::new([0; 4096])));
        self.frames.borrow_mut().insert(pa, Frame { page, refs: 1 });
        Some(pa)
    }

    /// Runs are aligned to their size; addresses are never reused either.
    fn alloc_contig(&self, order: u32) -> Option<u64> {
        let n = 1usize << order;
        if self.limit.get().is_some_and(|l| self.outstanding() + n > l) {
            return None;
        }
        let size = 4096u64 << order;
        let pa = self.next.get().next_multiple_of(size);
        self.next.set(pa + size);
        for i in 0..n as u64 {
            let page = Box::new(Page(UnsafeCell::new([0; 4096])));
            self.frames.borrow_mut().insert(pa + i * 4096, Frame { page, refs: 1 });
        }
        Some(pa)
    }

    fn free(&self, pa: u64) {
        let f = self.frames.borrow_mut().remove(&pa);
        match f {
            None => panic!("free of {pa:#x}: not allocated (double free?)"),
            Some(f) if f.refs != 0 => panic!("free of {pa:#x} with {} references left", f.refs),
            Some(_) => self.frees.set(self.frees.get() + 1),
        }
    }

    fn get(&self, pa: u64) {
        let mut frames = self.frames.borrow_mut();
        let f = frames.get_mut(&pa).unwrap_or_else(|| panic!("get of {pa:#x}: not allocated"));
        assert!(f.refs > 0, "get of {pa:#x}: no references left");
        f.refs += 1;
    }

    fn put(&self, pa: u64) -> bool {
        let mut frames = self.frames.borrow_mut();
        let f = frames.get_mut(&pa).unwrap_or_else(|| panic!("put of {pa:#x}: not allocated"));
        assert!(f.refs > 0, "put of {pa:#x}: no references left");
        f.refs -= 1;
        f.refs == 0
    }

    fn refs(&self, pa: u64) -> u32 {
        self.frames.borrow().get(&pa).map_or(0, |f| f.refs)
    }

    fn swap_alloc(&self) -> Option<u64> {
        self.swap.alloc()
    }

    fn swap_write(&self, slot: u64, pa: u64) {
        assert_ne!(self.swap.refs(slot), 0, "write of free swap slot {slot}");
        let mut page = Box::new([0u8; 4096]);
        // SAFETY: `pa` is a live frame (`read_data` panics otherwise).
        unsafe { self.read_data(pa, 0, &mut page[..]) };
        self.swapped.borrow_mut().insert(slot, page);
        self.swap.mark_written(slot);
    }

    fn swap_read(&self, slot: u64, pa: u64) -> bool {
        assert_ne!(self.swap.refs(slot), 0, "read of free swap slot {slot}");
        if !self.swap.is_written(slot) {
            return false;
        }
        let swapped = self.swapped.borrow();
        // SAFETY: `pa` is a live frame (`write_data` panics otherwise).
        unsafe { self.write_data(pa, 0, &swapped[&slot][..]) };
        true
    }

    fn swap_dup(&self, slot: u64) {
        self.swap.dup(slot)
    }

    fn swap_free(&self, slot: u64) {
        if self.swap.put(slot) {
            self.swapped.borrow_mut().remove(&slot);
        }
    }

    fn rmap_set(&self, pa: u64, anon: u64, va: u64) {
        self.rmap.borrow_mut().insert(pa, (anon, va));
    }

    unsafe fn load_desc(&self, table: u64, idx: usize) -> u64 {
        self.with_bytes(table, idx * 8, 8, |p| {
            // SAFETY: `p` points at 8 bytes inside a live, 4096-aligned
            // boxed page (checked above), so it is valid and aligned.
            unsafe { core::ptr::read_volatile(p.cast::<u64>()) }
        })
    }

    unsafe fn store_desc(&self, table: u64, idx: usize, desc: u64) {
        self.with_bytes(table, idx * 8, 8, |p| {
            // SAFETY: as in `load_desc`.
            unsafe { core::ptr::write_volatile(p.cast::<u64>(), desc) }
        })
    }

    unsafe fn read_data(&self, pa: u64, off: usize, buf: &mut [u8]) {
        self.with_bytes(pa, off, buf.len(), |p| {
            // SAFETY: `p..p + len` lies inside a live boxed page (checked
            // above); `buf` is a distinct allocation.
            unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
        })
    }

    unsafe fn write_data(&self, pa: u64, off: usize, data: &[u8]) {
        self.with_bytes(pa, off, data.len(), |p| {
            // SAFETY: as in `read_data`.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
        })
    }

    unsafe fn copy_page(&self, dst: u64, src: u64) {
        let mut page = [0u8; 4096];
        // SAFETY: forwarded from the caller (both live data frames).
        unsafe {
            self.read_data(src, 0, &mut page);
            self.write_data(dst, 0, &page);
        }
    }
}
