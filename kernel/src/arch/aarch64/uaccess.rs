//! Copies between kernel and user memory with unprivileged loads/stores
//! (`LDTRB`/`STTRB`): they are checked against EL0's permissions, so a
//! pointer into kernel memory faults even though the kernel could read it.
//! A fault inside these routines first tries the page-fault handler (demand
//! paging); if the address is bad the trap handler resumes at the fixup,
//! which returns the number of bytes not copied.

use core::arch::global_asm;

global_asm!(
    r#"
.text
.global __uaccess_start
__uaccess_start:
// usize __uaccess_copy_from(dst: *mut u8, src_user: *const u8, n: usize) -> not copied
.global __uaccess_copy_from
__uaccess_copy_from:
    cbz     x2, 2f
1:  ldtrb   w3, [x1]
    strb    w3, [x0], #1
    add     x1, x1, #1
    sub     x2, x2, #1
    cbnz    x2, 1b
2:  mov     x0, x2
    ret
// usize __uaccess_copy_to(dst_user: *mut u8, src: *const u8, n: usize) -> not copied
.global __uaccess_copy_to
__uaccess_copy_to:
    cbz     x2, 4f
3:  ldrb    w3, [x1], #1
    sttrb   w3, [x0]
    add     x0, x0, #1
    sub     x2, x2, #1
    cbnz    x2, 3b
4:  mov     x0, x2
    ret
.global __uaccess_end
__uaccess_end:
.global __uaccess_fixup
__uaccess_fixup:
    mov     x0, x2
    ret
"#
);

extern "C" {
    fn __uaccess_copy_from(dst: *mut u8, src: u64, n: usize) -> usize;
    fn __uaccess_copy_to(dst: u64, src: *const u8, n: usize) -> usize;
    static __uaccess_start: u8;
    static __uaccess_end: u8;
    static __uaccess_fixup: u8;
}

/// Is `pc` one of the user-access instructions?
pub fn in_uaccess(pc: u64) -> bool {
    let (s, e) = (&raw const __uaccess_start as u64, &raw const __uaccess_end as u64);
    (s..e).contains(&pc)
}

pub fn fixup_address() -> u64 {
    &raw const __uaccess_fixup as u64
}

/// Copies `dst.len()` bytes from user address `src`. Returns false on a fault.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> bool {
    if src.checked_add(dst.len() as u64).is_none_or(|end| end > abi::USER_END) {
        return false;
    }
    // SAFETY: `dst` is a valid kernel buffer; user addresses are accessed
    // with unprivileged loads whose faults are fixed up.
    unsafe { __uaccess_copy_from(dst.as_mut_ptr(), src, dst.len()) == 0 }
}

/// Copies `src` to user address `dst`. Returns false on a fault.
pub fn copy_to_user(dst: u64, src: &[u8]) -> bool {
    if dst.checked_add(src.len() as u64).is_none_or(|end| end > abi::USER_END) {
        return false;
    }
    // SAFETY: as above, with unprivileged stores.
    unsafe { __uaccess_copy_to(dst, src.as_ptr(), src.len()) == 0 }
}
