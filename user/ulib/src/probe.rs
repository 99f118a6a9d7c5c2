//! Reading memory that may fault, without dying: the kernel resumes a
//! faulting access at `__probe_fault` (registered with FAULT_RESUME), which
//! makes `__probe_read` return "faulted" to its caller.

use crate::errno::Errno;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
#[repr(C)]
struct ProbeResult {
    ok: u64,
    value: u64,
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
.text
.global __probe_read
__probe_read:
    ldr     x1, [x0]
    mov     x0, #1
    ret
.global __probe_fault
__probe_fault:
    mov     x0, #0
    mov     x1, #0
    ret
"#
);

#[cfg(target_os = "none")]
extern "C" {
    fn __probe_read(addr: u64) -> ProbeResult;
    fn __probe_fault();
}

/// From now on, any unmapped or protection fault of this process resumes
/// inside `read` (which reports `None`) instead of killing it. Only for
/// programs whose every possibly-faulting access goes through [`read`].
pub fn install() -> Result<(), Errno> {
    #[cfg(target_os = "none")]
    {
        let pc = __probe_fault as *const () as u64;
        // SAFETY: FAULT_RESUME only records a PC in this process.
        Errno::result(unsafe { crate::raw::syscall1(abi::nr::FAULT_RESUME, pc) }).map(|_| ())
    }
    #[cfg(not(target_os = "none"))]
    unimplemented!("probes run only on the kernel")
}

/// Reads the u64 at `addr`; `None` if the access faulted.
pub fn read(addr: u64) -> Option<u64> {
    #[cfg(target_os = "none")]
    {
        // SAFETY: `__probe_read` performs one load; if it faults the kernel
        // resumes at `__probe_fault` (see `install`), which returns normally
        // with ok = 0. No Rust reference to the memory is created.
        let r = unsafe { __probe_read(addr) };
        (r.ok != 0).then_some(r.value)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = addr;
        unimplemented!("probes run only on the kernel")
    }
}
