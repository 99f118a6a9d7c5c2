//! Threads on stacks `mmap`ed here, started through a trampoline that runs
//! the closure and then THREAD_EXIT.

use core::mem::{align_of, size_of};

use abi::prot;

use crate::mm::PAGE_SIZE;
use crate::{sys, Errno};

/// Usable stack of each thread.
pub const STACK_SIZE: u64 = 64 * 1024;
/// An inaccessible page below each stack, so that an overflow faults
/// instead of running into other memory.
const GUARD: u64 = PAGE_SIZE;
/// The closure is stored at the top of the stack; it must leave most of it.
const MAX_CLOSURE: usize = 1024;

/// A running thread; [`JoinHandle::join`] waits for it and frees its stack.
/// Dropping the handle leaves the thread running and its stack mapped.
#[derive(Debug)]
#[must_use = "a dropped handle leaks the thread's stack"]
pub struct JoinHandle {
    tid: u64,
    stack: u64,
}

impl JoinHandle {
    pub fn tid(&self) -> u64 {
        self.tid
    }

    /// Waits for the thread to exit; returns its exit code.
    pub fn join(self) -> Result<i32, Errno> {
        let code = sys::join(self.tid)?;
        // SAFETY: the thread has exited, so nothing uses its stack now.
        let _ = unsafe { sys::munmap(self.stack, GUARD + STACK_SIZE) };
        Ok(code)
    }
}

/// Runs `f` in a new thread of this process; its return value is the
/// thread's exit code.
pub fn spawn<F: FnOnce() -> i32 + Send + 'static>(f: F) -> Result<JoinHandle, Errno> {
    const { assert!(size_of::<F>() <= MAX_CLOSURE && align_of::<F>() <= 16) };
    let stack = sys::mmap(GUARD + STACK_SIZE, prot::READ | prot::WRITE)?;
    // SAFETY: the guard page is part of the fresh mapping and unused.
    let guarded = unsafe { sys::mprotect(stack, GUARD, prot::NONE) };
    // The closure sits at the 16-byte-aligned top; the stack grows down
    // from just below it.
    let slot = (stack + GUARD + STACK_SIZE - size_of::<F>() as u64) & !15;
    let started = guarded.and_then(|_| {
        // SAFETY: `slot` is inside the fresh mapping, aligned for `F`.
        unsafe { core::ptr::write(slot as *mut F, f) };
        // SAFETY: `trampoline::<F>` takes the slot and ends with
        // THREAD_EXIT; the stack below `slot` is the thread's alone until
        // `join` unmaps it after the thread exited.
        unsafe { sys::thread_create(trampoline::<F> as extern "C" fn(u64) -> ! as usize as u64, slot, slot) }
    });
    match started {
        Ok(tid) => Ok(JoinHandle { tid, stack }),
        Err(e) => {
            // SAFETY: no thread was started, so nothing uses the mapping
            // (a written closure is leaked, never run or dropped).
            let _ = unsafe { sys::munmap(stack, GUARD + STACK_SIZE) };
            Err(e)
        }
    }
}

/// Runs `f(arg)` in a new thread.
pub fn spawn_fn(f: fn(u64) -> i32, arg: u64) -> Result<JoinHandle, Errno> {
    spawn(move || f(arg))
}

/// The new thread's first Rust code: x0 = the slot holding the closure.
extern "C" fn trampoline<F: FnOnce() -> i32>(slot: u64) -> ! {
    // SAFETY: `spawn` wrote an `F` at `slot` and reads it only here, once.
    let f = unsafe { core::ptr::read(slot as *const F) };
    sys::thread_exit(f())
}
