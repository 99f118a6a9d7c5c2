//! An AArch64 microkernel for seeing, testing and measuring TLB maintenance.
//!
//! The mm logic (`mm`) is plain Rust and is unit-tested on the host; the
//! hardware-facing parts (`arch`, the boot path, the in-kernel test runner)
//! build only for `aarch64-unknown-none`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// Statics the boot code writes before Rust runs are read through raw
// pointers (`&*(&raw const X)`), never through references to a `static
// mut`: clippy's `deref_addrof` would turn them back into those.
#![allow(clippy::deref_addrof)]
// Per-CPU tables are indexed by CPU number alongside other per-CPU state;
// an iterator over one of them would hide which CPU the body is about.
#![allow(clippy::needless_range_loop)]

extern crate alloc;

pub mod cmdline;
pub mod error;
pub mod mm;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod fault;
#[cfg(target_os = "none")]
pub mod init;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
mod ktests;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod selfcheck;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod sync;
#[cfg(target_os = "none")]
pub mod task;
#[cfg(target_os = "none")]
pub mod test;
#[cfg(target_os = "none")]
pub mod trap;

#[cfg(target_os = "none")]
pub static BOARD: spin::Once<platform::BoardInfo> = spin::Once::new();
#[cfg(target_os = "none")]
pub static FEATURES: spin::Once<arch::cpu::CpuFeatures> = spin::Once::new();
#[cfg(target_os = "none")]
pub static OPTIONS: spin::Once<cmdline::Options> = spin::Once::new();

/// Physical address the kernel image was loaded at.
#[cfg(target_os = "none")]
pub fn image_pa() -> u64 {
    // SAFETY: written once with the MMU off before any Rust code at the high
    // address ran.
    unsafe { (*(&raw const arch::early::BOOT_INFO)).image_pa }
}
