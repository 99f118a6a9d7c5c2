//! The generic timer's virtual counter, which the kernel lets EL0 read.

/// CNTVCT_EL0: ticks of the system counter (at [`cntfrq`] Hz).
#[cfg(target_os = "none")]
#[inline(always)]
pub fn cntvct() -> u64 {
    let ticks;
    // SAFETY: reading CNTVCT_EL0 has no side effects; the ISB keeps the read
    // from being done early, before the code being timed.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

/// CNTFRQ_EL0: the counter frequency in Hz.
#[cfg(target_os = "none")]
pub fn cntfrq() -> u64 {
    let hz;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    hz
}

#[cfg(not(target_os = "none"))]
pub fn cntvct() -> u64 {
    unimplemented!("CNTVCT_EL0 is read only on aarch64-unknown-none")
}

#[cfg(not(target_os = "none"))]
pub fn cntfrq() -> u64 {
    unimplemented!("CNTFRQ_EL0 is read only on aarch64-unknown-none")
}

/// Converts counter ticks to nanoseconds at `hz`.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1))) as u64
}

pub use crate::sys::time_ns;

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_to_ns_at_qemu_virt_frequency() {
        assert_eq!(super::ticks_to_ns(625, 62_500_000), 10_000);
        assert_eq!(super::ticks_to_ns(u64::MAX, 1), u64::MAX.wrapping_mul(1_000_000_000));
    }
}
