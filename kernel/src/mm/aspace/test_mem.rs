//! Host-side physical memory for the tests: boxed pages in a map,
//! addresses never reused (a stale access to a freed frame panics instead of
//! reading someone else's page), an optional cap on outstanding frames (to
//! test running out) and leak accounting.
#![allow(unsafe_code)] // implements the unsafe trait PhysMem

use crate::mm::pagetable::PhysMem;
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
        }
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

// SAFETY: 1. each frame is a separately boxed, 4096-aligned page that
// stays put until `free` removes it, and `ptr` reaches it through an
// `UnsafeCell` without creating references; 2. addresses are never
// reused; 3. `refs` starts at 1 and changes only in `get`/`put`.
unsafe impl PhysMem for TestMem {
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

    fn free(&self, pa: u64) {
        let f = self.frames.borrow_mut().remove(&pa);
        match f {
            None => panic!("free of {pa:#x}: not allocated (double free?)"),
            Some(f) if f.refs != 0 => panic!("free of {pa:#x} with {} references left", f.refs),
            Some(_) => self.frees.set(self.frees.get() + 1),
        }
    }

    fn ptr(&self, pa: u64) -> *mut u8 {
        let frames = self.frames.borrow();
        let f = frames
            .get(&pa)
            .unwrap_or_else(|| panic!("access to {pa:#x}: not allocated (use after free?)"));
        f.page.0.get().cast()
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
}
