//! What happens when the kernel panics or takes an exception it did not
//! expect: inside a test, the test fails and the suite goes on; otherwise the
//! run ends with a non-zero semihosting status. Never a silent hang.

use core::sync::atomic::Ordering;

use crate::arch::exception::{TrapFrame, Unexpected};
use crate::arch::recover;
use crate::percpu;
use platform::semihost;

/// Fails the current test on this CPU, if one is running, by jumping back to
/// its recovery point; returns if there is none.
fn recover_if_possible() {
    let jb = percpu::this().recovery.load(Ordering::Acquire);
    if !jb.is_null() {
        // SAFETY: a non-null recovery pointer is only published by
        // `test::catch` for the duration of its `try_call` on this CPU.
        unsafe { recover::jump(jb) };
    }
}

pub fn unexpected_exception(u: &Unexpected, frame: &TrapFrame) -> ! {
    crate::console::print_panic(format_args!(
        "\n{u}\n  x0 {:#x} x1 {:#x} x29 {:#x} x30 {:#x} sp_el0 {:#x} spsr {:#x}\n",
        frame.x[0], frame.x[1], frame.x[29], frame.x[30], frame.sp_el0, frame.spsr
    ));
    crate::test::record_failure(format_args!("{u}"));
    recover_if_possible();
    crate::console::print_panic(format_args!("kernel: unrecoverable exception, ending the run\n"));
    semihost::exit(semihost::EXIT_CRASH)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let cpu = crate::arch::cpu::cpu_id();
    // One line with the message: `PanicInfo`'s own Display puts the message
    // on a line of its own after the location.
    match info.location() {
        Some(l) => crate::console::print_panic(format_args!("\npanic on CPU {cpu} at {l}: {}\n", info.message())),
        None => crate::console::print_panic(format_args!("\npanic on CPU {cpu}: {}\n", info.message())),
    }
    crate::test::record_failure(format_args!("panic on CPU {cpu}: {}", info.message()));
    recover_if_possible();
    crate::console::print_panic(format_args!("kernel: panic outside a test, ending the run\n"));
    semihost::exit(semihost::EXIT_CRASH)
}
