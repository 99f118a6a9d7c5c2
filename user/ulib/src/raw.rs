//! Raw `SVC #0`: the call number in x8, arguments in x0–x5, the result in
//! x0 (IPC calls also return x1–x4).
//!
//! The kernel is assumed to preserve every register except x0–x5 across the
//! call; the asm marks x0–x5 clobbered so no argument value is trusted after
//! it. On the host these are stubs that panic: programs are only *compiled*
//! there, never run.

/// Makes a system call with six arguments and returns x0 unchanged.
///
/// # Safety
/// The call may read or write user memory named by its arguments, change
/// mappings, or end the process: the caller must make sure that whatever it
/// asks the kernel to do leaves the memory Rust code relies on valid.
#[cfg(target_os = "none")]
#[inline(always)]
pub unsafe fn syscall6(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> u64 {
    let ret;
    // SAFETY: `svc #0` enters the kernel, which returns to the next
    // instruction with only x0–x5 changed (all declared here); what the call
    // itself does to memory is the caller's obligation (see `# Safety`).
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x8") nr,
            inlateout("x0") a0 => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            inlateout("x4") a4 => _,
            inlateout("x5") a5 => _,
            options(nostack),
        );
    }
    ret
}

/// Makes a system call that returns five words (x0–x4), as the IPC calls do.
///
/// # Safety
/// As for [`syscall6`].
#[cfg(target_os = "none")]
#[inline(always)]
pub unsafe fn syscall_ret5(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> [u64; 5] {
    let r: [u64; 5];
    // SAFETY: as in `syscall6`; x1–x4 now carry results, x5 is clobbered.
    unsafe {
        let (r0, r1, r2, r3, r4);
        core::arch::asm!(
            "svc #0",
            in("x8") nr,
            inlateout("x0") a0 => r0,
            inlateout("x1") a1 => r1,
            inlateout("x2") a2 => r2,
            inlateout("x3") a3 => r3,
            inlateout("x4") a4 => r4,
            lateout("x5") _,
            options(nostack),
        );
        r = [r0, r1, r2, r3, r4];
    }
    r
}

/// Host stub: never called (programs run only on the target).
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_os = "none"))]
pub unsafe fn syscall6(nr: u64, _: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    unimplemented!("system call {nr}: user programs run only on aarch64-unknown-none")
}

/// Host stub: never called (programs run only on the target).
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_os = "none"))]
pub unsafe fn syscall_ret5(nr: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> [u64; 5] {
    unimplemented!("system call {nr}: user programs run only on aarch64-unknown-none")
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall0(nr: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, 0, 0, 0, 0, 0, 0) }
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall1(nr: u64, a0: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, a0, 0, 0, 0, 0, 0) }
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall2(nr: u64, a0: u64, a1: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, a0, a1, 0, 0, 0, 0) }
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall3(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, a0, a1, a2, 0, 0, 0) }
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall4(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, a0, a1, a2, a3, 0, 0) }
}

/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall5(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    // SAFETY: forwarded from the caller.
    unsafe { syscall6(nr, a0, a1, a2, a3, a4, 0) }
}
