//! Helpers shared by the built-in programs in `src/bin/`: failure reporting
//! (every failure prints what was expected and what was seen, then exits
//! with a status distinct within its program), the IPC test protocol, and
//! the measurement helpers of the `bench_*` programs ([`bench`]).
#![cfg_attr(not(test), no_std)]
// One unsafe block: the region markers of `bench` (inline HINTs).
#![deny(unsafe_code)]

pub use ulib;

pub mod bench;
pub mod churn;
pub mod device;
pub mod ipc;
pub mod pattern;

use ulib::sys::{self, Fork};
use ulib::Errno;

/// Word 0x5EC2E7 in the high half of every word `secret` writes (the low
/// half is its pid); `scanner` must never see it.
pub const SECRET_TAG_HI: u64 = 0x5EC2E7;
/// A kernel (TTBR1) address user code must not reach.
pub const KERNEL_ADDR: u64 = 0xffff_0000_4000_0000;
/// An address no program maps (between the image and `MMAP_BASE`).
pub const UNMAPPED_ADDR: u64 = 0x1_0000_0000;

/// The exit status of a process the kernel killed for `cause`.
pub const fn killed(cause: i64) -> i64 {
    ulib::abi::KILLED_BASE + cause
}

/// The fault kinds of the `fault` program: (arg, what it does, the cause
/// the kernel must report).
pub const FAULTS: [(u64, &str, i64); 5] = {
    use ulib::abi::cause;
    [
        (1, "read an unmapped address", cause::UNMAPPED),
        (2, "write to .rodata", cause::PROTECTION),
        (3, "read a kernel address", cause::KERNEL_ADDRESS),
        (4, "undefined instruction", cause::ILLEGAL_INSTRUCTION),
        (5, "execute a non-executable page", cause::PROTECTION),
    ]
};

/// Runs `f` in a forked child, which exits with what `f` returns; returns
/// the child's exit status.
pub fn in_child(f: impl FnOnce() -> i32) -> Result<i64, Errno> {
    match sys::fork()? {
        Fork::Child => sys::exit(f()),
        Fork::Parent(pid) => Ok(sys::wait(Some(pid))?.1),
    }
}

/// Prints `<program>: FAIL: <message>` and returns `Err(status)` from the
/// enclosing function (which returns `Result<_, i32>`).
#[macro_export]
macro_rules! fail {
    ($status:expr, $($arg:tt)*) => {{
        $crate::ulib::println!("{}: FAIL: {}", env!("CARGO_BIN_NAME"), format_args!($($arg)*));
        return Err($status);
    }};
}

/// Fails with `status` unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $status:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::fail!($status, $($arg)*);
        }
    };
}

/// Fails with `status` unless the two integers are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($status:expr, $what:expr, $expected:expr, $seen:expr) => {{
        let (expected, seen) = ($expected, $seen);
        if expected != seen {
            $crate::fail!($status, "{}: expected {:#x}, saw {:#x}", $what, expected, seen);
        }
    }};
}

/// Unwraps a system call's `Result`, failing with `status` (and the call
/// and its errno) on error.
#[macro_export]
macro_rules! try_sys {
    ($call:expr, $status:expr) => {
        match $call {
            Ok(v) => v,
            Err(e) => $crate::fail!($status, "{} failed: {}", stringify!($call), e),
        }
    };
}

/// `arg`, or `default` when the spawner passed 0.
pub fn arg_or(arg: u64, default: u64) -> u64 {
    if arg == 0 {
        default
    } else {
        arg
    }
}
