//! Kernel context switch: callee-saved registers, SP and LR; and the first
//! instructions of a new task.

use core::arch::global_asm;

/// What a switched-out task needs to resume: x19–x28, FP, LR, SP.
#[repr(C)]
#[derive(Default, Debug)]
pub struct Context {
    x19_x28: [u64; 10],
    fp: u64,
    lr: u64,
    sp: u64,
}

impl Context {
    /// A new kernel thread on the stack below `stack_top`. Its first switch-in
    /// calls `first_run()`, unmasks IRQs, runs `entry(arg)`, then calls
    /// `exit()`.
    pub fn kernel_thread(
        stack_top: u64,
        entry: fn(usize),
        arg: usize,
        first_run: extern "C" fn(),
        exit: extern "C" fn() -> !,
    ) -> Context {
        let mut c = Context { lr: task_trampoline as *const () as u64, sp: stack_top, ..Context::default() };
        c.x19_x28[0] = entry as usize as u64;
        c.x19_x28[1] = arg as u64;
        c.x19_x28[2] = first_run as usize as u64;
        c.x19_x28[3] = exit as usize as u64;
        c
    }

    /// A new user thread whose kernel stack holds its [`TrapFrame`] at
    /// `frame` (the top of the stack). Its first switch-in calls
    /// `first_run()`, then returns to user space from that frame.
    ///
    /// [`TrapFrame`]: super::exception::TrapFrame
    pub fn user_thread(frame: u64, first_run: extern "C" fn()) -> Context {
        let mut c = Context { lr: user_trampoline as *const () as u64, sp: frame, ..Context::default() };
        c.x19_x28[2] = first_run as usize as u64;
        c
    }
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

// First instructions of a new kernel thread: x19 = fn(usize), x20 = its
// argument, x21 = the first-run hook, x22 = the exit function.
.global task_trampoline
task_trampoline:
    blr     x21
    msr     daifclr, #2
    mov     x0, x20
    blr     x19
    blr     x22
    b       .

// First instructions of a new user thread: SP points at its TrapFrame,
// x21 = the first-run hook.
.global user_trampoline
user_trampoline:
    blr     x21
    b       trap_return
"#
);

extern "C" {
    /// Saves the callee-saved registers, SP and LR into `prev` and resumes
    /// the task saved in `next`; returns when `prev` is switched back in.
    ///
    /// # Safety
    /// `prev` is writable; `next` holds a context saved by this function or
    /// built by [`Context::kernel_thread`] or [`Context::user_thread`], whose
    /// stack is still allocated.
    pub fn switch_context(prev: *mut Context, next: *const Context);
    fn task_trampoline();
    fn user_trampoline();
}
