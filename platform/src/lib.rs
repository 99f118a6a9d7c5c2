//! The board: QEMU's `virt` machine (and anything that describes itself the
//! same way in its device tree). UART, GIC, timer, PSCI, semihosting and the
//! device tree, each behind a small interface the kernel calls.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod board;
#[cfg(target_os = "none")]
pub mod gic;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod semihost;
#[cfg(target_os = "none")]
pub mod timer;
#[cfg(target_os = "none")]
pub mod uart;

pub use board::{BoardError, BoardInfo, Conduit, MemRegion, MAX_CPUS};
