//! [`Mapping`]: an owned range of anonymous read-write memory.

use core::sync::atomic::AtomicU64;

use abi::{advice, prot};

use crate::{sys, Errno};

pub const PAGE_SIZE: u64 = abi::PAGE_SIZE;

/// Anonymous zeroed read-write memory from `mmap`, unmapped on drop.
///
/// The memory is this process's alone (a fork gives the child its own copy
/// at the same address), so handing out `&[u64]`/`&mut [u64]` tied to the
/// `Mapping` is sound.
#[derive(Debug)]
pub struct Mapping {
    addr: u64,
    len: u64,
}

impl Mapping {
    /// Maps `len` bytes, rounded up to whole pages.
    pub fn new(len: u64) -> Result<Mapping, Errno> {
        let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(Errno::EINVAL)?;
        let addr = sys::mmap(len, prot::READ | prot::WRITE)?;
        Ok(Mapping { addr, len })
    }

    /// Maps `n` pages.
    pub fn pages(n: u64) -> Result<Mapping, Errno> {
        Mapping::new(n.checked_mul(PAGE_SIZE).ok_or(Errno::EINVAL)?)
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes (a whole number of pages).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first word, for volatile accesses (deliberate faults).
    pub fn ptr(&self) -> *mut u64 {
        self.addr as *mut u64
    }

    pub fn words(&self) -> &[u64] {
        // SAFETY: `addr` is page-aligned, `len` bytes are mapped readable
        // and writable for as long as `self` lives, and only `&self`
        // borrows hand them out.
        unsafe { core::slice::from_raw_parts(self.addr as *const u64, (self.len / 8) as usize) }
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `words`; `&mut self` makes this the only borrow.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u64, (self.len / 8) as usize) }
    }

    /// The words of page `i`.
    pub fn page_mut(&mut self, i: usize) -> &mut [u64] {
        let per_page = (PAGE_SIZE / 8) as usize;
        &mut self.words_mut()[i * per_page..(i + 1) * per_page]
    }

    /// Drops the contents (`madvise(DONTNEED)`): the memory reads as zeros
    /// afterwards.
    pub fn discard(&mut self) -> Result<(), Errno> {
        // SAFETY: `&mut self` means no borrow of the contents is live, and
        // zero is a valid value for every word.
        unsafe { sys::madvise(self.addr, self.len, advice::DONTNEED) }.map(drop)
    }

    /// Changes the protection. Accessing the words in a way `prot` no
    /// longer allows faults, and the kernel kills the process (which is
    /// what the fault tests want).
    pub fn protect(&mut self, prot: u64) -> Result<(), Errno> {
        // SAFETY: `&mut self` means no borrow of the contents is live; a
        // later disallowed access ends the process rather than corrupting
        // anything.
        unsafe { sys::mprotect(self.addr, self.len, prot) }.map(drop)
    }

    /// Keeps the memory mapped for the rest of the process.
    pub fn leak(self) -> &'static mut [u64] {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: as in `words_mut`; the mapping is never unmapped now, and
        // `self` is consumed so this is the only reference.
        unsafe { core::slice::from_raw_parts_mut(this.addr as *mut u64, (this.len / 8) as usize) }
    }

    /// Keeps the memory mapped for the rest of the process, as atomics that
    /// threads can share.
    pub fn leak_atomic(self) -> &'static [AtomicU64] {
        let words = self.leak();
        // SAFETY: `AtomicU64` has the size and alignment of `u64`, the words
        // are initialised (zero), and `words` is the only reference to them.
        unsafe { core::slice::from_raw_parts(words.as_mut_ptr() as *const AtomicU64, words.len()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `&mut self` in drop: no borrow of the contents outlives it.
        let _ = unsafe { sys::munmap(self.addr, self.len) };
    }
}
