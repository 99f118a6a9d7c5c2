//! An AArch64 microkernel for seeing, testing and measuring TLB maintenance.
//!
//! The mm logic (`mm`) is plain Rust and is unit-tested on the host; the
//! hardware-facing parts (`arch`, the boot path, the in-kernel test runner)
//! build only for `aarch64-unknown-none`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod mm;
