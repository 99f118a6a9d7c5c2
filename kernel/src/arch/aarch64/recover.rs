//! Recovery points: run a function and come back here if it panics or takes
//! an unexpected exception (like `setjmp`/`longjmp`). The in-kernel test
//! runner uses them so one failing test does not end the suite.
//!
//! Recovery abandons the failed function's stack frames without running
//! destructors: locks it held stay held. Tests that fail while holding a
//! kernel lock can therefore hang later tests; the host harness' per-test
//! time limit reports that as a TIMEOUT.

use core::arch::global_asm;

/// Callee-saved registers, SP and the return address of [`try_call`].
#[repr(C)]
#[derive(Default)]
pub struct JmpBuf {
    regs: [u64; 13],
}

global_asm!(
    r#"
.text
// u64 recover_try(void (*f)(void *), void *arg, JmpBuf *buf): 0 if f returned.
.global recover_try
recover_try:
    stp     x19, x20, [x2, #0]
    stp     x21, x22, [x2, #16]
    stp     x23, x24, [x2, #32]
    stp     x25, x26, [x2, #48]
    stp     x27, x28, [x2, #64]
    stp     x29, x30, [x2, #80]
    mov     x9, sp
    str     x9, [x2, #96]
    stp     x29, x30, [sp, #-16]!
    mov     x9, x0
    mov     x0, x1
    blr     x9
    ldp     x29, x30, [sp], #16
    mov     x0, #0
    ret

// ! recover_jump(JmpBuf *buf): returns 1 from the matching recover_try.
.global recover_jump
recover_jump:
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldr     x9, [x0, #96]
    mov     sp, x9
    msr     daifclr, #2             // leave exception context with IRQs on
    mov     x0, #1
    ret
"#
);

extern "C" {
    fn recover_try(f: extern "C" fn(*mut u8), arg: *mut u8, buf: *mut JmpBuf) -> u64;
    fn recover_jump(buf: *const JmpBuf) -> !;
}

/// Runs `f`; returns `false` if it was abandoned through [`jump`].
///
/// `buf` must be registered (by the caller) where the failure path finds it,
/// and unregistered after this returns.
pub fn try_call<F: FnMut()>(buf: &mut JmpBuf, mut f: F) -> bool {
    extern "C" fn tramp<F: FnMut()>(arg: *mut u8) {
        // SAFETY: `arg` is the `&mut F` passed below, alive for this call.
        let f = unsafe { &mut *(arg as *mut F) };
        f();
    }
    // SAFETY: `recover_try` saves the callee-saved state into `buf` and calls
    // `tramp` with a pointer to `f`, which outlives the call.
    unsafe { recover_try(tramp::<F>, &mut f as *mut F as *mut u8, buf) == 0 }
}

/// Abandons the current computation and returns `false` from the
/// [`try_call`] that filled `buf`.
///
/// # Safety
/// `buf` must have been filled by a `try_call` on this CPU that has not
/// returned yet; the frames between are discarded without running drops.
pub unsafe fn jump(buf: *const JmpBuf) -> ! {
    // SAFETY: guaranteed by the caller.
    unsafe { recover_jump(buf) }
}
