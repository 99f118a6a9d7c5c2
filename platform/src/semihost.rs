//! ARM semihosting (`HLT #0xF000` on AArch64), through the `semihosting` crate:
//! the run's exit status, and a console that works before the UART is set up.

/// Exit statuses of a run (kvm-unit-tests' convention).
pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
/// A bad kernel command line.
pub const EXIT_USAGE: i32 = 2;
/// The kernel itself crashed (unexpected exception or panic outside a test).
pub const EXIT_CRASH: i32 = 3;
pub const EXIT_SKIP: i32 = 77;
pub const EXIT_TIMEOUT: i32 = 124;

/// Ends the run: QEMU exits with `code`.
pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// Writes to the host's stderr through semihosting (slow; early boot and
/// panics only).
pub fn write_str(s: &str) {
    use semihosting::io::Write;
    if let Ok(mut e) = semihosting::io::stderr() {
        let _ = e.write_all(s.as_bytes());
    }
}
