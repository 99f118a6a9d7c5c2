//! The PL011 console, through the `arm-pl011-uart` crate.

use arm_pl011_uart::{DataBits, LineConfig, PL011Registers, Parity, StopBits, Uart, UniqueMmioPointer};
use core::fmt::Write;
use core::ptr::NonNull;
use spin::Mutex;

struct Console(Uart<'static>);

// SAFETY: the UART's registers are device memory mapped for every CPU; all
// access goes through the CONSOLE mutex.
unsafe impl Send for Console {}

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Takes over the PL011 at virtual address `va`.
///
/// # Safety
/// `va` must be the PL011's register block mapped as device memory for the
/// rest of the kernel's life, with no other user.
pub unsafe fn init(va: u64) {
    let ptr = NonNull::new(va as *mut PL011Registers).expect("UART address is null");
    // SAFETY: guaranteed by the caller.
    let mut uart = Uart::new(unsafe { UniqueMmioPointer::new(ptr) });
    // QEMU ignores the divisor; a real PL011 on virt-like boards runs from a
    // 24 MHz clock.
    let config = LineConfig { data_bits: DataBits::Bits8, parity: Parity::None, stop_bits: StopBits::One };
    let _ = uart.enable(config, 115_200, 24_000_000);
    *CONSOLE.lock() = Some(Console(uart));
}

/// Writes `s`, turning `\n` into `\r\n`. Returns false if the UART is not set up.
pub fn write_str(s: &str) -> bool {
    let mut guard = CONSOLE.lock();
    let Some(c) = guard.as_mut() else { return false };
    for part in s.split_inclusive('\n') {
        if let Some(line) = part.strip_suffix('\n') {
            let _ = c.0.write_str(line);
            let _ = c.0.write_str("\r\n");
        } else {
            let _ = c.0.write_str(part);
        }
    }
    true
}

/// Breaks the console lock: only for the panic path, when the lock holder may
/// be the CPU that panicked.
///
/// # Safety
/// No other CPU may be writing to the console concurrently in a way that
/// matters more than getting the panic message out.
pub unsafe fn force_unlock() {
    // SAFETY: forwarded to the caller.
    unsafe { CONSOLE.force_unlock() };
}
