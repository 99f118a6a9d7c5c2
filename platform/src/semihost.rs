//! ARM semihosting (`HLT #0xF000` on AArch64), through the `semihosting` crate:
//! the run's exit status, and a console that works before the UART is set up.

/// Exit statuses of a run (`abi::exit`).
pub use abi::exit::{
    CRASH as EXIT_CRASH, FAIL as EXIT_FAIL, PASS as EXIT_PASS, SKIP as EXIT_SKIP, USAGE as EXIT_USAGE,
};

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
