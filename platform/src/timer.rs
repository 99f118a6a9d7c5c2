//! The generic timer's EL1 virtual timer (PPI 11, INTID 27).

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0};

/// INTID of the EL1 virtual timer interrupt.
pub const VIRT_TIMER_INTID: u32 = 27;

pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// The virtual counter (CNTVCT_EL0), with an ISB so it is not read early.
pub fn now() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTVCT_EL0.get()
}

pub fn ticks_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / frequency().max(1) as u128) as u64
}

/// Fires the timer interrupt on this CPU after `ticks` counter ticks.
pub fn arm(ticks: u64) {
    CNTV_TVAL_EL0.set(ticks.min(u32::MAX as u64));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}
