//! Kernel context switch: callee-saved registers, SP and LR.

use core::arch::global_asm;

/// What a switched-out task needs to resume: x19–x28, FP, LR, SP.
#[repr(C)]
#[derive(Default, Debug)]
pub struct Context {
    pub x19_x28: [u64; 10],
    pub fp: u64,
    pub lr: u64,
    pub sp: u64,
}

global_asm!(
    r#"
.text
// switch_context(prev: *mut Context, next: *const Context)
.global switch_context
switch_context:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ret

// First instructions of a new kernel task: x19 = fn(usize), x20 = argument.
.global task_trampoline
task_trampoline:
    bl      task_first_run
    msr     daifclr, #2
    mov     x0, x20
    blr     x19
    bl      task_exit_kernel
    b       .

// First instructions of a new user thread: SP points at its TrapFrame.
.global user_trampoline
user_trampoline:
    bl      task_first_run
    b       trap_return
"#
);

extern "C" {
    pub fn switch_context(prev: *mut Context, next: *const Context);
    pub fn task_trampoline();
    pub fn user_trampoline();
}
